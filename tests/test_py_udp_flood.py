"""UDP under load: a flood into a slow reader, a well-behaved sender into a
receiver that does not read, and many endpoints opened and closed.  The
kernel may drop datagrams (that is UDP); the loop must not crash, lose
track of the endpoint, or hold on to memory.  Each test runs on stock
asyncio and on ferroloop."""

import asyncio
import fcntl
import gc
import socket
import struct
import termios
import time

from _netutil import open_fd_count, record_handler_calls, rss_bytes
from test_py_udp_support import (  # noqa: F401  (loop is a fixture)
    LOCALHOST, Datagrams, close_and_wait, endpoint, loop, peer_socket, run)


FLOOD_DATAGRAMS = 40_000
FLOOD_SIZE = 1400  # below the usual Ethernet MTU, like real UDP traffic
# Far below FLOOD_DATAGRAMS * FLOOD_SIZE (56 MB): the reader holds nothing
# beyond the datagram at hand, the kernel queue is bounded by SO_RCVBUF.
RSS_GROWTH_LIMIT = 24 * 1024 * 1024


def flood_datagram(seq):
    header = struct.pack('!I', seq)
    return header + header[-1:] * (FLOOD_SIZE - 4)


def check_flood_datagram(data):
    """Return the sequence number of an intact flood datagram."""
    assert len(data) == FLOOD_SIZE
    seq = struct.unpack('!I', data[:4])[0]
    assert data == flood_datagram(seq)
    return seq


def pending_bytes(sock):
    """Size of the next queued datagram (0: the receive queue is empty)."""
    return struct.unpack('i', fcntl.ioctl(
        sock.fileno(), termios.FIONREAD, b'\0' * 4))[0]


class SlowReader(Datagrams):
    """Spends a little CPU on every datagram: the sender outpaces it."""

    def __init__(self, loop):
        super().__init__(loop)
        self.sequence = []
        self.arrived = None

    def datagram_received(self, data, addr):
        if data == b'marker':
            self.events.append('marker')
            super().datagram_received(data, addr)
            return
        self.sequence.append(check_flood_datagram(data))
        if self.arrived is not None and not self.arrived.done():
            self.arrived.set_result(None)
        deadline = time.perf_counter() + 20e-6
        while time.perf_counter() < deadline:
            pass

    async def next_flood_datagram(self, loop):
        self.arrived = loop.create_future()
        await self.arrived


def flood(address, count):
    """Blocking sender, run in a thread: as fast as the kernel takes them."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for seq in range(count):
            sender.sendto(flood_datagram(seq), address)


def test_flood_into_a_slow_reader(loop):
    async def main():
        contexts = record_handler_calls(loop)
        transport, protocol = await loop.create_datagram_endpoint(
            lambda: SlowReader(loop), local_addr=(LOCALHOST, 0))
        sock = transport.get_extra_info('socket')
        # A small queue, so that the kernel drops plenty.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        address = transport.get_extra_info('sockname')

        rss_before = rss_bytes()
        await loop.run_in_executor(None, flood, address, FLOOD_DATAGRAMS)
        rss_after = rss_bytes()

        # Read what the kernel kept, then prove the endpoint still works:
        # with the queue empty, a datagram on loopback is not dropped.
        while pending_bytes(sock):
            await protocol.next_flood_datagram(loop)
        with peer_socket() as peer:
            await loop.sock_sendto(peer, b'marker', address)
            assert await protocol.next_datagram() == (b'marker',
                                                      peer.getsockname())

        received = protocol.sequence
        assert 0 < len(received) <= FLOOD_DATAGRAMS
        # Dropped ones leave gaps; loopback does not reorder or duplicate.
        assert received == sorted(set(received))
        assert rss_after - rss_before < RSS_GROWTH_LIMIT
        assert contexts == []
        assert not transport.is_closing()
        assert protocol.received.qsize() == 0
        await close_and_wait(transport, protocol)

    run(loop, main())


def test_well_behaved_sender_keeps_its_buffer_bounded(loop, tmp_path):
    # Sends far more than the stalled Unix receiver can queue, pausing when
    # asked: the transport's buffer never exceeds the high-water mark by
    # more than one datagram, and everything arrives in order.
    path = str(tmp_path / 'receiver.sock')
    total = 2000
    size = 512
    high = 8 * size

    async def main():
        with peer_socket(socket.AF_UNIX, path) as receiver:
            transport, protocol = await endpoint(
                loop, remote_addr=path, family=socket.AF_UNIX)
            transport.set_write_buffer_limits(high=high)

            async def send_all():
                peak = 0
                for seq in range(total):
                    if protocol.paused:
                        protocol.resumed = loop.create_future()
                        await protocol.resumed
                    transport.sendto(struct.pack('!I', seq) * (size // 4))
                    peak = max(peak, transport.get_write_buffer_size())
                return peak

            sender = asyncio.ensure_future(send_all())
            received = []
            for _ in range(total):
                data = await loop.sock_recv(receiver, 65536)
                received.append(struct.unpack('!I', data[:4])[0])
            peak = await sender
            assert received == list(range(total))
            assert high < peak <= high + size
            assert protocol.pause_count > 1
            assert protocol.pause_count == protocol.events.count('resume')
            await close_and_wait(transport, protocol)

    run(loop, main())


def test_many_endpoints_open_and_close_without_leaks(loop):
    async def main():
        fds = open_fd_count()
        for _ in range(3):
            pairs = [await endpoint(loop, local_addr=(LOCALHOST, 0))
                     for _ in range(100)]
            for transport, protocol in pairs:
                transport.close()
            for transport, protocol in pairs:
                assert await protocol.lost is None
            del pairs, transport, protocol
        assert open_fd_count() == fds
        # The fd -> transport registry holds the transports weakly.
        gc.collect()
        assert len(loop._transports) == 0

    run(loop, main())
