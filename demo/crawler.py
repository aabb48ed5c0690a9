"""The seed article's asyncio crawler, written with the loop's low-level socket methods.

    python demo/crawler.py --port PORT [--loop asyncio|ferroloop|uvloop|rloop]
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
import time
from typing import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from page import make_page  # noqa: E402


LOOPS = ("asyncio", "ferroloop", "uvloop", "rloop")


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """Return ``new_event_loop`` of the named loop implementation (imports it)."""
    if name == "asyncio":
        return asyncio.SelectorEventLoop  # the stock loop on Linux
    if name in LOOPS:
        module = __import__(name)
        return module.new_event_loop
    raise ValueError(f"unknown loop {name!r}: expected asyncio, ferroloop, uvloop or rloop")


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


async def crawl(host: str, port: int, requests: int, concurrency: int, size: int,
                warmup: int) -> dict:
    loop = asyncio.get_running_loop()
    family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    host_header = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
    request = f"GET / HTTP/1.1\r\nHost: {host_header}\r\nConnection: Close\r\n\r\n".encode()
    expected = make_page(size)
    sem = asyncio.Semaphore(concurrency)

    async def run(n: int) -> tuple[int, list[str]]:
        results = await asyncio.gather(
            *[fetch(loop, family, addr, request, sem, expected) for _ in range(n)],
            return_exceptions=True)
        errors = [f"{type(r).__name__}: {r}" for r in results if r is not None]
        return n - len(errors), errors

    if warmup:
        _, errors = await run(warmup)
        if errors:
            return {"ok": 0, "failed": len(errors), "attempted": warmup, "errors": errors[:5],
                    "warmup_failed": True}
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    ok, errors = await run(requests)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    return {"ok": ok, "failed": len(errors), "attempted": requests, "errors": errors[:5],
            "wall": wall, "cpu": cpu}


def loop_description(loop: asyncio.AbstractEventLoop) -> str:
    cls = type(loop)
    return f"{cls.__module__}.{cls.__qualname__}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Concurrent crawler on loop.sock_* methods")
    p.add_argument("--loop", default="asyncio", choices=LOOPS,
                   help="event loop to crawl on: asyncio (stock, default), ferroloop, "
                        "uvloop or rloop")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, help="server port (required unless --probe)")
    p.add_argument("--requests", type=int, default=2000, help="timed fetches (2000)")
    p.add_argument("--concurrency", type=int, default=200, help="fetches in flight (200)")
    p.add_argument("--size", type=int, default=16 * 1024,
                   help="expected page size in bytes (16384)")
    p.add_argument("--warmup", type=int, default=100, help="untimed fetches first (100)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--probe", action="store_true",
                   help="only check that the loop imports and runs; print its class")
    args = p.parse_args(argv)
    if not args.probe and args.port is None:
        p.error("--port is required")
    if args.requests < 1 or args.concurrency < 1 or args.warmup < 0:
        p.error("--requests and --concurrency must be >= 1, --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        factory = loop_factory(args.loop)
    except ImportError as exc:
        print(f"crawler: cannot import {args.loop}: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return 2
    with asyncio.Runner(loop_factory=factory) as runner:
        loop_cls = loop_description(runner.get_loop())
        if args.probe:
            runner.run(asyncio.sleep(0))
            print(loop_cls)
            return 0
        result = runner.run(crawl(args.host, args.port, args.requests, args.concurrency,
                                  args.size, args.warmup))
    result.update(loop=args.loop, loop_class=loop_cls, requests=args.requests,
                  concurrency=args.concurrency)
    if args.json:
        print(json.dumps(result))
    elif not result["failed"]:
        print(f"{args.loop} ({loop_cls}): {result['ok']} fetches of {args.size} bytes, "
              f"concurrency {args.concurrency}, in {result['wall']:.3f} s = "
              f"{result['ok'] / result['wall']:.0f} requests/s "
              f"(CPU {result['cpu']:.3f} s)")
    if result["failed"]:
        stage = "warm-up" if result.get("warmup_failed") else "timed run"
        print(f"crawler[{args.loop}]: {result['failed']} of {result['attempted']} fetches "
              f"FAILED in the {stage}; first errors:", file=sys.stderr)
        for err in result["errors"]:
            print(f"  {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
