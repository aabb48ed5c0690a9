"""Large reads received straight into a stock StreamReader's buffer
(src/stream_direct.rs).

After a read of at least 32 KiB on a transport, ferroloop asks the kernel
how much is queued and, when the reader's buffer is empty, grows it as
``extend`` would and receives into it; a short read, end of stream, an
error or any unmet precondition ends as the copying path would. Each
scenario runs on the stock loop and on ferroloop (``run_on_both`` from
test_stream_delivery) and asserts that both agree: contents, lengths,
``__alloc__()``, the ``_paused`` flags and the transport's reading state.

The first message of each scenario is large, so the reads that follow take
the new path on ferroloop.
"""

import array
import asyncio
import socket
import weakref

import test_stream_delivery as base

LARGE = 40 * 1024  # over the 32 KiB after which the next read asks


def message(size, seed):
    return bytes((i * 31 + seed) % 251 for i in range(size))


async def prime(reader, peer):
    """One large read, drained: the transport's next read asks the kernel."""
    first = message(LARGE, 1)
    peer.sendall(first)
    return await reader.readexactly(LARGE) == first


def buffer_state(reader, buffer, expected):
    return (reader._buffer is buffer, len(buffer), buffer.__alloc__(),
            bytes(buffer) == expected)


def test_large_messages_land_in_the_empty_buffer_as_extend_leaves_it():
    async def scenario(a, b, errors):
        reader, writer = await asyncio.open_connection(sock=a, limit=1 << 20)
        primed = await prime(reader, b)
        states = []
        for seed, size in enumerate((100 * 1024, 64 * 1024, 1000, 200 * 1024)):
            data = message(size, seed)
            buffer = reader._buffer
            b.sendall(data)
            await base.wait_for_effect(lambda: len(reader._buffer) == size)
            states.append(buffer_state(reader, buffer, data))
            states.append(await reader.readexactly(size) == data)
        writer.close()
        await writer.wait_closed()
        return primed, states, base.describe_errors(errors)

    primed, states, errors = base.run_on_both(scenario)
    assert primed and errors == []
    assert all(s[0] and s[3] for s in states[::2]) and all(states[1::2])


def test_short_read_leaves_the_stock_allocation():
    """A Unix-socket read stops after a segment that carries a file
    descriptor while FIONREAD counts what follows too, so ferroloop gets
    fewer bytes than it grew the buffer for. The limit pauses reading after
    that read, so the buffer shows what the short read left."""
    first, second = message(LARGE, 2), message(20 * 1024, 3)

    async def scenario(a, b, errors):
        reader, writer = await asyncio.open_connection(sock=a, limit=16 * 1024)
        primed = await prime(reader, b)
        buffer = reader._buffer
        with open(__file__, 'rb') as passed:
            b.sendmsg([first], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                 array.array('i', [passed.fileno()]))])
        b.sendall(second)
        await base.wait_for_effect(lambda: reader._paused)
        # The segment boundary is the kernel's (all of `first` or less).
        short = buffer_state(reader, buffer, first[:len(buffer)])
        got = await reader.readexactly(len(first) + len(second))
        writer.close()
        await writer.wait_closed()
        return (primed, short, got == first + second,
                base.describe_errors(errors))

    primed, short, got, errors = base.run_on_both(scenario)
    assert (primed, got, errors) == (True, True, [])
    assert short[0] and 0 < short[1] <= LARGE and short[3]


def test_eof_right_after_a_large_message():
    size = 100 * 1024

    async def scenario(a, b, errors):
        reader, writer = await asyncio.open_connection(sock=a, limit=1 << 20)
        primed = await prime(reader, b)
        data = message(size, 4)
        buffer = reader._buffer
        b.sendall(data)
        b.shutdown(socket.SHUT_WR)
        got = await reader.readexactly(size) == data
        tail = await reader.read()
        state = (reader.at_eof(), len(buffer), buffer.__alloc__())
        writer.close()
        await writer.wait_closed()
        return primed, got, tail, state, base.describe_errors(errors)

    assert base.run_on_both(scenario)[:3] == (True, True, b'')


def test_pause_and_resume_at_the_limit():
    size = 100 * 1024

    async def scenario(a, b, errors):
        reader, writer = await asyncio.open_connection(sock=a, limit=16 * 1024)
        transport = writer.transport
        primed = await prime(reader, b)
        data = message(size, 5)
        b.sendall(data)
        first = await reader.readexactly(10)
        paused = (reader._paused, transport.is_reading(), len(reader._buffer))
        rest = await reader.readexactly(size - 10)
        resumed = (reader._paused, transport.is_reading(), len(reader._buffer))
        writer.close()
        await writer.wait_closed()
        return (primed, first + rest == data, paused, resumed,
                base.describe_errors(errors))

    assert base.run_on_both(scenario) == (
        True, True, (True, False, size - 10), (False, True, 0), [])


def test_large_message_into_a_buffer_that_is_not_empty():
    size = 100 * 1024

    async def scenario(a, b, errors):
        reader, writer = await asyncio.open_connection(sock=a, limit=1 << 20)
        primed = await prime(reader, b)
        head, data = message(LARGE, 6), message(size, 7)
        b.sendall(head)
        start = await reader.readexactly(10)
        buffer = reader._buffer
        b.sendall(data)
        await base.wait_for_effect(
            lambda: len(reader._buffer) == LARGE - 10 + size)
        state = buffer_state(reader, buffer, head[10:] + data)
        got = await reader.readexactly(LARGE - 10 + size)
        writer.close()
        await writer.wait_closed()
        return (primed, start + got == head + data, state,
                base.describe_errors(errors))

    primed, got, state, errors = base.run_on_both(scenario)
    assert (primed, got, errors) == (True, True, []) and state[0] and state[3]


def test_feed_data_patched_after_large_reads_gets_the_bytes():
    size = 100 * 1024

    async def scenario(a, b, errors):
        reader, writer = await asyncio.open_connection(sock=a, limit=1 << 20)
        primed = await prime(reader, b)
        seen = []
        original = reader.feed_data

        def feed_data(data):
            seen.append((type(data).__name__, len(data)))
            original(data)

        reader.feed_data = feed_data
        data = message(size, 8)
        b.sendall(data)
        got = await reader.readexactly(size) == data
        writer.close()
        await writer.wait_closed()
        return primed, got, seen, base.describe_errors(errors)

    assert base.run_on_both(scenario) == (
        True, True, [('bytes', 100 * 1024)], [])


def test_reader_replaced_after_large_reads():
    """A new (stock) reader whose buffer is fresh takes the bytes."""
    size = 100 * 1024

    async def scenario(a, b, errors):
        reader, writer = await asyncio.open_connection(sock=a, limit=1 << 20)
        primed = await prime(reader, b)
        protocol = writer._protocol
        fresh = asyncio.StreamReader(limit=1 << 20)
        fresh.set_transport(writer.transport)
        protocol._stream_reader_wr = weakref.ref(fresh)
        data = message(size, 9)
        buffer = fresh._buffer
        b.sendall(data)
        await base.wait_for_effect(lambda: len(fresh._buffer) == size)
        state = buffer_state(fresh, buffer, data)
        old = len(reader._buffer)
        writer.close()
        await writer.wait_closed()
        return primed, state, old, base.describe_errors(errors)

    primed, state, old, errors = base.run_on_both(scenario)
    assert (primed, old, errors) == (True, 0, []) and state[0] and state[3]


def test_exported_empty_buffer_after_large_reads():
    async def scenario(a, b, errors):
        reader, writer = await asyncio.open_connection(sock=a, limit=1 << 20)
        primed = await prime(reader, b)
        view = memoryview(reader._buffer)  # an export: the buffer cannot grow
        b.sendall(message(100 * 1024, 10))
        closed = writer._protocol._get_close_waiter(writer)
        try:
            await closed
        except Exception as exc:
            lost = type(exc).__name__
        else:
            lost = None
        view.release()
        return primed, lost, bytes(reader._buffer), base.describe_errors(errors)

    primed, lost, buffered, errors = base.run_on_both(scenario)
    assert (primed, lost, buffered) == (True, 'BufferError', b'')
    assert [e[:2] for e in errors] == [
        ('Fatal error: protocol.data_received() call failed.', 'BufferError')]
