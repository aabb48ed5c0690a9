"""Instruction counts of a TCP transport ping-pong (transport.write ->
data_received, both ends on one ferroloop loop) under callgrind: shows that
a build without the `faults` feature costs what a build before it did.

    PYTHONPATH=<dir with a ferroloop build> python callgrind_faults_off.py [--rounds N]

Runs the ping-pong under `valgrind --tool=callgrind` with N round trips and
with none (after the same warm-up); prints the difference / N.
"""

import argparse
import asyncio
import os
import re
import subprocess
import sys
import tempfile


class Pong(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class Ping(asyncio.Protocol):
    def __init__(self, loop, rounds):
        self.left = rounds
        self.done = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        if self.left:
            transport.write(b'x' * 64)
        else:
            self.done.set_result(None)

    def data_received(self, data):
        self.left -= 1
        if self.left:
            self.transport.write(data)
        elif not self.done.done():
            self.done.set_result(None)


async def pingpong(loop, rounds):
    server = await loop.create_server(Pong, '127.0.0.1', 0)
    port = server.sockets[0].getsockname()[1]
    transport, ping = await loop.create_connection(
        lambda: Ping(loop, rounds), '127.0.0.1', port)
    await ping.done
    transport.close()
    server.close()
    await server.wait_closed()


def child(rounds):
    import ferroloop
    loop = ferroloop.new_event_loop()
    loop.run_until_complete(pingpong(loop, 200))
    loop.run_until_complete(pingpong(loop, rounds))
    loop.close()


def instructions(rounds):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, 'cg.out')
        proc = subprocess.run(
            ['valgrind', '--tool=callgrind', f'--callgrind-out-file={out}',
             sys.executable, __file__, '--child', str(rounds)],
            capture_output=True, text=True, check=True)
        m = re.search(r'Collected : (\d+)', proc.stderr)
        return int(m.group(1))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rounds', type=int, default=2000)
    ap.add_argument('--child', type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        child(args.child)
        return
    base = instructions(0)
    total = instructions(args.rounds)
    print(f'tcp-transport-pingpong-64 {(total - base) / args.rounds:,.0f} '
          f'instructions / round trip')


if __name__ == '__main__':
    main()
