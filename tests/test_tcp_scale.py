"""TCP transports at scale: many concurrent connections on one loop, and no
fd or memory growth over many connect/close cycles.

Each test runs on stock asyncio and on ferroloop (the `loop` fixture's
`asyncio` / `ferroloop` ids) with the same assertions.  Both ends of every
connection live on the loop under test: the client transports come from
create_connection, the server transports from create_server.
"""

import asyncio
import gc
import time

from _netutil import loop, net  # noqa: F401  (pytest fixtures)
from _netutil import (LOCALHOST, Echo, Recorder, live_count, open_fd_count,
                      raise_fd_limit, settled_rss_bytes)


# fds kept free for the interpreter, the loop and pytest during the test
FD_HEADROOM = 64


class ServerSide(Echo):
    """Echo that counts server connections made, open and lost, and wakes
    all_server_sides_lost() when enough have been lost."""

    def __init__(self, stats):
        super().__init__()
        self.stats = stats

    def connection_made(self, transport):
        super().connection_made(transport)
        stats = self.stats
        stats['open'] += 1
        stats['made'] += 1

    def connection_lost(self, exc):
        stats = self.stats
        stats['open'] -= 1
        stats['lost'] += 1
        if exc is not None:
            stats['errors'].append(exc)
        waiter = stats.get('waiter')
        if waiter is not None and not waiter.done() \
                and stats['lost'] >= stats['expect_lost']:
            waiter.set_result(None)


def new_stats():
    return {'open': 0, 'made': 0, 'lost': 0, 'errors': [],
            'expect_lost': 0, 'waiter': None}


async def all_server_sides_lost(loop, stats, total):
    """Wait until `total` server-side connection_lost calls have happened."""
    if stats['lost'] < total:
        stats['expect_lost'] = total
        stats['waiter'] = loop.create_future()
        await stats['waiter']


# Both tests turn asyncio's debug mode off, even under -X dev or
# PYTHONASYNCIODEBUG: it records a traceback for every future and handle,
# which makes them over ten times slower (past their safety timeouts) and
# would swamp the memory measurements; debug mode is not what they test.

CONCURRENT = 10_000


def test_ten_thousand_concurrent_connections_echo(loop, net):
    """10,000 connections open at the same time on one loop, each echoing
    its own message correctly.

    Both ends are on this loop (20,000 transports for 10,000 connections),
    so the process needs 2 fds per connection: the test raises
    RLIMIT_NOFILE's soft limit to the hard limit (and past it where the
    process may).  If the limit still cannot cover 2 x 10,000 fds plus the
    fds already open plus FD_HEADROOM, the test uses the largest count that
    fits (at least 1,000) instead of 10,000.  With the hard limit of 20,000
    of the dev container (where raising it is not permitted, even as root)
    that is about 9,960 concurrent connections.

    Connects are started 256 at a time so the listen backlog (4096, the
    usual somaxconn) never overflows, which would cost 1 s SYN retries; all
    connections stay open until every one of them has echoed.
    """
    loop.set_debug(False)  # see the note above CONCURRENT
    limit = raise_fd_limit(open_fd_count() + 2 * CONCURRENT + FD_HEADROOM)
    count = min(CONCURRENT, (limit - open_fd_count() - FD_HEADROOM) // 2)
    assert count >= 1000, f'RLIMIT_NOFILE {limit} is too low for this test'
    stats = new_stats()

    async def main():
        server = await loop.create_server(
            lambda: ServerSide(stats), LOCALHOST, 0, backlog=4096)
        address = server.sockets[0].getsockname()
        in_flight = asyncio.Semaphore(256)

        async def connect(i):
            message = b'connection %d;' % i * 4
            async with in_flight:
                transport, proto = await loop.create_connection(
                    lambda: Recorder(loop), *address)
            net.transports.append(transport)
            transport.write(message)
            await proto.received(len(message))
            return transport, proto, message

        clients = await asyncio.gather(*[connect(i) for i in range(count)])
        # Every connection is open at once, and every echo is right.
        open_at_once = stats['open']
        lost_early = sum(proto.lost.done() for _, proto, _ in clients)
        wrong = [i for i, (_, proto, message) in enumerate(clients)
                 if proto.data != message]

        for transport, _, _ in clients:
            transport.close()
        client_excs = await asyncio.gather(
            *[proto.lost for _, proto, _ in clients])
        await all_server_sides_lost(loop, stats, count)
        server.close()
        await server.wait_closed()
        return open_at_once, lost_early, wrong, client_excs, clients

    open_at_once, lost_early, wrong, client_excs, clients = net.run(
        main(), timeout=60)
    assert open_at_once == count
    assert stats['made'] == stats['lost'] == count
    assert lost_early == 0
    assert wrong == []
    assert client_excs == [None] * count
    assert stats['errors'] == []
    assert {tuple(proto.events) for _, proto, _ in clients} == {
        ('made', 'data', 'lost')}


class Pinger(asyncio.Protocol):
    """Client of one connect/close cycle: ping, wait for the echo, close."""

    def __init__(self, lost):
        self.lost = lost
        Echo.live.add(self)  # counted with the server side for leak checks

    def connection_made(self, transport):
        self.transport = transport
        transport.write(b'ping')

    def data_received(self, data):
        self.transport.close()

    def connection_lost(self, exc):
        self.lost.set_result(exc)


WARMUP_CYCLES = 2_000
ROUND_CYCLES = {'ferroloop': 49_000, 'asyncio': 15_000}  # by loop; see below
IN_FLIGHT = 50


def test_connect_close_cycles_leak_no_fds_or_memory(loop):
    """Many connect / echo / close cycles leave no fds, objects or memory
    behind.

    100k cycles on ferroloop: 2,000 warm-up cycles, then two measured rounds
    of 49,000 (about 10 s on the dev container, 2 CPUs, 50 connections in
    flight).  Stock asyncio, run for the same assertions, does 2,000 + 2 x
    15,000 (100k would take it ~15 s more), snapshotting after the warm-up
    and after each round (gc.collect() first):
    - open fds (/proc/self/fd) must be exactly the same;
    - no protocol object may stay alive (a leaked transport keeps its
      protocol alive), and the number of gc-tracked objects must not grow;
    - RSS growth over the second round must stay under 512 KiB, read after
      malloc_trim (settled_rss_bytes: free heap pages that earlier tests
      left mapped are not counted).  Allocator warm-up lands in the first
      round; a leak is linear in cycles, so any
      leak of about 35 bytes per cycle or more shows in the second round.
    tracemalloc is not used: it triples the run time and does not see the
    native (Rust) allocations, which RSS does.
    """
    loop.set_debug(False)  # see the note above CONCURRENT
    stats = new_stats()
    snapshots = []
    kind = 'ferroloop' if type(loop).__module__.startswith('ferroloop') else 'asyncio'
    round_cycles = ROUND_CYCLES[kind]

    async def cycle(address):
        lost = loop.create_future()
        await loop.create_connection(lambda: Pinger(lost), *address)
        return await lost

    async def run_cycles(address, cycles):
        excs = []

        async def worker(n):
            for _ in range(n):
                excs.append(await cycle(address))

        await asyncio.gather(*[worker(cycles // IN_FLIGHT)
                               for _ in range(IN_FLIGHT)])
        await all_server_sides_lost(loop, stats, stats['made'])
        assert excs == [None] * cycles
        assert stats['open'] == 0

    def snapshot(label, started):
        gc.collect()
        snapshots.append({
            'label': label,
            'seconds': round(time.perf_counter() - started, 2),
            'fds': open_fd_count(),
            'live_protocols': live_count(Echo),
            'gc_objects': len(gc.get_objects()),
            'rss': settled_rss_bytes(),
        })

    async def main():
        server = await loop.create_server(
            lambda: ServerSide(stats), LOCALHOST, 0, backlog=1024)
        address = server.sockets[0].getsockname()
        started = time.perf_counter()
        await run_cycles(address, WARMUP_CYCLES)
        snapshot('warm-up', started)
        for label in ('round 1', 'round 2'):
            started = time.perf_counter()
            await run_cycles(address, round_cycles)
            snapshot(label, started)
        server.close()
        await server.wait_closed()

    loop.run_until_complete(asyncio.wait_for(main(), 60))
    warm, first, second = snapshots
    report = '\n'.join(map(str, snapshots))
    assert stats['made'] == stats['lost'] == WARMUP_CYCLES + 2 * round_cycles
    assert stats['errors'] == []
    assert warm['fds'] == first['fds'] == second['fds'], report
    assert first['live_protocols'] == second['live_protocols'] == 0, report
    assert second['gc_objects'] - warm['gc_objects'] <= 100, report
    if kind == 'ferroloop':
        # The RSS bound is ferroloop's. The stock loop, run as the reference
        # for the other assertions, is not held to it: on 3.15 its 15,000
        # cycles once grew 832 KiB in round 2, with fds, protocols and
        # objects flat (CPython's memory, not this project's).
        assert second['rss'] - first['rss'] < 512 * 1024, report
