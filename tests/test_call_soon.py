"""call_soon: FIFO order, one batch per iteration, contexts, cancellation."""
import contextvars

import pytest


def test_callbacks_run_in_fifo_order(loop):
    seen = []
    for i in range(100):
        loop.call_soon(seen.append, i)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == list(range(100))


def test_callbacks_scheduled_by_callbacks_wait_for_the_next_iteration(loop):
    seen = []

    def first():
        seen.append('first')
        loop.call_soon(seen.append, 'scheduled-by-first')

    loop.call_soon(first)
    loop.call_soon(seen.append, 'second')
    loop.call_soon(loop.stop)
    loop.run_forever()
    # stop() ends the loop after the iteration in which it was called, so the
    # callback queued during that iteration has not run yet.
    assert seen == ['first', 'second']
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == ['first', 'second', 'scheduled-by-first']


def test_cancelled_handle_does_not_run(loop):
    seen = []
    h = loop.call_soon(seen.append, 'cancelled')
    loop.call_soon(seen.append, 'kept')
    h.cancel()
    h.cancel()  # idempotent
    assert h.cancelled()
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == ['kept']


def test_callback_runs_in_a_copy_of_the_calling_context(loop):
    var = contextvars.ContextVar('var', default='default')
    var.set('at-schedule-time')
    seen = []

    def cb():
        seen.append(var.get())
        var.set('changed-inside')

    h = loop.call_soon(cb)
    var.set('after-schedule')
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == ['at-schedule-time']
    assert var.get() == 'after-schedule'
    assert h.get_context()[var] == 'changed-inside'


def test_explicit_context_is_used(loop):
    var = contextvars.ContextVar('var', default='default')
    ctx = contextvars.copy_context()
    ctx.run(var.set, 'in-ctx')
    seen = []
    loop.call_soon(lambda: seen.append(var.get()), context=ctx)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == ['in-ctx']


def test_arguments_are_passed(loop):
    seen = []
    loop.call_soon(lambda *a: seen.append(a), 1, 'two', None)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == [(1, 'two', None)]


def test_handle_repr_names_the_callback(loop):
    def some_callback():
        pass

    h = loop.call_soon(some_callback)
    assert repr(h).startswith('<Handle ')
    assert 'some_callback()' in repr(h)
    h.cancel()
    assert repr(h) == '<Handle cancelled>'


def test_call_soon_on_closed_loop_raises(loop):
    loop.close()
    with pytest.raises(RuntimeError, match='Event loop is closed'):
        loop.call_soon(print)
