"""Subprocesses on ferroloop pass blockbuster's default rules.

blockbuster (used by anyio's test suite, among others) makes blocking calls
made while an event loop runs in the thread raise BlockingError, except
from a few allowed places: for subprocess.Popen's blocking read of its
exec-error pipe, only the stock loop's base_events.subprocess_exec/_shell
frames.  ferroloop runs Popen in a thread of its own instead, so the loop
thread never blocks on that pipe, and nothing needs allowing.
"""

import asyncio
import os
import subprocess
import sys

import pytest

blockbuster = pytest.importorskip('blockbuster')
BlockingError = blockbuster.BlockingError
blockbuster_ctx = blockbuster.blockbuster_ctx

import ferroloop

PIPE = subprocess.PIPE


@pytest.fixture
def loop():
    lp = ferroloop.new_event_loop()
    yield lp
    lp.close()


def run_busted(loop, coro):
    with blockbuster_ctx():
        return loop.run_until_complete(coro)


def test_blockbuster_is_active(loop):
    # Sanity: a blocking read of a pipe in the loop thread, the call Popen
    # makes on its exec-error pipe, is caught.
    r, w = os.pipe()
    os.write(w, b'x')

    async def main():
        os.read(r, 1)

    try:
        with pytest.raises(BlockingError):
            run_busted(loop, main())
    finally:
        os.close(r)
        os.close(w)


def test_create_subprocess_exec_communicate(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, '-c',
            'import sys; sys.stdout.write(sys.stdin.read().upper()); '
            'sys.stderr.write("err"); sys.exit(3)',
            stdin=PIPE, stdout=PIPE, stderr=PIPE)
        out, err = await proc.communicate(b'hello')
        return out, err, proc.returncode

    assert run_busted(loop, main()) == (b'HELLO', b'err', 3)


def test_create_subprocess_shell_wait(loop):
    async def main():
        proc = await asyncio.create_subprocess_shell('exit 7')
        return await proc.wait()

    assert run_busted(loop, main()) == 7


def test_exec_error_raised_from_create_subprocess_exec(loop):
    async def main():
        with pytest.raises(FileNotFoundError):
            await asyncio.create_subprocess_exec('/nonexistent/program')
        # preexec_fn's exception comes through the same pipe.
        with pytest.raises(subprocess.SubprocessError):
            await asyncio.create_subprocess_exec(
                sys.executable, '-c', 'pass', preexec_fn=lambda: 1 / 0)
        return True

    assert run_busted(loop, main())


def test_protocol_api_callback_order(loop):
    events = []
    done = loop.create_future()

    class Proto(asyncio.SubprocessProtocol):
        def connection_made(self, transport):
            events.append('connection_made')

        def pipe_data_received(self, fd, data):
            if not events or events[-1] != ('data', fd):
                events.append(('data', fd))

        def pipe_connection_lost(self, fd, exc):
            events.append(('pipe_lost', fd))

        def process_exited(self):
            events.append('process_exited')

        def connection_lost(self, exc):
            events.append('connection_lost')
            done.set_result(None)

    async def main():
        transport, _ = await loop.subprocess_exec(
            Proto, sys.executable, '-c', 'print("out")',
            stdin=None, stdout=PIPE, stderr=None)
        await done
        rc = transport.get_returncode()
        transport.close()
        return rc

    assert run_busted(loop, main()) == 0
    assert events[0] == 'connection_made'
    assert events[-1] == 'connection_lost'
    assert ('data', 1) in events and ('pipe_lost', 1) in events
    assert events.index(('data', 1)) < events.index(('pipe_lost', 1))


def test_many_concurrent_children(loop):
    async def one(i):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, '-c', f'print({i})', stdout=PIPE)
        out, _ = await proc.communicate()
        return int(out)

    async def main():
        return await asyncio.gather(*(one(i) for i in range(8)))

    assert run_busted(loop, main()) == list(range(8))
