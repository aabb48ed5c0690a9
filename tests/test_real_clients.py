"""Real database clients on ferroloop: asyncpg against PostgreSQL, redis-py
against Redis.

asyncpg drives a BufferedProtocol (get_buffer / buffer_updated) through
create_connection; redis-py reads through asyncio streams. The servers are
Debian's binaries, started on 127.0.0.1 in temporary directories by
benchmarks/clients_servers.py (the same helper `make bench-clients` uses) and
stopped by pid at the end of the module. Skipped when a server binary or the
client library is not installed; `make test-clients` (a CI stage) installs all
four and runs this file with FERROLOOP_REQUIRE_CLIENTS=1, where a missing one
fails instead.
"""

import asyncio
import os
import sys
from pathlib import Path

import pytest

import ferroloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import clients_servers  # noqa: E402


# `make test-clients` (a CI stage) installs everything and sets this: there a
# missing server or client library is a failure, not a skip.
REQUIRED = os.environ.get("FERROLOOP_REQUIRE_CLIENTS") == "1"


def _skip(reason):
    if REQUIRED:
        pytest.fail(f"FERROLOOP_REQUIRE_CLIENTS=1 but {reason}")
    pytest.skip(reason)


def _import(name, reason):
    try:
        return __import__(name)
    except ImportError:
        _skip(reason)


def _server(cls):
    try:
        server = cls()
    except clients_servers.ServerUnavailable as exc:
        _skip(str(exc))
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="module")
def pg():
    _import("asyncpg", "asyncpg not installed "
            "(pip install -r benchmarks/requirements-clients.txt)")
    server = _server(clients_servers.PostgresServer)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis_server():
    _import("redis", "redis-py not installed "
            "(pip install -r benchmarks/requirements-clients.txt)")
    server = _server(clients_servers.RedisServer)
    yield server
    server.stop()


def run(coro_fn):
    loop = ferroloop.new_event_loop()
    errors = []
    loop.set_exception_handler(lambda _l, ctx: errors.append(ctx))
    try:
        return loop.run_until_complete(coro_fn())
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        assert errors == []


def test_asyncpg_queries_transactions_and_large_fetch(pg):
    import asyncpg

    async def main():
        conn = await asyncpg.connect(pg.dsn)
        try:
            await conn.execute("CREATE TEMP TABLE t (id int PRIMARY KEY, name text, v float8)")
            await conn.executemany("INSERT INTO t VALUES ($1, $2, $3)",
                                   [(i, f"n{i}", i / 4) for i in range(1, 1001)])
            assert await conn.fetchval("SELECT count(*) FROM t") == 1000
            row = await conn.fetchrow("SELECT * FROM t WHERE id = $1", 77)
            assert tuple(row) == (77, "n77", 77 / 4)

            # a failing statement inside a transaction rolls back, the connection survives
            with pytest.raises(asyncpg.UniqueViolationError):
                async with conn.transaction():
                    await conn.execute("DELETE FROM t WHERE id <= 10")
                    await conn.execute("INSERT INTO t VALUES (500, 'dup', 0)")
            assert await conn.fetchval("SELECT count(*) FROM t") == 1000

            # a server-side cursor in a transaction, read in chunks
            async with conn.transaction():
                ids = [r["id"] async for r in conn.cursor("SELECT id FROM t ORDER BY id",
                                                          prefetch=64)]
            assert ids == list(range(1, 1001))

            # a result of several megabytes: many buffer_updated() calls
            rows = await conn.fetch("SELECT g, repeat('x', 100) FROM generate_series(1, 50000) g")
            assert len(rows) == 50000
            assert rows[-1][0] == 50000 and rows[-1][1] == "x" * 100
            assert sum(r[0] for r in rows) == 50000 * 50001 // 2
        finally:
            await conn.close()
        assert conn.is_closed()

    run(main)


def test_asyncpg_pool_and_notifications(pg):
    import asyncpg

    async def main():
        pool = await asyncpg.create_pool(pg.dsn, min_size=5, max_size=5)
        try:
            async def worker(k):
                return [await pool.fetchval("SELECT $1::int * 3", k * 100 + i)
                        for i in range(50)]

            results = await asyncio.gather(*(worker(k) for k in range(10)))
            assert results == [[(k * 100 + i) * 3 for i in range(50)] for k in range(10)]

            # LISTEN/NOTIFY: a message the server pushes without a query in flight
            got = asyncio.Queue()
            async with pool.acquire() as listener:
                def on_notify(_conn, _pid, channel, payload):
                    got.put_nowait((channel, payload))

                await listener.add_listener("chan", on_notify)
                await pool.execute("SELECT pg_notify('chan', 'hello')")
                assert await asyncio.wait_for(got.get(), 10) == ("chan", "hello")
                await listener.remove_listener("chan", on_notify)
        finally:
            await pool.close()

    run(main)


def test_redis_commands_pipeline_pubsub_and_clients(redis_server):
    import redis.asyncio as redis

    async def main():
        client = redis.Redis.from_url(redis_server.url, max_connections=50)
        try:
            assert await client.ping() is True
            assert await client.set("k", b"v") is True
            assert await client.get("k") == b"v"
            big = bytes(range(256)) * 4096  # 1 MiB: several reads per reply
            await client.set("big", big)
            assert await client.get("big") == big

            pipe = client.pipeline(transaction=True)
            for i in range(100):
                pipe.incr("counter")
            assert await pipe.execute() == list(range(1, 101))

            async def task(k):
                for i in range(20):
                    await client.set(f"c{k}", i)
                    assert await client.get(f"c{k}") == str(i).encode()
                return k

            assert await asyncio.gather(*(task(k) for k in range(50))) == list(range(50))

            pubsub = client.pubsub()
            await pubsub.subscribe("news")
            assert (await pubsub.get_message(timeout=10))["type"] == "subscribe"
            assert await client.publish("news", "hi") == 1
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=10)
            assert msg is not None and msg["data"] == b"hi"
            await pubsub.unsubscribe("news")
            await pubsub.aclose()
        finally:
            await client.aclose()

    run(main)
