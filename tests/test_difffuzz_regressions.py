"""Differences between ferroloop and the stock loop found by the
differential fuzzer and its engine model checks (tests/_difffuzz.py,
crates/engine/fuzz), each kept as a regular test that runs the same
sequence on both loops and compares what they did."""
import asyncio

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
    import gc
    import weakref

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
