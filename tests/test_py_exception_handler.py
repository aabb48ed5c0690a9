"""Exception handler routing: custom handlers, the default handler's log
format, and the failure paths of both."""

import asyncio
import logging

import pytest

import ferroloop


@pytest.fixture
def loop():
    loop = ferroloop.new_event_loop()
    yield loop
    loop.close()


def run_one_iteration(loop):
    loop.call_soon(loop.stop)
    loop.run_forever()


def test_set_exception_handler_rejects_non_callable(loop):
    with pytest.raises(TypeError,
                       match=r"^A callable object or None is expected, got 'x'$"):
        loop.set_exception_handler('x')
    assert loop.get_exception_handler() is None


def test_callback_exception_goes_to_custom_handler(loop):
    seen = []

    def handler(handler_loop, context):
        seen.append((handler_loop, context))

    loop.set_exception_handler(handler)
    assert loop.get_exception_handler() is handler

    def broken():
        raise ZeroDivisionError('oops')

    loop.call_soon(broken)
    run_one_iteration(loop)

    assert len(seen) == 1
    handler_loop, context = seen[0]
    assert handler_loop is loop
    assert isinstance(context['exception'], ZeroDivisionError)
    assert context['message'].startswith('Exception in callback ')
    assert 'broken' in context['message']
    assert 'handle' in context


def test_exception_in_reader_callback_goes_to_handler(loop):
    import socket
    seen = []
    handled = loop.create_future()

    def handler(handler_loop, context):
        seen.append(context)
        handled.set_result(None)

    loop.set_exception_handler(handler)
    a, b = socket.socketpair()
    try:
        def reader():
            loop.remove_reader(a)
            raise KeyError('reader')

        loop.add_reader(a, reader)
        b.send(b'x')
        loop.run_until_complete(handled)
    finally:
        a.close()
        b.close()
    assert [type(ctx['exception']) for ctx in seen] == [KeyError]



def test_callback_exception_keeps_its_traceback(loop, caplog):
    def broken_callback():
        raise ZeroDivisionError('with traceback')

    loop.call_soon(broken_callback)
    with caplog.at_level(logging.ERROR, logger='asyncio'):
        run_one_iteration(loop)
    assert 'in broken_callback' in caplog.text
    assert 'ZeroDivisionError: with traceback' in caplog.text


def test_unretrieved_task_exception_reaches_handler(loop):
    seen = []
    loop.set_exception_handler(lambda lp, ctx: seen.append(ctx))

    async def fail():
        raise ValueError('lost')

    task = loop.create_task(fail())
    run_one_iteration(loop)
    assert task.done()
    del task
    import gc
    gc.collect()
    assert len(seen) == 1
    assert seen[0]['message'] == 'Task exception was never retrieved'
    assert isinstance(seen[0]['exception'], ValueError)


def test_default_handler_log_format(loop, caplog):
    try:
        raise RuntimeError('logged')
    except RuntimeError as exc:
        error = exc
    with caplog.at_level(logging.ERROR, logger='asyncio'):
        loop.call_exception_handler({
            'message': 'Something failed',
            'exception': error,
            'zeta': 1,
            'alpha': 'text',
        })
    [record] = caplog.records
    assert record.name == 'asyncio'
    assert record.levelno == logging.ERROR
    # Message first, then the other keys sorted, values repr()'d.
    assert record.getMessage() == "Something failed\nalpha: 'text'\nzeta: 1"
    assert record.exc_info[1] is error


def test_default_handler_without_message_or_exception(loop, caplog):
    with caplog.at_level(logging.ERROR, logger='asyncio'):
        loop.default_exception_handler({})
    [record] = caplog.records
    assert record.getMessage() == 'Unhandled exception in event loop'
    assert not record.exc_info


def test_default_handler_formats_source_traceback(loop, caplog):
    import traceback
    frames = traceback.extract_stack()[-2:]
    with caplog.at_level(logging.ERROR, logger='asyncio'):
        loop.default_exception_handler({'message': 'm',
                                        'source_traceback': frames})
    text = caplog.records[0].getMessage()
    assert text.startswith(
        'm\nsource_traceback: Object created at (most recent call last):\n')


def test_failing_custom_handler_falls_back_to_default(loop, caplog):
    def bad_handler(handler_loop, context):
        raise LookupError('handler broke')

    loop.set_exception_handler(bad_handler)
    with caplog.at_level(logging.ERROR, logger='asyncio'):
        loop.call_exception_handler({'message': 'original'})
    [record] = caplog.records
    assert record.getMessage() == (
        "Unhandled error in exception handler\n"
        "context: {'message': 'original'}")
    assert isinstance(record.exc_info[1], LookupError)


def test_failing_default_handler_is_logged(caplog):
    class BrokenDefault(ferroloop.Loop):
        def default_exception_handler(self, context):
            raise OSError('default broke')

    loop = BrokenDefault()
    try:
        with caplog.at_level(logging.ERROR, logger='asyncio'):
            loop.call_exception_handler({'message': 'x'})
        assert caplog.records[-1].getMessage() == (
            'Exception in default exception handler')

        caplog.clear()
        loop.set_exception_handler(lambda lp, ctx: 1 / 0)
        with caplog.at_level(logging.ERROR, logger='asyncio'):
            loop.call_exception_handler({'message': 'x'})
        assert caplog.records[-1].getMessage() == (
            'Exception in default exception handler while handling an '
            'unexpected error in custom exception handler')
    finally:
        loop.close()


def test_keyboard_interrupt_from_handler_propagates(loop):
    def handler(handler_loop, context):
        raise KeyboardInterrupt

    loop.set_exception_handler(handler)
    with pytest.raises(KeyboardInterrupt):
        loop.call_exception_handler({'message': 'x'})


def test_keyboard_interrupt_from_callback_leaves_run_forever(loop):
    def interrupt():
        raise KeyboardInterrupt

    later = []
    loop.call_soon(interrupt)
    loop.call_soon(later.append, 1)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    assert not loop.is_running()
    # The other callback is still pending and runs on the next run.
    run_one_iteration(loop)
    assert later == [1]
