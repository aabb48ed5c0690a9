"""Unix domain stream sockets: create_unix_server / create_unix_connection
and the Unix streams, on filesystem paths (including a stale socket file
left by a dead server) and in Linux's abstract namespace."""

import asyncio
import errno
import inspect
import os
import socket
import sys

import pytest

from ferroloop import _unix

from test_py_tcp_support import Collect, loop, run  # noqa: F401
from test_py_tcp_connect import both_loops


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / 'sock')


async def round_trip(loop, server_kwargs, connect_kwargs, message=b'hi'):
    server = await loop.create_unix_server(
        lambda: Collect(loop, echo=True), **server_kwargs)
    transport, proto = await loop.create_unix_connection(
        lambda: Collect(loop, until=len(message)), **connect_kwargs)
    transport.write(message)
    echoed = await proto.got_all
    transport.close()
    await proto.lost
    server.close()
    await server.wait_closed()
    return server, echoed


def test_path_round_trip(loop, path):
    async def main():
        server, echoed = await round_trip(loop, {'path': path},
                                          {'path': path})
        assert echoed == b'hi'

    run(loop, main())


def test_pathlike_path(loop, tmp_path):
    async def main():
        where = tmp_path / 'pathlike.sock'
        server, echoed = await round_trip(loop, {'path': where},
                                          {'path': where})
        assert echoed == b'hi'

    run(loop, main())


def test_server_socket_and_transport_info(loop, path):
    async def main():
        server = await loop.create_unix_server(asyncio.Protocol, path)
        [sock] = server.sockets
        assert sock.family == socket.AF_UNIX
        assert sock.getsockname() == path
        transport, proto = await loop.create_unix_connection(
            lambda: Collect(loop), path)
        assert transport.get_extra_info('peername') == path
        assert transport.get_extra_info('socket').family == socket.AF_UNIX
        transport.close()
        await proto.lost
        server.close()
        await server.wait_closed()

    run(loop, main())


@pytest.mark.skipif(not sys.platform.startswith('linux'),
                    reason='abstract namespace is Linux-only')
@pytest.mark.parametrize('kind', [str, bytes])
def test_abstract_namespace(loop, kind):
    name = f'\0ferroloop-test-{os.getpid()}-{id(loop)}'
    address = name if kind is str else name.encode()

    async def main():
        server, echoed = await round_trip(loop, {'path': address},
                                          {'path': address})
        assert echoed == b'hi'

    run(loop, main())


def test_stale_socket_file_is_replaced(loop, path):
    # A socket file left behind by a server that died without cleaning up.
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(path)
    dead.close()
    assert os.path.exists(path)

    async def main():
        server, echoed = await round_trip(loop, {'path': path},
                                          {'path': path})
        assert echoed == b'hi'

    run(loop, main())


def test_regular_file_at_path_is_kept(loop, path):
    with open(path, 'w') as f:
        f.write('not a socket')
    messages = {}
    for name, lp in both_loops(loop):
        with pytest.raises(OSError) as info:
            lp.run_until_complete(
                lp.create_unix_server(asyncio.Protocol, path))
        messages[name] = (info.value.errno, str(info.value))
    assert messages['ferroloop'] == messages['asyncio']
    assert messages['ferroloop'] == (
        errno.EADDRINUSE,
        f'[Errno {errno.EADDRINUSE}] Address {path!r} is already in use')
    with open(path) as f:
        assert f.read() == 'not a socket'


def test_sock_arguments(loop, path):
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)

    async def main():
        server = await loop.create_unix_server(
            lambda: Collect(loop, echo=True), sock=listener)
        client = socket.socket(socket.AF_UNIX)
        client.connect(path)
        transport, proto = await loop.create_unix_connection(
            lambda: Collect(loop, until=3), sock=client)
        assert client.gettimeout() == 0  # made non-blocking
        transport.write(b'abc')
        assert await proto.got_all == b'abc'
        transport.close()
        await proto.lost
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_start_serving_false(loop, path):
    async def main():
        server = await loop.create_unix_server(asyncio.Protocol, path,
                                               start_serving=False)
        assert not server.is_serving()
        await server.start_serving()
        assert server.is_serving()
        server.close()
        await server.wait_closed()

    run(loop, main())


def test_connection_to_missing_path(loop, path):
    with pytest.raises(FileNotFoundError):
        run(loop, loop.create_unix_connection(asyncio.Protocol, path))


def test_streams(loop, path):
    async def handler(reader, writer):
        writer.write((await reader.readline()).upper())
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main():
        server = await asyncio.start_unix_server(handler, path)
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b'unix streams\n')
        reply = await reader.readline()
        assert await reader.read() == b''
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return reply

    assert run(loop, main()) == b'UNIX STREAMS\n'


# -- cleanup_socket: exactly where asyncio has it -----------------------------


def test_cleanup_socket_parameter_follows_asyncio(loop):
    stock = inspect.signature(
        asyncio.unix_events._UnixSelectorEventLoop.create_unix_server)
    ours = inspect.signature(type(loop).create_unix_server)
    assert ('cleanup_socket' in ours.parameters) == (
        'cleanup_socket' in stock.parameters)


def test_socket_file_left_on_close_without_cleanup_socket(loop, path):
    # Python < 3.13 (no cleanup_socket): the file stays, as with asyncio.
    if _unix._HAS_CLEANUP_SOCKET:
        pytest.skip('this Python removes the socket file on close')

    async def main():
        server = await loop.create_unix_server(asyncio.Protocol, path)
        server.close()
        await server.wait_closed()

    run(loop, main())
    assert os.path.exists(path)


def test_cleanup_socket_removes_own_file_only(loop, tmp_path):
    # Exercised on any Python through the internal entry point.
    own = str(tmp_path / 'own.sock')
    replaced = str(tmp_path / 'replaced.sock')

    async def serve(where):
        return await loop._create_unix_server(
            asyncio.Protocol, where, None, 100, None, None, None, True, True)

    async def main():
        server = await serve(own)
        server.close()
        await server.wait_closed()
        assert not os.path.exists(own)

        server = await serve(replaced)
        # Someone else's socket takes the path: it must survive our close.
        os.unlink(replaced)
        other = socket.socket(socket.AF_UNIX)
        other.bind(replaced)
        try:
            server.close()
            await server.wait_closed()
            assert os.path.exists(replaced)
        finally:
            other.close()

    run(loop, main())


# -- argument checks ----------------------------------------------------------


UNIX_CONNECTION_ARG_ERRORS = [
    dict(ssl=True),
    dict(path='/x', server_hostname='x'),
    dict(path='/x', ssl_handshake_timeout=1.0),
    dict(path='/x', ssl_shutdown_timeout=1.0),
    dict(path='/x', sock='UNIX'),
    dict(),
    dict(sock='INET'),
]

UNIX_SERVER_ARG_ERRORS = [
    dict(path='/x', ssl=True),
    dict(path='/x', ssl_handshake_timeout=1.0),
    dict(path='/x', ssl_shutdown_timeout=1.0),
    dict(path='/x', sock='UNIX'),
    dict(),
    dict(sock='INET'),
]


def _socket_arg(value, socks):
    if value == 'UNIX':
        socks.append(socket.socket(socket.AF_UNIX))
    elif value == 'INET':
        socks.append(socket.socket())
    else:
        return value
    return socks[-1]


def _compare_errors(loop, method, kwargs):
    results = {}
    for name, lp in both_loops(loop):
        socks = []
        call_kwargs = {k: _socket_arg(v, socks) for k, v in kwargs.items()}
        try:
            with pytest.raises(Exception) as info:
                lp.run_until_complete(getattr(lp, method)(
                    asyncio.Protocol, **call_kwargs))
        finally:
            for s in socks:
                s.close()
        results[name] = (type(info.value), str(info.value).split('<')[0])
    assert results['ferroloop'] == results['asyncio']


@pytest.mark.parametrize('kwargs', UNIX_CONNECTION_ARG_ERRORS,
                         ids=lambda kw: ','.join(kw) or 'no-args')
def test_connection_argument_errors_match_asyncio(loop, kwargs):
    _compare_errors(loop, 'create_unix_connection', kwargs)


@pytest.mark.parametrize('kwargs', UNIX_SERVER_ARG_ERRORS,
                         ids=lambda kw: ','.join(kw) or 'no-args')
def test_server_argument_errors_match_asyncio(loop, kwargs):
    _compare_errors(loop, 'create_unix_server', kwargs)


# TLS over Unix sockets (ssl=) is tested in test_py_tls_streams.py.
