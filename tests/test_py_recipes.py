"""The README's "Recipes", each run as written.

Every snippet below appears verbatim in README.md (test_readme_shows_*
checks it), so what the README shows is what runs here.  Server recipes
start the server as a subprocess on loopback (the README's port 8000
replaced by a free one), wait until it accepts connections, make a real
HTTP request whose answer names the running loop's class, then stop the
server with SIGTERM or SIGINT and check that it exits cleanly.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

pytest_plugins = ['pytester']

HERE = os.path.dirname(os.path.abspath(__file__))
README = os.path.join(os.path.dirname(HERE), 'README.md')
BIN = os.path.dirname(sys.executable)
LOOP_CLASS = 'ferroloop.Loop'
# Generous bounds: a server's startup on a loaded 2-core machine.
STARTUP_TIMEOUT = 60
EXIT_TIMEOUT = 30


# -- the snippets, as the README shows them -----------------------------------

ASYNCIO_RUN = '''\
import asyncio
import ferroloop

async def main():
    print(type(asyncio.get_running_loop()))

asyncio.run(main(), loop_factory=ferroloop.new_event_loop)
'''

ASYNCIO_RUNNER = '''\
import asyncio
import ferroloop

async def main():
    print(type(asyncio.get_running_loop()))

with asyncio.Runner(loop_factory=ferroloop.new_event_loop) as runner:
    runner.run(main())
'''

ASGI_APP = '''\
# app.py
import asyncio

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    loop = type(asyncio.get_running_loop())
    body = f"{loop.__module__}.{loop.__qualname__}".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
'''

UVICORN = 'uvicorn app:app --host 127.0.0.1 --port 8000 --loop ferroloop:new_event_loop'

GUNICORN = 'gunicorn app:app --bind 127.0.0.1:8000 -k ferroloop.workers.UvicornWorker'

AIOHTTP = '''\
import asyncio
import ferroloop
from aiohttp import web

async def hello(request):
    loop = type(asyncio.get_running_loop())
    return web.Response(text=f"{loop.__module__}.{loop.__qualname__}")

app = web.Application()
app.router.add_get("/", hello)
web.run_app(app, host="127.0.0.1", port=8000, loop=ferroloop.new_event_loop())
'''

PYTEST_CONFTEST = '''\
# conftest.py
import ferroloop

def pytest_asyncio_loop_factories(config, item):
    return {"ferroloop": ferroloop.new_event_loop}
'''

PYTEST_POLICY_CONFTEST = '''\
# conftest.py (pytest-asyncio before 1.4)
import pytest
import ferroloop

@pytest.fixture(scope="session")
def event_loop_policy():
    return ferroloop.EventLoopPolicy()
'''

PYTEST_TEST = '''\
# test_example.py
import asyncio
import pytest

@pytest.mark.asyncio
async def test_runs_on_ferroloop():
    loop = type(asyncio.get_running_loop())
    assert f"{loop.__module__}.{loop.__qualname__}" == "ferroloop.Loop"
'''

ANYIO = '''\
import asyncio
import anyio
import ferroloop

async def main():
    await anyio.sleep(0)
    print(type(asyncio.get_running_loop()))

anyio.run(main, backend_options={"loop_factory": ferroloop.new_event_loop})
'''

SNIPPETS = {
    'asyncio_run': ASYNCIO_RUN, 'asyncio_runner': ASYNCIO_RUNNER,
    'asgi_app': ASGI_APP, 'uvicorn': UVICORN, 'gunicorn': GUNICORN,
    'aiohttp': AIOHTTP, 'pytest_conftest': PYTEST_CONFTEST,
    'pytest_policy_conftest': PYTEST_POLICY_CONFTEST,
    'pytest_test': PYTEST_TEST, 'anyio': ANYIO,
}


@pytest.mark.parametrize('name', SNIPPETS)
def test_readme_shows_snippet(name):
    with open(README, encoding='utf-8') as f:
        readme = f.read()
    recipes = readme.split('## Recipes', 1)
    assert len(recipes) == 2, 'README.md has no "## Recipes" section'
    assert SNIPPETS[name] in recipes[1]


# -- helpers --------------------------------------------------------------------

def run_script(tmp_path, source):
    script = tmp_path / 'main.py'
    script.write_text(source)
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def wait_until_listening(proc, port):
    """Poll connect() until the server accepts; fail if it exits first."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        try:
            socket.create_connection(('127.0.0.1', port), timeout=1).close()
            return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f'server not listening on {port} '
                        f'after {STARTUP_TIMEOUT}s')
        try:
            # The poll interval doubles as the check that it is still up.
            proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
        out, err = proc.communicate()
        pytest.fail(f'server exited with {proc.returncode}:\n{out}\n{err}')


def get(port):
    with urllib.request.urlopen(f'http://127.0.0.1:{port}/',
                                timeout=30) as resp:
        return resp.status, resp.read().decode()


def serve_and_request(tmp_path, argv, port, stop_signal=signal.SIGTERM):
    """Start argv, GET /, stop it; returns (status, body, exit code, log)."""
    proc = subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_until_listening(proc, port)
        status, body = get(port)
        proc.send_signal(stop_signal)
        out, err = proc.communicate(timeout=EXIT_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return status, body, proc.returncode, out + err


def needs(*modules):
    """Skip unless these import (the 3.13+ matrix installs what has a
    wheel for that Python, and skips what needs the rest)."""
    for module in modules:
        pytest.importorskip(module)


def console_script(command_line, port):
    """The README's command line, its program taken from this venv, on
    port instead of 8000."""
    program, *args = command_line.replace('8000', str(port)).split()
    return [os.path.join(BIN, program), *args]


# -- the recipes ----------------------------------------------------------------

@pytest.mark.skipif(sys.version_info < (3, 12),
                    reason='asyncio.run(loop_factory=) is new in Python 3.12')
def test_asyncio_run_loop_factory(tmp_path):
    assert run_script(tmp_path, ASYNCIO_RUN) == "<class 'ferroloop.Loop'>\n"


def test_asyncio_runner_loop_factory(tmp_path):
    assert run_script(tmp_path, ASYNCIO_RUNNER) == "<class 'ferroloop.Loop'>\n"


def test_uvicorn(tmp_path):
    needs('uvicorn')
    (tmp_path / 'app.py').write_text(ASGI_APP)
    port = free_port()
    status, body, rc, log = serve_and_request(
        tmp_path, console_script(UVICORN, port), port)
    assert (status, body) == (200, LOOP_CLASS)
    # uvicorn shuts down, then re-raises the signal it caught, so that its
    # parent sees it (on the stock loop too).
    assert rc == -signal.SIGTERM, log
    assert 'Finished server process' in log
    assert 'Traceback' not in log


def test_gunicorn_uvicorn_worker(tmp_path):
    needs('gunicorn', 'uvicorn_worker')
    (tmp_path / 'app.py').write_text(ASGI_APP)
    port = free_port()
    status, body, rc, log = serve_and_request(
        tmp_path, console_script(GUNICORN, port), port)
    assert (status, body) == (200, LOOP_CLASS)
    assert rc == 0, log
    assert 'Traceback' not in log
    # The worker booted, and shut down with the arbiter.
    assert 'Booting worker' in log and 'Shutting down: Master' in log


def test_gunicorn_worker_class_is_uvicorn_workers():
    needs('gunicorn', 'uvicorn_worker')
    import uvicorn_worker
    from ferroloop.workers import UvicornWorker
    assert issubclass(UvicornWorker, uvicorn_worker.UvicornWorker)
    assert UvicornWorker.CONFIG_KWARGS['loop'] == 'ferroloop:new_event_loop'
    # uvicorn takes that string as a loop factory.
    from uvicorn.config import Config
    import ferroloop
    config = Config(app=None, **UvicornWorker.CONFIG_KWARGS)
    assert config.get_loop_factory() is ferroloop.new_event_loop


def test_aiohttp_run_app(tmp_path):
    needs('aiohttp')
    port = free_port()
    (tmp_path / 'server.py').write_text(AIOHTTP.replace('8000', str(port)))
    status, body, rc, log = serve_and_request(
        tmp_path, [sys.executable, 'server.py'], port,
        stop_signal=signal.SIGINT)
    assert (status, body) == (200, LOOP_CLASS)
    assert rc == 0, log
    assert 'Traceback' not in log


def test_pytest_asyncio_loop_factory(pytester):
    needs('pytest_asyncio')
    pytester.makeconftest(PYTEST_CONFTEST)
    pytester.makepyfile(test_example=PYTEST_TEST)
    result = pytester.runpytest_subprocess('-p', 'asyncio')
    result.assert_outcomes(passed=1)


def test_pytest_asyncio_event_loop_policy_fixture(pytester):
    # Deprecated by pytest-asyncio 1.4 in favour of the hook, still honoured.
    needs('pytest_asyncio')
    pytester.makeconftest(PYTEST_POLICY_CONFTEST)
    pytester.makepyfile(test_example=PYTEST_TEST)
    result = pytester.runpytest_subprocess('-p', 'asyncio')
    result.assert_outcomes(passed=1)


def test_anyio_run_loop_factory(tmp_path):
    needs('anyio')
    assert run_script(tmp_path, ANYIO) == "<class 'ferroloop.Loop'>\n"
