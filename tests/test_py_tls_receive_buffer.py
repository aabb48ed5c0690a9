"""Connection setup costs that are the loop's: the TLS receive buffer and
TCP_NODELAY.

ferroloop's SSLProtocol does not allocate the stock 256 KiB `_ssl_buffer`
(its socket transport reads into the incoming BIO through a shared buffer,
src/tls_read.rs), yet get_buffer() still serves a Python caller as the stock
one does. TCP_NODELAY is set natively for plain `socket.socket`s and through
asyncio's `_set_nodelay` for anything else (src/nodelay.rs); sock_connect
reads the socket's family without the enum conversion. Each test runs on
stock asyncio and on ferroloop with the same assertions where they apply.
"""

import asyncio
import socket
import ssl
from asyncio import sslproto

from _netutil import loop  # noqa: F401  (pytest fixture: both loops)
from _tlsutil import HOSTNAME, certs  # noqa: F401  (certs is a fixture)

TIMEOUT = 20


def run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))


def is_ferroloop(loop):
    return type(loop).__module__.startswith('ferroloop')


class Greeter(asyncio.Protocol):
    """Server side: writes a greeting; echoes; keeps its transport."""

    transports = []

    def connection_made(self, transport):
        self.transports.append(transport)
        transport.write(b'hello')

    def data_received(self, data):
        self.transports[-1].write(data)


class Reader(asyncio.Protocol):
    def __init__(self):
        self.data = bytearray()
        self.waiter = None
        self.lost = asyncio.get_running_loop().create_future()

    def data_received(self, data):
        self.data += data
        if self.waiter and len(self.data) >= self.waiter[0] and not self.waiter[1].done():
            self.waiter[1].set_result(bytes(self.data))

    def arrived(self, n):
        self.waiter = (n, asyncio.get_running_loop().create_future())
        if len(self.data) >= n:
            self.waiter[1].set_result(bytes(self.data))
        return self.waiter[1]

    def connection_lost(self, exc):
        if not self.lost.done():
            self.lost.set_result(exc)


async def connected(certs, *, tls=True, sock=None):
    loop = asyncio.get_running_loop()
    Greeter.transports = []
    server = await loop.create_server(
        Greeter, '127.0.0.1', 0, ssl=certs.server_context() if tls else None)
    port = server.sockets[0].getsockname()[1]
    kwargs = {'ssl': certs.client_context(), 'server_hostname': HOSTNAME} if tls else {}
    if sock is not None:
        await loop.sock_connect(sock, ('127.0.0.1', port))
        kwargs['sock'] = sock
    else:
        kwargs.update(host='127.0.0.1', port=port)
    transport, proto = await loop.create_connection(Reader, **kwargs)
    assert await proto.arrived(5) == b'hello'
    return server, transport, proto


async def closed(server, transport, proto):
    transport.close()
    await proto.lost
    server.close()
    await server.wait_closed()


def test_tls_data_of_every_size_arrives_intact(loop, certs):
    # Reads of every size, up to several TLS records per read, through the
    # incoming BIO.
    sizes = [1, 1000, 16384, 16385, 70000, 300000]
    bodies = [bytes((i * 7 + n) & 0xFF for i in range(n)) for n in sizes]

    async def main():
        server, transport, proto = await connected(certs)
        expected = b'hello'
        for body in bodies:
            transport.write(body)
            expected += body
            assert await proto.arrived(len(expected)) == expected
        await closed(server, transport, proto)
        return await proto.lost

    assert run(loop, main()) is None


def test_get_buffer_serves_a_python_caller_as_stock(loop, certs):
    async def main():
        server, transport, proto = await connected(certs)
        ssl_proto = transport._ssl_protocol
        unused = len(ssl_proto._ssl_buffer)
        instance_max_size = 'max_size' in vars(ssl_proto)
        sizes = (len(ssl_proto.get_buffer(-1)), len(ssl_proto.get_buffer(100)),
                 ssl_proto.max_size)
        await closed(server, transport, proto)
        return unused, instance_max_size, sizes

    unused, instance_max_size, sizes = run(loop, main())
    max_size = sslproto.SSLProtocol.max_size
    assert sizes == (max_size, max_size, max_size)
    assert not instance_max_size
    # The stock SSLProtocol allocates its receive buffer up front; ferroloop's
    # reads without it.
    assert unused == (0 if is_ferroloop(loop) else max_size)


def test_tls_handshake_error_is_the_stock_one(loop, certs):
    # The first read goes through the new path too: an untrusted server
    # certificate fails the handshake with the stock error.
    async def main():
        server = await loop.create_server(
            Greeter, '127.0.0.1', 0, ssl=certs.server_context())
        port = server.sockets[0].getsockname()[1]
        untrusting = ssl.create_default_context()
        try:
            await loop.create_connection(
                Reader, '127.0.0.1', port, ssl=untrusting, server_hostname=HOSTNAME)
        except ssl.SSLCertVerificationError as exc:
            return exc.reason
        finally:
            server.close()
            await server.wait_closed()

    assert run(loop, main()) == 'CERTIFICATE_VERIFY_FAILED'


def nodelay(sock):
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_tcp_nodelay_on_both_ends(loop, certs):
    async def main():
        result = []
        for tls in (False, True):
            server, transport, proto = await connected(certs, tls=tls)
            result.append((nodelay(transport.get_extra_info('socket')),
                           nodelay(Greeter.transports[-1].get_extra_info('socket'))))
            await closed(server, transport, proto)
        return result

    assert run(loop, main()) == [(True, True), (True, True)]


class MySocket(socket.socket):
    """A socket.socket subclass: goes through the stock checks."""


def test_tcp_nodelay_follows_the_stock_rule(loop, certs):
    # asyncio sets TCP_NODELAY only on sockets whose proto is IPPROTO_TCP:
    # a socket made with proto=0 keeps Nagle, on every loop.
    async def main():
        result = []
        for cls, proto in ((socket.socket, 0), (socket.socket, socket.IPPROTO_TCP),
                           (MySocket, 0), (MySocket, socket.IPPROTO_TCP)):
            sock = cls(socket.AF_INET, socket.SOCK_STREAM, proto)
            sock.setblocking(False)
            server, transport, reader = await connected(certs, tls=False, sock=sock)
            result.append(nodelay(sock))
            await closed(server, transport, reader)
        return result

    assert run(loop, main()) == [False, True, False, True]


def test_sock_connect_in_debug_mode(loop, certs):
    loop.set_debug(True)

    async def main():
        server, transport, proto = await connected(certs, tls=False, sock=_plain())
        await closed(server, transport, proto)
        return bytes(proto.data)

    assert run(loop, main()) == b'hello'


def _plain():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    return sock
