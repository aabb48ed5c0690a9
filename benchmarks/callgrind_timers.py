"""Instructions per timer operation under callgrind (repeatable on a loaded
machine): schedule, fire and cancel, per loop.

    benchmarks/callgrind_timers.py [--n N] [--loops L[,L...]] [--python PY]

Each (loop, mode) runs twice under `valgrind --tool=callgrind`, with N and
with N/5 timers; the difference divided by 4N/5 is the count per timer, with
start-up cancelled out. Modes, each a superset of the one before it:

* ``schedule``: N ``call_at`` (increasing deadlines, no argument, handles
  not kept), then ``close()`` lets go of them.
* ``fire``: the same N timers, all due, run by the loop.
* ``cancel``: the same N timers (handles kept), each ``cancel()``ed, loop
  not run, then closed.

Reported: ``schedule`` (call_at + release at close), ``fire - schedule``
(heap pop and callback dispatch, over a release) and ``cancel - schedule``.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODES = ("schedule", "fire", "cancel")


def child(loop_name, mode, n):
    sys.path.insert(0, str(HERE))
    import loops

    loop = loops.new_loop(loop_name)
    fired = []

    def cb():
        fired.append(None)

    now = loop.time()
    keep = mode == "cancel"
    handles = []
    for i in range(n):
        h = loop.call_at(now + 0.01 + i * 1e-9, cb)
        if keep:
            handles.append(h)
    if mode == "fire":
        while loop.time() < now + 0.02:
            time.sleep(0.001)
        loop.call_at(now + 0.015, loop.stop)
        loop.run_forever()
        assert len(fired) == n, (len(fired), n)
    elif mode == "cancel":
        for h in handles:
            h.cancel()
        del handles
    loop.close()


def instructions(python, loop_name, mode, n):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
             python, __file__, "--child", loop_name, mode, str(n)],
            capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"{loop_name} {mode}: {proc.stderr[-2000:]}")
        return int(re.search(r"Collected : (\d+)", proc.stderr).group(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--loops", default="rloop,ferroloop")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    small = args.n // 5
    print(f"instructions per timer (N={args.n:,} minus N={small:,})")
    print(f"{'loop':<10} {'schedule':>9} {'fire-sched':>11} {'cancel-sched':>13}")
    for name in args.loops.split(","):
        per = {}
        for mode in MODES:
            big = instructions(args.python, name, mode, args.n)
            little = instructions(args.python, name, mode, small)
            per[mode] = (big - little) / (args.n - small)
        print(f"{name:<10} {per['schedule']:>9.0f} {per['fire'] - per['schedule']:>11.0f} "
              f"{per['cancel'] - per['schedule']:>13.0f}", flush=True)


if __name__ == "__main__":
    main()
