"""call_soon_threadsafe from another thread.

A producer thread posts N callbacks as fast as it can while the loop runs;
the clock stops when the loop has processed the last one. Measures the
cross-thread wakeup path plus dispatch (under the GIL, both threads compete).
Callbacks from one producer must run in the order they were posted.
"""

import gc
import threading
import time

from ._check import check

DEFAULT_N = 200_000
DESCRIPTION = "a second thread posts N callbacks with call_soon_threadsafe (FIFO checked)"


def run(loop, n=DEFAULT_N):
    count = 0
    out_of_order = 0
    producer_error = []

    async def main():
        done = loop.create_future()

        def cb(i):
            nonlocal count, out_of_order
            if i != count:
                out_of_order += 1
            count += 1
            if count == n:
                done.set_result(None)

        def produce():
            try:
                post = loop.call_soon_threadsafe
                for i in range(n):
                    post(cb, i)
            except BaseException as exc:  # surfaced below, never lost
                producer_error.append(exc)
                loop.call_soon_threadsafe(done.cancel)

        thread = threading.Thread(target=produce, name="threadsafe-producer")
        t0 = time.perf_counter()
        thread.start()
        try:
            await done
        finally:
            seconds = time.perf_counter() - t0
            thread.join()
        return seconds

    gc.collect()
    try:
        seconds = loop.run_until_complete(main())
    finally:
        check(not producer_error, f"producer thread failed: {producer_error!r}")

    check(count == n, f"processed {count} callbacks, expected {n}")
    check(out_of_order == 0, f"{out_of_order} callbacks ran out of posting order")
    return n, seconds
