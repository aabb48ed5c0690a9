"""Helpers shared by the pipe and subprocess tests (test_py_pipes_*,
test_py_subprocess_*).

Every parametrized test runs once per loop factory: stock asyncio, which is
the behavioural authority, and ferroloop.  The assertions use asyncio's
public API only (plus /proc and waitpid to check for zombies and fd leaks),
so a test that passes on stock and fails on ferroloop points at a difference
in ferroloop.  The stock loop reaps children through the policy's child
watcher (ThreadedChildWatcher on 3.11); ferroloop through its own.

    from _procutil import loop, run  # noqa: F401  (pytest fixture)

`loop` overrides conftest's ferroloop-only fixture of the same name.
"""

import asyncio
import gc
import os
import sys
import threading

import pytest

import ferroloop


LOOP_FACTORIES = {
    'asyncio': asyncio.new_event_loop,
    'ferroloop': ferroloop.new_event_loop,
}

# Upper bound on any single test's coroutine: a safety net against hangs,
# never a way to synchronise.
SAFETY_TIMEOUT = 30.0

# A Python child that starts fast: no site, no environment (-I -S).
PYTHON = (sys.executable, '-I', '-S')


def python_child(code):
    """Arguments for create_subprocess_exec running `code` in Python."""
    return (*PYTHON, '-c', code)


def close_loop(loop):
    if loop.is_closed():
        return
    try:
        loop.run_until_complete(asyncio.wait_for(
            loop.shutdown_default_executor(), SAFETY_TIMEOUT))
    finally:
        loop.close()


@pytest.fixture(params=sorted(LOOP_FACTORIES))
def loop(request):
    """A fresh loop from each factory: stock asyncio, then ferroloop.

    Set as the current loop too: asyncio.subprocess's StreamReaders (and
    the stock loop's child watcher) look it up.
    """
    lp = LOOP_FACTORIES[request.param]()
    asyncio.set_event_loop(lp)
    yield lp
    asyncio.set_event_loop(None)
    close_loop(lp)


def run(loop, coro):
    """Run coro on loop, failing the test instead of hanging."""
    return loop.run_until_complete(asyncio.wait_for(coro, SAFETY_TIMEOUT))


def is_ferroloop(loop):
    return isinstance(loop, ferroloop.Loop)


# --------------------------------------------------------------------------
# Zombies and fds


def open_fds():
    """This process's open fds.

    Collects garbage first: file objects of earlier tests that only the
    collector frees would otherwise close in the middle of a comparison.
    """
    gc.collect()
    return set(map(int, os.listdir('/proc/self/fd')))


def assert_reaped(pids):
    """Every pid has been waited for: none is a zombie child of ours."""
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    assert not zombie_children()


def _children_states():
    """{pid: state letter} of this process's children, from /proc."""
    me = os.getpid()
    children = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat') as f:
                stat = f.read()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parens.
        state, ppid = stat.rsplit(')', 1)[1].split()[:2]
        if int(ppid) == me:
            children[int(entry)] = state
    return children


def child_pids():
    """Pids of this process's children, zombies included."""
    return sorted(_children_states())


def zombie_children():
    """Pids of this process's children that are zombies."""
    return sorted(pid for pid, state in _children_states().items()
                  if state == 'Z')


def join_threads(prefix, timeout=SAFETY_TIMEOUT):
    """Wait for the threads whose name starts with prefix to finish."""
    for thread in threading.enumerate():
        if thread.name.startswith(prefix):
            thread.join(timeout)
            assert not thread.is_alive(), thread


# --------------------------------------------------------------------------
# Protocols that record what happens


class RecordingSubprocessProtocol(asyncio.SubprocessProtocol):
    """Records every callback, and collects each fd's data."""

    def __init__(self, loop):
        self.events = []
        self.data = {1: bytearray(), 2: bytearray()}
        self.done = loop.create_future()

    def connection_made(self, transport):
        self.events.append('connection_made')

    def pipe_data_received(self, fd, data):
        if self.events[-1] != ('data', fd):
            self.events.append(('data', fd))
        self.data[fd] += data

    def pipe_connection_lost(self, fd, exc):
        self.events.append(('pipe_lost', fd, exc))

    def process_exited(self):
        self.events.append('process_exited')

    def connection_lost(self, exc):
        self.events.append(('connection_lost', exc))
        self.done.set_result(None)
