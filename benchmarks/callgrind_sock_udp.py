"""Instruction counts of the sock_recvfrom / sock_sendto ping-pong
(proc_udp.py's udp-sock-64) under callgrind, which counts the same whatever
the machine's load.

    benchmarks/callgrind_sock_udp.py [--rounds N] [--loops L[,L...]] [--python PY]

For each loop, runs the ping-pong twice under `valgrind --tool=callgrind`
(after the same warm-up): with N round trips and with none. The difference
divided by N is the user-space instructions per round trip (client and
server: two sock_sendto, two sock_recvfrom and their waits).
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(loop_name, rounds):
    sys.path.insert(0, str(HERE))
    import loops
    import proc_udp

    loop = loops.new_loop(loop_name)
    loop.run_until_complete(proc_udp.udp_sock_pingpong(loop, 64, 0, 0, rounds=200))
    loop.run_until_complete(proc_udp.udp_sock_pingpong(loop, 64, 0, 0, rounds=rounds))
    loop.close()


def instructions(python, loop_name, rounds):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
             python, __file__, "--child", loop_name, str(rounds)],
            capture_output=True, text=True)
        if proc.returncode != 0:
            if "Skip: " in proc.stderr:
                return None
            sys.exit(f"{loop_name}: {proc.stderr[-2000:]}")
        match = re.search(r"Collected : (\d+)", proc.stderr)
        return int(match.group(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--loops", default="asyncio,uvloop,rloop,ferroloop")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    print(f"{'loop':10} {'instructions / round trip':>26}")
    for name in args.loops.split(","):
        base = instructions(args.python, name, 0)
        if base is None:
            print(f"{name:10} {'(no sock_sendto)':>26}", flush=True)
            continue
        total = instructions(args.python, name, args.rounds)
        print(f"{name:10} {(total - base) / args.rounds:26,.0f}", flush=True)


if __name__ == "__main__":
    main()
