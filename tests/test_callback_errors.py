"""A raising callback is reported to the exception handler; the loop goes on."""
import asyncio
import gc
import logging

import pytest


def test_exception_goes_to_handler_and_loop_continues(loop):
    reports = []
    loop.set_exception_handler(lambda lp, ctx: reports.append((lp, ctx)))
    seen = []

    def boom():
        raise ValueError('boom')

    h = loop.call_soon(boom)
    loop.call_soon(seen.append, 'after')
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == ['after']
    assert len(reports) == 1
    lp, ctx = reports[0]
    assert lp is loop
    assert isinstance(ctx['exception'], ValueError)
    assert ctx['handle'] is h
    assert ctx['message'].startswith('Exception in callback ')
    assert 'boom' in ctx['message']


def test_base_exceptions_other_than_exit_and_interrupt_are_reported(loop):
    reports = []
    loop.set_exception_handler(lambda lp, ctx: reports.append(ctx))

    def cancelled():
        raise asyncio.CancelledError()

    loop.call_soon(cancelled)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert isinstance(reports[0]['exception'], asyncio.CancelledError)


def test_keyboard_interrupt_in_callback_propagates_and_loop_stays_usable(loop):
    seen = []

    def interrupt():
        raise KeyboardInterrupt

    loop.call_soon(interrupt)
    loop.call_soon(seen.append, 'queued-after')
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    assert not loop.is_running()
    # The rest of the batch is still queued and runs on the next run.
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == ['queued-after']


def test_system_exit_in_callback_propagates(loop):
    loop.call_soon(lambda: (_ for _ in ()).throw(SystemExit(3)))
    with pytest.raises(SystemExit):
        loop.run_forever()


def test_default_handler_logs_the_error(loop, caplog):
    def boom():
        raise RuntimeError('logged')

    loop.call_soon(boom)
    loop.call_soon(loop.stop)
    with caplog.at_level(logging.ERROR, logger='asyncio'):
        loop.run_forever()
    assert any('Exception in callback' in r.getMessage() for r in caplog.records)
    assert any(r.exc_info and r.exc_info[0] is RuntimeError for r in caplog.records)


def test_task_exception_never_retrieved_is_logged(loop, caplog):
    async def fails():
        raise ValueError('never retrieved')

    task = loop.create_task(fails())
    loop.call_soon(loop.stop)
    loop.run_forever()
    loop.run_until_complete(asyncio.sleep(0))
    assert task.done()
    with caplog.at_level(logging.ERROR, logger='asyncio'):
        del task
        gc.collect()
    assert any('Task exception was never retrieved' in r.getMessage()
               for r in caplog.records)
