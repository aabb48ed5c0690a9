"""Real time taken by virtual-time programs (ferroloop.testing).

The tests (tests/test_virtual_time.py) assert virtual timestamps and order;
how much *real* time the virtual clock saves is measured here:

* retry-hour: a client retrying with exponential back-off (1 s doubling,
  capped at 600 s) through one hour of virtual time; target < 100 ms.
* timeout-socket: asyncio.timeout(30) around a hung read on a real
  socketpair (one jump, paid with the default grace).
* sleep-chain: 10,000 sequential asyncio.sleep(1) (10,000 jumps).

    python benchmarks/virtual_time.py [--rounds N] [--cpython]

--cpython also runs tests/cpython/run.py's virtual-time modules on both
loops (ferroloop real time, then virtual) and prints their run times.
"""

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import ferroloop.testing as vt


async def retry_hour():
    loop = asyncio.get_running_loop()
    delay, planned, attempts = 1.0, 0.0, 0
    while True:
        attempts += 1
        if planned + delay > 3600.0:
            break
        await asyncio.sleep(delay)
        planned += delay
        delay = min(delay * 2, 600.0)
    assert loop.time() == planned
    return attempts


async def timeout_socket():
    a, b = socket.socketpair()
    try:
        reader, writer = await asyncio.open_connection(sock=a)
        try:
            async with asyncio.timeout(30):
                await reader.read(1)
        except TimeoutError:
            pass
        assert asyncio.get_running_loop().time() == 30.0
        writer.close()
        await writer.wait_closed()
    finally:
        b.close()


async def sleep_chain():
    for _ in range(10_000):
        await asyncio.sleep(1)
    assert asyncio.get_running_loop().time() == 10_000.0


SCENARIOS = {'retry-hour': retry_hour, 'timeout-socket': timeout_socket,
             'sleep-chain': sleep_chain}


def time_scenario(coro_fn, rounds):
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        vt.run(coro_fn())
        samples.append(time.perf_counter() - t0)
    return samples


def cpython_times():
    run_py = Path(__file__).resolve().parent.parent / 'tests' / 'cpython' / 'run.py'
    rows = {}
    for loop in ('ferroloop', 'virtual'):
        out = subprocess.run(
            [sys.executable, str(run_py), '--loop', loop,
             'test_tasks', 'test_locks', 'test_queues', 'test_timeouts',
             'test_taskgroups', 'test_waitfor'],
            capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            if line.startswith('test_') and '[' in line:
                name = line.split(':', 1)[0]
                secs = float(line.rsplit('[', 1)[1].rstrip('s]'))
                rows.setdefault(name, {})[loop] = (secs, line.split(':', 1)[1].split(',')[0].strip())
    print(f"\n{'module':<16} {'real-time loop s':>16} {'virtual s':>10} {'ratio':>7}  passed")
    for name, r in rows.items():
        real, virt = r['ferroloop'][0], r['virtual'][0]
        print(f"{name:<16} {real:>16.1f} {virt:>10.1f} {real / virt:>6.1f}x  "
              f"{r['ferroloop'][1]} / {r['virtual'][1]}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--rounds', type=int, default=11)
    ap.add_argument('--cpython', action='store_true')
    opts = ap.parse_args()
    print(f"{'scenario':<16} {'median ms':>10} {'min ms':>8} {'max ms':>8}  (real time, {opts.rounds} rounds)")
    for name, fn in SCENARIOS.items():
        s = time_scenario(fn, opts.rounds)
        print(f"{name:<16} {statistics.median(s) * 1e3:>10.2f} "
              f"{min(s) * 1e3:>8.2f} {max(s) * 1e3:>8.2f}")
    if opts.cpython:
        cpython_times()


if __name__ == '__main__':
    main()
