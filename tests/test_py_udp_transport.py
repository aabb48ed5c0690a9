"""The datagram transport: sendto's rules with and without a connected peer,
errors reported to error_received (ICMP port unreachable, EACCES without
SO_BROADCAST), broadcast, buffered sends and flow control when the socket
is full, pause/resume reading, close and abort.  Each test runs on stock
asyncio and on ferroloop, with the same assertions.

Sends only back up in the transport when the kernel refuses them: with UDP
on loopback it practically never does, but a Unix datagram socket whose
receiver does not read fills after max_dgram_qlen (10 by default)
datagrams, deterministically.  The buffering tests use that.
"""

import asyncio
import errno
import socket

import pytest

from _netutil import LogRecords, poll_barrier, record_handler_calls
from test_py_udp_support import (  # noqa: F401  (loop is a fixture)
    HEADER, LOCALHOST, SENDS_EMPTY, Datagrams, call_outcome, close_and_wait, endpoint,
    free_udp_port, loop, peer_socket, run, without_class_name)


# --------------------------------------------------------------------------
# sendto's rules


def test_connected_sendto_rules(loop):
    async def main():
        with peer_socket() as peer:
            peer_addr = peer.getsockname()
            transport, protocol = await endpoint(loop, remote_addr=peer_addr)

            assert call_outcome(transport.sendto, b'default') == ('ok', None)
            assert call_outcome(transport.sendto, bytearray(b'named'),
                                peer_addr) == ('ok', None)
            assert call_outcome(transport.sendto,
                                memoryview(b'xviewx')[1:5]) == ('ok', None)
            assert call_outcome(transport.sendto, b'') == ('ok', None)
            if SENDS_EMPTY:
                # 3.13+: an empty datagram is a datagram, with the rules of
                # any other.
                assert call_outcome(transport.sendto, b'',
                                    ('10.0.0.1', 1)) == (
                    ValueError,
                    f'Invalid address: must be None or {peer_addr}')
            else:
                # Nothing at all goes out for an empty datagram.
                assert call_outcome(transport.sendto, b'',
                                    ('10.0.0.1', 1)) == ('ok', None)

            other = (LOCALHOST, peer_addr[1] + 1)
            assert call_outcome(transport.sendto, b'x', other) == (
                ValueError, f'Invalid address: must be None or {peer_addr}')
            assert call_outcome(transport.sendto, 'text') == (
                TypeError, "data argument must be a bytes-like object, "
                           "not 'str'")
            assert call_outcome(transport.sendto, None) == (
                TypeError, "data argument must be a bytes-like object, "
                           "not 'NoneType'")
            transport.sendto(b'last')

            expected = [b'default', b'named', b'view', b'last']
            if SENDS_EMPTY:
                expected.insert(3, b'')
            received = [(await loop.sock_recvfrom(peer, 100))[0]
                        for _ in range(len(expected))]
            assert received == expected
            assert protocol.events == ['made']
            assert not transport.is_closing()
            await close_and_wait(transport, protocol)

    run(loop, main())


def test_unconnected_sendto_needs_an_address(loop):
    async def main():
        contexts = record_handler_calls(loop)
        with peer_socket() as peer:
            transport, protocol = await endpoint(loop,
                                                 local_addr=(LOCALHOST, 0))
            transport.sendto(b'addressed', peer.getsockname())
            assert (await loop.sock_recvfrom(peer, 100))[0] == b'addressed'

            # No address: socket.sendto() raises TypeError, which the stock
            # transport treats as fatal (not an OSError for error_received).
            transport.sendto(b'nowhere')
            assert transport.is_closing()
            exc = await protocol.lost
            assert isinstance(exc, TypeError)
            assert protocol.events == ['made', 'lost']
            [context] = contexts
            assert context['message'] == (
                'Fatal write error on datagram transport')
            assert context['exception'] is exc
            assert context['transport'] is transport
            assert context['protocol'] is protocol

    run(loop, main())


def test_datagrams_from_anyone_reach_an_unconnected_endpoint(loop):
    async def main():
        transport, protocol = await endpoint(loop, local_addr=(LOCALHOST, 0))
        address = transport.get_extra_info('sockname')
        with peer_socket() as a, peer_socket() as b:
            await loop.sock_sendto(a, b'from a', address)
            await loop.sock_sendto(b, b'from b', address)
            got = {await protocol.next_datagram() for _ in range(2)}
            assert got == {(b'from a', a.getsockname()),
                           (b'from b', b.getsockname())}
            # Replies go wherever sendto says.
            transport.sendto(b'to b', b.getsockname())
            assert await loop.sock_recvfrom(b, 100) == (b'to b', address)
        await close_and_wait(transport, protocol)

    run(loop, main())


# --------------------------------------------------------------------------
# Errors for error_received


def test_connection_refused_reaches_error_received(loop):
    async def main():
        # Nobody listens there: the ICMP port unreachable that answers the
        # datagram is reported on the connected socket.
        port = free_udp_port()
        transport, protocol = await endpoint(loop,
                                             remote_addr=(LOCALHOST, port))
        transport.sendto(b'anyone?')
        exc = await protocol.next_error()
        assert type(exc) is ConnectionRefusedError
        assert exc.errno == errno.ECONNREFUSED
        # Not fatal: the endpoint stays open and reading.
        assert not transport.is_closing() and transport.is_reading()
        assert protocol.events == ['made', 'error']

        # A later datagram can be answered the same way again.
        transport.sendto(b'still?')
        assert type(await protocol.next_error()) is ConnectionRefusedError
        await close_and_wait(transport, protocol)
        assert protocol.events == ['made', 'error', 'error', 'lost']

    run(loop, main())


def test_send_error_reaches_error_received(loop):
    async def main():
        transport, protocol = await endpoint(loop, local_addr=(LOCALHOST, 0))
        # Broadcasting needs SO_BROADCAST: EACCES, raised by sendto itself.
        transport.sendto(b'everyone', ('255.255.255.255', 9))
        exc = protocol.errors.get_nowait()
        assert type(exc) is PermissionError
        assert exc.errno == errno.EACCES
        assert not transport.is_closing()
        assert transport.get_write_buffer_size() == 0
        await close_and_wait(transport, protocol)

    run(loop, main())


def loopback_broadcast_works():
    # 127.255.255.255 is the loopback network's broadcast address; some
    # sandboxes do not route it.
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as receiver, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            receiver.bind(('0.0.0.0', 0))
            receiver.settimeout(2)
            sender.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sender.sendto(b'probe',
                          ('127.255.255.255', receiver.getsockname()[1]))
            return receiver.recv(10) == b'probe'
    except OSError:
        return False


@pytest.mark.skipif(not loopback_broadcast_works(),
                    reason='no broadcast on the loopback network')
def test_allow_broadcast(loop):
    async def main():
        # Broadcasts arrive at sockets bound to the wildcard address.
        with peer_socket(address=('0.0.0.0', 0)) as receiver:
            port = receiver.getsockname()[1]
            transport, protocol = await endpoint(
                loop, remote_addr=('127.255.255.255', port),
                allow_broadcast=True)
            sock = transport.get_extra_info('socket')
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST)
            # Not connected (replies come from other addresses), yet
            # sendto() defaults to the broadcast address, and only that.
            assert transport.get_extra_info('peername') is None
            transport.sendto(b'hello all')
            data, sender = await loop.sock_recvfrom(receiver, 100)
            assert data == b'hello all'
            assert call_outcome(transport.sendto, b'x', (LOCALHOST, port)) == (
                ValueError, f"Invalid address: must be None or "
                            f"{('127.255.255.255', port)}")

            # The receiver answers from its own address: it gets through.
            await loop.sock_sendto(receiver, b'reply', sender)
            assert (await protocol.next_datagram())[0] == b'reply'
            await close_and_wait(transport, protocol)

    run(loop, main())


# --------------------------------------------------------------------------
# Buffered sends and flow control (Unix datagram receiver that does not read)


@pytest.fixture
def stalled_receiver(tmp_path):
    """A bound Unix datagram socket nobody reads: its queue holds a few
    datagrams, then senders get EAGAIN."""
    path = str(tmp_path / 'receiver.sock')
    sock = peer_socket(socket.AF_UNIX, path)
    yield sock, path
    sock.close()


def fill_until_buffered(transport, make_datagram):
    """sendto() until the transport starts buffering; returns the
    datagrams sent."""
    sent = []
    while transport.get_write_buffer_size() == 0:
        sent.append(make_datagram(len(sent)))
        transport.sendto(sent[-1])
        assert len(sent) < 10_000, 'the socket never filled'
    return sent


def numbered(i, size=100):
    return i.to_bytes(4, 'big') * (size // 4)


async def receive_all(loop, sock, count):
    return [await loop.sock_recv(sock, 65536) for _ in range(count)]


def test_full_socket_buffers_sends_and_flushes_in_order(loop,
                                                         stalled_receiver):
    receiver, path = stalled_receiver

    async def main():
        transport, protocol = await endpoint(
            loop, remote_addr=path, family=socket.AF_UNIX)
        fd = transport.get_extra_info('socket').fileno()
        sent = fill_until_buffered(transport, numbered)
        for i in range(len(sent), len(sent) + 5):
            sent.append(numbered(i))
            transport.sendto(sent[-1])
        # The first refused datagram and the 5 after it wait in the
        # transport, whole, and the transport watches for writability.
        assert transport.get_write_buffer_size() == 6 * (100 + HEADER)
        assert without_class_name(repr(transport)) == (
            f'fd={fd} read=polling write=<polling, '
            f'bufsize={6 * (100 + HEADER)}>')

        assert await receive_all(loop, receiver, len(sent)) == sent
        await poll_barrier(loop)
        assert transport.get_write_buffer_size() == 0
        assert without_class_name(repr(transport)) == (
            f'fd={fd} read=polling write=<idle, bufsize=0>')
        assert protocol.events == ['made']
        await close_and_wait(transport, protocol)

    run(loop, main())


def test_unconnected_sends_are_buffered_with_their_addresses(loop, tmp_path,
                                                             stalled_receiver):
    receiver, path = stalled_receiver
    other_path = str(tmp_path / 'other.sock')

    async def main():
        with peer_socket(socket.AF_UNIX, other_path) as other:
            transport, protocol = await endpoint(
                loop, family=socket.AF_UNIX,
                local_addr=str(tmp_path / 'sender.sock'))
            sent = []
            while transport.get_write_buffer_size() == 0:
                sent.append(numbered(len(sent)))
                transport.sendto(sent[-1], path)
            # Queued behind the stalled receiver's datagram, though this
            # destination has room: datagrams leave in sendto() order.
            transport.sendto(b'to other', other_path)
            assert transport.get_write_buffer_size() == (
                100 + HEADER + len(b'to other') + HEADER)

            assert await receive_all(loop, receiver, len(sent)) == sent
            assert await loop.sock_recvfrom(other, 100) == (
                b'to other', str(tmp_path / 'sender.sock'))
            await close_and_wait(transport, protocol)

    run(loop, main())


def test_flow_control_pauses_and_resumes_the_protocol(loop, stalled_receiver):
    receiver, path = stalled_receiver

    async def main():
        transport, protocol = await endpoint(
            loop, remote_addr=path, family=socket.AF_UNIX)
        transport.set_write_buffer_limits(high=1000, low=200)
        assert transport.get_write_buffer_limits() == (200, 1000)

        sent = fill_until_buffered(transport, numbered)
        # A well-behaved sender: writes until asked to pause.
        while not protocol.paused:
            sent.append(numbered(len(sent)))
            transport.sendto(sent[-1])
        assert transport.get_write_buffer_size() > 1000
        assert protocol.pause_count == 1
        # Only one pause_writing per crossing of the high-water mark.
        transport.sendto(numbered(len(sent)))
        sent.append(numbered(len(sent)))
        assert protocol.pause_count == 1

        received = asyncio.ensure_future(
            receive_all(loop, receiver, len(sent)))
        await protocol.resumed
        assert transport.get_write_buffer_size() <= 200
        assert await received == sent
        assert protocol.events == ['made', 'pause', 'resume']
        await close_and_wait(transport, protocol)

    run(loop, main())


def test_close_flushes_the_buffer_first(loop, stalled_receiver):
    receiver, path = stalled_receiver

    async def main():
        transport, protocol = await endpoint(
            loop, remote_addr=path, family=socket.AF_UNIX)
        sent = fill_until_buffered(transport, numbered)
        transport.close()
        assert transport.is_closing()
        assert not transport.is_reading()
        transport.close()  # idempotent
        assert transport.get_write_buffer_size() == 100 + HEADER
        # Still waiting for the buffered datagram to leave.
        await poll_barrier(loop)
        assert not protocol.lost.done()

        assert await receive_all(loop, receiver, len(sent)) == sent
        assert await protocol.lost is None
        assert protocol.events == ['made', 'lost']

    run(loop, main())


def test_abort_drops_the_buffer(loop, stalled_receiver):
    receiver, path = stalled_receiver

    async def main():
        transport, protocol = await endpoint(
            loop, remote_addr=path, family=socket.AF_UNIX)
        sent = fill_until_buffered(transport, numbered)
        transport.sendto(b'also dropped')
        transport.abort()
        assert transport.is_closing()
        assert await protocol.lost is None
        # (get_write_buffer_size() is not checked: the stock transport
        # empties its buffer on abort but keeps counting its bytes.)
        # What the kernel took arrives; what the transport held does not.
        kernel_took = sent[:-1]
        assert await receive_all(loop, receiver, len(kernel_took)) == (
            kernel_took)
        await poll_barrier(loop)
        assert call_outcome(receiver.recv, 100)[0] is BlockingIOError
        assert protocol.events == ['made', 'lost']

    run(loop, main())


# --------------------------------------------------------------------------
# Reading


def test_pause_and_resume_reading(loop):
    async def main():
        transport, protocol = await endpoint(loop, local_addr=(LOCALHOST, 0))
        address = transport.get_extra_info('sockname')
        with peer_socket() as peer:
            transport.pause_reading()
            assert not transport.is_reading()
            transport.pause_reading()  # no-op
            await loop.sock_sendto(peer, b'while paused', address)
            await poll_barrier(loop)
            assert protocol.received.empty()

            transport.resume_reading()
            assert transport.is_reading()
            assert (await protocol.next_datagram())[0] == b'while paused'
        await close_and_wait(transport, protocol)

    run(loop, main())


def test_datagram_received_errors_go_to_the_exception_handler(loop):
    class Failing(Datagrams):
        def datagram_received(self, data, addr):
            super().datagram_received(data, addr)
            if data == b'fail':
                raise RuntimeError('protocol bug')

    async def main():
        contexts = record_handler_calls(loop)
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: Failing(loop), local_addr=(LOCALHOST, 0))
        address = transport.get_extra_info('sockname')
        with peer_socket() as peer:
            await loop.sock_sendto(peer, b'fail', address)
            await protocol.next_datagram()
            await loop.sock_sendto(peer, b'after', address)
            # The endpoint keeps reading.
            assert (await protocol.next_datagram())[0] == b'after'
        [context] = contexts
        assert isinstance(context['exception'], RuntimeError)
        assert str(context['exception']) == 'protocol bug'
        assert not transport.is_closing()
        await close_and_wait(transport, protocol)

    run(loop, main())


# --------------------------------------------------------------------------
# Closing


def test_close_without_buffered_data(loop):
    async def main():
        transport, protocol = await endpoint(loop, local_addr=(LOCALHOST, 0))
        sock = transport.get_extra_info('socket')
        transport.close()
        assert transport.is_closing() and not transport.is_reading()
        # connection_lost comes from the loop, not from inside close().
        assert protocol.events == ['made']
        assert await protocol.lost is None
        assert sock.fileno() == -1
        assert protocol.events == ['made', 'lost']

    run(loop, main())


def test_abort_without_buffered_data(loop):
    async def main():
        transport, protocol = await endpoint(loop, local_addr=(LOCALHOST, 0))
        transport.abort()
        assert transport.is_closing()
        assert protocol.events == ['made']
        assert await protocol.lost is None
        transport.abort()  # no second connection_lost
        transport.close()
        await poll_barrier(loop)
        assert protocol.events == ['made', 'lost']

    run(loop, main())


def test_sendto_after_close_is_ignored_then_warned_about(loop):
    async def main():
        with peer_socket() as peer:
            transport, protocol = await endpoint(
                loop, remote_addr=peer.getsockname())
            await close_and_wait(transport, protocol)
            with LogRecords() as log:
                for _ in range(4):
                    transport.sendto(b'late')
                assert log.messages() == []
                # asyncio.constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES = 5
                transport.sendto(b'late')
                transport.sendto(b'late')
            assert log.messages() == [
                ('WARNING', 'socket.send() raised exception.')] * 2
            await poll_barrier(loop)
            assert call_outcome(peer.recv, 100)[0] is BlockingIOError
            # The argument checks still apply.
            assert call_outcome(transport.sendto, 'text')[0] is TypeError

    run(loop, main())


def test_transport_owns_its_fd(loop):
    async def main():
        transport, protocol = await endpoint(loop, local_addr=(LOCALHOST, 0))
        fd = transport.get_extra_info('socket').fileno()
        kind, message = call_outcome(loop.add_reader, fd, lambda: None)
        assert kind is RuntimeError
        assert message.startswith(
            f'File descriptor {fd} is used by transport <')
        transport.close()
        # A closing transport gives its fd up.
        loop.add_reader(fd, lambda: None)
        assert loop.remove_reader(fd)
        await protocol.lost

    run(loop, main())

