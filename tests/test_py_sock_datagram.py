"""loop.sock_recvfrom / sock_recvfrom_into / sock_sendto: results, sender
addresses per family, argument errors, socket errors, the wait and its
EAGAIN retries, cancellation cleanup, debug-mode checks, socket subclasses
and sockets in blocking or timeout mode.

Every test runs on stock asyncio (the behavioural authority) and on
ferroloop with the same assertions; expected errors are the ones the
socket module itself raises for the same call. A task is made to wait with
one `await asyncio.sleep(0)`; no test sleeps to synchronise.
"""

import asyncio
import os
import socket
import sys
import tempfile

import pytest

from _netutil import SAFETY_TIMEOUT, loop  # noqa: F401  (pytest fixture)

HAS_IPV6 = socket.has_ipv6
try:
    socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).close()
except OSError:
    HAS_IPV6 = False


def run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, SAFETY_TIMEOUT))


def udp(family=socket.AF_INET, host='127.0.0.1'):
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.setblocking(False)
    return sock


def raised_by(call, *args):
    """The exception the socket module raises for call(*args)."""
    with pytest.raises(BaseException) as info:
        call(*args)
    return info.value


def same_error(got, expected):
    assert type(got) is type(expected)
    assert got.args == expected.args
    assert str(got) == str(expected)


@pytest.fixture
def tmpdir_short():
    # AF_UNIX paths are limited to 107 bytes: pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix='fl') as d:
        yield d


# -- results and addresses ----------------------------------------------


@pytest.mark.parametrize('waited', [False, True], ids=['ready', 'waited'])
def test_ipv4_datagrams_and_sender_address(loop, waited):
    receiver, sender = udp(), udp()
    with receiver, sender:
        target = receiver.getsockname()

        async def main():
            async def recv(call):
                if waited:
                    task = loop.create_task(call)
                    await asyncio.sleep(0)
                    assert not task.done()
                    sender.sendto(b'payload', target)
                    return await task
                sender.sendto(b'payload', target)
                await asyncio.sleep(0)
                return await call

            data, addr = await recv(loop.sock_recvfrom(receiver, 100))
            assert (data, addr) == (b'payload', sender.getsockname())
            assert type(addr) is tuple and type(addr[0]) is str

            buf = bytearray(100)
            nbytes, addr = await recv(loop.sock_recvfrom_into(receiver, buf))
            assert (nbytes, bytes(buf[:nbytes])) == (7, b'payload')
            assert addr == sender.getsockname()

        run(loop, main())


@pytest.mark.skipif(not HAS_IPV6, reason='no IPv6 on this host')
@pytest.mark.parametrize('waited', [False, True], ids=['ready', 'waited'])
def test_ipv6_sender_address_has_four_fields(loop, waited):
    receiver, sender = udp(socket.AF_INET6, '::1'), udp(socket.AF_INET6, '::1')
    with receiver, sender:
        async def main():
            if waited:
                task = loop.create_task(loop.sock_recvfrom(receiver, 100))
                await asyncio.sleep(0)
                await loop.sock_sendto(sender, b'six', receiver.getsockname()[:2])
                data, addr = await task
            else:
                await loop.sock_sendto(sender, b'six', receiver.getsockname())
                data, addr = await loop.sock_recvfrom(receiver, 100)
            assert data == b'six'
            assert addr == sender.getsockname()
            assert len(addr) == 4

        run(loop, main())


@pytest.mark.skipif(not HAS_IPV6, reason='no IPv6 on this host')
def test_ipv6_socket_receives_v4_mapped_addresses(loop):
    receiver = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    receiver.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    receiver.bind(('::', 0))
    receiver.setblocking(False)
    sender = udp()
    with receiver, sender:
        async def main():
            sender.sendto(b'mapped', ('127.0.0.1', receiver.getsockname()[1]))
            await asyncio.sleep(0)
            data, addr = await loop.sock_recvfrom(receiver, 100)
            assert data == b'mapped'
            assert addr == ('::ffff:127.0.0.1', sender.getsockname()[1], 0, 0)

        run(loop, main())


@pytest.mark.skipif(not hasattr(socket, 'AF_UNIX'), reason='no AF_UNIX')
@pytest.mark.parametrize('sender_kind', ['path', 'abstract', 'unbound'])
def test_unix_sender_addresses(loop, tmpdir_short, sender_kind):
    if sender_kind == 'abstract' and not sys.platform.startswith('linux'):
        pytest.skip('abstract namespace is Linux only')
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(os.path.join(tmpdir_short, 'rx'))
    receiver.setblocking(False)
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender.setblocking(False)
    if sender_kind == 'path':
        sender.bind(os.path.join(tmpdir_short, 'tx'))
    elif sender_kind == 'abstract':
        sender.bind(b'\0ferroloop-test-%d' % os.getpid())
    with receiver, sender:
        async def main():
            sent = await loop.sock_sendto(sender, b'unix', receiver.getsockname())
            assert sent == 4
            data, addr = await loop.sock_recvfrom(receiver, 100)
            assert data == b'unix'
            expected = {'path': os.path.join(tmpdir_short, 'tx'),
                        'abstract': b'\0ferroloop-test-%d' % os.getpid(),
                        'unbound': None}[sender_kind]
            assert addr == expected
            assert type(addr) is type(expected)
            # A bytes path is sent to as well, and recvfrom_into reports
            # the same address.
            await loop.sock_sendto(sender, b'again', os.fsencode(receiver.getsockname()))
            buf = bytearray(10)
            assert await loop.sock_recvfrom_into(receiver, buf) == (5, expected)

        run(loop, main())


@pytest.mark.skipif(not hasattr(socket, 'AF_UNIX'), reason='no AF_UNIX')
def test_unix_socketpair_has_no_sender_address(loop):
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    a.setblocking(False)
    b.setblocking(False)
    with a, b:
        async def main():
            b.send(b'pair')
            expected = a.recvfrom(100)[1]  # what the socket module reports
            assert expected is None
            b.send(b'pair')
            assert await loop.sock_recvfrom(a, 100) == (b'pair', expected)
            task = loop.create_task(loop.sock_recvfrom(a, 100))
            await asyncio.sleep(0)
            b.send(b'late')
            assert await task == (b'late', expected)

        run(loop, main())


def test_truncated_datagrams_and_sizes(loop):
    receiver, sender = udp(), udp()
    with receiver, sender:
        target = receiver.getsockname()

        async def main():
            me = sender.getsockname()
            sender.sendto(b'0123456789', target)
            await asyncio.sleep(0)
            # The rest of a datagram is dropped, as recvfrom does.
            assert await loop.sock_recvfrom(receiver, 4) == (b'0123', me)
            sender.sendto(b'zero', target)
            await asyncio.sleep(0)
            assert await loop.sock_recvfrom(receiver, 0) == (b'', me)
            # bufsize beyond the loop's shared buffer, and an index-able size.
            sender.sendto(b'big', target)
            await asyncio.sleep(0)
            assert await loop.sock_recvfrom(receiver, 300_000) == (b'big', me)
            sender.sendto(b'bool', target)
            await asyncio.sleep(0)
            assert await loop.sock_recvfrom(receiver, True) == (b'b', me)

            buf = bytearray(8)
            sender.sendto(b'0123456789', target)
            await asyncio.sleep(0)
            assert await loop.sock_recvfrom_into(receiver, buf, 3) == (3, me)
            assert bytes(buf) == b'012\0\0\0\0\0'
            sender.sendto(b'0123456789', target)
            await asyncio.sleep(0)
            assert await loop.sock_recvfrom_into(receiver, buf) == (8, me)
            assert bytes(buf) == b'01234567'
            # A memoryview slice: written in place, nbytes from its length.
            view = memoryview(buf)[2:5]
            sender.sendto(b'abcdef', target)
            await asyncio.sleep(0)
            assert await loop.sock_recvfrom_into(receiver, view) == (3, me)
            assert bytes(buf) == b'01abc567'

        run(loop, main())


@pytest.mark.parametrize('kind', ['bytes', 'bytearray', 'memoryview', 'empty'])
def test_sendto_data_kinds_and_count(loop, kind):
    receiver, sender = udp(), udp()
    with receiver, sender:
        payload = b'' if kind == 'empty' else b'datagram'
        data = {'bytes': payload, 'empty': payload,
                'bytearray': bytearray(payload),
                'memoryview': memoryview(b'xx' + payload)[2:]}[kind]

        async def main():
            assert await loop.sock_sendto(sender, data, receiver.getsockname()) \
                == len(payload)
            assert await loop.sock_recvfrom(receiver, 100) \
                == (payload, sender.getsockname())

        run(loop, main())


def test_sendto_resolves_host_names(loop):
    receiver, sender = udp(), udp()
    with receiver, sender:
        async def main():
            port = receiver.getsockname()[1]
            assert await loop.sock_sendto(sender, b'named', ('localhost', port)) == 5
            data, _ = await loop.sock_recvfrom(receiver, 100)
            assert data == b'named'

        run(loop, main())


# -- argument errors ------------------------------------------------------


def test_recvfrom_argument_errors_match_the_socket_module(loop):
    receiver = udp()
    with receiver:
        cases = [(-1,), ('10',), (1.5,), (None,)]

        async def main():
            for args in cases:
                expected = raised_by(receiver.recvfrom, *args)
                with pytest.raises(type(expected)) as info:
                    await loop.sock_recvfrom(receiver, *args)
                same_error(info.value, expected)

        run(loop, main())


def test_recvfrom_into_argument_errors_match_the_socket_module(loop):
    receiver, sender = udp(), udp()
    with receiver, sender:
        cases = [
            (bytearray(4), 5),        # nbytes greater than the buffer
            (bytearray(4), -1),       # negative
            (b'read-only', 0),        # not writable
            (bytearray(4), '2'),      # not an int
            (memoryview(bytearray(8))[::2], 0),  # not contiguous
        ]

        async def main():
            # Data waiting, so the loops' first try gets to the argument.
            sender.sendto(b'ready', receiver.getsockname())
            await asyncio.sleep(0)
            for buf, nbytes in cases:
                expected = raised_by(receiver.recvfrom_into, buf, nbytes or len(buf))
                with pytest.raises(type(expected)) as info:
                    await loop.sock_recvfrom_into(receiver, buf, nbytes)
                same_error(info.value, expected)
            # Nothing was consumed by the failed calls.
            assert await loop.sock_recvfrom(receiver, 10) == (b'ready', sender.getsockname())

        run(loop, main())


def test_sendto_argument_errors_match_the_socket_module(loop):
    sender = udp()
    with sender:
        cases = [
            ('text', ('127.0.0.1', 9)),
            (b'x', ('127.0.0.1', 70000)),
            (b'x', ('127.0.0.1',)),
            (b'x', '127.0.0.1'),
            (b'x', ('127.0.0.1', '9')),
            (b'x', (b'\xff', 9)),
            (memoryview(b'abcdef')[::2], ('127.0.0.1', 9)),
        ]

        async def main():
            for data, address in cases:
                expected = raised_by(sender.sendto, data, address)
                with pytest.raises(type(expected)) as info:
                    await loop.sock_sendto(sender, data, address)
                same_error(info.value, expected)

        run(loop, main())


# -- socket errors --------------------------------------------------------


def closed_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='ICMP errors on UDP as Linux reports them')
@pytest.mark.parametrize('operation', ['recvfrom', 'recvfrom_into'])
def test_connection_refused_reaches_the_waiting_call(loop, operation):
    sock = udp()
    with sock:
        sock.connect(closed_port())

        def call():
            if operation == 'recvfrom':
                return loop.sock_recvfrom(sock, 10)
            return loop.sock_recvfrom_into(sock, bytearray(10))

        async def main():
            task = loop.create_task(call())
            await asyncio.sleep(0)
            assert not task.done()
            sock.send(b'anyone?')  # the ICMP reply fails the waiting call
            with pytest.raises(ConnectionRefusedError) as info:
                await task

        run(loop, main())
        assert loop.remove_reader(sock) is False


@pytest.mark.skipif(not hasattr(socket, 'AF_UNIX'), reason='no AF_UNIX')
def test_sendto_error_matches_the_socket_module(loop, tmpdir_short):
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender.setblocking(False)
    missing = os.path.join(tmpdir_short, 'nobody')
    with sender:
        expected = raised_by(sender.sendto, b'x', missing)

        async def main():
            with pytest.raises(type(expected)) as info:
                await loop.sock_sendto(sender, b'x', missing)
            same_error(info.value, expected)

        run(loop, main())


def test_closed_socket_errors_match_the_socket_module(loop):
    sock = udp()
    sock.close()
    cases = [
        (loop.sock_recvfrom, sock.recvfrom, (10,), (10,)),
        (loop.sock_recvfrom_into, sock.recvfrom_into, (bytearray(4),), (bytearray(4),)),
        (loop.sock_sendto, sock.sendto, (b'x', ('127.0.0.1', 9)), (b'x', ('127.0.0.1', 9))),
    ]

    async def main():
        for method, direct, args, direct_args in cases:
            expected = raised_by(direct, *direct_args)
            with pytest.raises(type(expected)) as info:
                await method(sock, *args)
            same_error(info.value, expected)

    run(loop, main())


# -- waiting: EAGAIN retries, cancellation, replacement --------------------


@pytest.mark.skipif(not hasattr(socket, 'AF_UNIX'), reason='no AF_UNIX')
def test_sendto_waits_for_room_and_cancels_cleanly(loop, tmpdir_short):
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(os.path.join(tmpdir_short, 'rx'))
    receiver.setblocking(False)
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender.setblocking(False)
    target = receiver.getsockname()
    with receiver, sender:
        queued = 0
        while True:  # fill the receiver's queue
            try:
                sender.sendto(b'q' * 100, target)
            except BlockingIOError:
                break
            queued += 1

        async def main():
            # A cancelled wait leaves nothing registered, sends nothing.
            task = loop.create_task(loop.sock_sendto(sender, b'cancelled', target))
            await asyncio.sleep(0)
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert loop.remove_writer(sender) is False

            task = loop.create_task(loop.sock_sendto(sender, b'last', target))
            await asyncio.sleep(0)
            assert not task.done()
            # Room for one more: the waiting send is retried and goes out.
            for _ in range(queued):
                assert receiver.recv(200) == b'q' * 100
            assert await task == 4
            assert receiver.recv(200) == b'last'

        run(loop, main())
        assert loop.remove_writer(sender) is False


@pytest.mark.parametrize('operation', ['recvfrom', 'recvfrom_into'])
def test_cancelled_receive_leaves_nothing_registered_and_the_data(loop, operation):
    receiver, sender = udp(), udp()
    with receiver, sender:
        def call():
            if operation == 'recvfrom':
                return loop.sock_recvfrom(receiver, 10)
            return loop.sock_recvfrom_into(receiver, bytearray(10))

        async def main():
            task = loop.create_task(call())
            await asyncio.sleep(0)
            assert not task.done()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert loop.remove_reader(receiver) is False
            sender.sendto(b'kept', receiver.getsockname())
            await asyncio.sleep(0)
            assert await loop.sock_recvfrom(receiver, 10) == (b'kept', sender.getsockname())

        run(loop, main())
        assert loop.remove_reader(receiver) is False


def test_add_reader_replaces_a_pending_recvfrom(loop):
    receiver, sender = udp(), udp()
    with receiver, sender:
        async def main():
            task = loop.create_task(loop.sock_recvfrom(receiver, 10))
            await asyncio.sleep(0)
            woke = loop.create_future()
            loop.add_reader(receiver, lambda: woke.done() or woke.set_result(True))
            sender.sendto(b'x', receiver.getsockname())
            await woke
            assert not task.done()  # replaced: never resolved
            assert loop.remove_reader(receiver) is True
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        run(loop, main())


def test_many_datagrams_in_a_row_through_waits(loop):
    a, b = udp(), udp()
    with a, b:
        async def echo(n):
            for _ in range(n):
                data, addr = await loop.sock_recvfrom(b, 100)
                await loop.sock_sendto(b, data.upper(), addr)

        async def main():
            server = loop.create_task(echo(50))
            for i in range(50):
                await loop.sock_sendto(a, b'ping %d' % i, b.getsockname())
                assert await loop.sock_recvfrom(a, 100) == (b'PING %d' % i, b.getsockname())
            await server

        run(loop, main())


# -- debug mode, blocking and timeout sockets, subclasses ------------------


def test_debug_mode_refuses_blocking_sockets(loop):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(('127.0.0.1', 0))
    loop.set_debug(True)
    with sock:
        async def main():
            for call in (lambda: loop.sock_recvfrom(sock, 10),
                         lambda: loop.sock_recvfrom_into(sock, bytearray(4)),
                         lambda: loop.sock_sendto(sock, b'x', sock.getsockname())):
                with pytest.raises(ValueError, match='the socket must be non-blocking'):
                    await call()

        run(loop, main())


def test_timeout_socket_with_data_ready(loop):
    receiver, sender = udp(), udp()
    receiver.settimeout(SAFETY_TIMEOUT)
    with receiver, sender:
        async def main():
            assert await loop.sock_sendto(sender, b'ready', receiver.getsockname()) == 5
            assert await loop.sock_recvfrom(receiver, 10) == (b'ready', sender.getsockname())
            assert receiver.gettimeout() == SAFETY_TIMEOUT

        run(loop, main())


def test_socket_subclass_methods_are_used(loop):
    calls = []

    class Traced(socket.socket):
        def recvfrom(self, *args):
            calls.append('recvfrom')
            return super().recvfrom(*args)

        def recvfrom_into(self, *args):
            calls.append('recvfrom_into')
            return super().recvfrom_into(*args)

        def sendto(self, *args):
            calls.append(('sendto', len(args)))
            return super().sendto(*args)

    receiver = Traced(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(('127.0.0.1', 0))
    receiver.setblocking(False)
    with receiver:
        async def main():
            task = loop.create_task(loop.sock_recvfrom(receiver, 10))
            await asyncio.sleep(0)
            assert await loop.sock_sendto(receiver, b'me', receiver.getsockname()) == 2
            assert await task == (b'me', receiver.getsockname())
            await loop.sock_sendto(receiver, b'again', receiver.getsockname())
            assert await loop.sock_recvfrom_into(receiver, bytearray(8)) \
                == (5, receiver.getsockname())

        run(loop, main())
        # First try (would block), the send, the retry, then the rest.
        assert calls == ['recvfrom', ('sendto', 2), 'recvfrom', ('sendto', 2),
                         'recvfrom_into']


def test_ssl_socket_refused(loop):
    ssl = pytest.importorskip('ssl')
    ctx = ssl.create_default_context()
    sock = ctx.wrap_socket(socket.socket(), do_handshake_on_connect=False,
                           server_hostname='x')
    with sock:
        async def main():
            for call in (lambda: loop.sock_recvfrom(sock, 10),
                         lambda: loop.sock_recvfrom_into(sock, bytearray(4)),
                         lambda: loop.sock_sendto(sock, b'x', ('127.0.0.1', 9))):
                with pytest.raises(TypeError, match='Socket cannot be of type SSLSocket'):
                    await call()

        run(loop, main())


def test_transport_socket_refused_only_when_waiting(loop):
    async def main():
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=('127.0.0.1', 0))
        fd = transport.get_extra_info('socket').fileno()
        # Another socket object on the transport's fd.
        raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, fileno=fd)
        try:
            # Sending does not wait: allowed, as in the stock loop.
            assert await loop.sock_sendto(raw, b'x', ('127.0.0.1', 9)) == 1
            with pytest.raises(RuntimeError, match='is used by transport'):
                await loop.sock_recvfrom(raw, 10)
        finally:
            raw.detach()
            transport.close()
            await asyncio.sleep(0)

    run(loop, main())
