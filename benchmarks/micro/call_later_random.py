"""call_later with random delays: N timers, seeded delays in [0, 10 ms].

Measures scheduling N timers plus firing all of them (timer heap insert,
expiry scan, dispatch). Every timer must fire exactly once, in deadline order.

Deadline order is checked without relying on TimerHandle.when() (uvloop returns
a plain Handle for sub-millisecond delays): loop.time() is sampled every
STAMP_EVERY schedules, which brackets each timer's deadline between
stamp[chunk] + delay and stamp[chunk + 1] + delay.

Scheduling 100k timers takes longer than 10 ms on every loop, so most timers
are already overdue when the loop starts: this mostly measures timer insert
plus expiry/dispatch of due timers, with a real-time wait only at the tail.
Loops legitimately differ in how they order *overdue* timers (uvloop turns
sub-millisecond delays into call_soon handles, which run after its expired
timers), so deadline order is enforced only for timers still in the future
when the loop started.
"""

import gc
import random
import time

from ._check import check

DEFAULT_N = 100_000
DESCRIPTION = "N call_later timers, seeded random delays in [0, 10ms]; all must fire"

MAX_DELAY = 0.010
SEED = 12345
# Loops may round deadlines to their clock granularity (libuv uses 1 ms), so
# timers whose deadlines fall in the same tick can fire in either order.
ORDER_SLACK = 0.002
STAMP_EVERY = 256


def run(loop, n=DEFAULT_N):
    rng = random.Random(SEED)
    delays = [rng.uniform(0.0, MAX_DELAY) for _ in range(n)]
    stamps = []
    fired = []
    fire = fired.append

    def cb(i):
        fire(i)
        if len(fired) == n:
            loop.stop()

    gc.collect()
    t0 = time.perf_counter()
    call_later = loop.call_later
    stamp = stamps.append
    for start in range(0, n, STAMP_EVERY):
        stamp(loop.time())
        for i in range(start, min(start + STAMP_EVERY, n)):
            call_later(delays[i], cb, i)
    stamp(loop.time())
    loop.run_forever()
    seconds = time.perf_counter() - t0

    check(len(fired) == n, f"{len(fired)} timers fired, expected {n}")
    check(len(set(fired)) == n, "some timers fired more than once")
    finished_at = loop.time()
    _check_fired_in_time(finished_at, delays, stamps)
    _check_deadline_order(fired, delays, stamps)
    return n, seconds


def _bounds(i, delays, stamps):
    """(earliest, latest) possible deadline of timer i, in loop time."""
    chunk = i // STAMP_EVERY
    return stamps[chunk] + delays[i], stamps[chunk + 1] + delays[i]


def _check_fired_in_time(finished_at, delays, stamps):
    """The run cannot end before the latest timer was due."""
    latest_due = max(_bounds(i, delays, stamps)[0] for i in range(len(delays)))
    check(finished_at + ORDER_SLACK >= latest_due,
          f"all timers fired by loop time {finished_at:.6f}, but one was not "
          f"due until {latest_due:.6f}")


def _check_deadline_order(fired, delays, stamps):
    run_started = stamps[-1]
    latest_lo = float("-inf")  # the largest certain deadline fired so far
    latest_i = None
    for i in fired:
        lo, hi = _bounds(i, delays, stamps)
        if lo <= run_started:
            continue  # overdue before the loop ran: any order is acceptable
        check(hi + ORDER_SLACK >= latest_lo,
              f"timer #{i} (due by {hi:.6f}) fired after timer #{latest_i} "
              f"(due no earlier than {latest_lo:.6f})")
        if lo > latest_lo:
            latest_lo, latest_i = lo, i
