"""call_soon flat batch: schedule N callbacks up front, then run them all.

Measures bulk call_soon plus draining a large ready queue in one go. The
last callback stops the loop; FIFO order is verified.
"""

import gc
import time

from ._check import check

DEFAULT_N = 500_000
DESCRIPTION = "schedule N call_soon callbacks at once, then run them (FIFO checked)"


def run(loop, n=DEFAULT_N):
    count = 0
    out_of_order = 0

    def cb(i):
        nonlocal count, out_of_order
        if i != count:
            out_of_order += 1
        count += 1
        if count == n:
            loop.stop()

    gc.collect()
    t0 = time.perf_counter()
    call_soon = loop.call_soon
    for i in range(n):
        call_soon(cb, i)
    loop.run_forever()
    seconds = time.perf_counter() - t0

    check(count == n, f"ran {count} callbacks, expected {n}")
    check(out_of_order == 0, f"{out_of_order} callbacks ran out of FIFO order")
    return n, seconds
