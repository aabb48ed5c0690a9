"""The seed article's asyncio crawler, written with the loop's low-level socket methods.

    python demo/crawler_raw.py --port PORT [--loop asyncio|ferroloop|uvloop|rloop]
                               [--requests 2000] [--concurrency 200] [--size 16384] [--json]

Each fetch does what the article's socket crawler does, but asynchronously:

    sock = socket.socket(); sock.setblocking(False)
    await loop.sock_connect(sock, addr)
    await loop.sock_sendall(sock, b"GET / HTTP/1.1\\r\\nHost: ...\\r\\nConnection: Close\\r\\n\\r\\n")
    while chunk := await loop.sock_recv(sock, 65536): ...     # until the server closes

``--requests`` fetches are started at once (``asyncio.gather``), at most
``--concurrency`` of them in flight (an ``asyncio.Semaphore``). Every response must be a
complete ``HTTP/1.1 200`` with ``Connection: close`` and a body equal, byte for byte, to
the page the server serves (``page.make_page(size)``), whose length matches
``Content-Length``. Any failed fetch makes the crawler exit with status 1 and say why.

Timing covers the timed fetches only (not interpreter start-up, imports, loop creation
or the warm-up fetches). ``--json`` prints one JSON object for ``main.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (LOOPS, Window, describe_exception, fail_line,  # noqa: E402
                    loop_description, loop_factory, parse_pids, pin_to_cpus, process_cpu,
                    summarize_errors)
from page import make_page  # noqa: E402


class FetchError(Exception):
    """A response that is not the complete page the server should have sent."""


def check_response(response: bytes, expected_body: bytes) -> None:
    head, sep, body = response.partition(b"\r\n\r\n")
    if not sep:
        raise FetchError(f"no end of headers in a {len(response)}-byte response: "
                         f"{response[:80]!r}")
    lines = head.split(b"\r\n")
    status = lines[0].split(b" ", 2)
    if len(status) < 2 or status[0] != b"HTTP/1.1" or status[1] != b"200":
        raise FetchError(f"expected 'HTTP/1.1 200 ...', got {lines[0][:80]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"connection", b"").lower() != b"close":
        raise FetchError(f"expected 'Connection: close', got {headers.get(b'connection')!r}")
    length = headers.get(b"content-length")
    if length is None or not length.isdigit():
        raise FetchError(f"missing or invalid Content-Length: {length!r}")
    if int(length) != len(body):
        raise FetchError(f"Content-Length says {int(length)} bytes, received {len(body)}")
    if body != expected_body:
        raise FetchError(f"body of {len(body)} bytes differs from the expected "
                         f"{len(expected_body)}-byte page")


async def fetch(loop: asyncio.AbstractEventLoop, family: int, addr: tuple, request: bytes,
                sem: asyncio.Semaphore, expected_body: bytes) -> None:
    """One request on a fresh non-blocking socket, read until the server closes, checked."""
    async with sem:
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, addr)
            await loop.sock_sendall(sock, request)
            chunks = []
            while True:
                chunk = await loop.sock_recv(sock, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
        finally:
            sock.close()
    check_response(b"".join(chunks), expected_body)


async def crawl(args: argparse.Namespace) -> dict:
    loop = asyncio.get_running_loop()
    host, port = args.host, args.port
    family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    host_header = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
    request = f"GET / HTTP/1.1\r\nHost: {host_header}\r\nConnection: Close\r\n\r\n".encode()
    expected = make_page(args.size)
    sem = asyncio.Semaphore(args.concurrency)
    server_pids = parse_pids(args.server_pids)
    first_traceback: list[str] = []

    async def run(n: int) -> list[BaseException]:
        results = await asyncio.gather(
            *[fetch(loop, family, addr, request, sem, expected) for _ in range(n)],
            return_exceptions=True)
        errors = [r for r in results if r is not None]
        if errors and not first_traceback:
            first_traceback.append("".join(traceback.format_exception(errors[0])))
        return errors

    def failed(errors: list[BaseException], attempted: int, stage: str) -> dict:
        sys.stderr.write(first_traceback[0] if first_traceback else "")
        return {"ok": attempted - len(errors), "failed": len(errors), "attempted": attempted,
                "stage": stage, "errors": summarize_errors(errors)}

    if args.warmup:
        errors = await run(args.warmup)
        if errors:
            return failed(errors, args.warmup, "warm-up")
    server_cpu0 = process_cpu(server_pids) if server_pids else None
    with Window(args.perf_control) as window:
        errors = await run(args.requests)
    server_cpu1 = process_cpu(server_pids) if server_pids else None
    if errors:
        return failed(errors, args.requests, "timed run")
    result = {"ok": args.requests, "failed": 0, "attempted": args.requests,
              **window.result()}
    if server_cpu0 is not None and server_cpu1 is not None:
        result["server_cpu"] = server_cpu1 - server_cpu0
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Concurrent crawler on loop.sock_* methods")
    p.add_argument("--loop", default="asyncio", choices=LOOPS,
                   help="event loop to crawl on: asyncio (stock, default), ferroloop, "
                        "uvloop or rloop")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, help="server port (required)")
    p.add_argument("--requests", type=int, default=2000, help="timed fetches (2000)")
    p.add_argument("--concurrency", type=int, default=200, help="fetches in flight (200)")
    p.add_argument("--size", type=int, default=16 * 1024,
                   help="expected page size in bytes (16384)")
    p.add_argument("--warmup", type=int, default=100, help="untimed fetches first (100)")
    p.add_argument("--server-pids", help="comma-separated server pids whose CPU to measure")
    p.add_argument("--cpus", help="comma-separated CPUs to run on (os.sched_setaffinity)")
    p.add_argument("--perf-control", metavar="CTL,ACK",
                   help="FIFOs of `perf record --control`: profile the timed fetches only")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if args.port is None:
        p.error("--port is required")
    if args.requests < 1 or args.concurrency < 1 or args.warmup < 0:
        p.error("--requests and --concurrency must be >= 1, --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pin_to_cpus(args.cpus)
    result: dict = {"loop": args.loop}
    try:
        factory = loop_factory(args.loop)
        with asyncio.Runner(loop_factory=factory) as runner:
            result["loop_class"] = loop_description(runner.get_loop())
            result.update(runner.run(crawl(args)))
    except Exception as exc:  # noqa: BLE001 - the whole run failed: report it
        fail_line("crawler", exc)
        result.update(failed=1, fatal=True, errors=[describe_exception(exc)])
    result.update(requests=args.requests, concurrency=args.concurrency)
    if args.json:
        print(json.dumps(result), flush=True)
    elif not result["failed"]:
        print(f"{args.loop} ({result['loop_class']}): {result['ok']} fetches of {args.size} "
              f"bytes, concurrency {args.concurrency}, in {result['wall']:.3f} s = "
              f"{result['ok'] / result['wall']:.0f} requests/s (CPU {result['cpu']:.3f} s: "
              f"user {result['user']:.3f}, sys {result['sys']:.3f})")
    if result["failed"]:
        if not result.get("fatal"):
            print(f"crawler[{args.loop}]: {result['failed']} of {result['attempted']} fetches "
                  f"FAILED in the {result['stage']}; errors:", file=sys.stderr)
            for err in result["errors"]:
                print(f"  {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
