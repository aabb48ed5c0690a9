"""Server-side instruction counts of the streams echo (asyncio.start_server,
reader.read(65536) / writer.write + drain, as net.py's echo-streams cells)
under callgrind, which counts the same whatever the machine's load.

    benchmarks/callgrind_streams_server.py [--requests N] [--size B]
                                           [--connections C] [--loops L[,L...]]

For each loop the echo server runs under `valgrind --tool=callgrind` in its
own process, twice: echoing warm-up + N messages and warm-up only. A plain
blocking client in this process sends one B-byte message on each of its C
connections, then reads every echo back in full and checks it (so up to C
messages arrive per poll, as under net.py's load generator).
(difference) / N is the server's user-space instructions per request.
"""

import argparse
import asyncio
import os
import re
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
WARMUP = 200
READ_SIZE = 65536  # as net_server.py


def server(loop_name, total_bytes):
    sys.path.insert(0, str(HERE))
    import loops

    loop = loops.new_loop(loop_name)
    done = loop.create_future()
    echoed = 0

    async def echo(reader, writer):
        nonlocal echoed
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                break
            writer.write(data)
            await writer.drain()
            echoed += len(data)
            if echoed >= total_bytes and not done.done():
                done.set_result(None)
        writer.close()

    async def main():
        srv = await asyncio.start_server(echo, "127.0.0.1", 0)
        print(srv.sockets[0].getsockname()[1], flush=True)
        await done
        srv.close()
        await asyncio.sleep(0)

    loop.run_until_complete(main())
    loop.close()


def client(port, total, size, connections):
    socks = []
    for _ in range(connections):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.settimeout(120)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        socks.append(sock)
    body = bytes(range(256)) * (size // 256 + 1)
    done = 0
    while done < total:
        batch = socks[:total - done]
        for i, sock in enumerate(batch):
            sock.sendall((done + i).to_bytes(8, "big") + body[:size - 8])
        for i, sock in enumerate(batch):
            want = (done + i).to_bytes(8, "big") + body[:size - 8]
            got = bytearray()
            while len(got) < size:
                chunk = sock.recv(size - len(got))
                if not chunk:
                    sys.exit("server closed")
                got += chunk
            if got != want:
                sys.exit(f"bad echo {done + i}")
        done += len(batch)
    for sock in socks:
        sock.close()


def instructions(python, loop_name, total, size, connections):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
             python, __file__, "--server", loop_name, str(total * size)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        port = int(proc.stdout.readline())
        client(port, total, size, connections)
        _, err = proc.communicate(timeout=1200)
        if proc.returncode != 0:
            sys.exit(f"{loop_name}: {err[-2000:]}")
        return int(re.search(r"Collected : (\d+)", err).group(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--size", type=int, default=102400)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--loops", default="asyncio,uvloop,rloop,ferroloop")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--server", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.server:
        server(args.server[0], int(args.server[1]))
        return
    print(f"{'loop':10} {'server instructions / request':>30}")
    for name in args.loops.split(","):
        base = instructions(args.python, name, WARMUP, args.size, args.connections)
        total = instructions(args.python, name, WARMUP + args.requests, args.size,
                             args.connections)
        print(f"{name:10} {(total - base) / args.requests:30,.0f}", flush=True)


if __name__ == "__main__":
    main()
