"""Handles released in a burst are reused, and cut back when the loop goes
quiet (src/handle_alloc.rs): a reused or re-allocated handle must behave as
a fresh one."""
import contextvars
import threading

var = contextvars.ContextVar("var", default="unset")


def _burst(loop, n, tag):
    """Queues n callbacks (more than the free list keeps once quiet) and runs them."""
    seen = []
    handles = [loop.call_soon(lambda i=i: seen.append((tag, i, var.get()))) for i in range(n)]
    handles[1].cancel()
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert [h.cancelled() for h in handles[:3]] == [False, True, False]
    expected = [(tag, i, "unset") for i in range(n) if i != 1]
    assert seen == expected


def test_bursts_before_and_after_the_loop_goes_quiet(loop):
    _burst(loop, 70_000, "first")
    # A poll that waits out its timeout with nothing to report: quiet, trimmed.
    loop.run_until_complete(__import__("asyncio").sleep(0.01))
    _burst(loop, 70_000, "second")
    _burst(loop, 3, "third")


def test_reused_handles_take_the_callers_context(loop):
    _burst(loop, 5_000, "warm")  # fills the free list
    seen = []

    def producer():
        var.set("producer")
        for i in range(5_000):
            loop.call_soon_threadsafe(lambda i=i: seen.append((i, var.get())))
        ctx = contextvars.copy_context()
        loop.call_soon_threadsafe(lambda: seen.append(("last", var.get())), context=ctx)
        loop.call_soon_threadsafe(loop.stop)

    t = threading.Thread(target=producer)
    t.start()
    loop.run_forever()
    t.join()
    # Each callback ran in a copy of the producer's context, in posting order.
    assert seen[:-1] == [(i, "producer") for i in range(5_000)]
    assert seen[-1] == ("last", "producer")
    handle = loop.call_soon(lambda: None)
    assert handle.get_context().get(var) is None
    handle.cancel()
