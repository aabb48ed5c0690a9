"""loop.add_signal_handler / remove_signal_handler (Unix, main thread)."""

import asyncio
import os
import signal
import threading

import pytest

import ferroloop


@pytest.fixture
def loop():
    loop = ferroloop.new_event_loop()
    yield loop
    loop.close()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def current_wakeup_fd():
    fd = signal.set_wakeup_fd(-1)
    if fd != -1:
        signal.set_wakeup_fd(fd)
    return fd


def test_handler_runs_on_signal(loop):
    received = loop.create_future()

    def on_usr1(*args):
        received.set_result((args, asyncio.get_running_loop()))

    loop.add_signal_handler(signal.SIGUSR1, on_usr1, 'a', 'b')

    async def main():
        os.kill(os.getpid(), signal.SIGUSR1)
        return await received

    args, running = loop.run_until_complete(main())
    assert args == ('a', 'b')
    assert running is loop


def test_signal_delivered_while_loop_sleeps(loop):
    received = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR2, received.set_result, 'usr2')

    def send_from_thread():
        os.kill(os.getpid(), signal.SIGUSR2)

    async def main():
        # The signal arrives while the loop polls with nothing else to do.
        thread = threading.Thread(target=send_from_thread)
        loop.call_soon(thread.start)
        try:
            return await received
        finally:
            thread.join()

    assert loop.run_until_complete(main()) == 'usr2'
    assert loop.remove_signal_handler(signal.SIGUSR2)


def test_handler_runs_once_per_signal_and_repeatedly(loop):
    counts = []
    done = loop.create_future()

    def on_signal():
        counts.append(1)
        if len(counts) == 3:
            done.set_result(None)
        else:
            os.kill(os.getpid(), signal.SIGUSR1)

    loop.add_signal_handler(signal.SIGUSR1, on_signal)
    os.kill(os.getpid(), signal.SIGUSR1)
    loop.run_until_complete(done)
    assert len(counts) == 3


def test_replacing_a_handler(loop):
    got = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, got.set_result, 'first')
    loop.add_signal_handler(signal.SIGUSR1, got.set_result, 'second')
    os.kill(os.getpid(), signal.SIGUSR1)
    assert loop.run_until_complete(got) == 'second'


def test_exception_in_handler_goes_to_exception_handler(loop):
    seen = loop.create_future()
    loop.set_exception_handler(lambda lp, ctx: seen.set_result(ctx))

    def broken():
        raise ValueError('in signal handler')

    loop.add_signal_handler(signal.SIGUSR1, broken)
    os.kill(os.getpid(), signal.SIGUSR1)
    context = loop.run_until_complete(seen)
    assert isinstance(context['exception'], ValueError)
    assert context['message'].startswith('Exception in callback ')
    assert isinstance(context['handle'], asyncio.Handle)


def test_remove_signal_handler(loop):
    loop.add_signal_handler(signal.SIGUSR1, print)
    assert signal.getsignal(signal.SIGUSR1) not in (signal.SIG_DFL,
                                                    signal.SIG_IGN)
    assert current_wakeup_fd() != -1
    assert loop.remove_signal_handler(signal.SIGUSR1) is True
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    assert current_wakeup_fd() == -1
    assert loop.remove_signal_handler(signal.SIGUSR1) is False


def test_removing_sigint_restores_default_int_handler(loop):
    saved = signal.getsignal(signal.SIGINT)
    try:
        loop.add_signal_handler(signal.SIGINT, print)
        assert loop.remove_signal_handler(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, saved)


def test_close_removes_handlers(loop):
    loop.add_signal_handler(signal.SIGUSR1, print)
    loop.add_signal_handler(signal.SIGUSR2, print)
    loop.close()
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL
    assert current_wakeup_fd() == -1
    assert loop._signal_handlers == {}


def test_coroutines_rejected(loop):
    async def coro_func():
        pass

    with pytest.raises(TypeError, match=r'^coroutines cannot be used with '
                                        r'add_signal_handler\(\)$'):
        loop.add_signal_handler(signal.SIGUSR1, coro_func)
    coro = coro_func()
    with pytest.raises(TypeError):
        loop.add_signal_handler(signal.SIGUSR1, coro)
    coro.close()


def test_invalid_signals(loop):
    with pytest.raises(TypeError, match="^sig must be an int, not 'x'$"):
        loop.add_signal_handler('x', print)
    with pytest.raises(ValueError, match=f'^invalid signal number {signal.NSIG + 1}$'):
        loop.add_signal_handler(signal.NSIG + 1, print)
    with pytest.raises(ValueError):
        loop.remove_signal_handler(signal.NSIG + 1)
    with pytest.raises(RuntimeError,
                       match=f'^sig {int(signal.SIGKILL)} cannot be caught$'):
        loop.add_signal_handler(signal.SIGKILL, print)
    assert signal.SIGKILL not in loop._signal_handlers
    assert current_wakeup_fd() == -1


def test_not_main_thread(loop):
    errors = []

    def add():
        try:
            loop.add_signal_handler(signal.SIGUSR1, print)
        except RuntimeError as exc:
            errors.append(str(exc))

    thread = threading.Thread(target=add)
    thread.start()
    thread.join()
    assert errors == ['set_wakeup_fd only works in main thread '
                      'of the main interpreter']
    assert loop._signal_handlers == {}


def test_closed_loop(loop):
    loop.close()
    with pytest.raises(RuntimeError, match='^Event loop is closed$'):
        loop.add_signal_handler(signal.SIGUSR1, print)
