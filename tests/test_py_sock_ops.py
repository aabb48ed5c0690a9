"""loop.sock_* on real loopback sockets: round trips, partial writes,
cancellation cleanup, errors, and refusal of blocking/SSL sockets."""

import asyncio
import contextlib
import socket
import ssl

import pytest

import ferroloop


@pytest.fixture
def loop():
    loop = ferroloop.new_event_loop()
    yield loop
    loop.close()


def nonblocking(sock):
    sock.setblocking(False)
    return sock


@contextlib.contextmanager
def tcp_listener():
    server = nonblocking(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
    try:
        server.bind(('127.0.0.1', 0))
        server.listen(8)
        yield server
    finally:
        server.close()


@contextlib.contextmanager
def connected_pair(loop):
    """A connected TCP pair built with sock_accept/sock_connect."""
    with tcp_listener() as server:
        client = nonblocking(socket.socket())

        async def connect():
            accepted = loop.create_task(loop.sock_accept(server))
            await loop.sock_connect(client, server.getsockname())
            return await accepted

        conn, peer = loop.run_until_complete(connect())
    try:
        assert peer == client.getsockname()
        yield client, conn
    finally:
        client.close()
        conn.close()


def test_accept_connect_and_round_trip(loop):
    with connected_pair(loop) as (client, conn):
        assert conn.gettimeout() == 0  # accepted sockets are non-blocking

        async def exchange():
            receive = loop.create_task(loop.sock_recv(conn, 1024))
            await asyncio.sleep(0)  # let the receive wait for readability
            await loop.sock_sendall(client, b'ping')
            data = await receive
            buf = bytearray(16)
            await loop.sock_sendall(conn, b'pong')
            n = await loop.sock_recv_into(client, buf)
            return data, bytes(buf[:n])

        assert loop.run_until_complete(exchange()) == (b'ping', b'pong')


def test_sendall_large_payload_with_partial_writes(loop):
    payload = bytes(range(256)) * (16 * 1024)  # 4 MiB: exceeds socket buffers
    with connected_pair(loop) as (client, conn):
        async def receive_all():
            chunks = []
            received = 0
            while received < len(payload):
                chunk = await loop.sock_recv(conn, 65536)
                assert chunk
                chunks.append(chunk)
                received += len(chunk)
            return b''.join(chunks)

        async def main():
            reader = loop.create_task(receive_all())
            await loop.sock_sendall(client, payload)
            return await reader

        assert loop.run_until_complete(main()) == payload
        # Nothing is left registered once the operations completed.
        assert not loop.remove_writer(client)
        assert not loop.remove_reader(conn)


def test_recv_eof(loop):
    with connected_pair(loop) as (client, conn):
        client.shutdown(socket.SHUT_WR)
        assert loop.run_until_complete(loop.sock_recv(conn, 10)) == b''


def test_cancelled_recv_removes_reader(loop):
    with connected_pair(loop) as (client, conn):
        async def main():
            task = loop.create_task(loop.sock_recv(conn, 10))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.sleep(0)

        loop.run_until_complete(main())
        assert loop.remove_reader(conn) is False

        # The socket is usable again afterwards.
        client.send(b'after')
        assert loop.run_until_complete(loop.sock_recv(conn, 10)) == b'after'


def test_cancelled_recv_into_and_accept_remove_readers(loop):
    with connected_pair(loop) as (client, conn), tcp_listener() as server:
        async def main():
            tasks = [loop.create_task(loop.sock_recv_into(conn, bytearray(4))),
                     loop.create_task(loop.sock_accept(server))]
            await asyncio.sleep(0)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        loop.run_until_complete(main())
        assert loop.remove_reader(conn) is False
        assert loop.remove_reader(server) is False


def test_cancelled_sendall_removes_writer(loop):
    with connected_pair(loop) as (client, conn):
        async def main():
            # Nobody reads conn: the send buffers fill up and sendall waits.
            task = loop.create_task(
                loop.sock_sendall(client, b'x' * (64 * 1024 * 1024)))
            await asyncio.sleep(0)
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        loop.run_until_complete(main())
        assert loop.remove_writer(client) is False


def test_cancelled_connect_removes_writer(loop):
    # A listener whose backlog is full makes connect() hang in progress
    # (SYNs dropped), which is what a slow remote host looks like.
    with tcp_listener() as server:
        server.listen(0)
        fillers = []
        try:
            for _ in range(8):
                filler = nonblocking(socket.socket())
                fillers.append(filler)
                try:
                    filler.connect(server.getsockname())
                except BlockingIOError:
                    pass
            client = nonblocking(socket.socket())
            fillers.append(client)

            async def main():
                task = loop.create_task(
                    loop.sock_connect(client, server.getsockname()))
                await asyncio.sleep(0)
                if task.done():
                    pytest.skip('connect completed at once: backlog not full')
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task

            loop.run_until_complete(main())
            assert loop.remove_writer(client) is False
        finally:
            for sock in fillers:
                sock.close()


def test_connect_refused(loop):
    with tcp_listener() as server:
        address = server.getsockname()
    # The port is closed now.
    client = nonblocking(socket.socket())
    with client:
        with pytest.raises(ConnectionRefusedError):
            loop.run_until_complete(loop.sock_connect(client, address))
        assert loop.remove_writer(client) is False


def test_connect_resolves_host_names(loop):
    with tcp_listener() as server:
        port = server.getsockname()[1]
        client = nonblocking(socket.socket(socket.AF_INET))
        with client:
            async def main():
                accepted = loop.create_task(loop.sock_accept(server))
                await loop.sock_connect(client, ('localhost', port))
                conn, _ = await accepted
                conn.close()
                return client.getpeername()

            assert loop.run_until_complete(main()) == ('127.0.0.1', port)


def test_unix_socket_connect_uses_path_as_is(loop, tmp_path):
    path = str(tmp_path / 'sock')
    server = nonblocking(socket.socket(socket.AF_UNIX))
    client = nonblocking(socket.socket(socket.AF_UNIX))
    with server, client:
        server.bind(path)
        server.listen()

        async def main():
            accepted = loop.create_task(loop.sock_accept(server))
            await loop.sock_connect(client, path)
            conn, _ = await accepted
            with conn:
                await loop.sock_sendall(client, b'unix')
                return await loop.sock_recv(conn, 10)

        assert loop.run_until_complete(main()) == b'unix'


def test_udp_sendto_recvfrom(loop):
    receiver = nonblocking(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    sender = nonblocking(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    with receiver, sender:
        receiver.bind(('127.0.0.1', 0))
        sender.bind(('127.0.0.1', 0))
        address = receiver.getsockname()

        async def main():
            first = loop.create_task(loop.sock_recvfrom(receiver, 100))
            await asyncio.sleep(0)
            assert await loop.sock_sendto(sender, b'one', address) == 3
            data1 = await first

            buf = bytearray(100)
            second = loop.create_task(loop.sock_recvfrom_into(receiver, buf))
            await asyncio.sleep(0)
            await loop.sock_sendto(sender, b'two!', address)
            nbytes, from2 = await second

            await loop.sock_sendto(sender, b'three', address)
            small = bytearray(100)
            nbytes3, _ = await loop.sock_recvfrom_into(receiver, small, 2)
            return data1, bytes(buf[:nbytes]), from2, bytes(small[:nbytes3])

        data1, data2, from2, data3 = loop.run_until_complete(main())
        assert data1 == (b'one', sender.getsockname())
        assert (data2, from2) == (b'two!', sender.getsockname())
        assert data3 == b'th'
        assert loop.remove_reader(receiver) is False


def test_cancelled_recvfrom_removes_reader(loop):
    receiver = nonblocking(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    with receiver:
        receiver.bind(('127.0.0.1', 0))

        async def main():
            tasks = [loop.create_task(loop.sock_recvfrom(receiver, 10))]
            await asyncio.sleep(0)
            tasks[0].cancel()
            tasks.append(loop.create_task(
                loop.sock_recvfrom_into(receiver, bytearray(10))))
            await asyncio.sleep(0)
            tasks[1].cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        loop.run_until_complete(main())
        assert loop.remove_reader(receiver) is False


def test_recv_error_is_raised(loop):
    with connected_pair(loop) as (client, conn):
        # An RST: SO_LINGER with a zero timeout, then close.
        import struct
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                          struct.pack('ii', 1, 0))
        client.close()
        with pytest.raises(ConnectionResetError):
            loop.run_until_complete(loop.sock_recv(conn, 10))


@pytest.mark.parametrize('operation', [
    lambda loop, sock: loop.sock_recv(sock, 1),
    lambda loop, sock: loop.sock_recv_into(sock, bytearray(1)),
    lambda loop, sock: loop.sock_recvfrom(sock, 1),
    lambda loop, sock: loop.sock_recvfrom_into(sock, bytearray(1)),
    lambda loop, sock: loop.sock_sendall(sock, b'x'),
    lambda loop, sock: loop.sock_sendto(sock, b'x', ('127.0.0.1', 9)),
    lambda loop, sock: loop.sock_connect(sock, ('127.0.0.1', 9)),
    lambda loop, sock: loop.sock_accept(sock),
])
def test_blocking_socket_refused_in_debug_mode(loop, operation):
    loop.set_debug(True)
    with socket.socket() as sock:
        assert sock.gettimeout() is None  # blocking
        with pytest.raises(ValueError,
                           match='^the socket must be non-blocking$'):
            loop.run_until_complete(operation(loop, sock))


def test_ssl_socket_refused(loop):
    context = ssl.create_default_context()
    with socket.socket() as raw:
        sslsock = context.wrap_socket(raw, server_hostname='example.com',
                                      do_handshake_on_connect=False)
        with sslsock:
            sslsock.setblocking(False)
            with pytest.raises(TypeError,
                               match='^Socket cannot be of type SSLSocket$'):
                loop.run_until_complete(loop.sock_recv(sslsock, 1))



def test_cancelling_replaced_recv_keeps_new_reader(loop):
    # A second sock_recv on the same socket replaces the first one's reader
    # (one reader per fd). Cancelling the first must not remove the
    # second's reader: the done callback only removes its own, still
    # active, reader (it needs the Handle add_reader registered).
    with connected_pair(loop) as (client, conn):
        async def main():
            first = loop.create_task(loop.sock_recv(conn, 10))
            await asyncio.sleep(0)
            second = loop.create_task(loop.sock_recv(conn, 10))
            await asyncio.sleep(0)
            first.cancel()
            await asyncio.sleep(0)
            client.send(b'data')
            # The timeout only bounds the failure case.
            return await asyncio.wait_for(second, 2)

        assert loop.run_until_complete(main()) == b'data'
