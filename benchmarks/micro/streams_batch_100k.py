"""Ten stream readers each handed a 100 KiB message in the same poll.

Every round the peers of ten socket pairs each send one 100 KiB message
before the loop runs, so one poll finds all ten readable (the batch that
the streams-100k echo sees under load), then ten tasks drain their readers
with read(65536) as the echo server does. One operation is one message.
The heap pattern of those reads (ten 100 KiB reader buffers grown in one
poll, freed by the tasks) is what src/read_reserve.rs shapes. Not in
WORKLOADS (the run.py suite): run it with `callgrind_micro.py
streams_batch_100k`, or time its minor faults around `run()`.
"""

import asyncio
import gc
import socket
import time

from ._check import check

DEFAULT_N = 2_000
DESCRIPTION = "10 StreamReaders get a 100 KiB message each per poll; tasks drain them"
PAIRS = 10
SIZE = 100 * 1024


def run(loop, n=DEFAULT_N):
    message = bytes(i % 251 for i in range(SIZE))

    async def drain(reader):
        got = 0
        while got < SIZE:
            got += len(await reader.read(65536))
        return got

    async def main():
        pairs = [socket.socketpair() for _ in range(PAIRS)]
        streams = []
        for a, b in pairs:
            b.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * SIZE)
            streams.append(await asyncio.open_connection(sock=a))
        t0 = time.perf_counter()
        total = 0
        for _ in range(max(1, n // PAIRS)):
            for _, b in pairs:
                b.sendall(message)
            total += sum(await asyncio.gather(*(drain(r) for r, _ in streams)))
        seconds = time.perf_counter() - t0
        for (_, writer), (_, b) in zip(streams, pairs):
            writer.close()
            b.close()
        return total, seconds

    gc.collect()
    total, seconds = loop.run_until_complete(main())
    rounds = max(1, n // PAIRS)
    check(total == rounds * PAIRS * SIZE, f"read {total} bytes, expected {rounds * PAIRS * SIZE}")
    return rounds * PAIRS, seconds
