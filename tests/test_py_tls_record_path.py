"""TLS record path: what runs for every record once the handshake is done.

On ferroloop these are the native methods of SSLProtocol (src/tls_protocol.rs):
decrypting into data_received, encrypting writes, flow control both ways,
errors from the app protocol, writes after close, a context's custom
sslobject_class.  Every test runs on stock asyncio (the authority) and on
ferroloop with the same assertions.
"""

import asyncio
import gc
import logging
import random
import ssl
from asyncio import sslproto

import pytest

from _netutil import loop  # noqa: F401  (pytest fixture: both loops)
from _tlsutil import HOSTNAME, certs  # noqa: F401  (certs is a fixture)

TIMEOUT = 20


@pytest.fixture(autouse=True)
def collect_garbage():
    yield
    gc.collect()


def run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))


class Collector(asyncio.Protocol):
    """Keeps what arrives; `arrived(n)` resolves once n bytes are in."""

    def __init__(self):
        loop = asyncio.get_running_loop()
        self.data = bytearray()
        self.chunks = 0
        self.lost = loop.create_future()
        self.made = loop.create_future()
        self._want = None

    def connection_made(self, transport):
        self.transport = transport
        self.made.set_result(transport)

    def data_received(self, data):
        assert isinstance(data, bytes)
        self.data += data
        self.chunks += 1
        self._check()

    def arrived(self, n):
        self._want = (n, asyncio.get_running_loop().create_future())
        self._check()
        return self._want[1]

    def _check(self):
        if self._want and len(self.data) >= self._want[0] and not self._want[1].done():
            self._want[1].set_result(bytes(self.data))

    def eof_received(self):
        return None

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)


class Echo(Collector):
    def data_received(self, data):
        super().data_received(data)
        self.transport.write(data)


async def tls_pair(certs, server_protocol, client_protocol=Collector, **client_kwargs):
    """A TLS server with one connected client: (server, server_proto, client_transport, client_proto)."""
    loop = asyncio.get_running_loop()
    accepted = []

    def factory():
        proto = server_protocol()
        accepted.append(proto)
        return proto

    server = await loop.create_server(factory, '127.0.0.1', 0, ssl=certs.server_context())
    port = server.sockets[0].getsockname()[1]
    context = client_kwargs.pop('ssl', None) or certs.client_context()
    transport, proto = await loop.create_connection(
        client_protocol, '127.0.0.1', port, ssl=context, server_hostname=HOSTNAME,
        **client_kwargs)
    await accepted[0].made
    return server, accepted[0], transport, proto


async def close_pair(server, transport, proto):
    transport.close()
    await proto.lost
    server.close()
    await server.wait_closed()


def test_writes_of_every_size_and_kind_echo_intact(loop, certs):
    rng = random.Random(7)
    pieces = []
    for i in range(400):
        size = rng.choice([1, 2, 100, 1000, 4096, 16383, 16384, 16385, 70000])
        body = rng.randbytes(size)
        pieces.append([bytes, bytearray, memoryview][i % 3](body))
    expected = b''.join(bytes(p) for p in pieces)

    async def main():
        server, _, transport, proto = await tls_pair(certs, Echo)
        for i in range(0, len(pieces), 4):
            group = pieces[i:i + 4]
            if i % 8:
                transport.writelines(group)
            else:
                for piece in group:
                    transport.write(piece)
        echoed = await proto.arrived(len(expected))
        await close_pair(server, transport, proto)
        return echoed, await proto.lost

    echoed, exc = run(loop, main())
    assert len(echoed) == len(expected)
    assert echoed == expected
    assert exc is None


def test_small_records_sent_together_arrive_in_order(loop, certs):
    # Many records in one TCP read: decrypted and delivered in order, as
    # one or several data_received calls.
    messages = [b'%05d;' % i for i in range(2000)]

    async def main():
        server, server_proto, transport, proto = await tls_pair(certs, Collector)
        for m in messages:
            server_proto.transport.write(m)
        got = await proto.arrived(sum(map(len, messages)))
        await close_pair(server, transport, proto)
        return got, proto.chunks

    got, chunks = run(loop, main())
    assert got == b''.join(messages)
    assert 1 <= chunks <= len(messages)


def test_write_flow_control_pauses_and_resumes_the_app(loop, certs):
    async def main():
        events = []

        class Writer(Collector):
            def pause_writing(self):
                events.append(('pause', self.transport.get_write_buffer_size()))

            def resume_writing(self):
                events.append(('resume', self.transport.get_write_buffer_size()))
                if not self.resumed.done():
                    self.resumed.set_result(None)

        class Stalled(Collector):
            def connection_made(self, transport):
                transport.pause_reading()
                super().connection_made(transport)

        server, server_proto, transport, proto = await tls_pair(
            certs, Stalled, client_protocol=Writer)
        proto.resumed = asyncio.get_running_loop().create_future()
        low, high = transport.get_write_buffer_limits()
        chunk = b'x' * 65536
        total = 0
        while not events:
            transport.write(chunk)
            total += len(chunk)
        paused_at = events[0]
        reading_before = server_proto.transport.is_reading()
        server_proto.transport.resume_reading()
        await proto.resumed
        got = await server_proto.arrived(total)
        final_size = transport.get_write_buffer_size()
        await close_pair(server, transport, proto)
        return paused_at, high, reading_before, events[1][0], len(got) == total, final_size

    paused_at, high, reading_before, second, all_arrived, final_size = run(loop, main())
    assert paused_at[0] == 'pause' and paused_at[1] >= high
    assert reading_before is False
    assert second == 'resume'
    assert all_arrived
    assert final_size == 0


def test_data_received_error_goes_to_the_exception_handler(loop, certs):
    class Boom(Exception):
        pass

    async def main():
        loop = asyncio.get_running_loop()
        contexts = []
        loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

        class Failing(Collector):
            def data_received(self, data):
                raise Boom('bad record')

        server, server_proto, transport, proto = await tls_pair(certs, Failing)
        transport.write(b'trigger')
        server_exc = await server_proto.lost
        client_exc = await proto.lost
        server.close()
        await server.wait_closed()
        return contexts, server_exc, client_exc

    contexts, server_exc, client_exc = run(loop, main())
    assert [c['message'] for c in contexts] == ['Fatal error on SSL protocol']
    assert isinstance(contexts[0]['exception'], Boom)
    assert isinstance(contexts[0]['protocol'], sslproto.SSLProtocol)
    assert isinstance(server_exc, Boom)
    assert client_exc is None or isinstance(client_exc, (ConnectionError, ssl.SSLError))


def test_write_argument_checks(loop, certs):
    async def main():
        server, _, transport, proto = await tls_pair(certs, Echo)
        errors = []
        for bad in ['text', 123, None]:
            try:
                transport.write(bad)
            except TypeError as exc:
                errors.append(str(exc))
        transport.write(b'')
        transport.write(bytearray())
        size = transport.get_write_buffer_size()
        await close_pair(server, transport, proto)
        return errors, size, type(transport).__name__

    errors, size, name = run(loop, main())
    assert errors == [
        'data: expecting a bytes-like instance, got str',
        'data: expecting a bytes-like instance, got int',
        'data: expecting a bytes-like instance, got NoneType',
    ]
    assert size == 0
    assert name == '_SSLProtocolTransport'


def test_writes_after_close_are_dropped_with_asyncio_warning(loop, certs, caplog):
    async def main():
        server, _, transport, proto = await tls_pair(certs, Echo)
        transport.close()
        with caplog.at_level(logging.WARNING, logger='asyncio'):
            for _ in range(7):
                transport.write(b'late')
        await proto.lost
        server.close()
        await server.wait_closed()
        return [r.getMessage() for r in caplog.records if r.name == 'asyncio']

    assert run(loop, main()) == ['SSL connection is closed', 'SSL connection is closed']


def test_custom_sslobject_class_is_used(loop, certs):
    calls = {'read': 0, 'write': 0}

    class CountingSSLObject(ssl.SSLObject):
        def read(self, *args, **kwargs):
            calls['read'] += 1
            return super().read(*args, **kwargs)

        def write(self, data):
            calls['write'] += 1
            return super().write(data)

    async def main():
        context = certs.client_context()
        context.sslobject_class = CountingSSLObject
        server, _, transport, proto = await tls_pair(certs, Echo, ssl=context)
        transport.write(b'a' * 5000)
        got = await proto.arrived(5000)
        await close_pair(server, transport, proto)
        return got

    assert run(loop, main()) == b'a' * 5000
    assert calls['read'] >= 1 and calls['write'] >= 1


def test_classes_extend_the_stock_ones(loop, certs):
    async def main():
        server, server_proto, transport, proto = await tls_pair(certs, Echo)
        result = (isinstance(transport, asyncio.Transport),
                  isinstance(transport, sslproto._SSLProtocolTransport),
                  type(transport._ssl_protocol).__name__,
                  isinstance(transport._ssl_protocol, sslproto.SSLProtocol),
                  isinstance(transport._ssl_protocol, asyncio.BufferedProtocol))
        await close_pair(server, transport, proto)
        return result

    assert run(loop, main()) == (True, True, 'SSLProtocol', True, True)


def test_records_leak_no_python_objects(loop, certs):
    # sys.getallocatedblocks() counts live pymalloc blocks, the small
    # objects (ints, slices, short bytes) a per-record leak would be made of;
    # gc.get_objects() would not see them (they are not GC-tracked).
    import sys

    async def main():
        server, _, transport, proto = await tls_pair(certs, Echo)
        message = b'r' * 1000
        sent = 0

        async def echo_many(n):
            nonlocal sent
            for _ in range(n):
                transport.write(message)
                sent += len(message)
                await proto.arrived(sent)

        await echo_many(300)  # warm-up: buffers, caches, freelists
        gc.collect()
        before = sys.getallocatedblocks()
        await echo_many(3000)
        gc.collect()
        after = sys.getallocatedblocks()
        del proto.data[:]  # the collector keeps everything it received
        await close_pair(server, transport, proto)
        return after - before

    growth = run(loop, main())
    assert growth < 300, f'{growth} blocks more after 3000 records'
