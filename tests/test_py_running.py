"""Running and closing a ferroloop loop: run_forever, run_until_complete,
close, __del__, repr, and the per-run state asyncio expects."""

import asyncio
import gc
import sys
import threading
import warnings

import pytest

import ferroloop


@pytest.fixture
def loop():
    loop = ferroloop.new_event_loop()
    yield loop
    loop.close()


def test_loop_is_an_abstract_event_loop(loop):
    assert isinstance(loop, asyncio.AbstractEventLoop)
    assert isinstance(loop, ferroloop.Loop)


def test_run_until_complete_returns_coroutine_result(loop):
    async def compute():
        await asyncio.sleep(0)
        return 42

    assert loop.run_until_complete(compute()) == 42


def test_run_until_complete_accepts_future(loop):
    fut = loop.create_future()
    loop.call_soon(fut.set_result, 'done')
    assert loop.run_until_complete(fut) == 'done'


def test_run_until_complete_reraises_exception(loop):
    async def fail():
        raise ValueError('boom')

    with pytest.raises(ValueError, match='boom'):
        loop.run_until_complete(fail())


def test_run_until_complete_stopped_early(loop):
    fut = loop.create_future()
    loop.call_soon(loop.stop)
    with pytest.raises(RuntimeError,
                       match=r'^Event loop stopped before Future completed\.$'):
        loop.run_until_complete(fut)


def test_run_until_complete_keyboard_interrupt_propagates(loop):
    async def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        loop.run_until_complete(interrupted())
    assert not loop.is_running()
    # The loop is reusable after a BaseException escaped.
    assert loop.run_until_complete(asyncio.sleep(0, 'again')) == 'again'


def test_run_until_complete_future_of_other_loop(loop):
    other = ferroloop.new_event_loop()
    try:
        fut = other.create_future()
        with pytest.raises(ValueError):
            loop.run_until_complete(fut)
    finally:
        other.close()


def test_run_until_complete_removes_its_stop_callback(loop):
    fut = loop.create_future()
    loop.call_soon(loop.stop)
    with pytest.raises(RuntimeError):
        loop.run_until_complete(fut)

    async def complete_it_then_continue():
        fut.set_result(None)
        # If the first run's stop callback were still on fut, it would stop
        # the loop during these steps.
        for _ in range(3):
            await asyncio.sleep(0)
        return 'finished'

    assert loop.run_until_complete(complete_it_then_continue()) == 'finished'


def test_run_forever_sets_and_resets_running_state(loop):
    seen = {}

    def probe():
        seen['running_loop'] = asyncio.get_running_loop()
        seen['is_running'] = loop.is_running()
        seen['thread_id'] = loop._thread_id
        seen['hooks'] = sys.get_asyncgen_hooks()
        loop.stop()

    hooks_before = sys.get_asyncgen_hooks()
    loop.call_soon(probe)
    loop.run_forever()

    assert seen['running_loop'] is loop
    assert seen['is_running'] is True
    assert seen['thread_id'] == threading.get_ident()
    assert seen['hooks'].firstiter == loop._asyncgen_firstiter_hook
    assert seen['hooks'].finalizer == loop._asyncgen_finalizer_hook
    assert not loop.is_running()
    assert loop._thread_id is None
    assert not loop._stopping
    assert sys.get_asyncgen_hooks() == hooks_before
    with pytest.raises(RuntimeError, match='no running event loop'):
        asyncio.get_running_loop()


def test_stop_before_run_forever_runs_one_iteration(loop):
    calls = []
    loop.call_soon(calls.append, 1)
    loop.stop()
    loop.run_forever()
    assert calls == [1]


def test_run_forever_when_already_running(loop):
    errors = []

    def nested():
        try:
            loop.run_forever()
        except RuntimeError as exc:
            errors.append(str(exc))
        loop.stop()

    loop.call_soon(nested)
    loop.run_forever()
    assert errors == ['This event loop is already running']


def test_run_until_complete_when_already_running(loop):
    async def nested():
        coro = asyncio.sleep(0)
        try:
            with pytest.raises(RuntimeError,
                               match='^This event loop is already running$'):
                loop.run_until_complete(coro)
        finally:
            coro.close()

    loop.run_until_complete(nested())


def test_cannot_run_inside_another_running_loop(loop):
    other = ferroloop.new_event_loop()
    try:
        async def nested():
            with pytest.raises(RuntimeError, match=(
                    '^Cannot run the event loop while another loop is '
                    'running$')):
                other.run_forever()

        loop.run_until_complete(nested())
    finally:
        other.close()


def test_run_on_closed_loop():
    loop = ferroloop.new_event_loop()
    loop.close()
    with pytest.raises(RuntimeError, match='^Event loop is closed$'):
        loop.run_forever()
    coro = asyncio.sleep(0)
    with pytest.raises(RuntimeError, match='^Event loop is closed$'):
        loop.run_until_complete(coro)
    coro.close()


def test_close_is_idempotent_and_refused_while_running(loop):
    async def try_close():
        with pytest.raises(RuntimeError,
                           match='^Cannot close a running event loop$'):
            loop.close()

    loop.run_until_complete(try_close())
    loop.close()
    loop.close()
    assert loop.is_closed()
    with pytest.raises(RuntimeError, match='^Event loop is closed$'):
        loop.call_soon(print)


def test_close_logs_in_debug_mode(loop, caplog):
    loop.set_debug(True)
    with caplog.at_level('DEBUG', logger='asyncio'):
        loop.close()
    # caplog.text was formatted when logged (the repr is evaluated lazily).
    assert 'Close <Loop running=False closed=False debug=True>' in caplog.text


def test_repr(loop):
    loop.set_debug(False)  # the default is True under -X dev
    assert repr(loop) == '<Loop running=False closed=False debug=False>'

    async def running_repr():
        return repr(loop)

    assert loop.run_until_complete(running_repr()) == (
        '<Loop running=True closed=False debug=False>')
    loop.close()
    assert repr(loop) == '<Loop running=False closed=True debug=False>'


def test_unclosed_loop_warns_and_closes():
    loop = ferroloop.new_event_loop()
    with pytest.warns(ResourceWarning, match='unclosed event loop <Loop '):
        del loop
        gc.collect()


def test_closed_loop_does_not_warn():
    loop = ferroloop.new_event_loop()
    loop.close()
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        del loop
        gc.collect()


def test_debug_mode_enables_coroutine_origin_tracking(loop):
    depth_before = sys.get_coroutine_origin_tracking_depth()
    loop.set_debug(True)

    async def depth():
        return sys.get_coroutine_origin_tracking_depth()

    assert loop.run_until_complete(depth()) == asyncio.constants.DEBUG_STACK_DEPTH
    assert sys.get_coroutine_origin_tracking_depth() == depth_before


def test_set_debug_while_running_switches_origin_tracking(loop):
    async def toggle():
        loop.set_debug(True)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        on = sys.get_coroutine_origin_tracking_depth()
        loop.set_debug(False)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return on, sys.get_coroutine_origin_tracking_depth()

    depth_before = sys.get_coroutine_origin_tracking_depth()
    on, off = loop.run_until_complete(toggle())
    assert on == asyncio.constants.DEBUG_STACK_DEPTH
    assert off == depth_before
    assert loop.get_debug() is False


def test_debug_default_follows_dev_mode():
    # Not dev mode in the test process (unless PYTHONASYNCIODEBUG is set).
    loop = ferroloop.new_event_loop()
    try:
        assert loop.get_debug() == asyncio.coroutines._is_debug_mode()
    finally:
        loop.close()


def test_callbacks_from_threads_wake_the_loop(loop):
    fut = loop.create_future()

    def worker():
        loop.call_soon_threadsafe(fut.set_result, threading.get_ident())

    async def main():
        t = threading.Thread(target=worker)
        t.start()
        try:
            return await fut
        finally:
            t.join()

    assert loop.run_until_complete(main()) != threading.get_ident()
