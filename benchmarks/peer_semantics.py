"""Where the peers' fewer system calls come from: behaviours that differ from the stock loop.

Some benchmark cells (UDP echo, streams and pg-pool's poll counts, call_soon_threadsafe)
show uvloop or rloop making fewer system calls or doing less work per op than ferroloop. This
script runs, on every installed loop, the small programs that tell whether such a saving comes
with an observable difference from the stock asyncio loop of the running Python. ferroloop
keeps the stock behaviour in each (its test suite holds it there), so a saving that needs the
difference is one it does not take.

Cases:
  fd-after-wakeup    a timer callback sends to a watched socket pair, then starts a two-hop
                     call_soon chain: the stock loop polls in every iteration, so the reader
                     runs between the hops. A loop that skips the poll after a wake-up runs
                     it later (or, in a short run, not at all).
  udp-batch          three datagrams queued on one endpoint; datagram_received schedules a
                     call_soon for each: the stock loop reads one datagram per readiness per
                     iteration, so each callback runs before the next datagram. A loop that
                     reads until EAGAIN delivers all three first.
  threadsafe-context a thread sets a ContextVar and posts call_soon_threadsafe: the stock
                     loop runs the callback in a copy of the poster's context.

    .venv/bin/python benchmarks/peer_semantics.py
"""

import asyncio
import contextvars
import importlib
import socket
import sys
import threading

from loops import LOOP_NAMES, new_loop


def fd_after_wakeup(loop):
    r, w = socket.socketpair()
    r.setblocking(False)
    order = []
    fut = loop.create_future()

    def on_readable():
        r.recv(100)
        order.append("reader")

    def hop2():
        order.append("hop2")
        fut.set_result(None)

    def hop1():
        order.append("hop1")
        loop.call_soon(hop2)

    def on_timer():
        w.send(b"x")
        loop.call_soon(hop1)

    # An int fd: every peer accepts one.
    loop.add_reader(r.fileno(), on_readable)
    loop.call_later(0.005, on_timer)
    try:
        loop.run_until_complete(fut)
    finally:
        loop.remove_reader(r.fileno())
        r.close()
        w.close()
    return order


def udp_batch(loop):
    order = []
    done = loop.create_future()

    class Receiver(asyncio.DatagramProtocol):
        def datagram_received(self, data, addr):
            tag = data.decode()
            order.append(tag)
            loop.call_soon(order.append, "soon" + tag)
            if tag == "3":
                loop.call_soon(done.set_result, None)

    async def main():
        transport, _ = await loop.create_datagram_endpoint(Receiver, local_addr=("127.0.0.1", 0))
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            for tag in (b"1", b"2", b"3"):
                sender.sendto(tag, transport.get_extra_info("sockname"))
            await done
        finally:
            sender.close()
            transport.close()

    loop.run_until_complete(main())
    return order


def threadsafe_context(loop):
    var = contextvars.ContextVar("request_id", default="unset")
    seen = []
    done = loop.create_future()

    def callback():
        seen.append(var.get())
        done.set_result(None)

    def poster():
        var.set("set by the posting thread")
        loop.call_soon_threadsafe(callback)

    async def main():
        thread = threading.Thread(target=poster)
        thread.start()
        await done
        thread.join()

    loop.run_until_complete(main())
    return seen


CASES = {
    "fd-after-wakeup": fd_after_wakeup,
    "udp-batch": udp_batch,
    "threadsafe-context": threadsafe_context,
}


def run_case(name, case):
    loop = new_loop(name)
    try:
        return case(loop)
    except Exception as exc:  # a peer lacking an API is reported, not fatal
        return f"{type(exc).__name__}: {exc}"
    finally:
        loop.close()


def main():
    available = []
    for name in LOOP_NAMES:
        try:
            importlib.import_module(name)
        except ImportError:
            continue
        available.append(name)
    print(f"python {sys.version.split()[0]}; loops: {', '.join(available)}")
    print("'stock' = the same result as the stock asyncio loop\n")
    widths = [max(len(c) for c in CASES)] + [max(9, len(n)) for n in available]
    print("  ".join(h.ljust(w) for h, w in zip(["case"] + available, widths)))
    print("  ".join("-" * w for w in widths))
    details = []
    for case_name, case in CASES.items():
        expected = run_case("asyncio", case)
        cells = []
        for name in available:
            got = expected if name == "asyncio" else run_case(name, case)
            if got == expected:
                cells.append("stock")
            else:
                cells.append("differs")
                details.append(f"  {case_name} on {name}: {got!r} (stock: {expected!r})")
        print("  ".join(c.ljust(w) for c, w in zip([case_name] + cells, widths)))
    if details:
        print("\ndifferences:")
        print("\n".join(details))


if __name__ == "__main__":
    main()
