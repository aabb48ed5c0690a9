"""Cancelled timers let go of memory without the loop running, with the stock
loop's semantics kept (cancelled(), repr, when(), _scheduled, FIFO order).

`call_later(...).cancel()` made before `run_forever` (or inside one long
callback) must not keep the callback, its arguments or the handle alive:
cancel() drops the callback and arguments, and the heap compacts as soon as
cancelled entries are the majority (asyncio's rule, applied at cancel time
instead of at the next iteration). Everything here is observed through
weakrefs and the heap's counters, never through timing.
"""

import asyncio
import contextvars
import gc
import warnings
import weakref

import pytest

import ferroloop

# asyncio's _MIN_SCHEDULED_TIMER_HANDLES: heaps up to this size are never compacted.
MIN_TO_COMPACT = 100

LOOPS = {"asyncio": asyncio.new_event_loop, "ferroloop": ferroloop.new_event_loop}


@pytest.fixture(params=sorted(LOOPS))
def any_loop(request):
    """The stock loop and ferroloop, for behaviour both must share."""
    lp = LOOPS[request.param]()
    yield lp
    lp.close()


class Payload:
    """A weak-referenceable stand-in for a callback's argument."""


def _noop(*_):
    pass


def test_cancel_releases_callback_and_argument_at_once(any_loop):
    arg = Payload()
    cb = Payload.__init__.__get__(Payload())  # a bound method: its object dies with it
    arg_ref, owner_ref = weakref.ref(arg), weakref.ref(cb.__self__)
    h = any_loop.call_later(10, cb, arg)
    del arg, cb
    assert arg_ref() is not None and owner_ref() is not None
    h.cancel()
    assert arg_ref() is None
    assert owner_ref() is None
    assert h.cancelled()


def test_a_million_call_later_cancel_keep_a_bounded_heap(loop):
    for i in range(1_000_000):
        loop.call_later(1.0 + i * 1e-6, _noop, i).cancel()
    # Compacted whenever cancelled entries became the majority of a heap
    # larger than 100: never more than that many dead entries.
    assert loop._timer_count() <= MIN_TO_COMPACT + 1
    assert loop._timer_cancelled_count == loop._timer_count()


def test_cancelled_handles_dropped_by_the_program_are_freed(loop):
    handles = [loop.call_later(100 + i, _noop) for i in range(10_000)]
    refs = [weakref.ref(h) for h in handles]
    for h in handles:
        h.cancel()
    del handles, h
    gc.collect()
    alive = sum(r() is not None for r in refs)
    assert alive <= MIN_TO_COMPACT
    # The loop still runs and drops the rest.
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert loop._timer_count() == loop._timer_cancelled_count


def test_live_timers_survive_compaction_and_fire_in_deadline_order(any_loop):
    loop = any_loop
    fired = []
    now = loop.time()
    live = []
    for i in range(3000):
        h = loop.call_at(now + 0.0001 * i, fired.append, i)
        if i % 3:
            h.cancel()
        else:
            live.append(i)
    loop.call_at(now + 0.31, loop.stop)
    loop.run_forever()
    assert fired == live


def test_equal_deadlines_stay_in_scheduling_order_through_compaction(loop):
    """ferroloop runs timers with equal deadlines in the order they were
    scheduled (the stock heap leaves such ties unordered); compactions in
    between must not reorder them."""
    fired = []
    when = loop.time() + 0.01
    live = []
    for i in range(3000):
        h = loop.call_at(when + 0.001 * (i // 1000), fired.append, i)
        if i % 3:
            h.cancel()
        else:
            live.append(i)
    assert loop._timer_count() < 3000
    loop.call_at(when + 0.01, loop.stop)
    loop.run_forever()
    assert fired == live


def test_cancelled_timers_never_run_after_compaction(loop):
    fired = []
    now = loop.time()
    for i in range(5000):
        loop.call_at(now + 0.001, fired.append, i).cancel()
    loop.call_at(now + 0.001, fired.append, "live")
    loop.call_at(now + 0.002, loop.stop)
    loop.run_forever()
    assert fired == ["live"]


def test_compaction_inside_a_long_callback(loop):
    fired = []
    kept = []

    def long_callback():
        for i in range(100_000):
            h = loop.call_later(0.001, fired.append, i)
            if i % 10_000 == 0:
                kept.append(i)
            else:
                h.cancel()
        assert loop._timer_count() - loop._timer_cancelled_count == len(kept)
        assert loop._timer_count() < 2 * (MIN_TO_COMPACT + len(kept))
        loop.call_later(0.01, loop.stop)

    loop.call_soon(long_callback)
    loop.run_forever()
    assert fired == kept


def _heap_len(loop):
    if isinstance(loop, ferroloop.Loop):
        return loop._timer_count()
    return len(loop._scheduled)


def _describe(h):
    return repr(h).split(" ", 1)[1]


def test_cancelled_handle_state_matches_the_stock_loop():
    """cancelled(), when(), repr, _scheduled and the cancelled count, for a
    cancel in a small heap (never compacted, on either loop)."""
    seen = {}
    for name, new in LOOPS.items():
        loop = new()
        try:
            h = loop.call_at(1234.5, _noop, 1)
            before = (h.cancelled(), h.when(), h._scheduled, loop._timer_cancelled_count)
            h.cancel()
            h.cancel()  # idempotent: counted once
            after = (h.cancelled(), h.when(), h._scheduled, loop._timer_cancelled_count)
            seen[name] = (before, after, _describe(h))
            loop.call_soon(loop.stop)
            loop.run_forever()
            # Popped off the top on the next iteration.
            seen[name] += (h._scheduled, loop._timer_cancelled_count)
        finally:
            loop.close()
    assert seen["ferroloop"] == seen["asyncio"]
    assert seen["asyncio"][2] == "cancelled when=1234.5>"


def test_handles_removed_by_compaction_are_unscheduled(any_loop):
    """Both loops clear _scheduled on the handles they drop; ferroloop does it
    when the cancel tips the balance, asyncio at its next iteration."""
    loop = any_loop
    handles = [loop.call_later(100 + i, _noop) for i in range(500)]
    for h in handles:
        h.cancel()
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert all(h.cancelled() for h in handles)
    assert all(h.when() == pytest.approx(h._when) for h in handles)
    removed = [h for h in handles if not h._scheduled]
    assert len(removed) >= len(handles) - MIN_TO_COMPACT
    assert _heap_len(loop) == len(handles) - len(removed)


def test_debug_mode_repr_of_compacted_handles_names_the_callback(loop):
    loop.set_debug(True)

    def named_callback():
        pass

    handles = [loop.call_later(100 + i, named_callback) for i in range(300)]
    for h in handles:
        h.cancel()
    assert loop._timer_count() <= MIN_TO_COMPACT + 1
    for h in (handles[0], handles[-1]):
        text = repr(h)
        assert text.startswith("<TimerHandle cancelled when=")
        assert "named_callback()" in text
        assert "created at " in text
        assert h._source_traceback


def test_destructors_run_by_compaction_may_schedule_timers(loop):
    """A handle freed by compaction may run Python code (its context's
    values' destructors); that code may use the loop's timers."""
    var = contextvars.ContextVar("var")
    rescheduled = []

    class Reschedules:
        def __del__(self):
            if not loop.is_closed():
                rescheduled.append(loop.call_later(50, _noop))

    def fresh_context():
        ctx = contextvars.copy_context()
        ctx.run(var.set, Reschedules())
        return ctx

    for i in range(1000):
        loop.call_later(100 + i, _noop, context=fresh_context()).cancel()
    gc.collect()
    assert len(rescheduled) >= 1000 - 2 * MIN_TO_COMPACT
    assert all(not h.cancelled() for h in rescheduled)
    assert loop._timer_count() - loop._timer_cancelled_count == len(rescheduled)


def test_a_dropped_loop_frees_its_pending_timers():
    """Handles refer to the heap weakly: a loop dropped unclosed with pending
    timers frees them, and a handle that outlives its loop can be cancelled."""
    loop = ferroloop.new_event_loop()
    arg = Payload()
    arg_ref = weakref.ref(arg)
    handle_ref = weakref.ref(loop.call_later(100, _noop, arg))
    kept = loop.call_later(100, _noop)
    loop_ref = weakref.ref(loop)
    del arg
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        del loop
        gc.collect()
    assert loop_ref() is None
    assert handle_ref() is None
    assert arg_ref() is None
    kept.cancel()
    assert kept.cancelled()
