"""Run the event-loop micro-benchmarks and print a comparison table.

Every (loop, workload, round) runs in a fresh interpreter (benchmarks/worker.py).
Rounds are interleaved -- round 1 runs each workload on asyncio, uvloop, rloop,
ferroloop; then round 2; ... -- so slow drifts in machine load hit every loop
alike. The table reports the median ops/s per loop and ratios of medians.

    .venv/bin/python benchmarks/run.py                # full run, 5 rounds
    .venv/bin/python benchmarks/run.py --quick        # smoke run, ~1 minute
    .venv/bin/python benchmarks/run.py --only call_soon_chain,gather_tasks --rounds 9
    .venv/bin/python benchmarks/run.py --loops asyncio,ferroloop --json out.json
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import loops  # noqa: E402
import micro  # noqa: E402
import report  # noqa: E402

WORKER = HERE / "worker.py"
QUICK_SCALE = 0.1


def _names(values, known, what):
    """Flatten repeated / comma-separated CLI values and validate them."""
    if not values:
        return list(known)
    wanted = [v.strip() for value in values for v in value.split(",") if v.strip()]
    unknown = [v for v in wanted if v not in known]
    if unknown:
        sys.exit(f"unknown {what}: {', '.join(unknown)} (choose from {', '.join(known)})")
    return [k for k in known if k in wanted]  # canonical order, no duplicates


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="ferroloop micro-benchmarks vs asyncio, uvloop and rloop.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="workloads:\n" + "\n".join(
            f"  {name:20} {mod.DESCRIPTION}" for name, mod in micro.WORKLOADS.items()),
    )
    parser.add_argument("--rounds", type=int, help="rounds per (loop, workload); "
                        "default 5, or 1 with --quick")
    parser.add_argument("--only", action="append", metavar="WORKLOAD[,...]",
                        help="run only these workloads")
    parser.add_argument("--loops", action="append", metavar="LOOP[,...]",
                        help=f"compare only these loops (default: {','.join(loops.LOOP_NAMES)})")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: problem sizes x{QUICK_SCALE}, 1 round")
    parser.add_argument("--scale", type=float, help="multiply every problem size")
    parser.add_argument("--repeat", type=int, default=1, metavar="K",
                        help="timed runs inside each process, keeping the fastest "
                             "(filters preemption bursts on busy machines; default 1)")
    parser.add_argument("--json", metavar="PATH", help="also write all samples as JSON")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds before one benchmark process is killed (default 120)")
    args = parser.parse_args(argv)
    args.workloads = _names(args.only, list(micro.WORKLOADS), "workload(s)")
    args.loops = _names(args.loops, list(loops.LOOP_NAMES), "loop(s)")
    if args.rounds is None:
        args.rounds = 1 if args.quick else 5
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")
    if args.scale is None:
        args.scale = QUICK_SCALE if args.quick else 1.0
    return args


def _child_env():
    env = dict(os.environ)
    for var in ("PYTHONASYNCIODEBUG", "PYTHONDEVMODE", "PYTHONTRACEMALLOC"):
        env.pop(var, None)  # debug modes would dominate the measurements
    env["PYTHONHASHSEED"] = "0"
    return env


def _run_worker(extra, timeout):
    cmd = [sys.executable, str(WORKER), "--timeout", str(timeout), *extra]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              timeout=timeout + 15, env=_child_env())
    except subprocess.TimeoutExpired:
        return None, f"killed after {timeout + 15:.0f}s (hung: a lost callback?)"
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        if proc.returncode < 0:
            why = f"crashed with signal {-proc.returncode}"
        elif any("Timeout (" in ln for ln in lines):
            why = f"timed out after {timeout:.0f}s (hung: a lost callback?)"
        else:
            why = lines[-1] if lines else f"exit status {proc.returncode}"
        return None, why + ("\n    " + "\n    ".join(lines[-12:]) if lines else "")
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1]), None
    except (ValueError, IndexError):
        return None, f"unparseable worker output: {proc.stdout[-500:]!r}"


def probe_loops(args):
    """Return {loop: info}; unavailable loops get a note and are skipped."""
    info = {}
    for name in args.loops:
        result, error = _run_worker(["--probe", name], timeout=60)
        if error:
            note = error.splitlines()[0]
            print(f"note: skipping {name}: {note}", file=sys.stderr)
            info[name] = {"available": False, "note": note}
        else:
            info[name] = {"available": True, "version": result["version"],
                          "type": result["type"]}
    return info


def run_all(args, available):
    results = {w: {l: {"samples": [], "seconds": [], "error": None} for l in available}
               for w in args.workloads}
    for rnd in range(1, args.rounds + 1):
        for w in args.workloads:
            progress = []
            for l in available:
                entry = results[w][l]
                if entry["error"]:
                    progress.append(f"{l} (failed earlier)")
                    continue
                sample, error = _run_worker(
                    [l, w, "--scale", str(args.scale), "--repeat", str(args.repeat)],
                    args.timeout)
                if error:
                    entry["error"] = f"round {rnd}: {error}"
                    progress.append(f"{l} FAIL")
                    print(f"\nFAIL {w} on {l}, round {rnd}: {error}\n", file=sys.stderr)
                    continue
                entry["samples"].append(sample["ops_per_sec"])
                entry["seconds"].append(sample["seconds"])
                entry["n"], entry["ops"] = sample["n"], sample["ops"]
                progress.append(f"{l} {report.fmt_rate(sample['ops_per_sec'])}")
            print(f"[round {rnd}/{args.rounds}] {w:20} " + "  ".join(progress),
                  file=sys.stderr, flush=True)
    for per_loop in results.values():
        for entry in per_loop.values():
            ok = not entry["error"]
            entry["median"] = report.median(entry["samples"]) if ok else None
            entry["spread"] = report.spread(entry["samples"]) if ok else None
    return results


def write_json(path, args, loop_info, results):
    ratios = {
        w: {f"{report.SUBJECT}/{b}": report.ratio(results, w, report.SUBJECT, b)
            for b in report.BASELINES if b in args.loops}
        for w in args.workloads
    } if report.SUBJECT in args.loops else {}
    doc = {
        "meta": {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "python": sys.version.split()[0],
            "executable": sys.executable,
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "rounds": args.rounds,
            "scale": args.scale,
            "repeat": args.repeat,
            "statistic": "median over interleaved fresh-process rounds of ops/s "
                         "(each round: fastest of `repeat` in-process runs)",
            "load": os.getloadavg(),  # at the end of the run: how busy the machine was
        },
        "loops": loop_info,
        "workloads": {
            w: {"description": micro.WORKLOADS[w].DESCRIPTION,
                "results": results[w], "ratios": ratios.get(w, {})}
            for w in args.workloads
        },
    }
    Path(path).write_text(json.dumps(doc, indent=2) + "\n")


def main(argv=None):
    args = parse_args(argv)
    loop_info = probe_loops(args)
    available = [l for l in args.loops if loop_info[l]["available"]]
    if not available:
        sys.exit("no event loop available to benchmark")

    versions = ", ".join(f"{l} {loop_info[l]['version'].removeprefix('CPython ')}"
                         for l in available)
    print(f"python {platform.python_version()} on {platform.machine()}, "
          f"{os.cpu_count()} CPUs; loops: {versions}", file=sys.stderr)
    print(f"{len(args.workloads)} workload(s) x {len(available)} loop(s) x "
          f"{args.rounds} round(s), size scale {args.scale:g}, "
          f"{args.repeat} timed run(s) per process", file=sys.stderr)

    results = run_all(args, available)
    for l in args.loops:  # keep skipped loops as '-' columns
        for w in args.workloads:
            results[w].setdefault(l, None)

    print()
    print(report.render(results, args.workloads, args.loops, args.rounds, args.repeat))
    skipped = [l for l in args.loops if not loop_info[l]["available"]]
    for l in skipped:
        print(f"note: {l} skipped: {loop_info[l]['note']}")
    failures = [(w, l, e["error"]) for w in args.workloads for l, e in results[w].items()
                if e and e["error"]]
    for w, l, err in failures:
        print(f"FAIL {w} on {l}: {err.splitlines()[0]}")

    if args.json:
        write_json(args.json, args, loop_info, results)
        print(f"wrote {args.json}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
