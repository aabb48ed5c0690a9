"""Prove that the network benchmark's checks can fail.

Runs the load generator against deliberately broken servers (plain asyncio, in
a thread of this process) and requires each run to fail with the expected
reason -- and against three correct servers, which must pass: a correct
asyncio echo server, a correct HTTP server and the Rust ceiling echo server
that net.py runs as its "ceiling" column (loadgen/src/ceiling.rs).

    .venv/bin/python benchmarks/net_selftest.py
"""

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import net  # noqa: E402
import net_server  # noqa: E402

BODY = net_server.HTTP_BODY.decode()


class Echo(asyncio.Protocol):
    """Correct echo; subclasses break one thing after `after` bytes."""
    after = 200_000

    def connection_made(self, transport):
        self.transport = transport
        self.seen = 0
        self.broken = False

    def data_received(self, data):
        before = self.seen
        self.seen += len(data)
        if not self.broken and self.seen > self.after:
            self.broken = True
            data = self.sabotage(data, self.after - before)
            if data is None:
                return
        self.transport.write(data)

    def sabotage(self, data, at):
        return data


class EchoFlipByte(Echo):
    def sabotage(self, data, at):
        i = max(0, min(at, len(data) - 1))
        return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]


class EchoDropByte(Echo):
    def sabotage(self, data, at):
        return data[:-1]


class EchoExtraByte(Echo):
    def sabotage(self, data, at):
        return data + b"!"


class EchoClose(Echo):
    def sabotage(self, data, at):
        self.transport.close()


class EchoSwap(Echo):
    """Sends back the previous chunk instead of the current one (a stale buffer)."""
    def data_received(self, data):
        prev = getattr(self, "prev", data)
        self.prev = data
        super().data_received(prev if self.seen > self.after and len(prev) == len(data) else data)


def http_server(response_for):
    class Http(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            self.buf = b""
            self.n = 0

        def data_received(self, data):
            self.buf += data
            while b"\r\n\r\n" in self.buf:
                _, self.buf = self.buf.split(b"\r\n\r\n", 1)
                self.n += 1
                self.transport.write(response_for(self.n))
    return Http


def http(status=b"200 OK", body=BODY.encode(), length=None, extra_headers=b""):
    length = len(body) if length is None else length
    head = b"HTTP/1.1 " + status + b"\r\nContent-Type: text/plain\r\n"
    if length is not False:
        head += b"Content-Length: " + str(length).encode() + b"\r\n"
    return head + extra_headers + b"\r\n" + body


GOOD_HTTP = http()
LATER = 2000  # requests per connection served correctly before the sabotage


def after(bad):
    return lambda n: GOOD_HTTP if n < LATER // 100 else bad


# (name, mode, protocol factory, expected substring of the failure; None = must pass)
CASES = [
    ("echo: correct server passes", "echo", Echo, None),
    ("echo: ceiling server passes", "echo", "ceiling", None),
    ("echo: one flipped byte", "echo", EchoFlipByte, "differs at byte"),
    ("echo: stale chunk echoed", "echo", EchoSwap, "differs at byte"),
    ("echo: one byte lost", "echo", EchoDropByte, "unanswered"),
    ("echo: one extra byte", "echo", EchoExtraByte, "more bytes than"),
    ("echo: connection closed", "echo", EchoClose, "closed the connection"),
    ("http: correct server passes", "http", http_server(lambda n: GOOD_HTTP), None),
    ("http: status 500", "http", http_server(after(http(b"500 Oops"))), "expected status 200"),
    ("http: status 404", "http", http_server(after(http(b"404 Not Found"))), "expected status 200"),
    ("http: wrong body", "http", http_server(after(http(body=b"Hello, Wrld!!\n"))), "unexpected body"),
    ("http: Content-Length too long", "http",
     http_server(after(http(length=len(BODY) + 1))), "unanswered"),
    ("http: Content-Length too short", "http",
     http_server(after(http(length=len(BODY) - 1))), "after the end of the response"),
    ("http: no Content-Length", "http", http_server(after(http(length=False))),
     "no Content-Length"),
    ("http: Connection: close", "http",
     http_server(after(http(extra_headers=b"Connection: close\r\n"))), "Connection: close"),
    ("http: HTTP/1.0 answer", "http",
     http_server(after(GOOD_HTTP.replace(b"HTTP/1.1", b"HTTP/1.0", 1))), "not HTTP/1.1"),
]


def serve_in_thread(factory):
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder = {}

    def main():
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(loop.create_server(factory, "127.0.0.1", 0))
        holder["port"] = server.sockets[0].getsockname()[1]
        ready.set()
        loop.run_forever()
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()

    thread = threading.Thread(target=main, daemon=True)
    thread.start()
    ready.wait(10)

    def stop():
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
    return holder["port"], stop


def serve_ceiling():
    """Start the ceiling server binary; (port, stop)."""
    proc = subprocess.Popen([str(net.ensure_ceiling()), "--lifetime", "60"],
                            stdout=subprocess.PIPE, text=True)
    hello = json.loads(proc.stdout.readline())

    def stop():
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()
    return hello["port"], stop


def main():
    loadgen = net.ensure_loadgen(net.LOADGEN)
    failures = 0
    for name, mode, factory, expected in CASES:
        port, stop = serve_ceiling() if factory == "ceiling" else serve_in_thread(factory)
        cmd = [str(loadgen), mode, "--port", str(port), "--connections", "4",
               "--warmup", "0", "--duration", "0.7", "--drain-timeout", "1"]
        cmd += ["--size", "10k"] if mode == "echo" else ["--expect-body", BODY]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        finally:
            stop()
        reason = (proc.stderr.strip().splitlines() or [""])[-1]
        if expected is None:
            ok = proc.returncode == 0 and '"requests":' in proc.stdout
            detail = proc.stdout.strip() if ok else f"exit {proc.returncode}: {reason}"
        else:
            ok = proc.returncode == 2 and expected in reason
            detail = f"exit {proc.returncode}: {reason}"
        failures += not ok
        print(f"{'ok  ' if ok else 'BAD '} {name:32} {detail[:150]}")
    print(f"{len(CASES) - failures} passed, {failures} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
