"""TLS benchmarks: echo over TLS streams and TLS handshakes per second.

Cells (see --help for the list):

  tls-echo-1k / tls-echo-100k   an asyncio.start_server(ssl=...) echo server
      and CONNECTIONS stream clients (open_connection(ssl=...)), all on the
      loop under test in ONE process, over 127.0.0.1. Each client sends one
      message, reads the echo with readexactly() and compares it byte for byte
      with what it sent (every message has a sequence number and a body that
      depends on it), then sends the next. Result: round trips/s (all
      connections together).
  tls-handshake                 CONCURRENCY workers, each in a loop: connect,
      full TLS handshake (fresh session, verified against a throwaway CA and
      hostname), read the 1-byte greeting the server writes once ITS side of
      the handshake is done, close + wait_closed. The server counts finished
      handshakes; the counts must agree. Result: handshakes/s.

Certificates (a throwaway EC P-256 CA + a server certificate for localhost /
127.0.0.1) are made at run time with the `openssl` CLI into a temporary
directory, exactly as tests/_tlsutil.py does, and deleted afterwards.

Every (loop, cell, round) runs in a fresh interpreter (this file with
--worker); rounds are interleaved; the table reports medians and ferroloop/X
ratios of medians (report.render, shared with run.py / net.py / proc_udp.py).

    .venv/bin/python benchmarks/tls.py            # full run, 3 rounds (~1-2 minutes)
    .venv/bin/python benchmarks/tls.py --quick    # smoke run: 1 round, 0.5 s cells
    .venv/bin/python benchmarks/tls.py --only tls-handshake --rounds 5
    .venv/bin/python benchmarks/tls.py --worker ferroloop tls-echo-1k --certs DIR
"""

import argparse
import asyncio
import datetime
import faulthandler
import json
import os
import platform
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import cpu_split  # noqa: E402
import loops  # noqa: E402
import report  # noqa: E402
import run  # noqa: E402  (probe_loops, _child_env, _names)

HOSTNAME = "localhost"
HEADER = 8             # big-endian sequence number in front of every message
BODIES = 16            # distinct bodies per message size; seq picks one
CONNECTIONS = 4        # echo cells: concurrent TLS connections, 1 message in flight each
CONCURRENCY = 4        # handshake cell: concurrent connect/handshake/close workers
CLOSE_TIMEOUT = 5.0    # wait_closed() longer than this counts as a hang

CELLS = {
    "tls-echo-1k": {"kind": "echo", "size": 1024},
    "tls-echo-100k": {"kind": "echo", "size": 100 * 1024},
    "tls-handshake": {"kind": "handshake"},
}
DESCRIPTIONS = {
    "tls-echo-1k": f"TLS stream echo, 1 KiB messages, {CONNECTIONS} connections, round trips/s",
    "tls-echo-100k": f"TLS stream echo, 100 KiB messages, {CONNECTIONS} connections, round trips/s",
    "tls-handshake": f"connect + full TLS handshake + 1-byte greeting + close, "
                     f"{CONCURRENCY} concurrent, handshakes/s",
}
SABOTAGES = {"corrupt": "tls-echo-1k", "short": "tls-echo-100k", "no-greeting": "tls-handshake"}
SABOTAGE = None


class BenchmarkError(Exception):
    pass


class Skip(Exception):
    """The loop does not implement an API this cell needs."""


# ------------------------------------------------------------------ certificates


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_certs(directory):
    """Same commands as tests/_tlsutil.py (copied: that module imports pytest)."""
    directory = Path(directory)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "2", "-subj", "/CN=ferroloop bench CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    _openssl("req", *ec, "-keyout", "server.key", "-out", "server.csr",
             "-subj", f"/CN={HOSTNAME}", cwd=directory)
    (directory / "server.ext").write_text(
        f"subjectAltName=DNS:{HOSTNAME},IP:127.0.0.1\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem",
             "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem",
             "-days", "2", "-extfile", "server.ext", cwd=directory)


def contexts(certs_dir):
    d = Path(certs_dir)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(str(d / "server.pem"), str(d / "server.key"))
    client = ssl.create_default_context(cafile=str(d / "ca.pem"))  # verifies cert + hostname
    return server, client


# ----------------------------------------------------------------------- cells


async def _start_server(loop, handler, server_ctx):
    try:
        return await asyncio.start_server(handler, "127.0.0.1", 0, ssl=server_ctx)
    except NotImplementedError as exc:
        raise Skip(f"start_server(ssl=...): NotImplementedError {exc}".strip()) from None


async def _close(writer):
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT)
    except asyncio.TimeoutError:
        raise BenchmarkError(f"wait_closed() did not finish in {CLOSE_TIMEOUT:g} s") from None
    except (ConnectionError, ssl.SSLError):
        pass  # the peer may already be gone; closing is all we asked for


async def tls_echo(loop, size, duration, warmup, server_ctx, client_ctx):
    errors = []
    body_len = size - HEADER
    bodies = [bytes((b * 31 + k * 7 + 1) & 0xFF for k in range(body_len)) for b in range(BODIES)]

    async def handle(reader, writer):
        count = 0
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                count += 1
                if SABOTAGE == "corrupt" and count == 200:
                    data = data[:-1] + bytes([data[-1] ^ 1])
                if SABOTAGE == "short" and count == 50:
                    data = data[:-1]
                writer.write(data)
                await writer.drain()
        except Exception as exc:  # noqa: BLE001 - reported as a failure below
            errors.append(f"server: {exc!r}")
        finally:
            writer.close()

    server = await _start_server(loop, handle, server_ctx)
    port = server.sockets[0].getsockname()[1]
    counts = [0] * CONNECTIONS
    state = {"sending": True}

    async def client(i):
        reader, writer = await loop.create_task(asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ctx, server_hostname=HOSTNAME))
        seq = i << 40
        try:
            while state["sending"]:
                msg = seq.to_bytes(HEADER, "big") + bodies[seq % BODIES]
                writer.write(msg)
                try:
                    echo = await asyncio.wait_for(reader.readexactly(size), CLOSE_TIMEOUT)
                except asyncio.IncompleteReadError as exc:
                    raise BenchmarkError(f"conn {i}: connection closed after "
                                         f"{len(exc.partial)} of {size} echoed bytes") from None
                except asyncio.TimeoutError:
                    raise BenchmarkError(f"conn {i}: echo of {size} bytes incomplete after "
                                         f"{CLOSE_TIMEOUT:g} s") from None
                if echo != msg:
                    raise BenchmarkError(f"conn {i} seq {seq & 0xFFFFFFFFFF}: echoed message "
                                         f"differs from the one sent")
                counts[i] += 1
                seq += 1
        finally:
            await _close(writer)

    try:
        tasks = [loop.create_task(client(i)) for i in range(CONNECTIONS)]
        waiter = loop.create_task(asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION))

        async def window():
            await asyncio.sleep(warmup)
            c0, t0, cpu0 = sum(counts), time.perf_counter(), cpu_split.cpu_times()
            await asyncio.sleep(duration)
            return sum(counts) - c0, time.perf_counter() - t0, cpu0, cpu_split.cpu_times()

        timer = loop.create_task(window())
        await asyncio.wait([timer, waiter], return_when=asyncio.FIRST_COMPLETED)
        state["sending"] = False
        await waiter
        for t in tasks:
            if t.exception() is not None:
                timer.cancel()
                raise t.exception()
        ops, seconds, cpu0, cpu1 = await timer
    finally:
        server.close()
        await server.wait_closed()
    if errors:
        raise BenchmarkError(f"{len(errors)} error(s); first: {errors[0]}")
    if ops <= 0:
        raise BenchmarkError("no message echoed during the measured window")
    user, sys_ = cpu_split.per_op_us(cpu0, cpu1, ops)
    return {"ops": ops, "seconds": seconds, "total": sum(counts),
            "cpu_user_us": user, "cpu_sys_us": sys_}


async def tls_handshakes(loop, duration, server_ctx, client_ctx):
    errors = []
    served = [0]

    async def handle(reader, writer):
        try:
            if SABOTAGE != "no-greeting" or served[0] != 20:
                writer.write(b"G")
                await writer.drain()
            served[0] += 1
            await reader.read()  # until the client closes
        except (ConnectionError, ssl.SSLError):
            pass  # the client's close may reset the connection; the greeting was sent
        except Exception as exc:  # noqa: BLE001
            errors.append(f"server: {exc!r}")
        finally:
            writer.close()

    server = await _start_server(loop, handle, server_ctx)
    port = server.sockets[0].getsockname()[1]
    done = [0]
    deadline = [None]

    async def worker():
        while time.perf_counter() < deadline[0]:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", port, ssl=client_ctx, server_hostname=HOSTNAME)
            try:
                if writer.get_extra_info("peercert") is None:
                    raise BenchmarkError("handshake finished without a verified peer certificate")
                try:
                    greeting = await asyncio.wait_for(reader.readexactly(1), CLOSE_TIMEOUT)
                except (asyncio.IncompleteReadError, asyncio.TimeoutError):
                    raise BenchmarkError("no greeting from the server after the handshake") \
                        from None
                if greeting != b"G":
                    raise BenchmarkError(f"bad greeting {greeting!r}")
            finally:
                await _close(writer)
            done[0] += 1

    try:
        t0, cpu0 = time.perf_counter(), cpu_split.cpu_times()
        deadline[0] = t0 + duration
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        seconds, cpu1 = time.perf_counter() - t0, cpu_split.cpu_times()
        # let the server handlers see the last EOFs
        for _ in range(100):
            if served[0] >= done[0]:
                break
            await asyncio.sleep(0.01)
    finally:
        server.close()
        await server.wait_closed()
    if errors:
        raise BenchmarkError(f"{len(errors)} error(s); first: {errors[0]}")
    if served[0] != done[0]:
        raise BenchmarkError(f"server finished {served[0]} handshakes, clients {done[0]}")
    if done[0] <= 0:
        raise BenchmarkError("no handshake completed")
    user, sys_ = cpu_split.per_op_us(cpu0, cpu1, done[0])
    return {"ops": done[0], "seconds": seconds, "cpu_user_us": user, "cpu_sys_us": sys_}


# ---------------------------------------------------------------------- worker


def worker_main(loop_name, cell_name, duration, warmup, certs_dir):
    cell = CELLS[cell_name]
    server_ctx, client_ctx = contexts(certs_dir)
    loop = loops.new_loop(loop_name)
    asyncio.set_event_loop(loop)
    loop_errors = []

    def handler(_loop, context):
        loop_errors.append(context.get("message") or repr(context))
        exc = context.get("exception")
        if exc is not None:
            loop_errors[-1] += f": {exc!r}"

    loop.set_exception_handler(handler)
    try:
        if cell["kind"] == "echo":
            # short untimed run first (imports, first-use paths), as run.py's warm-up
            loop.run_until_complete(tls_echo(loop, cell["size"], 0.1, 0.05,
                                             server_ctx, client_ctx))
            result = loop.run_until_complete(tls_echo(loop, cell["size"], duration, warmup,
                                                      server_ctx, client_ctx))
        else:
            loop.run_until_complete(tls_handshakes(loop, 0.1, server_ctx, client_ctx))
            result = loop.run_until_complete(tls_handshakes(loop, duration,
                                                            server_ctx, client_ctx))
        if loop_errors:
            raise BenchmarkError(f"loop exception handler called: {loop_errors[0]}")
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    result.update(loop=loop_name, cell=cell_name,
                  ops_per_sec=result["ops"] / result["seconds"])
    return result


# ---------------------------------------------------------------- orchestrator


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description="ferroloop TLS benchmarks vs asyncio, uvloop, rloop.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="cells:\n" + "\n".join(f"  {k:14} {v}" for k, v in DESCRIPTIONS.items()))
    parser.add_argument("--worker", nargs=2, metavar=("LOOP", "CELL"),
                        help="internal: run one cell on one loop, print one JSON line")
    parser.add_argument("--certs", metavar="DIR",
                        help="worker: directory with ca.pem, server.pem, server.key "
                             "(default: make a temporary one)")
    parser.add_argument("--rounds", type=int, help="rounds per (loop, cell); default 3, "
                        "or 1 with --quick")
    parser.add_argument("--only", action="append", metavar="CELL[,...]",
                        help="run only these cells")
    parser.add_argument("--loops", action="append", metavar="LOOP[,...]",
                        help=f"compare only these loops (default: {','.join(loops.LOOP_NAMES)})")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 round, 0.5 s cells")
    parser.add_argument("--duration", type=float,
                        help="measured seconds per cell (default 1.0, 0.5 with --quick)")
    parser.add_argument("--warmup", type=float, default=0.2,
                        help="echo cells: unmeasured seconds of traffic before the clock "
                             "starts (default 0.2)")
    parser.add_argument("--json", metavar="PATH", help="also write all samples as JSON")
    parser.add_argument("--sabotage", choices=SABOTAGES, help=argparse.SUPPRESS)
    parser.add_argument("--selftest", action="store_true",
                        help="run every sabotage on asyncio and check that each one FAILs")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds before one benchmark process is killed (default 60)")
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
    if args.duration is None:
        args.duration = 0.5 if args.quick else 1.0
    return args


def run_one(args, loop_name, cell_name, sabotage=None):
    """Returns (sample, skip_reason, error)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", loop_name, cell_name,
           "--certs", args.certs, "--duration", str(args.duration),
           "--warmup", str(args.warmup), "--timeout", str(args.timeout)]
    if sabotage:
        cmd += ["--sabotage", sabotage]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              timeout=args.timeout + 15, env=run._child_env())
    except subprocess.TimeoutExpired:
        return None, None, f"killed after {args.timeout + 15:.0f}s (hung)"
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    if proc.returncode != 0:
        if proc.returncode < 0:
            why = f"crashed with signal {-proc.returncode}"
        elif any("Timeout (" in ln for ln in lines):
            why = f"timed out after {args.timeout:.0f}s (hung)"
        else:
            why = lines[-1] if lines else f"exit status {proc.returncode}"
        return None, None, why + ("\n    " + "\n    ".join(lines[-12:]) if lines else "")
    try:
        doc = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None, None, f"unparseable worker output: {proc.stdout[-500:]!r}"
    if "skip" in doc:
        return None, doc["skip"], None
    return doc, None, None


def run_all(args, available):
    results = {c: {l: {"samples": [], "cpu_user_us": [], "cpu_sys_us": [],
                       "error": None, "skip": None} for l in available}
               for c in args.cells}
    for rnd in range(1, args.rounds + 1):
        for c in args.cells:
            progress = []
            for l in available:
                entry = results[c][l]
                if entry["error"] or entry["skip"]:
                    progress.append(f"{l} {'FAIL' if entry['error'] else 'skip'}")
                    continue
                sample, skip, error = run_one(args, l, c)
                if skip:
                    entry["skip"] = skip
                    progress.append(f"{l} skip")
                    print(f"note: {c} on {l}: {skip}", file=sys.stderr)
                    continue
                if error:
                    entry["error"] = f"round {rnd}: {error}"
                    progress.append(f"{l} FAIL")
                    print(f"\nFAIL {c} on {l}, round {rnd}: {error}\n", file=sys.stderr)
                    continue
                entry["samples"].append(sample["ops_per_sec"])
                cpu_split.add_sample(entry, sample.get("cpu_user_us"), sample.get("cpu_sys_us"))
                progress.append(f"{l} {report.fmt_rate(sample['ops_per_sec'])}")
            print(f"[round {rnd}/{args.rounds}] {c:14} " + "  ".join(progress),
                  file=sys.stderr, flush=True)
    for per_loop in results.values():
        for entry in per_loop.values():
            ok = not entry["error"] and not entry["skip"]
            entry["median"] = report.median(entry["samples"]) if ok else None
            entry["spread"] = report.spread(entry["samples"]) if ok else None
            cpu_split.summarize(entry)
    return results


def write_json(path, args, loop_info, results):
    ratios = {c: {f"{report.SUBJECT}/{b}": report.ratio(results, c, report.SUBJECT, b)
                  for b in report.BASELINES if b in args.loops}
              for c in args.cells} if report.SUBJECT in args.loops else {}
    doc = {
        "meta": {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "python": sys.version.split()[0], "platform": platform.platform(),
            "openssl": ssl.OPENSSL_VERSION,
            "cpu_count": os.cpu_count(), "rounds": args.rounds,
            "duration": args.duration, "warmup": args.warmup,
            "connections": CONNECTIONS, "handshake_concurrency": CONCURRENCY,
            "statistic": "median over interleaved fresh-process rounds",
            "cpu": "process CPU (server and clients, one process) per op in the measured "
                   "window, getrusage(RUSAGE_SELF) deltas",
            "load": os.getloadavg(),
        },
        "loops": loop_info,
        "cells": {c: {"description": DESCRIPTIONS[c], "results": results[c],
                      "ratios": ratios.get(c, {}),
                      "cpu_targets": cpu_split.ratios(results, c)} for c in args.cells},
    }
    Path(path).write_text(json.dumps(doc, indent=2) + "\n")


def selftest(args):
    """Every sabotage must make its cell FAIL; the clean run must pass."""
    args.duration = 0.3
    bad = 0
    for sabotage, cell in [(None, c) for c in CELLS] + list(SABOTAGES.items()):
        sample, skip, error = run_one(args, "asyncio", cell, sabotage)
        ok = (error is None and skip is None) if sabotage is None else error is not None
        bad += not ok
        detail = (error or "").splitlines()[0] if error else "passed"
        print(f"{'ok  ' if ok else 'BAD '} {sabotage or 'clean':12} {cell:14} {detail}")
    print("selftest:", "all checks work" if not bad else f"{bad} check(s) did not behave")
    return 1 if bad else 0


def main(argv=None):
    global SABOTAGE
    args = parse_args(argv)
    if args.worker:
        if not args.certs:
            sys.exit("--worker needs --certs DIR")
        SABOTAGE = args.sabotage
        faulthandler.enable()
        faulthandler.dump_traceback_later(args.timeout, exit=True)
        try:
            result = worker_main(*args.worker, args.duration, args.warmup, args.certs)
        except Skip as exc:
            result = {"skip": str(exc)}
        faulthandler.cancel_dump_traceback_later()
        print(json.dumps(result))
        return 0

    if shutil.which("openssl") is None:
        sys.exit("the openssl command line tool is needed to make the benchmark certificates")
    with tempfile.TemporaryDirectory(prefix="ferroloop-tls-bench-") as tmp:
        if not args.certs:
            make_certs(tmp)
            args.certs = tmp
        if args.selftest:
            return selftest(args)
        return orchestrate(args)


def orchestrate(args):
    loop_info = run.probe_loops(args)
    available = [l for l in args.loops if loop_info[l]["available"]]
    if not available:
        sys.exit("no event loop available to benchmark")
    versions = ", ".join(f"{l} {loop_info[l]['version'].removeprefix('CPython ')}"
                         for l in available)
    print(f"python {platform.python_version()} on {platform.machine()}, "
          f"{os.cpu_count()} CPUs, {ssl.OPENSSL_VERSION}; loops: {versions}", file=sys.stderr)
    print(f"{len(args.cells)} cell(s) x {len(available)} loop(s) x {args.rounds} round(s); "
          f"{args.duration:g} s measured (echo after {args.warmup:g} s warm-up)",
          file=sys.stderr)

    results = run_all(args, available)
    for l in args.loops:
        for c in args.cells:
            results[c].setdefault(l, None)

    print()
    print(report.render(results, args.cells, args.loops, args.rounds,
                        unit="round trips/s (tls-echo-*) or handshakes/s (tls-handshake)",
                        label="cell"))
    print(cpu_split.render(results, args.cells, args.loops, per="op (round trip or handshake)",
                           what="process (server + clients on the same loop)"))
    for l in args.loops:
        if not loop_info[l]["available"]:
            print(f"note: {l} skipped: {loop_info[l]['note']}")
    for c in args.cells:
        for l, e in results[c].items():
            if e and e["skip"]:
                print(f"note: {c} skipped on {l}: {e['skip']}")
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
