"""Throwaway PostgreSQL and Redis servers for the real-client benchmarks.

Both servers are started from Debian's packaged binaries, listen on 127.0.0.1
only (on a free port), keep their files in a fresh temporary directory, and are
stopped by their process id. Nothing touches the system's own clusters or
services.

    with servers(need_pg=True, need_redis=True) as s:
        s.pg.dsn, s.redis.url

`servers()` stops both and deletes the directories on every way out (normal
return, exception, Ctrl-C); SIGTERM and SIGHUP are turned into KeyboardInterrupt
while it is active so a killed benchmark cleans up as well. The servers run in
their own session, so a Ctrl-C in the terminal reaches the benchmark only and
the shutdown order stays ours.

Also used by tests/test_real_clients.py.
"""

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

PG_USER = "bench"        # superuser name given to initdb; trust auth, no password
PG_DATABASE = "postgres"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


class ServerUnavailable(Exception):
    """A server binary is not installed (message says which package has it)."""


def free_port():
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(port, proc, what, log_path, ready_line):
    """Until the port accepts connections and the log says `ready_line`
    (PostgreSQL listens before it finishes recovery and refuses clients)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with status {proc.returncode} while starting:\n"
                               + _tail(log_path))
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            if s.connect_ex(("127.0.0.1", port)) == 0 and ready_line in _tail(log_path, 50):
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within "
                       f"{START_TIMEOUT:g} s:\n" + _tail(log_path))


def _tail(path, lines=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop(proc, sig):
    """Send `sig` to the server's pid, wait, then SIGKILL if it lingers."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.kill(proc.pid, sig)
        proc.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    except ProcessLookupError:
        pass


# ------------------------------------------------------------------ PostgreSQL


def pg_bindir():
    """Directory of the newest installed Debian PostgreSQL server binaries."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if found:
        return os.path.dirname(found[-1])
    for exe in ("postgres", "initdb"):
        if shutil.which(exe) is None:
            raise ServerUnavailable("PostgreSQL server not installed "
                                    "(apt-get install postgresql)")
    return os.path.dirname(shutil.which("postgres"))


def _server_user():
    """(uid, gid) to run PostgreSQL as: it refuses to run as root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pw = pwd.getpwnam(name)
        except KeyError:
            continue
        return pw.pw_uid, pw.pw_gid
    raise ServerUnavailable("running as root and neither user 'postgres' nor 'nobody' exists")


class PostgresServer:
    def __init__(self):
        self.bindir = pg_bindir()
        self.proc = None
        self.tmp = None
        self.port = None

    @property
    def dsn(self):
        # sslmode=disable: the server has no TLS, and asyncpg's default "prefer"
        # would first negotiate (and be refused) on every connection.
        return (f"postgresql://{PG_USER}@127.0.0.1:{self.port}/{PG_DATABASE}"
                "?sslmode=disable")

    def start(self):
        ids = _server_user()
        self.tmp = tempfile.mkdtemp(prefix="ferroloop-pg-")
        data = os.path.join(self.tmp, "data")
        log_path = os.path.join(self.tmp, "server.log")
        if ids:
            os.chown(self.tmp, *ids)
        demote = {"user": ids[0], "group": ids[1], "extra_groups": []} if ids else {}
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"}
        init = subprocess.run(
            [os.path.join(self.bindir, "initdb"), "-D", data, "-U", PG_USER,
             "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"],
            cwd=self.tmp, env=env, capture_output=True, text=True, **demote)
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed ({init.returncode}):\n{init.stderr[-2000:]}")
        self.port = free_port()
        # Durability off: the benchmark measures the client, not the disk.
        # The unix socket lives in the temp dir, never in /var/run/postgresql.
        log = open(log_path, "w")
        if ids:
            os.chown(log_path, *ids)
        try:
            self.proc = subprocess.Popen(
                [os.path.join(self.bindir, "postgres"), "-D", data,
                 "-h", "127.0.0.1", "-p", str(self.port), "-k", self.tmp,
                 "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off", "-c", "max_connections=100",
                 "-c", "shared_buffers=64MB"],
                cwd=self.tmp, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, **demote)
        finally:
            log.close()
        _wait_ready(self.port, self.proc, "postgres", log_path,
                    "ready to accept connections")
        return self

    def stop(self):
        _stop(self.proc, signal.SIGINT)  # SIGINT = "fast" shutdown
        self.proc = None
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


# ----------------------------------------------------------------------- Redis


def redis_binary():
    exe = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None)
    if exe is None:
        raise ServerUnavailable("redis-server not installed (apt-get install redis-server)")
    return exe


class RedisServer:
    def __init__(self):
        self.exe = redis_binary()
        self.proc = None
        self.tmp = None
        self.port = None

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self.tmp = tempfile.mkdtemp(prefix="ferroloop-redis-")
        log_path = os.path.join(self.tmp, "server.log")
        self.port = free_port()
        log = open(log_path, "w")
        try:
            self.proc = subprocess.Popen(
                [self.exe, "--bind", "127.0.0.1", "--port", str(self.port),
                 "--save", "", "--appendonly", "no", "--daemonize", "no",
                 "--dir", self.tmp, "--protected-mode", "yes", "--maxclients", "1000"],
                cwd=self.tmp, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            log.close()
        _wait_ready(self.port, self.proc, "redis-server", log_path,
                    "Ready to accept connections")
        return self

    def stop(self):
        _stop(self.proc, signal.SIGTERM)
        self.proc = None
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None


# -------------------------------------------------------------------- together


class Servers:
    pg = None
    redis = None


def _interrupt(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def servers(need_pg=True, need_redis=True):
    """Start the requested servers; stop them and delete their files on exit."""
    s = Servers()
    started = []
    old = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            old[sig] = signal.signal(sig, _interrupt)
        except ValueError:  # not the main thread: the caller handles signals
            pass
    try:
        if need_pg:
            s.pg = PostgresServer()
            started.append(s.pg)
            s.pg.start()
        if need_redis:
            s.redis = RedisServer()
            started.append(s.redis)
            s.redis.start()
        yield s
    finally:
        for server in reversed(started):
            server.stop()
        for sig, handler in old.items():
            signal.signal(sig, handler)
