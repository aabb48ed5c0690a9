"""Debug mode: slow callback warnings, wrong-thread calls, source tracebacks."""
import asyncio
import logging
import threading
import time

import pytest


def test_slow_callback_is_logged(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.01

    def slow_callback():
        time.sleep(0.03)

    loop.call_soon(slow_callback)
    loop.call_soon(loop.stop)
    with caplog.at_level(logging.WARNING, logger='asyncio'):
        loop.run_forever()
    msgs = [r.getMessage() for r in caplog.records]
    assert any(m.startswith('Executing <Handle ') and 'slow_callback()' in m and 'took' in m
               and m.endswith('seconds') for m in msgs), msgs


def test_non_threadsafe_call_from_other_thread_raises_in_debug(loop):
    loop.set_debug(True)
    errors = []

    def from_other_thread():
        try:
            loop.call_soon(print)
        except RuntimeError as e:
            errors.append(str(e))
        loop.call_soon_threadsafe(loop.stop)

    loop.call_soon(lambda: threading.Thread(target=from_other_thread).start())
    loop.run_forever()
    assert errors == ['Non-thread-safe operation invoked on an event loop '
                      'other than the current one']


def test_coroutine_callbacks_are_refused_in_debug(loop):
    loop.set_debug(True)

    async def coro():
        pass

    with pytest.raises(TypeError, match='coroutines cannot be used with call_soon'):
        loop.call_soon(coro)
    with pytest.raises(TypeError, match='a callable object was expected by call_later'.replace('call_later', 'call_at')):
        loop.call_later(1, 'not callable')


def test_handles_carry_source_traceback_in_debug(loop):
    loop.set_debug(True)
    h = loop.call_soon(print)
    assert h._source_traceback
    assert h._source_traceback[-1][0] == __file__
    assert 'created at ' + __file__ in repr(h)
    h.cancel()


def test_debug_follows_asyncio_run_flag():
    import ferroloop

    async def main():
        return asyncio.get_running_loop().get_debug()

    assert ferroloop.run(main(), debug=True) is True
