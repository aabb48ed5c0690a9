"""TLS over ferroloop's transports: asyncio's SSLProtocol layered on them.

Every test runs on stock asyncio (the authority) and on ferroloop with the
same assertions.  Certificates are made at test time (see _tlsutil).
"""

import asyncio
import gc
import socket
import ssl
import tempfile
import os

import pytest

from _netutil import loop  # noqa: F401  (pytest fixture: both loops)
from _tlsutil import HOSTNAME, certs  # noqa: F401  (certs is a fixture)

TIMEOUT = 10


@pytest.fixture(autouse=True)
def collect_garbage():
    """Close what the test left in reference cycles before the next one.

    A failed handshake's exception references SSLProtocol and its socket
    transport (on the stock loop as well); left to a later gc run, the
    socket would close in the middle of another test that counts fds.
    """
    yield
    gc.collect()



def run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))


async def _echo_handler(reader, writer):
    try:
        while True:
            line = await reader.readline()
            if not line:
                break
            writer.write(line.upper())
            await writer.drain()
    finally:
        writer.close()


# -- streams ------------------------------------------------------------------


def test_streams_echo(loop, certs):
    async def main():
        server = await asyncio.start_server(
            _echo_handler, '127.0.0.1', 0, ssl=certs.server_context())
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await asyncio.open_connection(
                '127.0.0.1', port, ssl=certs.client_context(),
                server_hostname=HOSTNAME)
            ssl_object = writer.get_extra_info('ssl_object')
            info = dict(
                ssl_object=type(ssl_object),
                version=ssl_object.version(),
                peercert_subject=writer.get_extra_info('peercert')['subject'],
                cipher=type(writer.get_extra_info('cipher')),
                compression=writer.get_extra_info('compression'),
                sslcontext=type(writer.get_extra_info('sslcontext')),
                peername=writer.get_extra_info('peername')[1],
                socket=writer.get_extra_info('socket').family,
            )
            payload = b'hello tls\n' * 2000  # several TLS records
            writer.write(payload)
            await writer.drain()
            got = await reader.readexactly(len(payload))
            writer.close()
            await writer.wait_closed()
            return info, got == payload.upper()

    info, echoed = run(loop, main())
    assert echoed
    assert info == dict(
        ssl_object=ssl.SSLObject,
        version=info['version'],
        peercert_subject=((('commonName', HOSTNAME),),),
        cipher=tuple,
        compression=None,
        sslcontext=ssl.SSLContext,
        peername=info['peername'],
        socket=socket.AF_INET,
    )
    assert info['version'].startswith('TLS')


def test_host_is_the_default_server_hostname(loop, certs):
    # create_connection verifies the certificate against host by default.
    async def main():
        server = await asyncio.start_server(
            _echo_handler, '127.0.0.1', 0, ssl=certs.server_context())
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await asyncio.open_connection(
                HOSTNAME, port, ssl=certs.client_context(),
                family=socket.AF_INET)
            writer.write(b'x\n')
            got = await reader.readline()
            writer.close()
            await writer.wait_closed()
            return got

    assert run(loop, main()) == b'X\n'


def test_unix_streams_echo(loop, certs):
    async def main(path):
        server = await asyncio.start_unix_server(
            _echo_handler, path, ssl=certs.server_context())
        async with server:
            reader, writer = await asyncio.open_unix_connection(
                path, ssl=certs.client_context(), server_hostname=HOSTNAME)
            writer.write(b'unix\n')
            got = await reader.readline()
            cert = writer.get_extra_info('peercert')
            writer.close()
            await writer.wait_closed()
            return got, cert['subject']

    with tempfile.TemporaryDirectory() as tmp:
        got, subject = run(loop, main(os.path.join(tmp, 'sock')))
    assert got == b'UNIX\n'
    assert subject == ((('commonName', HOSTNAME),),)


def test_connect_accepted_socket(loop, certs):
    async def main():
        listener = socket.create_server(('127.0.0.1', 0))
        port = listener.getsockname()[1]
        listener.setblocking(False)
        client_task = asyncio.ensure_future(asyncio.open_connection(
            '127.0.0.1', port, ssl=certs.client_context(),
            server_hostname=HOSTNAME))
        conn, _ = await asyncio.get_running_loop().sock_accept(listener)
        listener.close()
        loop = asyncio.get_running_loop()
        received = loop.create_future()

        class Server(asyncio.Protocol):
            def connection_made(self, transport):
                self.transport = transport

            def data_received(self, data):
                self.transport.write(data[::-1])
                received.set_result(data)

        transport, _ = await loop.connect_accepted_socket(
            Server, conn, ssl=certs.server_context())
        reader, writer = await client_task
        writer.write(b'abc')
        got = await reader.readexactly(3)
        assert await received == b'abc'
        server_ssl = transport.get_extra_info('ssl_object')
        writer.close()
        await writer.wait_closed()
        transport.close()
        return got, server_ssl.server_side

    assert run(loop, main()) == (b'cba', True)


def test_ssl_true_uses_the_default_context(loop, certs):
    # ssl=True means ssl.create_default_context(): the test CA is not
    # trusted, so verification fails in the handshake.
    async def main():
        server = await asyncio.start_server(
            _echo_handler, '127.0.0.1', 0, ssl=certs.server_context())
        port = server.sockets[0].getsockname()[1]
        async with server:
            with pytest.raises(ssl.SSLCertVerificationError) as info:
                await asyncio.open_connection('127.0.0.1', port, ssl=True,
                                              server_hostname=HOSTNAME)
            return info.value.verify_message

    assert run(loop, main()) == 'unable to get local issuer certificate'


# -- start_tls ----------------------------------------------------------------


def test_start_tls_in_the_middle_of_a_conversation(loop, certs):
    async def handler(reader, writer):
        assert await reader.readline() == b'STARTTLS\n'
        writer.write(b'OK\n')
        await writer.drain()
        await writer.start_tls(certs.server_context())
        await _echo_handler(reader, writer)

    async def main():
        server = await asyncio.start_server(handler, '127.0.0.1', 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await asyncio.open_connection('127.0.0.1', port)
            assert writer.get_extra_info('ssl_object') is None
            writer.write(b'STARTTLS\n')
            assert await reader.readline() == b'OK\n'
            await writer.start_tls(certs.client_context(),
                                   server_hostname=HOSTNAME)
            ssl_object = writer.get_extra_info('ssl_object')
            writer.write(b'secret\n')
            got = await reader.readline()
            writer.close()
            await writer.wait_closed()
            return got, type(ssl_object)

    assert run(loop, main()) == (b'SECRET\n', ssl.SSLObject)


def test_loop_start_tls_on_protocol_transports(loop, certs):
    async def main():
        loop = asyncio.get_running_loop()
        upgraded = loop.create_future()

        class Server(asyncio.Protocol):
            def connection_made(self, transport):
                self.transport = transport

            def data_received(self, data):
                # Plaintext first; then upgrade and echo over TLS.
                assert data == b'UPGRADE'
                self.transport.write(b'GO')
                task = loop.create_task(loop.start_tls(
                    self.transport, self, certs.server_context(),
                    server_side=True))
                task.add_done_callback(
                    lambda t: upgraded.set_result(t.result()))
                self.data_received = self.tls_data_received

            def tls_data_received(self, data):
                self.transport_tls.write(data * 2)

        server_proto = Server()
        server = await loop.create_server(lambda: server_proto,
                                          '127.0.0.1', 0)
        port = server.sockets[0].getsockname()[1]
        got = asyncio.Queue()

        class Client(asyncio.Protocol):
            def data_received(self, data):
                got.put_nowait(data)

        client = Client()
        transport, _ = await loop.create_connection(lambda: client,
                                                    '127.0.0.1', port)
        transport.write(b'UPGRADE')
        assert await got.get() == b'GO'
        tls_transport = await loop.start_tls(
            transport, client, certs.client_context(),
            server_hostname=HOSTNAME)
        server_proto.transport_tls = await upgraded
        tls_transport.write(b'ab')
        data = b''
        while len(data) < 4:
            data += await got.get()
        result = (data, type(tls_transport).__name__,
                  tls_transport.get_extra_info('peercert')['subject'],
                  server_proto.transport_tls.get_extra_info(
                      'ssl_object').server_side)
        tls_transport.close()
        server.close()
        await server.wait_closed()
        return result

    data, kind, subject, server_side = run(loop, main())
    assert data == b'abab'
    assert kind == '_SSLProtocolTransport'
    assert subject == ((('commonName', HOSTNAME),),)
    assert server_side is True


def _start_tls_error(lp, make_args):
    async def main():
        with pytest.raises(TypeError) as info:
            await lp.start_tls(*make_args())
        return type(info.value), str(info.value).split('<')[0]
    return run(lp, main())


def test_start_tls_argument_errors_match_asyncio(loop):
    stock = asyncio.SelectorEventLoop()
    try:
        for make_args in [
            lambda: (None, None, None),
            lambda: (None, None, 'not a context'),
            lambda: (asyncio.Transport(), asyncio.Protocol(),
                     ssl.create_default_context()),
        ]:
            assert (_start_tls_error(loop, make_args) ==
                    _start_tls_error(stock, make_args))
    finally:
        stock.close()


# -- handshake failures -------------------------------------------------------


async def _handshake_failure(certs, client_ctx, hostname):
    server = await asyncio.start_server(
        _echo_handler, '127.0.0.1', 0, ssl=certs.server_context())
    port = server.sockets[0].getsockname()[1]
    async with server:
        with pytest.raises(ssl.SSLError) as info:
            await asyncio.open_connection(
                '127.0.0.1', port, ssl=client_ctx, server_hostname=hostname)
    return (type(info.value), info.value.reason,
            getattr(info.value, 'verify_message', None))


def test_wrong_hostname_fails_the_handshake(loop, certs):
    result = run(loop, _handshake_failure(
        certs, certs.client_context(), 'wrong.example'))
    assert result == (
        ssl.SSLCertVerificationError, 'CERTIFICATE_VERIFY_FAILED',
        "Hostname mismatch, certificate is not valid for 'wrong.example'.")


def test_untrusted_certificate_fails_the_handshake(loop, certs):
    result = run(loop, _handshake_failure(
        certs, certs.untrusting_client_context(), HOSTNAME))
    assert result == (
        ssl.SSLCertVerificationError, 'CERTIFICATE_VERIFY_FAILED',
        'unable to get local issuer certificate')


def test_plaintext_server_fails_the_handshake(loop, certs):
    # The server answers the ClientHello with plaintext.
    async def handler(reader, writer):
        writer.write(b'HTTP/1.0 400 Bad Request\r\n\r\n' * 10)
        await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(handler, '127.0.0.1', 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            with pytest.raises(ssl.SSLError) as info:
                await asyncio.open_connection(
                    '127.0.0.1', port, ssl=certs.client_context(),
                    server_hostname=HOSTNAME)
        return type(info.value), info.value.reason

    assert run(loop, main()) == (ssl.SSLError, 'WRONG_VERSION_NUMBER')


def test_handshake_timeout(loop, certs):
    # A peer that accepts TCP but never answers the ClientHello.
    async def main():
        listener = socket.create_server(('127.0.0.1', 0))
        port = listener.getsockname()[1]
        try:
            loop = asyncio.get_running_loop()
            start = loop.time()
            with pytest.raises(ConnectionAbortedError) as info:
                await loop.create_connection(
                    asyncio.Protocol, '127.0.0.1', port,
                    ssl=certs.client_context(), server_hostname=HOSTNAME,
                    ssl_handshake_timeout=0.2)
            return str(info.value), loop.time() - start
        finally:
            listener.close()

    message, elapsed = run(loop, main())
    assert message == ('SSL handshake is taking longer than 0.2 seconds: '
                       'aborting the connection')
    assert elapsed < 5


def test_server_handshake_timeout_closes_the_connection(loop, certs):
    # The server gives up on a client that never sends its ClientHello.
    async def main():
        server = await asyncio.start_server(
            _echo_handler, '127.0.0.1', 0, ssl=certs.server_context(),
            ssl_handshake_timeout=0.2)
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await asyncio.open_connection('127.0.0.1', port)
            data = await reader.read()  # EOF once the server aborts
            writer.close()
            await writer.wait_closed()
            return data

    assert run(loop, main()) == b''


# -- protocols over TLS -------------------------------------------------------


def test_buffered_protocol_over_tls(loop, certs):
    async def main():
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        payload = os.urandom(300_000)

        async def handler(reader, writer):
            writer.write(payload)
            await writer.drain()
            writer.close()

        class Buffered(asyncio.BufferedProtocol):
            def __init__(self):
                self.buf = bytearray(1000)
                self.chunks = []
                self.calls = 0

            def get_buffer(self, sizehint):
                # A memoryview: SSLProtocol fills the buffer by slices, and a
                # bytearray slice would be a copy.
                return memoryview(self.buf)

            def buffer_updated(self, nbytes):
                self.calls += 1
                self.chunks.append(bytes(self.buf[:nbytes]))

            def eof_received(self):
                return None

            def connection_lost(self, exc):
                done.set_result(exc)

        server = await asyncio.start_server(
            handler, '127.0.0.1', 0, ssl=certs.server_context())
        port = server.sockets[0].getsockname()[1]
        async with server:
            proto = Buffered()
            transport, _ = await loop.create_connection(
                lambda: proto, '127.0.0.1', port,
                ssl=certs.client_context(), server_hostname=HOSTNAME)
            assert await done is None
        return b''.join(proto.chunks) == payload, proto.calls >= 300

    assert run(loop, main()) == (True, True)


def test_close_sends_close_notify_and_peer_sees_eof(loop, certs):
    async def main():
        loop = asyncio.get_running_loop()
        events = []
        lost = loop.create_future()

        class Server(asyncio.Protocol):
            def connection_made(self, transport):
                events.append('made')

            def data_received(self, data):
                events.append(data)

            def eof_received(self):
                events.append('eof')

            def connection_lost(self, exc):
                events.append(('lost', exc))
                lost.set_result(None)

        server = await loop.create_server(
            Server, '127.0.0.1', 0, ssl=certs.server_context())
        port = server.sockets[0].getsockname()[1]
        transport, _ = await loop.create_connection(
            asyncio.Protocol, '127.0.0.1', port,
            ssl=certs.client_context(), server_hostname=HOSTNAME)
        transport.write(b'bye')
        transport.close()
        await lost
        server.close()
        await server.wait_closed()
        return events

    assert run(loop, main()) == ['made', b'bye', 'eof', ('lost', None)]


# -- argument checks ----------------------------------------------------------


ARG_ERRORS = [
    # ssl=True, host given: the checks pass and connecting is refused.
    ('create_connection', dict(host='127.0.0.1', port=1, ssl=True)),
    ('create_connection', dict(port=1, ssl='CTX')),
    ('create_server', dict(host='127.0.0.1', port=0, ssl=True)),
    ('create_unix_connection', dict(path='/x', ssl='CTX')),
    ('create_unix_server', dict(path='/x', ssl=True)),
]


@pytest.mark.parametrize('method,kwargs', ARG_ERRORS,
                         ids=lambda v: v if isinstance(v, str) else
                         ','.join(v))
def test_ssl_argument_errors_match_asyncio(method, kwargs):
    # Only the checks run: every call here fails before connecting.
    import ferroloop
    results = {}
    for name, factory in [('asyncio', asyncio.new_event_loop),
                          ('ferroloop', ferroloop.new_event_loop)]:
        lp = factory()
        try:
            call = {k: (ssl.create_default_context() if v == 'CTX' else v)
                    for k, v in kwargs.items()}
            try:
                lp.run_until_complete(getattr(lp, method)(
                    asyncio.Protocol, **call))
            except Exception as exc:
                results[name] = (type(exc), str(exc))
            else:
                results[name] = None
        finally:
            lp.close()
    assert results['ferroloop'] == results['asyncio']
