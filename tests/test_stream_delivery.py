"""Bytes delivered natively to asyncio's StreamReader (src/stream_delivery.rs).

When a socket transport's protocol is exactly asyncio's StreamReaderProtocol
and its reader exactly asyncio's StreamReader, ferroloop appends received
bytes to the reader's buffer and wakes its waiter itself instead of calling
``data_received(bytes)`` -> ``feed_data``; in every other state it makes the
Python call. Each scenario below runs on the stock loop (the authority) and
on ferroloop, asserts the expected outcome on both and that both agree.

The peer is the other end of a ``socket.socketpair()`` driven with blocking
calls, so what the reader receives in one read is what was written before it
(no timing): a scenario sends, then waits for an observable effect.
"""

import asyncio
import gc
import socket
import sys

import ferroloop
from _tlsutil import HOSTNAME, certs  # noqa: F401  (certs is a fixture)


TIMEOUT = 10


LOOPS = {
    'asyncio': asyncio.new_event_loop,
    'ferroloop': ferroloop.new_event_loop,
}


def run_on_both(scenario):
    """Runs `scenario(peer)` on each loop; returns {loop name: result}."""
    results = {}
    for name, factory in LOOPS.items():
        loop = factory()
        errors = []
        loop.set_exception_handler(lambda lp, ctx: errors.append(ctx))
        a, b = socket.socketpair()
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


def describe_errors(errors):
    return [(ctx['message'], type(ctx.get('exception')).__name__,
             str(ctx.get('exception'))) for ctx in errors]

async def wait_for_effect(predicate):
    """Lets the loop run until `predicate()` holds (the read it waits for
    happens within a few iterations; the safety timeout bounds it)."""
    while not predicate():
        await asyncio.sleep(0)


# -- reads across chunk boundaries ---------------------------------------------


def test_readexactly_readuntil_readline_read():
    async def scenario(a, b, errors):
        reader, writer = await asyncio.open_connection(sock=a)
        b.sendall(b'abc')
        first = await reader.readexactly(2)
        b.sendall(b'def\nghi')
        line = await reader.readline()
        b.sendall(b'jk--SEP--tail')
        until = await reader.readuntil(b'--SEP--')
        some = await reader.read(100)
        payload = bytes(range(256)) * 4096  # 1 MiB, many reads
        _, big = await asyncio.gather(
            asyncio.to_thread(b.sendall, payload),
            reader.readexactly(len(payload)))
        writer.close()
        await writer.wait_closed()
        return (first, line, until, some, big == payload,
                describe_errors(errors))

    assert run_on_both(scenario) == (
        b'ab', b'cdef\n', b'ghijk--SEP--', b'tail', True, [])


def test_tcp_echo_large_payloads():
    async def handle(reader, writer):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    async def scenario(a, b, errors):
        server = await asyncio.start_server(handle, '127.0.0.1', 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection('127.0.0.1', port)
        sizes = []
        for size in (1, 1024, 100 * 1024, 3 * 1024 * 1024):
            message = bytes((i * 7 + size) % 251 for i in range(size))
            writer.write(message)
            sizes.append(await reader.readexactly(size) == message)
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return sizes, describe_errors(errors)

    assert run_on_both(scenario) == ([True] * 4, [])



def test_large_reads_into_an_empty_buffer_leave_it_as_stock():
    """Large reads into empty reader buffers in one loop iteration: from the
    second one on, ferroloop grows the buffer behind a heap reservation
    (src/read_reserve.rs). The bytearrays' identity, contents, length and
    allocation stay what `extend` gives on the stock loop, round after round."""
    size = 100 * 1024

    async def scenario(a, b, errors):
        loop = asyncio.get_running_loop()
        c, d = socket.socketpair()
        d.settimeout(TIMEOUT)
        readers, transports = [], []
        for sock in (a, c):
            reader = asyncio.StreamReader(limit=4 * size)
            transport, _ = await _connect_with(
                loop, lambda: asyncio.StreamReaderProtocol(reader), sock)
            readers.append(reader)
            transports.append(transport)
        states = []
        for round_ in range(3):
            messages = [bytes((i * 13 + round_ + k) % 251 for i in range(size))
                        for k in range(2)]
            buffers = [reader._buffer for reader in readers]
            # Both peers send before the loop runs: one poll sees both.
            for peer, message in zip((b, d), messages):
                peer.sendall(message)
            await wait_for_effect(
                lambda: all(len(r._buffer) == size for r in readers))
            for reader, buffer, message in zip(readers, buffers, messages):
                states.append((reader._buffer is buffer, buffer.__alloc__(),
                               bytes(buffer) == message))
                first = await reader.read(65536)
                rest = await reader.readexactly(size - 65536)
                states.append((first + rest == message, len(buffer),
                               buffer.__alloc__()))
        for transport in transports:
            transport.close()
        d.close()
        return states, describe_errors(errors)

    states, errors = run_on_both(scenario)
    assert errors == []
    # Equal on both loops (run_on_both); the first growth's allocation size
    # is the running Python's (size + 1 up to 3.14, more on 3.15).
    for state in (states[0], states[2]):
        assert state[0] is True and state[2] is True
        assert state[1] >= size + 1

# -- limits ---------------------------------------------------------------------


def test_limit_overrun_errors():
    async def scenario(a, b, errors):
        reader, writer = await asyncio.open_connection(sock=a, limit=16)
        b.sendall(b'x' * 40 + b'\nrest')
        try:
            await reader.readline()
        except ValueError as exc:
            line_error = (type(exc).__name__, str(exc))
        b.sendall(b'y' * 30 + b'|')
        try:
            await reader.readuntil(b'|')
        except asyncio.LimitOverrunError as exc:
            until_error = (type(exc).__name__, str(exc), exc.consumed)
        left = len(reader._buffer)
        writer.close()
        await writer.wait_closed()
        return line_error, until_error, left, describe_errors(errors)

    line_error, until_error, left, errors = run_on_both(scenario)
    assert line_error[0] == 'ValueError'
    assert until_error[0] == 'LimitOverrunError'
    assert left > 0 and errors == []


def test_pause_and_resume_reading_by_buffer_size():
    async def scenario(a, b, errors):
        reader, writer = await asyncio.open_connection(sock=a, limit=1024)
        transport = writer.transport
        payload = bytes(range(256)) * 256  # 64 KiB: fits the socket buffer
        b.sendall(payload)
        first = await reader.readexactly(10)
        # One read took all of it: more than 2 * limit is buffered.
        paused = (reader._paused, transport.is_reading(), len(reader._buffer))
        rest = await reader.readexactly(len(payload) - 10)
        resumed = (reader._paused, transport.is_reading(), len(reader._buffer))
        writer.close()
        await writer.wait_closed()
        return (first + rest == payload, paused, resumed,
                describe_errors(errors))

    assert run_on_both(scenario) == (
        True, (True, False, 65526), (False, True, 0), [])


def test_pause_reading_not_implemented_forgets_the_transport():
    async def scenario(a, b, errors):
        reader, writer = await asyncio.open_connection(sock=a, limit=8)
        transport = writer.transport

        def pause_reading():
            raise NotImplementedError

        transport.pause_reading = pause_reading
        b.sendall(b'z' * 100)
        await reader.readexactly(1)
        state = (reader._transport is None, reader._paused,
                 transport.is_reading(), len(reader._buffer))
        writer.close()
        await writer.wait_closed()
        return state, describe_errors(errors)

    assert run_on_both(scenario) == ((True, False, True, 99), [])


# -- EOF and exceptions ------------------------------------------------------------


def test_eof_after_data():
    async def scenario(a, b, errors):
        reader, writer = await asyncio.open_connection(sock=a)
        b.sendall(b'last words')
        b.shutdown(socket.SHUT_WR)
        try:
            await reader.readexactly(100)
        except asyncio.IncompleteReadError as exc:
            incomplete = (exc.partial, exc.expected)
        at_eof = reader.at_eof()
        tail = await reader.read()
        writer.close()
        await writer.wait_closed()
        return incomplete, at_eof, tail, describe_errors(errors)

    assert run_on_both(scenario) == ((b'last words', 100), True, b'', [])


def test_exception_set_on_reader():
    async def scenario(a, b, errors):
        reader, writer = await asyncio.open_connection(sock=a)
        waiting = asyncio.ensure_future(reader.read(5))
        await wait_for_effect(lambda: reader._waiter is not None)
        reader.set_exception(ValueError('boom'))
        try:
            await waiting
        except ValueError as exc:
            woken = str(exc)
        b.sendall(b'after')  # feed_data does not look at the exception
        await wait_for_effect(lambda: reader._buffer)
        buffered = bytes(reader._buffer)
        try:
            await reader.read(5)
        except ValueError as exc:
            again = str(exc)
        writer.close()
        await writer.wait_closed()
        return woken, buffered, again, describe_errors(errors)

    assert run_on_both(scenario) == ('boom', b'after', 'boom', [])


def test_data_after_feed_eof_is_a_protocol_error():
    async def scenario(a, b, errors):
        reader, writer = await asyncio.open_connection(sock=a)
        reader.feed_eof()
        b.sendall(b'late')
        closed = writer._protocol._get_close_waiter(writer)
        try:
            await closed
        except Exception as exc:
            lost = type(exc).__name__
        else:
            lost = None
        return lost, bytes(reader._buffer), describe_errors(errors)

    lost, buffered, errors = run_on_both(scenario)
    assert buffered == b''
    assert [e[:2] for e in errors] == [
        ('Fatal error: protocol.data_received() call failed.',
         'AssertionError')]


def test_exported_buffer_cannot_grow():
    async def scenario(a, b, errors):
        reader, writer = await asyncio.open_connection(sock=a)
        view = memoryview(reader._buffer)  # holds an export
        b.sendall(b'data')
        closed = writer._protocol._get_close_waiter(writer)
        try:
            await closed
        except Exception as exc:
            lost = type(exc).__name__
        else:
            lost = None
        view.release()
        return lost, bytes(reader._buffer), describe_errors(errors)

    lost, buffered, errors = run_on_both(scenario)
    assert lost == 'BufferError' and buffered == b''
    assert [e[:2] for e in errors] == [
        ('Fatal error: protocol.data_received() call failed.',
         'BufferError')]


def test_cancelled_and_done_waiters():
    async def scenario(a, b, errors):
        loop = asyncio.get_running_loop()
        reader, writer = await asyncio.open_connection(sock=a)
        cancelled = loop.create_future()
        cancelled.cancel()
        reader._waiter = cancelled
        b.sendall(b'one')
        await wait_for_effect(lambda: reader._buffer)
        after_cancelled = (reader._waiter, bytes(reader._buffer))
        done = loop.create_future()
        done.set_result('already')
        reader._waiter = done
        b.sendall(b'two')
        closed = writer._protocol._get_close_waiter(writer)
        try:
            await closed
        except Exception as exc:
            lost = type(exc).__name__
        return (after_cancelled, lost, bytes(reader._buffer),
                reader._waiter, describe_errors(errors))

    after_cancelled, lost, buffered, waiter, errors = run_on_both(scenario)
    assert after_cancelled == (None, b'one')
    assert lost == 'InvalidStateError' and buffered == b'onetwo'
    assert waiter is None
    assert [e[:2] for e in errors] == [
        ('Fatal error: protocol.data_received() call failed.',
         'InvalidStateError')]


# -- the reader is gone ---------------------------------------------------------------


def test_reader_garbage_collected():
    async def scenario(a, b, errors):
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        protocol = asyncio.StreamReaderProtocol(reader)
        transport, _ = await _connect_with(loop, lambda: protocol, a)
        del reader  # (a StreamWriter would close the transport when collected)
        gc.collect()
        eof = loop.create_future()
        original = protocol.eof_received

        def eof_received():
            keep_open = original()
            eof.set_result(keep_open)
            return keep_open

        protocol.eof_received = eof_received
        b.sendall(b'nobody reads this')
        b.shutdown(socket.SHUT_WR)
        keep_open = await eof
        state = (protocol._stream_reader, keep_open, transport.is_closing())
        transport.close()
        return state, describe_errors(errors)

    assert run_on_both(scenario) == ((None, True, False), [])


# -- what is not the stock pair takes the Python call ------------------------------------


def _connect_with(loop, protocol_factory, sock):
    return loop.create_connection(protocol_factory, sock=sock)


def test_subclassed_protocol_gets_its_data_received():
    class CountingProtocol(asyncio.StreamReaderProtocol):
        def data_received(self, data):
            self.chunks.append(bytes(data))
            super().data_received(data)

    async def scenario(a, b, errors):
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        protocol = CountingProtocol(reader)
        protocol.chunks = []
        transport, _ = await _connect_with(loop, lambda: protocol, a)
        b.sendall(b'hello')
        got = await reader.readexactly(5)
        transport.close()
        return got, protocol.chunks, describe_errors(errors)

    assert run_on_both(scenario) == (b'hello', [b'hello'], [])


def test_data_received_patched_on_the_instance():
    async def scenario(a, b, errors):
        reader, writer = await asyncio.open_connection(sock=a)
        protocol = writer._protocol
        seen = []
        original = protocol.data_received

        def data_received(data):
            seen.append(data.upper())
            original(data)

        protocol.data_received = data_received
        b.sendall(b'patched')
        got = await reader.readexactly(7)
        writer.close()
        await writer.wait_closed()
        return got, seen, describe_errors(errors)

    assert run_on_both(scenario) == (b'patched', [b'PATCHED'], [])


def test_feed_data_patched_on_the_reader():
    async def scenario(a, b, errors):
        reader, writer = await asyncio.open_connection(sock=a)
        seen = []
        original = reader.feed_data

        def feed_data(data):
            seen.append(type(data).__name__)
            original(data[::-1])

        reader.feed_data = feed_data
        b.sendall(b'abc')
        got = await reader.readexactly(3)
        writer.close()
        await writer.wait_closed()
        return got, seen, describe_errors(errors)

    assert run_on_both(scenario) == (b'cba', ['bytes'], [])


def test_stream_reader_subclass_gets_its_feed_data():
    class Upper(asyncio.StreamReader):
        def feed_data(self, data):
            super().feed_data(data.upper())

    async def scenario(a, b, errors):
        loop = asyncio.get_running_loop()
        reader = Upper()
        transport, protocol = await _connect_with(
            loop, lambda: asyncio.StreamReaderProtocol(reader), a)
        b.sendall(b'shout')
        got = await reader.readexactly(5)
        transport.close()
        return got, describe_errors(errors)

    assert run_on_both(scenario) == (b'SHOUT', [])


def test_data_received_patched_on_the_class(monkeypatch):
    seen = []
    original = asyncio.StreamReaderProtocol.data_received

    def data_received(self, data):
        seen.append(len(data))
        original(self, data)

    monkeypatch.setattr(asyncio.StreamReaderProtocol, 'data_received',
                        data_received)

    async def scenario(a, b, errors):
        reader, writer = await asyncio.open_connection(sock=a)
        b.sendall(b'12345')
        got = await reader.readexactly(5)
        writer.close()
        await writer.wait_closed()
        return got, describe_errors(errors)

    assert run_on_both(scenario) == (b'12345', [])
    assert seen == [5, 5]  # once per loop


# -- TLS: the transport's protocol is SSLProtocol, not this path -------------------------


def test_tls_streams_echo(certs):
    async def handle(reader, writer):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    async def scenario(a, b, errors):
        server = await asyncio.start_server(
            handle, '127.0.0.1', 0, ssl=certs.server_context())
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection(
            '127.0.0.1', port, ssl=certs.client_context(),
            server_hostname=HOSTNAME)
        message = bytes(range(256)) * 1024
        writer.write(message)
        echoed = await reader.readexactly(len(message))
        writer.write(b'line\n')
        line = await reader.readline()
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return echoed == message, line, describe_errors(errors)

    assert run_on_both(scenario) == (True, b'line\n', [])


# -- which path ran ---------------------------------------------------------------------


def test_stock_pair_is_fed_without_python_calls():
    """On ferroloop the stock pair gets its bytes without data_received /
    feed_data running (the scenarios above compare the outcome); a
    subclass still gets the Python calls."""
    feed_data_code = asyncio.StreamReader.feed_data.__code__

    class Sub(asyncio.StreamReaderProtocol):
        pass

    def count_feed_data_calls(loop_factory, protocol_class):
        calls = []

        def profile(frame, event, arg):
            if event == 'call' and frame.f_code is feed_data_code:
                calls.append(1)

        async def main():
            loop = asyncio.get_running_loop()
            a, b = socket.socketpair()
            with b:
                reader = asyncio.StreamReader()
                transport, _ = await _connect_with(
                    loop, lambda: protocol_class(reader), a)
                b.sendall(b'x' * 100)
                got = await reader.readexactly(100)
                transport.close()
            return got

        loop = loop_factory()
        sys.setprofile(profile)
        try:
            got = loop.run_until_complete(asyncio.wait_for(main(), TIMEOUT))
        finally:
            sys.setprofile(None)
            loop.close()
        assert got == b'x' * 100
        return len(calls)

    assert count_feed_data_calls(asyncio.new_event_loop,
                                 asyncio.StreamReaderProtocol) == 1
    assert count_feed_data_calls(ferroloop.new_event_loop,
                                 asyncio.StreamReaderProtocol) == 0
    assert count_feed_data_calls(ferroloop.new_event_loop, Sub) == 1
