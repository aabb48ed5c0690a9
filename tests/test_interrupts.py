"""Ctrl-C (SIGINT) while the loop sleeps in its poll."""
import ctypes
import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest


def test_sigint_during_long_poll_raises_keyboard_interrupt_promptly(loop):
    # The loop would sleep for an hour; SIGINT from another thread must end it.
    far = loop.call_later(3600, loop.stop)
    t0 = loop.time()

    def interrupt_soon():
        entered.wait()
        os.kill(os.getpid(), signal.SIGINT)

    entered = threading.Event()
    loop.call_soon(entered.set)
    t = threading.Thread(target=interrupt_soon)
    t.start()
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    t.join()
    assert loop.time() - t0 < 5
    assert not loop.is_running()
    # The loop stays usable.
    seen = []
    loop.call_soon(seen.append, 'again')
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == ['again']
    far.cancel()


def test_sigint_just_before_a_long_poll_is_not_missed(loop):
    # libc's kill() called through ctypes (os.kill would check for signals
    # itself): the signal's C handler runs inside it and only sets a flag,
    # and no Python bytecode runs before the loop's next poll, which would
    # sleep for an hour. The wakeup fd makes that poll return at once.
    libc_kill = ctypes.CDLL(None, use_errno=True).kill
    far = loop.call_later(3600, loop.stop)
    # If the signal were missed, a second one during the poll ends the test.
    watchdog = threading.Timer(10, os.kill, (os.getpid(), signal.SIGINT))
    watchdog.start()
    t0 = loop.time()
    loop.call_soon(libc_kill, os.getpid(), signal.SIGINT)
    try:
        with pytest.raises(KeyboardInterrupt):
            loop.run_forever()
    finally:
        watchdog.cancel()
    assert loop.time() - t0 < 5
    # The wakeup fd is ours only while the loop runs.
    assert signal.set_wakeup_fd(-1) == -1
    far.cancel()


def test_wakeup_fd_set_by_the_application_is_left_alone(loop):
    import socket
    a, b = socket.socketpair()
    a.setblocking(False)
    try:
        signal.set_wakeup_fd(a.fileno())
        seen = []
        loop.call_soon(lambda: seen.append(signal.set_wakeup_fd(a.fileno())))
        loop.call_soon(loop.stop)
        loop.run_forever()
        assert seen == [a.fileno()]
        assert signal.set_wakeup_fd(-1) == a.fileno()
    finally:
        signal.set_wakeup_fd(-1)
        a.close()
        b.close()


def test_ctrl_c_in_asyncio_run_cancels_main_like_stock_runner():
    script = textwrap.dedent('''
        import asyncio, os, signal, sys
        import ferroloop

        signal.signal(signal.SIGINT, signal.default_int_handler)

        async def main():
            loop = asyncio.get_running_loop()
            loop.call_later(0.05, os.kill, os.getpid(), signal.SIGINT)
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                print("main cancelled", flush=True)
                raise

        try:
            ferroloop.run(main())
        except KeyboardInterrupt:
            print("KeyboardInterrupt", flush=True)
    ''')
    out = subprocess.run([sys.executable, '-c', script], capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.split() == ['main', 'cancelled', 'KeyboardInterrupt'], out.stderr
