"""loop.create_server and the accept loop: the ways to say where to listen,
socket options, asyncio.Server's lifecycle (start_serving, serve_forever,
close, wait_closed, async with), bursts of connections, and the back-off
when accept() runs out of file descriptors."""

import asyncio
import errno
import socket
import ssl
import sys

import pytest

from asyncio import constants

from test_py_tcp_support import TIMEOUT, Collect, loop, run  # noqa: F401

from test_py_tcp_connect import both_loops


class Accepted:
    """A protocol factory that keeps every protocol it made."""

    def __init__(self, loop, **kwargs):
        self.loop = loop
        self.kwargs = kwargs
        self.protocols = []
        self._taken = 0
        self._waiter = None

    def __call__(self):
        proto = Collect(self.loop, **self.kwargs)
        self.protocols.append(proto)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)
        return proto

    async def next_made(self):
        """The next connection's protocol, once connection_made ran."""
        while len(self.protocols) <= self._taken:
            self._waiter = self.loop.create_future()
            await self._waiter
        proto = self.protocols[self._taken]
        self._taken += 1
        await proto.made
        return proto


async def connect(loop, address, **kwargs):
    return await loop.create_connection(lambda: Collect(loop, **kwargs),
                                        *address[:2])


async def close_server(server):
    server.close()
    await server.wait_closed()


def families(server):
    return sorted(s.family for s in server.sockets)


# -- where to listen ----------------------------------------------------------


@pytest.mark.parametrize('host', [None, ''])
def test_all_interfaces(loop, host):
    async def main():
        server = await loop.create_server(asyncio.Protocol, host, 0)
        try:
            expected = [socket.AF_INET]
            if socket.has_ipv6:
                expected.append(socket.AF_INET6)
            assert families(server) == sorted(expected)
            for sock in server.sockets:
                assert sock.getsockname()[0] in ('0.0.0.0', '::')
                if sock.family == socket.AF_INET6:
                    # The IPv4 wildcard has its own socket.
                    assert sock.getsockopt(socket.IPPROTO_IPV6,
                                           socket.IPV6_V6ONLY)
        finally:
            await close_server(server)

    run(loop, main())


def test_family_restricts_addresses(loop):
    async def main():
        server = await loop.create_server(asyncio.Protocol, None, 0,
                                          family=socket.AF_INET)
        assert families(server) == [socket.AF_INET]
        await close_server(server)

    run(loop, main())


def test_host_list_binds_each_address_once(loop):
    # localhost resolves to 127.0.0.1 and ::1; the duplicate binds once.
    hosts = ['127.0.0.1', 'localhost', '127.0.0.1']
    expected = sorted({info[4][0] for info in socket.getaddrinfo(
        'localhost', 0, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)}
        | {'127.0.0.1'})

    async def main():
        server = await loop.create_server(asyncio.Protocol, hosts, 0)
        addresses = sorted(s.getsockname()[0] for s in server.sockets)
        await close_server(server)
        return addresses

    assert run(loop, main()) == expected


def test_port_zero_picks_a_port_and_serves(loop):
    async def main():
        accepted = Accepted(loop, echo=True)
        server = await loop.create_server(accepted, '127.0.0.1', 0)
        address = server.sockets[0].getsockname()
        assert address[1] != 0
        transport, proto = await connect(loop, address, until=4)
        server_proto = await accepted.next_made()
        # The accept loop passes the peer address it got from accept().
        assert server_proto.transport.get_extra_info('peername') == (
            transport.get_extra_info('sockname'))
        transport.write(b'ping')
        assert await proto.got_all == b'ping'
        transport.close()
        await server_proto.lost
        await close_server(server)

    run(loop, main())


def test_sock_argument(loop):
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))

    async def main():
        accepted = Accepted(loop)
        server = await loop.create_server(accepted, sock=sock)
        assert [s.fileno() for s in server.sockets] == [sock.fileno()]
        assert sock.gettimeout() == 0  # made non-blocking
        transport, proto = await connect(loop, sock.getsockname())
        server_proto = await accepted.next_made()
        transport.close()
        await server_proto.lost
        await close_server(server)
        assert sock.fileno() == -1  # closed with the server

    run(loop, main())


def test_address_in_use_message_matches_asyncio(loop):
    with socket.socket() as taken:
        taken.bind(('127.0.0.1', 0))
        taken.listen()
        port = taken.getsockname()[1]
        messages = {}
        for name, lp in both_loops(loop):
            with pytest.raises(OSError) as info:
                lp.run_until_complete(lp.create_server(
                    asyncio.Protocol, '127.0.0.1', port))
            messages[name] = (info.value.errno, str(info.value))
    assert messages['ferroloop'] == messages['asyncio']
    assert messages['ferroloop'][0] == errno.EADDRINUSE
    assert 'error while attempting to bind on address' in (
        messages['ferroloop'][1])


# -- socket options -----------------------------------------------------------


def test_reuse_address_default_and_off(loop):
    async def main():
        server = await loop.create_server(asyncio.Protocol, '127.0.0.1', 0)
        on = server.sockets[0].getsockopt(socket.SOL_SOCKET,
                                          socket.SO_REUSEADDR)
        await close_server(server)
        server = await loop.create_server(asyncio.Protocol, '127.0.0.1', 0,
                                          reuse_address=False)
        off = server.sockets[0].getsockopt(socket.SOL_SOCKET,
                                           socket.SO_REUSEADDR)
        await close_server(server)
        return on, off

    on, off = run(loop, main())
    assert on and not off


@pytest.mark.skipif(not hasattr(socket, 'SO_REUSEPORT'),
                    reason='no SO_REUSEPORT')
def test_reuse_port_lets_two_servers_share_a_port(loop):
    async def main():
        first = await loop.create_server(asyncio.Protocol, '127.0.0.1', 0,
                                         reuse_port=True)
        port = first.sockets[0].getsockname()[1]
        assert first.sockets[0].getsockopt(socket.SOL_SOCKET,
                                           socket.SO_REUSEPORT)
        second = await loop.create_server(asyncio.Protocol, '127.0.0.1',
                                          port, reuse_port=True)
        assert second.sockets[0].getsockname()[1] == port
        await close_server(first)
        await close_server(second)

    run(loop, main())


# -- asyncio.Server lifecycle -------------------------------------------------


def test_server_object_api(loop):
    async def main():
        server = await loop.create_server(asyncio.Protocol, '127.0.0.1', 0)
        assert isinstance(server, asyncio.Server)
        assert server.get_loop() is loop
        assert server.is_serving()
        assert all(isinstance(s, asyncio.trsock.TransportSocket)
                   for s in server.sockets)
        assert repr(server).startswith('<Server sockets=(')
        server.close()
        assert not server.is_serving()
        assert server.sockets == ()
        await server.wait_closed()
        # The newer Server methods exist exactly when asyncio has them.
        for name in ('close_clients', 'abort_clients'):
            assert hasattr(server, name) == hasattr(asyncio.Server, name)

    run(loop, main())


def test_start_serving_false_then_start(loop):
    async def main():
        accepted = Accepted(loop)
        server = await loop.create_server(accepted, '127.0.0.1', 0,
                                          start_serving=False)
        address = server.sockets[0].getsockname()
        assert not server.is_serving()
        # Bound but not listening yet: refused.
        with pytest.raises(ConnectionRefusedError):
            await connect(loop, address)
        await server.start_serving()
        assert server.is_serving()
        transport, proto = await connect(loop, address)
        server_proto = await accepted.next_made()
        transport.close()
        await server_proto.lost
        await close_server(server)

    run(loop, main())


def test_async_with_closes_the_server(loop):
    async def main():
        async with await loop.create_server(
                asyncio.Protocol, '127.0.0.1', 0) as server:
            assert server.is_serving()
        assert not server.is_serving()
        assert server.sockets == ()

    run(loop, main())


def test_serve_forever_until_cancelled(loop):
    async def main():
        accepted = Accepted(loop)
        server = await loop.create_server(accepted, '127.0.0.1', 0)
        address = server.sockets[0].getsockname()
        serving = loop.create_task(server.serve_forever())
        transport, proto = await connect(loop, address)
        server_proto = await accepted.next_made()
        assert server.is_serving()
        with pytest.raises(RuntimeError, match='already being awaited'):
            await server.serve_forever()
        serving.cancel()
        # serve_forever closes the server and waits for its connections.
        server_proto.transport.close()
        with pytest.raises(asyncio.CancelledError):
            await serving
        assert not server.is_serving()
        transport.close()
        await proto.lost
        with pytest.raises(RuntimeError, match='is closed'):
            await server.serve_forever()

    run(loop, main())


def test_wait_closed_waits_for_connections(loop):
    async def main():
        accepted = Accepted(loop)
        server = await loop.create_server(accepted, '127.0.0.1', 0)
        transport, proto = await connect(loop, server.sockets[0].getsockname())
        server_proto = await accepted.next_made()
        # Registered before close(), so every asyncio version waits.
        closed = loop.create_task(server.wait_closed())
        await asyncio.sleep(0)
        server.close()
        # Closing the server closes only the listening sockets.
        transport.write(b'still open')
        assert not server_proto.transport.is_closing()
        for _ in range(3):
            await asyncio.sleep(0)
        assert not closed.done()
        server_proto.transport.close()
        await asyncio.wait_for(closed, TIMEOUT)
        transport.close()
        await proto.lost

    run(loop, main())


def test_concurrent_clients(loop):
    count = 40

    async def main():
        accepted = Accepted(loop, echo=True)
        server = await loop.create_server(accepted, '127.0.0.1', 0)
        address = server.sockets[0].getsockname()

        async def client(i):
            message = f'client {i}'.encode()
            transport, proto = await connect(loop, address,
                                             until=len(message))
            transport.write(message)
            echoed = await proto.got_all
            transport.close()
            await proto.lost
            return echoed

        results = await asyncio.gather(*(client(i) for i in range(count)))
        assert results == [f'client {i}'.encode() for i in range(count)]
        await asyncio.gather(*(p.lost for p in accepted.protocols))
        await close_server(server)
        return len(accepted.protocols)

    assert run(loop, main()) == count


class CountingListener:
    """A listening socket that counts the connections accept() returned."""

    def __init__(self, sock):
        self._sock = sock
        self.accepted = 0

    def accept(self):
        result = self._sock.accept()
        self.accepted += 1
        return result

    def __getattr__(self, name):
        return getattr(self._sock, name)


def test_queued_connections_are_accepted_backlog_at_a_time(loop):
    # Connections already queued in the kernel: each readiness accepts at
    # most `backlog` of them (3.13+: backlog + 1), and the next iteration comes back for more.
    count, backlog = 20, 4
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    sock.listen(count)
    clients = [socket.create_connection(sock.getsockname())
               for _ in range(count)]
    listener = CountingListener(sock)
    batches = []
    real_accept_connection = loop._accept_connection

    def accept_connection(*args):
        before = listener.accepted
        real_accept_connection(*args)
        batches.append(listener.accepted - before)

    loop._accept_connection = accept_connection

    async def main():
        accepted = Accepted(loop)
        server = await loop.create_server(accepted, sock=listener,
                                          backlog=backlog)
        for _ in range(count):
            await accepted.next_made()
        for client in clients:
            client.close()
        await asyncio.gather(*(p.lost for p in accepted.protocols))
        await close_server(server)

    try:
        run(loop, main())
    finally:
        for client in clients:
            client.close()
    assert sum(batches) == count
    # 3.13's accept loop takes one more than the backlog per readiness.
    assert max(batches) == backlog + (1 if sys.version_info >= (3, 13) else 0)


class OutOfFds:
    """A listening socket whose first accept() calls fail with EMFILE."""

    def __init__(self, sock, failures):
        self._sock = sock
        self.failures = failures

    def accept(self):
        if self.failures:
            self.failures -= 1
            raise OSError(errno.EMFILE, 'Too many open files')
        return self._sock.accept()

    def __getattr__(self, name):
        return getattr(self._sock, name)


def test_accept_out_of_fds_backs_off_and_retries(loop, monkeypatch):
    monkeypatch.setattr(constants, 'ACCEPT_RETRY_DELAY', 0.05)
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    listener = OutOfFds(sock, failures=1)
    reports = []

    def handler(lp, context):
        # Reported once; right after, the reader is removed for the
        # back-off.
        reports.append(context)
        loop.call_soon(lambda: reports.append(
            loop._is_watching(sock.fileno(), True)))

    loop.set_exception_handler(handler)

    async def main():
        accepted = Accepted(loop)
        server = await loop.create_server(accepted, sock=listener)
        transport, proto = await connect(loop, sock.getsockname())
        # Accepted after the back-off.
        server_proto = await accepted.next_made()
        transport.close()
        await server_proto.lost
        await close_server(server)

    run(loop, main())
    assert len(reports) == 2
    context, still_watching = reports
    assert context['message'] == 'socket.accept() out of system resource'
    assert context['exception'].errno == errno.EMFILE
    assert context['socket'].fileno() == sock.fileno()
    assert not still_watching


def test_server_closed_during_back_off_stays_closed(loop, monkeypatch):
    monkeypatch.setattr(constants, 'ACCEPT_RETRY_DELAY', 0.01)
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    fd = sock.fileno()
    listener = OutOfFds(sock, failures=1)
    errors = []
    failed = loop.create_future()
    retried = loop.create_future()

    def handler(lp, context):
        errors.append(context)
        if not failed.done():
            failed.set_result(None)

    loop.set_exception_handler(handler)
    real_resume = loop._resume_serving

    def resume_serving(*args):
        real_resume(*args)
        retried.set_result(None)

    loop._resume_serving = resume_serving

    async def main():
        server = await loop.create_server(asyncio.Protocol, sock=listener)
        client = socket.socket()
        client.setblocking(False)
        with client:
            await loop.sock_connect(client, sock.getsockname())
            await failed
            await close_server(server)
            await retried  # found the server closed: nothing re-added

    run(loop, main())
    assert [e['message'] for e in errors] == [
        'socket.accept() out of system resource']
    assert not loop._is_watching(fd, True)


def test_protocol_factory_error_closes_the_connection(loop):
    # The error is only reported in debug mode, as in asyncio.
    loop.set_debug(True)
    errors = []
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))

    def factory():
        raise ZeroDivisionError('no protocol')

    async def main():
        server = await loop.create_server(factory, '127.0.0.1', 0)
        transport, proto = await connect(loop, server.sockets[0].getsockname())
        await proto.lost  # the server side closed the connection
        await close_server(server)

    run(loop, main())
    assert [e['message'] for e in errors] == [
        'Error on transport creation for incoming connection']
    assert isinstance(errors[0]['exception'], ZeroDivisionError)


# -- argument checks ----------------------------------------------------------


SERVER_ARG_ERRORS = [
    dict(host='127.0.0.1', port=0, ssl=True),
    dict(host='127.0.0.1', port=0, ssl_handshake_timeout=1.0),
    dict(host='127.0.0.1', port=0, ssl_shutdown_timeout=1.0),
    dict(host='127.0.0.1', port=0, sock='SOCK'),
    dict(),
    dict(sock='DGRAM'),
]


@pytest.mark.parametrize('kwargs', SERVER_ARG_ERRORS,
                         ids=lambda kw: ','.join(kw) or 'no-args')
def test_argument_errors_match_asyncio(loop, kwargs):
    results = {}
    for name, lp in both_loops(loop):
        socks = []

        def arg(value):
            if value in ('SOCK', 'DGRAM'):
                kind = (socket.SOCK_STREAM if value == 'SOCK'
                        else socket.SOCK_DGRAM)
                socks.append(socket.socket(type=kind))
                return socks[-1]
            return value

        try:
            with pytest.raises(Exception) as info:
                lp.run_until_complete(lp.create_server(
                    asyncio.Protocol,
                    **{k: arg(v) for k, v in kwargs.items()}))
        finally:
            for s in socks:
                s.close()
        results[name] = (type(info.value), str(info.value).split('<')[0])
    assert results['ferroloop'] == results['asyncio']


# TLS servers (ssl=) are tested in test_py_tls_streams.py.
