"""run_in_executor and the default executor's life cycle."""

import asyncio
import concurrent.futures
import threading

import pytest

import ferroloop


@pytest.fixture
def loop():
    loop = ferroloop.new_event_loop()
    yield loop
    loop.close()


def test_run_in_default_executor_uses_a_thread(loop):
    async def main():
        return await loop.run_in_executor(None, threading.get_ident)

    worker_id = loop.run_until_complete(main())
    assert worker_id != threading.get_ident()
    assert isinstance(loop._default_executor,
                      concurrent.futures.ThreadPoolExecutor)


def test_run_in_executor_propagates_exceptions(loop):
    def fail(x):
        raise ValueError(x)

    async def main():
        return await loop.run_in_executor(None, fail, 'bad')

    with pytest.raises(ValueError, match='bad'):
        loop.run_until_complete(main())


def test_run_in_custom_executor(loop):
    with concurrent.futures.ThreadPoolExecutor(
            thread_name_prefix='custom') as executor:
        async def main():
            return await loop.run_in_executor(
                executor, lambda: threading.current_thread().name)

        assert loop.run_until_complete(main()).startswith('custom')
    assert loop._default_executor is None


def test_set_default_executor(loop):
    with pytest.raises(TypeError,
                       match='^executor must be ThreadPoolExecutor instance$'):
        loop.set_default_executor(concurrent.futures.Executor())
    executor = concurrent.futures.ThreadPoolExecutor(
        thread_name_prefix='chosen')
    loop.set_default_executor(executor)

    async def main():
        return await loop.run_in_executor(
            None, lambda: threading.current_thread().name)

    assert loop.run_until_complete(main()).startswith('chosen')
    loop.run_until_complete(loop.shutdown_default_executor())
    assert executor._shutdown


def test_shutdown_default_executor_waits_and_blocks_reuse(loop):
    release = threading.Event()
    finished = []

    def slow():
        release.wait()
        finished.append(True)

    async def main():
        fut = loop.run_in_executor(None, slow)
        loop.call_soon(release.set)
        await loop.shutdown_default_executor()
        # shutdown(wait=True) returned: the job has finished.
        assert finished == [True]
        await fut
        with pytest.raises(RuntimeError,
                           match='^Executor shutdown has been called$'):
            loop.run_in_executor(None, print)

    loop.run_until_complete(main())


def test_shutdown_default_executor_without_executor(loop):
    loop.run_until_complete(loop.shutdown_default_executor())
    assert loop._default_executor is None


def test_close_shuts_default_executor_down(loop):
    loop.run_until_complete(loop.run_in_executor(None, int))
    executor = loop._default_executor
    loop.close()
    assert executor._shutdown
    assert loop._default_executor is None


def test_run_in_executor_on_closed_loop():
    loop = ferroloop.new_event_loop()
    loop.close()
    with pytest.raises(RuntimeError, match='^Event loop is closed$'):
        loop.run_in_executor(None, print)


def test_debug_mode_rejects_coroutine_functions(loop):
    loop.set_debug(True)

    async def coro_func():
        pass

    with pytest.raises(TypeError, match=r'^coroutines cannot be used with '
                                        r'run_in_executor\(\)$'):
        loop.run_in_executor(None, coro_func)
    with pytest.raises(TypeError, match=r'^a callable object was expected by '
                                        r'run_in_executor\(\), got 1$'):
        loop.run_in_executor(None, 1)


def test_to_thread_works(loop):
    async def main():
        return await asyncio.to_thread(lambda: 'from thread')

    assert loop.run_until_complete(main()) == 'from thread'
