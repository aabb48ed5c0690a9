"""The spawner thread that runs subprocess.Popen for a ferroloop loop.

One thread per loop serves a burst of children; it exits after being idle,
is joined by loop.close(), and a forked child process gets its own.
"""

import asyncio
import os
import subprocess
import sys
import threading
import warnings

import pytest

import ferroloop
from ferroloop import _spawner

from _procutil import SAFETY_TIMEOUT, assert_reaped, child_pids, python_child


def spawner_threads():
    return [t for t in threading.enumerate()
            if t.name == 'ferroloop-spawner']


@pytest.fixture
def ferro():
    loop = ferroloop.new_event_loop()
    yield loop
    loop.close()


def run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, SAFETY_TIMEOUT))


def test_a_burst_of_children_is_started_by_one_thread(ferro):
    seen = set()

    async def one():
        proc = await asyncio.create_subprocess_exec(
            *python_child('pass'))
        seen.update(t.ident for t in spawner_threads())
        return proc.pid, await proc.wait()

    async def main():
        return await asyncio.gather(*(one() for _ in range(20)))

    results = run(ferro, main())
    assert [rc for _, rc in results] == [0] * 20
    assert len(seen) == 1
    assert_reaped([pid for pid, _ in results])


def test_loop_close_joins_the_thread(ferro, monkeypatch):
    # Idle for longer than the test can take, so that close() has a live
    # thread to join however slowly the child ran.
    monkeypatch.setattr(_spawner, 'IDLE_S', SAFETY_TIMEOUT)

    async def main():
        proc = await asyncio.create_subprocess_exec(*python_child('pass'))
        return proc, await proc.wait()

    proc, rc = run(ferro, main())
    assert rc == 0
    assert spawner_threads()  # idle, not gone yet
    ferro.close()
    assert spawner_threads() == []
    assert_reaped([proc.pid])


def test_idle_thread_exits_and_a_new_one_serves_the_next_child(ferro):
    async def main():
        proc = await asyncio.create_subprocess_exec(*python_child('pass'))
        return await proc.wait()

    assert run(ferro, main()) == 0
    [thread] = spawner_threads()
    thread.join(SAFETY_TIMEOUT)  # it exits after IDLE_S without work
    assert not thread.is_alive()
    assert run(ferro, main()) == 0
    assert [t for t in spawner_threads() if t is not thread]


def test_popen_error_and_its_type_come_through(ferro):
    async def main():
        with pytest.raises(FileNotFoundError):
            await asyncio.create_subprocess_exec('/nonexistent/program')
        with pytest.raises(TypeError):
            await asyncio.create_subprocess_exec(sys.executable, 1.5)
        proc = await asyncio.create_subprocess_exec(*python_child('pass'))
        return await proc.wait()

    assert run(ferro, main()) == 0


@pytest.mark.skipif(not hasattr(os, 'fork'), reason='needs os.fork')
def test_forked_process_gets_a_thread_of_its_own(ferro):
    # Jobs submitted while the loop is not running start at once.
    spawner = _spawner.Spawner(ferro)
    done = threading.Event()
    spawner.submit(done.set)
    assert done.wait(SAFETY_TIMEOUT)
    r, w = os.pipe()
    with warnings.catch_warnings():
        # 3.12+: fork() in a process with threads warns.
        warnings.simplefilter('ignore', DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: the parent's thread does not exist here
        code = 1
        try:
            ran = threading.Event()
            spawner.submit(ran.set)
            if ran.wait(SAFETY_TIMEOUT):
                spawner.close()
                code = 0 if not spawner_threads() else 2
        finally:
            os.write(w, bytes([code]))
            os._exit(code)
    os.close(w)
    try:
        assert os.read(r, 1) == b'\0'
    finally:
        os.close(r)
        os.waitpid(pid, 0)
        spawner.close()
    assert spawner_threads() == []


def test_close_while_a_child_starts_kills_and_reaps_it():
    loop = ferroloop.new_event_loop()
    started = threading.Event()
    release = threading.Event()
    # Hold the spawner thread in a job of ours, so that the child's start
    # is still queued when the loop closes.
    loop._spawner().submit(lambda: (started.set(), release.wait()))
    assert started.wait(SAFETY_TIMEOUT)

    async def start():
        await asyncio.create_subprocess_exec(*python_child('pass'))

    task = loop.create_task(start())
    loop.run_until_complete(asyncio.sleep(0))  # the start is queued
    release.set()
    # Joins the thread: the child starts, finds the loop closed, and is
    # killed and reaped there.
    loop.close()
    assert spawner_threads() == []
    assert child_pids() == []
    task._log_destroy_pending = False  # never to run: the loop is closed


def test_a_failing_start_in_a_burst_leaves_the_others_started(ferro):
    # The thread takes a burst's queued starts together: the one whose
    # Popen raises gets the stock exception, every other child starts.
    async def one(i):
        if i == 10:
            with pytest.raises(FileNotFoundError):
                await asyncio.create_subprocess_exec('/nonexistent/program')
            return None
        proc = await asyncio.create_subprocess_exec(*python_child('pass'))
        return proc.pid, await proc.wait()

    async def main():
        return await asyncio.gather(*(one(i) for i in range(20)))

    results = run(ferro, main())
    assert results[10] is None
    started = [r for i, r in enumerate(results) if i != 10]
    assert [rc for _, rc in started] == [0] * 19
    assert_reaped([pid for pid, _ in started])


def warm_waiting_thread(loop, monkeypatch):
    """Leaves the loop's spawner thread waiting for work, for longer than
    a test may take: only the loop telling it of a start wakes it."""
    monkeypatch.setattr(_spawner, 'IDLE_S', 4 * SAFETY_TIMEOUT)

    async def first():
        proc = await asyncio.create_subprocess_exec(*python_child('pass'))
        return await proc.wait()

    assert run(loop, first()) == 0


def test_a_loop_that_never_blocks_still_starts_its_children(ferro,
                                                            monkeypatch):
    # The thread is told of a start as the loop blocks in its poll; a loop
    # kept busy by callbacks tells it a poll later instead.
    warm_waiting_thread(ferro, monkeypatch)
    spins = 0

    async def main():
        busy = True

        def spin():
            nonlocal spins
            spins += 1
            if busy:
                ferro.call_soon(spin)

        ferro.call_soon(spin)
        try:
            proc = await asyncio.create_subprocess_exec(
                *python_child('pass'))
            return await proc.wait()
        finally:
            busy = False

    assert run(ferro, main()) == 0
    assert spins > 0


def test_a_start_requested_as_the_loop_stops_is_not_held(ferro, monkeypatch):
    # Requested in the loop's last iteration: the thread is told as the
    # loop stops, so the child starts while the loop is not running, as it
    # would have on the stock loop.
    from ferroloop import _subprocess
    popen = _subprocess._popen
    started = threading.Event()

    def watched_popen(*args):
        try:
            return popen(*args)
        finally:
            started.set()

    warm_waiting_thread(ferro, monkeypatch)
    monkeypatch.setattr(_subprocess, '_popen', watched_popen)
    task = ferro.create_task(asyncio.create_subprocess_exec(
        *python_child('pass')))
    ferro.call_soon(ferro.stop)
    ferro.run_forever()
    assert started.wait(SAFETY_TIMEOUT)
    assert not ferro.is_running()
    # The loop gets the child when it runs again.
    proc = ferro.run_until_complete(asyncio.wait_for(task, SAFETY_TIMEOUT))
    assert run(ferro, proc.wait()) == 0
    assert_reaped([proc.pid])


def test_a_start_on_a_closed_loop_raises():
    loop = ferroloop.new_event_loop()
    spawner = loop._spawner()
    loop.close()
    with pytest.raises(RuntimeError, match='Event loop is closed'):
        spawner.submit(lambda: None)
    spawner.close()
    assert spawner_threads() == []
