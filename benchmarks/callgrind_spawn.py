"""Per-spawn cost of asyncio.create_subprocess_exec(<true>) + wait(): user-space
instructions (callgrind) and system calls (strace), each as the difference of
two runs of different sizes, so start-up and warm-up cancel out.

    benchmarks/callgrind_spawn.py [--mode seq|c50] [--n 200] [--loops rloop,ferroloop]
    benchmarks/callgrind_spawn.py --syscalls [--mode seq|c50] [--n 400]

Instructions: `valgrind --tool=callgrind --trace-children=no` on the parent
(all its threads), N and N/4 spawns after the same warm-up. It needs a
valgrind that knows pidfd_open (3.20+; `--valgrind PATH`): under 3.19 the call
fails and every loop watches its children with a thread each, which is not
what they do outside valgrind.

System calls: `strace -f` on the same workload; the parent's threads are
counted apart from the children's calls between fork and exec (the calls the
`true` program makes after its exec are not counted). Shown by name for the
names that differ between the loops.
"""

import argparse
import asyncio
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
WARMUP = 20


def child(loop_name, mode, n):
    sys.path.insert(0, str(HERE))
    import loops

    true_path = shutil.which("true")
    limit = 50 if mode == "c50" else 1

    async def spawn_wait(count):
        remaining = count
        codes = []

        async def worker():
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                proc = await asyncio.create_subprocess_exec(true_path)
                codes.append(await proc.wait())

        await asyncio.gather(*(worker() for _ in range(min(limit, count))))
        if codes != [0] * count:
            raise SystemExit(f"wrong return codes: {collections.Counter(codes)}")

    loop = loops.new_loop(loop_name)
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(spawn_wait(WARMUP))
        loop.run_until_complete(spawn_wait(n))
    finally:
        loop.close()


def _child_cmd(python, loop_name, mode, n):
    return [python, __file__, "--child", loop_name, mode, str(n)]


def instructions(valgrind, python, loop_name, mode, n):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        proc = subprocess.run(
            [valgrind, "--tool=callgrind", "--trace-children=no",
             f"--callgrind-out-file={out}"] + _child_cmd(python, loop_name, mode, n),
            capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"{loop_name}: {proc.stderr[-2000:]}")
        # One "Collected" line per process valgrind ran: the parent's, and
        # each forked child's up to its exec.
        counts = re.findall(r"==(\d+)== Collected : (\d+)", proc.stderr)
        parent = int(re.search(r"==(\d+)==", proc.stderr).group(1))
        total = sum(int(c) for p, c in counts if int(p) == parent)
        forked = sum(int(c) for p, c in counts if int(p) != parent)
        return total, forked


_LINE = re.compile(r"^(\d+)\s+(?:<\.\.\. )?(\w+)")


def syscalls(python, loop_name, mode, n):
    """(parent's calls by name, children's pre-exec calls by name)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "strace.out")
        proc = subprocess.run(
            ["strace", "-f", "-qq", "-o", out] + _child_cmd(python, loop_name, mode, n),
            capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"{loop_name}: {proc.stderr[-2000:]}")
        with open(out) as f:
            lines = f.read().splitlines()
    parent_pid = int(_LINE.match(lines[0]).group(1))
    # A process's pids: the parent's threads share no marker, so a pid is a
    # child when it ever calls execve (the first execve is the parent's own).
    exec_pids = {int(m.group(1)) for line in lines
                 if (m := _LINE.match(line)) and m.group(2) == "execve"} - {parent_pid}
    parent = collections.Counter()
    children = collections.Counter()
    exec_done = set()
    for line in lines:
        m = _LINE.match(line)
        if not m or "resumed>" in line:
            continue  # a resumed call was counted where it started
        pid, name = int(m.group(1)), m.group(2)
        if pid in exec_pids:
            if pid in exec_done:
                continue
            if name == "execve":
                exec_done.add(pid)
            children[name] += 1
        else:
            parent[name] += 1
    return parent, children


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", default="seq", choices=("seq", "c50"))
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--loops", default="rloop,ferroloop")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--syscalls", action="store_true")
    parser.add_argument("--valgrind", default="valgrind",
                        help="valgrind to run: 3.19 has no pidfd_open, so the loops then "
                             "watch children with threads; 3.22+ has it")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return
    small = args.n // 4
    per = args.n - small
    if not args.syscalls:
        print(f"spawn-{args.mode}: instructions per spawn ({args.n} - {small}); "
              "parent (all threads) and forked children before exec")
        for name in args.loops.split(","):
            big, big_f = instructions(args.valgrind, args.python, name, args.mode, args.n)
            little, little_f = instructions(args.valgrind, args.python, name, args.mode, small)
            print(f"{name:10} parent {(big - little) / per:>10.0f}   "
                  f"children {(big_f - little_f) / per:>8.0f}", flush=True)
        return
    print(f"spawn-{args.mode}: system calls per spawn ({args.n} - {small})")
    results = {}
    for name in args.loops.split(","):
        big_p, big_c = syscalls(args.python, name, args.mode, args.n)
        little_p, little_c = syscalls(args.python, name, args.mode, small)
        results[name] = ({k: (big_p[k] - little_p[k]) / per for k in big_p | little_p},
                         {k: (big_c[k] - little_c[k]) / per for k in big_c | little_c})
    for side, label in ((0, "parent (all threads)"), (1, "child, fork to exec")):
        print(f"-- {label}")
        names = sorted({k for r in results.values() for k in r[side]})
        print(f"{'':16}" + "".join(f"{n:>11}" for n in results))
        for k in names:
            vals = [r[side].get(k, 0.0) for r in results.values()]
            if all(abs(v) < 0.05 for v in vals):
                continue
            print(f"{k:16}" + "".join(f"{v:>11.2f}" for v in vals))
        print(f"{'total':16}" + "".join(f"{sum(r[side].values()):>11.2f}"
                                        for r in results.values()))


if __name__ == "__main__":
    main()
