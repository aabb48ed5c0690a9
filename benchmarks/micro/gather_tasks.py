"""create_task + gather of N trivial coroutines.

Measures task creation, the first (and only) step of each task, completion
callbacks and gather's bookkeeping. Results must come back in order.
"""

import asyncio
import gc
import time

from ._check import check

DEFAULT_N = 100_000
DESCRIPTION = "loop.create_task() N trivial coroutines, then asyncio.gather() them"


async def _trivial(i):
    return i


def run(loop, n=DEFAULT_N):
    async def main():
        t0 = time.perf_counter()
        tasks = [loop.create_task(_trivial(i)) for i in range(n)]
        results = await asyncio.gather(*tasks)
        return results, time.perf_counter() - t0

    gc.collect()
    results, seconds = loop.run_until_complete(main())

    check(len(results) == n, f"gather returned {len(results)} results, expected {n}")
    check(results == list(range(n)), "gather results are wrong or out of order")
    return n, seconds
