"""Hostile conditions, on ferroloop and on the stock loop side by side:
signal storms during heavy I/O, the process out of fds while accepting
(then recovering), and a peer that stops reading (flow control keeps the
write buffer and memory bounded)."""

import asyncio
import errno
import hashlib
import os
import resource
import signal
import socket
import sys
import threading

import pytest

import ferroloop

LOOPS = {'ferroloop': ferroloop.new_event_loop,
         'asyncio': asyncio.new_event_loop}


@pytest.fixture(params=list(LOOPS))
def any_loop(request):
    lp = LOOPS[request.param]()
    yield lp
    lp.close()


class Echo(asyncio.Protocol):
    # Every server-side transport, to close at the end (3.11's Server.close
    # leaves them open).
    opened = []

    def connection_made(self, transport):
        self.transport = transport
        Echo.opened.append(transport)

    def data_received(self, data):
        self.transport.write(data)


async def echo_clients(loop, port, n, size):
    """n connections each echo `size` random bytes; returns their digests
    (sent, received)."""
    async def one():
        reader, writer = await asyncio.open_connection('127.0.0.1', port)
        data = os.urandom(size)
        writer.write(data)
        got = await reader.readexactly(size)
        writer.close()
        await writer.wait_closed()
        return hashlib.sha1(data).digest(), hashlib.sha1(got).digest()
    return await asyncio.gather(*(one() for _ in range(n)))


class SignalStorm:
    """A thread sending `signum` to this process in bursts until stopped (at
    least `minimum` times).  After each burst it waits for the loop's
    handler to have run once: a burst never overflows the loop's wakeup
    pipe, which the interpreter would report as an ignored BlockingIOError
    with either loop."""

    BURST = 20

    def __init__(self, signum, minimum):
        self.signum, self.minimum = signum, minimum
        self.sent = 0
        self.stop = threading.Event()
        self.progress = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def handled(self):
        self.progress.set()

    def _run(self):
        while not self.stop.is_set():
            for _ in range(self.BURST):
                os.kill(os.getpid(), self.signum)
            self.sent += self.BURST
            # A bound only: the loop runs the handler long before.
            self.progress.wait(5)
            self.progress.clear()

    async def reached(self):
        """Lets the loop run until the minimum was sent."""
        while self.sent < self.minimum:
            await asyncio.sleep(0)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.progress.set()
        self.thread.join()


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGCHLD])
def test_signal_storm_during_heavy_io(any_loop, signum):
    loop = any_loop
    caught = []
    storm = SignalStorm(signum, minimum=500)

    def on_signal():
        caught.append(signum)
        storm.handled()
    loop.add_signal_handler(signum, on_signal)

    async def main():
        server = await loop.create_server(Echo, '127.0.0.1', 0)
        port = server.sockets[0].getsockname()[1]
        with storm:
            results = await echo_clients(loop, port, 8, 2 * 1024 * 1024)
            # Subprocesses too: their own SIGCHLDs join the storm.
            procs = [await asyncio.create_subprocess_exec('/bin/true')
                     for _ in range(4)]
            codes = [await p.wait() for p in procs]
            await storm.reached()
        # The handler runs for the signals still pending after the storm.
        while len(caught) < 1:
            await asyncio.sleep(0)
        server.close()
        await server.wait_closed()
        return results, codes, storm.sent

    results, codes, sent = loop.run_until_complete(main())
    loop.remove_signal_handler(signum)
    assert all(sent_d == got_d for sent_d, got_d in results)
    assert codes == [0, 0, 0, 0]
    # Signals coalesce: at least one call, never more than were sent.
    assert 1 <= len(caught) <= sent


def _fill_fds():
    """Opens /dev/null until EMFILE; returns the fds."""
    hogs = []
    while True:
        try:
            hogs.append(os.open(os.devnull, os.O_RDONLY))
        except OSError as exc:
            assert exc.errno == errno.EMFILE
            return hogs


def test_out_of_fds_while_accepting_then_recovering(any_loop, monkeypatch):
    loop = any_loop
    # The retry delay is a constant of the stock loop (1 s); shortened so
    # the test is quick, for both loops alike.
    monkeypatch.setattr(asyncio.constants, 'ACCEPT_RETRY_DELAY', 0.05)
    reports = []
    out_of_fds = loop.create_future()

    def handler(lp, context):
        reports.append(context)
        if not out_of_fds.done():
            out_of_fds.set_result(None)
    loop.set_exception_handler(handler)

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    n_clients = 6

    async def main():
        server = await loop.create_server(Echo, '127.0.0.1', 0, backlog=16)
        port = server.sockets[0].getsockname()[1]
        hogs = []
        clients = []
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE,
                               (len(os.listdir('/proc/self/fd')) + 20, hard))
            for _ in range(n_clients):
                c = socket.create_connection(('127.0.0.1', port))
                c.setblocking(False)
                clients.append(c)
            hogs = _fill_fds()
            # The queued connections make the listening socket readable;
            # accept() fails with EMFILE.
            await out_of_fds
        finally:
            for fd in hogs:
                os.close(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        # The fds are back: accepting resumes and every client is served.
        for c in clients:
            await loop.sock_sendall(c, b'ping')
        got = [await loop.sock_recv(c, 4) for c in clients]
        for c in clients:
            c.close()
        server.close()
        while Echo.opened:
            Echo.opened.pop().close()
        await server.wait_closed()
        await asyncio.sleep(0)
        return got

    got = loop.run_until_complete(main())
    assert got == [b'ping'] * n_clients
    assert reports
    for context in reports:
        assert context['message'] == 'socket.accept() out of system resource'
        assert type(context['exception']) is OSError
        assert context['exception'].errno == errno.EMFILE


class Flood(asyncio.Protocol):
    """Writes 64 KiB chunks whenever the transport lets it."""

    CHUNK = b'x' * 65536

    def __init__(self, loop):
        self.loop = loop
        self.paused = loop.create_future()
        self.resumed = loop.create_future()
        self.pauses = 0
        self.written = 0

    def connection_made(self, transport):
        self.transport = transport
        transport.set_write_buffer_limits(high=256 * 1024)
        self.fill()

    def fill(self):
        while self.pauses == 0 or self.resumed.done():
            self.transport.write(self.CHUNK)
            self.written += len(self.CHUNK)
            if self.written >= 64 * 1024 * 1024:
                return
            if self.is_paused:
                return

    is_paused = False

    def pause_writing(self):
        self.is_paused = True
        self.pauses += 1
        if not self.paused.done():
            self.paused.set_result(None)

    def resume_writing(self):
        self.is_paused = False
        if not self.resumed.done():
            self.resumed.set_result(None)


def test_peer_that_stops_reading(any_loop):
    loop = any_loop

    async def main():
        protocols = []

        def factory():
            protocols.append(Flood(loop))
            return protocols[-1]
        server = await loop.create_server(factory, '127.0.0.1', 0)
        port = server.sockets[0].getsockname()[1]
        peer = socket.create_connection(('127.0.0.1', port))
        peer.setblocking(False)
        while not protocols:
            await asyncio.sleep(0)
        flood = protocols[0]
        await flood.paused
        buffered = flood.transport.get_write_buffer_size()
        written = flood.written
        # The peer reads nothing while the loop runs on: nothing more is
        # buffered, and the process' allocations stay flat.
        blocks = sys.getallocatedblocks()
        for _ in range(2000):
            await asyncio.sleep(0)
        assert flood.transport.get_write_buffer_size() == buffered
        assert flood.written == written
        assert sys.getallocatedblocks() - blocks < 1000
        # Bounded by the high-water mark (plus the chunk that crossed it).
        assert buffered <= 256 * 1024 + len(Flood.CHUNK)
        # The peer reads again: writing resumes.
        received = 0
        while not flood.resumed.done():
            try:
                received += len(peer.recv(1 << 20))
            except BlockingIOError:
                await asyncio.sleep(0)
        peer.close()
        flood.transport.abort()
        server.close()
        await server.wait_closed()
        await asyncio.sleep(0)
        return flood, received

    flood, received = loop.run_until_complete(main())
    assert flood.pauses >= 1
    assert received > 0
