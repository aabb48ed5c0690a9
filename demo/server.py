"""The local HTTP/1.1 server for the demo's crawlers.

    python demo/server.py [--app aiohttp|protocol] [--port 0] [--size 16384] [--workers 2]
                          [--cpus 1] [--lifeline-stdin]

It serves one deterministic HTML page (see ``page.py``) at ``/`` and ``/index.html``
(GET and HEAD), with keep-alive and ``Connection: close`` handled as HTTP/1.1 says.
``--app`` picks what answers the requests:

* ``aiohttp`` (default): an ``aiohttp.web`` application, run with ``web.AppRunner`` and
  ``web.SockSite``, access log off. ``main.py --server aiohttp`` uses it.
* ``protocol``: a minimal ``asyncio.Protocol`` HTTP server: one callback per request, the
  complete response (headers plus page) pre-built as a single ``bytes`` object and written
  with one call; 404, 405, 400 and 431 where they apply. It costs the server a small
  fraction of what a request costs an aiohttp client, so ``main.py`` uses it by default
  (``--server light``), for both crawlers.

Design, so that the server is never the bottleneck of the benchmark:

* A master process binds the port (port 0 = any free port), then forks ``--workers``
  worker processes. Each worker listens on its own ``SO_REUSEPORT`` socket on that
  port, so the kernel spreads incoming connections across workers (no thundering herd).
* Each worker runs on uvloop when it is importable (else on the stock loop).
* ``--cpus`` pins the workers to those CPUs, so that a benchmark can keep the client's
  CPU free of them.
* When every worker is listening, the master prints
  ``READY <port> app=... workers=N loop=... size=... pids=<worker pids> cpus=...`` on stdout. The
  crawlers read the workers' CPU time from ``/proc/<pid>/stat`` to show how busy the
  server was.

Shutdown: SIGTERM or SIGINT to the master stops everything; with ``--lifeline-stdin``
the master also stops when its stdin reaches EOF, i.e. when the parent that started it
dies for any reason (even SIGKILL). Workers hold a pipe from the master and exit when
the master goes away, so no process is ever left behind.
"""

from __future__ import annotations

import argparse
import asyncio
import email.utils
import os
import selectors
import signal
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from page import make_page  # noqa: E402

MAX_HEADER_BYTES = 64 * 1024


class Responses:
    """Pre-built response bytes; the Date header is refreshed once per second."""

    def __init__(self, page: bytes) -> None:
        self.page = page
        self.refresh()

    @staticmethod
    def _build(status: str, body: bytes, keep_alive: bool, date: str,
               with_body: bool = True, content_length: int | None = None) -> bytes:
        length = len(body) if content_length is None else content_length
        head = (
            f"HTTP/1.1 {status}\r\n"
            f"Server: ferroloop-demo\r\n"
            f"Date: {date}\r\n"
            f"Content-Type: text/html; charset=utf-8\r\n"
            f"Content-Length: {length}\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
        ).encode("ascii")
        return head + body if with_body else head

    def refresh(self) -> None:
        date = email.utils.formatdate(usegmt=True)
        b = self._build
        not_found = b"<html><body><h1>404 Not Found</h1></body></html>\n"
        # Indexed by keep-alive flag (0 = close, 1 = keep-alive).
        self.ok = (b("200 OK", self.page, False, date), b("200 OK", self.page, True, date))
        self.head = (
            b("200 OK", b"", False, date, False, len(self.page)),
            b("200 OK", b"", True, date, False, len(self.page)),
        )
        self.not_found = (b("404 Not Found", not_found, False, date),
                          b("404 Not Found", not_found, True, date))
        self.not_allowed = b("405 Method Not Allowed", b"", False, date)
        self.bad_request = b("400 Bad Request", b"", False, date)
        self.too_large = b("431 Request Header Fields Too Large", b"", False, date)


class HttpProtocol(asyncio.Protocol):
    """One connection: parse request heads, answer from ``Responses``, close or keep alive."""

    __slots__ = ("responses", "transport", "buf")

    def __init__(self, responses: Responses) -> None:
        self.responses = responses
        self.transport: asyncio.Transport | None = None
        self.buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        buf = self.buf + data if self.buf else data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEADER_BYTES:
                    self._fail(self.responses.too_large)
                    return
                self.buf = buf
                return
            head = buf[:end]
            buf = buf[end + 4:]
            if not self._answer(head):
                return
            if not buf:
                self.buf = b""
                return

    def _fail(self, response: bytes) -> None:
        self.buf = b""
        self.transport.write(response)
        self.transport.close()

    def _answer(self, head: bytes) -> bool:
        """Answer one request head; return False once the connection is closing."""
        r = self.responses
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0"):
            self._fail(r.bad_request)
            return False
        method, target, version = parts
        keep_alive = version == b"HTTP/1.1"
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            if not sep:
                self._fail(r.bad_request)
                return False
            name = name.strip().lower()
            if name == b"connection":
                tokens = [t.strip() for t in value.lower().split(b",")]
                if b"close" in tokens:
                    keep_alive = False
                elif b"keep-alive" in tokens:
                    keep_alive = True
            elif name in (b"content-length", b"transfer-encoding"):
                # The demo serves GET/HEAD only; a request body is not expected.
                if name == b"transfer-encoding" or value.strip() not in (b"0", b""):
                    self._fail(r.bad_request)
                    return False
        if method == b"GET":
            table = r.ok if target in (b"/", b"/index.html") else r.not_found
        elif method == b"HEAD":
            table = r.head if target in (b"/", b"/index.html") else r.not_found
        else:
            self._fail(r.not_allowed)
            return False
        self.transport.write(table[keep_alive])
        if not keep_alive:
            self.buf = b""
            self.transport.close()
            return False
        return True


def _new_loop(kind: str) -> tuple[asyncio.AbstractEventLoop, str]:
    if kind in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise
        else:
            return uvloop.new_event_loop(), "uvloop"
    return asyncio.SelectorEventLoop(), "asyncio"


def _listening_socket(host: str, port: int, reuse_port: bool, backlog: int) -> socket.socket:
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    if backlog:
        sock.listen(backlog)
    sock.setblocking(False)
    return sock


def _aiohttp_app(page: bytes):
    """The aiohttp web application: the page at ``/`` and ``/index.html`` (GET and HEAD)."""
    from aiohttp import web

    async def index(request: web.Request) -> web.Response:
        return web.Response(body=page, content_type="text/html", charset="utf-8")

    app = web.Application()
    app.router.add_get("/", index)  # add_get also answers HEAD
    app.router.add_get("/index.html", index)
    return app


def run_worker(sock: socket.socket, page: bytes, app_kind: str, loop_kind: str,
               lifeline_fd: int, ready_fd: int) -> None:
    """Serve on ``sock`` until SIGTERM or until the master's lifeline pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the master's business
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    loop, _ = _new_loop(loop_kind)
    asyncio.set_event_loop(loop)
    if app_kind == "aiohttp":
        from aiohttp import web

        # No access log, and a short grace period for open requests when stopping.
        runner = web.AppRunner(_aiohttp_app(page), access_log=None, shutdown_timeout=1.0)
        loop.run_until_complete(runner.setup())
        site = web.SockSite(runner, sock, backlog=4096)
        loop.run_until_complete(site.start())

        def shutdown() -> None:
            loop.run_until_complete(asyncio.wait_for(runner.cleanup(), 3.0))
    else:
        responses = Responses(page)

        def refresh_date() -> None:
            responses.refresh()
            loop.call_at(loop.time() + 1.0, refresh_date)

        loop.call_at(loop.time() + 1.0, refresh_date)
        server = loop.run_until_complete(
            loop.create_server(lambda: HttpProtocol(responses), sock=sock, backlog=4096))

        def shutdown() -> None:
            server.close()

    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    loop.add_reader(lifeline_fd, loop.stop)  # readable = EOF: the master is gone
    os.write(ready_fd, b"1")
    os.close(ready_fd)
    try:
        loop.run_forever()
    finally:
        try:
            shutdown()
        finally:
            loop.close()


class Master:
    """Forks the workers, reports the port, waits for a reason to stop, reaps everyone."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.pids: list[int] = []
        self.lifeline_w: int | None = None
        self.master_sock: socket.socket | None = None

    def start(self) -> int:
        args = self.args
        page = make_page(args.size)
        reuse_port = hasattr(socket, "SO_REUSEPORT") and args.workers > 1
        # The master's socket reserves the port. With SO_REUSEPORT it never listens
        # (each worker listens on its own socket); without, it is the shared listener.
        master_sock = _listening_socket(args.host, args.port, reuse_port,
                                        0 if reuse_port else 4096)
        self.master_sock = master_sock
        port = master_sock.getsockname()[1]
        lifeline_r, self.lifeline_w = os.pipe()
        ready_r, ready_w = os.pipe()
        for _ in range(args.workers):
            pid = os.fork()
            if pid == 0:  # worker
                code = 0
                try:
                    os.close(self.lifeline_w)
                    os.close(ready_r)
                    if reuse_port:
                        sock = _listening_socket(args.host, port, True, 4096)
                        master_sock.close()
                    else:
                        sock = master_sock
                    run_worker(sock, page, args.app, args.loop, lifeline_r, ready_w)
                except BaseException as exc:  # noqa: BLE001 - report, then leave
                    print(f"server worker {os.getpid()} failed: {exc!r}", file=sys.stderr)
                    code = 1
                finally:
                    sys.stderr.flush()
                    os._exit(code)
            self.pids.append(pid)
        os.close(lifeline_r)
        os.close(ready_w)
        ready = 0
        while ready < args.workers:
            got = os.read(ready_r, 64)
            if not got:
                raise RuntimeError("a server worker exited before it was ready")
            ready += len(got)
        os.close(ready_r)
        return port

    def wait(self) -> int:
        """Block until stdin EOF (with --lifeline-stdin), SIGTERM/SIGINT or a worker dies."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(sig, lambda *_: None)
        sel = selectors.DefaultSelector()
        sel.register(wake_r, selectors.EVENT_READ)
        if self.args.lifeline_stdin:
            sel.register(sys.stdin.fileno(), selectors.EVENT_READ)
        while True:
            for key, _ in sel.select():
                if key.fd == wake_r:
                    for signum in os.read(wake_r, 64):
                        if signum in (signal.SIGTERM, signal.SIGINT):
                            return 0
                        if signum == signal.SIGCHLD and self._reap_any():
                            print("server: a worker died unexpectedly", file=sys.stderr)
                            return 1
                elif not os.read(key.fd, 4096):  # stdin EOF: our parent is gone
                    return 0

    def _reap_any(self) -> bool:
        died = False
        for pid in list(self.pids):
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                self.pids.remove(pid)
                died = True
        return died

    def stop(self) -> None:
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 3.0
        for pid in self.pids:
            while True:
                done, _ = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    break
                time.sleep(0.01)
        self.pids.clear()
        if self.lifeline_w is not None:
            os.close(self.lifeline_w)
            self.lifeline_w = None
        if self.master_sock is not None:
            self.master_sock.close()
            self.master_sock = None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="HTTP/1.1 server for the ferroloop demo's crawlers")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 = pick a free port (default)")
    p.add_argument("--size", type=int, default=16 * 1024, help="page size in bytes (16384)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    p.add_argument("--app", choices=("aiohttp", "protocol"), default="aiohttp",
                   help="aiohttp: an aiohttp.web application (default); protocol: a "
                        "minimal HTTP/1.1 asyncio.Protocol server")
    p.add_argument("--loop", choices=("auto", "uvloop", "asyncio"), default="auto",
                   help="event loop of the workers: uvloop when importable (auto)")
    p.add_argument("--cpus", help="comma-separated CPUs the workers run on "
                                  "(os.sched_setaffinity; default: any)")
    p.add_argument("--lifeline-stdin", action="store_true",
                   help="exit when stdin reaches EOF (used when started by main.py)")
    args = p.parse_args(argv)
    if args.workers < 1:
        p.error("--workers must be >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    master = Master(args)
    # Ignore Ctrl-C/SIGTERM while forking; Master.wait installs the real handlers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        if args.cpus:
            # Set before forking: the workers inherit it.
            os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",") if c})
        port = master.start()
        kind = args.loop
        if kind == "auto":
            try:
                import uvloop  # noqa: F401
                kind = "uvloop"
            except ImportError:
                kind = "asyncio"
        pids = ",".join(map(str, master.pids))
        cpus = ",".join(map(str, sorted(os.sched_getaffinity(0))))
        print(f"READY {port} app={args.app} workers={args.workers} loop={kind} "
              f"size={args.size} pids={pids} cpus={cpus}", flush=True)
        return master.wait()
    finally:
        master.stop()


if __name__ == "__main__":
    sys.exit(main())
