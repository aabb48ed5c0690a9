"""`make demo`: the seed article's concurrent crawler, on stock asyncio vs ferroloop.

    python demo/main.py [--loops asyncio,ferroloop,uvloop] [--requests 10000]
                        [--concurrency 200] [--size 16384] [--rounds 5]

1. Starts ``server.py`` (a local HTTP/1.1 server, 2 worker processes) on a free port.
2. Runs ``crawler.py`` once per loop per round, each run in a fresh interpreter, the
   order of the loops rotated from round to round so that no loop always goes first.
3. Prints, per loop, the median over the rounds: requests, wall time, requests/s, the
   crawler's CPU time, and the speed relative to stock asyncio.

Default loops: asyncio and ferroloop, plus uvloop when it is importable. If ferroloop
was asked for but cannot be imported, the other loops still run and are reported, then
the demo says so and exits with status 1. Any failed fetch also makes it exit 1.
The server (and a crawler still running) is stopped on every exit path, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import selectors
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "server.py")
CRAWLER = os.path.join(HERE, "crawler.py")
KNOWN_LOOPS = ("asyncio", "ferroloop", "uvloop", "rloop")
# The module a loop's class must come from, to be sure each run used the loop it names.
LOOP_MODULE = {"asyncio": "asyncio.", "ferroloop": "ferroloop", "uvloop": "uvloop",
               "rloop": "rloop"}


class DemoError(Exception):
    """A failure that ends the demo with a one-line explanation."""


class Server:
    """The HTTP server child process: started on a free port, always stopped."""

    def __init__(self, size: int, workers: int) -> None:
        self.size = size
        self.workers = workers
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.banner = ""

    def start(self, timeout: float = 15.0) -> None:
        cmd = [sys.executable, SERVER, "--port", "0", "--size", str(self.size),
               "--workers", str(self.workers), "--lifeline-stdin"]
        # Own session: Ctrl-C reaches only this process, which then stops the server
        # in order. The stdin pipe is the server's lifeline: if this process dies
        # without cleaning up (even SIGKILL), the server sees EOF and exits.
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     start_new_session=True)
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        while not sel.select(max(0.0, deadline - time.monotonic())):
            if time.monotonic() >= deadline:
                raise DemoError(f"the server did not report its port within {timeout:.0f} s")
        line = self.proc.stdout.readline().decode(errors="replace").strip()
        if not line.startswith("READY "):
            raise DemoError(f"the server failed to start (exit status {self.proc.poll()}); "
                            f"it said: {line!r}")
        self.port = int(line.split()[1])
        self.banner = line.split(None, 2)[2] if line.count(" ") >= 2 else ""

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            proc.stdin.close()  # lifeline EOF
        except OSError:
            pass
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            # Last resort: the server's whole process group (its workers included).
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        proc.stdout.close()


class Children:
    """The crawler currently running, so that it can be killed on Ctrl-C or failure."""

    current: subprocess.Popen | None = None

    @classmethod
    def run(cls, cmd: list[str], timeout: float) -> tuple[int, str, str]:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        cls.current = proc
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            err = (err or b"") + f"\n(killed after {timeout:.0f} s)".encode()
            return -9, out.decode(errors="replace"), err.decode(errors="replace")
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            cls.current = None
        return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


def probe(loop: str) -> tuple[str | None, str]:
    """Check in a fresh interpreter that ``loop`` imports and runs; (loop class, error)."""
    rc, out, err = Children.run([sys.executable, CRAWLER, "--loop", loop, "--probe"], 30)
    if rc == 0:
        return out.strip(), ""
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    reason = lines[-1] if lines else f"exit status {rc}"
    return None, reason.removeprefix(f"crawler: cannot import {loop}: ")


def crawl(loop: str, args: argparse.Namespace, port: int) -> dict:
    cmd = [sys.executable, CRAWLER, "--loop", loop, "--port", str(port), "--json",
           "--requests", str(args.requests), "--concurrency", str(args.concurrency),
           "--size", str(args.size), "--warmup", str(args.warmup)]
    rc, out, err = Children.run(cmd, args.timeout)
    result = None
    for line in out.splitlines():
        if line.startswith("{"):
            result = json.loads(line)
    if rc != 0 or result is None or result.get("failed"):
        status = (f"killed by {signal.Signals(-rc).name}" if rc < 0 and -rc in
                  signal.valid_signals() else f"exit status {rc}")
        detail = err.strip() or out.strip()
        return {"error": status + ("\n" + detail if detail else "")}
    return result


def default_loops() -> list[str]:
    loops = ["asyncio", "ferroloop"]
    if importlib.util.find_spec("uvloop") is not None:
        loops.append("uvloop")
    return loops


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Concurrent crawler demo: stock asyncio vs ferroloop, side by side.")
    p.add_argument("--loops", type=lambda s: [x.strip() for x in s.split(",") if x.strip()],
                   default=None,
                   help="comma-separated loops to compare, among "
                        f"{','.join(KNOWN_LOOPS)} (default: asyncio,ferroloop, "
                        "plus uvloop when importable); asyncio is always included")
    p.add_argument("--requests", type=int, default=10000,
                   help="timed fetches per run (10000)")
    p.add_argument("--concurrency", type=int, default=200, help="fetches in flight (200)")
    p.add_argument("--size", type=int, default=16 * 1024, help="page size in bytes (16384)")
    p.add_argument("--rounds", type=int, default=5, help="runs per loop; medians shown (5)")
    p.add_argument("--warmup", type=int, default=200,
                   help="untimed fetches at the start of each run (200)")
    p.add_argument("--workers", type=int, default=2, help="server worker processes (2)")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds before a crawler run is killed and counted as failed (30)")
    args = p.parse_args(argv)
    loops = args.loops if args.loops is not None else default_loops()
    unknown = [x for x in loops if x not in KNOWN_LOOPS]
    if unknown:
        p.error(f"unknown loop(s) {','.join(unknown)}; expected some of {','.join(KNOWN_LOOPS)}")
    # asyncio is the baseline every ratio is relative to: always first, never twice.
    args.loops = ["asyncio"] + [x for i, x in enumerate(loops)
                                if x != "asyncio" and x not in loops[:i]]
    if min(args.requests, args.concurrency, args.rounds, args.workers) < 1 or args.warmup < 0:
        p.error("--requests, --concurrency, --rounds and --workers must be >= 1")
    return args


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def report(args: argparse.Namespace, runs: dict[str, list[dict]], failed: dict[str, str],
           unavailable: dict[str, str]) -> None:
    print()
    print(f"{'loop':<11}{'requests':>9}{'wall (s)':>10}{'requests/s':>12}{'CPU (s)':>9}"
          f"{'vs asyncio':>12}")
    base_rps = None
    for loop in args.loops:
        if loop in unavailable:
            print(f"{loop:<11}{'  not measured: cannot be imported (see below)'}")
            continue
        if loop in failed:
            print(f"{loop:<11}{'  FAILED (see above)'}")
            continue
        wall = statistics.median(r["wall"] for r in runs[loop])
        cpu = statistics.median(r["cpu"] for r in runs[loop])
        rps = args.requests / wall
        if loop == "asyncio":
            base_rps = rps
        ratio = rps / base_rps if base_rps else None
        print(f"{loop:<11}{args.requests:>9}{wall:>10.3f}{rps:>12.0f}{cpu:>9.3f}"
              f"{fmt_ratio(ratio):>12}")
    print(f"(median of {args.rounds} run(s) each; 'vs asyncio' = requests/s relative to "
          f"stock asyncio, higher is faster)")


def run_demo(args: argparse.Namespace, server: Server) -> int:
    unavailable: dict[str, str] = {}
    classes: dict[str, str] = {}
    for loop in args.loops:
        cls, err = probe(loop)
        if cls is None:
            unavailable[loop] = err
            print(f"note: {loop} cannot be imported: {err}", flush=True)
        else:
            classes[loop] = cls
            if not cls.startswith(LOOP_MODULE[loop]):
                print(f"warning: --loop {loop} ran on {cls}, not on {loop}'s own loop",
                      flush=True)
    if "asyncio" in unavailable:
        raise DemoError(f"stock asyncio does not work here: {unavailable['asyncio']}")

    server.start()
    print(f"server: 127.0.0.1:{server.port} ({server.banner})")
    print(f"crawl: {args.requests} x GET / (Connection: close), {args.concurrency} in flight, "
          f"loop.sock_connect/sock_sendall/sock_recv; {args.rounds} round(s), "
          f"fresh process per run", flush=True)

    usable = [x for x in args.loops if x not in unavailable]
    runs: dict[str, list[dict]] = {x: [] for x in usable}
    failed: dict[str, str] = {}
    for rnd in range(args.rounds):
        shift = rnd % len(usable)
        order = usable[shift:] + usable[:shift]
        cells = []
        for loop in order:
            if loop in failed:
                continue
            result = crawl(loop, args, server.port)
            if "error" in result:
                failed[loop] = result["error"]
                print(f"\n{loop} FAILED in round {rnd + 1}: {result['error']}", file=sys.stderr,
                      flush=True)
                cells.append(f"{loop} FAILED")
                continue
            runs[loop].append(result)
            cells.append(f"{loop} {result['wall']:.3f} s")
        print(f"round {rnd + 1}/{args.rounds}: " + ", ".join(cells), flush=True)

    report(args, runs, failed, unavailable)
    print("loops: " + ", ".join(f"{x}={classes[x]}" for x in usable))
    sys.stdout.flush()
    status = 0
    if failed:
        print(f"\nFAILED: the crawler failed under {', '.join(failed)} (details above).",
              file=sys.stderr)
        status = 1
    if unavailable:
        for loop, err in unavailable.items():
            hint = " Build and install it first (e.g. `maturin develop --release`)." \
                if loop == "ferroloop" else ""
            print(f"\nERROR: {loop} could not be imported, so it was not measured: {err}.{hint}",
                  file=sys.stderr)
        status = 1
    return status


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # keep stdout/stderr in order when piped
    # SIGTERM is handled like Ctrl-C: unwind through the finally blocks below.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    server = Server(args.size, args.workers)
    try:
        return run_demo(args, server)
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo: interrupted; stopping the server", file=sys.stderr)
        return 130
    finally:
        proc = Children.current
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        server.stop()


if __name__ == "__main__":
    sys.exit(main())
