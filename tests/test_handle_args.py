"""A handle's arguments, its context copy and its thread lock behave as
asyncio's do, however ferroloop stores them (no tuple for zero or one
argument, an untracked context copy, a lock word shared parking place)."""

import asyncio
import gc
import threading
import weakref

import pytest

TIMEOUT = 10
HAS_THREAD_SAFE_HANDLE = hasattr(asyncio.events, "_ThreadSafeHandle")


class Box:
    """A weak-referenceable argument."""


def stock_source(loop, func, args):
    """How the stock Handle of this Python shows `func(*args)`."""
    return repr(asyncio.events.Handle(func, args, loop))[len("<Handle "):-1]


def run_soon(loop):
    loop.call_soon(loop.stop)
    loop.run_forever()


@pytest.mark.parametrize("method", ["call_soon", "call_soon_threadsafe", "call_later"])
def test_one_argument_reads_as_a_stable_tuple(loop, method):
    seen = []
    schedule = getattr(loop, method)
    args = (0,) if method == "call_later" else ()
    handle = schedule(*args, seen.append, "x")
    assert handle._args == ("x",)
    assert handle._args is handle._args
    assert repr(handle).endswith(" " + stock_source(loop, seen.append, ("x",)) + ">")
    none = schedule(*args, seen.clear)
    assert none._args == ()
    many = schedule(*args, seen.insert, 0, "ab")
    assert many._args == (0, "ab")
    assert many._args is many._args
    loop.call_later(0.001, loop.stop)
    loop.run_forever()
    assert seen == ["ab"]


def test_cancel_lets_go_of_the_single_argument(loop):
    arg = Box()
    ref = weakref.ref(arg)
    handle = loop.call_soon_threadsafe(id, arg)
    del arg
    assert ref() is not None
    handle.cancel()
    assert ref() is None
    assert handle._args is None
    run_soon(loop)


def test_a_run_lets_go_of_the_single_argument(loop):
    arg = Box()
    ref = weakref.ref(arg)
    handle = loop.call_soon(id, arg)
    del arg
    run_soon(loop)
    assert ref() is None
    assert handle._args is None


def test_error_report_names_the_single_argument(loop):
    reports = []
    loop.set_exception_handler(lambda lp, ctx: reports.append(ctx))

    def fail(value):
        raise ValueError(value)

    handle = loop.call_soon_threadsafe(fail, 7)
    run_soon(loop)
    [ctx] = reports
    assert ctx["handle"] is handle
    assert ctx["message"].startswith("Exception in callback ")
    assert ctx["message"] == "Exception in callback " + stock_source(loop, fail, (7,))
    assert handle._args == (7,)
    assert isinstance(ctx["exception"], ValueError)


def test_context_copy_is_tracked_once_user_code_holds_it(loop):
    handle = loop.call_soon_threadsafe(lambda: None)
    ctx = handle.get_context()
    assert gc.is_tracked(ctx)
    assert handle._context is ctx
    del handle
    gc.collect()
    run_soon(loop)
    assert gc.is_tracked(ctx)
    assert ctx.run(lambda: 1) == 1


@pytest.mark.skipif(not HAS_THREAD_SAFE_HANDLE,
                    reason="asyncio has no _ThreadSafeHandle before 3.13")
def test_cancel_of_another_handle_does_not_wait_for_a_running_callback(loop):
    a_started = threading.Event()
    b_cancelled = threading.Event()
    ran = []
    order = []
    handles = {}
    posted = threading.Event()

    def callback_a():
        a_started.set()
        # Returns only once the other thread's cancel of B came back: that
        # cancel must not wait for this callback (it holds A's lock only).
        ran.append(("a", b_cancelled.wait(TIMEOUT)))

    def poster():
        handles["a"] = loop.call_soon_threadsafe(callback_a)
        handles["b"] = loop.call_soon_threadsafe(ran.append, "b")
        posted.set()
        a_started.wait(TIMEOUT)
        handles["a"].cancel()  # waits for callback_a
        order.append("a cancelled")
        loop.call_soon_threadsafe(loop.stop)

    def canceller():
        a_started.wait(TIMEOUT)
        posted.wait(TIMEOUT)
        handles["b"].cancel()
        order.append("b cancelled")
        b_cancelled.set()

    threads = [threading.Thread(target=poster), threading.Thread(target=canceller)]
    for t in threads:
        t.start()
    loop.run_forever()
    for t in threads:
        t.join(TIMEOUT)
    assert ran == [("a", True)]
    assert order == ["b cancelled", "a cancelled"]
    assert handles["a"].cancelled() and handles["b"].cancelled()
