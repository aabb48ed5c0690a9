"""The datagram transport's address handling, which the native transport
does itself: sender addresses as socket.recvfrom reports them (IPv4, IPv6
4-tuples, Unix paths, abstract names, unbound senders), the reuse of the
last sender's address, sendto's address forms (numeric hosts, host names,
IPv6 2- to 4-tuples, tuple subclasses, bytes hosts), bytes-like data of
every kind, socket subclasses, flow-control limits, repr and the unclosed
transport warning.  Each test runs on stock asyncio and on ferroloop (both
transports), with the same assertions.
"""

import asyncio
import collections
import gc
import os
import socket
import sys
import warnings

import pytest

from _netutil import LogRecords, record_handler_calls
from test_py_udp_support import (  # noqa: F401  (loop is a fixture)
    LOCALHOST, Datagrams, call_outcome, close_and_wait, endpoint, loop,
    peer_socket, run, without_class_name)


def has_ipv6_loopback():
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(('::1', 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not has_ipv6_loopback(),
                                reason='no IPv6 loopback')


# --------------------------------------------------------------------------
# Sender addresses


def test_alternating_senders_get_their_own_addresses(loop):
    async def main():
        transport, protocol = await endpoint(loop, local_addr=(LOCALHOST, 0))
        address = transport.get_extra_info('sockname')
        with peer_socket() as a, peer_socket() as b:
            order = [a, a, b, a, b, b, a]
            for i, peer in enumerate(order):
                await loop.sock_sendto(peer, b'%d' % i, address)
                data, addr = await protocol.next_datagram()
                assert data == b'%d' % i
                assert addr == peer.getsockname()
                assert type(addr) is tuple
                assert type(addr[0]) is str and type(addr[1]) is int
                # Replies to the address handed over reach the sender.
                transport.sendto(b're' + data, addr)
                assert await loop.sock_recvfrom(peer, 100) == (
                    b're' + data, address)
        await close_and_wait(transport, protocol)

    run(loop, main())


@needs_ipv6
def test_ipv6_sender_address_is_a_4_tuple(loop):
    async def main():
        transport, protocol = await endpoint(loop, local_addr=('::1', 0))
        address = transport.get_extra_info('sockname')
        with peer_socket(socket.AF_INET6, ('::1', 0)) as peer:
            await loop.sock_sendto(peer, b'six', address)
            data, addr = await protocol.next_datagram()
            assert data == b'six'
            assert addr == peer.getsockname()
            assert len(addr) == 4 and addr[0] == '::1'
            # Every accepted form of the destination.
            host, port = addr[:2]
            for dest in (addr, (host, port), (host, port, 0),
                         (host, port, 0, 0), ('0:0::1', port)):
                transport.sendto(b'to %r' % (dest,), dest)
                assert await loop.sock_recvfrom(peer, 100) == (
                    b'to %r' % (dest,), address)
        await close_and_wait(transport, protocol)

    run(loop, main())


def test_unix_sender_addresses(loop, tmp_path):
    async def main():
        path = str(tmp_path / 'server.sock')
        transport, protocol = await endpoint(
            loop, local_addr=path, family=socket.AF_UNIX)
        named = peer_socket(socket.AF_UNIX, str(tmp_path / 'named.sock'))
        unbound = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        unbound.setblocking(False)
        senders = [named, unbound]
        if sys.platform.startswith('linux'):
            abstract = peer_socket(
                socket.AF_UNIX, f'\0ferroloop-addr-{os.getpid()}-{id(loop)}')
            autobound = peer_socket(socket.AF_UNIX, '')  # autobind
            senders += [abstract, autobound]
        try:
            for sender in senders:
                await loop.sock_sendto(sender, b'hello', path)
                data, addr = await protocol.next_datagram()
                assert data == b'hello'
                if sender is unbound:
                    assert addr is None
                else:
                    assert addr == sender.getsockname()
                    assert type(addr) is type(sender.getsockname())
                    transport.sendto(b'back', addr)
                    assert (await loop.sock_recvfrom(sender, 100))[0] == (
                        b'back')
        finally:
            for sender in senders:
                sender.close()
        await close_and_wait(transport, protocol)

    run(loop, main())


def test_no_address_after_an_unbound_sender_is_fatal(loop, tmp_path):
    async def main():
        contexts = record_handler_calls(loop)
        path = str(tmp_path / 'server.sock')
        transport, protocol = await endpoint(
            loop, local_addr=path, family=socket.AF_UNIX)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as unbound:
            unbound.setblocking(False)
            await loop.sock_sendto(unbound, b'anonymous', path)
            assert await protocol.next_datagram() == (b'anonymous', None)
        # The sender's address is None: socket.sendto(data, None) fails.
        transport.sendto(b'reply', None)
        assert isinstance(await protocol.lost, TypeError)
        assert [c['message'] for c in contexts] == [
            'Fatal write error on datagram transport']

    run(loop, main())


def test_non_utf8_unix_path_round_trips(loop, tmp_path):
    async def main():
        path = str(tmp_path / 'server.sock')
        transport, protocol = await endpoint(
            loop, local_addr=path, family=socket.AF_UNIX)
        odd = os.fsdecode(os.fsencode(str(tmp_path)) + b'/\xff\xfe.sock')
        with peer_socket(socket.AF_UNIX, odd) as sender:
            await loop.sock_sendto(sender, b'x', path)
            assert await protocol.next_datagram() == (b'x', odd)
        await close_and_wait(transport, protocol)

    run(loop, main())


# --------------------------------------------------------------------------
# sendto's destinations and data


def test_sendto_address_forms(loop):
    Addr = collections.namedtuple('Addr', 'host port')

    async def main():
        contexts = record_handler_calls(loop)
        transport, protocol = await endpoint(loop, local_addr=(LOCALHOST, 0))
        address = transport.get_extra_info('sockname')
        with peer_socket() as peer:
            host, port = peer.getsockname()
            for dest in ((host, port), Addr(host, port),
                         ('localhost', port), (host.encode(), port),
                         (bytearray(host.encode()), port)):
                transport.sendto(b'to %r' % (dest,), dest)
                assert await loop.sock_recvfrom(peer, 100) == (
                    b'to %r' % (dest,), address)
            # Refused by the kernel: error_received, the transport lives on.
            transport.sendto(b'port 0', (host, 0))
            exc = await protocol.next_error()
            assert isinstance(exc, OSError)
            assert not transport.is_closing()
        # Refused by socket.sendto's own checks: fatal.
        transport.sendto(b'bad port', (LOCALHOST, 70000))
        exc = await protocol.lost
        assert isinstance(exc, OverflowError)
        assert [c['message'] for c in contexts] == [
            'Fatal write error on datagram transport']

    run(loop, main())


def test_sendto_bytes_like_data(loop):
    class Bytes(bytes):
        pass

    async def main():
        with peer_socket() as peer:
            transport, protocol = await endpoint(
                loop, remote_addr=peer.getsockname())
            ints = memoryview(bytearray(range(8))).cast('i')
            for data in (b'plain', Bytes(b'subclass'), bytearray(b'array'),
                         memoryview(b'view'), ints,
                         memoryview(b'abcdef')[1:5]):
                transport.sendto(data)
                outcome = await loop.sock_recvfrom(peer, 100)
                assert outcome[0] == bytes(data)
            assert call_outcome(transport.sendto, memoryview(b'')) == (
                'ok', None)
            assert protocol.events == ['made']
            # Not C-contiguous: socket.send's BufferError, fatal.
            transport.sendto(memoryview(b'abcdef')[::2])
            assert isinstance(await protocol.lost, BufferError)

    run(loop, main())


def test_socket_subclass_methods_are_used(loop):
    calls = []

    class Traced(socket.socket):
        def sendto(self, *args):
            calls.append('sendto')
            return super().sendto(*args)

        def recvfrom(self, *args):
            calls.append('recv')
            return super().recvfrom(*args)

        def recvfrom_into(self, *args):
            calls.append('recv')
            return super().recvfrom_into(*args)

    async def main():
        sock = Traced(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((LOCALHOST, 0))
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: Datagrams(loop), sock=sock)
        address = transport.get_extra_info('sockname')
        with peer_socket() as peer:
            await loop.sock_sendto(peer, b'in', address)
            assert await protocol.next_datagram() == (b'in',
                                                      peer.getsockname())
            transport.sendto(b'out', peer.getsockname())
            assert await loop.sock_recvfrom(peer, 100) == (b'out', address)
        assert calls == ['recv', 'sendto']
        await close_and_wait(transport, protocol)

    run(loop, main())


# --------------------------------------------------------------------------
# Limits, repr, warnings


def test_write_buffer_limit_errors(loop):
    async def main():
        transport, protocol = await endpoint(loop, local_addr=(LOCALHOST, 0))
        assert transport.get_write_buffer_limits() == (16384, 65536)
        for kwargs in ({'high': -1}, {'high': 1, 'low': 2}, {'low': -3},
                       {'high': -7}):
            assert call_outcome(transport.set_write_buffer_limits,
                                **kwargs)[0] is ValueError
        outcomes = [call_outcome(transport.set_write_buffer_limits, **kw)
                    for kw in ({'high': -7}, {'low': 5}, {'high': 9})]
        assert outcomes == [
            (ValueError, 'high (-7) must be >= low (-2) must be >= 0'),
            ('ok', None), ('ok', None)]
        assert transport.get_write_buffer_limits() == (2, 9)
        await close_and_wait(transport, protocol)

    run(loop, main())


def test_repr_follows_the_state(loop):
    async def main():
        transport, protocol = await endpoint(loop, local_addr=(LOCALHOST, 0))
        fd = transport.get_extra_info('socket').fileno()
        assert isinstance(transport, asyncio.Transport)
        assert without_class_name(repr(transport)) == (
            f'fd={fd} read=polling write=<idle, bufsize=0>')
        transport.pause_reading()
        assert without_class_name(repr(transport)) == (
            f'fd={fd} read=idle write=<idle, bufsize=0>')
        transport.close()
        assert without_class_name(repr(transport)) == (
            f'closing fd={fd} read=idle write=<idle, bufsize=0>')
        await protocol.lost
        assert without_class_name(repr(transport)) == f'closed fd={fd}'

    run(loop, main())


def test_unclosed_transport_warns_and_closes_its_socket(loop):
    async def main():
        transport, protocol = await endpoint(loop, local_addr=(LOCALHOST, 0))
        sock = transport.get_extra_info('socket')
        fd = sock.fileno()
        return fd

    fd = run(loop, main())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        loop.close()
        gc.collect()
    messages = [str(w.message) for w in caught
                if issubclass(w.category, ResourceWarning)]
    assert any(m.startswith('unclosed transport <') and f'fd={fd}' in m
               for m in messages), messages
    with pytest.raises(OSError):
        os.fstat(fd)


def test_sendto_after_connection_lost_without_address(loop):
    async def main():
        transport, protocol = await endpoint(loop, local_addr=(LOCALHOST, 0))
        await close_and_wait(transport, protocol)
        # The stock transport has dropped its socket and loop by now.
        outcome = call_outcome(transport.sendto, b'late', (LOCALHOST, 9))
        assert outcome == (
            AttributeError,
            "'NoneType' object has no attribute 'call_exception_handler'")

    run(loop, main())


def test_debug_mode_logs_pause_and_resume(loop):
    async def main():
        loop.set_debug(True)
        transport, protocol = await endpoint(loop, local_addr=(LOCALHOST, 0))
        with LogRecords() as records:
            transport.pause_reading()
            transport.resume_reading()
        texts = [r.getMessage() for r in records.records]
        assert [t.split(' ')[-2:] for t in texts] == [
            ['pauses', 'reading'], ['resumes', 'reading']]
        await close_and_wait(transport, protocol)
        loop.set_debug(False)

    run(loop, main())
