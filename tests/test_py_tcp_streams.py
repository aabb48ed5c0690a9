"""asyncio streams (open_connection / start_server) running unchanged on
ferroloop's TCP transports: line protocols, large writes paced by drain(),
half-close, many clients, and closing."""

import asyncio
import socket

import pytest

from test_py_tcp_support import closed_port, loop, run  # noqa: F401


async def upper_line_server(reader, writer):
    # One reply per line until the client half-closes.
    while line := await reader.readline():
        writer.write(line.upper())
        await writer.drain()
    writer.close()
    await writer.wait_closed()


def test_line_round_trips(loop):
    async def main():
        server = await asyncio.start_server(upper_line_server,
                                            '127.0.0.1', 0)
        host, port = server.sockets[0].getsockname()
        reader, writer = await asyncio.open_connection(host, port)
        assert writer.get_extra_info('peername') == (host, port)
        replies = []
        for word in (b'alpha', b'beta', b'gamma'):
            writer.write(word + b'\n')
            await writer.drain()
            replies.append(await reader.readline())
        assert writer.can_write_eof()
        writer.write_eof()
        assert await reader.read() == b''
        assert reader.at_eof()
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return replies

    assert run(loop, main()) == [b'ALPHA\n', b'BETA\n', b'GAMMA\n']


def test_large_payload_paced_by_drain(loop):
    # Far more than the transport's high-water mark: drain() must block
    # while the peer reads slowly, and every byte must arrive in order.
    chunk = bytes(range(256)) * 256  # 64 KiB
    chunks = 64                      # 4 MiB

    async def sink(reader, writer):
        data = await reader.read()
        writer.write(len(data).to_bytes(8, 'big'))
        writer.write(data[:1024])
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main():
        server = await asyncio.start_server(sink, '127.0.0.1', 0)
        reader, writer = await asyncio.open_connection(
            *server.sockets[0].getsockname())
        for _ in range(chunks):
            writer.write(chunk)
            await writer.drain()
        writer.write_eof()
        total = int.from_bytes(await reader.readexactly(8), 'big')
        head = await reader.readexactly(1024)
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return total, head

    total, head = run(loop, main())
    assert total == len(chunk) * chunks
    assert head == chunk[:1024]


def test_many_clients(loop):
    async def main():
        server = await asyncio.start_server(upper_line_server,
                                            '127.0.0.1', 0)
        address = server.sockets[0].getsockname()

        async def client(i):
            reader, writer = await asyncio.open_connection(*address)
            writer.write(f'client {i}\n'.encode())
            reply = await reader.readline()
            writer.close()
            await writer.wait_closed()
            return reply

        replies = await asyncio.gather(*(client(i) for i in range(50)))
        server.close()
        await server.wait_closed()
        return replies

    assert run(loop, main()) == [f'CLIENT {i}\n'.encode() for i in range(50)]


def test_server_as_context_manager_with_serve_forever(loop):
    async def main():
        server = await asyncio.start_server(upper_line_server,
                                            '127.0.0.1', 0)
        address = server.sockets[0].getsockname()
        async with server:
            serving = asyncio.ensure_future(server.serve_forever())
            reader, writer = await asyncio.open_connection(*address)
            writer.write(b'x\n')
            assert await reader.readline() == b'X\n'
            writer.close()
            await writer.wait_closed()
            serving.cancel()
            with pytest.raises(asyncio.CancelledError):
                await serving
        assert not server.is_serving()

    run(loop, main())


def test_open_connection_refused(loop):
    port = closed_port()
    with pytest.raises(ConnectionRefusedError):
        run(loop, asyncio.open_connection('127.0.0.1', port))


def test_open_connection_with_happy_eyeballs_over_localhost(loop):
    # 'localhost' may resolve to ::1 as well as 127.0.0.1 (the hosts file
    # decides); the server listens on IPv4 only, so an IPv6 attempt is
    # refused and the race moves on to the address that works.
    async def main():
        server = await asyncio.start_server(upper_line_server,
                                            '127.0.0.1', 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(
            'localhost', port, happy_eyeballs_delay=0.25)
        assert writer.get_extra_info('peername')[:2] == ('127.0.0.1', port)
        writer.write(b'ok\n')
        reply = await reader.readline()
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return reply

    assert run(loop, main()) == b'OK\n'


def test_reader_sees_connection_reset(loop):
    async def main():
        accepted = loop.create_future()

        async def handler(reader, writer):
            accepted.set_result(writer)

        server = await asyncio.start_server(handler, '127.0.0.1', 0)
        reader, writer = await asyncio.open_connection(
            *server.sockets[0].getsockname())
        server_writer = await accepted
        # SO_LINGER 0: close() sends RST instead of FIN.
        server_writer.get_extra_info('socket').setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER,
            (1).to_bytes(4, 'little') + (0).to_bytes(4, 'little'))
        server_writer.transport.abort()
        with pytest.raises(ConnectionResetError):
            await reader.read()
        writer.close()
        server.close()
        await server.wait_closed()

    run(loop, main())
