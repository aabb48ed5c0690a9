"""Scaling with the number of connections: memory per idle connection and
request cost at 10, 100 and 1,000 active connections.

    make bench-scale-conns                          # builds loadgen, then runs this
    .venv/bin/python benchmarks/scale_conns.py      # 3 rounds
    .venv/bin/python benchmarks/scale_conns.py --quick
    .venv/bin/python benchmarks/scale_conns.py --loops asyncio,ferroloop --idle 5000

Two kinds of cell, each in a fresh server process (`scale_conns.py serve LOOP`)
running an echo server with a plain `asyncio.Protocol` (data_received ->
transport.write), clients always in another process:

* idle-N: a client process opens N connections (default 10,000) and keeps them
  open without sending anything. The server reports its RSS after
  `gc.collect()` before the first and after the N-th connection_made; the cell
  is (RSS after - RSS before) / N, in KiB per connection. The server has
  accepted a few warm-up connections first (kept open), so one-time imports
  and caches do not count. The client connects 50 at a time, each batch
  accepted before the next, which also bounds how many connections a loop
  sets up per accept callback (see README.md).
* active-C: the Rust load generator (loadgen/) runs C connections of 100-byte
  echo request/response, one request in flight per connection; the cell is
  requests/s and the server's CPU time per request (from /proc, over the
  measured window).

Rounds are interleaved (round 1 runs every cell on asyncio, uvloop, rloop,
ferroloop; then round 2; ...); tables show medians and ferroloop's ratios.
Both processes raise RLIMIT_NOFILE to the hard limit.
"""

import argparse
import gc
import json
import os
import resource
import select
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import loops  # noqa: E402

LOADGEN_DIR = HERE / "loadgen"
LOADGEN = LOADGEN_DIR / "target" / "release" / "loadgen"
WARMUP_CONNS = 20
# The idle client connects this many at a time, then waits until the server
# has accepted them: a listen queue that overflows drops SYNs, and each drop
# stalls a blocking connect() for a second.
CHUNK = 50
ECHO_SIZE = 100


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# -- the server ----------------------------------------------------------------

def serve(loop_name, backlog):
    """Echo server; answers `stats` lines on stdin with a JSON line."""
    raise_nofile()
    import asyncio
    loop = loops.new_loop(loop_name)
    asyncio.set_event_loop(loop)
    conns = 0
    errors = []

    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            nonlocal conns
            conns += 1
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data)

        def connection_lost(self, exc):
            nonlocal conns
            conns -= 1

    def handler(loop, context):
        exc = context.get("exception")
        if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
            return
        errors.append(context.get("message"))
        print(f"server-error: {context.get('message')}: {exc!r}",
              file=sys.stderr, flush=True)

    loop.set_exception_handler(handler)
    server = loop.run_until_complete(
        loop.create_server(Echo, "127.0.0.1", 0, backlog=backlog))
    port = server.sockets[0].getsockname()[1]

    # Commands arrive on stdin, read by a thread (add_reader on a pipe is not
    # something every loop under test needs to get right for this benchmark).
    import threading
    done = loop.create_future()

    def answer(cmd):
        if cmd == "count":
            print(json.dumps({"conns": conns}), flush=True)
        elif cmd == "stats":
            gc.collect()
            print(json.dumps({"conns": conns, "rss": rss_bytes(),
                              "errors": len(errors)}), flush=True)
        elif not done.done():
            done.set_result(None)

    def reader():
        for line in sys.stdin:
            loop.call_soon_threadsafe(answer, line.strip())
        loop.call_soon_threadsafe(answer, "quit")

    threading.Thread(target=reader, daemon=True).start()
    print(json.dumps({"port": port, "pid": os.getpid()}), flush=True)
    loop.run_until_complete(done)
    server.close()
    loop.close()


# -- the idle client -------------------------------------------------------------

def hold(port, n):
    """Opens n connections CHUNK at a time (saying so and waiting for a line
    on stdin after each chunk), holds them until stdin closes, resets them."""
    raise_nofile()
    socks = []
    while len(socks) < n:
        for _ in range(min(CHUNK, n - len(socks))):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            # Closed with a reset: no TIME_WAIT on thousands of ports per cell.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                         b"\x01\x00\x00\x00\x00\x00\x00\x00")
            socks.append(s)
        print(json.dumps({"open": len(socks)}), flush=True)
        if len(socks) < n:
            sys.stdin.readline()
    sys.stdin.read()
    for s in socks:
        s.close()


# -- the driver ------------------------------------------------------------------

class Server:
    def __init__(self, loop_name, backlog):
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "serve", loop_name, str(backlog)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=_child_env())
        hello = self._line(30)
        self.port, self.pid = hello["port"], hello["pid"]

    def _line(self, timeout):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            raise RuntimeError(f"server gave no answer (exit status {self.proc.poll()})")
        return json.loads(line)

    def stats(self):
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        return self._line(60)

    def count(self):
        self.proc.stdin.write("count\n")
        self.proc.stdin.flush()
        return self._line(60)["conns"]

    def wait_conns(self, n, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            if self.count() == n:
                return self.stats()
            if time.monotonic() > deadline:
                raise RuntimeError(f"server has {self.count()} connections, expected {n}")
            time.sleep(0.001)

    def stop(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=10)
        except (subprocess.TimeoutExpired, BrokenPipeError):
            self.proc.kill()
            self.proc.wait()
        finally:
            self.proc.stdout.close()


def _child_env():
    env = dict(os.environ)
    for var in ("PYTHONASYNCIODEBUG", "PYTHONDEVMODE", "PYTHONTRACEMALLOC"):
        env.pop(var, None)
    env["PYTHONHASHSEED"] = "0"
    return env


def _holder(server, base, n):
    """A client process holding n connections, opened in chunks, each one
    accepted by the server (which had `base` before) before the next."""
    proc = subprocess.Popen([sys.executable, __file__, "hold", str(server.port), str(n)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    while True:
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        line = proc.stdout.readline() if ready else ""
        if not line:
            proc.kill()
            proc.wait()
            raise RuntimeError("the client could not open its connections")
        opened = json.loads(line)["open"]
        server.wait_conns(base + opened)
        if opened == n:
            return proc
        proc.stdin.write("more\n")
        proc.stdin.flush()


def _release(proc):
    proc.stdin.close()
    proc.wait(timeout=60)
    proc.stdout.close()


def idle_cell(loop_name, n, backlog):
    server = Server(loop_name, backlog)
    try:
        # The warm-up connections stay open: not every loop reports a reset
        # connection as lost at once.
        warm = _holder(server, 0, WARMUP_CONNS)
        before = server.wait_conns(WARMUP_CONNS)
        holder = _holder(server, WARMUP_CONNS, n)
        after = server.wait_conns(WARMUP_CONNS + n)
        _release(holder)
        _release(warm)
        if after["errors"]:
            raise RuntimeError(f"{after['errors']} server error(s)")
        return (after["rss"] - before["rss"]) / n / 1024
    finally:
        server.stop()


def active_cell(loop_name, conns, args):
    server = Server(loop_name, args.backlog)
    try:
        cmd = [str(args.loadgen), "echo", "--port", str(server.port), "--size", str(ECHO_SIZE),
               "--connections", str(conns), "--watch-pid", str(server.pid),
               "--warmup", str(args.warmup), "--duration", str(args.duration)]
        gen = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=raise_nofile,
                             timeout=args.warmup + args.duration + 120)
        if gen.returncode != 0:
            raise RuntimeError("loadgen: " + (gen.stderr.strip().splitlines() or ["?"])[-1])
        sample = json.loads(gen.stdout.strip().splitlines()[-1])
        if server.stats()["errors"]:
            raise RuntimeError("server error(s)")
        rps = sample["rps"]
        cpu = sample.get("server_cpu")
        return rps, (cpu / rps * 1e6 if cpu is not None and rps else None)
    finally:
        server.stop()


def ensure_loadgen():
    proc = subprocess.run(["cargo", "build", "--release", "--quiet", "--manifest-path",
                           str(LOADGEN_DIR / "Cargo.toml")], capture_output=True, text=True)
    if proc.returncode != 0 or not LOADGEN.is_file():
        sys.exit(f"building the load generator failed:\n{proc.stderr[-3000:]}")
    return LOADGEN


def available_loops(names):
    out = []
    for name in names:
        proc = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True)
        if proc.returncode == 0:
            out.append(name)
        else:
            print(f"note: skipping {name} (not importable)", file=sys.stderr)
    return out


def _fmt(v, spec):
    return "-" if v is None else format(v, spec)


def render(results, loop_names, cells):
    lines = []

    def table(title, key, spec, better_low, cells):
        lines.append(f"\n{title}\n")
        head = "| cell | " + " | ".join(loop_names) + " | " + " | ".join(
            f"ferroloop vs {n}" for n in loop_names if n != "ferroloop") + " |"
        lines.append(head)
        lines.append("|" + "---|" * (1 + len(loop_names) * 2 - ("ferroloop" in loop_names)))
        for cell in cells:
            meds = {}
            for n in loop_names:
                vals = [s[key] for s in results[(n, cell)] if s.get(key) is not None]
                meds[n] = statistics.median(vals) if vals else None
            row = [cell] + [_fmt(meds[n], spec) for n in loop_names]
            f = meds.get("ferroloop")
            for n in loop_names:
                if n == "ferroloop":
                    continue
                if f is None or meds[n] in (None, 0) or f == 0:
                    row.append("-")
                else:
                    # Above 1.00x: ferroloop is better.
                    row.append(f"{(meds[n] / f if better_low else f / meds[n]):.2f}x")
            if "ferroloop" in loop_names:
                lines.append("| " + " | ".join(row) + " |")
            else:
                lines.append("| " + " | ".join(row[:1 + len(loop_names)]) + " |")

    idle = [c for c in cells if c.startswith("idle")]
    active = [c for c in cells if c.startswith("active")]
    if idle:
        table("RSS per idle connection, KiB (lower is better; ratio above 1.00x: "
              "ferroloop uses less)", "kib", ".2f", True, idle)
    if active:
        table("Requests/s, 100-byte echo, one request in flight per connection "
              "(ratio above 1.00x: ferroloop faster)", "rps", ",.0f", False, active)
        table("Server CPU per request, µs (lower is better; ratio above 1.00x: "
              "ferroloop cheaper)", "us_per_req", ".2f", True, active)
    return "\n".join(lines)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:
        return serve(argv[1], int(argv[2]))
    if argv[:1] == ["hold"]:
        return hold(int(argv[1]), int(argv[2]))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--loops", default=",".join(loops.LOOP_NAMES))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--idle", type=int, default=10000, help="idle connections (0: skip)")
    p.add_argument("--active", default="10,100,1000", help="active connection counts ('': skip)")
    p.add_argument("--backlog", type=int, default=100,
                   help="create_server's backlog (default: asyncio's own, 100)")
    p.add_argument("--duration", type=float, default=2.0)
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--quick", action="store_true", help="1 round, 2,000 idle, 1 s cells")
    p.add_argument("--json", help="write every sample as JSON")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.idle, args.duration, args.warmup = 1, 2000, 1.0, 0.2
    raise_nofile()
    names = available_loops([n for n in args.loops.split(",") if n])
    cells = ([f"idle-{args.idle}"] if args.idle else []) + [
        f"active-{c}" for c in args.active.split(",") if c]
    args.loadgen = ensure_loadgen() if any(c.startswith("active") for c in cells) else None
    results = {(n, c): [] for n in names for c in cells}
    failed = False
    for rnd in range(args.rounds):
        for cell in cells:
            for name in names:
                try:
                    if cell.startswith("idle"):
                        sample = {"kib": idle_cell(name, args.idle, args.backlog)}
                    else:
                        rps, us = active_cell(name, int(cell.split("-")[1]), args)
                        sample = {"rps": rps, "us_per_req": us}
                except Exception as exc:  # one failed cell does not stop the others
                    failed = True
                    print(f"FAIL {name} {cell} round {rnd + 1}: {exc}", file=sys.stderr)
                    continue
                results[(name, cell)].append(sample)
                print(f"round {rnd + 1} {cell:12} {name:10} {json.dumps(sample)}",
                      file=sys.stderr, flush=True)
    print(f"{args.rounds} round(s), medians; python {sys.version.split()[0]}, "
          + ", ".join(f"{n} {loops.version(n)}" for n in names))
    print(render(results, names, cells))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({f"{n}/{c}": v for (n, c), v in results.items()}, f, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
