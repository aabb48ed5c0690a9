"""Future round trips: a task awaits a future that a callback resolves, N times.

Each round trip: create_future, call_soon(fut.set_result), the task suspends,
the callback resolves the future, the done-callback wakes the task.
"""

import gc
import time

from ._check import check

DEFAULT_N = 200_000
DESCRIPTION = "a task awaits loop.create_future() resolved by a call_soon callback, N times"


def run(loop, n=DEFAULT_N):
    async def main():
        create_future = loop.create_future
        call_soon = loop.call_soon
        trips = 0
        wrong = 0
        t0 = time.perf_counter()
        for i in range(n):
            fut = create_future()
            call_soon(fut.set_result, i)
            if await fut != i:
                wrong += 1
            trips += 1
        return trips, wrong, time.perf_counter() - t0

    gc.collect()
    trips, wrong, seconds = loop.run_until_complete(main())

    check(trips == n, f"{trips} round trips, expected {n}")
    check(wrong == 0, f"{wrong} futures delivered the wrong value")
    return n, seconds
