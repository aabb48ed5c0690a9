"""Callbacks asyncio's C Task and Future schedule are queued without a Handle
object (src/queued_call.rs); wherever a handle is observable, there is one,
and everything else behaves as for any call_soon."""

import asyncio
import contextvars
import gc
import logging
import weakref

import pytest

import ferroloop
from ferroloop._ferroloop import Handle


VAR = contextvars.ContextVar("VAR", default="outer")


def test_python_call_soon_with_context_still_returns_a_handle(loop):
    ctx = contextvars.copy_context()
    handle = loop.call_soon(print, 1, context=ctx)
    assert isinstance(handle, Handle)
    assert handle.get_context() is ctx
    handle.cancel()


def test_done_callbacks_run_in_their_context_with_the_future(loop):
    seen = []
    ctx = contextvars.copy_context()
    ctx.run(VAR.set, "inner")

    async def main():
        fut = loop.create_future()
        fut.add_done_callback(lambda f: seen.append((f, VAR.get())), context=ctx)
        fut.add_done_callback(lambda f: seen.append((f, VAR.get())))
        fut.set_result(1)
        await asyncio.sleep(0)
        return fut

    fut = loop.run_until_complete(main())
    assert seen == [(fut, "inner"), (fut, "outer")]


def test_task_steps_see_the_task_context(loop):
    async def child():
        VAR.set("child")
        await asyncio.sleep(0)
        return VAR.get()

    async def main():
        VAR.set("main")
        task = loop.create_task(child())
        result = await task
        return result, VAR.get()

    assert loop.run_until_complete(main()) == ("child", "main")


def test_raising_done_callback_is_reported_with_a_handle(loop):
    reports = []
    loop.set_exception_handler(lambda lp, context: reports.append(context))

    def bad(fut):
        raise ValueError("boom")

    async def main():
        fut = loop.create_future()
        fut.add_done_callback(bad)
        fut.set_result(None)
        await asyncio.sleep(0)

    loop.run_until_complete(main())
    [report] = reports
    assert isinstance(report["exception"], ValueError)
    assert report["message"].startswith("Exception in callback ")
    assert "bad" in report["message"]
    handle = report["handle"]
    assert isinstance(handle, Handle)
    assert "bad" in repr(handle)


def test_debug_mode_turned_on_while_calls_are_queued(loop, caplog):
    loop.slow_callback_duration = 0.0

    def slow(fut):
        pass

    fut = loop.create_future()
    fut.add_done_callback(slow)
    fut.set_result(None)        # queued while not in debug mode
    loop.set_debug(True)
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.call_soon(loop.stop)
        loop.run_forever()
    assert any("Executing <Handle" in r.getMessage() and "slow" in r.getMessage()
               for r in caplog.records)


def test_queued_calls_are_seen_by_the_collector(loop):
    class Callback:
        def __call__(self, fut):
            pass

    cb = Callback()
    cb.cycle = cb
    ref = weakref.ref(cb)
    fut = loop.create_future()
    fut.add_done_callback(cb)
    fut.set_result(None)
    del cb, fut
    gc.collect()
    # The loop's queue keeps it alive, and reports it among its referents.
    assert ref() is not None
    assert any(r is ref() for r in gc.get_referents(loop))
    loop.call_soon(loop.stop)
    loop.run_forever()
    gc.collect()
    assert ref() is None


def test_closed_loop_refuses_a_task_step():
    loop = ferroloop.new_event_loop()

    async def coro():
        pass

    c = coro()
    loop.close()
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        asyncio.Task(c, loop=loop)
    c.close()


def test_close_drops_queued_calls():
    loop = ferroloop.new_event_loop()

    class Callback:
        def __call__(self, fut):
            pass

    cb = Callback()
    ref = weakref.ref(cb)
    fut = loop.create_future()
    fut.add_done_callback(cb)
    fut.set_result(None)
    del cb, fut
    loop.close()
    gc.collect()
    assert ref() is None
