"""call_soon chain: one callback re-schedules itself with call_soon N times.

Measures the cost of a single call_soon plus one trip through the ready
queue, with the queue never holding more than one handle.
"""

import gc
import time

from ._check import check

DEFAULT_N = 500_000
DESCRIPTION = "a callback re-schedules itself via call_soon N times"


def run(loop, n=DEFAULT_N):
    count = 0

    def step():
        nonlocal count
        count += 1
        if count < n:
            loop.call_soon(step)
        else:
            loop.stop()

    gc.collect()
    t0 = time.perf_counter()
    loop.call_soon(step)
    loop.run_forever()
    seconds = time.perf_counter() - t0

    check(count == n, f"chain ran {count} callbacks, expected {n}")
    return n, seconds
