"""Server-side instruction counts of the TCP echo (net_server.py's protocol
or sock style) under callgrind, which counts the same whatever the
machine's load.

    benchmarks/callgrind_tcp_server.py [--style protocol|sock] [--requests N]
                                       [--size B] [--connections C]
                                       [--loops L[,L...]] [--python PY]

For each loop the echo server (net_server.py's EchoProtocol or sock_echo)
runs under `valgrind --tool=callgrind` in its own process, twice: echoing
warm-up + N messages per connection and warm-up only. A plain blocking
client in this process sends one message of B bytes on each of the C
connections, reads every echo back whole and checks it, and repeats.
(difference) / (N * C) is the server's user-space instructions per request
(loop iteration, receives, protocol callback or sock_recv/sock_sendall,
sends).
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


def server(loop_name, style, connections):
    sys.path.insert(0, str(HERE))
    import loops
    import net_server

    loop = loops.new_loop(loop_name)
    done = loop.create_future()
    closed = 0

    def one_closed():
        nonlocal closed
        closed += 1
        if closed == connections and not done.done():
            done.set_result(None)

    class Echo(net_server.EchoProtocol):
        __slots__ = ()

        def connection_lost(self, exc):
            super().connection_lost(exc)
            one_closed()

    async def sock_echo(client):
        await net_server.sock_echo(loop, client)
        one_closed()

    async def accept_loop(listener):
        while True:
            client, _ = await loop.sock_accept(listener)
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            loop.create_task(sock_echo(client))

    async def main():
        if style == "protocol":
            srv = await loop.create_server(Echo, "127.0.0.1", 0)
            port = srv.sockets[0].getsockname()[1]
        else:
            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            listener.listen(128)
            listener.setblocking(False)
            port = listener.getsockname()[1]
            acceptor = loop.create_task(accept_loop(listener))
        print(port, flush=True)
        await done
        if style == "protocol":
            srv.close()
        else:
            acceptor.cancel()
            listener.close()
        await asyncio.sleep(0)

    loop.run_until_complete(main())
    loop.close()


def client(port, total, size, connections):
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(connections)]
    for sock in socks:
        sock.settimeout(300)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    body = bytes(range(256)) * (size // 256 + 1)
    for i in range(total):
        message = i.to_bytes(8, "big") + body[:size - 8]
        for sock in socks:
            sock.sendall(message)
        for sock in socks:
            got = bytearray()
            while len(got) < size:
                chunk = sock.recv(size - len(got))
                if not chunk:
                    sys.exit("server closed early")
                got += chunk
            if got != message:
                sys.exit(f"bad echo {i}")
    for sock in socks:
        sock.close()


def instructions(python, loop_name, style, total, size, connections):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
             python, __file__, "--server", loop_name, style, str(connections)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        port = int(proc.stdout.readline())
        client(port, total, size, connections)
        _, err = proc.communicate(timeout=1200)
        if proc.returncode != 0:
            sys.exit(f"{loop_name}: {err[-2000:]}")
        return int(re.search(r"Collected : (\d+)", err).group(1))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--style", default="protocol", choices=("protocol", "sock"))
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--size", type=int, default=100 * 1024)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--loops", default="asyncio,uvloop,rloop,ferroloop")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--server", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.server:
        server(args.server[0], args.server[1], int(args.server[2]))
        return
    print(f"{'loop':10} {'server instructions / request':>30}")
    for name in args.loops.split(","):
        run = (args.python, name, args.style)
        base = instructions(*run, WARMUP, args.size, args.connections)
        total = instructions(*run, WARMUP + args.requests, args.size, args.connections)
        per = (total - base) / (args.requests * args.connections)
        print(f"{name:10} {per:30,.0f}", flush=True)


if __name__ == "__main__":
    main()
