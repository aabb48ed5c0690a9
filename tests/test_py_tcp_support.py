"""Shared fixtures and helpers of the test_py_tcp_* / test_py_server_* /
test_py_unix_* modules, and the tests of the transport choice itself.

The `loop` fixture here runs a test once per socket transport class: the
native transport (`_socket_transport.NativeSocketTransport`, the Python
subclass of `_ferroloop.SocketTransport`, when the extension has it) and asyncio's
selector transport that ferroloop falls back to.  Everything above the
transport (connect, servers, streams, sendfile) must work on both.

Other modules import what they need:

    from test_py_tcp_support import loop, Collect  # noqa: F401
"""

import asyncio
import gc
import socket
import weakref

import pytest

import ferroloop
from ferroloop import _ferroloop
from ferroloop import _socket_transport

# Bound on any single await: a safety net against hangs, never a way to
# synchronise.
TIMEOUT = 10.0

TRANSPORTS = {
    'native': getattr(_socket_transport, 'NativeSocketTransport', None),
    'selector': _socket_transport.SelectorSocketTransport,
}


@pytest.fixture(params=sorted(TRANSPORTS))
def loop(request, monkeypatch):
    """A ferroloop loop whose socket transports are of one class."""
    transport_class = TRANSPORTS[request.param]
    if transport_class is None:
        pytest.skip('the extension has no native SocketTransport yet')
    monkeypatch.setattr(_socket_transport, 'SocketTransport', transport_class)
    lp = ferroloop.new_event_loop()
    yield lp
    if not lp.is_closed():
        try:
            lp.run_until_complete(lp.shutdown_default_executor())
        finally:
            lp.close()


def run(loop, coro):
    """Run coro on loop with the safety timeout."""
    return loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))


class Collect(asyncio.Protocol):
    """Collects what it receives; futures for the connection's milestones.

    `echo=True` sends every chunk back.  `until` resolves once that many
    bytes have arrived.
    """

    def __init__(self, loop, *, echo=False, until=None):
        self.echo = echo
        self.transport = None
        self.data = bytearray()
        self.until = until
        self.made = loop.create_future()
        self.got_all = loop.create_future()
        self.eof = loop.create_future()
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.made.set_result(transport)

    def data_received(self, data):
        self.data += data
        if self.echo:
            self.transport.write(data)
        if (self.until is not None and len(self.data) >= self.until and
                not self.got_all.done()):
            self.got_all.set_result(bytes(self.data))

    def eof_received(self):
        self.eof.set_result(None)
        # Returning None closes the transport, as asyncio's default does.

    def connection_lost(self, exc):
        self.lost.set_result(exc)


def closed_port():
    """A loopback port with nothing listening (connects are refused)."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


# -- the transport choice ---------------------------------------------------


def test_native_transport_preferred_when_available():
    assert _socket_transport.SocketTransport is (
        TRANSPORTS['native'] or _socket_transport.SelectorSocketTransport)


def socketpair():
    a, b = socket.socketpair()
    a.setblocking(False)
    return a, b


def test_make_socket_transport_registers_fd_weakly(loop):
    a, b = socketpair()
    with b:
        async def main():
            proto = Collect(loop)
            waiter = loop.create_future()
            transport = loop._make_socket_transport(a, proto, waiter)
            await waiter
            assert proto.made.result() is transport
            assert loop._transports[a.fileno()] is transport
            transport.close()
            await proto.lost
            return weakref.ref(transport)

        ref = run(loop, main())
    # A closed transport that nobody holds leaves the registry.
    gc.collect()
    assert ref() is None
    assert len(loop._transports) == 0


def test_fd_of_an_open_transport_is_refused_to_public_watchers(loop):
    a, b = socketpair()
    with b:
        async def main():
            proto = Collect(loop)
            waiter = loop.create_future()
            transport = loop._make_socket_transport(a, proto, waiter)
            await waiter
            fd = a.fileno()
            for call in (lambda: loop.add_reader(fd, print),
                         lambda: loop.add_writer(a, print),
                         lambda: loop.remove_reader(fd),
                         lambda: loop.remove_writer(a)):
                with pytest.raises(RuntimeError,
                                   match='File descriptor .* is used by '
                                         'transport'):
                    call()
            # sock_* calls that would have to wait are refused too.
            with pytest.raises(RuntimeError, match='is used by transport'):
                await loop.sock_recv(a, 10)
            transport.close()
            # A closing transport no longer owns the fd.
            loop.add_reader(fd, print)
            assert loop.remove_reader(fd)
            await proto.lost

        run(loop, main())


def test_invalid_file_object_for_watchers(loop):
    with pytest.raises(ValueError, match='Invalid file object'):
        loop.add_reader(object(), print)
    with pytest.raises(ValueError, match='Invalid file object'):
        loop.remove_writer('not a file')
