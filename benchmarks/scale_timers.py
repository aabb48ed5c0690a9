"""Timers at scale: memory and per-timer cost with a million timers.

Orchestrator (default), and worker (``--worker LOOP``) in one file. Every
(loop, round) runs in two fresh interpreters, one for the churn figures and
one for the rest; rounds are interleaved; the tables show medians across
rounds and ferroloop's ratio to each other loop.

What the workers measure, in this order, on one loop:

* ``churn peak MB``: peak RSS growth while ``call_later(delay, cb, arg)``
  then ``.cancel()`` runs N times without the loop running (plain code before
  ``run_forever``). A loop that keeps cancelled timers (or their callback and
  argument) until it next iterates grows with N; one that lets them go stays
  flat. Measured alone in its process (what a loop still holds from it, or
  freed into half-used pages, would otherwise make the next figure depend on
  how many of those timers became due meanwhile), with the peak-RSS mark reset
  through ``/proc/self/clear_refs`` (``ru_maxrss`` is used where that is not
  writable).
* ``B/pending timer``: RSS growth with N timers pending (random delays of
  1,000-2,000 s, no argument), divided by N. The handles are kept in a list
  allocated before the baseline, as a program that may cancel them would.
* ``ns/schedule``: the N ``call_later`` calls above; ``ns/cancel``: then
  ``cancel()`` on each of them; ``retained MB``: RSS growth still there once
  all are cancelled and the handle list is dropped, loop still not run.
* ``ns/fire``: N timers with increasing deadlines within 50 ms are
  scheduled, the worker waits until all are due, then the loop runs until the
  last one fired: heap pops and callback dispatch, per timer. Each must run
  exactly once. Deadlines increase with scheduling order so that every loop
  visits the handles in the order they were allocated: with random deadlines
  a loop that fires overdue timers in deadline order (asyncio, ferroloop)
  touches a million handles in random memory order and the figure measures
  cache misses, while uvloop and rloop fire overdue timers roughly in
  scheduling order (their timers are kept to the millisecond, from a clock
  read before the loop started), so the comparison would not be like for
  like. The order is not checked here; tests/test_timers.py checks
  ferroloop's.

Every step checks its result (no cancelled timer fires, all N fire once, in
deadline order) and the worker fails loudly otherwise.
"""

import argparse
import gc
import json
import os
import random
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from loops import LOOP_NAMES, new_loop, version  # noqa: E402
from report import median, spread, table  # noqa: E402

DEFAULT_N = 1_000_000
SEED = 20261207
SPAN = 0.05  # ns/fire: deadlines spread over this many seconds

METRICS = (
    # key, title, unit formatter, lower is better
    ("churn_peak_mb", "churn peak MB (N x call_later+cancel, loop not run)", "{:.2f}"),
    ("pending_bytes", "B/pending timer", "{:.0f}"),
    ("schedule_ns", "ns/schedule", "{:.0f}"),
    ("cancel_ns", "ns/cancel", "{:.0f}"),
    ("retained_mb", "retained MB after cancel all + drop handles", "{:.2f}"),
    ("fire_ns", "ns/fire", "{:.0f}"),
)


# ---------------------------------------------------------------- worker

try:
    import ctypes

    _malloc_trim = ctypes.CDLL(None).malloc_trim
except (OSError, AttributeError):  # not glibc
    _malloc_trim = None


def _status_kb(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def rss_bytes():
    """Current RSS after the allocator returned its free pages to the kernel."""
    gc.collect()
    if _malloc_trim is not None:
        _malloc_trim(0)
    return _status_kb("VmRSS") * 1024


def reset_peak():
    """Resets the peak-RSS mark; False when the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_bytes(resettable):
    if resettable:
        return _status_kb("VmHWM") * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure_churn(loop, n):
    """Peak RSS growth over n x call_later(...).cancel(), loop not running."""
    fired = []

    def cb(arg):
        fired.append(arg)

    # Warm-up: allocator arenas, freelists, the loop's first heap growth.
    for i in range(1000):
        loop.call_later(1.0 + i * 1e-6, cb, i).cancel()
    base = rss_bytes()
    resettable = reset_peak()
    if not resettable:
        base = peak_bytes(False)
    call_later = loop.call_later
    t0 = time.perf_counter()
    for i in range(n):
        # A distinct argument object per timer (ints above 256 are not cached).
        call_later(1.0 + i * 1e-6, cb, i + 1000).cancel()
    elapsed = time.perf_counter() - t0
    peak = peak_bytes(resettable)
    # Cancelled timers never fire, even once the loop runs past their deadlines.
    loop.call_later(0.005, loop.stop)
    loop.run_forever()
    if fired:
        raise AssertionError(f"{len(fired)} cancelled timers fired")
    return (peak - base) / 1e6, elapsed / n * 1e9


def measure_pending(loop, n):
    rng = random.Random(SEED)
    delays = [1000.0 + rng.random() * 1000.0 for _ in range(n)]
    handles = [None] * n

    def never(*_):
        raise AssertionError("a pending timer fired")

    gc.collect()
    base = rss_bytes()
    call_later = loop.call_later
    t0 = time.perf_counter()
    for i in range(n):
        handles[i] = call_later(delays[i], never)
    t_schedule = time.perf_counter() - t0
    pending = rss_bytes() - base
    t0 = time.perf_counter()
    for h in handles:
        h.cancel()
    t_cancel = time.perf_counter() - t0
    if not all(h.cancelled() for h in handles[:: max(1, n // 1000)]):
        raise AssertionError("cancel() did not take")
    # Drop the handles but keep both lists (allocated before the baseline).
    for i in range(n):
        handles[i] = None
    retained = rss_bytes() - base
    loop.call_soon(loop.stop)
    loop.run_forever()
    del handles, delays
    return {
        "pending_bytes": pending / n,
        "schedule_ns": t_schedule / n * 1e9,
        "cancel_ns": t_cancel / n * 1e9,
        "retained_mb": retained / 1e6,
    }


def measure_fire(loop, n):
    offsets = [SPAN * i / n for i in range(n)]
    seen = []
    append = seen.append

    def fire(k):
        append(k)
        if len(seen) == n:
            loop.stop()

    now = loop.time()
    for i in range(n):
        loop.call_at(now + offsets[i], fire, i)
    # All are due before the loop starts.
    while loop.time() < now + SPAN + 0.002:
        time.sleep(0.001)
    gc.collect()
    t0 = time.perf_counter()
    loop.run_forever()
    elapsed = time.perf_counter() - t0
    if len(seen) != n or len(set(seen)) != n:
        raise AssertionError(f"{len(seen)} runs of {len(set(seen))} distinct timers, {n} expected")
    return elapsed / n * 1e9


def worker_main(loop_name, n, part):
    loop = new_loop(loop_name)
    try:
        out = {}
        if part == "churn":
            out["churn_peak_mb"], out["churn_ns"] = measure_churn(loop, n)
        else:
            out.update(measure_pending(loop, n))
            out["fire_ns"] = measure_fire(loop, n)
    finally:
        loop.close()
    print(json.dumps(out))


# ---------------------------------------------------------- orchestrator


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worker", metavar="LOOP", help=argparse.SUPPRESS)
    p.add_argument("--part", choices=("churn", "rest"), default="rest", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, default=DEFAULT_N, help="timers per measurement (default 1,000,000)")
    p.add_argument("--rounds", type=int, default=3, help="rounds per loop (default 3)")
    p.add_argument("--loops", action="append", help="comma-separated loops (default: all four)")
    p.add_argument("--quick", action="store_true", help="N/10 and 1 round: a smoke run")
    p.add_argument("--json", metavar="PATH", help="also write every sample and median as JSON")
    p.add_argument("--timeout", type=float, default=300, help="seconds per worker process")
    args = p.parse_args(argv)
    if args.quick:
        args.n //= 10
        args.rounds = 1
    names = []
    for group in args.loops or [",".join(LOOP_NAMES)]:
        names += [x for x in group.split(",") if x]
    args.loops = names
    return args


def run_worker(loop_name, n, timeout):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONASYNCIODEBUG", "PYTHONDEVMODE")}
    out = {}
    for part in ("churn", "rest"):
        try:
            proc = subprocess.run(
                [sys.executable, os.path.abspath(__file__), "--worker", loop_name, "--n", str(n),
                 "--part", part],
                capture_output=True, text=True, timeout=timeout, env=env,
            )
        except subprocess.TimeoutExpired:
            return {"error": f"timed out after {timeout}s"}
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["exit status %d" % proc.returncode])[-1]
            return {"error": tail}
        out.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    return out


def available_loops(names):
    ok = []
    for name in names:
        try:
            new_loop(name).close()
            ok.append(name)
        except Exception as e:  # noqa: BLE001 - any import/creation failure skips the loop
            print(f"note: skipping {name}: {e}", file=sys.stderr)
    return ok


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        worker_main(args.worker, args.n, args.part)
        return 0
    loops = available_loops(args.loops)
    samples = {name: {key: [] for key, _, _ in METRICS} for name in loops}
    errors = {}
    for r in range(args.rounds):
        for name in loops:
            if name in errors:
                continue
            res = run_worker(name, args.n, args.timeout)
            if "error" in res:
                errors[name] = res["error"]
                print(f"FAIL {name} round {r + 1}: {res['error']}", file=sys.stderr)
                continue
            for key, _, _ in METRICS:
                samples[name][key].append(res[key])
            print(f"round {r + 1} {name}: " + ", ".join(f"{k}={res[k]:.4g}" for k, _, _ in METRICS),
                  file=sys.stderr)
    medians = {name: {k: median(v) for k, v in m.items()} for name, m in samples.items()}
    print(f"\nTimers at scale, N = {args.n:,}, {args.rounds} round(s), medians (lower is better)")
    print("versions: " + ", ".join(f"{name} {version(name)}" for name in loops))
    header = ["metric"] + loops + [f"ferro/{b}" for b in loops if b != "ferroloop"]
    rows = []
    for key, title, fmt in METRICS:
        row = [title]
        for name in loops:
            row.append("FAIL" if name in errors else fmt.format(medians[name][key]))
        f = medians.get("ferroloop", {}).get(key)
        for b in loops:
            if b == "ferroloop":
                continue
            v = medians.get(b, {}).get(key)
            row.append("-" if f is None or not v or "ferroloop" in errors or b in errors
                       else f"{f / v:.2f}x")
        rows.append(row)
    print(table(header, rows))
    if args.rounds > 1:
        print("\nspread, (max - min) / median")
        rows = []
        for key, title, _ in METRICS:
            row = [title]
            for name in loops:
                values = samples[name][key]
                s = spread(values) if values and median(values) else None
                row.append("-" if s is None else f"{s * 100:.0f}%")
            rows.append(row)
        print(table(["metric"] + loops, rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"n": args.n, "rounds": args.rounds, "samples": samples,
                       "medians": medians, "errors": errors}, f, indent=1)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
