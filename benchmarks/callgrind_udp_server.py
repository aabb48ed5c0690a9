"""Server-side instruction counts of the UDP echo (a DatagramProtocol
echo server, as in proc_udp.py's udp-echo cells) under callgrind, which
counts the same whatever the machine's load.

    benchmarks/callgrind_udp_server.py [--requests N] [--window W] [--size B]
                                       [--loops L[,L...]] [--python PY]

For each loop the echo server runs under `valgrind --tool=callgrind` in its
own process, twice: echoing warm-up + N datagrams and warm-up only; a plain
blocking client in this process keeps W datagrams in flight and checks
every echo. (difference) / N is the server's user-space instructions per
request (loop iteration, receive, protocol callback, send).
"""

import argparse
import asyncio
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
WARMUP = 500


def server(loop_name, total):
    sys.path.insert(0, str(HERE))
    import loops

    loop = loops.new_loop(loop_name)
    done = loop.create_future()

    class Echo(asyncio.DatagramProtocol):
        count = 0

        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            self.transport.sendto(data, addr)
            self.count += 1
            if self.count == total and not done.done():
                done.set_result(None)

    async def main():
        transport, _ = await loop.create_datagram_endpoint(
            Echo, local_addr=("127.0.0.1", 0))
        print(transport.get_extra_info("sockname")[1], flush=True)
        await done
        transport.close()
        await asyncio.sleep(0)

    loop.run_until_complete(main())
    loop.close()


def client(port, total, window, size):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.settimeout(120)
    sock.connect(("127.0.0.1", port))
    body = bytes(range(256)) * (size // 256 + 1)
    sent = received = 0
    while received < total:
        while sent < total and sent - received < window:
            sock.send(sent.to_bytes(8, "big") + body[:size - 8])
            sent += 1
        data = sock.recv(65536)
        if len(data) != size or data[8:] != body[:size - 8]:
            sys.exit(f"bad echo {received}")
        received += 1
    sock.close()


def instructions(python, loop_name, total, window, size):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
             python, __file__, "--server", loop_name, str(total)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        port = int(proc.stdout.readline())
        client(port, total, window, size)
        _, err = proc.communicate(timeout=600)
        if proc.returncode != 0:
            sys.exit(f"{loop_name}: {err[-2000:]}")
        return int(re.search(r"Collected : (\d+)", err).group(1))


def cpu_seconds(python, loop_name, total, window, size):
    """The server process's user + system CPU seconds (no valgrind)."""
    proc = subprocess.Popen([python, __file__, "--server", loop_name, str(total)],
                            stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    client(port, total, window, size)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"{loop_name}: server exit status {proc.returncode}")
    return usage.ru_utime + usage.ru_stime


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--window", type=int, default=1)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--loops", default="asyncio,uvloop,rloop,ferroloop")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--cpu", type=int, metavar="ROUNDS",
                        help="instead of callgrind: the server's user+system CPU time "
                             "per request, median of ROUNDS interleaved fresh-process runs")
    parser.add_argument("--server", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.server:
        server(args.server[0], int(args.server[1]))
        return
    names = args.loops.split(",")
    if args.cpu:
        samples = {name: [] for name in names}
        for _ in range(args.cpu):
            for name in names:
                base = cpu_seconds(args.python, name, WARMUP, args.window, args.size)
                total = cpu_seconds(args.python, name, WARMUP + args.requests,
                                    args.window, args.size)
                samples[name].append((total - base) / args.requests)
        print(f"{'loop':10} {'server CPU us / request (median)':>32}")
        for name in names:
            print(f"{name:10} {statistics.median(samples[name]) * 1e6:32.2f}")
        return
    print(f"{'loop':10} {'server instructions / request':>30}")
    for name in names:
        base = instructions(args.python, name, WARMUP, args.window, args.size)
        total = instructions(args.python, name, WARMUP + args.requests, args.window, args.size)
        print(f"{name:10} {(total - base) / args.requests:30,.0f}", flush=True)


if __name__ == "__main__":
    main()
