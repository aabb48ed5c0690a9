"""Futures and tasks on a ferroloop loop: CPython's own C Future/Task."""

import asyncio
import contextvars
import inspect

import pytest

import ferroloop


@pytest.fixture
def loop():
    loop = ferroloop.new_event_loop()
    yield loop
    loop.close()


def test_create_future_is_asyncio_future_bound_to_loop(loop):
    fut = loop.create_future()
    assert type(fut) is asyncio.Future
    assert fut.get_loop() is loop


def test_create_future_looks_up_future_class_at_each_call(loop, monkeypatch):
    # As the stock loop's create_future: asyncio.futures.Future is read when
    # called, so patching it (instrumentation, tests) takes effect.
    class TracedFuture(asyncio.Future):
        pass

    monkeypatch.setattr(asyncio.futures, "Future", TracedFuture)
    fut = loop.create_future()
    assert type(fut) is TracedFuture and fut.get_loop() is loop
    monkeypatch.undo()
    assert type(loop.create_future()) is asyncio.Future


def test_create_future_works_on_a_closed_loop_like_the_stock_one():
    loop = ferroloop.new_event_loop()
    loop.close()
    assert loop.create_future().get_loop() is loop


def test_create_future_overridable_in_a_subclass():
    class MyLoop(ferroloop.Loop):
        def create_future(self):
            return "mine"

    loop = MyLoop()
    try:
        assert loop.create_future() == "mine"
    finally:
        loop.close()


def test_create_task_runs_coroutine_with_name(loop):
    async def work():
        return asyncio.current_task().get_name()

    task = loop.create_task(work(), name='worker-1')
    assert type(task) is asyncio.Task
    assert task.get_loop() is loop
    assert loop.run_until_complete(task) == 'worker-1'


def test_create_task_with_context(loop):
    var = contextvars.ContextVar('var', default='outer')
    ctx = contextvars.copy_context()
    ctx.run(var.set, 'inner')

    async def read():
        return var.get()

    assert loop.run_until_complete(loop.create_task(read(), context=ctx)) == 'inner'
    assert var.get() == 'outer'


def test_create_task_on_closed_loop():
    loop = ferroloop.new_event_loop()
    loop.close()
    coro = asyncio.sleep(0)
    with pytest.raises(RuntimeError, match='^Event loop is closed$'):
        loop.create_task(coro)
    coro.close()


def test_set_task_factory_rejects_non_callable(loop):
    with pytest.raises(TypeError,
                       match='^task factory must be a callable or None$'):
        loop.set_task_factory(1)
    assert loop.get_task_factory() is None


def test_task_factory_is_used_with_and_without_context(loop):
    calls = []

    def factory(loop_arg, coro, **kwargs):
        calls.append((loop_arg, sorted(kwargs)))
        return asyncio.Task(coro, loop=loop_arg, **kwargs)

    loop.set_task_factory(factory)
    assert loop.get_task_factory() is factory

    async def noop():
        return 'ok'

    task = loop.create_task(noop(), name='named')
    assert task.get_name() == 'named'
    assert loop.run_until_complete(task) == 'ok'
    ctx = contextvars.copy_context()
    assert loop.run_until_complete(loop.create_task(noop(), context=ctx)) == 'ok'
    # 3.14 made create_task() hand every keyword, name included, to the
    # factory; before, the name was applied to the factory's task afterwards.
    stock_params = inspect.signature(asyncio.BaseEventLoop.create_task).parameters
    named = [] if 'name' in stock_params else ['name']
    assert calls == [(loop, named), (loop, ['context'])]

    loop.set_task_factory(None)
    assert loop.get_task_factory() is None


def test_gather_and_wait_for_on_loop(loop):
    async def delayed(value, delay):
        await asyncio.sleep(delay)
        return value

    async def main():
        results = await asyncio.gather(delayed(1, 0.01), delayed(2, 0))
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(delayed(3, 10), 0.01)
        return results

    assert loop.run_until_complete(main()) == [1, 2]


def test_task_cancellation(loop):
    async def main():
        task = asyncio.ensure_future(asyncio.sleep(10))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return task.cancelled()

    assert loop.run_until_complete(main()) is True
