"""A mixed asyncio workload: TCP echo, TLS echo, UDP echo, subprocesses and
timers on one loop, with a record of everything that failed and how it was
reported.  Used by the fault-injection run (faults.py) and the soak
(soak.py).

Every report must be the stock loop's (selector_events / sslproto /
base_events) for the same errno:

* EINTR and EAGAIN never reach a protocol or the exception handler: the
  call is retried or the fd is not ready;
* an OSError reaching connection_lost(), error_received(), an awaiting
  caller or the exception handler is the errno's own OSError subclass
  (ConnectionResetError for ECONNRESET, BrokenPipeError for EPIPE, OSError
  for ENOBUFS/ENOMEM, ...), with that errno;
* stream transports report OSErrors to connection_lost(exc) only (the stock
  _fatal_error logs them in debug mode, never to the exception handler);
  datagram transports to error_received(exc), staying open;
* accept() failing with EMFILE/ENFILE/ENOBUFS/ENOMEM goes to the exception
  handler as 'socket.accept() out of system resource' and the server keeps
  accepting afterwards.

A connection that no fault hit must get every byte of its echo back.
"""

import asyncio
import errno
import os
import random
import sys
import time

_TRANSIENT = (errno.EINTR, errno.EAGAIN)
_ACCEPT_RESOURCE = 'socket.accept() out of system resource'


def count_fds():
    return len(os.listdir('/proc/self/fd'))


def stock_type(exc):
    """The OSError subclass Python picks for exc's errno."""
    return type(OSError(exc.errno, 'x'))


class Record:
    """What happened in a run, and every departure from the stock rules."""

    def __init__(self):
        self.ok = {}         # kind -> successful operations
        self.hit = {}        # kind -> operations ended by a fault
        self.reported = {}   # how failures were reported -> count
        self.violations = []
        self.stalled = 0       # clients that got no answer in time
        self.poller_faults = 0  # epoll_ctl failures reported to the handler
        self.unfinished = []   # subprocess transports that never finished

    def count(self, table, key, n=1):
        table[key] = table.get(key, 0) + n

    def check_oserror(self, where, exc):
        """exc reached `where`: it must be a stock-shaped OSError."""
        if isinstance(exc, OSError) and exc.errno is not None:
            self.count(self.reported,
                       f'{where}: {type(exc).__name__}'
                       f'({errno.errorcode.get(exc.errno, exc.errno)})')
            if exc.errno in _TRANSIENT:
                self.violations.append(f'{where}: transient {exc!r} surfaced')
            elif type(exc) is not stock_type(exc):
                self.violations.append(
                    f'{where}: {type(exc).__name__} for errno {exc.errno}, '
                    f'stock raises {stock_type(exc).__name__}')
            return True
        if isinstance(exc, ConnectionError) and exc.errno is None:
            # Made by the stock code itself (streams, sslproto) for a
            # connection lost under it, e.g. ConnectionResetError('Connection
            # lost').
            self.count(self.reported, f'{where}: {type(exc).__name__}()')
            return True
        return False

    def handler(self, loop, context):
        exc = context.get('exception')
        msg = context.get('message')
        if msg == _ACCEPT_RESOURCE:
            if not (isinstance(exc, OSError) and exc.errno in (
                    errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)):
                self.violations.append(f'accept report with {exc!r}')
            self.count(self.reported, f'handler: {msg} '
                       f'({errno.errorcode.get(getattr(exc, "errno", 0))})')
            return
        if exc is not None and self.check_oserror(f'handler[{msg}]', exc):
            if (exc.errno in (errno.ENOMEM, errno.ENOSPC)
                    and str(msg).startswith('Exception in callback')):
                # A registration the poller refused: as in the stock loop,
                # that transport never hears from its fd again.
                self.poller_faults += 1
            return
        self.violations.append(f'unexpected handler call: {msg!r} {exc!r}')

    def summary(self):
        return {'ok': self.ok, 'hit': self.hit, 'reported': self.reported,
                'stalled': self.stalled, 'poller_faults': self.poller_faults,
                'unfinished': len(self.unfinished),
                'violations': self.violations}

    async def bounded(self, job, timeout):
        """job, or a stall once timeout passed (a bound, not a schedule)."""
        try:
            await asyncio.wait_for(job, timeout)
        except asyncio.TimeoutError:
            self.stalled += 1


class EchoServer(asyncio.Protocol):
    """Echoes; remembers how its connection ended."""

    def __init__(self, record, live, kind):
        self.record, self.live, self.kind = record, live, kind

    def connection_made(self, transport):
        self.transport = transport
        self.live.add(transport)

    def data_received(self, data):
        self.transport.write(data)

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        self.live.discard(self.transport)
        if exc is not None and not self.record.check_oserror(
                f'{self.kind} server connection_lost', exc):
            self.record.violations.append(
                f'{self.kind} server connection_lost({exc!r})')


class UdpEcho(asyncio.DatagramProtocol):
    def __init__(self, record, kind):
        self.record, self.kind = record, kind
        self.waiters = {}

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        if self.kind == 'udp server':
            self.transport.sendto(data, addr)
            return
        waiter = self.waiters.pop(data, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(data)

    def error_received(self, exc):
        if not self.record.check_oserror(f'{self.kind} error_received', exc):
            self.record.violations.append(f'error_received({exc!r})')


class Workload:
    """Servers set up once; run_round() drives one batch of clients."""

    def __init__(self, loop, record, *, tls=None, seed=0,
                 op_timeout=10.0):
        self.loop, self.record, self.tls = loop, record, tls
        self.rng = random.Random(seed)
        self.op_timeout = op_timeout
        self.live = set()
        self.servers = []

    async def start(self):
        loop, rec = self.loop, self.record
        tcp = await loop.create_server(
            lambda: EchoServer(rec, self.live, 'tcp'), '127.0.0.1', 0)
        self.servers.append(tcp)
        self.tcp_port = tcp.sockets[0].getsockname()[1]
        if self.tls is not None:
            tls = await loop.create_server(
                lambda: EchoServer(rec, self.live, 'tls'), '127.0.0.1', 0,
                ssl=self.tls.server_context())
            self.servers.append(tls)
            self.tls_port = tls.sockets[0].getsockname()[1]
        self.udp_transport, _ = await loop.create_datagram_endpoint(
            lambda: UdpEcho(rec, 'udp server'), local_addr=('127.0.0.1', 0))
        self.udp_addr = self.udp_transport.get_extra_info('sockname')

    async def stop(self):
        for server in self.servers:
            server.close()
        # What a stall left open (a transport whose registration the
        # poller refused never hears from its peer, as in the stock loop):
        # closed here, as 3.13's Server.abort_clients() would.
        for transport in list(self.live) + live_transports(self.loop):
            transport.abort()
        for server in self.servers:
            await server.wait_closed()
        self.udp_transport.close()
        # The transports' connection_lost callbacks run in the next
        # iterations.
        for _ in range(5):
            await asyncio.sleep(0)

    # -- clients --------------------------------------------------------

    async def _stream_client(self, kind, port, ssl_ctx, messages):
        rec = self.record
        writer = None
        try:
            reader, writer = await asyncio.open_connection(
                '127.0.0.1', port, ssl=ssl_ctx,
                server_hostname='localhost' if ssl_ctx else None)
            for size in messages:
                data = os.urandom(size)
                writer.write(data)
                got = await reader.readexactly(size)
                if got != data:
                    rec.violations.append(f'{kind}: echo differs')
                    return
            writer.write_eof() if not ssl_ctx else None
            rec.count(rec.ok, kind)
        except asyncio.IncompleteReadError:
            # The server's end was hit and closed.
            rec.count(rec.hit, kind)
        except OSError as exc:
            if not rec.check_oserror(f'{kind} client', exc):
                rec.violations.append(f'{kind} client: {exc!r}')
            rec.count(rec.hit, kind)
        finally:
            if writer is not None:
                writer.close()
                try:
                    await asyncio.wait_for(writer.wait_closed(),
                                           self.op_timeout)
                except asyncio.TimeoutError:
                    # Its buffer cannot drain (a refused registration).
                    writer.transport.abort()
                except OSError as exc:
                    rec.check_oserror(f'{kind} client close', exc)

    async def _udp_client(self, n):
        rec = self.record
        transport, proto = await self.loop.create_datagram_endpoint(
            lambda: UdpEcho(rec, 'udp client'),
            remote_addr=self.udp_addr)
        try:
            for i in range(n):
                data = b'%d-%d' % (id(proto), i)
                waiter = self.loop.create_future()
                proto.waiters[data] = waiter
                transport.sendto(data)
                try:
                    await asyncio.wait_for(waiter, 1.0)
                    rec.count(rec.ok, 'udp')
                except asyncio.TimeoutError:
                    # A datagram or its echo was dropped (a failed sendto
                    # or recvfrom, reported to error_received).
                    proto.waiters.pop(data, None)
                    rec.count(rec.hit, 'udp')
        finally:
            transport.close()

    async def _process(self, size):
        rec = self.record
        data = os.urandom(size)
        try:
            proc = await asyncio.wait_for(asyncio.create_subprocess_exec(
                '/bin/cat', stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE), self.op_timeout)
        except asyncio.TimeoutError:
            rec.violations.append('subprocess: spawning stalled')
            return
        try:
            out, _ = await asyncio.wait_for(proc.communicate(data),
                                            self.op_timeout)
        except asyncio.TimeoutError:
            # A pipe whose registration the poller refused is never read
            # (as with the stock loop): end the child and its pipes.
            rec.stalled += 1
            proc.kill()
            if not proc.stdin.transport.is_closing():
                proc.stdin.transport.abort()  # its buffer may never drain
            proc._transport.close()
            try:
                await asyncio.wait_for(proc.wait(), self.op_timeout)
            except asyncio.TimeoutError:
                # The child was killed and reaped, but a pipe transport
                # whose registration was refused never finishes closing
                # (the stock pipe transports' code): acceptable only after
                # a poller fault (faults.py checks).
                rec.unfinished.append(repr(proc._transport))
            return
        if out != data or proc.returncode != 0:
            rec.violations.append(
                f'subprocess: {len(out)} of {size} bytes, rc {proc.returncode}')
        else:
            rec.count(rec.ok, 'subprocess')

    async def _timers(self, n):
        loop, fired = self.loop, []
        done = loop.create_future()
        whens = sorted(self.rng.uniform(0, 0.02) for _ in range(n))

        def fire(i):
            fired.append(i)
            if len(fired) == n and not done.done():
                done.set_result(None)
        handles = [loop.call_later(w, fire, i) for i, w in enumerate(whens)]
        cancelled = set(self.rng.sample(range(n), n // 10))
        for i in cancelled:
            handles[i].cancel()
            fired.append(i)  # counts as settled
        if len(fired) < n:
            await done
        order = [i for i in fired if i not in cancelled]
        # Equal deadlines may fire in either order of when; times must not
        # go backwards.
        if any(whens[a] > whens[b] for a, b in zip(order, order[1:])):
            self.record.violations.append('timers fired out of order')
        self.record.count(self.record.ok, 'timers', n - len(cancelled))

    async def run_round(self, *, tcp=8, tls=4, udp=2, procs=2, timers=50,
                        messages=4):
        rng = self.rng
        jobs = []
        for _ in range(tcp):
            sizes = [rng.choice((1, 100, 4096, 65536)) for _ in range(messages)]
            jobs.append(self.record.bounded(
                self._stream_client('tcp', self.tcp_port, None, sizes),
                self.op_timeout))
        if self.tls is not None:
            ctx = self.tls.client_context()
            for _ in range(tls):
                sizes = [rng.choice((1, 100, 4096, 40000))
                         for _ in range(messages)]
                jobs.append(self.record.bounded(
                    self._stream_client('tls', self.tls_port, ctx, sizes),
                    self.op_timeout))
        for _ in range(udp):
            jobs.append(self._udp_client(messages * 2))
        for _ in range(procs):
            jobs.append(self._process(rng.choice((10, 70000))))
        jobs.append(self._timers(timers))
        tasks = [asyncio.ensure_future(job) for job in jobs]
        done, pending = await asyncio.wait(tasks, timeout=self.op_timeout * 3)
        if pending:
            self.record.violations.append(
                'hung: ' + ', '.join(sorted(
                    t.get_coro().__qualname__ for t in pending)))
            for t in pending:
                t.cancel()
            await asyncio.wait(pending)
        for t in done:
            r = t.exception()
            if r is not None:
                if not self.record.check_oserror('job', r):
                    self.record.violations.append(f'job raised {r!r}')


def live_transports(loop):
    """The transports the loop still maps to an fd."""
    transports = getattr(loop, '_transports', {})
    return [t for t in list(transports.values())
            if t is not None and not t.is_closing()]


def monotonic():
    return time.monotonic()


if __name__ == '__main__':
    sys.exit('run faults.py or soak.py')
