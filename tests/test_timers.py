"""call_later / call_at: deadlines, order, cancellation, heap compaction."""
import random

import pytest


def test_timers_fire_in_deadline_order(loop):
    seen = []
    now = loop.time()
    delays = [0.03, 0.01, 0.02, 0.0]
    for d in delays:
        loop.call_at(now + d, seen.append, d)
    loop.call_at(now + 0.04, loop.stop)
    loop.run_forever()
    assert seen == sorted(delays)


def test_equal_deadlines_fire_in_scheduling_order(loop):
    seen = []
    when = loop.time() + 0.01
    for i in range(500):
        loop.call_at(when, seen.append, i)
    loop.call_at(when, loop.stop)
    loop.run_forever()
    assert seen == list(range(500))


def test_call_later_never_fires_early(loop):
    fired = []
    start = loop.time()
    loop.call_later(0.05, lambda: fired.append(loop.time()))
    loop.call_later(0.05, loop.stop)
    loop.run_forever()
    assert fired and fired[0] - start >= 0.05 - loop._clock_resolution


def test_when_and_ordering_of_timer_handles(loop):
    a = loop.call_at(10.0, print)
    b = loop.call_at(20.0, print)
    assert a.when() == 10.0
    assert a < b and b > a and a <= b and not a >= b
    assert a != b
    assert hash(a) == hash(10.0)
    assert 'when=10.0' in repr(a)


def test_cancelled_timer_does_not_fire(loop):
    seen = []
    h = loop.call_later(0.001, seen.append, 'cancelled')
    h.cancel()
    assert h.cancelled()
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert seen == []


def test_cancelled_timers_are_freed_when_they_are_the_majority(loop):
    handles = [loop.call_later(1000 + i, print) for i in range(10_000)]
    keep = loop.call_later(0.5, print)
    for h in handles:
        h.cancel()
    loop.call_soon(loop.stop)
    loop.run_forever()
    # The 10,000 cancelled ones were compacted away (as they were cancelled:
    # see test_timer_memory.py); at most asyncio's threshold of 100 is left.
    assert loop._timer_count() - loop._timer_cancelled_count == 1
    assert loop._timer_count() <= 101
    keep.cancel()


def test_random_delays_all_fire_once(loop):
    rng = random.Random(7)
    fired = []
    n = 2000
    for i in range(n):
        loop.call_later(rng.random() * 0.02, fired.append, i)
    loop.call_later(0.03, loop.stop)
    loop.run_forever()
    assert sorted(fired) == list(range(n))


def test_call_later_none_delay_is_refused(loop):
    with pytest.raises(TypeError, match='delay must not be None'):
        loop.call_later(None, print)


def test_call_at_none_when_is_refused(loop):
    with pytest.raises(TypeError, match='when cannot be None'):
        loop.call_at(None, print)


def test_equal_deadlines_keep_order_among_earlier_and_later_ones(loop):
    # Ties are broken by a number kept in the handle: mixed with other
    # deadlines, pushed in an order that makes the heap move entries about.
    seen = []
    base = loop.time() + 0.01
    expected = []
    for i in range(3000):
        when = base + (i * 7919 % 5) * 1e-4
        loop.call_at(when, seen.append, i)
        expected.append((when, i))
    loop.call_at(base + 1e-3, loop.stop)
    loop.run_forever()
    assert seen == [i for _, i in sorted(expected)]


def test_handles_of_a_dropped_loop_do_not_reach_the_next_loop(loop):
    import gc

    import ferroloop

    old = ferroloop.new_event_loop()
    stale = [old.call_later(1000 + i, print) for i in range(300)]
    old.close()
    del old
    gc.collect()
    # The new loop may reuse the dropped loop's heap slot.
    fresh = [loop.call_later(1000 + i, print) for i in range(300)]
    for h in stale:
        h.cancel()
    assert loop._timer_cancelled_count == 0
    assert loop._timer_count() == 300
    for h in fresh[:200]:
        h.cancel()
    # The 151st cancel tips the balance and compacts at once; the next 49
    # stay counted in the 149 left.
    assert loop._timer_count() == 149
    assert loop._timer_cancelled_count == 49
    assert not any(h._scheduled for h in fresh[:151])
    assert all(h._scheduled for h in fresh[151:])
