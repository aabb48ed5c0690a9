"""`make demo`: the seeds' aiohttp crawler and an echo benchmark, stock asyncio vs ferroloop.

    python demo/main.py [--loops asyncio,ferroloop,uvloop] [--crawler aiohttp|raw]
                        [--parts crawl,echo] [--rounds 5] [--requests N] ...

Part 1, crawl: starts ``server.py`` on a free port (by default its light app: a minimal
asyncio.Protocol HTTP server answering with a pre-built response, so that it costs little;
``--server aiohttp`` for an aiohttp.web app), then runs ``crawler_aiohttp.py`` (one
``aiohttp.ClientSession`` fetching many pages at once) once per loop per round. With two
CPUs or more, the server runs on one CPU and the crawler on another (``--no-pin`` to
share). ``--crawler raw`` runs the seed article's first step instead, ``crawler_raw.py``
(``loop.sock_connect/sock_sendall/sock_recv``). The table shows wall time, the crawler's
user and system CPU time and the speed-ups against asyncio, uvloop and rloop. Then one
more crawl per loop runs under ``perf record`` (``cpu_profile.py``, when perf works) to
show where the crawler's CPU goes, and a line says so when the loop is not the bottleneck.

Part 2, echo: runs ``echo.py`` (a Protocol echo server and its clients, both on the loop
under test) once per loop per round.

Every run is a fresh interpreter; the order of the loops rotates from round to round so
that no loop always goes first. Each part prints, per loop, the medians over the rounds
and the speed relative to stock asyncio.

Default loops: asyncio and ferroloop, plus uvloop and rloop when importable. A loop that
cannot be imported, or whose run fails (a failed fetch or echo, an exception such as
NotImplementedError, a timeout), is reported with the reason and left out of the
remaining rounds of that part; the other loops still run and are reported, and the demo
exits with status 1 at the end. The server (and any child still running) is stopped on
every exit path, Ctrl-C included.
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

import cpu_profile  # demo/ itself: a script's directory is the first entry of sys.path

HERE = os.path.dirname(os.path.abspath(__file__))

SERVER = os.path.join(HERE, "server.py")
COMMON = os.path.join(HERE, "common.py")
CRAWLERS = {"aiohttp": os.path.join(HERE, "crawler_aiohttp.py"),
            "raw": os.path.join(HERE, "crawler_raw.py")}
ECHO = os.path.join(HERE, "echo.py")
KNOWN_LOOPS = ("asyncio", "ferroloop", "uvloop", "rloop")
KNOWN_PARTS = ("crawl", "echo")
# The module a loop's class must come from, to be sure each run used the loop it names.
LOOP_MODULE = {"asyncio": "asyncio.", "ferroloop": "ferroloop", "uvloop": "uvloop",
               "rloop": "rloop"}
# Defaults that depend on the crawler: (requests, concurrency, warmup).
CRAWL_DEFAULTS = {"aiohttp": (5000, 100, 200), "raw": (10000, 200, 200)}
TRACEBACK_FRAMES = 6  # innermost frames of a failed child's traceback shown
# Below this share of the crawler's CPU in the loop's own code, the loop is not the
# bottleneck and the crawl's table gets a line saying so.
LOOP_BOTTLENECK_SHARE = 20.0


class DemoError(Exception):
    """A failure that ends the demo with a one-line explanation."""


class Server:
    """The HTTP server child process: started on a free port, always stopped."""

    def __init__(self, app: str, size: int, workers: int, cpus: str | None) -> None:
        self.app = app
        self.size = size
        self.workers = workers
        self.cpus = cpus
        self.proc: subprocess.Popen | None = None
        self.port = 0
        self.fields: dict[str, str] = {}

    def start(self, timeout: float = 15.0) -> None:
        cmd = [sys.executable, SERVER, "--port", "0", "--app", self.app,
               "--size", str(self.size), "--workers", str(self.workers), "--lifeline-stdin"]
        if self.cpus:
            cmd += ["--cpus", self.cpus]
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
        sel.close()
        line = self.proc.stdout.readline().decode(errors="replace").strip()
        if not line.startswith("READY "):
            raise DemoError(f"the server failed to start (exit status {self.proc.poll()}); "
                            f"it said: {line!r}")
        words = line.split()
        self.port = int(words[1])
        self.fields = dict(w.split("=", 1) for w in words[2:] if "=" in w)

    @property
    def pids(self) -> str:
        return self.fields.get("pids", "")

    def describe(self) -> str:
        app = ("aiohttp.web app" if self.app == "aiohttp" else
               "light: a minimal asyncio.Protocol HTTP app, pre-built response")
        how = ", SO_REUSEPORT" if self.workers > 1 else ""
        where = f", on CPU {self.cpus}" if self.cpus else ""
        return (f"{app} on 127.0.0.1:{self.port}, {self.workers} worker process(es){how}, "
                f"{self.fields.get('loop', '?')}{where}, page {self.size} bytes")

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
    """The child currently running, so that it can be killed on Ctrl-C or failure."""

    current: subprocess.Popen | None = None

    @classmethod
    def run(cls, cmd: list[str], timeout: float) -> tuple[int, str, str]:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        cls.current = proc
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            cls._kill(proc)
            out, err = proc.communicate()
            err = (err or b"") + f"\n(killed after {timeout:g} s)".encode()
            return -9, out.decode(errors="replace"), err.decode(errors="replace")
        finally:
            if proc.poll() is None:
                cls._kill(proc)
                proc.wait()
            cls.current = None
        return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        # The child's whole process group: under perf, the crawler is perf's child.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    @classmethod
    def kill_current(cls) -> None:
        proc = cls.current
        if proc is not None and proc.poll() is None:
            cls._kill(proc)
            proc.wait()


def probe(loop: str) -> tuple[str | None, str]:
    """Check in a fresh interpreter that ``loop`` imports and runs; (loop class, error)."""
    rc, out, err = Children.run([sys.executable, COMMON, "probe", loop], 30)
    if rc == 0:
        return out.strip(), ""
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    reason = lines[-1] if lines else f"exit status {rc}"
    return None, reason.removeprefix(f"cannot import {loop}: ")


def run_child(cmd: list[str], loop: str, timeout: float) -> dict:
    """Run one benchmark child; its JSON result, or {"error": line, "detail": stderr}."""
    rc, out, err = Children.run(cmd, timeout)
    result = None
    for line in out.splitlines():
        if line.startswith("{"):
            try:
                result = json.loads(line)
            except ValueError:
                pass
    if rc == 0 and result is not None and not result.get("failed"):
        cls = result.get("loop_class", "")
        if not cls.startswith(LOOP_MODULE[loop]):
            return {"error": f"ran on {cls}, not on {loop}'s own loop", "detail": ""}
        return result
    if result is not None and result.get("errors"):
        what = ""
        if result.get("attempted"):
            what = (f"{result['failed']} of {result['attempted']} fetches failed in the "
                    f"{result.get('stage', 'run')}: ")
        error = what + "; ".join(result["errors"])
    elif rc < 0 and -rc in signal.valid_signals():
        error = f"killed by {signal.Signals(-rc).name}"
    else:
        error = f"exit status {rc}"
    if rc == -9 and "\n(killed after" in err:
        err, _, note = err.rpartition("\n(")
        error = f"timed out ({note.strip().rstrip(')')})"
    return {"error": error, "detail": err.strip()}


def crawl_cmd(args: argparse.Namespace, loop: str, server: Server,
              requests: int | None = None) -> list[str]:
    cmd = [sys.executable, CRAWLERS[args.crawler], "--loop", loop, "--port", str(server.port),
           "--json", "--requests", str(requests or args.requests),
           "--concurrency", str(args.concurrency), "--size", str(args.size),
           "--warmup", str(args.warmup), "--server-pids", server.pids]
    if args.client_cpus:
        cmd += ["--cpus", args.client_cpus]
    return cmd


def placement(pin: bool) -> tuple[str | None, str | None]:
    """(server CPUs, crawler CPUs): the last allowed CPU and the first, when pinning."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not pin or len(cpus) < 2:
        return None, None
    return str(cpus[-1]), str(cpus[0])


def echo_cmd(args: argparse.Namespace, loop: str) -> list[str]:
    return [sys.executable, ECHO, "--loop", loop, "--json",
            "--connections", str(args.echo_connections), "--size", str(args.echo_size),
            "--duration", str(args.echo_duration)]


def default_loops() -> list[str]:
    loops = ["asyncio", "ferroloop"]
    loops += [x for x in ("uvloop", "rloop") if importlib.util.find_spec(x) is not None]
    return loops


def _list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="The seeds' aiohttp crawler and an echo benchmark: stock asyncio vs "
                    "ferroloop (and uvloop, rloop), side by side.")
    p.add_argument("--loops", type=_list, default=None,
                   help="comma-separated loops to compare, among "
                        f"{','.join(KNOWN_LOOPS)} (default: asyncio,ferroloop, "
                        "plus uvloop and rloop when importable); asyncio is always included")
    p.add_argument("--parts", type=_list, default=list(KNOWN_PARTS),
                   help="what to run: crawl, echo or both (default crawl,echo)")
    p.add_argument("--rounds", type=int, default=5, help="runs per loop and part; "
                   "medians shown (5)")
    p.add_argument("--timeout", type=float, default=20.0,
                   help="seconds before a run is killed and counted as failed (20)")
    p.add_argument("--verbose", action="store_true",
                   help="show a failed run's whole stderr, not just its last lines")
    g = p.add_argument_group("crawl")
    g.add_argument("--crawler", choices=tuple(CRAWLERS), default="aiohttp",
                   help="aiohttp: aiohttp.ClientSession against an aiohttp web server "
                        "(default); raw: the seed's loop.sock_connect/sock_sendall/sock_recv "
                        "crawler, Connection: close, against a minimal Protocol server")
    g.add_argument("--requests", type=int, help="timed fetches per run "
                   "(aiohttp 5000, raw 10000)")
    g.add_argument("--concurrency", type=int, help="fetches in flight (aiohttp 100, raw 200)")
    g.add_argument("--warmup", type=int, help="untimed fetches at the start of each run (200)")
    g.add_argument("--size", type=int, default=16 * 1024, help="page size in bytes (16384)")
    g.add_argument("--server", choices=("light", "aiohttp"), default="light",
                   help="light: a minimal asyncio.Protocol HTTP server that answers with a "
                        "pre-built response, so that the server costs little (default); "
                        "aiohttp: an aiohttp.web app (the raw crawler always uses light)")
    g.add_argument("--workers", type=int, help="server worker processes (light 1, aiohttp 2)")
    g.add_argument("--pin", action=argparse.BooleanOptionalAction, default=True,
                   help="with 2 or more CPUs, run the server on one CPU and the crawler on "
                        "another (os.sched_setaffinity), so the server never takes the "
                        "crawler's CPU (default: on)")
    g.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True,
                   help="after the rounds, one more crawl per loop under `perf record` "
                        "(when perf works here) to show where the crawler's CPU goes "
                        "(default: on)")
    g = p.add_argument_group("echo")
    g.add_argument("--echo-connections", type=int, default=10,
                   help="client connections (10)")
    g.add_argument("--echo-size", type=int, default=1024, help="message size in bytes (1024)")
    g.add_argument("--echo-duration", type=float, default=1.0,
                   help="timed seconds per run (1.0)")
    args = p.parse_args(argv)

    loops = args.loops if args.loops is not None else default_loops()
    unknown = [x for x in loops if x not in KNOWN_LOOPS]
    if unknown:
        p.error(f"unknown loop(s) {','.join(unknown)}; expected some of {','.join(KNOWN_LOOPS)}")
    # asyncio is the baseline every ratio is relative to: always first, never twice.
    args.loops = ["asyncio"] + [x for i, x in enumerate(loops)
                                if x != "asyncio" and x not in loops[:i]]
    bad_parts = [x for x in args.parts if x not in KNOWN_PARTS]
    if bad_parts or not args.parts:
        p.error(f"--parts takes some of {','.join(KNOWN_PARTS)}")
    args.parts = [x for x in KNOWN_PARTS if x in args.parts]
    requests, concurrency, warmup = CRAWL_DEFAULTS[args.crawler]
    args.requests = requests if args.requests is None else args.requests
    args.concurrency = concurrency if args.concurrency is None else args.concurrency
    args.warmup = warmup if args.warmup is None else args.warmup
    if args.crawler == "raw":
        args.server = "light"
    if args.workers is None:
        args.workers = 1 if args.server == "light" else 2
    args.server_cpus, args.client_cpus = placement(args.pin)
    if min(args.requests, args.concurrency, args.rounds, args.workers,
           args.echo_connections, args.echo_size) < 1 or args.warmup < 0 \
            or args.echo_duration <= 0 or args.size < 0:
        p.error("--requests, --concurrency, --rounds, --workers, --echo-connections and "
                "--echo-size must be >= 1; --warmup, --size >= 0; --echo-duration > 0")
    return args


def fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def compact_traceback(stderr: str, frames: int = TRACEBACK_FRAMES) -> list[str]:
    """The last traceback in ``stderr``: its innermost ``frames`` frames and the exception line.

    Only the ``File ..., line N, in f`` lines are kept (not the source lines), with the
    paths shortened. Without a traceback: the last lines of ``stderr``.
    """
    lines = stderr.splitlines()
    starts = [i for i, ln in enumerate(lines) if ln.startswith("Traceback (most recent call")]
    if not starts:
        tail = [ln for ln in lines if ln.strip()]
        return tail[-frames * 2:]
    block = lines[starts[-1] + 1:]
    file_lines = [i for i, ln in enumerate(block) if ln.startswith('  File "')]
    kept = []
    for i in file_lines[-frames:]:
        path, _, rest = block[i][len('  File "'):].partition('", ')
        kept.append(f"{short_path(path)}, {rest}")
    if len(file_lines) > frames:
        kept.insert(0, f"... ({len(file_lines) - frames} outer frame(s))")
    # The exception line: the first unindented line after the last frame's source lines.
    after = block[file_lines[-1] + 1:] if file_lines else block
    exc_line = next((ln for ln in after if ln.strip() and not ln.startswith(" ")), None)
    return kept + ([exc_line] if exc_line else [])


def short_path(path: str) -> str:
    """``.../site-packages/aiohttp/connector.py`` -> ``aiohttp/connector.py``."""
    for marker in ("/site-packages/", f"/lib/python{sys.version_info[0]}.{sys.version_info[1]}/",
                   HERE + "/", os.path.dirname(HERE) + "/"):
        if marker in path:
            return path.rsplit(marker, 1)[1] if marker != HERE + "/" else "demo/" + \
                path.rsplit(marker, 1)[1]
    return path


def short_error(error: str) -> str:
    """The table's version of a failure: the error without its location details."""
    short = error.split(" (", 1)[0]
    return short if len(short) <= 110 else short[:107] + "..."


def show_failure(part: str, loop: str, rnd: int, result: dict, verbose: bool) -> None:
    print(f"\n{loop} FAILED ({part}, round {rnd}): {result['error']}", file=sys.stderr)
    detail = result.get("detail", "")
    if verbose:
        shown = [ln for ln in detail.splitlines() if ln.strip()]
    else:
        shown = compact_traceback(detail)
        if "Traceback (most recent call" in detail:
            shown.insert(0, "traceback (innermost frames; --verbose shows the child's "
                            "whole stderr):")
    for ln in shown:
        print(f"  | {ln}", file=sys.stderr)
    print(file=sys.stderr, flush=True)


def run_rounds(part: str, args: argparse.Namespace, loops: list[str], cmd_for) -> tuple[
        dict[str, list[dict]], dict[str, str]]:
    """Run ``part`` once per loop per round (loop order rotated); (runs, failures)."""
    runs: dict[str, list[dict]] = {x: [] for x in loops}
    failed: dict[str, str] = {}
    for rnd in range(1, args.rounds + 1):
        shift = (rnd - 1) % len(loops)
        cells = []
        for loop in loops[shift:] + loops[:shift]:
            if loop in failed:
                continue
            result = run_child(cmd_for(loop), loop, args.timeout)
            if "error" in result:
                failed[loop] = result["error"]
                show_failure(part, loop, rnd, result, args.verbose)
                cells.append(f"{loop} FAILED")
                continue
            runs[loop].append(result)
            cells.append(f"{loop} {result['wall']:.3f} s" if part == "crawl" else
                         f"{loop} {result['messages'] / result['wall']:.0f}/s")
        print(f"round {rnd}/{args.rounds}: " + ", ".join(cells), flush=True)
    return runs, failed


def table(args: argparse.Namespace, runs: dict[str, list[dict]], failed: dict[str, str],
          unavailable: dict[str, str], columns: list[tuple[str, int, str]], row) -> None:
    """One line per loop. ``row(runs)`` gives (cells, work per second, work per CPU second);
    the last two columns are those rates relative to asyncio's."""
    print()
    print("".join(f"{title:<{w}}" if i == 0 else f"{title:>{w}}"
                  for i, (title, w, _) in enumerate(columns))
          + f"{'vs asyncio':>12}{'CPU vs asyncio':>16}")
    base = base_cpu = None
    for loop in args.loops:
        if loop in unavailable:
            print(f"{loop:<{columns[0][1]}}  not measured: cannot be imported (see the end)")
            continue
        if loop in failed:
            print(f"{loop:<{columns[0][1]}}  FAILED: {short_error(failed[loop])}")
            continue
        cells, rate, cpu_rate = row(runs[loop])
        if loop == "asyncio":
            base, base_cpu = rate, cpu_rate
        ratio = rate / base if base else None
        cpu_ratio = cpu_rate / base_cpu if base_cpu and cpu_rate else None
        print(f"{loop:<{columns[0][1]}}" +
              "".join(f"{cell:>{w}{fmt}}" for cell, (_, w, fmt) in zip(cells, columns[1:]))
              + f"{fmt_ratio(ratio):>12}{fmt_ratio(cpu_ratio):>16}")


def ratio_note(args: argparse.Namespace, work: str, process: str) -> str:
    return (f"(median of {args.rounds} run(s) each. Ratios to stock asyncio, higher is better: "
            f"'vs asyncio' = {work}/s;\n 'CPU vs asyncio' = {work} per CPU-second of "
            f"{process}: other load on the machine disturbs it less than wall time)")


def crawl_part(args: argparse.Namespace, loops: list[str],
               unavailable: dict[str, str]) -> dict[str, str]:
    app = "aiohttp" if args.server == "aiohttp" else "protocol"
    server = Server(app, args.size, args.workers, args.server_cpus)
    profiles: dict[str, dict] = {}
    try:
        server.start()
        if args.crawler == "aiohttp":
            how = ("aiohttp.ClientSession: async with session.get(url) as resp: await "
                   "resp.text(); keep-alive pool")
        else:
            how = ("loop.sock_connect/sock_sendall/sock_recv, Connection: close, "
                   "a new socket per fetch")
        print(f"\n== crawl: {args.requests} x GET / in {args.concurrency} concurrent fetches, "
              f"each checked (status 200, body == the {args.size}-byte page)")
        where = f", on CPU {args.client_cpus}" if args.client_cpus else ""
        print(f"   client: {how}{where}")
        print(f"   server: {server.describe()}", flush=True)
        if not args.server_cpus:
            print("   (not pinned: the server and the crawler share the CPUs)")
        runs, failed = run_rounds("crawl", args, loops, lambda loop: crawl_cmd(args, loop,
                                                                               server))
        if args.profile:
            profiles = profile_loops(args, [x for x in loops if runs[x] and x not in failed],
                                     server)
    finally:
        server.stop()

    crawl_table(args, runs, failed, unavailable)
    load_note(args, runs)
    busiest = max((r["server_cpu"] / (r["wall"] * args.workers)
                   for rs in runs.values() for r in rs if "server_cpu" in r), default=None)
    if busiest is not None and busiest > 0.8:
        print(f"warning: the server was busy {busiest:.0%} of the time in one run; the "
              f"numbers may be limited by the server (try --workers or a smaller --size)")
    explain_crawl(args, runs, failed, profiles)
    return failed


def crawl_medians(rs: list[dict]) -> dict[str, float]:
    keys = ("wall", "cpu", "user", "sys", "server_cpu")
    return {k: statistics.median(r[k] for r in rs) for k in keys if all(k in r for r in rs)}


def crawl_table(args: argparse.Namespace, runs: dict[str, list[dict]],
                failed: dict[str, str], unavailable: dict[str, str]) -> None:
    """The crawl's table: wall, the crawler's CPU (user, sys), speed-ups vs each reference."""
    med = {x: crawl_medians(runs[x]) for x in args.loops
           if x not in failed and x not in unavailable and runs.get(x)}
    refs = [x for x in ("asyncio", "uvloop", "rloop") if x in med]
    head1 = (f"{'':<11}{'':>12}{'':>10}{'crawler CPU (s)':>24}{'server':>9}"
             + "".join(f"{'speed-up vs ' + ref:>21}" for ref in refs))
    head2 = (f"{'loop':<11}{'requests/s':>12}{'wall (s)':>10}{'user':>8}{'sys':>8}{'total':>8}"
             f"{'CPU (s)':>9}" + f"{'wall':>11}{'CPU':>10}" * len(refs))
    print()
    print(head1)
    print(head2)
    for loop in args.loops:
        if loop in unavailable:
            print(f"{loop:<11}  not measured: cannot be imported (see the end)")
            continue
        if loop in failed:
            print(f"{loop:<11}  FAILED: {short_error(failed[loop])}")
            continue
        m = med[loop]
        cells = (f"{loop:<11}{args.requests / m['wall']:>12.0f}{m['wall']:>10.3f}"
                 f"{m.get('user', 0):>8.3f}{m.get('sys', 0):>8.3f}{m['cpu']:>8.3f}")
        cells += f"{m['server_cpu']:>9.3f}" if "server_cpu" in m else f"{'-':>9}"
        for ref in refs:
            wall_up = med[ref]["wall"] / m["wall"]
            cpu_up = med[ref]["cpu"] / m["cpu"] if m["cpu"] > 0 else None
            cells += f"{fmt_ratio(wall_up):>11}{fmt_ratio(cpu_up):>10}"
        print(cells)
    print(f"(median of {args.rounds} run(s) each, over the timed fetches. crawler CPU = the "
          f"crawler process, all its threads; server CPU = the {args.workers} server "
          f"worker(s).\n speed-up = the reference loop's time / this loop's time, wall or "
          f"crawler CPU: higher is better; CPU is disturbed less than wall time by other load)")


def load_note(args: argparse.Namespace, runs: dict[str, list[dict]]) -> None:
    """Say so when the crawler did not get its CPU: other processes loaded the machine."""
    if not args.client_cpus:
        return
    shares = [r["cpu"] / r["wall"] for rs in runs.values() for r in rs if r["wall"] > 0]
    if shares and statistics.median(shares) < 0.7:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        print(f"note: the crawler got only {statistics.median(shares):.0%} of its CPU "
              f"(median CPU / wall): other processes loaded the machine (load average "
              f"{load:.1f} on {os.cpu_count()} CPUs), so wall times are stretched; the CPU "
              f"columns are the fairer comparison")


def profile_loops(args: argparse.Namespace, loops: list[str], server: Server) -> dict[str, dict]:
    """One more crawl per loop under perf: where the crawler's CPU goes (see cpu_profile.py)."""
    if not loops:
        return {}
    reason = cpu_profile.perf_unavailable(Children.run)
    if reason is not None:
        print(f"profile: skipped ({reason}); --no-profile leaves it out", flush=True)
        return {}
    requests = max(1000, args.requests // 2)
    print(f"\nprofile: one more crawl per loop ({requests} fetches) under `perf record`, "
          f"timed fetches only; share of the crawler's CPU by code:")
    print(f"{'loop':<11}" + "".join(f"{g if g != 'loop' else 'loop itself':>14}"
                                    for g in cpu_profile.GROUPS), flush=True)
    profiles = {}
    for loop in loops:
        result = cpu_profile.profile(crawl_cmd(args, loop, server, requests), loop,
                                     Children.run, args.timeout * 2)
        profiles[loop] = result
        if "error" in result:
            print(f"{loop:<11}  not measured: {result['error']}", flush=True)
            continue
        sh = result["shares"]
        print(f"{loop:<11}" + "".join(
            f"{'(a)' if g == 'loop' and loop == 'asyncio' else f'{sh[g]:.1f}%':>14}"
            for g in cpu_profile.GROUPS), flush=True)
    if "asyncio" in profiles:
        print("(a) stock asyncio's loop is Python code: its cost is inside the interpreter's "
              "share. interpreter = all Python code: aiohttp's, asyncio's Tasks, the crawler's")
    return profiles


def explain_crawl(args: argparse.Namespace, runs: dict[str, list[dict]],
                  failed: dict[str, str], profiles: dict[str, dict]) -> None:
    """One line saying why the crawl's ratios are small, when the loop is not the bottleneck."""
    ok = [x for x in args.loops if runs.get(x) and x not in failed]
    if "asyncio" not in ok or len(ok) < 2:
        return
    cpu = {x: statistics.median(r["cpu"] for r in runs[x]) for x in ok}
    saved = {x: 1 - cpu[x] / cpu["asyncio"] for x in ok if x != "asyncio"}
    best = max(saved, key=saved.get)
    main_loop = "ferroloop" if "ferroloop" in saved else best

    def less(v: float) -> str:
        return f"{v:.0%} less" if v >= 0 else f"{-v:.0%} more"

    savings = f"{main_loop} needs {less(saved[main_loop])} CPU than asyncio" + (
        " (" + ", ".join(f"{x} {less(v)}" for x, v in saved.items() if x != main_loop) + ")"
        if len(saved) > 1 else "")
    python_code = ("aiohttp's Python code" if args.crawler == "aiohttp" else
                   "the crawler's Python code and asyncio's Tasks")
    shares = {x: p["shares"] for x, p in profiles.items() if "shares" in p}
    compiled = {x: sh["loop"] for x, sh in shares.items() if x != "asyncio"}
    if compiled:
        who = "ferroloop" if "ferroloop" in compiled else next(iter(compiled))
        if compiled[who] >= LOOP_BOTTLENECK_SHARE:
            return
        sh = shares[who]
        others = ", ".join(f"{x}'s {v:.0f}%" for x, v in compiled.items() if x != who)
        print(f"why the crawl gains little: the loop is not the bottleneck. {who}'s own code "
              f"is {sh['loop']:.1f}% of the crawler's CPU" + (f" ({others})" if others else "")
              + f"; the Python interpreter running {python_code} takes "
              f"{sh['interpreter']:.0f}%, the kernel {sh['kernel']:.0f}%. A compiled loop saves "
              f"only what stock asyncio's own Python loop code costs: here {savings}.")
    elif saved[best] < 1 - 1 / 1.5:
        print(f"why the crawl gains little: the loop is not the bottleneck. {savings}: the "
              f"rest is {python_code} and the kernel (with perf, the demo's profile measures "
              f"the split).")


def echo_part(args: argparse.Namespace, loops: list[str],
              unavailable: dict[str, str]) -> dict[str, str]:
    print(f"\n== echo: Protocol echo server + {args.echo_connections} client connections, "
          f"all on the loop under test (loop.create_server/create_connection), "
          f"{args.echo_size}-byte messages, ping-pong, each echo checked; "
          f"{args.echo_duration:g} s per run", flush=True)
    runs, failed = run_rounds("echo", args, loops, lambda loop: echo_cmd(args, loop))

    def row(rs: list[dict]) -> tuple[list, float, float]:
        rate = statistics.median(r["messages"] / r["wall"] for r in rs)
        cpu = statistics.median(r["cpu"] for r in rs)
        messages = int(statistics.median(r["messages"] for r in rs))
        cpu_rate = statistics.median(r["messages"] / r["cpu"] for r in rs if r["cpu"] > 0)
        return [messages, rate, cpu], rate, cpu_rate

    table(args, runs, failed, unavailable,
          [("loop", 11, ""), ("messages", 10, ""), ("messages/s", 12, ".0f"),
           ("CPU (s)", 9, ".3f")], row)
    print("(server and clients share one process and one loop; CPU = that process over the "
          "timed window)")
    print(ratio_note(args, "messages", "that process"))
    return failed


def run_demo(args: argparse.Namespace) -> int:
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
                print(f"warning: {loop}'s new_event_loop() made a {cls}", flush=True)
    if "asyncio" in unavailable:
        raise DemoError(f"stock asyncio does not work here: {unavailable['asyncio']}")
    usable = [x for x in args.loops if x not in unavailable]
    print(f"ferroloop demo: {' and '.join(args.parts)} on {', '.join(usable)}; "
          f"{args.rounds} round(s), a fresh process per run, loop order rotated per round")
    print("loops: " + ", ".join(f"{x}={classes[x]}" for x in usable), flush=True)

    failures: dict[str, dict[str, str]] = {}
    if "crawl" in args.parts:
        failures["crawl"] = crawl_part(args, usable, unavailable)
    if "echo" in args.parts:
        failures["echo"] = echo_part(args, usable, unavailable)
    sys.stdout.flush()

    status = 0
    failed_loops = sorted({loop for f in failures.values() for loop in f},
                          key=args.loops.index)
    if failed_loops:
        print(file=sys.stderr)
        for loop in failed_loops:
            for part, f in failures.items():
                if loop in f:
                    print(f"FAILED: {loop}, {part}: {f[loop]}", file=sys.stderr)
        status = 1
    for loop, err in unavailable.items():
        hint = " Build and install it first (`make build`)." if loop == "ferroloop" else ""
        print(f"\nERROR: {loop} could not be imported, so it was not measured: {err}.{hint}",
              file=sys.stderr)
        status = 1
    return status


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # keep stdout/stderr in order when piped
    # SIGTERM is handled like Ctrl-C: unwind through the finally blocks.
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    try:
        return run_demo(args)
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo: interrupted; stopping", file=sys.stderr)
        return 130
    finally:
        Children.kill_current()  # crawl_part's finally has already stopped the server


if __name__ == "__main__":
    sys.exit(main())
