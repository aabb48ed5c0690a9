"""Large socket reads received straight into the `bytes` for data_received
(src/read_into_bytes.rs).

After a large read (>= 32 KiB) a socket transport asks the kernel how many
bytes are queued and receives them into a fresh `bytes` of that size instead
of copying them out of the shared read buffer. What the protocol sees must
not change: each scenario runs on the stock loop (the authority) and on
ferroloop, asserts the expected outcome and that both loops agree.

The peer is the other end of a `socket.socketpair()` driven with blocking
calls: a message is fully queued before the loop reads it, so both loops
receive it in one read (no timing).
"""

import asyncio
import gc
import socket

import ferroloop

TIMEOUT = 10
LARGE = 100 * 1024

LOOPS = {
    'asyncio': asyncio.new_event_loop,
    'ferroloop': ferroloop.new_event_loop,
}


def message(size, salt):
    return bytes((i * 7 + salt) % 251 for i in range(size))


def run_on_both(scenario):
    """Runs `scenario(a, b, errors)` on each loop; returns its result."""
    results = {}
    for name, factory in LOOPS.items():
        loop = factory()
        errors = []
        loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
        a, b = socket.socketpair()
        a.setblocking(False)
        b.settimeout(TIMEOUT)
        try:
            result = loop.run_until_complete(
                asyncio.wait_for(scenario(a, b, errors), TIMEOUT))
        finally:
            b.close()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()
            gc.collect()
        results[name] = result
    assert results['ferroloop'] == results['asyncio']
    return results['asyncio']


class Recorder(asyncio.Protocol):
    """Records every callback; `pause_at` pauses reading inside
    data_received once that many bytes have arrived."""

    def __init__(self, pause_at=None):
        self.events = []
        self.data = bytearray()
        self.pause_at = pause_at
        self.lost = None
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.lost = asyncio.get_running_loop().create_future()

    def data_received(self, data):
        self.events.append(('data', type(data).__name__, len(data)))
        self.data += data
        if self.pause_at is not None and len(self.data) >= self.pause_at:
            self.pause_at = None
            self.transport.pause_reading()
            self.events.append(('paused', self.transport.is_reading()))

    def eof_received(self):
        self.events.append(('eof',))

    def connection_lost(self, exc):
        self.events.append(('lost', exc))
        self.lost.set_result(None)


async def until(predicate):
    """Lets the loop run until `predicate()` holds (the queued read happens
    within an iteration or two; the scenario's timeout bounds it)."""
    while not predicate():
        await asyncio.sleep(0)


async def connect(sock, protocol):
    loop = asyncio.get_running_loop()
    transport, _ = await loop.connect_accepted_socket(lambda: protocol, sock)
    return transport


def describe(errors):
    return [(ctx['message'], type(ctx.get('exception')).__name__) for ctx in errors]


def test_large_and_small_messages_arrive_exactly():
    sizes = [LARGE, LARGE, 1024, 1, 1024, 40 * 1024, 33 * 1024, 31 * 1024,
             LARGE, 10, LARGE, 150 * 1024, 64]

    async def scenario(a, b, errors):
        protocol = Recorder()
        transport = await connect(a, protocol)
        sent = bytearray()
        for salt, size in enumerate(sizes):
            payload = message(size, salt)
            b.sendall(payload)
            sent += payload
            await until(lambda: len(protocol.data) == len(sent))
            assert protocol.data == sent
        transport.close()
        await protocol.lost
        return protocol.events, describe(errors)

    events, errors = run_on_both(scenario)
    assert events == [('data', 'bytes', size) for size in sizes] + [('lost', None)]
    assert errors == []


def test_short_read():
    """A Unix stream socket's recv stops after a message that carried file
    descriptors, so fewer bytes come than the queued count announced: the
    `bytes` is shrunk to what came (the descriptors are dropped, as a plain
    recv drops them)."""
    async def scenario(a, b, errors):
        protocol = Recorder()
        transport = await connect(a, protocol)
        first = message(LARGE, 1)
        b.sendall(first)
        await until(lambda: len(protocol.data) == len(first))
        before, after = message(40000, 2), message(30000, 3)
        with open(__file__, 'rb') as passed:
            socket.send_fds(b, [before], [passed.fileno()])
        b.sendall(after)
        await until(lambda: len(protocol.data) == len(first + before + after))
        content = protocol.data == first + before + after
        transport.close()
        await protocol.lost
        return protocol.events, content, describe(errors)

    events, content, errors = run_on_both(scenario)
    # The split is the kernel's (the message with descriptors may itself be
    # cut); both loops see the same one.
    assert events[0] == ('data', 'bytes', LARGE) and events[-1] == ('lost', None)
    tail = events[1:-1]
    assert len(tail) >= 2 and all(kind == 'data' and t == 'bytes' for kind, t, _ in tail)
    assert sum(n for _, _, n in tail) == 70000
    assert content and errors == []


def test_eof_right_after_a_large_message():
    async def scenario(a, b, errors):
        protocol = Recorder()
        await connect(a, protocol)
        first, last = message(LARGE, 4), message(LARGE, 5)
        b.sendall(first)
        await until(lambda: len(protocol.data) == len(first))
        b.sendall(last)
        b.shutdown(socket.SHUT_WR)
        await protocol.lost
        return protocol.events, protocol.data == first + last, describe(errors)

    assert run_on_both(scenario) == (
        [('data', 'bytes', LARGE), ('data', 'bytes', LARGE), ('eof',),
         ('lost', None)], True, [])


def test_pause_reading_inside_data_received_of_a_large_read():
    async def scenario(a, b, errors):
        protocol = Recorder(pause_at=2 * LARGE)
        transport = await connect(a, protocol)
        b.sendall(message(LARGE, 6))
        await until(lambda: len(protocol.data) == LARGE)
        b.sendall(message(LARGE, 7))
        await until(lambda: not transport.is_reading())
        b.sendall(message(1024, 8))
        for _ in range(5):
            await asyncio.sleep(0)
        while_paused = len(protocol.data)
        transport.resume_reading()
        await until(lambda: len(protocol.data) == 2 * LARGE + 1024)
        content = protocol.data == message(LARGE, 6) + message(LARGE, 7) + message(1024, 8)
        transport.close()
        await protocol.lost
        return protocol.events, while_paused, content, describe(errors)

    assert run_on_both(scenario) == (
        [('data', 'bytes', LARGE), ('data', 'bytes', LARGE), ('paused', False),
         ('data', 'bytes', 1024), ('lost', None)], 2 * LARGE, True, [])


def test_buffered_protocol_is_unaffected():
    class Buffered(asyncio.BufferedProtocol):
        def __init__(self):
            self.buffer = bytearray(256 * 1024)
            self.events = []
            self.data = bytearray()
            self.lost = None

        def connection_made(self, transport):
            self.transport = transport
            self.lost = asyncio.get_running_loop().create_future()

        def get_buffer(self, sizehint):
            self.events.append(('get_buffer', sizehint))
            return self.buffer

        def buffer_updated(self, nbytes):
            self.events.append(('updated', nbytes))
            self.data += self.buffer[:nbytes]

        def eof_received(self):
            self.events.append(('eof',))

        def connection_lost(self, exc):
            self.events.append(('lost', exc))
            self.lost.set_result(None)

    async def scenario(a, b, errors):
        protocol = Buffered()
        await connect(a, protocol)
        sent = bytearray()
        for salt, size in enumerate((LARGE, LARGE, 1024)):
            payload = message(size, salt)
            b.sendall(payload)
            sent += payload
            await until(lambda: len(protocol.data) == len(sent))
        b.shutdown(socket.SHUT_WR)
        await protocol.lost
        return protocol.events, protocol.data == sent, describe(errors)

    events, content, errors = run_on_both(scenario)
    assert [e for e in events if e[0] != 'get_buffer'] == [
        ('updated', LARGE), ('updated', LARGE), ('updated', 1024), ('eof',),
        ('lost', None)]
    assert content and errors == []


# -- loop.sock_recv -------------------------------------------------------------


def test_sock_recv_large_and_small_reads():
    """sock_recv(n) past the probe size: after a large read the queued bytes
    go straight into a `bytes`; results are what `sock.recv(n)` gives."""
    sizes = [LARGE, LARGE, 1024, 40 * 1024, 10, 70 * 1024, 65536, 5]

    async def scenario(a, b, errors):
        loop = asyncio.get_running_loop()
        got = []
        for salt, size in enumerate(sizes):
            payload = message(size, salt)
            b.sendall(payload)
            received = bytearray()
            while len(received) < size:
                data = await loop.sock_recv(a, 65536)
                got.append((type(data).__name__, len(data)))
                received += data
            assert received == payload
        b.shutdown(socket.SHUT_WR)
        got.append(await loop.sock_recv(a, 65536))
        a.close()
        return got, describe(errors)

    got, errors = run_on_both(scenario)
    assert got[:3] == [('bytes', 65536), ('bytes', LARGE - 65536), ('bytes', 65536)]
    assert got[-1] == b'' and errors == []


def test_sock_recv_datagrams_after_large_stream_reads_on_the_same_fd():
    """A stream socket's fd, reused by a datagram socket, still receives
    whole datagrams (the fd's hint is for stream sockets only), and
    datagrams past the 16 KiB probe size come whole (one recv of n, as
    `sock.recv(n)`; the probe used to cut them and read on into the next)."""
    async def scenario(a, b, errors):
        loop = asyncio.get_running_loop()
        b.sendall(message(LARGE, 1))
        first = await loop.sock_recv(a, 200 * 1024)
        fd = a.fileno()
        a.close()
        c, d = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            c.setblocking(False)
            datagrams = [message(40 * 1024, 2), message(100, 3), message(50 * 1024, 4)]
            for datagram in datagrams:
                d.send(datagram)
            got = [await loop.sock_recv(c, 65536) for _ in datagrams]
            return (len(first), c.fileno() == fd or 'fd not reused',
                    got == datagrams, describe(errors))
        finally:
            c.close()
            d.close()

    assert run_on_both(scenario) == (LARGE, True, True, [])
