"""Datagrams already queued in the kernel reach a DatagramProtocol one per
readiness callback, as in the stock loop, wherever that is observable:
callbacks the protocol schedules run before the next datagram, and
pause_reading(), close(), loop.stop(), remove_reader() or add_reader()
from datagram_received() stop further deliveries at once. (ferroloop
delivers the next queued datagram without a poll in between only when the
stock loop would run nothing else first.)

Every test runs on stock asyncio and on ferroloop with the same
assertions. The datagrams are sent (over loopback, so queued at once)
before the loop runs; no test sleeps to synchronise.
"""

import asyncio
import socket

import pytest

from _netutil import SAFETY_TIMEOUT, loop  # noqa: F401  (pytest fixture)

COUNT = 40


class Recorder(asyncio.DatagramProtocol):
    def __init__(self, loop, on_datagram=None):
        self.loop = loop
        self.events = []
        self.on_datagram = on_datagram
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.events.append(data)
        if self.on_datagram is not None:
            self.on_datagram(self, data)


def open_endpoint(loop, on_datagram=None):
    async def make():
        return await loop.create_datagram_endpoint(
            lambda: Recorder(loop, on_datagram), local_addr=('127.0.0.1', 0))
    transport, protocol = loop.run_until_complete(asyncio.wait_for(make(), SAFETY_TIMEOUT))
    return transport, protocol


def send_burst(transport, count=COUNT):
    """count datagrams b'0', b'1', ... queued on the transport's socket."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(count):
            s.sendto(b'%d' % i, transport.get_extra_info('sockname'))


def run_until(loop, predicate):
    async def wait():
        while not predicate():
            await asyncio.sleep(0)
    loop.run_until_complete(asyncio.wait_for(wait(), SAFETY_TIMEOUT))


def spin(loop, n=20):
    async def go():
        for _ in range(n):
            await asyncio.sleep(0)
    loop.run_until_complete(go())


def close(loop, transport):
    transport.close()
    spin(loop, 3)


def test_every_queued_datagram_arrives_in_order(loop):
    transport, protocol = open_endpoint(loop)
    send_burst(transport)
    run_until(loop, lambda: len(protocol.events) == COUNT)
    assert protocol.events == [b'%d' % i for i in range(COUNT)]
    close(loop, transport)


def test_callbacks_scheduled_by_the_protocol_run_before_the_next_datagram(loop):
    def schedule(protocol, data):
        protocol.loop.call_soon(protocol.events.append, b'after ' + data)

    transport, protocol = open_endpoint(loop, schedule)
    send_burst(transport, 10)
    run_until(loop, lambda: len(protocol.events) == 20)
    expected = []
    for i in range(10):
        expected += [b'%d' % i, b'after %d' % i]
    assert protocol.events == expected
    close(loop, transport)


def test_a_callback_queued_before_runs_before_the_second_datagram(loop):
    transport, protocol = open_endpoint(loop)
    send_burst(transport, 5)
    # Queued before the datagrams are read: the stock loop runs it before
    # the reader's second call at the latest.
    loop.call_soon(protocol.events.append, b'early')
    run_until(loop, lambda: len(protocol.events) == 6)
    assert protocol.events.index(b'early') <= 1
    close(loop, transport)


@pytest.mark.parametrize('action', ['pause_reading', 'close', 'remove_reader', 'add_reader'])
def test_stopping_reads_from_datagram_received_takes_effect_at_once(loop, action):
    other = []

    def stop_reading(protocol, data):
        if data != b'0':
            return
        transport = protocol.transport
        if action == 'pause_reading':
            transport.pause_reading()
        elif action == 'close':
            transport.close()
        elif action == 'remove_reader':
            # The loop's private spellings: the public ones refuse a
            # transport's fd.
            assert protocol.loop._remove_reader(fd)
        else:
            protocol.loop._add_reader(
                fd, lambda: other.append(1) or protocol.loop._remove_reader(fd))

    transport, protocol = open_endpoint(loop, stop_reading)
    fd = transport.get_extra_info('socket').fileno()
    send_burst(transport, 5)
    run_until(loop, lambda: protocol.events)
    spin(loop)
    assert protocol.events == [b'0']
    if action == 'add_reader':
        assert other == [1]  # the new reader was called instead
    if action == 'pause_reading':
        transport.resume_reading()
        run_until(loop, lambda: len(protocol.events) == 5)
        assert protocol.events == [b'%d' % i for i in range(5)]
    if not transport.is_closing():
        close(loop, transport)


def test_loop_stop_from_datagram_received_leaves_the_rest_queued(loop):
    def stop(protocol, data):
        protocol.loop.stop()

    transport, protocol = open_endpoint(loop, stop)
    send_burst(transport, 5)
    sock = transport.get_extra_info('socket')
    # Wait until all five are queued (the loopback delivers them at once).
    for _ in range(3):
        loop.run_forever()
        assert len(protocol.events) == _ + 1
    assert protocol.events == [b'0', b'1', b'2']
    close(loop, transport)
    assert sock.fileno() == -1
