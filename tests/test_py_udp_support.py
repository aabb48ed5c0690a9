"""Shared fixtures and helpers of the test_py_udp_* modules, and the tests of
the datagram transport choice itself.

Every UDP test runs once per loop: stock asyncio, which is the behavioural
authority, and ferroloop (with whatever datagram transport class ferroloop
chooses; once the extension has a native one, also with the selector
fallback).  The assertions use asyncio's public API only, so a test that
passes on stock and fails on ferroloop points at a difference in ferroloop.

Other modules import what they need:

    from test_py_udp_support import loop, Datagrams, run  # noqa: F401

Peers are plain non-blocking sockets, read with loop.sock_recv /
loop.sock_recvfrom so that the loop keeps running while the test waits.
"""

import asyncio
import socket

import pytest

import ferroloop
from ferroloop import _datagram_transport
from ferroloop import _ferroloop

from _netutil import close_loop

# Bound on any single await: a safety net against hangs, never a way to
# synchronise.
TIMEOUT = 10.0

LOCALHOST = '127.0.0.1'

# 3.13 changed the stock datagram transport (ferroloop's follows): each
# queued datagram counts this many header bytes in get_write_buffer_size()
# (0 before), and zero-length datagrams are sent instead of dropped.
HEADER = getattr(asyncio.selector_events
                 ._SelectorDatagramTransport, '_header_size', 0)
SENDS_EMPTY = HEADER > 0

NATIVE_TRANSPORT = getattr(_ferroloop, 'DatagramTransport', None)

# loop kind -> (factory, datagram transport class to force on ferroloop, or
# None to keep ferroloop's own choice)
LOOP_KINDS = {
    'asyncio': (asyncio.new_event_loop, None),
    'ferroloop': (ferroloop.new_event_loop, None),
}
if NATIVE_TRANSPORT is not None:
    # The fallback must keep working until it is deleted.
    LOOP_KINDS['ferroloop-selector'] = (
        ferroloop.new_event_loop,
        _datagram_transport.SelectorDatagramTransport)


@pytest.fixture(params=sorted(LOOP_KINDS))
def loop(request, monkeypatch):
    """A fresh loop of each kind: stock asyncio, then ferroloop."""
    factory, transport_class = LOOP_KINDS[request.param]
    if transport_class is not None:
        monkeypatch.setattr(_datagram_transport, 'DatagramTransport',
                            transport_class)
    lp = factory()
    yield lp
    close_loop(lp)


def run(loop, coro):
    """Run coro on loop with the safety timeout."""
    return loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))


def is_ferroloop(loop):
    return isinstance(loop, ferroloop.Loop)


class Datagrams(asyncio.DatagramProtocol):
    """Records every protocol callback; queues and futures to await them.

    `events` holds callback names in order ('made', 'datagram', 'error',
    'pause', 'resume', 'lost').  `echo=True` sends every datagram back to
    its sender.  `paused` follows pause_writing/resume_writing, so a test
    can act as a well-behaved sender.
    """

    def __init__(self, loop, *, echo=False):
        self.echo = echo
        self.transport = None
        self.events = []
        self.received = asyncio.Queue()
        self.errors = asyncio.Queue()
        self.made = loop.create_future()
        self.lost = loop.create_future()
        self.paused = False
        self.pause_count = 0
        self.resumed = loop.create_future()

    def connection_made(self, transport):
        self.events.append('made')
        self.transport = transport
        self.made.set_result(transport)

    def datagram_received(self, data, addr):
        self.events.append('datagram')
        self.received.put_nowait((data, addr))
        if self.echo:
            self.transport.sendto(data, addr)

    def error_received(self, exc):
        self.events.append('error')
        self.errors.put_nowait(exc)

    def pause_writing(self):
        self.events.append('pause')
        self.paused = True
        self.pause_count += 1

    def resume_writing(self):
        self.events.append('resume')
        self.paused = False
        if not self.resumed.done():
            self.resumed.set_result(None)

    def connection_lost(self, exc):
        self.events.append('lost')
        self.lost.set_result(exc)

    async def next_datagram(self):
        return await self.received.get()

    async def next_error(self):
        return await self.errors.get()


async def endpoint(loop, *, echo=False, **kwargs):
    """create_datagram_endpoint with a Datagrams protocol."""
    return await loop.create_datagram_endpoint(
        lambda: Datagrams(loop, echo=echo), **kwargs)


async def close_and_wait(transport, protocol):
    transport.close()
    return await protocol.lost


def free_udp_port(host=LOCALHOST):
    """A port with nothing bound to it (for ECONNREFUSED): bound, read and
    released again."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def peer_socket(family=socket.AF_INET, address=(LOCALHOST, 0)):
    """A plain non-blocking datagram socket bound to address."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind(address)
    return sock


def call_outcome(func, *args, **kwargs):
    """(exception type, message) raised by func, or ('ok', result)."""
    try:
        return 'ok', func(*args, **kwargs)
    except Exception as exc:
        return type(exc), str(exc)


async def async_outcome(coro):
    try:
        return 'ok', await coro
    except Exception as exc:
        return type(exc), str(exc)


def without_class_name(text):
    """A transport repr without its class name: the class is the one thing
    that may differ between the loops."""
    assert text.startswith('<') and text.endswith('>'), text
    return text[1:-1].split(' ', 1)[1]


# --------------------------------------------------------------------------
# The transport choice itself


def test_datagram_transport_is_chosen_in_one_place():
    fallback = _datagram_transport.SelectorDatagramTransport
    expected = NATIVE_TRANSPORT or fallback
    assert _datagram_transport.DatagramTransport is expected


def test_loop_uses_the_chosen_transport_class(monkeypatch):
    class Marked(_datagram_transport.SelectorDatagramTransport):
        pass

    monkeypatch.setattr(_datagram_transport, 'DatagramTransport', Marked)
    lp = ferroloop.new_event_loop()
    try:
        async def main():
            transport, protocol = await endpoint(
                lp, local_addr=(LOCALHOST, 0))
            assert type(transport) is Marked
            # Registered as the fd's owner whatever the class.
            fd = transport.get_extra_info('socket').fileno()
            assert lp._transports[fd] is transport
            await close_and_wait(transport, protocol)

        run(lp, main())
    finally:
        close_loop(lp)


def test_selector_fallback_repr_needs_no_selector(monkeypatch):
    fallback = _datagram_transport.SelectorDatagramTransport
    monkeypatch.setattr(_datagram_transport, 'DatagramTransport', fallback)
    lp = ferroloop.new_event_loop()
    try:
        assert not hasattr(lp, '_selector')

        async def main():
            transport, protocol = await lp.create_datagram_endpoint(
                lambda: Datagrams(lp), local_addr=(LOCALHOST, 0))
            fd = transport.get_extra_info('socket').fileno()
            assert repr(transport) == (
                f'<SelectorDatagramTransport fd={fd} read=polling '
                f'write=<idle, bufsize=0>>')
            transport.pause_reading()
            assert repr(transport) == (
                f'<SelectorDatagramTransport fd={fd} read=idle '
                f'write=<idle, bufsize=0>>')
            transport.close()
            assert repr(transport) == (
                f'<SelectorDatagramTransport closing fd={fd} read=idle '
                f'write=<idle, bufsize=0>>')
            await protocol.lost
            assert repr(transport) == (
                f'<SelectorDatagramTransport closed fd={fd}>')

        run(lp, main())
    finally:
        close_loop(lp)
