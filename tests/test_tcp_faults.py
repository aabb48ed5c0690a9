"""TCP transports under faults: peer resets, half-closes, close/abort with
pending writes, writes after close, flow control, BufferedProtocol, protocol
callback errors and EMFILE while accepting.

Every test runs on stock asyncio and on ferroloop (the `loop` fixture's
`asyncio` / `ferroloop` ids) with the same assertions, written against
asyncio's public API: what stock asyncio does is the expected behaviour.
Most tests also run on both ends of a connection: `client` (the loop's
transport comes from create_connection) and `server` (from create_server).
The other end is a plain blocking socket; real loopback sockets throughout.
"""

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys

import pytest

from asyncio import constants

import _netutil
from _netutil import loop, net  # noqa: F401  (pytest fixtures)
from _netutil import (BIG, LOOP_FACTORIES, BufferedRecorder, LogRecords,
                      Recorder, is_slow_callback, payload, poll_barrier,
                      record_handler_calls, recv_until_eof, reset)


@pytest.fixture(params=_netutil.Net.SIDES)
def side(request):
    """Which end of the connection is the loop's transport."""
    return request.param


# --------------------------------------------------------------------------
# Peer reset


@pytest.mark.parametrize('reading', ['reading', 'reading_paused'])
def test_peer_reset_mid_write_loses_connection_with_reset_error(
        loop, net, side, reading):
    """A peer that resets (SO_LINGER 0 close) while we have a large write
    pending: connection_lost(ConnectionResetError) once, the pending data is
    dropped, and nothing reaches the exception handler or the log (stock
    treats connection resets as ordinary, see _FATAL_ERROR_IGNORE).

    With reading paused only the write path can notice the reset."""
    async def main():
        transport, proto, peer = await net.open(
            side, lambda: Recorder(loop), peer_rcvbuf_small=True)
        handler_calls = record_handler_calls(loop)
        if reading == 'reading_paused':
            transport.pause_reading()
        with LogRecords() as log:
            transport.write(payload(BIG))
            assert transport.get_write_buffer_size() > 0  # a write is pending
            reset(peer)
            exc = await proto.lost
            await poll_barrier(loop)  # a second connection_lost would show
        return transport, proto, exc, handler_calls, log

    transport, proto, exc, handler_calls, log = net.run(main())
    assert type(exc) is ConnectionResetError, repr(exc)
    assert proto.events == ['made', 'pause', 'lost']  # no resume: dropped
    assert transport.is_closing()
    assert transport.get_write_buffer_size() == 0
    assert handler_calls == []
    assert log.messages() == []


# --------------------------------------------------------------------------
# Peer closes / half-closes


def test_peer_close_while_reading_gives_eof_then_connection_lost_none(
        loop, net, side):
    async def main():
        transport, proto, peer = await net.open(side, lambda: Recorder(loop))
        handler_calls = record_handler_calls(loop)
        peer.sendall(b'last words')
        peer.close()
        exc = await proto.lost
        return transport, proto, exc, handler_calls

    transport, proto, exc, handler_calls = net.run(main())
    assert exc is None
    assert proto.events == ['made', 'data', 'eof', 'lost']
    assert proto.data == b'last words'
    assert transport.is_closing()  # eof_received returned a false value
    assert handler_calls == []


def test_eof_received_true_keeps_transport_half_open(loop, net, side):
    """Peer shutdown(SHUT_WR): eof_received returning True keeps our
    transport open for writing; the peer still reads what we write, then
    our write_eof; connection_lost(None) only after we close."""
    async def main():
        transport, proto, peer = await net.open(
            side, lambda: Recorder(loop, keep_open_on_eof=True))
        peer.sendall(b'question')
        peer.shutdown(socket.SHUT_WR)
        await proto.eof
        assert proto.data == b'question'
        assert not transport.is_closing()

        transport.write(b'answer, ')
        transport.write(b'after EOF')
        transport.write_eof()
        received, how = await net.in_thread(recv_until_eof, peer)
        assert (received, how) == (b'answer, after EOF', 'eof')

        await poll_barrier(loop)
        assert not proto.lost.done()  # half-open until we close
        transport.close()
        assert await proto.lost is None
        return proto

    proto = net.run(main())
    assert proto.events == ['made', 'data', 'eof', 'lost']


def test_write_eof_half_closes_and_we_still_read(loop, net, side):
    """write_eof from us: the peer sees our data then EOF, and can still
    answer; we receive the answer, then the peer's EOF."""
    async def main():
        transport, proto, peer = await net.open(side, lambda: Recorder(loop))
        handler_calls = record_handler_calls(loop)
        assert transport.can_write_eof()
        transport.write(b'request')
        transport.write_eof()
        with pytest.raises(RuntimeError):
            transport.write(b'too late')  # stock: after write_eof()
        received, how = await net.in_thread(recv_until_eof, peer)
        assert (received, how) == (b'request', 'eof')

        peer.sendall(b'response')
        peer.close()
        exc = await proto.lost
        return proto, exc, handler_calls

    proto, exc, handler_calls = net.run(main())
    assert exc is None
    assert proto.data == b'response'
    assert proto.events == ['made', 'data', 'eof', 'lost']
    assert handler_calls == []


def test_write_eof_waits_for_pending_writes(loop, net, side):
    """write_eof with a large write pending: the peer gets every byte first,
    then EOF."""
    data = payload(BIG)

    async def main():
        transport, proto, peer = await net.open(
            side, lambda: Recorder(loop), peer_rcvbuf_small=True)
        transport.write(data)
        assert transport.get_write_buffer_size() > 0
        transport.write_eof()
        received, how = await net.in_thread(recv_until_eof, peer)
        assert transport.get_write_buffer_size() == 0
        assert not proto.lost.done()
        peer.close()
        exc = await proto.lost
        return proto, received, how, exc

    proto, received, how, exc = net.run(main())
    assert how == 'eof'
    assert len(received) == len(data) and received == data
    assert exc is None
    assert proto.events == ['made', 'pause', 'resume', 'eof', 'lost']


# --------------------------------------------------------------------------
# close() and abort() with pending writes


def test_close_flushes_pending_writes_before_connection_lost(loop, net, side):
    data = payload(BIG)

    async def main():
        transport, proto, peer = await net.open(
            side, lambda: Recorder(loop), peer_rcvbuf_small=True)
        handler_calls = record_handler_calls(loop)
        transport.write(data)
        assert transport.get_write_buffer_size() > 0
        transport.close()
        assert transport.is_closing()
        # The peer does not read yet, so nothing can flush: no connection_lost.
        await poll_barrier(loop)
        await poll_barrier(loop)
        assert not proto.lost.done()

        received, how = await net.in_thread(recv_until_eof, peer)
        exc = await proto.lost
        return proto, received, how, exc, handler_calls

    proto, received, how, exc, handler_calls = net.run(main())
    assert how == 'eof'  # a clean FIN after the data, not a reset
    assert len(received) == len(data) and received == data
    assert exc is None
    assert proto.events == ['made', 'pause', 'resume', 'lost']
    assert proto.buffer_sizes['lost'] == [0]  # flushed before connection_lost
    assert handler_calls == []


def test_peer_reset_during_close_flush_reports_the_reset(loop, net, side):
    """close() with a write pending, then the peer resets instead of
    reading: the flush fails, connection_lost gets ConnectionResetError
    (not None), once, with no exception handler call or log."""
    async def main():
        transport, proto, peer = await net.open(
            side, lambda: Recorder(loop), peer_rcvbuf_small=True)
        handler_calls = record_handler_calls(loop)
        with LogRecords() as log:
            transport.write(payload(BIG))
            assert transport.get_write_buffer_size() > 0
            transport.close()
            reset(peer)
            exc = await proto.lost
            await poll_barrier(loop)
        return proto, exc, handler_calls, log

    proto, exc, handler_calls, log = net.run(main())
    assert type(exc) is ConnectionResetError, repr(exc)
    assert proto.events == ['made', 'pause', 'lost']
    assert handler_calls == []
    assert log.messages() == []


def test_abort_after_close_drops_the_pending_flush(loop, net, side):
    """abort() while close() is still flushing: the rest is dropped and
    connection_lost(None) is called once."""
    data = payload(BIG)

    async def main():
        transport, proto, peer = await net.open(
            side, lambda: Recorder(loop), peer_rcvbuf_small=True)
        transport.write(data)
        transport.close()
        transport.close()  # a second close() is a no-op
        assert transport.get_write_buffer_size() > 0
        transport.abort()
        exc = await proto.lost
        received, how = await net.in_thread(recv_until_eof, peer)
        await poll_barrier(loop)
        return transport, proto, exc, received, how

    transport, proto, exc, received, how = net.run(main())
    assert exc is None
    assert proto.events == ['made', 'pause', 'lost']
    assert transport.get_write_buffer_size() == 0
    assert how in ('eof', 'ConnectionResetError')
    assert len(received) < len(data)
    assert received == data[:len(received)]


def test_abort_drops_pending_writes_and_loses_connection_promptly(
        loop, net, side):
    """abort(): the pending data is dropped (the peer gets at most what the
    kernel already held) and connection_lost(None) follows within a few loop
    iterations, without waiting for the peer.  Like stock, connection_lost is
    scheduled, not called from inside abort()."""
    data = payload(BIG)

    async def main():
        transport, proto, peer = await net.open(
            side, lambda: Recorder(loop), peer_rcvbuf_small=True)
        handler_calls = record_handler_calls(loop)
        transport.write(data)
        assert transport.get_write_buffer_size() > 0
        transport.abort()
        assert transport.is_closing()
        assert proto.events == ['made', 'pause']  # not called re-entrantly
        for _ in range(10):
            if proto.lost.done():
                break
            await asyncio.sleep(0)
        assert proto.lost.done(), 'connection_lost not called promptly'
        exc = proto.lost.result()
        received, how = await net.in_thread(recv_until_eof, peer)
        return transport, proto, exc, received, how, handler_calls

    transport, proto, exc, received, how, handler_calls = net.run(main())
    assert exc is None
    assert proto.events == ['made', 'pause', 'lost']  # no resume: dropped
    assert transport.get_write_buffer_size() == 0
    # stock: a FIN after what the kernel held; a reset drops data too.
    assert how in ('eof', 'ConnectionResetError')
    assert len(received) < len(data)
    assert received == data[:len(received)]
    assert handler_calls == []


# --------------------------------------------------------------------------
# Writes after close / after the connection is lost


def test_writes_after_close_are_dropped(loop, net, side):
    async def main():
        transport, proto, peer = await net.open(side, lambda: Recorder(loop))
        with LogRecords() as log:
            transport.close()
            transport.write(b'dropped 1')
            transport.write(b'dropped 2')
            exc = await proto.lost
            received, how = await net.in_thread(recv_until_eof, peer)
        return proto, exc, received, how, log

    proto, exc, received, how, log = net.run(main())
    assert exc is None
    assert (received, how) == (b'', 'eof')
    assert proto.events == ['made', 'lost']
    assert log.messages() == []  # below LOG_THRESHOLD_FOR_CONNLOST_WRITES


@pytest.mark.parametrize('how', ['closed', 'peer_reset'])
def test_writes_after_connection_lost_warn_past_threshold(
        loop, net, side, how):
    """Once the connection is lost, write() drops the data; the first
    LOG_THRESHOLD_FOR_CONNLOST_WRITES - 1 such writes are silent, each later
    one logs asyncio's 'socket.send() raised exception.' warning."""
    threshold = constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES
    writes = threshold + 3

    async def main():
        transport, proto, peer = await net.open(side, lambda: Recorder(loop))
        if how == 'closed':
            transport.close()
        else:
            reset(peer)
        await proto.lost
        with LogRecords() as log:
            for _ in range(writes):
                transport.write(b'into the void')
        return proto, log

    proto, log = net.run(main())
    assert proto.events[-1] == 'lost'
    warnings = [r for r in log.records if r.levelno >= logging.WARNING
                and not is_slow_callback(r)]
    assert [(r.name, r.levelname, r.getMessage()) for r in warnings] == [
        ('asyncio', 'WARNING', 'socket.send() raised exception.')
    ] * (writes - threshold + 1)


# --------------------------------------------------------------------------
# Flow control


def test_write_buffer_limits_values(loop, net, side):
    async def main():
        transport, proto, peer = await net.open(side, lambda: Recorder(loop))
        limits = [transport.get_write_buffer_limits()]
        transport.set_write_buffer_limits(high=1000)
        limits.append(transport.get_write_buffer_limits())
        transport.set_write_buffer_limits(low=100)
        limits.append(transport.get_write_buffer_limits())
        transport.set_write_buffer_limits(high=300, low=20)
        limits.append(transport.get_write_buffer_limits())
        transport.set_write_buffer_limits(high=0)
        limits.append(transport.get_write_buffer_limits())
        transport.set_write_buffer_limits()
        limits.append(transport.get_write_buffer_limits())
        for bad in [dict(high=10, low=20), dict(high=-1), dict(low=-1),
                    dict(high=10, low=-1)]:
            with pytest.raises(ValueError):
                transport.set_write_buffer_limits(**bad)
        limits.append(transport.get_write_buffer_limits())  # unchanged
        assert transport.get_write_buffer_size() == 0
        return limits, proto

    limits, proto = net.run(main())
    assert limits == [
        (16 * 1024, 64 * 1024),   # defaults
        (250, 1000),              # low = high // 4
        (100, 400),               # high = 4 * low
        (20, 300),
        (0, 0),
        (16 * 1024, 64 * 1024),   # back to the defaults
        (16 * 1024, 64 * 1024),
    ]
    assert proto.events == ['made']  # the buffer was empty: no pause


def test_write_buffer_limits_take_any_numbers(loop, net, side):
    # asyncio keeps the values it was given (floats too) and does the
    # default arithmetic in Python: `low = high // 4`, `high = 4 * low`.
    async def main():
        transport, proto, peer = await net.open(side, lambda: Recorder(loop))
        limits = []
        for kwargs in [dict(high=1.5e5), dict(low=1000.0), dict(high=10.5, low=10)]:
            transport.set_write_buffer_limits(**kwargs)
            limits.append(transport.get_write_buffer_limits())
        errors = []
        for bad in [dict(high='x'), dict(high=1.0, low=2.0)]:
            try:
                transport.set_write_buffer_limits(**bad)
            except (TypeError, ValueError) as exc:
                errors.append(f'{type(exc).__name__}: {exc}')
        return limits, errors

    limits, errors = net.run(main())
    assert limits == [(37500.0, 150000.0), (1000.0, 4000.0), (10, 10.5)]
    assert [type(v) for pair in limits for v in pair] == [float, float, float, float, int, float]
    assert errors == [
        "TypeError: unsupported operand type(s) for //: 'str' and 'int'",
        'ValueError: high (1.0) must be >= low (2.0) must be >= 0',
    ]


def test_pause_and_resume_writing_at_water_marks(loop, net, side):
    """pause_writing as soon as the buffer exceeds the high-water mark (from
    inside write()), resume_writing once it drains to the low-water mark;
    each exactly once."""
    high, low, chunk = 256 * 1024, 64 * 1024, 64 * 1024
    data = payload(BIG)

    async def main():
        transport, proto, peer = await net.open(side, lambda: Recorder(loop))
        transport.set_write_buffer_limits(high=high, low=low)
        assert transport.get_write_buffer_limits() == (low, high)
        offset = 0
        while not proto.paused.done():
            assert offset < len(data), 'pause_writing never called'
            assert transport.get_write_buffer_size() <= high
            transport.write(data[offset:offset + chunk])
            offset += chunk
        size_at_pause = transport.get_write_buffer_size()
        assert size_at_pause > high
        assert proto.buffer_sizes['pause'] == [size_at_pause]

        reader = net.in_thread(recv_until_eof, peer)
        await proto.resumed
        transport.close()
        received, how = await reader
        exc = await proto.lost
        return proto, data[:offset], received, how, exc

    proto, sent, received, how, exc = net.run(main())
    assert proto.events == ['made', 'pause', 'resume', 'lost']
    [size_at_resume] = proto.buffer_sizes['resume']
    assert size_at_resume <= low
    assert how == 'eof' and received == sent
    assert exc is None


def test_lowering_high_water_mark_pauses_immediately(loop, net, side):
    data = payload(BIG)

    async def main():
        transport, proto, peer = await net.open(
            side, lambda: Recorder(loop), peer_rcvbuf_small=True)
        transport.set_write_buffer_limits(high=2 * BIG)
        transport.write(data)
        pending = transport.get_write_buffer_size()
        assert 0 < pending <= 2 * BIG
        assert proto.events == ['made']
        transport.set_write_buffer_limits(high=1, low=0)
        assert proto.events == ['made', 'pause']
        reader = net.in_thread(recv_until_eof, peer)
        await proto.resumed
        assert proto.buffer_sizes['resume'] == [0]
        transport.close()
        received, how = await reader
        return proto, received, how, await proto.lost

    proto, received, how, exc = net.run(main())
    assert proto.events == ['made', 'pause', 'resume', 'lost']
    assert how == 'eof' and received == data
    assert exc is None


def test_pause_reading_holds_data_until_resume_reading(loop, net, side):
    async def main():
        transport, proto, peer = await net.open(side, lambda: Recorder(loop))
        states = [transport.is_reading()]
        transport.pause_reading()
        states.append(transport.is_reading())
        transport.pause_reading()  # already paused: no-op
        states.append(transport.is_reading())

        peer.sendall(b'sent while paused')
        await poll_barrier(loop)
        await poll_barrier(loop)
        assert proto.data == b'', 'data delivered while reading was paused'

        transport.resume_reading()
        states.append(transport.is_reading())
        transport.resume_reading()  # already reading: no-op
        states.append(transport.is_reading())
        assert await proto.received(17) == b'sent while paused'

        transport.close()
        states.append(transport.is_reading())
        transport.resume_reading()  # closing: no-op
        states.append(transport.is_reading())
        exc = await proto.lost
        return proto, states, exc

    proto, states, exc = net.run(main())
    assert states == [True, False, False, True, True, False, False]
    assert proto.events == ['made', 'data', 'lost']
    assert exc is None


# --------------------------------------------------------------------------
# BufferedProtocol


def test_buffered_protocol_receives_every_byte(loop, net, side):
    data = payload(1024 * 1024, seed=1)

    async def main():
        transport, proto, peer = await net.open(
            side, lambda: BufferedRecorder(loop, bufsize=1000))
        await net.in_thread(peer.sendall, data)
        peer.close()
        exc = await proto.lost
        return proto, exc

    proto, exc = net.run(main())
    assert exc is None
    assert proto.events == ['made', 'data', 'eof', 'lost']
    assert len(proto.data) == len(data) and proto.data == data
    assert proto.get_buffer_calls >= len(data) // 1000
    assert proto.sizehints == {int}


# --------------------------------------------------------------------------
# Exceptions raised by protocol callbacks


class Boom(Exception):
    pass


def failing_protocol(loop, callback):
    base = Recorder if callback in ('data_received', 'eof_received') \
        else BufferedRecorder

    class Failing(base):
        def get_buffer(self, sizehint):
            if callback == 'get_buffer':
                raise Boom(callback)
            if callback == 'get_buffer_empty':
                return bytearray()
            return super().get_buffer(sizehint)

        def buffer_updated(self, nbytes):
            if callback == 'buffer_updated':
                raise Boom(callback)
            super().buffer_updated(nbytes)

        def data_received(self, data):
            if callback == 'data_received':
                raise Boom(callback)
            super().data_received(data)

        def eof_received(self):
            if callback == 'eof_received':
                super().eof_received()
                raise Boom(callback)
            return super().eof_received()

    return Failing(loop)


@pytest.mark.parametrize('callback', [
    'data_received', 'eof_received', 'get_buffer', 'get_buffer_empty',
    'buffer_updated'])
def test_protocol_callback_error_is_fatal_and_reported(loop, net, callback):
    """An exception from a protocol callback goes to the exception handler
    with asyncio's message and closes the transport; connection_lost gets
    the same exception."""
    async def main():
        transport, proto, peer = await net.open(
            'client', lambda: failing_protocol(loop, callback))
        handler_calls = record_handler_calls(loop)
        peer.sendall(b'boom')
        if callback == 'eof_received':
            peer.shutdown(socket.SHUT_WR)
        exc = await proto.lost
        return transport, proto, exc, handler_calls

    transport, proto, exc, handler_calls = net.run(main())
    name = 'get_buffer' if callback == 'get_buffer_empty' else callback
    expected_type = RuntimeError if callback == 'get_buffer_empty' else Boom
    assert type(exc) is expected_type
    assert len(handler_calls) == 1, handler_calls
    [context] = handler_calls
    assert context['message'] == f'Fatal error: protocol.{name}() call failed.'
    assert context['exception'] is exc
    assert context['transport'] is transport
    assert context['protocol'] is proto
    assert transport.is_closing()
    assert proto.events[-1] == 'lost' and proto.events.count('lost') == 1


# --------------------------------------------------------------------------
# EMFILE while accepting


@pytest.mark.parametrize('factory', sorted(LOOP_FACTORIES))
def test_emfile_on_accept_is_logged_and_server_recovers(factory):
    """In a child process with RLIMIT_NOFILE lowered and every fd taken,
    accept() fails with EMFILE: the loop logs asyncio's 'socket.accept() out
    of system resource' error (through the default exception handler), keeps
    serving without spinning on the error, and accepts the waiting clients
    once fds are free again (stock retries after ACCEPT_RETRY_DELAY)."""
    tests_dir = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [tests_dir] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
    child = subprocess.run(
        [sys.executable, '-c',
         f'import _netutil; _netutil.emfile_accept_child({factory!r})'],
        cwd=tests_dir, env=env, capture_output=True, text=True,
        timeout=4 * _netutil.SAFETY_TIMEOUT)
    assert child.returncode == 0, child.stderr
    report = json.loads(child.stdout.strip().splitlines()[-1])

    assert report['fill_errno'] == 'EMFILE'
    assert report['level'] == 'ERROR'
    assert report['first_line'] == 'socket.accept() out of system resource'
    assert (report['exception'], report['errno']) == ('OSError', 'EMFILE')
    assert report['serving_while_exhausted'] is True
    # Stock logs once per accept() attempt of the burst (it tries up to
    # `backlog` times per readiness event), then waits before retrying; a
    # loop retrying in a busy loop would log far more.
    # (3.13+: backlog + 1 attempts per readiness.)
    attempts = _netutil.EMFILE_BACKLOG + (1 if sys.version_info >= (3, 13)
                                          else 0)
    assert 1 <= report['resource_log_lines'] <= attempts, report
    assert report['echoes'] == [True] * _netutil.EMFILE_CLIENTS
    assert report['serving_after'] is True
    assert report['other_warnings'] == []
