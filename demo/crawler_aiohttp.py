"""The seeds' aiohttp crawler: one ClientSession fetching many pages at once.

    python demo/crawler_aiohttp.py --port PORT [--loop asyncio|ferroloop|uvloop|rloop]
                                   [--requests 3000] [--concurrency 100] [--size 16384] [--json]

Each fetch is the seeds' code (seed 001 section 0x06, seed 000's example)::

    async with session.get(url) as resp:
        body = await resp.text()

``--requests`` fetches are started at once (``asyncio.gather``), at most ``--concurrency``
of them in flight (an ``asyncio.Semaphore``; the session's connector has the same limit).
The fetches share one ``aiohttp.ClientSession``, as aiohttp recommends, so its connection
pool keeps connections alive between fetches. Every response must have status 200 and a
text body equal to the page the server serves (``page.make_page(size)``). Any failed fetch
makes the crawler exit with status 1 and say why. The first failure's traceback goes to
stderr.

Timing covers the timed fetches only. It leaves out interpreter start-up, imports, loop
creation and the warm-up fetches (which also fill the connection pool). ``--server-pids``
adds the server processes' CPU time over the timed fetches to the result. ``--json`` prints
one JSON object for ``main.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (LOOPS, Window, describe_exception, fail_line,  # noqa: E402
                    loop_description, loop_factory, parse_pids, pin_to_cpus, process_cpu,
                    summarize_errors)
from page import make_page  # noqa: E402


class FetchError(Exception):
    """A response that is not the page the server should have sent."""


async def fetch(session, url: str, sem: asyncio.Semaphore, expected: str) -> None:
    async with sem:
        async with session.get(url) as resp:
            body = await resp.text()
            status = resp.status
    if status != 200:
        raise FetchError(f"expected status 200, got {status}")
    if body != expected:
        raise FetchError(f"body of {len(body)} characters differs from the expected "
                         f"{len(expected)}-character page")


async def crawl(args: argparse.Namespace) -> dict:
    import aiohttp

    url = f"http://{args.host}:{args.port}/"
    expected = make_page(args.size).decode("utf-8")
    sem = asyncio.Semaphore(args.concurrency)
    server_pids = parse_pids(args.server_pids)
    first_traceback: list[str] = []

    async def run(session, n: int) -> list[BaseException]:
        results = await asyncio.gather(*[fetch(session, url, sem, expected) for _ in range(n)],
                                       return_exceptions=True)
        errors = [r for r in results if r is not None]
        if errors and not first_traceback:
            first_traceback.append("".join(traceback.format_exception(errors[0])))
        return errors

    def failed(errors: list[BaseException], attempted: int, stage: str) -> dict:
        sys.stderr.write(first_traceback[0] if first_traceback else "")
        return {"ok": attempted - len(errors), "failed": len(errors), "attempted": attempted,
                "stage": stage, "errors": summarize_errors(errors)}

    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        if args.warmup:
            errors = await run(session, args.warmup)
            if errors:
                return failed(errors, args.warmup, "warm-up")
        server_cpu0 = process_cpu(server_pids) if server_pids else None
        with Window(args.perf_control) as window:
            errors = await run(session, args.requests)
        server_cpu1 = process_cpu(server_pids) if server_pids else None
    if errors:
        return failed(errors, args.requests, "timed run")
    result = {"ok": args.requests, "failed": 0, "attempted": args.requests,
              **window.result()}
    if server_cpu0 is not None and server_cpu1 is not None:
        result["server_cpu"] = server_cpu1 - server_cpu0
    return result


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Concurrent crawler on aiohttp.ClientSession")
    p.add_argument("--loop", default="asyncio", choices=LOOPS,
                   help="event loop to crawl on: asyncio (stock, default), ferroloop, "
                        "uvloop or rloop")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, help="server port (required unless --probe)")
    p.add_argument("--requests", type=int, default=3000, help="timed fetches (3000)")
    p.add_argument("--concurrency", type=int, default=100, help="fetches in flight (100)")
    p.add_argument("--size", type=int, default=16 * 1024,
                   help="expected page size in bytes (16384)")
    p.add_argument("--warmup", type=int, default=200, help="untimed fetches first (200)")
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
              f"bytes with aiohttp, concurrency {args.concurrency}, in {result['wall']:.3f} s "
              f"= {result['ok'] / result['wall']:.0f} requests/s (CPU {result['cpu']:.3f} s: "
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
