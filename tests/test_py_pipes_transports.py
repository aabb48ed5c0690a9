"""loop.connect_read_pipe / connect_write_pipe: pipes, FIFOs, sockets and
character devices, EOF, flow control, errors and reprs, on stock asyncio and
ferroloop alike."""

import asyncio
import hashlib
import os
import re
import socket

import pytest

from _procutil import loop, run, is_ferroloop  # noqa: F401  (pytest fixture)


class ReadPipeRecorder(asyncio.Protocol):
    """Records a read pipe's callbacks; `lost` resolves on connection_lost."""

    def __init__(self, loop):
        self.events = []
        self.data = bytearray()
        self.data_arrived = asyncio.Event()
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append('connection_made')

    def data_received(self, data):
        if self.events[-1] != 'data':
            self.events.append('data')
        self.data += data
        self.data_arrived.set()

    def eof_received(self):
        self.events.append('eof')

    def connection_lost(self, exc):
        self.events.append(('connection_lost', exc))
        self.lost.set_result(exc)

    async def wait_for_size(self, size):
        while len(self.data) < size:
            self.data_arrived.clear()
            await self.data_arrived.wait()


class WritePipeRecorder(asyncio.BaseProtocol):
    """Records a write pipe's callbacks, and flow-control transitions."""

    def __init__(self, loop):
        self.events = []
        self.paused = loop.create_future()
        self.resumed = loop.create_future()
        self.lost = loop.create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append('connection_made')

    def pause_writing(self):
        self.events.append('pause_writing')
        if not self.paused.done():
            self.paused.set_result(None)

    def resume_writing(self):
        self.events.append('resume_writing')
        if not self.resumed.done():
            self.resumed.set_result(None)

    def connection_lost(self, exc):
        self.events.append(('connection_lost', exc))
        self.lost.set_result(exc)


def repr_without_class(transport):
    # The stock classes are _UnixReadPipeTransport/_UnixWritePipeTransport;
    # ferroloop's may be named otherwise.  The rest must match.
    return re.sub(r'^<\w+ ', '<', repr(transport))


@pytest.fixture
def pipe_files():
    """(read file, write file) of an os.pipe(), closed after the test."""
    r, w = os.pipe()
    files = (open(r, 'rb', buffering=0), open(w, 'wb', buffering=0))
    yield files
    for f in files:
        f.close()


# --------------------------------------------------------------------------
# Reading


def test_read_pipe_delivers_data_then_eof(loop, pipe_files):
    rfile, wfile = pipe_files

    async def main():
        proto = ReadPipeRecorder(loop)
        transport, protocol = await loop.connect_read_pipe(
            lambda: proto, rfile)
        assert protocol is proto and proto.transport is transport
        assert proto.events == ['connection_made']
        assert transport.is_reading()
        assert transport.get_extra_info('pipe') is rfile

        os.write(wfile.fileno(), b'hello ')
        await proto.wait_for_size(6)
        os.write(wfile.fileno(), b'world')
        await proto.wait_for_size(11)
        wfile.close()
        assert await proto.lost is None
        return proto, transport

    proto, transport = run(loop, main())
    assert bytes(proto.data) == b'hello world'
    assert proto.events == ['connection_made', 'data', 'eof',
                            ('connection_lost', None)]
    assert transport.is_closing()
    # The transport closes the pipe once connection_lost has run.
    assert rfile.closed


def test_read_pipe_pause_and_resume_reading(loop, pipe_files):
    rfile, wfile = pipe_files

    async def main():
        proto = ReadPipeRecorder(loop)
        transport, _ = await loop.connect_read_pipe(lambda: proto, rfile)
        transport.pause_reading()
        assert not transport.is_reading()
        os.write(wfile.fileno(), b'queued in the pipe')
        # Several iterations: a watched fd would have been read by now.
        for _ in range(5):
            await asyncio.sleep(0)
        assert proto.data == b''
        transport.resume_reading()
        assert transport.is_reading()
        await proto.wait_for_size(18)
        transport.close()
        assert not transport.is_reading()
        return proto, await proto.lost

    proto, exc = run(loop, main())
    assert proto.data == b'queued in the pipe'
    assert exc is None
    # close() is not an EOF from the peer.
    assert 'eof' not in proto.events


def test_read_pipe_large_transfer_keeps_order(loop, pipe_files):
    rfile, wfile = pipe_files
    payload = os.urandom(3 * 1024 * 1024)

    async def main():
        proto = ReadPipeRecorder(loop)
        await loop.connect_read_pipe(lambda: proto, rfile)
        # A blocking writer in a thread: more than the pipe can hold.
        await loop.run_in_executor(None, wfile.write, payload)
        wfile.close()
        await proto.lost
        return proto

    proto = run(loop, main())
    assert hashlib.sha256(proto.data).digest() == \
        hashlib.sha256(payload).digest()


# --------------------------------------------------------------------------
# Writing and flow control


def test_write_pipe_flow_control_and_eof(loop, pipe_files):
    rfile, wfile = pipe_files
    payload = os.urandom(2 * 1024 * 1024)

    async def main():
        wproto = WritePipeRecorder(loop)
        wtransport, _ = await loop.connect_write_pipe(lambda: wproto, wfile)
        assert wtransport.can_write_eof()
        wtransport.set_write_buffer_limits(high=64 * 1024)
        assert wtransport.get_write_buffer_limits() == (16 * 1024, 64 * 1024)

        # Nobody reads yet: the pipe fills (64 KiB), the rest is buffered.
        wtransport.write(payload)
        await wproto.paused
        buffered = wtransport.get_write_buffer_size()
        assert 0 < buffered <= len(payload)

        rproto = ReadPipeRecorder(loop)
        await loop.connect_read_pipe(lambda: rproto, rfile)
        await wproto.resumed
        # Closing with data buffered: the data is still written, then EOF.
        wtransport.close()
        assert wtransport.is_closing()
        assert await wproto.lost is None
        assert await rproto.lost is None
        return wproto, rproto, wtransport

    wproto, rproto, wtransport = run(loop, main())
    assert rproto.data == payload
    assert wproto.events == ['connection_made', 'pause_writing',
                             'resume_writing', ('connection_lost', None)]
    assert rproto.events[-2:] == ['eof', ('connection_lost', None)]
    assert wtransport.get_write_buffer_size() == 0
    assert wfile.closed


def test_write_pipe_write_eof(loop, pipe_files):
    rfile, wfile = pipe_files

    async def main():
        wproto = WritePipeRecorder(loop)
        wtransport, _ = await loop.connect_write_pipe(lambda: wproto, wfile)
        rproto = ReadPipeRecorder(loop)
        await loop.connect_read_pipe(lambda: rproto, rfile)
        wtransport.write(b'a')
        wtransport.writelines([b'b', bytearray(b'c'), memoryview(b'd')])
        wtransport.write_eof()
        assert wtransport.is_closing()
        await wproto.lost
        await rproto.lost
        return rproto

    assert run(loop, main()).data == b'abcd'


def test_write_pipe_reader_gone_without_buffered_data(loop, pipe_files):
    rfile, wfile = pipe_files

    async def main():
        wproto = WritePipeRecorder(loop)
        wtransport, _ = await loop.connect_write_pipe(lambda: wproto, wfile)
        # The transport watches its fd for readability to learn this.
        rfile.close()
        exc = await wproto.lost
        return exc, wtransport

    exc, wtransport = run(loop, main())
    assert exc is None
    assert wtransport.is_closing()


def test_write_pipe_reader_gone_with_buffered_data(loop, pipe_files):
    rfile, wfile = pipe_files

    async def main():
        wproto = WritePipeRecorder(loop)
        wtransport, _ = await loop.connect_write_pipe(lambda: wproto, wfile)
        wtransport.write(b'x' * (1024 * 1024))
        assert wtransport.get_write_buffer_size() > 0
        rfile.close()
        exc = await wproto.lost
        # Writes after the loss are dropped silently.
        wtransport.write(b'more')
        return exc, wtransport

    exc, wtransport = run(loop, main())
    assert isinstance(exc, BrokenPipeError)
    assert wtransport.get_write_buffer_size() == 0


def test_write_pipe_abort_drops_buffer(loop, pipe_files):
    rfile, wfile = pipe_files

    async def main():
        wproto = WritePipeRecorder(loop)
        wtransport, _ = await loop.connect_write_pipe(lambda: wproto, wfile)
        wtransport.write(b'x' * (1024 * 1024))
        wtransport.abort()
        assert wtransport.get_write_buffer_size() == 0
        return await wproto.lost

    assert run(loop, main()) is None


# --------------------------------------------------------------------------
# Other pipe-like files


def test_fifo(loop, tmp_path):
    path = tmp_path / 'fifo'
    os.mkfifo(path)
    # Non-blocking open: the read end first, or the write end gets ENXIO.
    rfile = open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), 'rb', 0)
    wfile = open(os.open(path, os.O_WRONLY | os.O_NONBLOCK), 'wb', 0)

    async def main():
        rproto = ReadPipeRecorder(loop)
        await loop.connect_read_pipe(lambda: rproto, rfile)
        wproto = WritePipeRecorder(loop)
        wtransport, _ = await loop.connect_write_pipe(lambda: wproto, wfile)
        wtransport.write(b'through the fifo')
        wtransport.close()
        await wproto.lost
        await rproto.lost
        return rproto

    rproto = run(loop, main())
    assert rproto.data == b'through the fifo'
    assert rproto.events[-2:] == ['eof', ('connection_lost', None)]


def test_socket_pair_as_pipes(loop):
    a, b = socket.socketpair()

    async def main():
        rproto = ReadPipeRecorder(loop)
        await loop.connect_read_pipe(lambda: rproto, a)
        wproto = WritePipeRecorder(loop)
        wtransport, _ = await loop.connect_write_pipe(lambda: wproto, b)
        wtransport.write(b'over a socket')
        wtransport.close()
        await wproto.lost
        await rproto.lost
        return rproto

    try:
        assert run(loop, main()).data == b'over a socket'
    finally:
        a.close()
        b.close()


def test_pty_master_reads_what_the_slave_writes(loop):
    master, slave = os.openpty()
    mfile = open(master, 'rb', 0)

    async def main():
        proto = ReadPipeRecorder(loop)
        transport, _ = await loop.connect_read_pipe(lambda: proto, mfile)
        os.write(slave, b'tty line\n')
        # The line discipline may hand the line over in more than one read:
        # wait for all of it.
        while not proto.data.endswith(b'\r\n'):
            proto.data_arrived.clear()
            await proto.data_arrived.wait()
        transport.close()
        await proto.lost
        return proto

    try:
        # The terminal turns \n into \r\n.
        assert run(loop, main()).data == b'tty line\r\n'
    finally:
        os.close(slave)


def test_character_device_write_pipe(loop):
    # /dev/null cannot be polled (epoll says EPERM), but it never needs to
    # be: every write completes at once.
    devnull = open(os.devnull, 'wb', 0)

    async def main():
        wproto = WritePipeRecorder(loop)
        wtransport, _ = await loop.connect_write_pipe(lambda: wproto, devnull)
        wtransport.write(b'x' * (1024 * 1024))
        assert wtransport.get_write_buffer_size() == 0
        wtransport.close()
        return await wproto.lost

    assert run(loop, main()) is None


# --------------------------------------------------------------------------
# Errors


def test_read_pipe_rejects_a_regular_file(loop, tmp_path):
    path = tmp_path / 'regular'
    path.write_bytes(b'data')

    async def main():
        with open(path, 'rb') as f:
            with pytest.raises(ValueError) as info:
                await loop.connect_read_pipe(asyncio.Protocol, f)
            # The caller's file stays open: it was never adopted.
            assert not f.closed
        return str(info.value)

    assert run(loop, main()) == "Pipe transport is for pipes/sockets only."


def test_write_pipe_rejects_a_regular_file(loop, tmp_path):
    async def main():
        with open(tmp_path / 'regular', 'wb') as f:
            with pytest.raises(ValueError) as info:
                await loop.connect_write_pipe(asyncio.BaseProtocol, f)
        return str(info.value)

    assert run(loop, main()) == (
        "Pipe transport is only for pipes, sockets and character devices")


# The transport's __init__ fails before it sets _closing, so its __del__
# then fails in repr(): the stock loop does that too.
@pytest.mark.filterwarnings(
    'ignore::pytest.PytestUnraisableExceptionWarning')
def test_object_without_fileno(loop):
    async def main():
        with pytest.raises(AttributeError):
            await loop.connect_read_pipe(asyncio.Protocol, 42)
        with pytest.raises(AttributeError):
            await loop.connect_write_pipe(asyncio.BaseProtocol, 42)

    run(loop, main())


def test_cancelled_connect_closes_the_transport(loop, pipe_files):
    rfile, _ = pipe_files

    async def main():
        proto = ReadPipeRecorder(loop)
        task = asyncio.ensure_future(
            loop.connect_read_pipe(lambda: proto, rfile))
        # One iteration builds the transport; then cancel the wait for
        # connection_made.
        await asyncio.sleep(0)
        assert proto.events == []
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # connect_read_pipe closed the transport on its way out.
        assert await proto.lost is None
        return proto

    proto = run(loop, main())
    assert proto.events == ['connection_made', ('connection_lost', None)]
    assert rfile.closed


# --------------------------------------------------------------------------
# repr


def test_read_pipe_repr(loop, pipe_files):
    rfile, _ = pipe_files
    fd = rfile.fileno()

    async def main():
        proto = ReadPipeRecorder(loop)
        transport, _ = await loop.connect_read_pipe(lambda: proto, rfile)
        reprs = [repr_without_class(transport)]
        transport.pause_reading()
        reprs.append(repr_without_class(transport))
        transport.close()
        reprs.append(repr_without_class(transport))
        await proto.lost
        reprs.append(repr_without_class(transport))
        return reprs

    assert run(loop, main()) == [
        f'<fd={fd} polling>',
        f'<fd={fd} idle>',
        f'<closing fd={fd} idle>',
        f'<closed fd={fd} closed>',
    ]


def test_write_pipe_repr(loop, pipe_files):
    _, wfile = pipe_files
    fd = wfile.fileno()

    async def main():
        proto = WritePipeRecorder(loop)
        transport, _ = await loop.connect_write_pipe(lambda: proto, wfile)
        reprs = [repr_without_class(transport)]
        transport.write(b'x' * (1024 * 1024))
        size = transport.get_write_buffer_size()
        reprs.append(repr_without_class(transport))
        transport.abort()
        await proto.lost
        reprs.append(repr_without_class(transport))
        return size, reprs

    size, reprs = run(loop, main())
    assert reprs == [
        f'<fd={fd} idle bufsize=0>',
        f'<fd={fd} polling bufsize={size}>',
        f'<closed fd={fd} closed>',
    ]


def test_repr_of_open_transports_after_loop_close(loop, pipe_files):
    rfile, wfile = pipe_files

    async def main():
        rt, _ = await loop.connect_read_pipe(asyncio.Protocol, rfile)
        wt, _ = await loop.connect_write_pipe(asyncio.BaseProtocol, wfile)
        return rt, wt

    rt, wt = run(loop, main())
    loop.close()
    assert repr_without_class(rt) == f'<fd={rfile.fileno()} open>'
    assert repr_without_class(wt) == f'<fd={wfile.fileno()} open>'
    # The fixture closes the files; keep the transports from warning.
    rt._pipe = wt._pipe = None


def test_ferroloop_pipe_transports_are_asyncio_transports(loop, pipe_files):
    rfile, wfile = pipe_files

    async def main():
        rt, _ = await loop.connect_read_pipe(asyncio.Protocol, rfile)
        wt, _ = await loop.connect_write_pipe(asyncio.BaseProtocol, wfile)
        rt.close()
        wt.close()
        return rt, wt

    rt, wt = run(loop, main())
    assert isinstance(rt, asyncio.ReadTransport)
    assert isinstance(wt, asyncio.WriteTransport)
    if is_ferroloop(loop):
        assert not hasattr(loop, '_selector')


def test_stream_reader_over_a_read_pipe(loop, pipe_files):
    rfile, wfile = pipe_files

    async def main():
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), rfile)
        os.write(wfile.fileno(), b'line 1\nline 2\n')
        first = await reader.readline()
        wfile.close()
        rest = await reader.read()
        return first, rest, reader.at_eof()

    assert run(loop, main()) == (b'line 1\n', b'line 2\n', True)

