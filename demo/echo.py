"""Echo benchmark: a Protocol echo server and its clients, all on the loop under test.

    python demo/echo.py [--loop asyncio|ferroloop|uvloop|rloop] [--connections 10]
                        [--size 1024] [--duration 1.0] [--json]

One process, one loop:

* server: ``loop.create_server`` on 127.0.0.1 (any free port) with a Protocol whose
  ``data_received`` writes the data straight back (``transport.write``);
* clients: ``--connections`` connections made with ``loop.create_connection``. Each one sends
  a ``--size``-byte message, waits until the whole message has come back, checks it byte for
  byte (each connection has its own random message), and sends it again (ping-pong).

After a short warm-up, the clients run for ``--duration`` seconds; the result is the number of
messages echoed and checked in that window (messages/s). Both ends run on the loop under test,
so every message costs that loop two reads and two writes. A wrong or extra byte, an error the
loop reports to its exception handler, or a connection lost early fails the run (exit 1).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (LOOPS, Window, describe_exception, fail_line,  # noqa: E402
                    loop_description, loop_factory, summarize_errors)


class EchoError(Exception):
    """The echo came back wrong, or a connection ended too early."""


class Bench:
    """State shared by the clients: the message count, errors, and the stop flag."""

    def __init__(self) -> None:
        self.count = 0
        self.errors: list[BaseException | str] = []
        self.stopping = False


class EchoServerProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    # eof_received returns None: the transport closes itself when the client is done.


class EchoClientProtocol(asyncio.Protocol):
    def __init__(self, bench: Bench, message: bytes, done: asyncio.Future) -> None:
        self.bench = bench
        self.message = message
        self.size = len(message)
        self.done = done
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.message)

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        if not buf and data == self.message:  # the usual case: the echo in one piece
            pass
        else:
            buf += data
            if len(buf) < self.size:
                return
            if len(buf) > self.size or buf != self.message:
                self._fail(EchoError(f"echo of a {self.size}-byte message came back "
                                     f"different ({len(buf)} bytes)"))
                return
            buf.clear()
        self.bench.count += 1
        if self.bench.stopping:
            self.transport.close()
        else:
            self.transport.write(self.message)

    def _fail(self, exc: BaseException) -> None:
        self.bench.errors.append(exc)
        self.transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.bench.stopping and not self.bench.errors:
            self.bench.errors.append(exc or EchoError("the server closed a connection early"))
        if not self.done.done():
            self.done.set_result(None)


async def echo(args: argparse.Namespace) -> dict:
    loop = asyncio.get_running_loop()
    bench = Bench()

    def exception_handler(loop: asyncio.AbstractEventLoop, context: dict) -> None:
        exc = context.get("exception")
        bench.errors.append(exc if exc is not None else str(context.get("message")))
        loop.default_exception_handler(context)

    loop.set_exception_handler(exception_handler)
    server = await loop.create_server(EchoServerProtocol, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    dones = []
    try:
        for _ in range(args.connections):
            done = loop.create_future()
            dones.append(done)
            message = os.urandom(args.size)
            await loop.create_connection(lambda m=message, d=done: EchoClientProtocol(bench, m, d),
                                         "127.0.0.1", port)
        await asyncio.sleep(args.warmup)
        count0 = bench.count
        with Window() as window:
            await asyncio.sleep(args.duration)
            count1 = bench.count
        bench.stopping = True
        # Every client closes after its next echo; wait for all of them.
        finished, _ = await asyncio.wait(dones, timeout=5.0)
        if len(finished) < len(dones) and not bench.errors:
            bench.errors.append(EchoError(f"{len(dones) - len(finished)} connection(s) did "
                                          f"not finish within 5 s of the stop"))
    finally:
        bench.stopping = True
        server.close()
        await server.wait_closed()
    messages = count1 - count0
    if not bench.errors and messages == 0:
        bench.errors.append(EchoError(f"no message was echoed in {args.duration} s"))
    if bench.errors:
        first = next((e for e in bench.errors if isinstance(e, BaseException)), None)
        if first is not None:
            fail_line("echo", first)
        return {"failed": len(bench.errors), "errors": summarize_errors(bench.errors)}
    return {"failed": 0, "messages": messages, **window.result()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Protocol echo server + clients on one loop")
    p.add_argument("--loop", default="asyncio", choices=LOOPS,
                   help="event loop: asyncio (stock, default), ferroloop, uvloop or rloop")
    p.add_argument("--connections", type=int, default=10, help="client connections (10)")
    p.add_argument("--size", type=int, default=1024, help="message size in bytes (1024)")
    p.add_argument("--duration", type=float, default=1.0, help="timed seconds (1.0)")
    p.add_argument("--warmup", type=float, default=0.2, help="untimed seconds first (0.2)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if args.connections < 1 or args.size < 1 or args.duration <= 0 or args.warmup < 0:
        p.error("--connections and --size must be >= 1, --duration > 0, --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result: dict = {"loop": args.loop}
    try:
        factory = loop_factory(args.loop)
        with asyncio.Runner(loop_factory=factory) as runner:
            result["loop_class"] = loop_description(runner.get_loop())
            result.update(runner.run(echo(args)))
    except Exception as exc:  # noqa: BLE001 - the whole run failed: report it
        fail_line("echo", exc)
        result.update(failed=1, fatal=True, errors=[describe_exception(exc)])
    result.update(connections=args.connections, size=args.size)
    if args.json:
        print(json.dumps(result), flush=True)
    elif not result["failed"]:
        print(f"{args.loop} ({result['loop_class']}): {result['messages']} messages of "
              f"{args.size} bytes echoed over {args.connections} connections in "
              f"{result['wall']:.3f} s = {result['messages'] / result['wall']:.0f} messages/s "
              f"(CPU {result['cpu']:.3f} s)")
    if result["failed"]:
        if not result.get("fatal"):
            print(f"echo[{args.loop}]: FAILED; errors:", file=sys.stderr)
            for err in result["errors"]:
                print(f"  {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
