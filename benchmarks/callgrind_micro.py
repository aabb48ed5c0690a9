"""Instructions per operation of a micro workload under callgrind, which
counts the same whatever the machine's load.

    benchmarks/callgrind_micro.py WORKLOAD [--n N] [--loops L[,L...]] [--python PY]

For each loop, runs the workload (benchmarks/micro/WORKLOAD.py) twice under
`valgrind --tool=callgrind`, after the same warm-up: with N operations and
with N/5. The difference divided by 4N/5 is the user-space instructions per
operation, start-up and warm-up cancelled out (all threads counted).
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(loop_name, workload, n):
    sys.path.insert(0, str(HERE))
    import importlib

    import loops

    module = importlib.import_module(f"micro.{workload}")
    loop = loops.new_loop(loop_name)
    try:
        module.run(loop, 2000)
        module.run(loop, n)
    finally:
        loop.close()


def instructions(python, loop_name, workload, n):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
             python, __file__, "--child", loop_name, workload, str(n)],
            capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"{loop_name}: {proc.stderr[-2000:]}")
        match = re.search(r"Collected : (\d+)", proc.stderr)
        return int(match.group(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", nargs="?")
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--loops", default="asyncio,uvloop,rloop,ferroloop")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    small = args.n // 5
    print(f"{args.workload}: instructions per operation ({args.n} - {small})")
    for name in args.loops.split(","):
        big = instructions(args.python, name, args.workload, args.n)
        little = instructions(args.python, name, args.workload, small)
        print(f"{name:10} {(big - little) / (args.n - small):>10.0f}", flush=True)


if __name__ == "__main__":
    main()
