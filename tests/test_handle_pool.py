"""A one-shot handle the loop alone holds after its run is emptied and filled
again by a later call_soon / call_soon_threadsafe (src/handle_alloc.rs).
Nothing may tell a refilled handle from a new one, and a handle someone
else still holds (a reference, a weak reference) must stay as it is."""
import asyncio
import contextvars
import gc
import threading
import weakref

var = contextvars.ContextVar("var", default="unset")


def _run_queued(loop):
    loop.call_soon(loop.stop)
    loop.run_forever()


def test_threadsafe_callbacks_run_in_a_copy_of_the_posters_context(loop):
    seen = []
    poster_after = []

    def cb(i):
        seen.append((i, var.get()))
        var.set(f"set by {i}")  # must not leak to the next callback

    def producer():
        var.set("producer")
        for i in range(3):
            loop.call_soon_threadsafe(cb, i)
        poster_after.append(var.get())
        loop.call_soon_threadsafe(loop.stop)

    for _round in range(3):  # later rounds run in refilled handles
        seen.clear()
        poster_after.clear()
        t = threading.Thread(target=producer)
        t.start()
        loop.run_forever()
        t.join()
        assert seen == [(0, "producer"), (1, "producer"), (2, "producer")]
        assert poster_after == ["producer"]
    assert var.get() == "unset"


def test_each_handle_has_its_own_context_copy(loop):
    for _ in range(3):
        _run_queued(loop)  # handles are pooled after each run
        var.set("caller")
        h1 = loop.call_soon_threadsafe(lambda: None)
        h2 = loop.call_soon(lambda: None)
        c1, c2 = h1.get_context(), h2.get_context()
        assert c1 is not c2
        assert c1 is not contextvars.copy_context()
        assert c1[var] == c2[var] == "caller"
        var.set("later")
        assert c1[var] == "caller"  # a copy made at post time
        _run_queued(loop)
        var.set("unset")


def test_a_handle_held_elsewhere_is_not_refilled(loop):
    calls = []
    kept = loop.call_soon(calls.append, "kept")
    _run_queued(loop)
    fresh = [loop.call_soon(calls.append, i) for i in range(10)]
    assert all(h is not kept for h in fresh)
    assert not kept.cancelled()
    _run_queued(loop)
    assert calls == ["kept", *range(10)]
    kept.cancel()
    assert kept.cancelled()
    assert not any(h.cancelled() for h in fresh)


def test_a_weakly_referenced_handle_dies_as_usual(loop):
    ref = weakref.ref(loop.call_soon(lambda: None))
    _run_queued(loop)
    gc.collect()
    assert ref() is None
    handles = [loop.call_soon(lambda: None) for _ in range(10)]
    assert ref() is None
    for h in handles:
        h.cancel()
    _run_queued(loop)


def test_a_refilled_handle_is_not_thread_safe_after_a_threadsafe_one(loop):
    thread_safe = getattr(asyncio.events, "_ThreadSafeHandle", None)
    for _ in range(3):
        loop.call_soon_threadsafe(lambda: None)
        _run_queued(loop)
        h = loop.call_soon(lambda: None)
        if thread_safe is not None:
            assert not isinstance(h, thread_safe)
        t = loop.call_soon_threadsafe(lambda: None)
        if thread_safe is not None:
            assert isinstance(t, thread_safe)
        h.cancel()
        _run_queued(loop)
        assert h.cancelled() and not t.cancelled()


def test_a_failed_handle_kept_by_the_exception_handler_still_names_its_callback(loop):
    reported = []
    loop.set_exception_handler(lambda lp, ctx: reported.append(ctx["handle"]))

    def boom():
        raise ZeroDivisionError

    loop.call_soon(boom)
    _run_queued(loop)
    for _ in range(5):
        loop.call_soon(lambda: None)
    _run_queued(loop)
    (handle,) = reported
    assert "boom" in repr(handle)


def test_a_context_value_whose_destructor_schedules_a_callback(loop):
    """The context is released after its handle went to the pool: a
    destructor that calls call_soon may get that very handle object."""
    ran = []

    class Scheduler:
        def __del__(self):
            loop.call_soon(ran.append, "from __del__")

    def post():
        var.set(Scheduler())
        loop.call_soon(ran.append, "first")

    contextvars.Context().run(post)
    _run_queued(loop)
    _run_queued(loop)
    assert ran == ["first", "from __del__"]
