"""Timer churn: call_later then cancel immediately, N times, loop running.

The typical timeout pattern (arm a timer, the operation finishes first, cancel
it). Work happens in batches from a running callback so that the loop gets
iterations in which to clean up cancelled timers. Delays are short (1-5 ms)
so a cancel that did not take effect would fire during the run; none may.
"""

import gc
import random
import time

from ._check import check

DEFAULT_N = 500_000
DESCRIPTION = "call_later + immediate cancel, N times, in batches from a running loop"

BATCH = 1000
SEED = 54321


def run(loop, n=DEFAULT_N):
    rng = random.Random(SEED)
    delays = [rng.uniform(0.001, 0.005) for _ in range(BATCH)]
    fired = 0
    done = 0
    not_cancelled = 0

    def must_not_fire():
        nonlocal fired
        fired += 1

    def batch():
        nonlocal done, not_cancelled
        call_later = loop.call_later
        h = None
        for delay in delays[: min(BATCH, n - done)]:
            h = call_later(delay, must_not_fire)
            h.cancel()
        done += min(BATCH, n - done)
        if not h.cancelled():
            not_cancelled += 1
        if done < n:
            loop.call_soon(batch)
        else:
            loop.stop()

    gc.collect()
    t0 = time.perf_counter()
    loop.call_soon(batch)
    loop.run_forever()
    seconds = time.perf_counter() - t0

    # Untimed: keep the loop alive past every delay; cancelled timers must stay silent.
    loop.call_later(0.015, loop.stop)
    loop.run_forever()

    check(done == n, f"scheduled {done} timers, expected {n}")
    check(not_cancelled == 0, f"{not_cancelled} handles report cancelled() == False")
    check(fired == 0, f"{fired} cancelled timers fired anyway")
    return n, seconds
