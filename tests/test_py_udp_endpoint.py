"""loop.create_datagram_endpoint: addresses, families, socket options, sock=,
Unix datagram sockets, and the argument errors with the stock loop's types
and messages.  Each test runs on stock asyncio and on ferroloop."""

import asyncio
import errno
import gc
import os
import socket
import sys
import warnings

import pytest

from _netutil import LogRecords, open_fd_count
from test_py_udp_support import (  # noqa: F401  (loop is a fixture)
    LOCALHOST, Datagrams, async_outcome, close_and_wait, endpoint, loop,
    call_outcome, peer_socket, run)


def has_ipv6_loopback():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(('::1', 0))
    except OSError:
        return False
    return True


# --------------------------------------------------------------------------
# Round trips


async def echo_round_trip(loop, server_addr, family=0):
    server, server_proto = await endpoint(
        loop, local_addr=server_addr, family=family, echo=True)
    host, port = server.get_extra_info('sockname')[:2]
    client, client_proto = await endpoint(loop, remote_addr=(host, port))

    client.sendto(b'ping')
    data, client_addr = await server_proto.next_datagram()
    assert data == b'ping'
    assert client_addr == client.get_extra_info('sockname')
    reply, from_addr = await client_proto.next_datagram()
    assert reply == b'ping'
    assert from_addr == server.get_extra_info('sockname')

    for transport, protocol in ((client, client_proto),
                                (server, server_proto)):
        assert await close_and_wait(transport, protocol) is None
        assert protocol.events == ['made', 'datagram', 'lost']
    return server, client


def test_echo_round_trip_ipv4(loop):
    async def main():
        server, client = await echo_round_trip(loop, (LOCALHOST, 0))
        assert isinstance(server, asyncio.Transport)
        assert isinstance(client, asyncio.BaseTransport)

    run(loop, main())


@pytest.mark.skipif(not has_ipv6_loopback(), reason='no IPv6 loopback')
def test_echo_round_trip_ipv6(loop):
    async def main():
        await echo_round_trip(loop, ('::1', 0), socket.AF_INET6)

    run(loop, main())


def test_host_names_are_resolved(loop):
    async def main():
        transport, protocol = await endpoint(
            loop, local_addr=('localhost', 0), family=socket.AF_INET)
        assert transport.get_extra_info('sockname')[0] == LOCALHOST
        await close_and_wait(transport, protocol)

    run(loop, main())


def test_proto_and_flags_reach_the_resolver(loop):
    async def main():
        transport, protocol = await endpoint(
            loop, local_addr=(LOCALHOST, 0), proto=socket.IPPROTO_UDP,
            flags=socket.AI_NUMERICHOST)
        assert transport.get_extra_info('socket').proto == (
            socket.IPPROTO_UDP)
        await close_and_wait(transport, protocol)
        # A name is not numeric: AI_NUMERICHOST makes the resolver refuse it.
        return await async_outcome(endpoint(
            loop, local_addr=('localhost', 0), flags=socket.AI_NUMERICHOST))

    assert run(loop, main()) == (
        socket.gaierror, '[Errno -2] Name or service not known')


def test_many_datagrams_keep_their_boundaries_and_order(loop):
    async def main():
        server, server_proto = await endpoint(loop, local_addr=(LOCALHOST, 0))
        client, client_proto = await endpoint(
            loop, remote_addr=server.get_extra_info('sockname'))
        sizes = [1, 100, 1400, 8000, 65000, 7]
        for i, size in enumerate(sizes):
            client.sendto(bytes([i]) * size)
        for i, size in enumerate(sizes):
            data, _ = await server_proto.next_datagram()
            assert data == bytes([i]) * size
        await close_and_wait(client, client_proto)
        await close_and_wait(server, server_proto)

    run(loop, main())


# --------------------------------------------------------------------------
# What the endpoint looks like


def test_extra_info_of_connected_and_unconnected_endpoints(loop):
    async def main():
        server, server_proto = await endpoint(loop, local_addr=(LOCALHOST, 0))
        server_addr = server.get_extra_info('sockname')
        assert server_addr[0] == LOCALHOST and server_addr[1] > 0
        assert server.get_extra_info('peername') is None

        client, client_proto = await endpoint(loop, remote_addr=server_addr)
        assert client.get_extra_info('peername') == server_addr
        sock = client.get_extra_info('socket')
        assert (sock.family, sock.type) == (socket.AF_INET,
                                            socket.SOCK_DGRAM)
        # A view of the socket (asyncio's TransportSocket), not the socket.
        assert not isinstance(sock, socket.socket)
        assert sock.getsockname() == client.get_extra_info('sockname')
        assert client.get_extra_info('nonexistent', 'default') == 'default'

        assert client.get_protocol() is client_proto
        assert client.is_reading() and not client.is_closing()
        assert client.get_write_buffer_size() == 0
        assert client.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        await close_and_wait(client, client_proto)
        await close_and_wait(server, server_proto)

    run(loop, main())


def test_family_alone_gives_an_unbound_socket(loop):
    async def main():
        transport, protocol = await endpoint(loop, family=socket.AF_INET)
        assert transport.get_extra_info('sockname') == ('0.0.0.0', 0)
        assert transport.get_extra_info('peername') is None
        await close_and_wait(transport, protocol)

    run(loop, main())


def test_socket_options_are_set_only_when_asked(loop):
    async def main():
        plain, plain_proto = await endpoint(loop, local_addr=(LOCALHOST, 0))
        sock = plain.get_extra_info('socket')
        for option in (socket.SO_REUSEADDR, socket.SO_REUSEPORT,
                       socket.SO_BROADCAST):
            assert not sock.getsockopt(socket.SOL_SOCKET, option)
        await close_and_wait(plain, plain_proto)

        tuned, tuned_proto = await endpoint(
            loop, local_addr=(LOCALHOST, 0), reuse_port=True,
            allow_broadcast=True)
        sock = tuned.get_extra_info('socket')
        assert not sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST)
        await close_and_wait(tuned, tuned_proto)

    run(loop, main())


def test_reuse_port_lets_two_endpoints_share_a_port(loop):
    async def main():
        first, first_proto = await endpoint(
            loop, local_addr=(LOCALHOST, 0), reuse_port=True)
        address = first.get_extra_info('sockname')
        second, second_proto = await endpoint(
            loop, local_addr=address, reuse_port=True)
        assert second.get_extra_info('sockname') == address

        # Without SO_REUSEPORT on the newcomer the port is taken.
        kind, message = await async_outcome(
            endpoint(loop, local_addr=address))
        assert kind is OSError
        assert message == f'[Errno {errno.EADDRINUSE}] Address already in use'

        # The kernel hands a datagram to one of the two sockets.
        with peer_socket() as peer:
            await loop.sock_sendto(peer, b'shared', address)
            received = asyncio.ensure_future(asyncio.wait(
                [asyncio.ensure_future(first_proto.next_datagram()),
                 asyncio.ensure_future(second_proto.next_datagram())],
                return_when=asyncio.FIRST_COMPLETED))
            done, pending = await received
            for task in pending:
                task.cancel()
            [task] = done
            assert task.result()[0] == b'shared'
        await close_and_wait(first, first_proto)
        await close_and_wait(second, second_proto)

    run(loop, main())


def test_debug_mode_logs_the_new_endpoint(loop):
    loop.set_debug(True)

    async def main():
        with LogRecords() as log:
            bound, bound_proto = await endpoint(loop,
                                                local_addr=(LOCALHOST, 0))
            address = bound.get_extra_info('sockname')
            client, client_proto = await endpoint(loop, remote_addr=address)
        created = [(r.levelname, r.getMessage()) for r in log.records
                   if r.getMessage().startswith('Datagram endpoint')]
        assert [level for level, _ in created] == ['INFO', 'DEBUG']
        assert created[0][1].startswith(
            f"Datagram endpoint local_addr={(LOCALHOST, 0)!r} "
            f"remote_addr=None created: (<")
        assert created[1][1].startswith(
            f'Datagram endpoint remote_addr={address!r} created: (<')
        await close_and_wait(client, client_proto)
        await close_and_wait(bound, bound_proto)

    run(loop, main())


# --------------------------------------------------------------------------
# Argument errors: the stock loop's exception types and messages


@pytest.mark.parametrize('kwargs, expected', [
    ({}, (ValueError, 'unexpected address family')),
    ({'local_addr': 'localhost'}, (TypeError, '2-tuple is expected')),
    ({'local_addr': ('localhost', 1, 2, 3)},
     (TypeError, '2-tuple is expected')),
    ({'remote_addr': [LOCALHOST, 1]}, (TypeError, '2-tuple is expected')),
    ({'family': socket.AF_UNIX, 'local_addr': ('x', 1)},
     (TypeError, 'string is expected')),
    ({'family': socket.AF_UNIX, 'remote_addr': b'/x'},
     (TypeError, 'string is expected')),
    ({'local_addr': (LOCALHOST, 0), 'family': socket.AF_INET6},
     (socket.gaierror,
      '[Errno -9] Address family for hostname not supported')),
])
def test_argument_errors(loop, kwargs, expected):
    outcome = run(loop, async_outcome(
        loop.create_datagram_endpoint(asyncio.DatagramProtocol, **kwargs)))
    assert outcome == expected


@pytest.mark.skipif(not has_ipv6_loopback(), reason='no IPv6 loopback')
def test_no_family_fits_both_addresses(loop):
    outcome = run(loop, async_outcome(loop.create_datagram_endpoint(
        asyncio.DatagramProtocol,
        remote_addr=(LOCALHOST, 9), local_addr=('::1', 0))))
    assert outcome == (ValueError, 'can not get address information')


@pytest.mark.parametrize('value', [True, False, None])
def test_reuse_address_was_removed_in_3_11(loop, value):
    # 3.8.1 refused reuse_address=True (SO_REUSEADDR lets another process
    # steal a UDP port's datagrams); 3.11 dropped the parameter altogether.
    # Raised by the call itself: binding the arguments fails before a
    # coroutine exists.
    with LogRecords() as log:
        kind, message = call_outcome(
            loop.create_datagram_endpoint, asyncio.DatagramProtocol,
            local_addr=(LOCALHOST, 0), reuse_address=value)
    assert kind is TypeError
    assert message.endswith(
        ".create_datagram_endpoint() got an unexpected keyword argument "
        "'reuse_address'")
    assert log.messages() == []


def test_bind_failure_is_raised_and_the_socket_closed(loop):
    async def main():
        with peer_socket() as taken:
            address = taken.getsockname()
            fds = open_fd_count()
            outcome = await async_outcome(endpoint(loop, local_addr=address))
            assert open_fd_count() == fds
        return outcome

    kind, message = run(loop, main())
    assert kind is OSError
    assert message == f'[Errno {errno.EADDRINUSE}] Address already in use'


def test_protocol_factory_errors_propagate(loop):
    class Boom(Exception):
        pass

    def factory():
        raise Boom('no protocol')

    fds = open_fd_count()
    with warnings.catch_warnings():
        # The stock loop leaves the socket it made to the garbage collector
        # (ferroloop closes it).
        warnings.simplefilter('ignore', ResourceWarning)
        outcome = run(loop, async_outcome(loop.create_datagram_endpoint(
            factory, local_addr=(LOCALHOST, 0))))
        gc.collect()
    assert outcome == (Boom, 'no protocol')
    assert open_fd_count() == fds


# --------------------------------------------------------------------------
# sock=


def test_sock_is_wrapped_as_given(loop):
    async def main():
        with peer_socket() as peer:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((LOCALHOST, 0))
            assert sock.getblocking()
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: Datagrams(loop), sock=sock)
            # Made non-blocking, like every socket a transport owns.
            assert not sock.getblocking()
            assert transport.get_extra_info('sockname') == sock.getsockname()
            assert transport.get_extra_info('peername') is None

            transport.sendto(b'to peer', peer.getsockname())
            data, addr = await loop.sock_recvfrom(peer, 100)
            assert (data, addr) == (b'to peer', sock.getsockname())
            await loop.sock_sendto(peer, b'to sock', sock.getsockname())
            assert await protocol.next_datagram() == (
                b'to sock', peer.getsockname())
            assert await close_and_wait(transport, protocol) is None
            assert sock.fileno() == -1  # the transport closed it

    run(loop, main())


def test_connected_sock_sends_to_its_peer(loop):
    async def main():
        with peer_socket() as peer:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.connect(peer.getsockname())
            transport, protocol = await loop.create_datagram_endpoint(
                lambda: Datagrams(loop), sock=sock)
            assert transport.get_extra_info('peername') == peer.getsockname()
            transport.sendto(b'via send')
            data, _ = await loop.sock_recvfrom(peer, 100)
            assert data == b'via send'
            await close_and_wait(transport, protocol)

    run(loop, main())


def test_sock_must_be_a_datagram_socket(loop):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        outcome = run(loop, async_outcome(loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, sock=sock)))
        if sys.version_info >= (3, 13):
            # 3.13 takes any socket but a stream one, and says so.
            message = f'A datagram socket was expected, got {sock!r}'
        else:
            message = f'A UDP Socket was expected, got {sock!r}'
        assert outcome == (ValueError, message)


@pytest.mark.parametrize('kwargs, shown', [
    ({'local_addr': (LOCALHOST, 0)}, "local_addr=('127.0.0.1', 0)"),
    ({'remote_addr': (LOCALHOST, 9), 'family': socket.AF_INET,
      'proto': 17, 'flags': 1},
     # format() of an IntEnum is its number.
     "remote_addr=('127.0.0.1', 9), family=2, proto=17, flags=1"),
    ({'reuse_port': True, 'allow_broadcast': True},
     'reuse_port=True, allow_broadcast=True'),
    # Falsy values are no modifiers.
    ({'family': 0, 'proto': 0, 'reuse_port': False}, None),
])
def test_sock_refuses_socket_modifiers(loop, kwargs, shown):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        async def main():
            outcome = await async_outcome(loop.create_datagram_endpoint(
                lambda: Datagrams(loop), sock=sock, **kwargs))
            if outcome[0] == 'ok':
                transport, protocol = outcome[1]
                await close_and_wait(transport, protocol)
            return outcome

        outcome = run(loop, main())
    if shown is None:
        assert outcome[0] == 'ok'
    else:
        assert outcome == (
            ValueError, f'socket modifier keyword arguments can not be used '
                        f'when sock is specified. ({shown})')


# --------------------------------------------------------------------------
# Unix datagram sockets


@pytest.fixture
def paths(tmp_path):
    return str(tmp_path / 'a.sock'), str(tmp_path / 'b.sock')


def test_unix_datagram_round_trip(loop, paths):
    server_path, client_path = paths

    async def main():
        server, server_proto = await endpoint(
            loop, local_addr=server_path, family=socket.AF_UNIX, echo=True)
        client, client_proto = await endpoint(
            loop, local_addr=client_path, remote_addr=server_path,
            family=socket.AF_UNIX)
        assert server.get_extra_info('sockname') == server_path
        assert client.get_extra_info('peername') == server_path
        assert client.get_extra_info('socket').family == socket.AF_UNIX

        client.sendto(b'over unix')
        assert await server_proto.next_datagram() == (b'over unix',
                                                      client_path)
        assert await client_proto.next_datagram() == (b'over unix',
                                                      server_path)
        await close_and_wait(client, client_proto)
        await close_and_wait(server, server_proto)
        # As on the stock loop, the socket files stay behind.
        assert os.path.exists(server_path) and os.path.exists(client_path)

    run(loop, main())


def test_unix_datagram_unbound_endpoint(loop, paths):
    server_path, _ = paths

    async def main():
        server, server_proto = await endpoint(
            loop, local_addr=server_path, family=socket.AF_UNIX)
        # family alone: an unbound socket that can only send.
        client, client_proto = await endpoint(loop, family=socket.AF_UNIX)
        assert client.get_extra_info('socket').family == socket.AF_UNIX
        client.sendto(b'anonymous', server_path)
        data, addr = await server_proto.next_datagram()
        assert data == b'anonymous'
        assert not addr  # an unbound sender has no name
        await close_and_wait(client, client_proto)
        await close_and_wait(server, server_proto)

    run(loop, main())


def test_unix_datagram_stale_socket_file_is_replaced(loop, paths):
    path, _ = paths
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(path)
    stale.close()
    assert os.path.exists(path)

    async def main():
        transport, protocol = await endpoint(
            loop, local_addr=path, family=socket.AF_UNIX)
        assert transport.get_extra_info('sockname') == path
        await close_and_wait(transport, protocol)

    run(loop, main())


def test_unix_datagram_does_not_remove_a_regular_file(loop, paths):
    path, _ = paths
    with open(path, 'w') as f:
        f.write('keep me')
    outcome = run(loop, async_outcome(endpoint(
        loop, local_addr=path, family=socket.AF_UNIX)))
    assert outcome == (
        OSError, f'[Errno {errno.EADDRINUSE}] Address already in use')
    with open(path) as f:
        assert f.read() == 'keep me'


def test_unix_datagram_remote_path_missing(loop, paths):
    path, _ = paths
    outcome = run(loop, async_outcome(endpoint(
        loop, remote_addr=path, family=socket.AF_UNIX)))
    assert outcome == (FileNotFoundError,
                       f'[Errno {errno.ENOENT}] No such file or directory')


@pytest.mark.skipif(not sys.platform.startswith('linux'),
                    reason='abstract namespace is Linux-only')
def test_unix_datagram_abstract_namespace(loop):
    name = f'\0ferroloop-udp-{os.getpid()}-{id(loop)}'

    async def main():
        server, server_proto = await endpoint(
            loop, local_addr=name, family=socket.AF_UNIX)
        client, client_proto = await endpoint(
            loop, remote_addr=name, family=socket.AF_UNIX)
        # Linux reports abstract names as bytes.
        assert server.get_extra_info('sockname') == name.encode()
        client.sendto(b'abstract')
        assert (await server_proto.next_datagram())[0] == b'abstract'
        await close_and_wait(client, client_proto)
        await close_and_wait(server, server_proto)

    run(loop, main())
