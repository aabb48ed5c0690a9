"""Child exit watching: every child is reaped (no zombies), no fds are left
behind, on the pidfd path and on the waiter-thread fallback; children of a
loop that closes are still reaped.

The concurrency test runs on stock asyncio and ferroloop alike; the rest
exercise ferroloop's own watcher (ferroloop._child_watcher), which the stock
loop does not have.
"""

import asyncio
import errno
import logging
import os
import shutil
import signal
import subprocess
import threading

import pytest

import ferroloop
from ferroloop import _child_watcher

from _procutil import (  # noqa: F401  (loop: pytest fixture)
    assert_reaped, close_loop, join_threads, loop, open_fds, python_child,
    run, zombie_children)


PIPE = subprocess.PIPE
ECHO = shutil.which('echo')


async def echo(i):
    proc = await asyncio.create_subprocess_exec(ECHO, str(i), stdout=PIPE)
    out, _ = await proc.communicate()
    return proc.pid, proc.returncode, out


def check_echoes(results):
    assert [(rc, out) for _, rc, out in results] == [
        (0, b'%d\n' % i) for i in range(len(results))]
    assert_reaped([pid for pid, _, _ in results])


@pytest.fixture
def ferro():
    lp = ferroloop.new_event_loop()
    asyncio.set_event_loop(lp)
    yield lp
    asyncio.set_event_loop(None)
    close_loop(lp)


@pytest.fixture
def thread_fallback(monkeypatch):
    """ferroloop's watcher as on a kernel without pidfd_open."""
    monkeypatch.setattr(_child_watcher, 'USE_PIDFD', False)


# --------------------------------------------------------------------------
# Many children


def test_200_concurrent_short_lived_children(loop):
    async def main():
        # One child first: whatever a loop sets up on first use (not per
        # child) is not growth.
        await echo(0)
        fds_before = open_fds()
        results = await asyncio.gather(*(echo(i) for i in range(200)))
        return results, fds_before, open_fds()

    results, fds_before, fds_after = run(loop, main())
    check_echoes(results)
    assert fds_after == fds_before
    assert zombie_children() == []


def test_200_concurrent_children_on_the_thread_fallback(ferro,
                                                        thread_fallback):
    async def main():
        fds_before = open_fds()
        results = await asyncio.gather(*(echo(i) for i in range(200)))
        return results, fds_before, open_fds()

    results, fds_before, fds_after = run(ferro, main())
    check_echoes(results)
    assert fds_after == fds_before
    join_threads('ferroloop-waitpid-')


# --------------------------------------------------------------------------
# Which mechanism watches


def sleeper_args():
    return python_child('import sys; sys.stdin.read()')


def test_pidfd_is_used_when_available(ferro):
    if not _child_watcher.USE_PIDFD:
        pytest.skip('pidfd_open does not work here')

    async def main():
        proc = await asyncio.create_subprocess_exec(*sleeper_args(),
                                                    stdin=PIPE)
        watcher = ferro._child_exit_watcher
        pidfd = watcher._pidfds[proc.pid]
        assert ferro._is_watching(pidfd, True)
        assert not [t for t in threading.enumerate()
                    if t.name == f'ferroloop-waitpid-{proc.pid}']
        proc.stdin.close()
        assert await proc.wait() == 0
        # The pidfd is closed once the child is reaped.
        assert proc.pid not in watcher._pidfds
        with pytest.raises(OSError) as info:
            os.fstat(pidfd)
        assert info.value.errno == errno.EBADF
        return proc.pid

    assert_reaped([run(ferro, main())])


def test_thread_fallback_reports_exit_codes_and_signals(ferro,
                                                        thread_fallback):
    async def main():
        proc = await asyncio.create_subprocess_exec(*sleeper_args(),
                                                    stdin=PIPE)
        assert [t for t in threading.enumerate()
                if t.name == f'ferroloop-waitpid-{proc.pid}']
        assert not ferro._child_exit_watcher._pidfds
        proc.kill()
        killed = await proc.wait()
        exiting = await asyncio.create_subprocess_exec(
            *python_child('import sys; sys.exit(3)'))
        return [proc.pid, exiting.pid], killed, await exiting.wait()

    pids, killed, exited = run(ferro, main())
    assert (killed, exited) == (-signal.SIGKILL, 3)
    assert_reaped(pids)


def test_pidfd_open_failure_falls_back_to_a_thread(ferro, monkeypatch):
    def out_of_fds(pid):
        raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

    monkeypatch.setattr(_child_watcher, 'USE_PIDFD', True)
    monkeypatch.setattr(os, 'pidfd_open', out_of_fds, raising=False)

    async def main():
        proc = await asyncio.create_subprocess_exec(
            *python_child('print("fine")'), stdout=PIPE)
        out, _ = await proc.communicate()
        return proc.pid, proc.returncode, out

    pid, returncode, out = run(ferro, main())
    assert (returncode, out) == (0, b'fine\n')
    assert_reaped([pid])


# --------------------------------------------------------------------------
# A status someone else collected


def test_status_collected_by_the_popen_object(ferro):
    # Popen.wait() on the transport's Popen reaps the child before the loop
    # does.  Popen knows the code, so ferroloop reports it (the stock loop
    # reports 255 and logs "exit status already read").
    async def main():
        transport, _ = await ferro.subprocess_exec(
            asyncio.SubprocessProtocol,
            *python_child('import sys; sys.exit(5)'),
            stdin=None, stdout=None, stderr=None)
        transport.get_extra_info('subprocess').wait()
        returncode = await transport._wait()
        transport.close()
        return returncode

    assert run(ferro, main()) == 5


def test_status_collected_elsewhere_reports_255(ferro, monkeypatch,
                                                caplog):
    # A waitpid() outside asyncio reaped the child before the watcher
    # started: the code is lost, as on the stock loop.
    real_pidfd_open = getattr(os, 'pidfd_open', None)

    def reaped_first(pid):
        os.waitpid(pid, 0)
        if real_pidfd_open is None:
            raise ProcessLookupError
        return real_pidfd_open(pid)  # raises ProcessLookupError

    monkeypatch.setattr(_child_watcher, 'USE_PIDFD', True)
    monkeypatch.setattr(os, 'pidfd_open', reaped_first, raising=False)

    async def main():
        proc = await asyncio.create_subprocess_exec(*python_child('pass'))
        return await proc.wait()

    with caplog.at_level(logging.WARNING, logger='asyncio'):
        assert run(ferro, main()) == 255
    assert 'exit status already read' in caplog.text


# --------------------------------------------------------------------------
# Closing the loop while children run


def start_sleeper(loop):
    # No pipes: a pipe transport cannot be closed once its loop is.
    async def main():
        transport, _ = await loop.subprocess_exec(
            asyncio.SubprocessProtocol,
            *python_child('import time; time.sleep(60)'),
            stdin=None, stdout=None, stderr=None)
        return transport

    return run(loop, main())


@pytest.mark.parametrize('use_pidfd', [True, False],
                         ids=['pidfd', 'thread'])
def test_closed_loop_still_reaps_its_children(use_pidfd, monkeypatch,
                                              caplog):
    if use_pidfd and not _child_watcher.USE_PIDFD:
        pytest.skip('pidfd_open does not work here')
    monkeypatch.setattr(_child_watcher, 'USE_PIDFD', use_pidfd)
    loop = ferroloop.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        transport = start_sleeper(loop)
    finally:
        asyncio.set_event_loop(None)
    pid = transport.get_pid()

    with caplog.at_level(logging.WARNING, logger='asyncio'):
        loop.close()
        # Still running: nobody will be told, but it must be reaped once
        # it exits.
        os.kill(pid, signal.SIGKILL)
        join_threads(f'ferroloop-reap-{pid}')
        join_threads(f'ferroloop-waitpid-{pid}')
    assert_reaped([pid])
    assert f'that handles pid {pid} is closed' in caplog.text
    # The transport was never told; its Popen finds the child gone (no
    # kill), and closing it keeps its __del__ from warning.
    transport.close()


def test_loop_close_after_child_exit_reaps_without_a_thread(monkeypatch):
    if not _child_watcher.USE_PIDFD:
        pytest.skip('pidfd_open does not work here')
    loop = ferroloop.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        transport = start_sleeper(loop)
    finally:
        asyncio.set_event_loop(None)
    pid = transport.get_pid()
    os.kill(pid, signal.SIGKILL)
    # A zombie now: the loop is not running, so nobody reaps it yet.
    os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
    loop.close()
    assert not [t for t in threading.enumerate()
                if t.name == f'ferroloop-reap-{pid}']
    assert_reaped([pid])
    transport.close()
