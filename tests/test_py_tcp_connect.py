"""loop.create_connection and loop.connect_accepted_socket on loopback:
round trips, address handling, error aggregation, Happy Eyeballs, and the
argument checks (compared with the stock loop's)."""

import asyncio
import logging
import socket

import pytest

from asyncio import base_events

from ferroloop._tcp import interleave_by_family

from test_py_tcp_support import Collect, closed_port, loop, run  # noqa: F401


async def echo_server(loop, host='127.0.0.1'):
    server = await loop.create_server(lambda: Collect(loop, echo=True),
                                      host, 0)
    return server, server.sockets[0].getsockname()[:2]


async def close_server(server):
    server.close()
    await server.wait_closed()


class BufferedCollect(asyncio.BufferedProtocol):
    """Receives into a small buffer of its own: many get_buffer rounds."""

    def __init__(self, loop, until):
        self.buffer = bytearray(1000)
        self.data = bytearray()
        self.until = until
        self.got_all = loop.create_future()
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        return self.buffer

    def buffer_updated(self, nbytes):
        self.data += self.buffer[:nbytes]
        if len(self.data) >= self.until and not self.got_all.done():
            self.got_all.set_result(bytes(self.data))

    def connection_lost(self, exc):
        self.lost.set_result(exc)


# -- round trips --------------------------------------------------------------


def test_echo_round_trip_with_protocol(loop):
    payload = bytes(range(256)) * 4096  # 1 MiB: more than one socket buffer

    async def main():
        server, (host, port) = await echo_server(loop)
        transport, proto = await loop.create_connection(
            lambda: Collect(loop, until=len(payload)), host, port)
        assert proto.transport is transport
        assert transport.get_extra_info('peername') == (host, port)
        assert transport.get_extra_info('sockname')[0] == '127.0.0.1'
        assert transport.get_extra_info('socket').fileno() >= 0
        transport.write(payload)
        echoed = await proto.got_all
        transport.close()
        assert await proto.lost is None
        await close_server(server)
        return echoed

    assert run(loop, main()) == payload


def test_echo_round_trip_with_buffered_protocol(loop):
    payload = b'buffered ' * 20000

    async def main():
        server, (host, port) = await echo_server(loop)
        transport, proto = await loop.create_connection(
            lambda: BufferedCollect(loop, len(payload)), host, port)
        transport.write(payload)
        echoed = await proto.got_all
        transport.close()
        await proto.lost
        await close_server(server)
        return echoed

    assert run(loop, main()) == payload


def test_eof_from_server_closes_client(loop):
    async def main():
        server = await loop.create_server(
            lambda: Collect(loop), '127.0.0.1', 0)
        port = server.sockets[0].getsockname()[1]
        transport, proto = await loop.create_connection(
            lambda: Collect(loop), '127.0.0.1', port)
        assert transport.can_write_eof()
        transport.write_eof()  # the server's protocol closes on EOF...
        await proto.eof        # ...and the client sees its EOF in turn
        assert await proto.lost is None
        await close_server(server)

    run(loop, main())


def test_ipv6_loopback(loop):
    async def main():
        server, (host, port) = await echo_server(loop, '::1')
        transport, proto = await loop.create_connection(
            lambda: Collect(loop, until=5), host, port)
        assert transport.get_extra_info('socket').family == socket.AF_INET6
        transport.write(b'hello')
        assert await proto.got_all == b'hello'
        transport.close()
        await proto.lost
        await close_server(server)

    run(loop, main())


def test_connect_with_sock(loop):
    async def main():
        server, address = await echo_server(loop)
        sock = socket.socket()
        sock.setblocking(False)
        await loop.sock_connect(sock, address)
        transport, proto = await loop.create_connection(
            lambda: Collect(loop, until=4), sock=sock)
        assert transport.get_extra_info('socket').fileno() == sock.fileno()
        transport.write(b'sock')
        assert await proto.got_all == b'sock'
        transport.close()
        await proto.lost
        assert sock.fileno() == -1  # the transport closed it
        await close_server(server)

    run(loop, main())


def test_local_addr(loop):
    local_port = closed_port()

    async def main():
        server_protos = []

        def factory():
            server_protos.append(Collect(loop))
            return server_protos[-1]

        server = await loop.create_server(factory, '127.0.0.1', 0)
        port = server.sockets[0].getsockname()[1]
        transport, proto = await loop.create_connection(
            lambda: Collect(loop), '127.0.0.1', port,
            local_addr=('127.0.0.1', local_port))
        assert transport.get_extra_info('sockname') == ('127.0.0.1',
                                                         local_port)
        peer_transport = await server_protos[0].made
        assert peer_transport.get_extra_info('peername') == (
            '127.0.0.1', local_port)
        transport.close()
        await proto.lost
        await close_server(server)

    run(loop, main())


def test_local_addr_in_use(loop):
    async def main():
        server, (host, port) = await echo_server(loop)
        with pytest.raises(OSError) as info:
            # The server's own address is taken.
            await loop.create_connection(asyncio.Protocol, host, port,
                                         local_addr=(host, port))
        await close_server(server)
        return info.value

    exc = run(loop, main())
    assert 'error while attempting to bind on address' in str(exc)
    assert exc.errno is not None


def test_local_addr_of_other_family_only(loop):
    async def main():
        server, (host, port) = await echo_server(loop)
        try:
            with pytest.raises(OSError,
                               match='no matching local address with '
                                     'family=<AddressFamily.AF_INET: 2> '
                                     'found'):
                await loop.create_connection(asyncio.Protocol, host, port,
                                             local_addr=('::1', 0))
        finally:
            await close_server(server)

    run(loop, main())


def test_connect_accepted_socket(loop):
    with socket.socket() as listener:
        listener.bind(('127.0.0.1', 0))
        listener.listen()
        client = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()

    async def main():
        with client:
            transport, proto = await loop.connect_accepted_socket(
                lambda: Collect(loop, until=3), accepted)
            client.sendall(b'abc')
            assert await proto.got_all == b'abc'
            transport.write(b'xyz')
            client.setblocking(False)
            assert await loop.sock_recv(client, 10) == b'xyz'
            transport.close()
            await proto.lost

    run(loop, main())


def test_connect_accepted_socket_rejects_datagram_socket(loop):
    with socket.socket(type=socket.SOCK_DGRAM) as sock:
        with pytest.raises(ValueError,
                           match='A Stream Socket was expected'):
            run(loop, loop.connect_accepted_socket(asyncio.Protocol, sock))


# -- errors -------------------------------------------------------------------


def test_refused_single_address(loop):
    port = closed_port()
    with pytest.raises(ConnectionRefusedError) as info:
        run(loop, loop.create_connection(asyncio.Protocol, '127.0.0.1', port))
    assert str(info.value) == (f"[Errno 111] Connect call failed "
                               f"('127.0.0.1', {port})")


def fake_resolver(loop, infos):
    async def getaddrinfo(host, port, **kwargs):
        return list(infos)
    loop.getaddrinfo = getaddrinfo


def stream_info(host, port, family=socket.AF_INET):
    address = (host, port) if family == socket.AF_INET else (host, port, 0, 0)
    return (family, socket.SOCK_STREAM, socket.IPPROTO_TCP, '', address)


def both_loops(loop):
    stock = asyncio.SelectorEventLoop()
    try:
        yield 'ferroloop', loop
        yield 'asyncio', stock
    finally:
        stock.close()


def test_errors_of_all_addresses_are_combined(loop):
    ports = [closed_port(), closed_port()]
    infos = [stream_info('127.0.0.1', p) for p in ports]
    results = {}
    for name, lp in both_loops(loop):
        fake_resolver(lp, infos)
        with pytest.raises(OSError) as info:
            lp.run_until_complete(
                lp.create_connection(asyncio.Protocol, 'two.test', 80))
        results[name] = (type(info.value), str(info.value))
    assert results['ferroloop'] == results['asyncio']
    assert results['ferroloop'] == (OSError, (
        f"Multiple exceptions: "
        f"[Errno 111] Connect call failed ('127.0.0.1', {ports[0]}), "
        f"[Errno 111] Connect call failed ('127.0.0.1', {ports[1]})"))


def test_identical_errors_raise_the_first(loop):
    port = closed_port()
    infos = [stream_info('127.0.0.1', port)] * 2
    fake_resolver(loop, infos)
    with pytest.raises(ConnectionRefusedError):
        run(loop, loop.create_connection(asyncio.Protocol, 'same.test', 80))


def test_empty_resolution(loop):
    fake_resolver(loop, [])
    with pytest.raises(OSError, match=r'getaddrinfo\(\) returned empty list'):
        run(loop, loop.create_connection(asyncio.Protocol, 'none.test', 80))


def test_first_address_refused_second_works(loop):
    async def main():
        server, (host, port) = await echo_server(loop)
        fake_resolver(loop, [stream_info(host, closed_port()),
                             stream_info(host, port)])
        transport, proto = await loop.create_connection(
            lambda: Collect(loop), 'refused-first.test', 80)
        assert transport.get_extra_info('peername') == (host, port)
        transport.close()
        await proto.lost
        await close_server(server)

    run(loop, main())


# -- Happy Eyeballs -----------------------------------------------------------


def test_happy_eyeballs_first_address_refused(loop):
    async def main():
        server, (host, port) = await echo_server(loop)
        fake_resolver(loop, [stream_info(host, closed_port()),
                             stream_info(host, port)])
        transport, proto = await loop.create_connection(
            lambda: Collect(loop), 'refused-first.test', 80,
            happy_eyeballs_delay=5.0)
        # A refusal starts the next attempt at once, not after the delay.
        assert transport.get_extra_info('peername') == (host, port)
        transport.close()
        await proto.lost
        await close_server(server)

    start = loop.time()
    run(loop, main())
    assert loop.time() - start < 5.0


def test_happy_eyeballs_first_address_unreachable(loop):
    # The first address never answers (a black hole): after the delay the
    # second attempt starts, wins, and the first is cancelled and closed.
    blackhole = ('127.0.0.1', closed_port())
    stuck_sockets = []
    real_sock_connect = loop.sock_connect

    async def sock_connect(sock, address):
        if address == blackhole:
            stuck_sockets.append(sock)
            await loop.create_future()  # never done
        return await real_sock_connect(sock, address)

    loop.sock_connect = sock_connect
    delay = 0.05

    async def main():
        server, (host, port) = await echo_server(loop)
        fake_resolver(loop, [stream_info(*blackhole), stream_info(host, port)])
        start = loop.time()
        transport, proto = await loop.create_connection(
            lambda: Collect(loop), 'slow-first.test', 80,
            happy_eyeballs_delay=delay)
        elapsed = loop.time() - start
        assert transport.get_extra_info('peername') == (host, port)
        transport.close()
        await proto.lost
        await close_server(server)
        return elapsed

    elapsed = run(loop, main())
    assert elapsed >= delay * 0.9
    assert len(stuck_sockets) == 1
    assert stuck_sockets[0].fileno() == -1  # the loser's socket is closed


def test_happy_eyeballs_all_fail(loop):
    ports = [closed_port(), closed_port()]
    fake_resolver(loop, [stream_info('127.0.0.1', p) for p in ports])
    with pytest.raises(OSError, match='Multiple exceptions: '):
        run(loop, loop.create_connection(asyncio.Protocol, 'x.test', 80,
                                         happy_eyeballs_delay=0.01))


def test_happy_eyeballs_interleaves_families(loop):
    # With a delay and no `interleave`, families alternate (interleave=1).
    order = []

    async def sock_connect(sock, address):
        order.append(address[0])
        raise ConnectionRefusedError(111, f'refused {address[0]}')

    loop.sock_connect = sock_connect
    fake_resolver(loop, [stream_info('::1', 1, socket.AF_INET6),
                         stream_info('::2', 1, socket.AF_INET6),
                         stream_info('127.0.0.1', 1),
                         stream_info('127.0.0.2', 1)])
    with pytest.raises(OSError):
        run(loop, loop.create_connection(asyncio.Protocol, 'mixed.test', 1,
                                         happy_eyeballs_delay=0.01))
    assert order == ['::1', '127.0.0.1', '::2', '127.0.0.2']


@pytest.mark.parametrize('families,count', [
    ('', 1),
    ('4', 1),
    ('6646', 1),
    ('66644', 1),
    ('66644', 2),
    ('66644', 3),
    ('64646', 5),
    ('4444466', 2),
])
def test_interleave_matches_asyncio(families, count):
    infos = [stream_info(f'h{i}', i,
                         socket.AF_INET6 if f == '6' else socket.AF_INET)
             for i, f in enumerate(families)]
    assert (interleave_by_family(infos, count) ==
            base_events._interleave_addrinfos(infos, count))


# -- argument checks ----------------------------------------------------------


CONNECTION_ARG_ERRORS = [
    dict(host='127.0.0.1', port=1, server_hostname='x'),
    dict(ssl_handshake_timeout=1.0, host='127.0.0.1', port=1),
    dict(ssl_shutdown_timeout=1.0, host='127.0.0.1', port=1),
    dict(ssl=True, port=1),
    dict(),
    dict(host='127.0.0.1', port=1, sock='SOCK'),
    dict(sock='DGRAM'),
]


@pytest.mark.parametrize('kwargs', CONNECTION_ARG_ERRORS,
                         ids=lambda kw: ','.join(kw) or 'no-args')
def test_argument_errors_match_asyncio(loop, kwargs):
    results = {}
    for name, lp in both_loops(loop):
        socks = []

        def arg(value):
            if value == 'SOCK':
                socks.append(socket.socket())
                return socks[-1]
            if value == 'DGRAM':
                socks.append(socket.socket(type=socket.SOCK_DGRAM))
                return socks[-1]
            return value

        call_kwargs = {k: arg(v) for k, v in kwargs.items()}
        try:
            with pytest.raises(Exception) as info:
                lp.run_until_complete(
                    lp.create_connection(asyncio.Protocol, **call_kwargs))
        finally:
            for s in socks:
                s.close()
        # Reprs of sockets differ by fd: compare up to the repr.
        results[name] = (type(info.value), str(info.value).split('<')[0])
    assert results['ferroloop'] == results['asyncio']
    assert results['ferroloop'][0] is ValueError


# TLS connections (ssl=) are tested in test_py_tls_streams.py.


def test_ssl_socket_refused(loop):
    import ssl
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    with ctx.wrap_socket(socket.socket(), server_hostname='x',
                         do_handshake_on_connect=False) as sock:
        with pytest.raises(TypeError, match='Socket cannot be of type '
                                            'SSLSocket'):
            run(loop, loop.create_connection(asyncio.Protocol, sock=sock))


def test_debug_logs_the_connection(loop, caplog):
    loop.set_debug(True)

    async def main():
        server, (host, port) = await echo_server(loop)
        transport, proto = await loop.create_connection(
            lambda: Collect(loop), host, port)
        transport.close()
        await proto.lost
        await close_server(server)
        return port

    with caplog.at_level(logging.DEBUG, logger='asyncio'):
        port = run(loop, main())
    assert any(f'connected to 127.0.0.1:{port}' in r.getMessage()
               for r in caplog.records)
    assert any('is serving' in r.getMessage() for r in caplog.records)
