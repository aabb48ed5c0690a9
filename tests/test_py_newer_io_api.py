"""The I/O behaviour that CPython 3.12-3.15 changed in the stock loop, on
ferroloop: each test runs where the running Python's asyncio has the change
(feature-detected, as ferroloop detects it) and checks the stock semantics,
or the older ones where the stock loop still has those.  The list of changes
is in tests/cpython/README.md ("Newer Pythons")."""

import asyncio
import contextvars
import inspect
import os
import socket
import sys
import tempfile
import threading
import time
from unittest import mock

import pytest

from asyncio import base_events
from asyncio import events

import ferroloop
from ferroloop import _sendfile
from ferroloop import _tcp

TIMEOUT = 10

HAS_THREAD_SAFE_HANDLE = hasattr(events, '_ThreadSafeHandle')
HAS_KEEP_ALIVE = 'keep_alive' in inspect.signature(
    base_events.BaseEventLoop.create_server).parameters
HAS_CLOSE_CLIENTS = hasattr(base_events.Server, 'close_clients')


def run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


# -- call_soon_threadsafe (3.13: _ThreadSafeHandle) -------------------------


@pytest.mark.skipif(not HAS_THREAD_SAFE_HANDLE,
                    reason="asyncio has no _ThreadSafeHandle before 3.13")
def test_threadsafe_handle_is_a_thread_safe_handle(loop):
    handle = loop.call_soon_threadsafe(lambda: None)
    assert isinstance(handle, events._ThreadSafeHandle)
    # Only the handles of call_soon_threadsafe are.
    assert not isinstance(loop.call_soon(lambda: None),
                          events._ThreadSafeHandle)


@pytest.mark.skipif(HAS_THREAD_SAFE_HANDLE,
                    reason="3.13+ returns a _ThreadSafeHandle")
def test_threadsafe_handle_before_313_is_a_plain_handle(loop):
    handle = loop.call_soon_threadsafe(lambda: None)
    assert type(handle) is type(loop.call_soon(lambda: None))


@pytest.mark.skipif(not HAS_THREAD_SAFE_HANDLE,
                    reason="asyncio has no _ThreadSafeHandle before 3.13")
def test_threadsafe_cancel_waits_for_the_running_callback(loop):
    started = threading.Event()
    finished = threading.Event()
    seen = []

    def callback():
        started.set()
        time.sleep(0.2)
        finished.set()

    def other_thread():
        handle = loop.call_soon_threadsafe(callback)
        started.wait(TIMEOUT)
        handle.cancel()  # blocks until the callback has returned
        seen.append(finished.is_set())
        loop.call_soon_threadsafe(loop.stop)

    t = threading.Thread(target=other_thread)
    t.start()
    loop.run_forever()
    t.join(TIMEOUT)
    assert seen == [True]


@pytest.mark.skipif(not HAS_THREAD_SAFE_HANDLE,
                    reason="asyncio has no _ThreadSafeHandle before 3.13")
def test_threadsafe_cancel_before_run_wins(loop):
    ran = []
    ready = threading.Event()
    loop.call_soon(ready.wait, TIMEOUT)  # hold the loop until cancelled

    def other_thread():
        handle = loop.call_soon_threadsafe(ran.append, 1)
        handle.cancel()
        assert handle.cancelled()
        ready.set()
        loop.call_soon_threadsafe(loop.stop)

    t = threading.Thread(target=other_thread)
    t.start()
    loop.run_forever()
    t.join(TIMEOUT)
    assert ran == []


@pytest.mark.skipif(not HAS_THREAD_SAFE_HANDLE,
                    reason="asyncio has no _ThreadSafeHandle before 3.13")
def test_threadsafe_callback_may_cancel_its_own_handle(loop):
    box = []

    def callback():
        box[0].cancel()  # same thread, lock held: must not deadlock
        loop.stop()

    box.append(loop.call_soon_threadsafe(callback))
    loop.run_forever()
    assert box[0].cancelled()


# -- servers ----------------------------------------------------------------


@pytest.mark.skipif(not HAS_KEEP_ALIVE,
                    reason="create_server(keep_alive=) is new in 3.13")
def test_create_server_keep_alive(loop):
    async def main():
        server = await loop.create_server(Echo, '127.0.0.1', 0,
                                          keep_alive=True)
        try:
            for sock in server.sockets:
                assert sock.getsockopt(socket.SOL_SOCKET,
                                       socket.SO_KEEPALIVE)
        finally:
            server.close()
            await server.wait_closed()

    run(loop, main())


@pytest.mark.skipif(HAS_KEEP_ALIVE,
                    reason="create_server(keep_alive=) exists from 3.13 on")
def test_create_server_keep_alive_refused_before_313(loop):
    with pytest.raises(TypeError, match='keep_alive'):
        run(loop, loop.create_server(Echo, '127.0.0.1', 0, keep_alive=True))


@pytest.mark.skipif(not HAS_CLOSE_CLIENTS,
                    reason="Server.close_clients/abort_clients are new in 3.13")
@pytest.mark.parametrize('method', ['close_clients', 'abort_clients'])
def test_server_closes_its_clients(loop, method):
    async def main():
        server = await loop.create_server(Echo, '127.0.0.1', 0)
        reader, writer = await asyncio.open_connection(
            *server.sockets[0].getsockname())
        writer.write(b'x')
        assert await reader.readexactly(1) == b'x'
        server.close()
        getattr(server, method)()
        # The server's side went away: the client reads EOF (or a reset).
        try:
            assert await reader.read() == b''
        except ConnectionResetError:
            pass
        writer.close()
        await server.wait_closed()

    run(loop, main())


@pytest.mark.skipif(sys.version_info < (3, 12, 1),
                    reason="wait_closed() waits for connections from 3.12.1")
def test_server_wait_closed_waits_for_connections(loop):
    async def main():
        server = await loop.create_server(Echo, '127.0.0.1', 0)
        reader, writer = await asyncio.open_connection(
            *server.sockets[0].getsockname())
        writer.write(b'x')
        await reader.readexactly(1)
        server.close()
        waiting = asyncio.ensure_future(server.wait_closed())
        await asyncio.sleep(0.05)
        assert not waiting.done()  # a connection is still open
        writer.close()
        await waiting

    run(loop, main())


# -- create_connection(all_errors=) (3.12) ----------------------------------


def _refused_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not _tcp.HAS_ALL_ERRORS,
                    reason="create_connection(all_errors=) is new in 3.12")
def test_create_connection_all_errors(loop):
    port = _refused_port()
    with pytest.raises(ExceptionGroup) as info:
        run(loop, loop.create_connection(asyncio.Protocol, '127.0.0.1', port,
                                         all_errors=True))
    assert all(isinstance(e, ConnectionRefusedError)
               for e in info.value.exceptions)
    # Without it: one OSError, as before.
    with pytest.raises(ConnectionRefusedError):
        run(loop, loop.create_connection(asyncio.Protocol, '127.0.0.1', port))


# -- sendfile: the file position (3.13) --------------------------------------


def test_sock_sendfile_position_when_nothing_is_sent(loop):
    a, b = socket.socketpair()
    a.setblocking(False)
    with a, b, tempfile.TemporaryFile() as f:
        f.write(b'abcdef')
        f.flush()
        f.seek(2)
        sent = run(loop, loop.sock_sendfile(a, f, 6))  # offset at EOF
        assert sent == 0
        # 3.13+: the position is the offset; before, it was left alone.
        expected = 6 if _sendfile._SEEK_EVEN_IF_NOTHING_SENT else 2
        assert f.tell() == expected


# -- run_forever's setup/cleanup hooks (3.13) -------------------------------


def test_run_forever_setup_and_cleanup_hooks():
    calls = []

    class Loop(ferroloop.Loop):
        def _run_forever_setup(self):
            calls.append('setup')
            super()._run_forever_setup()

        def _run_forever_cleanup(self):
            super()._run_forever_cleanup()
            calls.append('cleanup')

    loop = Loop()
    try:
        loop.call_soon(loop.stop)
        loop.run_forever()
        assert calls == ['setup', 'cleanup']
        assert not loop.is_running()
        assert asyncio._get_running_loop() is None
    finally:
        loop.close()


# -- 3.15: one context per connection ----------------------------------------


@pytest.mark.skipif(not _tcp.TRANSPORT_CONTEXT,
                    reason="per-connection contexts are new in 3.15")
def test_server_connections_run_in_the_server_context(loop):
    var = contextvars.ContextVar('var', default='default')

    async def main():
        seen = []

        class Proto(Echo):
            def connection_made(self, transport):
                seen.append(var.get())
                var.set('in connection')  # stays in this connection
                super().connection_made(transport)

        server = await loop.create_server(Proto, '127.0.0.1', 0)
        var.set('after server')
        address = server.sockets[0].getsockname()
        for _ in range(2):
            reader, writer = await asyncio.open_connection(*address)
            writer.write(b'x')
            await reader.readexactly(1)
            writer.close()
            await writer.wait_closed()
        server.close()
        await server.wait_closed()
        assert seen == ['default', 'default']
        assert var.get() == 'after server'

    run(loop, main())


# -- transports can be patched per instance ---------------------------------


def test_transport_methods_can_be_patched_on_the_instance(loop):
    async def main():
        server = await loop.create_server(Echo, '127.0.0.1', 0)
        transport, _ = await loop.create_connection(
            asyncio.Protocol, *server.sockets[0].getsockname())
        with mock.patch.object(transport, 'write',
                               wraps=transport.write) as write:
            transport.write(b'x')
        write.assert_called_once_with(b'x')
        assert 'write' not in vars(transport)
        transport.close()
        server.close()
        await server.wait_closed()

    run(loop, main())


# -- 3.14: a child's exit is published when it is reaped --------------------


@pytest.mark.skipif(not hasattr(os, 'waitid'), reason="needs os.waitid")
def test_threaded_child_watcher_does_not_reap_before_publishing(loop):
    from ferroloop import _child_watcher

    async def main():
        with mock.patch.object(_child_watcher, 'USE_PIDFD', False):
            proc = await asyncio.create_subprocess_exec(
                sys.executable, '-c', 'import time; time.sleep(60)')
        thread = loop._watcher._threads.get(proc.pid)
        assert thread is not None
        proc.kill()
        # The waiter thread sees the exit but leaves the reaping to the loop
        # thread, which is busy here: the pid stays a zombie, still ours.
        thread.join(TIMEOUT)
        assert proc.returncode is None
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
        assert await proc.wait() == -9

    run(loop, main())
