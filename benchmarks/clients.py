"""Real database clients as benchmarks: asyncpg on PostgreSQL, redis-py on Redis.

Cells (see --help for sizes):

  pg-fetch        one asyncpg connection fetches a 50,000-row table (int, text,
                  float8) again and again; ops = fetches. Mostly the client
                  decoding rows that arrive through the protocol's
                  get_buffer()/buffer_updated() (asyncpg uses a BufferedProtocol).
  pg-pool         10,000 small queries (SELECT $1::int * 2) from 20 tasks
                  sharing an asyncpg pool of 20 connections; ops = queries.
                  Many small writes and reads, pool acquire/release wake-ups.
  redis-pipeline  pipelines of 100 commands (50 SET + 50 GET) on one redis-py
                  asyncio client, repeated; ops = commands. redis-py reads
                  through asyncio streams (StreamReader over the transport).
  redis-clients   100 concurrent tasks on one redis-py client (pool of up to
                  100 connections), each doing SET then GET round trips;
                  ops = commands.

Every result is verified (row counts and values, query answers, GET returns
what that task SET).

The servers (PostgreSQL and Redis from Debian's packages) are started by this
script on 127.0.0.1, on free ports, in temporary directories, and stopped by
pid at the end, also on failure or Ctrl-C (clients_servers.py). Every
(loop, cell, round) runs in a fresh interpreter (this file with --worker);
rounds are interleaved; the table shows median ops/s and ferroloop/X ratios,
then the client process's CPU time per op (user + system, all threads) which,
unlike ops/s, barely depends on what else the machine is doing.

    .venv/bin/python benchmarks/clients.py             # full run, 3 rounds
    .venv/bin/python benchmarks/clients.py --quick     # smoke run: 1 round, 1/10 sizes
    .venv/bin/python benchmarks/clients.py --only pg-fetch --rounds 9 --json out.json
    .venv/bin/python benchmarks/clients.py --worker ferroloop pg-fetch \\
        --pg-dsn postgresql://bench@127.0.0.1:PORT/postgres      # one cell, servers yours
"""

import argparse
import asyncio
import datetime
import faulthandler
import gc
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import clients_servers  # noqa: E402
import loops  # noqa: E402
import report  # noqa: E402
import run  # noqa: E402  (probe_loops, _child_env, _names)

FETCH_ROWS = 50_000
FETCH_REPEAT = 10
POOL_SIZE = 20
POOL_QUERIES = 10_000
PIPE_COMMANDS = 100
PIPE_REPEAT = 200
REDIS_CLIENTS = 100
REDIS_TRIPS = 50           # SET + GET pairs per task

CELLS = {
    "pg-fetch": {"server": "pg", "unit": "fetches"},
    "pg-pool": {"server": "pg", "unit": "queries"},
    "redis-pipeline": {"server": "redis", "unit": "commands"},
    "redis-clients": {"server": "redis", "unit": "commands"},
}
DESCRIPTIONS = {
    "pg-fetch": f"asyncpg: fetch a {FETCH_ROWS:,}-row table, {FETCH_REPEAT} times; fetches/s",
    "pg-pool": f"asyncpg: {POOL_QUERIES:,} small queries from {POOL_SIZE} tasks over a "
               f"pool of {POOL_SIZE}; queries/s",
    "redis-pipeline": f"redis-py: {PIPE_REPEAT} pipelines of {PIPE_COMMANDS} SET/GET; commands/s",
    "redis-clients": f"redis-py: {REDIS_CLIENTS} concurrent tasks x {REDIS_TRIPS} SET+GET round "
                     f"trips; commands/s",
}


class BenchmarkError(Exception):
    pass


def _scaled(n, scale):
    return max(1, round(n * scale))


# ------------------------------------------------------------------ PostgreSQL


async def pg_setup(dsn):
    """The table pg-fetch reads; created once per server (workers run in turn)."""
    import asyncpg
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS bench_rows "
            "(id int PRIMARY KEY, name text NOT NULL, value float8 NOT NULL)")
        if await conn.fetchval("SELECT count(*) FROM bench_rows") != FETCH_ROWS:
            await conn.execute("TRUNCATE bench_rows")
            await conn.execute(
                "INSERT INTO bench_rows SELECT g, 'row-' || g, g * 0.5 "
                f"FROM generate_series(1, {FETCH_ROWS}) g")
            await conn.execute("ANALYZE bench_rows")
    finally:
        await conn.close()


async def pg_fetch(dsn, scale):
    import asyncpg
    repeat = _scaled(FETCH_REPEAT, scale)
    conn = await asyncpg.connect(dsn)
    try:
        stmt = await conn.prepare("SELECT id, name, value FROM bench_rows ORDER BY id")
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(repeat):
            rows = await stmt.fetch()
            if len(rows) != FETCH_ROWS:
                raise BenchmarkError(f"fetched {len(rows)} rows, expected {FETCH_ROWS}")
            last = rows[-1]
            if (last[0], last[1], last[2]) != (FETCH_ROWS, f"row-{FETCH_ROWS}", FETCH_ROWS * 0.5):
                raise BenchmarkError(f"last row is {tuple(last)!r}")
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
        # a full check once, outside the clock
        for i, r in enumerate(rows, 1):
            if r[0] != i or r[1] != f"row-{i}" or r[2] != i * 0.5:
                raise BenchmarkError(f"row {i} is {tuple(r)!r}")
    finally:
        await conn.close()
    return repeat, seconds, cpu


async def pg_pool(dsn, scale):
    import asyncpg
    total = _scaled(POOL_QUERIES, scale)
    per_task = total // POOL_SIZE
    pool = await asyncpg.create_pool(dsn, min_size=POOL_SIZE, max_size=POOL_SIZE)
    try:
        async def worker(k):
            for i in range(per_task):
                x = k * 1_000_000 + i
                got = await pool.fetchval("SELECT $1::int * 2", x)
                if got != 2 * x:
                    raise BenchmarkError(f"task {k}: SELECT {x} * 2 returned {got!r}")
            return per_task

        t0, c0 = time.perf_counter(), time.process_time()
        done = await asyncio.gather(*(worker(k) for k in range(POOL_SIZE)))
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        await pool.close()
    return sum(done), seconds, cpu


# ----------------------------------------------------------------------- Redis


async def redis_pipeline(url, scale):
    import redis.asyncio as redis
    repeat = _scaled(PIPE_REPEAT, scale)
    half = PIPE_COMMANDS // 2
    client = redis.Redis.from_url(url)
    try:
        await client.flushdb()
        t0, c0 = time.perf_counter(), time.process_time()
        for r in range(repeat):
            pipe = client.pipeline(transaction=False)
            for i in range(half):
                pipe.set(f"p:{i}", f"{r}:{i}")
            for i in range(half):
                pipe.get(f"p:{i}")
            out = await pipe.execute()
            if out[:half] != [True] * half:
                raise BenchmarkError(f"pipeline {r}: SET answers {out[:half][:5]!r}...")
            for i, v in enumerate(out[half:]):
                if v != f"{r}:{i}".encode():
                    raise BenchmarkError(f"pipeline {r}: GET p:{i} returned {v!r}")
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        await client.aclose()
    return repeat * PIPE_COMMANDS, seconds, cpu


async def redis_clients(url, scale):
    import redis.asyncio as redis
    trips = _scaled(REDIS_TRIPS, scale)
    client = redis.Redis.from_url(url, max_connections=REDIS_CLIENTS)
    try:
        await client.flushdb()

        async def task(k):
            for i in range(trips):
                value = f"{k}:{i}".encode()
                if await client.set(f"c:{k}", value) is not True:
                    raise BenchmarkError(f"task {k}: SET failed")
                got = await client.get(f"c:{k}")
                if got != value:
                    raise BenchmarkError(f"task {k}: GET returned {got!r}, expected {value!r}")
            return 2 * trips

        t0, c0 = time.perf_counter(), time.process_time()
        done = await asyncio.gather(*(task(k) for k in range(REDIS_CLIENTS)))
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        await client.aclose()
    return sum(done), seconds, cpu


RUNNERS = {
    "pg-fetch": pg_fetch,
    "pg-pool": pg_pool,
    "redis-pipeline": redis_pipeline,
    "redis-clients": redis_clients,
}


# ---------------------------------------------------------------------- worker


def worker_main(loop_name, cell_name, target, scale):
    runner = RUNNERS[cell_name]
    loop = loops.new_loop(loop_name)
    asyncio.set_event_loop(loop)
    loop_errors = []

    def handler(_loop, context):
        msg = context.get("message") or repr(context)
        exc = context.get("exception")
        loop_errors.append(msg + (f": {exc!r}" if exc is not None else ""))

    loop.set_exception_handler(handler)
    try:
        if cell_name.startswith("pg-"):
            loop.run_until_complete(pg_setup(target))
        loop.run_until_complete(runner(target, scale / 10))  # untimed warm-up
        gc.collect()
        ops, seconds, cpu = loop.run_until_complete(runner(target, scale))
        if loop_errors:
            raise BenchmarkError(f"loop exception handler called: {loop_errors[0]}")
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    return {"loop": loop_name, "cell": cell_name, "ops": ops, "seconds": seconds,
            "cpu": cpu, "ops_per_sec": ops / seconds, "cpu_us_per_op": cpu / ops * 1e6}


# ---------------------------------------------------------------- orchestrator


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="ferroloop vs asyncio, uvloop, rloop with real clients "
                    "(asyncpg + PostgreSQL, redis-py + Redis).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="cells:\n" + "\n".join(f"  {k:15} {v}" for k, v in DESCRIPTIONS.items()))
    parser.add_argument("--worker", nargs=2, metavar=("LOOP", "CELL"),
                        help="run one cell on one loop against --pg-dsn / --redis-url, "
                             "print one JSON line")
    parser.add_argument("--pg-dsn", help="worker: PostgreSQL DSN")
    parser.add_argument("--redis-url", help="worker: Redis URL")
    parser.add_argument("--rounds", type=int, help="rounds per (loop, cell); default 3, "
                        "or 1 with --quick")
    parser.add_argument("--only", action="append", metavar="CELL[,...]",
                        help="run only these cells")
    parser.add_argument("--loops", action="append", metavar="LOOP[,...]",
                        help=f"compare only these loops (default: {','.join(loops.LOOP_NAMES)})")
    parser.add_argument("--quick", action="store_true", help="smoke run: sizes x0.1, 1 round")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply every repeat count by X")
    parser.add_argument("--json", metavar="PATH", help="also write all samples as JSON")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds before one benchmark process is killed (default 120)")
    args = parser.parse_args(argv)
    if args.worker:
        if args.worker[0] not in loops.LOOP_NAMES or args.worker[1] not in CELLS:
            parser.error(f"--worker LOOP CELL: LOOP in {loops.LOOP_NAMES}, CELL in {list(CELLS)}")
    args.cells = run._names(args.only, list(CELLS), "cell(s)")
    args.loops = run._names(args.loops, list(loops.LOOP_NAMES), "loop(s)")
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    if args.quick:
        args.scale *= 0.1
    return args


def _target(args, cell):
    return args.pg_dsn if CELLS[cell]["server"] == "pg" else args.redis_url


def run_one(args, loop_name, cell_name):
    """Returns (sample, error)."""
    server_flag = "--pg-dsn" if CELLS[cell_name]["server"] == "pg" else "--redis-url"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", loop_name, cell_name,
           server_flag, _target(args, cell_name), "--scale", str(args.scale),
           "--timeout", str(args.timeout)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              timeout=args.timeout + 15, env=run._child_env())
    except subprocess.TimeoutExpired:
        return None, f"killed after {args.timeout + 15:.0f}s (hung)"
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    if proc.returncode != 0:
        if proc.returncode < 0:
            why = f"crashed with signal {-proc.returncode}"
        elif any("Timeout (" in ln for ln in lines):
            why = f"timed out after {args.timeout:.0f}s (hung)"
        else:
            why = lines[-1] if lines else f"exit status {proc.returncode}"
        return None, why + ("\n    " + "\n    ".join(lines[-12:]) if lines else "")
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1]), None
    except (ValueError, IndexError):
        return None, f"unparseable worker output: {proc.stdout[-500:]!r}"


def run_all(args, available):
    results = {c: {l: {"samples": [], "cpu_us_per_op": [], "error": None} for l in available}
               for c in args.cells}
    for rnd in range(1, args.rounds + 1):
        for c in args.cells:
            progress = []
            for l in available:
                entry = results[c][l]
                if entry["error"]:
                    progress.append(f"{l} FAIL")
                    continue
                sample, error = run_one(args, l, c)
                if error:
                    entry["error"] = f"round {rnd}: {error}"
                    progress.append(f"{l} FAIL")
                    print(f"\nFAIL {c} on {l}, round {rnd}: {error}\n", file=sys.stderr)
                    continue
                entry["samples"].append(sample["ops_per_sec"])
                entry["cpu_us_per_op"].append(sample["cpu_us_per_op"])
                progress.append(f"{l} {report.fmt_rate(sample['ops_per_sec'])}")
            print(f"[round {rnd}/{args.rounds}] {c:15} " + "  ".join(progress),
                  file=sys.stderr, flush=True)
    for per_loop in results.values():
        for entry in per_loop.values():
            ok = not entry["error"]
            entry["median"] = report.median(entry["samples"]) if ok else None
            entry["spread"] = report.spread(entry["samples"]) if ok else None
            entry["cpu_median"] = report.median(entry["cpu_us_per_op"]) if ok else None
    return results


def render_cpu(results, cells, loop_names):
    """Client CPU per op: lower is better; ratio = X / ferroloop (>1: ferroloop cheaper)."""
    baselines = [b for b in report.BASELINES if b in loop_names]
    subject = report.SUBJECT in loop_names

    def cpu(c, l):
        e = results[c].get(l)
        return None if not e or e.get("error") else e.get("cpu_median")

    header = ["cell"] + [f"{l} us" for l in loop_names]
    if subject:
        header += [f"{b}/ferro" for b in baselines]
    rows = []
    for c in cells:
        row = [c] + ["-" if cpu(c, l) is None else f"{cpu(c, l):.3g}" for l in loop_names]
        if subject:
            f = cpu(c, report.SUBJECT)
            row += [report.fmt_ratio(cpu(c, b) / f if f and cpu(c, b) else None)
                    for b in baselines]
        rows.append(row)
    return ("Client process CPU time per op, median, microseconds (lower is better);\n"
            "'X/ferro' = X's CPU per op / ferroloop's (>1.00x: ferroloop spends less)\n\n"
            + report.table(header, rows))


def write_json(path, args, loop_info, results):
    ratios = {c: {f"{report.SUBJECT}/{b}": report.ratio(results, c, report.SUBJECT, b)
                  for b in report.BASELINES if b in args.loops}
              for c in args.cells} if report.SUBJECT in args.loops else {}
    doc = {
        "meta": {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "python": sys.version.split()[0], "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "rounds": args.rounds, "scale": args.scale,
            "loadavg": os.getloadavg(), "clients": _client_versions(),
            "statistic": "median over interleaved fresh-process rounds",
        },
        "loops": loop_info,
        "cells": {c: {"description": DESCRIPTIONS[c], "unit": CELLS[c]["unit"],
                      "results": results[c], "ratios": ratios.get(c, {})}
                  for c in args.cells},
    }
    Path(path).write_text(json.dumps(doc, indent=2) + "\n")


def _client_versions():
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for dist in ("asyncpg", "redis"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        cell = args.worker[1]
        target = _target(args, cell)
        if not target:
            sys.exit(f"--worker {args.worker[0]} {cell} needs "
                     f"{'--pg-dsn' if CELLS[cell]['server'] == 'pg' else '--redis-url'}")
        faulthandler.enable()
        faulthandler.dump_traceback_later(args.timeout, exit=True)
        result = worker_main(args.worker[0], cell, target, args.scale)
        faulthandler.cancel_dump_traceback_later()
        print(json.dumps(result))
        return 0

    missing = [d for d, v in _client_versions().items() if v is None]
    if missing:
        sys.exit(f"missing client libraries: {', '.join(missing)} "
                 f"(pip install -r benchmarks/requirements-clients.txt)")
    need = {CELLS[c]["server"] for c in args.cells}
    try:
        with clients_servers.servers(need_pg="pg" in need, need_redis="redis" in need) as s:
            args.pg_dsn = s.pg.dsn if s.pg else None
            args.redis_url = s.redis.url if s.redis else None
            return orchestrate(args)
    except clients_servers.ServerUnavailable as exc:
        sys.exit(str(exc))
    except KeyboardInterrupt:
        print("\ninterrupted; servers stopped, temporary files removed", file=sys.stderr)
        return 130


def orchestrate(args):
    loop_info = run.probe_loops(args)
    available = [l for l in args.loops if loop_info[l]["available"]]
    if not available:
        sys.exit("no event loop available to benchmark")
    versions = ", ".join(f"{l} {loop_info[l]['version'].removeprefix('CPython ')}"
                         for l in available)
    clients = ", ".join(f"{k} {v}" for k, v in _client_versions().items())
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.2f}; loops: {versions}; clients: {clients}",
          file=sys.stderr)
    print(f"{len(args.cells)} cell(s) x {len(available)} loop(s) x {args.rounds} round(s), "
          f"scale {args.scale:g}", file=sys.stderr)

    results = run_all(args, available)
    for l in args.loops:
        for c in args.cells:
            results[c].setdefault(l, None)

    print()
    print(report.render(results, args.cells, args.loops, args.rounds,
                        unit="ops/s (ops: see each cell's unit)", label="cell"))
    print()
    print(render_cpu(results, args.cells, args.loops))
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f} "
          f"({os.cpu_count()} CPUs; the servers share them with the client)")
    for l in args.loops:
        if not loop_info[l]["available"]:
            print(f"note: {l} skipped: {loop_info[l]['note']}")
    failures = [(c, l, e["error"]) for c in args.cells for l, e in results[c].items()
                if e and e["error"]]
    for c, l, err in failures:
        print(f"FAIL {c} on {l}: {err.splitlines()[0]}")
    if args.json:
        write_json(args.json, args, loop_info, results)
        print(f"wrote {args.json}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
