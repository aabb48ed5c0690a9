"""loop.sock_sendfile and loop.sendfile over loopback TCP: the os.sendfile
path, the read-and-send fallback, file positions afterwards (also after a
cancellation), transports paused around the transfer, and the argument
checks (compared with the stock loop's)."""

import asyncio
import io
import os
import socket

import pytest

from asyncio import constants

from test_py_tcp_support import Collect, loop, run  # noqa: F401
from test_py_tcp_connect import both_loops

DATA = bytes(range(256)) * 4000 + b'tail'  # ~1 MiB, not block-aligned


@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / 'data.bin'
    path.write_bytes(DATA)
    with open(path, 'rb') as f:
        yield f


@pytest.fixture
def sendfile_calls(monkeypatch):
    """Counts os.sendfile() calls (the zero-copy path)."""
    calls = []
    real = os.sendfile

    def counting(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(os, 'sendfile', counting)
    return calls


class Sink:
    """Protocol factory of a server whose connections collect `expected`
    bytes; `first` resolves to the first connection's protocol."""

    def __init__(self, loop, expected):
        self.loop = loop
        self.expected = expected
        self.protos = []
        self.first = loop.create_future()

    def __call__(self):
        proto = Collect(self.loop, until=self.expected)
        self.protos.append(proto)
        if not self.first.done():
            self.first.set_result(proto)
        return proto

    async def received(self):
        return await (await self.first).got_all


async def sink_server(loop, expected):
    sink = Sink(loop, expected)
    server = await loop.create_server(sink, '127.0.0.1', 0)
    return server, sink


async def connected_socket(loop, server):
    sock = socket.socket()
    sock.setblocking(False)
    await loop.sock_connect(sock, server.sockets[0].getsockname())
    return sock


async def finish(server, sink):
    for proto in sink.protos:
        await proto.made
        proto.transport.close()
        await proto.lost
    server.close()
    await server.wait_closed()


# -- sock_sendfile ------------------------------------------------------------


def test_sock_sendfile_whole_file(loop, data_file, sendfile_calls):
    async def main():
        server, sink = await sink_server(loop, len(DATA))
        with await connected_socket(loop, server) as sock:
            sent = await loop.sock_sendfile(sock, data_file)
            received = await sink.received()
        await finish(server, sink)
        return sent, received

    sent, received = run(loop, main())
    assert sent == len(DATA)
    assert received == DATA
    assert data_file.tell() == len(DATA)
    assert sendfile_calls  # the zero-copy path was taken


def test_sock_sendfile_offset_and_count(loop, data_file, sendfile_calls):
    async def main():
        server, sink = await sink_server(loop, 5000)
        with await connected_socket(loop, server) as sock:
            sent = await loop.sock_sendfile(sock, data_file, 1000, 5000)
            received = await sink.received()
        await finish(server, sink)
        return sent, received

    sent, received = run(loop, main())
    assert (sent, received) == (5000, DATA[1000:6000])
    assert data_file.tell() == 6000


def test_sock_sendfile_empty_file(loop, tmp_path, sendfile_calls):
    empty = tmp_path / 'empty'
    empty.write_bytes(b'')

    async def main():
        server, sink = await sink_server(loop, 1)
        with open(empty, 'rb') as f, await connected_socket(loop,
                                                           server) as sock:
            sent = await loop.sock_sendfile(sock, f)
            position = f.tell()
        await finish(server, sink)
        return sent, position

    assert run(loop, main()) == (0, 0)
    assert not sendfile_calls


def test_sock_sendfile_falls_back_for_non_regular_files(loop,
                                                         sendfile_calls):
    source = io.BytesIO(DATA)

    async def main():
        server, sink = await sink_server(loop, len(DATA) - 10)
        with await connected_socket(loop, server) as sock:
            with pytest.raises(asyncio.SendfileNotAvailableError,
                               match='not a regular file'):
                await loop.sock_sendfile(sock, source, fallback=False)
            sent = await loop.sock_sendfile(sock, source, 10)
            received = await sink.received()
        await finish(server, sink)
        return sent, received

    sent, received = run(loop, main())
    assert (sent, received) == (len(DATA) - 10, DATA[10:])
    assert source.tell() == len(DATA)
    assert not sendfile_calls


def test_sock_sendfile_mixed_with_sendall(loop, data_file):
    head, tail = b'head' * 1000, b'tail' * 1000
    expected = head + DATA + tail

    async def main():
        server, sink = await sink_server(loop, len(expected))
        with await connected_socket(loop, server) as sock:
            await loop.sock_sendall(sock, head)
            await loop.sock_sendfile(sock, data_file)
            await loop.sock_sendall(sock, tail)
            received = await sink.received()
        await finish(server, sink)
        return received

    assert run(loop, main()) == expected


def test_sock_sendfile_cancelled_midway_keeps_file_position(
        loop, data_file, monkeypatch):
    # Cancelled after the first chunk, while it waits for writability
    # before the next: the file ends up just past what was sent.
    first_chunk = loop.create_future()
    real_sendfile = os.sendfile

    def sendfile(*args):
        sent = real_sendfile(*args)
        if not first_chunk.done():
            first_chunk.set_result(sent)
        return sent

    monkeypatch.setattr(os, 'sendfile', sendfile)

    async def main():
        with socket.socket() as listener:
            listener.bind(('127.0.0.1', 0))
            listener.listen()
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            sock.setblocking(False)
            await loop.sock_connect(sock, listener.getsockname())
            peer, _ = listener.accept()
        with sock, peer:
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            task = loop.create_task(loop.sock_sendfile(sock, data_file))
            assert 0 < await first_chunk < len(DATA)
            assert loop._is_watching(sock.fileno(), False)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert not loop._is_watching(sock.fileno(), False)
            position = data_file.tell()
            sock.close()
            peer.setblocking(False)
            received = bytearray()
            while chunk := await loop.sock_recv(peer, 65536):
                received += chunk
        return position, bytes(received)

    position, received = run(loop, main())
    assert 0 < position < len(DATA)
    assert received == DATA[:position]


SOCK_SENDFILE_ARG_ERRORS = [
    dict(mode='text'),
    dict(sock='DGRAM'),
    dict(count=0),
    dict(count='5'),
    dict(offset=-1),
    dict(offset=1.5),
]


@pytest.mark.parametrize('case', SOCK_SENDFILE_ARG_ERRORS,
                         ids=lambda kw: '-'.join(f'{k}={v}'
                                                 for k, v in kw.items()))
def test_sock_sendfile_argument_errors_match_asyncio(loop, tmp_path, case):
    path = tmp_path / 'f'
    path.write_bytes(b'x')
    results = {}
    for name, lp in both_loops(loop):
        kind = socket.SOCK_DGRAM if case.get('sock') else socket.SOCK_STREAM
        with socket.socket(type=kind) as sock, open(
                path, 'r' if case.get('mode') else 'rb') as f:
            sock.setblocking(False)
            kwargs = {k: v for k, v in case.items()
                      if k in ('count', 'offset')}
            with pytest.raises(Exception) as info:
                lp.run_until_complete(lp.sock_sendfile(sock, f, **kwargs))
        results[name] = (type(info.value), str(info.value))
    assert results['ferroloop'] == results['asyncio']


# -- sendfile on a transport --------------------------------------------------


async def transport_pair(loop, expected):
    """A client transport and the server protocol receiving from it."""
    server, sink = await sink_server(loop, expected)
    transport, client = await loop.create_connection(
        lambda: Collect(loop, until=3), *server.sockets[0].getsockname())
    return server, sink, transport, client


def test_transport_sendfile_with_data_around_it(loop, data_file,
                                               sendfile_calls):
    before, after = b'<' * 10000, b'>' * 10000
    expected = before + DATA + after

    async def main():
        server, sink, transport, client = await transport_pair(
            loop, len(expected))
        transport.write(before)
        sent = await loop.sendfile(transport, data_file)
        transport.write(after)
        received = await sink.received()
        # Reading was resumed: the client still receives.
        (await sink.first).transport.write(b'ack')
        assert await client.got_all == b'ack'
        # Registered as the fd's owner again.
        assert loop._transports[
            transport.get_extra_info('socket').fileno()] is transport
        transport.close()
        await client.lost
        await finish(server, sink)
        return sent, received

    sent, received = run(loop, main())
    assert sent == len(DATA)
    assert received == expected
    assert data_file.tell() == len(DATA)
    assert sendfile_calls


def test_transport_write_refused_while_sendfile_runs(loop, data_file):
    async def main():
        server, sink, transport, client = await transport_pair(
            loop, len(DATA))
        started = loop.create_future()

        async def send():
            started.set_result(None)
            return await loop.sendfile(transport, data_file)

        task = loop.create_task(send())
        # The task's step that resolved `started` went on into sendfile,
        # up to its first wait.
        await started
        with pytest.raises(RuntimeError, match='sendfile is in progress'):
            transport.write(b'interleaved')
        sent = await task
        received = await sink.received()
        transport.close()
        await client.lost
        await finish(server, sink)
        return sent, received

    assert run(loop, main()) == (len(DATA), DATA)


def test_transport_sendfile_fallback(loop, data_file, sendfile_calls):
    async def not_available(transp, file, offset, count):
        raise asyncio.SendfileNotAvailableError('forced')

    loop._sendfile_native = not_available

    async def main():
        server, sink, transport, client = await transport_pair(
            loop, 3000)
        with pytest.raises(asyncio.SendfileNotAvailableError,
                           match='forced'):
            await loop.sendfile(transport, data_file, fallback=False)
        transport.set_write_buffer_limits(high=1024)  # paced by drain()
        sent = await loop.sendfile(transport, data_file, 500, 3000)
        received = await sink.received()
        # The user's protocol is back in place and reading again.
        assert transport.get_protocol() is client
        (await sink.first).transport.write(b'ack')
        assert await client.got_all == b'ack'
        transport.close()
        await client.lost
        await finish(server, sink)
        return sent, received

    sent, received = run(loop, main())
    assert (sent, received) == (3000, DATA[500:3500])
    assert data_file.tell() == 3500
    assert not sendfile_calls


def test_transport_sendfile_on_closing_transport(loop, data_file):
    async def main():
        server, sink, transport, client = await transport_pair(loop, 1)
        transport.close()
        with pytest.raises(RuntimeError, match='Transport is closing'):
            await loop.sendfile(transport, data_file)
        await client.lost
        await finish(server, sink)

    run(loop, main())
    assert data_file.tell() == 0


class FakeTransport:
    def __init__(self, mode):
        if mode is not None:
            self._sendfile_compatible = mode

    def is_closing(self):
        return False

    def __repr__(self):
        return '<FakeTransport>'


def test_transport_modes(loop):
    with pytest.raises(RuntimeError, match='sendfile is not supported for '
                                           'transport <FakeTransport>'):
        run(loop, loop.sendfile(FakeTransport(None), None))
    with pytest.raises(RuntimeError, match='fallback is disabled'):
        run(loop, loop.sendfile(
            FakeTransport(constants._SendfileMode.FALLBACK), None,
            fallback=False))


def test_peer_closing_midway_is_a_connection_error(loop, data_file):
    async def main():
        protos = []

        def factory():
            # Closes after the first chunk: the rest cannot be sent.
            proto = Collect(loop, until=1)
            proto.got_all.add_done_callback(
                lambda _: proto.transport.close())
            protos.append(proto)
            return proto

        server = await loop.create_server(factory, '127.0.0.1', 0)
        transport, client = await loop.create_connection(
            lambda: Collect(loop), *server.sockets[0].getsockname())
        transport.get_extra_info('socket').setsockopt(
            socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        with pytest.raises(ConnectionError):
            await loop.sendfile(transport, data_file)
        await client.lost
        server.close()
        await server.wait_closed()

    run(loop, main())
    assert 0 < data_file.tell() < len(DATA)
