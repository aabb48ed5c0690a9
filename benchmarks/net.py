"""Network benchmarks: echo (3 server styles x 3 message sizes) and HTTP/1.1.

Every (loop, cell, round) starts a fresh server process (net_server.py) and a
fresh load generator (loadgen/, Rust) against it on 127.0.0.1. Rounds are
interleaved -- round 1 runs every cell on asyncio, uvloop, rloop, ferroloop;
then round 2; ... -- and the table reports medians and ratios of medians.

    make bench-net                                   # builds loadgen, then runs this
    .venv/bin/python benchmarks/net.py               # full run, 3 rounds (~4 minutes)
    .venv/bin/python benchmarks/net.py --quick       # smoke run: 1 round, short cells
    .venv/bin/python benchmarks/net.py --only http,echo-protocol-1k --rounds 5
    .venv/bin/python benchmarks/net.py --loops asyncio,ferroloop --json net.json
"""

import argparse
import datetime
import json
import os
import platform
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import cpu_split  # noqa: E402
import loops  # noqa: E402
import report  # noqa: E402
import run  # noqa: E402  (probe_loops, _child_env, _names)

SERVER = HERE / "net_server.py"
LOADGEN_DIR = HERE / "loadgen"
LOADGEN = LOADGEN_DIR / "target" / "release" / "loadgen"
# The minimal Rust echo server (loadgen/src/ceiling.rs): an extra column in
# every echo cell, showing what the kernel allows with no interpreter on top.
CEILING = LOADGEN_DIR / "target" / "release" / "ceiling"
CEILING_NAME = "ceiling"
CEILING_NA = "the ceiling server only echoes (no HTTP)"
SKIP_EXIT = 3
PREWARM_SECONDS = 0.2

STYLES = ("sock", "streams", "protocol")
SIZES = (("1k", 1024), ("10k", 10 * 1024), ("100k", 100 * 1024))
CELLS = {}
for _style in STYLES:
    for _label, _size in SIZES:
        CELLS[f"echo-{_style}-{_label}"] = {"style": _style, "mode": "echo", "size": _size}
CELLS["http"] = {"style": "http", "mode": "http", "size": None}
del _style, _label, _size

DESCRIPTIONS = {
    "sock": "loop.sock_accept / sock_recv / sock_sendall",
    "streams": "asyncio.start_server, reader.read / writer.write + drain",
    "protocol": "Protocol.data_received -> transport.write",
    "http": "httptools parser in a Protocol, keep-alive GET /, fixed 14-byte body",
}


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="ferroloop network benchmarks vs asyncio, uvloop and rloop.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="cells:\n" + "\n".join(
            f"  {name:20} {DESCRIPTIONS[c['style']]}"
            + (f", {c['size'] // 1024} KiB messages" if c["size"] else "")
            for name, c in CELLS.items()),
    )
    parser.add_argument("--rounds", type=int, help="rounds per (loop, cell); default 3, "
                        "or 1 with --quick")
    parser.add_argument("--only", action="append", metavar="CELL[,...]",
                        help="run only these cells")
    parser.add_argument("--loops", action="append", metavar="LOOP[,...]",
                        help=f"compare only these loops (default: {','.join(loops.LOOP_NAMES)})")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 round, 0.5 s measured per cell")
    parser.add_argument("--duration", type=float, help="measured seconds per cell "
                        "(default 1.5, 0.5 with --quick)")
    parser.add_argument("--warmup", type=float, help="unmeasured seconds on the measured "
                        "connections before the clock starts (default 0.2)")
    parser.add_argument("--cold", action="store_true",
                        help=f"skip the {PREWARM_SECONDS:g} s pre-warm run on separate "
                             "connections: measure each server's very first connections")
    parser.add_argument("--connections", type=int, default=32,
                        help="concurrent client connections (default 32)")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="do not pin the server and the load generator to separate CPUs")
    parser.add_argument("--loadgen", default=str(LOADGEN),
                        help="load generator binary (default: benchmarks/loadgen, "
                             "built with cargo if missing or stale)")
    parser.add_argument("--no-ceiling", dest="ceiling", action="store_false",
                        help="do not run the Rust ceiling echo server as an extra column")
    parser.add_argument("--json", metavar="PATH", help="also write all samples as JSON")
    args = parser.parse_args(argv)
    args.cells = run._names(args.only, list(CELLS), "cell(s)")
    args.loops = run._names(args.loops, list(loops.LOOP_NAMES), "loop(s)")
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.duration is None:
        args.duration = 0.5 if args.quick else 1.5
    if args.warmup is None:
        args.warmup = 0.2
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    if not 0 < args.duration <= 600 or not 0 <= args.warmup <= 600:
        parser.error("--duration must be in (0, 600] and --warmup in [0, 600]")
    if not 1 <= args.connections <= 10000:
        parser.error("--connections must be in 1..10000")
    return args


def ensure_loadgen(path):
    """Build the default load generator when cargo is around (a no-op if fresh)."""
    path = Path(path)
    if path == LOADGEN and shutil.which("cargo"):
        proc = subprocess.run(
            ["cargo", "build", "--release", "--quiet", "--manifest-path",
             str(LOADGEN_DIR / "Cargo.toml")], capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"building the load generator failed:\n{proc.stderr[-3000:]}")
    if not path.is_file():
        sys.exit(f"load generator not found at {path}; build it with\n"
                 f"  cargo build --release --manifest-path {LOADGEN_DIR / 'Cargo.toml'}")
    return path


def ensure_ceiling():
    """The ceiling server is built with the load generator (same crate)."""
    if not CEILING.is_file():
        sys.exit(f"ceiling server not found at {CEILING}; build it with\n"
                 f"  cargo build --release --manifest-path {LOADGEN_DIR / 'Cargo.toml'}\n"
                 "or pass --no-ceiling")
    return CEILING


def cpu_plan(pin):
    """(server CPUs, load generator CPUs), or (None, None) when not pinning."""
    if not pin or not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return {cpus[0]}, {cpus[1]}


def _pinned(cpus):
    """preexec_fn pinning the child to `cpus` (None: leave placement to the OS)."""
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def _wait(proc, timeout):
    """Wait for a process; return (returncode, cpu seconds) via wait4's rusage."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return proc.returncode, usage.ru_utime + usage.ru_stime
        if time.monotonic() > deadline:
            return None, None
        time.sleep(0.01)


def _stop(proc):
    """Stop a server we started (by its pid); return (returncode, stderr text)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    proc.err_file.seek(0)
    return proc.returncode, proc.err_file.read()


def run_cell(args, loop_name, cell_name, loadgen, cpus):
    """One fresh server + one loadgen run. Returns (sample, skip_reason, error)."""
    cell = CELLS[cell_name]
    server_cpus, loadgen_cpus = cpus
    env = run._child_env()
    lifetime = str(args.warmup + args.duration + 120)
    if loop_name == CEILING_NAME:
        cmd = [str(CEILING), "--lifetime", lifetime]
    else:
        cmd = [sys.executable, str(SERVER), loop_name, cell["style"], "--lifetime", lifetime]
    # stderr goes to a file: a server that logs many errors must not block on a pipe.
    err_file = tempfile.TemporaryFile(mode="w+")
    server = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=err_file, text=True, env=env,
        preexec_fn=_pinned(server_cpus))
    server.err_file = err_file
    try:
        ready, _, _ = select.select([server.stdout], [], [], 30)
        line = server.stdout.readline() if ready else ""
        if not line:
            code, err = _stop(server)
            last = [ln for ln in err.strip().splitlines() if ln.strip()]
            why = last[-1] if last else f"no ready line (exit status {code})"
            return None, None, "server did not start: " + why + (
                "\n    " + "\n    ".join(last[-12:]) if last else "")
        hello = json.loads(line)
        if "skip" in hello:
            _stop(server)
            return None, hello["skip"], None

        common = [str(loadgen), cell["mode"], "--port", str(hello["port"]),
                  "--connections", str(args.connections), "--watch-pid", str(server.pid)]
        if cell["mode"] == "echo":
            common += ["--size", str(cell["size"])]
        else:
            common += ["--path", "/", "--expect-body", hello["http_body"]]
        # Pre-warm: one short, checked but unrecorded run on its own connections,
        # closed before the measured run connects. The measured server has then
        # served a batch of connections, like any long-running server (see
        # "Pre-warm" in README.md for what a first batch costs CPython's loop).
        runs = [] if args.cold else [("pre-warm", ["--warmup", "0", "--duration",
                                                   str(PREWARM_SECONDS)])]
        runs.append(("measured", ["--warmup", str(args.warmup),
                                  "--duration", str(args.duration)]))
        for what, timing in runs:
            gen = subprocess.Popen(common + timing, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True,
                                   preexec_fn=_pinned(loadgen_cpus))
            code, _ = _wait(gen, args.warmup + args.duration + 30)
            if code is None:
                gen.kill()
                gen.wait()
                return None, None, f"load generator hung in the {what} run (killed)"
            out, gen_err = gen.stdout.read(), gen.stderr.read()
            gen.stdout.close()
            gen.stderr.close()
            if code != 0:
                break
    finally:
        server_code, server_err = _stop(server)
        err_file.close()
        server.stdout.close()

    server_errors = [ln for ln in server_err.splitlines() if ln.startswith("server-error:")]
    if code != 0:
        why = f"{what} run: " + (gen_err.strip().splitlines() or [f"exit status {code}"])[-1]
        if server_code not in (0, -signal.SIGTERM, None):
            why += f" (server exit status {server_code})"
        extra = server_errors or server_err.strip().splitlines()[-12:]
        return None, None, why + ("\n    " + "\n    ".join(extra) if extra else "")
    if server_errors:
        return None, None, f"{len(server_errors)} server error(s): {server_errors[0]}"
    if server_code not in (0, -signal.SIGTERM):
        return None, None, f"server exited with status {server_code}: " + \
            (server_err.strip().splitlines() or [""])[-1]
    try:
        sample = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None, None, f"unparseable load generator output: {out[-500:]!r}"
    return sample, None, None


# per-sample values kept besides requests/s (medians go to median_<key>)
SIDE_KEYS = ("p50_us", "p99_us", "server_cpu", "loadgen_cpu", "server_us_per_req")


def columns_for(cell_name, available, with_ceiling):
    """The servers measured in a cell: the loops, plus the ceiling for echo cells."""
    if with_ceiling and CELLS[cell_name]["mode"] == "echo":
        return list(available) + [CEILING_NAME]
    return list(available)


def record_sample(entry, sample):
    """Add one load generator result to a results entry (per-request CPU derived)."""
    entry["samples"].append(sample["rps"])
    if "server_cpu" in sample:
        per_req = sample["duration_s"] / sample["requests"] * 1e6
        sample["server_us_per_req"] = sample["server_cpu"] * per_req
        if "server_user_cpu" in sample:
            sample["cpu_user_us"] = sample["server_user_cpu"] * per_req
            sample["cpu_sys_us"] = sample["server_sys_cpu"] * per_req
    for key in SIDE_KEYS:
        if key in sample:
            entry[key].append(sample[key])
    cpu_split.add_sample(entry, sample.get("cpu_user_us"), sample.get("cpu_sys_us"))
    entry["last"] = sample


def summarize(entry):
    ok = not entry["error"] and not entry["skip"]
    entry["median"] = report.median(entry["samples"]) if ok else None
    entry["spread"] = report.spread(entry["samples"]) if ok else None
    for key in SIDE_KEYS:
        entry[f"median_{key}"] = report.median(entry[key]) if ok else None
    cpu_split.summarize(entry)


def run_all(args, available, loadgen, cpus):
    results = {c: {l: {"samples": [], **{key: [] for key in SIDE_KEYS},
                       "cpu_user_us": [], "cpu_sys_us": [], "error": None, "skip": None}
                   for l in columns_for(c, available, args.ceiling)} for c in args.cells}
    for rnd in range(1, args.rounds + 1):
        for c in args.cells:
            progress = []
            for l in columns_for(c, available, args.ceiling):
                entry = results[c][l]
                if entry["error"] or entry["skip"]:
                    progress.append(f"{l} {'FAIL' if entry['error'] else 'skip'}")
                    continue
                sample, skip, error = run_cell(args, l, c, loadgen, cpus)
                if skip:
                    entry["skip"] = skip
                    progress.append(f"{l} skip")
                    print(f"note: {c} on {l}: {skip}", file=sys.stderr)
                    continue
                if error:
                    entry["error"] = f"round {rnd}: {error}"
                    progress.append(f"{l} FAIL")
                    print(f"\nFAIL {c} on {l}, round {rnd}: {error}\n", file=sys.stderr)
                    continue
                record_sample(entry, sample)
                progress.append(f"{l} {report.fmt_rate(sample['rps'])}/s "
                                f"p99 {sample['p99_us'] / 1000:.2f}ms")
            print(f"[round {rnd}/{args.rounds}] {c:18} " + "  ".join(progress),
                  file=sys.stderr, flush=True)
    for per_loop in results.values():
        for entry in per_loop.values():
            summarize(entry)
    if args.ceiling:
        for c in args.cells:
            results[c].setdefault(CEILING_NAME, {"na": CEILING_NA})
    return results


def fraction_of_ceiling(results, cell, loop):
    """A loop's median requests/s over the ceiling server's, or None."""
    mine = (results[cell].get(loop) or {}).get("median")
    ceiling = (results[cell].get(CEILING_NAME) or {}).get("median")
    return mine / ceiling if mine and ceiling else None


def _fmt_us(value):
    if value is None:
        return "-"
    return f"{value / 1000:.2f}ms" if value >= 1000 else f"{value:.0f}us"


def _fmt_cpu(entry):
    s, g = entry.get("median_server_cpu"), entry.get("median_loadgen_cpu")
    if s is None or g is None:
        return "-"
    return f"{s * 100:.0f}/{g * 100:.0f}"


def render(results, args):
    columns = list(args.loops) + ([CEILING_NAME] if args.ceiling else [])
    out = [report.render(results, args.cells, columns, args.rounds,
                         unit="requests (echo: messages) per second", label="cell")]
    baselines = [b for b in report.BASELINES if b in args.loops]
    with_ratios = report.SUBJECT in args.loops and bool(baselines)

    def side_table(title, fmt, ratio_key=None):
        header, rows = ["cell"] + columns, []
        if ratio_key and with_ratios:
            header += [f"vs {b}" for b in baselines]
        for c in args.cells:
            row = [c]
            for l in columns:
                entry = results[c].get(l)
                if entry is None or entry.get("error") or entry.get("skip") or entry.get("na"):
                    row.append(report._cell(entry, str, "median"))
                else:
                    row.append(fmt(entry))
            if ratio_key and with_ratios:
                mine = (results[c].get(report.SUBJECT) or {}).get(ratio_key)
                for b in baselines:
                    theirs = (results[c].get(b) or {}).get(ratio_key)
                    row.append(report.fmt_ratio(theirs / mine if mine and theirs else None))
            rows.append(row)
        return ["", title, "", report.table(header, rows)]

    out += side_table("Median p99 latency (lower is better; p50 is in --json):",
                      lambda e: _fmt_us(e.get("median_p99_us")))
    cost_title = ("Median server CPU time per request, microseconds (lower is better; "
                  "less sensitive to CPU stolen by other processes than requests/s)")
    if with_ratios:
        cost_title += f":\n'vs X' = X cost / {report.SUBJECT} cost (>1.00x: {report.SUBJECT} is cheaper)"
    out += side_table(cost_title + ":" if not with_ratios else cost_title,
                      lambda e: _fmt_cost(e.get("median_server_us_per_req")),
                      ratio_key="median_server_us_per_req")
    out.append(cpu_split.render(results, args.cells, columns))
    out += side_table("Median CPU use in the measured window, server% / loadgen%. The server "
                      "should be near 100%;\nlower means it was starved by other processes "
                      "or waited on the load generator:", _fmt_cpu)
    if args.ceiling:
        out += ceiling_table(results, args)
    return "\n".join(out)


def ceiling_table(results, args):
    """Every loop's requests/s in the echo cells as a fraction of the ceiling's."""
    cells = [c for c in args.cells if CELLS[c]["mode"] == "echo"]
    if not cells:
        return []
    rows = []
    for c in cells:
        row = [c]
        for l in args.loops:
            entry = results[c].get(l)
            if entry is None or entry.get("error") or entry.get("skip"):
                row.append(report._cell(entry, str, "median"))
            else:
                row.append(report.fmt_pct(fraction_of_ceiling(results, c, l)))
        rows.append(row)
    return ["", f"Requests/s as a fraction of the {CEILING_NAME} server's (a minimal Rust "
                "level-triggered epoll echo\nserver, loadgen/src/ceiling.rs: what the kernel "
                "allows on this machine; higher is better):", "",
            report.table(["cell"] + list(args.loops), rows)]


def _fmt_cost(value):
    return "-" if value is None else f"{value:.1f}"


def write_json(path, args, loop_info, results, cpus):
    subject, baselines = report.SUBJECT, report.BASELINES
    ratios = {
        c: {f"{subject}/{b}": report.ratio(results, c, subject, b)
            for b in baselines if b in args.loops}
        for c in args.cells
    } if subject in args.loops else {}
    doc = {
        "meta": {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "rounds": args.rounds,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "server_cpus": sorted(cpus[0]) if cpus[0] else None,
            "loadgen_cpus": sorted(cpus[1]) if cpus[1] else None,
            "statistic": "median over interleaved fresh-process rounds of requests/s",
            "ceiling": args.ceiling,
            "load": os.getloadavg(),
        },
        "loops": loop_info,
        "cells": {c: {**CELLS[c], "description": DESCRIPTIONS[CELLS[c]["style"]],
                      "results": results[c], "ratios": ratios.get(c, {}),
                      "cpu_targets": cpu_split.ratios(results, c),
                      "fraction_of_ceiling": {
                          l: fraction_of_ceiling(results, c, l) for l in args.loops}
                      if args.ceiling else {}}
                  for c in args.cells},
    }
    Path(path).write_text(json.dumps(doc, indent=2) + "\n")


def main(argv=None):
    args = parse_args(argv)
    loadgen = ensure_loadgen(args.loadgen)
    if args.ceiling:
        ensure_ceiling()
    loop_info = run.probe_loops(SimpleNamespace(loops=args.loops))
    available = [l for l in args.loops if loop_info[l]["available"]]
    if not available:
        sys.exit("no event loop available to benchmark")
    cpus = cpu_plan(args.pin)

    versions = ", ".join(f"{l} {loop_info[l]['version'].removeprefix('CPython ')}"
                         for l in available)
    print(f"python {platform.python_version()} on {platform.machine()}, "
          f"{os.cpu_count()} CPUs; loops: {versions}", file=sys.stderr)
    pinning = (f"server pinned to CPU {min(cpus[0])}, loadgen to CPU {min(cpus[1])}"
               if cpus[0] else "no CPU pinning")
    print(f"{len(args.cells)} cell(s) x {len(available)} loop(s) x {args.rounds} round(s); "
          f"{args.warmup:g}s warm-up + {args.duration:g}s measured per cell, "
          f"{args.connections} connections, {pinning}", file=sys.stderr)

    results = run_all(args, available, loadgen, cpus)
    for l in args.loops:  # keep unavailable loops as '-' columns
        for c in args.cells:
            results[c].setdefault(l, None)

    print()
    print(render(results, args))
    for l in args.loops:
        if not loop_info[l]["available"]:
            print(f"note: {l} skipped: {loop_info[l]['note']}")
    for c in args.cells:
        for l, e in results[c].items():
            if e and e.get("skip"):
                print(f"note: {c} skipped on {l}: {e['skip']}")
    failures = [(c, l, e["error"]) for c in args.cells for l, e in results[c].items()
                if e and e.get("error")]
    for c, l, err in failures:
        print(f"FAIL {c} on {l}: {err.splitlines()[0]}")
    if args.json:
        write_json(args.json, args, loop_info, results, cpus)
        print(f"wrote {args.json}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
