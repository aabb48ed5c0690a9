"""Helpers shared by the TCP transport tests (test_tcp_faults, test_tcp_scale).

Every test runs once per loop factory: stock asyncio, which is the
behavioural authority, and ferroloop.  The assertions are written against
asyncio's public API only, so a test that passes on stock and fails on
ferroloop points at a difference in ferroloop.

The test modules import the `loop` and `net` fixtures from here:

    from _netutil import loop, net  # noqa: F401  (pytest fixtures)

`loop` overrides conftest's ferroloop-only fixture of the same name.

The far end of each connection (the "peer") is a plain blocking socket, so
faults can be injected with ordinary socket calls (SO_LINGER 0 resets,
shutdown(SHUT_WR), not reading).  Peer calls that may block run in a
thread; each peer socket has a timeout so that a failing test cannot hang.
"""

import asyncio
import ctypes
import gc
import json
import logging
import os
import random
import resource
import socket
import struct
import sys
import weakref

import pytest

import ferroloop


LOOP_FACTORIES = {
    'asyncio': asyncio.new_event_loop,
    'ferroloop': ferroloop.new_event_loop,
}

# Upper bound on any single await of a test: a safety net against hangs, never
# a way to synchronise.
SAFETY_TIMEOUT = 15.0

# Larger than what the kernel can absorb for a peer that does not read
# (loopback: up to 4 MiB of send buffer + the peer's receive buffer), so
# most of it stays in the transport's own write buffer.
BIG = 16 * 1024 * 1024

LOCALHOST = '127.0.0.1'


def payload(size, seed=0):
    """Deterministic non-periodic bytes: a dropped or reordered chunk shows."""
    return random.Random(seed).randbytes(size)


# --------------------------------------------------------------------------
# Fixtures


def close_loop(loop):
    if loop.is_closed():
        return
    try:
        loop.run_until_complete(asyncio.wait_for(
            loop.shutdown_default_executor(), SAFETY_TIMEOUT))
    finally:
        loop.close()


@pytest.fixture(params=sorted(LOOP_FACTORIES))
def loop(request):
    """A fresh loop from each factory: stock asyncio, then ferroloop."""
    lp = LOOP_FACTORIES[request.param]()
    yield lp
    close_loop(lp)


@pytest.fixture
def net(loop):
    """Opens connections on `loop` and closes whatever is left at the end."""
    n = Net(loop)
    yield n
    n.cleanup()


# --------------------------------------------------------------------------
# Protocols that record what the transport does to them


class Recorder(asyncio.Protocol):
    """Records every protocol callback, in order, with futures to await them.

    `events` holds callback names; consecutive 'data' entries are merged
    (the split of the byte stream into data_received calls is not
    behaviour).  Callbacks that must happen once record every call anyway,
    so a duplicate shows up in `events` instead of raising here.
    """

    live = weakref.WeakSet()  # every Recorder not yet garbage: leak checks

    def __init__(self, loop, *, keep_open_on_eof=False):
        Recorder.live.add(self)
        self.keep_open_on_eof = keep_open_on_eof
        self.transport = None
        self.events = []
        self.data = bytearray()
        self.made = loop.create_future()
        self.eof = loop.create_future()
        self.lost = loop.create_future()
        self.paused = loop.create_future()
        self.resumed = loop.create_future()
        # write buffer size seen by each callback, e.g. {'pause': [70000]}
        self.buffer_sizes = {}
        self._data_waiter = None

    async def received(self, nbytes):
        """Wait until at least nbytes have been received in total (or the
        connection is lost); returns everything received so far."""
        if len(self.data) < nbytes:
            self._data_waiter = (nbytes, self.lost.get_loop().create_future())
            await self._data_waiter[1]
        return bytes(self.data)

    def _check_data_waiter(self):
        if self._data_waiter is not None:
            nbytes, future = self._data_waiter
            if len(self.data) >= nbytes and not future.done():
                future.set_result(None)

    def _record(self, name, future=None, result=None):
        if not (name == 'data' and self.events[-1:] == ['data']):
            self.events.append(name)
        if self.transport is not None:
            try:
                size = self.transport.get_write_buffer_size()
            except Exception as exc:  # shows up in the assertion that reads it
                size = repr(exc)
            self.buffer_sizes.setdefault(name, []).append(size)
        if future is not None and not future.done():
            future.set_result(result)

    def connection_made(self, transport):
        self.transport = transport
        self._record('made', self.made, transport)

    def data_received(self, data):
        assert isinstance(data, bytes), type(data)
        self.data += data
        self._record('data')
        self._check_data_waiter()

    def eof_received(self):
        self._record('eof', self.eof)
        return self.keep_open_on_eof

    def connection_lost(self, exc):
        self._record('lost', self.lost, exc)
        if self._data_waiter is not None and not self._data_waiter[1].done():
            self._data_waiter[1].set_result(None)  # no more data will come

    def pause_writing(self):
        self._record('pause', self.paused)

    def resume_writing(self):
        self._record('resume', self.resumed)


class BufferedRecorder(Recorder, asyncio.BufferedProtocol):
    """A BufferedProtocol that hands out a small buffer, to force many
    get_buffer/buffer_updated rounds."""

    def __init__(self, loop, bufsize=1000, **kwargs):
        super().__init__(loop, **kwargs)
        self.buffer = bytearray(bufsize)
        self.get_buffer_calls = 0
        self.sizehints = set()

    def get_buffer(self, sizehint):
        self.get_buffer_calls += 1
        self.sizehints.add(type(sizehint))
        return memoryview(self.buffer)

    def buffer_updated(self, nbytes):
        self.data += self.buffer[:nbytes]
        self._record('data')
        self._check_data_waiter()

    def data_received(self, data):  # pragma: no cover - must not be called
        self._record('data_received on a BufferedProtocol')


class Echo(asyncio.Protocol):
    """Echoes everything and closes when the peer half-closes."""

    live = weakref.WeakSet()

    def __init__(self, lost=None):
        Echo.live.add(self)
        self.on_lost = lost

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def eof_received(self):
        return False  # close our side too

    def connection_lost(self, exc):
        if self.on_lost is not None:
            self.on_lost(self, exc)


# --------------------------------------------------------------------------
# Connections


def small_rcvbuf(sock):
    """Keep the kernel from absorbing much of what is written to `sock`'s
    peer; set before listen()/connect() so the TCP window honours it."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)


def reset(sock):
    """Close `sock` so that the other end gets a TCP RST, not a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                    struct.pack('ii', 1, 0))
    sock.close()


def recv_until_eof(sock):
    """Blocking: read until EOF.  Returns (data, how) where how is 'eof' or
    the name of the exception that ended the stream.  Runs in a thread."""
    chunks = bytearray()
    while True:
        try:
            chunk = sock.recv(1024 * 1024)
        except OSError as exc:
            return bytes(chunks), type(exc).__name__
        if not chunk:
            return bytes(chunks), 'eof'
        chunks += chunk


class Net:
    """Connections between `loop` and plain peer sockets, cleaned up at the
    end of the test."""

    SIDES = ('client', 'server')

    def __init__(self, loop):
        self.loop = loop
        self.transports = []
        self.peers = []
        self.servers = []

    def run(self, coro, timeout=SAFETY_TIMEOUT):
        """Run coro on the loop; the timeout is only a safety net."""
        return self.loop.run_until_complete(asyncio.wait_for(coro, timeout))

    def in_thread(self, func, *args):
        return self.loop.run_in_executor(None, func, *args)

    async def open(self, side, protocol_factory, *, peer_rcvbuf_small=False):
        """Connect the loop to a blocking peer socket.

        side='client': the loop's end comes from loop.create_connection to a
        plain listening socket.  side='server': it comes from a
        loop.create_server listener accepting a plain client socket.
        Returns (transport, protocol, peer), after connection_made.
        """
        loop = self.loop
        if side == 'client':
            listener = socket.socket()
            try:
                if peer_rcvbuf_small:
                    small_rcvbuf(listener)  # inherited by the accepted socket
                listener.bind((LOCALHOST, 0))
                listener.listen(1)
                transport, protocol = await loop.create_connection(
                    protocol_factory, *listener.getsockname())
                self.transports.append(transport)
                # The kernel completed the handshake: accept() does not block.
                peer, _ = listener.accept()
                self.peers.append(peer)
            finally:
                listener.close()
            await protocol.made
        elif side == 'server':
            accepted = loop.create_future()

            def factory():
                protocol = protocol_factory()
                if not accepted.done():
                    accepted.set_result(protocol)
                return protocol

            server = await loop.create_server(factory, LOCALHOST, 0)
            self.servers.append(server)
            peer = socket.socket()
            self.peers.append(peer)
            if peer_rcvbuf_small:
                small_rcvbuf(peer)
            # The kernel completes the handshake on its own: no blocking.
            peer.connect(server.sockets[0].getsockname())
            protocol = await accepted
            transport = await protocol.made
            self.transports.append(transport)
            server.close()  # stop listening; the accepted connection lives on
        else:
            raise ValueError(f'side must be one of {self.SIDES}, got {side!r}')
        peer.settimeout(SAFETY_TIMEOUT)
        return transport, protocol, peer

    def cleanup(self):
        for peer in self.peers:
            peer.close()
        if self.loop.is_closed():
            return
        for transport in self.transports:
            if not transport.is_closing():
                transport.abort()
        for server in self.servers:
            server.close()
        # Let the connection_lost calls scheduled above run.
        for _ in range(3):
            self.loop.run_until_complete(asyncio.sleep(0))


async def poll_barrier(loop):
    """Return once the loop has polled for I/O after this call.

    Data queued on a socket before the call is visible to that poll, so if
    the loop were going to deliver it, the delivery has happened (or is
    scheduled in the same batch, which the extra iteration runs) by the time
    this returns.  Used to check that something does NOT happen, without
    sleeping.
    """
    r, w = socket.socketpair()
    try:
        fired = loop.create_future()
        loop.add_reader(r.fileno(),
                        lambda: fired.done() or fired.set_result(None))
        try:
            w.send(b'x')
            await fired
        finally:
            loop.remove_reader(r.fileno())
        await asyncio.sleep(0)
    finally:
        r.close()
        w.close()


class LogRecords(logging.Handler):
    """Collects the records of the 'asyncio' logger while installed."""

    def __init__(self, on_record=None):
        super().__init__(logging.DEBUG)
        self.records = []
        self.on_record = on_record

    def emit(self, record):
        self.records.append(record)
        if self.on_record is not None:
            self.on_record(record)

    def __enter__(self):
        logger = logging.getLogger('asyncio')
        self._old_level = logger.level
        logger.setLevel(logging.DEBUG)
        logger.addHandler(self)
        return self

    def __exit__(self, *exc_info):
        logger = logging.getLogger('asyncio')
        logger.removeHandler(self)
        logger.setLevel(self._old_level)

    def messages(self, min_level=logging.WARNING):
        """(level, message) of the records at min_level or above, except
        debug mode's slow-callback warnings, which depend on machine speed."""
        return [(r.levelname, r.getMessage()) for r in self.records
                if r.levelno >= min_level and not is_slow_callback(r)]


def is_slow_callback(record):
    message = record.getMessage()
    return message.startswith('Executing ') and ' took ' in message


def record_handler_calls(loop):
    """Route the loop's exception handler calls into the returned list."""
    contexts = []
    loop.set_exception_handler(lambda _loop, context: contexts.append(context))
    return contexts


# --------------------------------------------------------------------------
# Resource accounting


def open_fd_count():
    return len(os.listdir('/proc/self/fd')) - 1  # minus listdir's own fd


def rss_bytes():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')


# Looked up once, at import: importing ctypes later would itself add the
# gc-tracked objects that the leak tests count.
try:
    _malloc_trim = ctypes.CDLL(None).malloc_trim
except (OSError, AttributeError):  # not glibc: plain RSS readings
    _malloc_trim = None


def settled_rss_bytes():
    """RSS after handing the allocator's free pages back to the kernel.

    glibc keeps freed heap pages mapped, in amounts that depend on what ran
    earlier in the process (the rest of the suite), so a plain RSS reading
    drifts by hundreds of KiB without any leak; malloc_trim(0) releases them
    first.  Leaked memory is still allocated, so a leak still shows.
    """
    if _malloc_trim is not None:
        _malloc_trim(0)
    return rss_bytes()


def live_count(cls):
    gc.collect()
    return len(cls.live)


def raise_fd_limit(wanted):
    """Raise RLIMIT_NOFILE's soft limit toward `wanted`: up to the hard limit,
    and past it when the process may (CAP_SYS_RESOURCE).  Returns the soft
    limit in force afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            pass
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


# --------------------------------------------------------------------------
# EMFILE while accepting: runs in a child process (it lowers RLIMIT_NOFILE)


EMFILE_CLIENTS = 3
EMFILE_BACKLOG = 16


def emfile_accept_child(factory_name):
    """Child process body for the EMFILE test; prints a JSON report.

    Starts an echo server, lowers RLIMIT_NOFILE and fills every free fd so
    that accept() fails with EMFILE, connects clients (their sockets were
    made beforehand), waits for the loop's log line, frees the fds and
    checks that every client is then served.
    """
    import errno

    loop = LOOP_FACTORIES[factory_name]()
    report = {}

    async def main():
        logged = loop.create_future()

        def on_record(record):
            if (record.getMessage().startswith(
                    'socket.accept() out of system resource')
                    and not logged.done()):
                logged.set_result(record)

        with LogRecords(on_record) as log:
            server = await loop.create_server(
                Echo, LOCALHOST, 0, backlog=EMFILE_BACKLOG)
            address = server.sockets[0].getsockname()
            clients = [socket.socket() for _ in range(EMFILE_CLIENTS)]
            await asyncio.sleep(0)

            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            highest = max(int(fd) for fd in os.listdir('/proc/self/fd'))
            resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 16, hard))
            fillers = []
            try:
                while True:
                    fillers.append(os.open(os.devnull, os.O_RDONLY))
            except OSError as exc:
                report['fill_errno'] = errno.errorcode.get(exc.errno)
            try:
                for client in clients:
                    client.connect(address)  # completed by the kernel
                record = await asyncio.wait_for(logged, SAFETY_TIMEOUT)
                # Still out of fds here: the server must not have given up.
                report['serving_while_exhausted'] = server.is_serving()
            finally:
                for fd in fillers:
                    os.close(fd)
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

            exc = record.exc_info[1] if record.exc_info else None
            report['level'] = record.levelname
            report['first_line'] = record.getMessage().splitlines()[0]
            report['exception'] = type(exc).__name__ if exc else None
            report['errno'] = errno.errorcode.get(getattr(exc, 'errno', None))

            echoes = []
            for i, client in enumerate(clients):
                client.setblocking(False)
                message = b'ping %d' % i
                await loop.sock_sendall(client, message)
                reply = b''
                while len(reply) < len(message):
                    chunk = await asyncio.wait_for(
                        loop.sock_recv(client, 100), SAFETY_TIMEOUT)
                    if not chunk:
                        break
                    reply += chunk
                echoes.append(reply == message)
                client.close()
            report['echoes'] = echoes
            report['serving_after'] = server.is_serving()
            report['resource_log_lines'] = sum(
                1 for r in log.records if r.getMessage().startswith(
                    'socket.accept() out of system resource'))
            report['other_warnings'] = [
                m for m in log.messages() if not m[1].startswith(
                    'socket.accept() out of system resource')]
            server.close()
            await server.wait_closed()

    try:
        loop.run_until_complete(main())
    finally:
        close_loop(loop)
    sys.stdout.write(json.dumps(report) + '\n')
