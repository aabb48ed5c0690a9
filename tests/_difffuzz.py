"""Differential fuzzing of ferroloop against the stock asyncio loop.

A hypothesis state machine generates sequences of loop operations and applies
each one, in lockstep, to a ferroloop loop and to a stock
``asyncio.new_event_loop()`` loop in the same thread. Every callback,
protocol method, done callback and exception-handler call appends an event to
its side's trace; after each operation the two traces since the previous
operation must agree.

What is compared (and why it is deterministic on both loops):

* No wall-clock values. Timers are either due at once (``call_later`` with a
  delay <= 0, ``call_at`` at a fixed base time in the past plus an offset
  in {-2, -1, 0}, so several share a deadline) or far in the future (1e5 s,
  never reached): their firing order depends on ``(when, scheduling order)``
  only. ``TimerHandle.when()`` is not traced.
* Loop iterations are counted, not timed: ``run(n)`` runs exactly ``n``
  iterations (``call_soon(stop)`` + ``run_forever()``), so level-triggered
  readers and writers fire the same number of times.
* Events go to *channels*: ``main`` for callbacks, timers, futures and tasks;
  one channel per socket pair / transport end for fd callbacks and protocol
  methods. Within a channel the order is compared exactly; *across* channels
  it is not, because the order in which one iteration dispatches different
  ready fds is not guaranteed by asyncio (it is the selector's order).
  Exception-handler reports are put in the channel of the callback that
  raised (the raised ``FuzzError`` names it); other reports go to a
  ``handler`` channel, compared as a sorted list for the same reason.
* Consecutive ``data`` events of one channel are merged: how a byte stream is
  cut into reads is not part of the contract. Every peer send is small enough
  that one read (256 KiB, asyncio's ``max_size``) takes all that is pending.
* ``pause_writing``/``resume_writing`` are not traced: when they fire depends
  on how the kernel accounts socket buffer space for each send pattern
  (one ``send`` of a joined buffer vs one vectored ``sendmsg``).
  The bytes the peer finally receives are compared instead (``flush``).
* Exception messages are compared after masking memory addresses and
  numbers (fds and ports differ between the two sides) and object reprs.

Documented deviations (not reported as differences) are listed in
``docs/design-notes.md``; this module filters none today.
"""
import asyncio
import errno
import itertools
import logging
import os
import re
import socket

from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, initialize, invariant, precondition, rule

import ferroloop

#: Operations applied so far in this process (each rule is one operation)
#: and sequences started (each is one pair of fresh loops).
OPS = itertools.count()
SEQUENCES = itertools.count()
FAR = 1e5


class FuzzError(Exception):
    """Raised by generated callbacks; its message names the channel."""


class Escape(KeyboardInterrupt):
    """A BaseException that escapes run_forever (like Ctrl-C)."""


_ADDR = re.compile(r"0x[0-9a-fA-F]+")
_REPR = re.compile(r"<[^<>]*>")
_NUM = re.compile(r"\d+")


def norm(text):
    # The transport class's name is not part of the contract.
    text = _ADDR.sub("0x", str(text)).replace("_SelectorSocketTransport", "SocketTransport")
    for _ in range(3):
        text = _REPR.sub("<>", text)
    return _NUM.sub("N", text)


def exc_sig(exc):
    if exc is None:
        return None
    return (type(exc).__name__, norm(exc))


def merge_data(events):
    out = []
    for ev in events:
        if ev[0] == "data" and out and out[-1][0] == "data":
            out[-1] = ("data", out[-1][1] + ev[1])
        else:
            out.append(ev)
    return out


def unorder_equal_deadlines(events):
    """Sorts each run of consecutive callbacks of timers that share a
    deadline (``call_at`` at the same base offset: tags ``h<id>@<offset>``),
    each with the exception-handler reports that follow it. asyncio's timer
    heap compares deadlines only and heapq is not stable, so the stock loop
    runs such timers in an order that depends on the heap's shape; ferroloop
    runs them in scheduling order. Only their set (and their place among
    other events) is compared."""
    units = []
    for ev in events:
        if ev[0] == "handler" and units and units[-1][0] is not None:
            units[-1][1].append(ev)
        else:
            key = ev[1].partition("@")[2] if ev[0] == "cb" and "@" in ev[1] else None
            units.append((key, [ev]))
    out, run = [], []
    for key, evs in units + [(None, None)]:
        if run and key != run[0][0]:
            out.extend(ev for _, unit in sorted(run, key=repr) for ev in unit)
            run = []
        if key is not None:
            run.append((key, evs))
        elif evs is not None:
            out.extend(evs)
    return out


RAISES = {
    None: None,
    "value": lambda chan: FuzzError(chan),
    "cancel": lambda chan: asyncio.CancelledError(chan),
    "escape": lambda chan: Escape(chan),
}


class Proto(asyncio.Protocol):
    def __init__(self, side, chan):
        self.side = side
        self.chan = chan
        self.raise_in = set()  # protocol methods that raise FuzzError next time
        self.keep_open_on_eof = False

    def _maybe_raise(self, method):
        if method in self.raise_in:
            self.raise_in.discard(method)
            raise FuzzError(self.chan)

    def connection_made(self, transport):
        self.side.transports[self.chan] = transport
        self.side.ev(self.chan, "made")

    def data_received(self, data):
        self.side.ev(self.chan, "data", bytes(data))
        self._maybe_raise("data_received")

    def eof_received(self):
        self.side.ev(self.chan, "eof")
        self._maybe_raise("eof_received")
        return self.keep_open_on_eof

    def connection_lost(self, exc):
        self.side.ev(self.chan, "lost", exc_sig(exc))
        self._maybe_raise("connection_lost")


class Side:
    """One loop and the objects the sequence made on it (by shared ids)."""

    def __init__(self, name, loop):
        self.name = name
        self.loop = loop
        self.trace = []
        self.mark = 0
        self.base = loop.time()
        self.handles = {}
        self.futures = {}
        self.pairs = {}  # id -> (loop-side socket, peer socket)
        self.peer_rx = {}  # id -> bytearray of what the peer received
        self.transports = {}
        self.protos = {}
        self.servers = {}
        self.connecting = []
        self.taken = set()  # pairs whose loop-side socket a transport owns
        loop.set_exception_handler(self.handler)

    def ev(self, chan, *what):
        self.trace.append((chan, what))

    def handler(self, loop, ctx):
        exc = ctx.get("exception")
        chan = "handler"
        if isinstance(exc, (FuzzError, asyncio.CancelledError)) and exc.args:
            chan = exc.args[0]
        self.ev(chan, "handler", norm(ctx.get("message")), exc_sig(exc))

    def cb(self, chan, tag, raises):
        def callback(*args):
            self.ev(chan, "cb", tag)
            if raises:
                raise RAISES[raises](chan)

        return callback

    def since_mark(self):
        chunk = self.trace[self.mark :]
        self.mark = len(self.trace)
        by_chan = {}
        for chan, what in chunk:
            by_chan.setdefault(chan, []).append(what)
        out = {c: merge_data(evs) for c, evs in by_chan.items()}
        if "main" in out:
            out["main"] = unorder_equal_deadlines(out["main"])
        if "handler" in out:
            out["handler"] = sorted(out["handler"], key=repr)
        return out

    def run(self, n):
        for _ in range(n):
            self.loop.call_soon(self.loop.stop)
            try:
                self.loop.run_forever()
            except Escape as exc:
                self.ev("main", "escaped", exc_sig(exc))

    def tcp_events(self):
        return sum(1 for chan, _ in self.trace if chan[0] in "cs")

    def settle_tcp(self, quiet=3, limit=200):
        seen, still, k = self.tcp_events(), 0, 0
        while still < quiet and k < limit:
            self.run(1)
            k += 1
            now = self.tcp_events()
            pending = any(not t.done() for t in self.connecting)
            still = 0 if (now != seen or pending) else still + 1
            seen = now
        return k

    def ruc(self, chan, awaitable):
        """run_until_complete, tracing an escaped BaseException or an error;
        returns (ok, result)."""
        try:
            return True, self.loop.run_until_complete(awaitable)
        except (Exception, Escape, asyncio.CancelledError) as exc:
            self.ev(chan, "ruc-raised", exc_sig(exc))
            return False, None

    def attempt(self, chan, fn, *args):
        """Calls fn and traces its result or exception."""
        try:
            res = fn(*args)
        except (Exception, Escape, asyncio.CancelledError) as exc:
            self.ev(chan, "raised", fn.__name__, exc_sig(exc))
            return None
        self.ev(chan, "returned", fn.__name__, res if isinstance(res, (bool, int, str, type(None))) else "obj")
        return res

    def close(self):
        loop = self.loop
        for fut in self.futures.values():
            fut.cancel()
        # Also what run_until_complete left pending when a stop ended it.
        for task in asyncio.all_tasks(loop):
            task.cancel()
        for tr in self.transports.values():
            if not tr.is_closing():
                tr.abort()
        for srv in self.servers.values():
            srv.close()
        try:
            for _ in range(3):
                self.run(1)
        finally:
            for pid, (a, b) in self.pairs.items():
                if pid not in self.taken and a.fileno() != -1:
                    loop.remove_reader(a)
                    loop.remove_writer(a)
                a.close()
                b.close()
            loop.set_exception_handler(lambda lp, ctx: None)
            loop.close()


class Program:
    """Applies each operation to both sides and compares their traces."""

    def __init__(self):
        self.sides = [
            Side("asyncio", asyncio.new_event_loop()),
            Side("ferroloop", ferroloop.new_event_loop()),
        ]

    def apply(self, label, fn):
        next(OPS)
        for side in self.sides:
            fn(side)
        if any(s.servers for s in self.sides):
            self.settle_tcp()
        self.compare(label)

    def settle_tcp(self):
        """Loopback TCP is not lockstep-exact (a connect, a FIN may be seen
        one poll later on one loop): run each loop until its TCP channels are
        quiet for 3 iterations, then run the quicker one as many more
        iterations as the slower took, so level-triggered fd callbacks fire
        equally often on both."""
        counts = [side.settle_tcp() for side in self.sides]
        most = max(counts)
        for side, k in zip(self.sides, counts):
            side.run(most - k)

    def compare(self, label):
        stock, ours = (s.since_mark() for s in self.sides)
        if stock != ours:
            diff = []
            for chan in sorted(set(stock) | set(ours)):
                if stock.get(chan) != ours.get(chan):
                    diff.append(f"  [{chan}]\n    asyncio:   {stock.get(chan)}\n    ferroloop: {ours.get(chan)}")
            raise AssertionError(f"traces differ after {label}:\n" + "\n".join(diff))

    def close(self):
        for side in self.sides:
            side.close()


def _settle_coro(n):
    async def settle():
        for _ in range(n):
            await asyncio.sleep(0)
        return n

    return settle()


async def _task_body(side, tid, plan, awaited):
    chan = "main"
    try:
        for i, step in enumerate(plan):
            side.ev(chan, "task", tid, "step", i, step)
            if step == "sleep0":
                await asyncio.sleep(0)
            elif step == "raise":
                raise FuzzError(chan)
            elif step == "await" and awaited is not None:
                r = await side.futures[awaited]
                side.ev(chan, "task", tid, "awaited", r if isinstance(r, (int, str)) else "obj")
        return f"t{tid}"
    except asyncio.CancelledError as exc:
        side.ev(chan, "task", tid, "cancelled-inside", exc_sig(exc))
        if "swallow" in plan:
            return "swallowed"
        raise


def _outcome(fut):
    if fut.cancelled():
        return ("cancelled",)
    exc = fut.exception()
    if exc is not None:
        return ("exception", exc_sig(exc))
    r = fut.result()
    return ("result", r if isinstance(r, (int, str)) else "obj")


ids = itertools.count()
small_data = st.binary(min_size=1, max_size=4096)


class LoopDiff(RuleBasedStateMachine):
    """The generated sequences: each rule is one operation on both loops."""

    handles = Bundle("handles")
    futures = Bundle("futures")
    pairs = Bundle("pairs")
    conns = Bundle("conns")  # transport channels
    servers = Bundle("servers")

    @initialize()
    def start(self):
        # asyncio's warnings for writes after a connection was lost: noise here
        self.log_level = logging.getLogger("asyncio").level
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        self.prog = Program()
        next(SEQUENCES)

    def teardown(self):
        prog = getattr(self, "prog", None)
        if prog is not None:
            logging.getLogger("asyncio").setLevel(self.log_level)
            prog.close()

    def apply(self, label, fn):
        self.prog.apply(label, fn)

    # -- callbacks and timers ------------------------------------------------
    @rule(target=handles, raises=st.sampled_from([None, None, None, "value", "cancel", "escape"]))
    def call_soon(self, raises):
        hid = next(ids)

        def op(s):
            s.handles[hid] = s.loop.call_soon(s.cb("main", f"h{hid}", raises))

        self.apply(f"call_soon h{hid} raises={raises}", op)
        return hid

    @rule(target=handles, delay=st.sampled_from([-1.0, 0.0, 0, FAR]), raises=st.sampled_from([None, None, "value"]))
    def call_later(self, delay, raises):
        hid = next(ids)

        def op(s):
            s.handles[hid] = s.loop.call_later(delay, s.cb("main", f"h{hid}", raises))

        self.apply(f"call_later h{hid} {delay}", op)
        return hid

    @rule(target=handles, offset=st.sampled_from([-2.0, -1.0, 0.0, FAR]), raises=st.sampled_from([None, None, "value"]))
    def call_at(self, offset, raises):
        hid = next(ids)

        def op(s):
            s.handles[hid] = s.loop.call_at(s.base + offset, s.cb("main", f"h{hid}@{offset}", raises))

        self.apply(f"call_at h{hid} base{offset:+}", op)
        return hid

    @rule(h=handles)
    def cancel_handle(self, h):
        def op(s):
            s.handles[h].cancel()
            s.ev("main", "cancelled?", h, s.handles[h].cancelled())

        self.apply(f"h{h}.cancel()", op)

    @rule(target=handles)
    def call_soon_stop(self):
        hid = next(ids)
        self.apply("call_soon(stop)", lambda s: s.handles.__setitem__(hid, s.loop.call_soon(s.loop.stop)))
        return hid

    @rule()
    def stop_now(self):
        self.apply("stop()", lambda s: s.loop.stop())

    @rule(n=st.integers(1, 3))
    def run(self, n):
        self.apply(f"run({n})", lambda s: s.run(n))

    @rule(n=st.integers(0, 3))
    def run_until_complete_coro(self, n):
        def op(s):
            ok, r = s.ruc("main", _settle_coro(n))
            if ok:
                s.ev("main", "ruc", r)

        self.apply(f"run_until_complete(settle({n}))", op)

    @rule(f=futures)
    def run_until_complete_future(self, f):
        """On a done future: its outcome. On a pending one: a queued stop
        makes it raise 'Event loop stopped before Future completed.'"""

        def op(s):
            fut = s.futures[f]
            if not fut.done():
                s.loop.call_soon(s.loop.stop)
            ok, r = s.ruc("main", fut)
            if ok:
                s.ev("main", "ruc", r if isinstance(r, (int, str)) else "obj")

        self.apply(f"run_until_complete(f{f})", op)

    # -- futures and tasks ---------------------------------------------------
    @rule(target=futures)
    def create_future(self):
        fid = next(ids)
        self.apply(f"f{fid} = create_future()", lambda s: s.futures.__setitem__(fid, s.loop.create_future()))
        return fid

    def _task(self, plan, awaited):
        tid = next(ids)

        def op(s):
            t = s.loop.create_task(_task_body(s, tid, plan, awaited))
            t.add_done_callback(lambda fut: s.ev("main", "done", tid, _outcome(fut)))
            s.futures[tid] = t

        self.apply(f"t{tid} = create_task({plan}, awaits=f{awaited})", op)
        return tid

    @rule(target=futures, plan=st.lists(st.sampled_from(["sleep0", "raise", "swallow"]), max_size=4))
    def create_task(self, plan):
        return self._task(plan, None)

    @rule(target=futures, f=futures, plan=st.lists(st.sampled_from(["sleep0", "raise", "swallow", "await"]), max_size=4))
    def create_task_awaiting(self, f, plan):
        return self._task(plan, f)

    @rule(f=futures, value=st.integers(0, 9))
    def set_result(self, f, value):
        self.apply(f"f{f}.set_result({value})", lambda s: s.attempt("main", s.futures[f].set_result, value))

    @rule(f=futures)
    def set_exception(self, f):
        self.apply(f"f{f}.set_exception(FuzzError)", lambda s: s.attempt("main", s.futures[f].set_exception, FuzzError("main")))

    @rule(f=futures, msg=st.sampled_from([None, "why"]))
    def cancel_future(self, f, msg):
        def op(s):
            fut = s.futures[f]
            s.ev("main", "cancel", f, fut.cancel() if msg is None else fut.cancel(msg))

        self.apply(f"f{f}.cancel({msg})", op)

    @rule(f=futures)
    def future_state(self, f):
        def op(s):
            fut = s.futures[f]
            s.ev("main", "state", f, fut.done(), fut.cancelled())
            s.attempt("main", fut.result)
            s.attempt("main", fut.exception)

        self.apply(f"f{f} state", op)

    @rule(f=futures, raises=st.sampled_from([None, "value"]))
    def add_done_callback(self, f, raises):
        tag = next(ids)
        self.apply(f"f{f}.add_done_callback raises={raises}", lambda s: s.futures[f].add_done_callback(s.cb("main", f"d{tag}", raises)))

    # -- fd callbacks on socket pairs ------------------------------------------
    @rule(target=pairs)
    def socketpair(self):
        pid = next(ids)

        def op(s):
            a, b = socket.socketpair()
            a.setblocking(False)
            b.setblocking(False)
            s.pairs[pid] = (a, b)
            s.peer_rx[pid] = bytearray()

        self.apply(f"p{pid} = socketpair()", op)
        return pid

    def _reader(self, s, pid, raises):
        chan = f"p{pid}"

        def on_readable():
            a = s.pairs[pid][0]
            try:
                data = a.recv(1 << 20)
            except BlockingIOError:
                data = None
            s.ev(chan, "readable", data)
            if raises:
                raise FuzzError(chan)

        return on_readable

    def _pair_op(self, pid, fn):
        def op(s):
            if pid not in s.taken:
                fn(s)

        return op

    @rule(p=pairs, raises=st.booleans())
    def add_reader(self, p, raises):
        def op(s):
            s.attempt(f"p{p}", s.loop.add_reader, s.pairs[p][0], self._reader(s, p, raises))

        self.apply(f"add_reader(p{p}) raises={raises}", self._pair_op(p, op))

    @rule(p=pairs)
    def remove_reader(self, p):
        self.apply(f"remove_reader(p{p})", self._pair_op(p, lambda s: s.attempt(f"p{p}", s.loop.remove_reader, s.pairs[p][0])))

    @rule(p=pairs, raises=st.booleans())
    def add_writer(self, p, raises):
        def op(s):
            s.attempt(f"p{p}", s.loop.add_writer, s.pairs[p][0], s.cb(f"p{p}", "writable", "value" if raises else None))

        self.apply(f"add_writer(p{p}) raises={raises}", self._pair_op(p, op))

    @rule(p=pairs)
    def remove_writer(self, p):
        self.apply(f"remove_writer(p{p})", self._pair_op(p, lambda s: s.attempt(f"p{p}", s.loop.remove_writer, s.pairs[p][0])))

    @rule(p=pairs, data=small_data)
    def peer_send(self, p, data):
        def op(s):
            try:
                s.pairs[p][1].send(data)
            except OSError as exc:
                s.ev(f"p{p}", "peer-send-failed", exc.errno)

        self.apply(f"peer(p{p}).send({len(data)}B)", op)

    @rule(p=pairs)
    def peer_shutdown_write(self, p):
        def op(s):
            try:
                s.pairs[p][1].shutdown(socket.SHUT_WR)
            except OSError as exc:
                s.ev(f"p{p}", "peer-shutdown-failed", exc.errno)

        self.apply(f"peer(p{p}).shutdown(SHUT_WR)", op)

    @rule(p=pairs)
    def peer_close(self, p):
        def op(s):
            s.pairs[p][1].close()

        self.apply(f"peer(p{p}).close()", op)

    # -- transports on socket pairs --------------------------------------------
    @rule(p=pairs, target=conns)
    def connect_accepted_socket(self, p):
        chan = f"p{p}"

        def op(s):
            if p in s.taken or s.pairs[p][0].fileno() == -1:
                return
            s.taken.add(p)
            s.loop.remove_reader(s.pairs[p][0])
            s.loop.remove_writer(s.pairs[p][0])
            proto = Proto(s, chan)
            s.protos[chan] = proto
            s.ruc(chan, s.loop.connect_accepted_socket(lambda: proto, s.pairs[p][0]))

        self.apply(f"connect_accepted_socket(p{p})", op)
        return chan

    @rule(c=conns, data=st.one_of(small_data, st.integers(64, 1024).map(lambda k: b"x" * (k * 1024))))
    def write(self, c, data):
        def op(s):
            tr = s.transports.get(c)
            if tr is not None:
                try:
                    tr.write(data)
                except AttributeError as exc:
                    # The stock transport's write() can reach
                    # _fatal_error() after connection_lost() cleared its
                    # loop (a stock-loop bug; docs/design-notes.md).
                    if s.name != "asyncio" or "'NoneType'" not in str(exc):
                        s.ev(c, "write-raised", exc_sig(exc))
                except Exception as exc:
                    s.ev(c, "write-raised", exc_sig(exc))

        self.apply(f"{c}.write({len(data)}B)", op)

    @rule(c=conns, meth=st.sampled_from(["write_eof", "pause_reading", "resume_reading", "close", "abort", "is_closing", "is_reading", "can_write_eof"]))
    def transport_call(self, c, meth):
        def op(s):
            tr = s.transports.get(c)
            if tr is not None:
                try:
                    r = getattr(tr, meth)()
                    s.ev(c, meth, r)
                except AttributeError as exc:
                    # The stock transport's abort() after close() flushed its
                    # buffer raises: that path calls connection_lost() without
                    # counting it, so _force_close() reaches the cleared loop
                    # (a stock-loop bug; docs/design-notes.md).
                    if s.name == "asyncio" and meth == "abort" and "'NoneType'" in str(exc):
                        s.ev(c, meth, None)
                    else:
                        s.ev(c, meth, "raised", exc_sig(exc))
                except Exception as exc:
                    s.ev(c, meth, "raised", exc_sig(exc))

        self.apply(f"{c}.{meth}()", op)

    @rule(c=conns, method=st.sampled_from(["data_received", "eof_received", "connection_lost"]))
    def protocol_raises(self, c, method):
        def op(s):
            proto = s.protos.get(c)
            if proto is not None:
                proto.raise_in.add(method)

        self.apply(f"{c}: {method} raises next", op)

    @rule(c=conns, keep=st.booleans())
    def keep_open_on_eof(self, c, keep):
        def op(s):
            proto = s.protos.get(c)
            if proto is not None:
                proto.keep_open_on_eof = keep

        self.apply(f"{c}: eof_received returns {keep}", op)

    @rule(c=conns)
    def flush(self, c):
        """Runs the loop while the peer reads, until the transport has no
        buffered bytes (at most 200 iterations), then compares what the peer
        got so far and whether it saw end-of-file."""

        def op(s):
            if not c.startswith("p"):
                return
            pid = int(c[1:])
            peer = s.pairs[pid][1]
            eof = False
            for _ in range(200):
                if peer.fileno() == -1:
                    break
                try:
                    while True:
                        chunk = peer.recv(1 << 20)
                        if not chunk:
                            eof = True
                            break
                        s.peer_rx[pid] += chunk
                except BlockingIOError:
                    pass
                except OSError as exc:
                    s.ev(c, "peer-recv-failed", errno.errorcode.get(exc.errno, exc.errno))
                    break
                tr = s.transports.get(c)
                if eof or tr is None or tr.get_write_buffer_size() == 0:
                    break
                s.run(1)
            rx = bytes(s.peer_rx[pid])
            s.ev(c, "peer-got", len(rx), hash(rx), eof)

        self.apply(f"flush({c})", op)

    # -- servers and clients over loopback TCP ---------------------------------
    @rule(target=servers)
    def start_server(self):
        sid = next(ids)

        def op(s):
            counter = itertools.count()

            def factory():
                return Proto(s, f"s{sid}.{next(counter)}")

            ok, server = s.ruc("main", s.loop.create_server(factory, "127.0.0.1", 0))
            if ok:
                s.servers[sid] = server
                s.ev("main", "server", sid, "listening", server.is_serving())

        self.apply(f"s{sid} = create_server()", op)
        return sid

    @rule(srv=servers, target=conns)
    def connect_client(self, srv):
        cid = next(ids)
        chan = f"c{cid}"

        def op(s):
            server = s.servers.get(srv)
            if server is None:
                return
            socks = server.sockets
            if not socks:
                s.ev(chan, "no-sockets")
                return
            port = socks[0].getsockname()[1]
            proto = Proto(s, chan)
            s.protos[chan] = proto
            task = s.loop.create_task(s.loop.create_connection(lambda: proto, "127.0.0.1", port))
            task.add_done_callback(lambda t: s.ev(chan, "connect-done", _outcome(t)[0]))
            s.connecting.append(task)

        self.apply(f"{chan} = create_connection(s{srv})", op)
        return chan

    @rule(srv=servers, target=conns, clients=st.integers(1, 3))
    def connect_while_closing(self, srv, clients):
        """Clients start connecting and the server closes in the same
        operation, before either loop runs: every connect must be refused."""
        chans = [f"c{next(ids)}" for _ in range(clients)]

        def op(s):
            server = s.servers.get(srv)
            if server is None or not server.sockets:
                return
            port = server.sockets[0].getsockname()[1]
            for chan in chans:
                proto = Proto(s, chan)
                s.protos[chan] = proto
                task = s.loop.create_task(s.loop.create_connection(lambda p=proto: p, "127.0.0.1", port))
                task.add_done_callback(lambda t, c=chan: s.ev(c, "connect-done", _outcome(t)))
                s.connecting.append(task)
            server.close()

        self.apply(f"{chans} connect to s{srv}, s{srv}.close()", op)
        return chans[0]

    @rule(srv=servers)
    def close_server(self, srv):
        def op(s):
            server = s.servers.get(srv)
            if server is None:
                return
            server.close()
            s.ev("main", "server", srv, "closed", server.is_serving())

        self.apply(f"s{srv}.close()", op)

    @rule(srv=servers)
    def wait_closed(self, srv):
        def op(s):
            server = s.servers.get(srv)
            if server is None or server.is_serving():
                return  # would wait forever
            s.loop.call_soon(s.loop.stop)  # connections may still be open
            if s.ruc("main", server.wait_closed())[0]:
                s.ev("main", "server", srv, "wait_closed done")

        self.apply(f"s{srv}.wait_closed()", op)

    @invariant()
    def loops_agree_on_state(self):
        if not hasattr(self, "prog"):
            return
        states = [(s.loop.is_running(), s.loop.is_closed()) for s in self.prog.sides]
        assert states[0] == states[1], states


__all__ = ["LoopDiff", "OPS", "SEQUENCES", "Program", "Side", "norm"]
del precondition, os
