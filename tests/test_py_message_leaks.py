"""Per-message leaks: thousands of messages through each data path must not
leave small Python objects behind.

sys.getallocatedblocks() counts live pymalloc blocks: the ints, slices and
short bytes a per-message leak in native code would be made of, which
gc.get_objects() does not see (they are not GC-tracked).  Each test warms
the path up, then compares the count before and after many more messages.
Both loops, same assertions.
"""

import asyncio
import gc
import socket
import sys

from _netutil import loop  # noqa: F401  (pytest fixture: both loops)

WARMUP = 300
MESSAGES = 3000
ALLOWED_GROWTH = 300  # blocks; a leak of one object per message is 3000+


def blocks_leaked_by(loop, one_message):
    async def main():
        for _ in range(WARMUP):
            await one_message()
        gc.collect()
        before = sys.getallocatedblocks()
        for _ in range(MESSAGES):
            await one_message()
        gc.collect()
        return sys.getallocatedblocks() - before

    return loop.run_until_complete(asyncio.wait_for(main(), 60))


def test_stream_transport_echo(loop):
    async def setup():
        async def handle(reader, writer):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, '127.0.0.1', 0)
        reader, writer = await asyncio.open_connection(
            '127.0.0.1', server.sockets[0].getsockname()[1])
        return server, reader, writer

    server, reader, writer = loop.run_until_complete(setup())

    async def one_message():
        writer.writelines([b'a' * 500, b'b' * 700])
        await writer.drain()
        assert len(await reader.readexactly(1200)) == 1200

    growth = blocks_leaked_by(loop, one_message)

    async def teardown():
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()

    loop.run_until_complete(teardown())
    assert growth < ALLOWED_GROWTH, growth


def test_sock_operations(loop):
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    buf = bytearray(2000)

    async def one_message():
        # Each receive has to wait: the send comes after it is pending.
        recv = loop.create_task(loop.sock_recv(b, 2000))
        await asyncio.sleep(0)
        await loop.sock_sendall(a, b'x' * 1000)
        assert len(await recv) == 1000
        recv_into = loop.create_task(loop.sock_recv_into(a, buf))
        await asyncio.sleep(0)
        await loop.sock_sendall(b, memoryview(b'y' * 1500))
        assert await recv_into == 1500

    try:
        growth = blocks_leaked_by(loop, one_message)
    finally:
        a.close()
        b.close()
    assert growth < ALLOWED_GROWTH, growth


def test_datagram_echo(loop):
    class Echo(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            self.transport.sendto(data, addr)

    class Client(asyncio.DatagramProtocol):
        def __init__(self):
            self.waiter = None

        def datagram_received(self, data, addr):
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(data)

    async def setup():
        server, _ = await loop.create_datagram_endpoint(
            Echo, local_addr=('127.0.0.1', 0))
        client, proto = await loop.create_datagram_endpoint(
            Client, remote_addr=server.get_extra_info('sockname'))
        return server, client, proto

    server, client, proto = loop.run_until_complete(setup())

    async def one_message():
        proto.waiter = loop.create_future()
        client.sendto(b'd' * 700)
        assert await proto.waiter == b'd' * 700

    try:
        growth = blocks_leaked_by(loop, one_message)
    finally:
        client.close()
        server.close()
    assert growth < ALLOWED_GROWTH, growth
