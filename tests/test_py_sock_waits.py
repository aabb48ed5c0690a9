"""The waits of loop.sock_recv / sock_recv_into / sock_sendall / sock_accept /
sock_connect:
cancellation cleanup, replaced and removed waits, fd reuse after close,
errors raised by the waiting call, large partial sends, socket subclasses.

Every test runs on stock asyncio (the behavioural authority) and on
ferroloop with the same assertions.  A task is made to wait with one
`await asyncio.sleep(0)` (one loop iteration: the task starts, finds
nothing to read and registers its wait); no test sleeps to synchronise.
"""

import asyncio
import errno
import gc
import socket
import struct

import pytest

from _netutil import SAFETY_TIMEOUT, loop  # noqa: F401  (pytest fixture)


def pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def tcp_pair():
    """A connected non-blocking TCP pair (RSTs need TCP)."""
    with socket.create_server(('127.0.0.1', 0)) as server:
        client = socket.create_connection(server.getsockname())
        conn, _ = server.accept()
    client.setblocking(False)
    conn.setblocking(False)
    return client, conn


def reset(sock):
    """Close sock with an RST instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
    sock.close()


async def spin(n=5):
    """Let the loop run n iterations (each one polls)."""
    for _ in range(n):
        await asyncio.sleep(0)


def run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, SAFETY_TIMEOUT))


# -- cancellation -------------------------------------------------------


@pytest.mark.parametrize('operation', ['recv', 'recv_into', 'accept'])
def test_cancelled_read_wait_leaves_nothing_registered(loop, operation):
    a, b = pair()
    listener = socket.create_server(('127.0.0.1', 0))
    listener.setblocking(False)
    with a, b, listener:
        sock = listener if operation == 'accept' else a

        def start():
            if operation == 'recv':
                return loop.sock_recv(a, 10)
            if operation == 'recv_into':
                return loop.sock_recv_into(a, bytearray(10))
            return loop.sock_accept(listener)

        async def main():
            task = loop.create_task(start())
            await asyncio.sleep(0)
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # Cancelled before anything arrived: nothing was consumed.
            if operation == 'accept':
                client = socket.create_connection(listener.getsockname())
                with client:
                    conn, _ = await loop.sock_accept(listener)
                    conn.close()
            else:
                b.send(b'after')
                assert await loop.sock_recv(a, 10) == b'after'

        run(loop, main())
        assert loop.remove_reader(sock) is False


def test_cancelled_sendall_leaves_nothing_registered(loop):
    a, b = pair()
    with a, b:
        async def main():
            task = loop.create_task(loop.sock_sendall(a, b'x' * (16 << 20)))
            await asyncio.sleep(0)
            assert not task.done()  # nobody reads b: the send buffer is full
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        run(loop, main())
        assert loop.remove_writer(a) is False


def test_wait_cancelled_after_data_arrived_leaves_the_data(loop):
    # The fd becomes readable and the task is cancelled in the same
    # iteration, before the retry runs: the data stays for the next reader.
    a, b = pair()
    with a, b:
        async def main():
            task = loop.create_task(loop.sock_recv(a, 10))
            await asyncio.sleep(0)
            b.send(b'kept')
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return await loop.sock_recv(a, 10)

        assert run(loop, main()) == b'kept'
        assert loop.remove_reader(a) is False


# -- one waiter per fd and side -----------------------------------------


def test_second_recv_replaces_the_first(loop):
    a, b = pair()
    with a, b:
        async def main():
            first = loop.create_task(loop.sock_recv(a, 10))
            await asyncio.sleep(0)
            second = loop.create_task(loop.sock_recv(a, 10))
            await asyncio.sleep(0)
            b.send(b'data')
            assert await second == b'data'
            # The replaced wait is never resolved: it only ends by cancelling.
            await spin()
            assert not first.done()
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first

        run(loop, main())
        assert loop.remove_reader(a) is False


def test_add_reader_replaces_a_pending_recv(loop):
    a, b = pair()
    with a, b:
        async def main():
            task = loop.create_task(loop.sock_recv(a, 10))
            await asyncio.sleep(0)
            fired = loop.create_future()
            loop.add_reader(a, lambda: fired.done() or fired.set_result(a.recv(10)))
            b.send(b'data')
            assert await fired == b'data'
            assert not task.done()
            assert loop.remove_reader(a) is True
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            # The cancelled recv's cleanup removed nothing else.
            assert loop.remove_reader(a) is False

        run(loop, main())


def test_recv_replaces_a_user_reader(loop):
    a, b = pair()
    with a, b:
        calls = []
        loop.add_reader(a, calls.append, 'reader')

        async def main():
            task = loop.create_task(loop.sock_recv(a, 10))
            await asyncio.sleep(0)
            b.send(b'data')
            assert await task == b'data'
            await spin()

        run(loop, main())
        assert calls == []
        # The user's reader is gone: sock_recv replaced it, then removed its own.
        assert loop.remove_reader(a) is False


def test_remove_reader_drops_a_pending_recv(loop):
    a, b = pair()
    with a, b:
        async def main():
            task = loop.create_task(loop.sock_recv(a, 10))
            await asyncio.sleep(0)
            assert loop.remove_reader(a) is True
            b.send(b'data')
            await spin()
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert a.recv(10) == b'data'

        run(loop, main())


def test_reader_and_writer_waits_on_one_fd(loop):
    a, b = pair()
    payload = b'y' * (4 << 20)
    with a, b:
        async def main():
            receive = loop.create_task(loop.sock_recv(a, 10))
            await asyncio.sleep(0)
            send = loop.create_task(loop.sock_sendall(a, payload))
            await asyncio.sleep(0)
            assert not send.done() and not receive.done()
            b.send(b'ping')
            assert await receive == b'ping'
            got = bytearray()
            while len(got) < len(payload):
                got += await loop.sock_recv(b, 1 << 16)
            await send
            assert got == payload

        run(loop, main())
        assert loop.remove_reader(a) is False
        assert loop.remove_writer(a) is False


# -- fd numbers reused after close --------------------------------------


def reuse_fd_number(fd):
    """A socketpair whose first socket has fd number `fd` (just closed)."""
    kept = []
    try:
        for _ in range(64):
            a, b = pair()
            if a.fileno() == fd:
                return a, b
            if b.fileno() == fd:
                return b, a
            kept += [a, b]
        pytest.skip('fd number not reused')
    finally:
        for s in kept:
            s.close()


def test_fd_reused_after_close(loop):
    a, b = pair()
    fd = a.fileno()

    async def main():
        task = loop.create_task(loop.sock_recv(a, 10))
        await asyncio.sleep(0)
        b.send(b'one')
        assert await task == b'one'
        a.close()
        b.close()
        c, d = reuse_fd_number(fd)
        with c, d:
            # Both the native wait and a plain reader work on the new file.
            task = loop.create_task(loop.sock_recv(c, 10))
            await asyncio.sleep(0)
            d.send(b'two')
            assert await task == b'two'
            fired = loop.create_future()
            loop.add_reader(c, lambda: fired.done() or fired.set_result(c.recv(10)))
            d.send(b'three')
            assert await fired == b'three'
            assert loop.remove_reader(c) is True

    run(loop, main())


@pytest.mark.parametrize('cancelled', [False, True], ids=['done', 'cancelled'])
def test_closed_dup_socket_never_wakes_its_fd_number(loop, cancelled):
    # The first socket's file lives on in a dup after close, and keeps
    # receiving data; a new socket gets the old fd number. Nothing about
    # the old file may reach the new one's reader, or spin the loop.
    a, b = pair()
    fd = a.fileno()
    dup = a.dup()
    with dup, b:
        async def main():
            task = loop.create_task(loop.sock_recv(a, 10))
            await asyncio.sleep(0)
            if cancelled:
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            else:
                b.send(b'one')
                assert await task == b'one'
            a.close()
            c, d = reuse_fd_number(fd)
            with c, d:
                calls = []
                loop.add_reader(c, lambda: calls.append(c.recv(10)))
                b.send(b'for the old file')
                await spin()
                assert calls == []
                d.send(b'new')
                while not calls:
                    await asyncio.sleep(0)
                assert calls == [b'new']
                assert loop.remove_reader(c) is True
            assert dup.recv(100) == b'for the old file'

        run(loop, main())


# -- errors -------------------------------------------------------------


def test_recv_wait_gets_connection_reset(loop):
    client, conn = tcp_pair()
    with conn:
        async def main():
            task = loop.create_task(loop.sock_recv(conn, 10))
            await asyncio.sleep(0)
            reset(client)
            with pytest.raises(ConnectionResetError) as info:
                await task
            return info.value

        exc = run(loop, main())
        assert exc.errno == errno.ECONNRESET
        assert exc.strerror == 'Connection reset by peer'
        assert loop.remove_reader(conn) is False


def test_recv_error_without_waiting_has_errno(loop):
    client, conn = tcp_pair()
    with conn:
        reset(client)
        with pytest.raises(ConnectionResetError) as info:
            run(loop, loop.sock_recv(conn, 10))
        assert info.value.errno == errno.ECONNRESET
        assert info.value.args == (errno.ECONNRESET, 'Connection reset by peer')


def test_sendall_wait_gets_peer_reset(loop):
    client, conn = tcp_pair()
    with client:
        async def main():
            task = loop.create_task(loop.sock_sendall(client, b'z' * (32 << 20)))
            await asyncio.sleep(0)
            assert not task.done()
            reset(conn)
            with pytest.raises((ConnectionResetError, BrokenPipeError)) as info:
                await task
            return info.value

        exc = run(loop, main())
        assert exc.errno in (errno.ECONNRESET, errno.EPIPE)
        assert loop.remove_writer(client) is False


def test_recv_into_read_only_buffer(loop):
    a, b = pair()
    with a, b:
        b.send(b'x')
        with pytest.raises(TypeError) as info:
            run(loop, loop.sock_recv_into(a, b'read-only'))
        with pytest.raises(TypeError) as expected:
            a.recv_into(b'read-only')
        assert str(info.value) == str(expected.value)


def test_recv_negative_size(loop):
    a, b = pair()
    with a, b:
        with pytest.raises(ValueError, match='negative buffersize in recv'):
            run(loop, loop.sock_recv(a, -1))


class InterruptingSocket(socket.socket):
    """recv() would block once, then raises KeyboardInterrupt."""

    calls = 0

    def recv(self, n):
        self.calls += 1
        if self.calls == 1:
            raise BlockingIOError
        raise KeyboardInterrupt


def test_keyboard_interrupt_from_the_retry_propagates(loop):
    a0, b = socket.socketpair()
    a = InterruptingSocket(fileno=a0.detach())
    a.setblocking(False)
    with a, b:
        task = loop.create_task(loop.sock_recv(a, 10))
        loop.run_until_complete(asyncio.sleep(0))
        b.send(b'data')
        with pytest.raises(KeyboardInterrupt):
            loop.run_until_complete(task)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            loop.run_until_complete(task)
        assert loop.remove_reader(a) is False


def test_wait_survives_an_interrupted_iteration(loop):
    # A callback ready in the same iteration raises KeyboardInterrupt before
    # the wait's retry runs: the rest of the iteration runs on the next
    # run, and a garbage collection in between finds everything intact.
    a, b = pair()
    c, d = pair()
    with a, b, c, d:
        def interrupt():
            loop.remove_reader(c)
            raise KeyboardInterrupt

        task = loop.create_task(loop.sock_recv(a, 10))
        loop.run_until_complete(asyncio.sleep(0))
        loop.add_reader(c, interrupt)
        d.send(b'x')
        b.send(b'data')
        with pytest.raises(KeyboardInterrupt):
            loop.run_until_complete(task)
        gc.collect()
        assert run(loop, task) == b'data'
        assert loop.remove_reader(a) is False


# -- partial sends, buffers, subclasses ---------------------------------


@pytest.mark.parametrize('kind', ['bytes', 'bytearray', 'memoryview'])
def test_large_sendall_in_partial_sends(loop, kind):
    a, b = pair()
    data = bytes(range(256)) * (24 * 1024)  # 6 MiB: many partial sends
    payload = {'bytes': data, 'bytearray': bytearray(data),
               'memoryview': memoryview(data)[1:]}[kind]
    with a, b:
        async def main():
            send = loop.create_task(loop.sock_sendall(a, payload))
            got = bytearray()
            buf = bytearray(100_000)
            while len(got) < len(payload):
                n = await loop.sock_recv_into(b, buf)
                got += buf[:n]
            assert await send is None
            return bytes(got)

        assert run(loop, main()) == bytes(payload)
        assert loop.remove_writer(a) is False
        assert loop.remove_reader(b) is False


def test_recv_into_memoryview_slices(loop):
    a, b = pair()
    with a, b:
        data = bytearray(16)
        async def main():
            with memoryview(data) as view:
                task = loop.create_task(loop.sock_recv_into(a, view[4:8]))
                await asyncio.sleep(0)
                b.send(b'abcdefgh')
                assert await task == 4
                assert await loop.sock_recv_into(a, view[8:]) == 4

        run(loop, main())
        assert bytes(data) == b'\0\0\0\0abcdefgh\0\0\0\0'


class RecordingSocket(socket.socket):
    """A subclass: its overridden calls must be the ones used."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.log = []

    def recv(self, n):
        self.log.append('recv')
        return super().recv(n)

    def recv_into(self, buf, nbytes=0):
        self.log.append('recv_into')
        return super().recv_into(buf, nbytes)

    def send(self, data):
        self.log.append('send')
        return super().send(data)


def test_socket_subclass_calls_are_used(loop):
    a0, b = socket.socketpair()
    a = RecordingSocket(fileno=a0.detach())
    a.setblocking(False)
    b.setblocking(False)
    with a, b:
        async def main():
            task = loop.create_task(loop.sock_recv(a, 10))
            await asyncio.sleep(0)
            b.send(b'one')
            assert await task == b'one'
            buf = bytearray(10)
            task = loop.create_task(loop.sock_recv_into(a, buf))
            await asyncio.sleep(0)
            b.send(b'two')
            assert await task == 3
            send = loop.create_task(loop.sock_sendall(a, b'x' * (8 << 20)))
            got = 0
            while got < 8 << 20:
                got += len(await loop.sock_recv(b, 1 << 20))
            await send

        run(loop, main())
        assert a.log[:4] == ['recv', 'recv', 'recv_into', 'recv_into']
        assert a.log.count('send') > 1


def test_accept_wait(loop):
    listener = socket.create_server(('127.0.0.1', 0))
    listener.setblocking(False)
    with listener:
        async def main():
            task = loop.create_task(loop.sock_accept(listener))
            await asyncio.sleep(0)
            client = socket.create_connection(listener.getsockname())
            with client:
                conn, address = await task
                with conn:
                    assert address == client.getsockname()
                    assert conn.gettimeout() == 0

        run(loop, main())
        assert loop.remove_reader(listener) is False


# -- sock_connect -------------------------------------------------------


def test_connect_refused_error_matches_asyncio(loop):
    # On loopback a non-blocking connect to a closed port is "in progress"
    # first; SO_ERROR then says ECONNREFUSED.
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        address = probe.getsockname()
    with socket.socket() as sock:
        sock.setblocking(False)

        async def main():
            with pytest.raises(ConnectionRefusedError) as info:
                await loop.sock_connect(sock, address)
            return info.value

        exc = run(loop, main())
        assert exc.errno == errno.ECONNREFUSED
        assert str(exc) == f'[Errno {errno.ECONNREFUSED}] Connect call failed {address}'
        assert loop.remove_writer(sock) is False


def test_connect_completes_and_cancelled_connects_leave_nothing(loop):
    # A listener whose accept queue is full drops SYNs: some of these
    # connects stay pending, and are cancelled.
    with socket.socket() as listener:
        listener.bind(('127.0.0.1', 0))
        listener.listen(0)
        socks = [socket.socket() for _ in range(4)]
        for s in socks:
            s.setblocking(False)
        try:
            async def main():
                tasks = [loop.create_task(loop.sock_connect(s, listener.getsockname()))
                         for s in socks]
                await spin()
                done = [t.done() and t.exception() is None for t in tasks]
                pending = [t for t in tasks if not t.done()]
                for t in pending:
                    t.cancel()
                for t in pending:
                    with pytest.raises(asyncio.CancelledError):
                        await t
                return done, len(pending)

            done, pending = run(loop, main())
            assert done[0] is True  # the accept queue takes at least one
            assert pending >= 1
            assert [loop.remove_writer(s) for s in socks] == [False] * 4
        finally:
            for s in socks:
                s.close()
