"""UDP echo and subprocess spawn-and-wait benchmarks (issue 4).

Cells (see --help for the list):

  udp-echo-64 / udp-echo-1k   a DatagramProtocol echo server and a client, both
      on the loop under test in ONE process, over 127.0.0.1. The client keeps
      WINDOW datagrams in flight; each carries an 8-byte sequence number and a
      body derived from it, and every echo is checked (known sequence number,
      not a duplicate, exact length and content). Result: round trips/s.
  udp-sock-64    a UDP ping-pong through the low-level socket API: a server
      task loops on loop.sock_recvfrom + loop.sock_sendto (reply to the
      sender), the client task sends one 64-byte datagram with
      loop.sock_sendto and awaits its echo with loop.sock_recvfrom (one in
      flight, so every call waits). Each echo must be the datagram sent,
      from the server's address. Result: round trips/s.
  spawn-c50 / spawn-seq       asyncio.create_subprocess_exec(<true>) + wait(),
      1,000 children with at most 50 in flight / 1,000 one at a time.
      Every returncode must be 0 and no child may be left un-reaped at the end
      (os.waitpid(-1, WNOHANG) must raise ChildProcessError). Result: children/s.

Every (loop, cell, round) runs in a fresh interpreter (this file with
--worker); rounds are interleaved -- round 1 runs every cell on asyncio,
uvloop, rloop, ferroloop; then round 2; ... -- and the table reports medians
and ferroloop/X ratios of medians.

    .venv/bin/python benchmarks/proc_udp.py            # full run, 3 rounds (~2-3 minutes)
    .venv/bin/python benchmarks/proc_udp.py --quick    # smoke run: 1 round, short cells
    .venv/bin/python benchmarks/proc_udp.py --only udp-echo-64,spawn-c50 --rounds 5
    .venv/bin/python benchmarks/proc_udp.py --worker ferroloop udp-echo-1k   # one sample
"""

import argparse
import asyncio
import datetime
import faulthandler
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import cpu_split  # noqa: E402
import loops  # noqa: E402
import report  # noqa: E402
import run  # noqa: E402  (probe_loops, _child_env, _names)

WINDOW = 32            # datagrams in flight per UDP run
HEADER = 8             # big-endian sequence number in front of every datagram
SWEEP_S = 0.1          # how often the UDP client looks for lost datagrams
LOST_AFTER_SWEEPS = 5  # a datagram unanswered for ~0.5 s counts as lost (late echoes are forgiven)
MAX_LOSS = 0.01        # fail the cell when more than 1% of the datagrams sent are lost
DRAIN_S = 1.0          # after the measured window: wait this long for the last echoes

CELLS = {
    "udp-echo-64": {"kind": "udp", "size": 64},
    "udp-echo-1k": {"kind": "udp", "size": 1024},
    "udp-sock-64": {"kind": "sock", "size": 64},
    "spawn-c50": {"kind": "spawn", "n": 1000, "limit": 50},
    "spawn-seq": {"kind": "spawn", "n": 1000, "limit": 1},
}
DESCRIPTIONS = {
    "udp-echo-64": f"DatagramProtocol echo, 64 B datagrams, {WINDOW} in flight, round trips/s",
    "udp-echo-1k": f"DatagramProtocol echo, 1 KiB datagrams, {WINDOW} in flight, round trips/s",
    "udp-sock-64": "sock_recvfrom/sock_sendto ping-pong, 64 B, one in flight, round trips/s",
    "spawn-c50": "create_subprocess_exec('true') + wait, 1,000 children, 50 in flight, children/s",
    "spawn-seq": "create_subprocess_exec('true') + wait, 1,000 children one at a time, children/s",
}
QUICK_SPAWN_SCALE = 0.3
# selftest: sabotage -> a cell it must break
SABOTAGES = {"sock-corrupt": "udp-sock-64", "drop": "udp-echo-64", "corrupt": "udp-echo-1k", "duplicate": "udp-echo-64",
             "wrong-seq": "udp-echo-64", "false": "spawn-c50", "zombie": "spawn-seq"}


class BenchmarkError(Exception):
    pass


class Skip(Exception):
    """The loop does not implement an API this cell needs."""


# --------------------------------------------------------------------------- UDP


SABOTAGE = None  # --sabotage MODE (selftest only): break the server or the children


class EchoServer(asyncio.DatagramProtocol):
    def __init__(self, errors):
        self.errors = errors
        self.transport = None
        self.count = 0

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        if SABOTAGE:
            self.count += 1
            if SABOTAGE == "drop" and self.count % 20 == 0:
                return
            if SABOTAGE == "corrupt" and self.count == 500:
                data = data[:-1] + bytes([data[-1] ^ 1])
            if SABOTAGE == "duplicate" and self.count == 500:
                self.transport.sendto(data, addr)
            if SABOTAGE == "wrong-seq" and self.count == 500:
                data = (int.from_bytes(data[:HEADER], "big") + 10**9).to_bytes(HEADER, "big") \
                    + data[HEADER:]
        self.transport.sendto(data, addr)

    def error_received(self, exc):
        self.errors.append(f"server error_received: {exc!r}")


class EchoClient(asyncio.DatagramProtocol):
    """Keeps `window` datagrams in flight and verifies every echo."""

    def __init__(self, loop, size, window, errors):
        self.loop = loop
        self.size = size
        self.window = window
        self.errors = errors
        body_len = size - HEADER
        # 256 distinct bodies; seq picks one, so a swapped/corrupted payload is caught.
        self.bodies = [bytes((b * 31 + k * 7 + 1) & 0xFF for k in range(body_len))
                       for b in range(256)]
        self.transport = None
        self.next_seq = 0
        self.outstanding = {}   # seq -> sweep generation at send time
        self.lost = set()       # seqs given up on (forgiven if they arrive late)
        self.late = 0
        self.received = 0
        self.sending = True
        self.generation = 0
        self.sweeper = None
        self.drained = None

    def connection_made(self, transport):
        self.transport = transport

    def start(self):
        for _ in range(self.window):
            self._send_one()
        self.sweeper = self.loop.call_later(SWEEP_S, self._sweep)

    def _send_one(self):
        seq = self.next_seq
        self.next_seq = seq + 1
        self.outstanding[seq] = self.generation
        self.transport.sendto(seq.to_bytes(HEADER, "big") + self.bodies[seq & 0xFF])

    def datagram_received(self, data, addr):
        seq = int.from_bytes(data[:HEADER], "big")
        if self.outstanding.pop(seq, None) is None:
            if seq in self.lost:  # declared lost, arrived late after all
                self.lost.discard(seq)
                self.late += 1
                self._check(seq, data)
                return
            self.errors.append(f"unexpected datagram: seq {seq} was never sent or "
                               f"was echoed twice (next_seq {self.next_seq})")
            return
        self._check(seq, data)
        self.received += 1
        if self.sending:
            self._send_one()
        elif not self.outstanding and self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    def _check(self, seq, data):
        if len(data) != self.size or data[HEADER:] != self.bodies[seq & 0xFF]:
            self.errors.append(f"seq {seq}: echoed datagram differs from the one sent "
                               f"({len(data)} bytes, expected {self.size})")

    def _sweep(self):
        self.generation += 1
        cutoff = self.generation - LOST_AFTER_SWEEPS
        expired = [s for s, g in self.outstanding.items() if g <= cutoff]
        for seq in expired:
            del self.outstanding[seq]
            self.lost.add(seq)
            if self.sending:
                self._send_one()  # keep the window full
        if not self.sending and not self.outstanding and self.drained is not None \
                and not self.drained.done():
            self.drained.set_result(None)
        self.sweeper = self.loop.call_later(SWEEP_S, self._sweep)

    def error_received(self, exc):
        self.errors.append(f"client error_received: {exc!r}")


async def udp_echo(loop, size, duration, warmup):
    errors = []
    try:
        server_t, _ = await loop.create_datagram_endpoint(
            lambda: EchoServer(errors), local_addr=("127.0.0.1", 0))
    except NotImplementedError as exc:
        raise Skip(f"create_datagram_endpoint: NotImplementedError {exc}".strip()) from None
    addr = server_t.get_extra_info("sockname")[:2]
    client_t, client = await loop.create_datagram_endpoint(
        lambda: EchoClient(loop, size, WINDOW, errors), remote_addr=addr)
    try:
        client.start()
        await asyncio.sleep(warmup)
        r0, t0, cpu0 = client.received, time.perf_counter(), cpu_split.cpu_times()
        await asyncio.sleep(duration)
        r1, t1, cpu1 = client.received, time.perf_counter(), cpu_split.cpu_times()
        client.sending = False
        client.drained = loop.create_future()
        if client.outstanding:
            try:
                await asyncio.wait_for(client.drained, DRAIN_S)
            except asyncio.TimeoutError:
                pass
        client.sweeper.cancel()
    finally:
        client_t.close()
        server_t.close()
        await asyncio.sleep(0)
    lost = len(client.lost) + len(client.outstanding)
    sent = client.next_seq
    if errors:
        raise BenchmarkError(f"{len(errors)} error(s); first: {errors[0]}")
    if client.received + lost != sent:
        raise BenchmarkError(f"accounting: sent {sent}, echoed {client.received}, lost {lost}")
    if sent and lost / sent > MAX_LOSS:
        raise BenchmarkError(f"lost {lost} of {sent} datagrams ({lost / sent:.2%} > "
                             f"{MAX_LOSS:.0%})")
    ops = r1 - r0
    if ops <= 0:
        raise BenchmarkError("no datagram echoed during the measured window")
    user, sys_ = cpu_split.per_op_us(cpu0, cpu1, ops)
    return {"ops": ops, "seconds": t1 - t0, "sent": sent, "lost": lost,
            "late": client.late, "cpu_user_us": user, "cpu_sys_us": sys_}


# ------------------------------------------------------------ sock_* ping-pong


async def udp_sock_pingpong(loop, size, duration, warmup, rounds=None):
    """Round trips through sock_sendto / sock_recvfrom until `duration`
    seconds have been measured after `warmup` (or exactly `rounds` round
    trips, for instruction counts)."""
    import socket

    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for s in (server, client):
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
    server_addr, client_addr = server.getsockname(), client.getsockname()

    async def serve():
        while True:
            data, addr = await loop.sock_recvfrom(server, 2048)
            if SABOTAGE == "sock-corrupt" and data[:HEADER] == (500).to_bytes(HEADER, "big"):
                data = data[:-1] + bytes([data[-1] ^ 1])
            await loop.sock_sendto(server, data, addr)

    body = bytes((k * 7 + 1) & 0xFF for k in range(size - HEADER))
    done = 0

    async def one(seq):
        out = seq.to_bytes(HEADER, "big") + body
        try:
            await loop.sock_sendto(client, out, server_addr)
        except NotImplementedError as exc:
            raise Skip(f"sock_sendto: NotImplementedError {exc}".strip()) from None
        data, addr = await loop.sock_recvfrom(client, 2048)
        if data != out or addr != server_addr:
            raise BenchmarkError(f"round trip {seq}: got {len(data)} bytes from {addr!r}, "
                                 f"expected the {len(out)} sent, from {server_addr!r}")

    server_task = loop.create_task(serve())
    try:
        if rounds is not None:
            for seq in range(rounds):
                await one(seq)
            return {"ops": rounds, "seconds": 0.0}
        t_end = time.perf_counter() + warmup
        seq = 0
        while time.perf_counter() < t_end:
            await one(seq)
            seq += 1
        t0 = time.perf_counter()
        t_end = t0 + duration
        while True:
            for _ in range(100):
                await one(seq)
                seq += 1
                done += 1
            t1 = time.perf_counter()
            if t1 >= t_end:
                break
        if server.getsockname() != server_addr or client.getsockname() != client_addr:
            raise BenchmarkError("socket addresses changed")
        return {"ops": done, "seconds": t1 - t0}
    finally:
        server_task.cancel()
        try:
            await server_task
        except asyncio.CancelledError:
            pass
        server.close()
        client.close()


# ------------------------------------------------------------------ subprocess


async def spawn_wait(n, limit, true_path):
    returncodes = []
    remaining = n

    async def worker():
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            path = true_path
            if SABOTAGE == "false" and remaining == n // 2:
                path = shutil.which("false")
            proc = await asyncio.create_subprocess_exec(path)
            returncodes.append(await proc.wait())

    t0, cpu0 = time.perf_counter(), cpu_split.cpu_times()
    await asyncio.gather(*(worker() for _ in range(min(limit, n))))
    seconds, cpu1 = time.perf_counter() - t0, cpu_split.cpu_times()
    if len(returncodes) != n:
        raise BenchmarkError(f"{len(returncodes)} children waited for, expected {n}")
    bad = [rc for rc in returncodes if rc != 0]
    if bad:
        raise BenchmarkError(f"{len(bad)} of {n} children returned non-zero "
                             f"(first: {bad[0]!r})")
    user, sys_ = cpu_split.per_op_us(cpu0, cpu1, n)
    return {"ops": n, "seconds": seconds, "cpu_user_us": user, "cpu_sys_us": sys_}


def assert_no_children():
    try:
        pid, status = os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return
    if pid == 0:
        raise BenchmarkError("children still running after every wait() returned")
    raise BenchmarkError(f"zombie left behind: pid {pid} (status {status}) was not reaped")


# ---------------------------------------------------------------------- worker


def worker_main(loop_name, cell_name, duration, warmup, spawn_scale):
    cell = CELLS[cell_name]
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
        if cell["kind"] == "udp":
            # short untimed run first (imports, first-use paths), as run.py's warm-up
            loop.run_until_complete(udp_echo(loop, cell["size"], 0.1, 0.05))
            result = loop.run_until_complete(udp_echo(loop, cell["size"], duration, warmup))
        elif cell["kind"] == "sock":
            loop.run_until_complete(udp_sock_pingpong(loop, cell["size"], 0.1, 0.05))
            result = loop.run_until_complete(
                udp_sock_pingpong(loop, cell["size"], duration, warmup))
        else:
            true_path = shutil.which("true")
            if not true_path:
                raise BenchmarkError("no `true` binary on PATH")
            n = max(cell["limit"], int(cell["n"] * spawn_scale))
            try:
                loop.run_until_complete(spawn_wait(max(1, n // 10), cell["limit"], true_path))
            except NotImplementedError as exc:
                raise Skip(f"subprocess_exec: NotImplementedError {exc}".strip()) from None
            result = loop.run_until_complete(spawn_wait(n, cell["limit"], true_path))
            if SABOTAGE == "zombie":
                subprocess.Popen([true_path])  # started, never waited for
                time.sleep(0.2)
            assert_no_children()
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
        description="ferroloop UDP echo and subprocess benchmarks vs asyncio, uvloop, rloop.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="cells:\n" + "\n".join(f"  {k:14} {v}" for k, v in DESCRIPTIONS.items()))
    parser.add_argument("--worker", nargs=2, metavar=("LOOP", "CELL"),
                        help="internal: run one cell on one loop, print one JSON line")
    parser.add_argument("--rounds", type=int, help="rounds per (loop, cell); default 3, "
                        "or 1 with --quick")
    parser.add_argument("--only", action="append", metavar="CELL[,...]",
                        help="run only these cells")
    parser.add_argument("--loops", action="append", metavar="LOOP[,...]",
                        help=f"compare only these loops (default: {','.join(loops.LOOP_NAMES)})")
    parser.add_argument("--quick", action="store_true",
                        help=f"smoke run: 1 round, 0.5 s UDP cells, spawn counts x{QUICK_SPAWN_SCALE}")
    parser.add_argument("--duration", type=float,
                        help="measured seconds per UDP run (default 1.5, 0.5 with --quick)")
    parser.add_argument("--warmup", type=float, default=0.2,
                        help="unmeasured seconds of echo traffic before the clock starts "
                             "(default 0.2)")
    parser.add_argument("--spawn-scale", type=float,
                        help=f"multiply the spawn counts (default 1, {QUICK_SPAWN_SCALE} with --quick)")
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
        args.duration = 0.5 if args.quick else 1.5
    if args.spawn_scale is None:
        args.spawn_scale = QUICK_SPAWN_SCALE if args.quick else 1.0
    return args


def run_one(args, loop_name, cell_name, sabotage=None):
    """Returns (sample, skip_reason, error)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", loop_name, cell_name,
           "--duration", str(args.duration), "--warmup", str(args.warmup),
           "--spawn-scale", str(args.spawn_scale), "--timeout", str(args.timeout)]
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
    results = {c: {l: {"samples": [], "error": None, "skip": None, "lost": [], "sent": [],
                       "cpu_user_us": [], "cpu_sys_us": []}
                   for l in available} for c in args.cells}
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
                if "sent" in sample:
                    entry["sent"].append(sample["sent"])
                    entry["lost"].append(sample["lost"])
                progress.append(f"{l} {report.fmt_rate(sample['ops_per_sec'])}")
            print(f"[round {rnd}/{args.rounds}] {c:12} " + "  ".join(progress),
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
            "cpu_count": os.cpu_count(), "rounds": args.rounds,
            "duration": args.duration, "warmup": args.warmup,
            "spawn_scale": args.spawn_scale, "window": WINDOW,
            "statistic": "median over interleaved fresh-process rounds",
            "cpu": "process CPU (server and client, or the parent of the children) per op "
                   "in the measured window, getrusage(RUSAGE_SELF) deltas",
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
    args.duration, args.spawn_scale = 0.3, 0.2
    bad = 0
    for sabotage, cell in [(None, c) for c in CELLS] + list(SABOTAGES.items()):
        sample, skip, error = run_one(args, "asyncio", cell, sabotage)
        ok = (error is None and skip is None) if sabotage is None else error is not None
        bad += not ok
        detail = (error or "").splitlines()[0] if error else "passed"
        print(f"{'ok  ' if ok else 'BAD '} {sabotage or 'clean':12} {cell:12} {detail}")
    print("selftest:", "all checks work" if not bad else f"{bad} check(s) did not behave")
    return 1 if bad else 0


def main(argv=None):
    global SABOTAGE
    args = parse_args(argv)
    if args.selftest:
        return selftest(args)
    if args.worker:
        SABOTAGE = args.sabotage
        faulthandler.enable()
        faulthandler.dump_traceback_later(args.timeout, exit=True)
        try:
            result = worker_main(*args.worker, args.duration, args.warmup, args.spawn_scale)
        except Skip as exc:
            result = {"skip": str(exc)}
        faulthandler.cancel_dump_traceback_later()
        print(json.dumps(result))
        return 0

    loop_info = run.probe_loops(args)
    available = [l for l in args.loops if loop_info[l]["available"]]
    if not available:
        sys.exit("no event loop available to benchmark")
    versions = ", ".join(f"{l} {loop_info[l]['version'].removeprefix('CPython ')}"
                         for l in available)
    print(f"python {platform.python_version()} on {platform.machine()}, "
          f"{os.cpu_count()} CPUs; loops: {versions}", file=sys.stderr)
    print(f"{len(args.cells)} cell(s) x {len(available)} loop(s) x {args.rounds} round(s); "
          f"UDP {args.duration:g} s measured after {args.warmup:g} s warm-up; "
          f"spawn scale {args.spawn_scale:g}", file=sys.stderr)

    results = run_all(args, available)
    for l in args.loops:
        for c in args.cells:
            results[c].setdefault(l, None)

    print()
    print(report.render(results, args.cells, args.loops, args.rounds,
                        unit="round trips/s (udp-*) or children/s (spawn-*)", label="cell"))
    print(cpu_split.render(results, args.cells, args.loops, per="op (round trip or child)",
                           what="process (udp: server + client on the same loop; "
                                "spawn: the parent, not the children)"))
    udp_cells = [c for c in args.cells if CELLS[c]["kind"] == "udp"]
    loss_lines = []
    for c in udp_cells:
        for l in args.loops:
            e = results[c].get(l)
            if e and e["sent"]:
                loss_lines.append(f"  {c} on {l}: {sum(e['lost'])} lost of {sum(e['sent'])} sent")
    if loss_lines:
        print("\nUDP datagrams lost (all rounds; > 1% in one run fails the cell):")
        print("\n".join(loss_lines))
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
