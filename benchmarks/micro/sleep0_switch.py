"""asyncio.sleep(0) switches among 1,000 tasks.

Each task yields K times; ops = total task switches. Measures the task step
path: a task yields, is re-queued with call_soon, and is resumed.
"""

import asyncio
import gc
import time

from ._check import check

DEFAULT_N = 500_000
DESCRIPTION = "1,000 tasks each doing K x asyncio.sleep(0); ops = total switches"

TASKS = 1000


async def _switcher(k):
    done = 0
    for _ in range(k):
        await asyncio.sleep(0)
        done += 1
    return done


def run(loop, n=DEFAULT_N):
    k = max(1, n // TASKS)
    expected = k * TASKS

    async def main():
        t0 = time.perf_counter()
        tasks = [loop.create_task(_switcher(k)) for _ in range(TASKS)]
        counts = await asyncio.gather(*tasks)
        return counts, time.perf_counter() - t0

    gc.collect()
    counts, seconds = loop.run_until_complete(main())

    check(len(counts) == TASKS, f"{len(counts)} tasks finished, expected {TASKS}")
    check(sum(counts) == expected, f"{sum(counts)} switches, expected {expected}")
    return expected, seconds
