"""Timer handles that a cancel-triggered compaction takes out of the heap,
while their owner still holds them, are collectable again.

A pending timer is hidden from the garbage collector while the loop holds
it. When `cancel()` makes enough of the heap cancelled, the heap is
compacted on the spot, and a handle its owner still holds must come back
under the collector: otherwise a cycle through it (owner -> handle ->
context -> owner) can never be collected. The stock loop collects it.
"""
import asyncio
import contextvars
import gc
import weakref

import pytest

import ferroloop

OWNER = contextvars.ContextVar("owner")


class Owner:
    pass


def noop():
    pass


def leave_cycles(loop, count):
    """`count` owners, each holding a cancelled timer whose context holds
    the owner; returns weak references to the owners."""
    refs = []
    for _ in range(count):
        owner = Owner()
        ctx = contextvars.copy_context()
        ctx.run(OWNER.set, owner)
        owner.timer = loop.call_later(3600, noop, context=ctx)
        refs.append(weakref.ref(owner))
    for ref in refs:
        ref().timer.cancel()  # past half of the heap: compacted during cancel()
    return refs


@pytest.mark.parametrize("make_loop", [asyncio.new_event_loop, ferroloop.new_event_loop],
                         ids=["asyncio", "ferroloop"])
def test_cycle_through_compacted_timer_is_collected(make_loop):
    loop = make_loop()
    try:
        refs = leave_cycles(loop, 400)
        # Everything above was cancelled while the loop never ran; one
        # iteration lets the stock loop drop what it still holds as well.
        loop.run_until_complete(asyncio.sleep(0))
        gc.collect()
        alive = sum(ref() is not None for ref in refs)
        assert alive == 0
    finally:
        loop.close()
