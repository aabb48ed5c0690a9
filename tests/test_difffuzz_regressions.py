"""Differences between ferroloop and the stock loop found by the
differential fuzzer and its engine model checks (tests/_difffuzz.py,
crates/engine/fuzz), each kept as a regular test that runs the same
sequence on both loops and compares what they did."""
import asyncio
import contextvars
import gc
import socket
import warnings
import weakref

import pytest

import ferroloop

LOOPS = [asyncio.new_event_loop, ferroloop.new_event_loop]


def iterations(loop, n):
    for _ in range(n):
        loop.call_soon(loop.stop)
        loop.run_forever()


def nan_timer_trace(make, when):
    loop = make()
    try:
        seen = []
        loop.call_at(when, seen.append, "nan")
        loop.call_later(1e5, seen.append, "far")
        iterations(loop, 2)
        # A timer due now still fires: the NaN one must not block the heap.
        loop.call_at(loop.time() - 1, seen.append, "due")
        iterations(loop, 2)
        return seen
    finally:
        loop.close()


@pytest.mark.parametrize("when", [float("nan"), -float("nan")], ids=["nan", "negative-nan"])
def test_nan_deadline_fires_at_once_like_the_stock_loop(when):
    # Was: a NaN deadline never fired, made every poll timeout 0 (a busy
    # loop), and with the sign bit set also blocked every later timer.
    assert nan_timer_trace(ferroloop.new_event_loop, when) == ["nan", "due"]
    assert nan_timer_trace(asyncio.new_event_loop, when) == ["nan", "due"]


def test_lone_nan_timer_does_not_spin_the_loop():
    # After the NaN timer fired, the heap is empty: run_until_complete of a
    # future resolved by a thread-free timer chain ends normally.
    loop = ferroloop.new_event_loop()
    try:
        fut = loop.create_future()
        loop.call_at(float("nan"), fut.set_result, "fired")
        assert loop.run_until_complete(fut) == "fired"
    finally:
        loop.close()


class _Owner:
    """Keeps its own pending handle, whose callback is its own method: a
    reference cycle only the garbage collector can break."""

    def __init__(self, loop, how):
        if how == "call_soon":
            self.handle = loop.call_soon(self.tick)
        else:
            self.handle = loop.call_later(1e5, self.tick)

    def tick(self):
        pass


@pytest.mark.parametrize("how", ["call_soon", "call_later"])
@pytest.mark.parametrize("make", LOOPS, ids=["asyncio", "ferroloop"])
def test_cycle_through_a_handle_pending_at_close_is_collected(make, how):
    # Was: a handle still queued when the loop closed stayed out of the
    # collector's view, so such a cycle (and all it held) leaked for good;
    # the differential fuzzer's process grew ~7 KiB per operation.
    loop = make()
    owner = _Owner(loop, how)
    ref = weakref.ref(owner)
    del owner
    loop.close()
    gc.collect()
    assert ref() is None


class _LostCounter(asyncio.Protocol):
    def __init__(self):
        self.lost = []

    def connection_lost(self, exc):
        self.lost.append(exc)


def abort_after_flushed_close(make):
    """close() with 215 KiB pending, the peer reads it all, then abort():
    returns what abort() raised (or None) and connection_lost's calls."""
    import socket

    loop = make()
    ours, peer = socket.socketpair()
    try:
        proto = _LostCounter()
        transport, _ = loop.run_until_complete(loop.connect_accepted_socket(lambda: proto, ours))
        payload = b"x" * (215 * 1024)
        transport.write(payload)
        transport.close()
        peer.setblocking(False)
        received = bytearray()

        def drain():
            try:
                while chunk := peer.recv(1 << 16):
                    received.extend(chunk)
            except BlockingIOError:
                pass
            if len(received) == len(payload) and proto.lost:
                loop.stop()

        loop.add_reader(peer, drain)
        loop.run_forever()
        loop.remove_reader(peer)
        try:
            transport.abort()
            raised = None
        except AttributeError as exc:
            raised = exc
        iterations(loop, 2)
        return raised, proto.lost
    finally:
        peer.close()
        loop.close()


def test_abort_after_a_flushed_close():
    # Found by the 1,000,000-operation run: the stock transport's abort()
    # after close() flushed its buffer raises AttributeError (its flush path
    # calls connection_lost() without counting it, then _force_close()
    # reaches the cleared loop); ferroloop's returns, and connection_lost
    # ran once on both.
    raised, lost = abort_after_flushed_close(ferroloop.new_event_loop)
    assert raised is None and lost == [None]
    raised, lost = abort_after_flushed_close(asyncio.new_event_loop)
    assert lost == [None]
    assert raised is None or "'NoneType'" in str(raised)
_VAR = contextvars.ContextVar("_VAR")


class _Keeper:
    """Keeps every handle it scheduled by id, as the fuzzer's sides do, each
    with a callback closing over the keeper (which holds the loop): a cycle
    through each handle, only the garbage collector can break it."""

    def __init__(self, loop):
        self.loop = loop
        self.handles = {}
        self.seen = []
        loop.set_exception_handler(lambda lp, ctx: self.seen.append(ctx["message"]))

    def callback(self, how):
        def callback():
            self.seen.append(how)
            if how == "raises":
                raise ValueError(how)
            if how == "escapes":
                raise KeyboardInterrupt(how)
            if how == "sets-context":
                _VAR.set(self)

        return callback

    def schedule(self, how, when):
        cb = self.callback(how)
        if how == "cancelled":
            # The handle's context copy holds the keeper already.
            token = _VAR.set(self)
            try:
                handle = self.loop.call_soon(cb) if when == "soon" else self.loop.call_later(1e5, cb)
            finally:
                _VAR.reset(token)
            handle.cancel()
        else:
            handle = self.loop.call_soon(cb) if when == "soon" else self.loop.call_later(0, cb)
        self.handles[len(self.handles)] = handle

    def run(self, n):
        for _ in range(n):
            self.loop.call_soon(self.loop.stop)
            try:
                self.loop.run_forever()
            except KeyboardInterrupt:
                self.seen.append("escaped")


KINDS = ["raises", "escapes", "sets-context", "cancelled", "plain"]


def _live(kind):
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, kind))


@pytest.mark.parametrize("debug", [False, True], ids=["", "debug"])
@pytest.mark.parametrize("when", ["soon", "later"])
@pytest.mark.parametrize("how", KINDS)
@pytest.mark.parametrize("make", LOOPS, ids=["asyncio", "ferroloop"])
def test_cycle_through_a_handle_that_ran_is_collected(make, how, when, debug):
    # Was: a one-shot handle stays out of the collector's view while queued,
    # and stayed so after the loop let go of it. A handle its owner keeps
    # still leads back to the owner when its callback raised (the handle
    # keeps it for the report), in debug mode (it always keeps it), or
    # through its context (values the callback set, or that the copy held):
    # such a cycle leaked for good, with the loop and all the owner held.
    loop = make()
    loop.set_debug(debug)
    keeper = _Keeper(loop)
    keeper.schedule(how, when)
    keeper.run(3)
    if how != "cancelled":
        assert how in keeper.seen
    ref = weakref.ref(keeper)
    loop.close()
    del keeper, loop
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize("make", LOOPS, ids=["asyncio", "ferroloop"])
def test_loops_of_fuzz_like_sequences_are_all_collected(make):
    # The differential fuzzer's process kept ~60 of every 100 ferroloop
    # loops (and, through them, stock ones) alive: its sides keep their
    # handles, some of whose callbacks raise. Generous bound: none should stay.
    probe = make()
    loop_type = type(probe)
    probe.close()
    before = _live(loop_type)
    for _ in range(50):
        keeper = _Keeper(make())
        for how in KINDS:
            keeper.schedule(how, "soon")
            keeper.schedule(how, "later")
        keeper.run(3)
        keeper.loop.close()
        del keeper
    assert _live(loop_type) - before <= 5


@pytest.mark.parametrize("make", LOOPS, ids=["asyncio", "ferroloop"])
def test_unclosed_loop_whose_reader_set_a_context_variable_is_collected(make):
    # Was: an fd watcher's context copy was out of the collector's view too,
    # though its callback runs in it again and again: a value it stored
    # there that leads back to the loop kept the dropped loop alive.
    a, b = socket.socketpair()
    try:
        loop = make()
        box = [loop]

        def on_readable():
            a.recv(16)
            _VAR.set(box)

        loop.add_reader(a, on_readable)
        b.send(b"x")
        for _ in range(2):
            loop.call_soon(loop.stop)
            loop.run_forever()
        ref = weakref.ref(loop)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            del loop, box, on_readable
            gc.collect()
        assert ref() is None
    finally:
        a.close()
        b.close()
