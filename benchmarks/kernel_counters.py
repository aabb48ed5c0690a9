"""Kernel-side counters per request of one echo server: system calls by name,
minor page faults, user and kernel CPU (what `net.py` shows as a total,
taken apart).

    .venv/bin/python benchmarks/kernel_counters.py                      # streams, 1k/10k/100k
    .venv/bin/python benchmarks/kernel_counters.py --style streams --size 100k \
        --loops rloop,ferroloop --connections 1,4,32 --rounds 3

For every (connections, size, round, loop) it starts a fresh `net_server.py`
(pinned like `net.py`: server on the first CPU, load generator on the second),
warms it up for a moment, then counts while the load generator runs:

* system calls with `perf stat -e syscalls:sys_enter_*` attached to the
  server (needs perf and tracepoint access, e.g. root or
  perf_event_paranoid <= 1; without it only the next two columns appear),
* minor page faults and utime/stime clock ticks from `/proc/PID/stat`,

and divides by the requests the load generator completed. The table shows
the median of the rounds. Counts per request do not depend on how much CPU
the server got, so they stay meaningful on a busy machine, where requests/s
do not; user/kernel microseconds rest on clock ticks (10 ms each) and are
only a hint in short runs.
"""

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

import net

SYSCALLS = ("recvfrom", "read", "sendto", "write", "writev", "sendmsg", "recvmsg",
            "epoll_wait", "epoll_pwait", "epoll_ctl", "brk", "mmap", "munmap",
            "mremap", "madvise", "ioctl")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--style", default="streams", choices=net.STYLES)
    parser.add_argument("--size", default="1k,10k,100k", help="message sizes, e.g. 1k,100k")
    parser.add_argument("--loops", default="uvloop,rloop,ferroloop")
    parser.add_argument("--connections", default="32", help="e.g. 1,4,32")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--duration", type=float, default=2.0)
    parser.add_argument("--no-perf", dest="perf", action="store_false",
                        help="page faults and CPU ticks only (no perf)")
    args = parser.parse_args(argv)
    args.sizes = [s.strip() for s in args.size.split(",") if s.strip()]
    args.loop_names = [s.strip() for s in args.loops.split(",") if s.strip()]
    args.conns = [int(s) for s in args.connections.split(",") if s.strip()]
    args.perf = args.perf and shutil.which("perf") is not None
    return args


def _proc_stat(pid):
    """(minor faults, utime ticks, stime ticks) of a process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[7]), int(fields[11]), int(fields[12])


def _loadgen(loadgen, port, size, conns, duration, cpus):
    proc = subprocess.run(
        [str(loadgen), "echo", "--port", str(port), "--size", size, "--connections",
         str(conns), "--duration", str(duration), "--warmup", "0"],
        capture_output=True, text=True, preexec_fn=net._pinned(cpus))
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed: {proc.stderr.strip()[-300:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(args, loop, size, conns, loadgen, cpus):
    """One fresh server; counters per request of one measured run."""
    server_cpus, loadgen_cpus = cpus
    server = subprocess.Popen(
        [sys.executable, str(net.SERVER), loop, args.style, "--lifetime", "120"],
        stdout=subprocess.PIPE, text=True, env=net.run._child_env(),
        preexec_fn=net._pinned(server_cpus))
    perf = None
    try:
        port = json.loads(server.stdout.readline())["port"]
        _loadgen(loadgen, port, size, conns, 0.3, loadgen_cpus)  # warm-up
        before = _proc_stat(server.pid)
        if args.perf:
            events = ",".join(f"syscalls:sys_enter_{name}" for name in SYSCALLS)
            perf = subprocess.Popen(["perf", "stat", "-x,", "-e", events, "-p", str(server.pid)],
                                    stderr=subprocess.PIPE, text=True)
            time.sleep(0.2)  # perf attaches before the load starts
        result = _loadgen(loadgen, port, size, conns, args.duration, loadgen_cpus)
        after = _proc_stat(server.pid)
        counts = {}
        if perf is not None:
            perf.send_signal(signal.SIGINT)
            _, err = perf.communicate(timeout=30)
            for line in err.splitlines():
                parts = line.split(",")
                if len(parts) > 2 and parts[0].strip().isdigit():
                    counts[parts[2].replace("syscalls:sys_enter_", "")] = int(parts[0])
    finally:
        if perf is not None and perf.poll() is None:
            perf.kill()
            perf.wait()
        server.terminate()
        server.wait()
        server.stdout.close()
    requests = result["requests"]
    tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
    row = {name: n / requests for name, n in counts.items()}
    row["faults"] = (after[0] - before[0]) / requests
    row["user_us"] = (after[1] - before[1]) * tick_us / requests
    row["sys_us"] = (after[2] - before[2]) * tick_us / requests
    return row


def render(results, args):
    columns = ["faults", "user_us", "sys_us"] + [
        name for name in SYSCALLS
        if any(name in r for rows in results.values() for r in rows)]
    lines = []
    for (conns, size), per_loop in _grouped(results).items():
        lines.append(f"\n{args.style} echo, {size} messages, {conns} connections "
                     f"(per request, median of {args.rounds} round(s)):")
        shown = [c for c in columns
                 if any(statistics.median(r.get(c, 0) for r in rows) >= 0.0005
                        for rows in per_loop.values())]
        lines.append(f"{'loop':10}" + "".join(f"{c:>12}" for c in shown))
        for loop, rows in per_loop.items():
            cells = [statistics.median(r.get(c, 0) for r in rows) for c in shown]
            lines.append(f"{loop:10}" + "".join(
                f"{v:>12.1f}" if c.endswith("_us") else f"{v:>12.3f}"
                for c, v in zip(shown, cells)))
    return "\n".join(lines)


def _grouped(results):
    grouped = {}
    for (conns, size, loop), rows in results.items():
        grouped.setdefault((conns, size), {})[loop] = rows
    return grouped


def main(argv=None):
    args = parse_args(argv)
    loadgen = net.ensure_loadgen(net.LOADGEN)
    cpus = net.cpu_plan(True)
    results = {}
    for conns in args.conns:
        for size in args.sizes:
            for _ in range(args.rounds):
                for loop in args.loop_names:  # interleaved rounds, fresh server each
                    row = measure(args, loop, size, conns, loadgen, cpus)
                    results.setdefault((conns, size, loop), []).append(row)
    if not args.perf:
        print("(perf not available: page faults and CPU ticks only)")
    print(render(results, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
