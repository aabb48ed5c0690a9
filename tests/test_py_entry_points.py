"""Package entry points: new_event_loop, EventLoopPolicy, install, run,
python -m ferroloop, and the placeholders for not-yet-native APIs."""

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import warnings

import pytest

import ferroloop
from ferroloop import _policy


@pytest.fixture
def restore_policy():
    saved = asyncio.events._event_loop_policy
    yield
    asyncio.events._event_loop_policy = saved


@pytest.fixture
def policy_api():
    """Python 3.14 deprecated the policy API (asyncio's and ferroloop's
    counterparts): these tests are about what it does, not its warnings
    (test_py_newer_api checks those)."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        yield


def test_version():
    assert isinstance(ferroloop.__version__, str)
    assert ferroloop.__version__.count('.') >= 2


def test_new_event_loop():
    loop = ferroloop.new_event_loop()
    try:
        assert type(loop) is ferroloop.Loop
        assert not loop.is_running() and not loop.is_closed()
    finally:
        loop.close()


def test_run_returns_result_on_ferroloop_loop():
    async def main():
        return type(asyncio.get_running_loop())

    assert ferroloop.run(main()) is ferroloop.Loop


def test_run_debug_flag():
    async def main():
        return asyncio.get_running_loop().get_debug()

    assert ferroloop.run(main(), debug=True) is True
    assert ferroloop.run(main(), debug=False) is False


def test_run_cleans_up_tasks_and_loop():
    state = {}

    async def forever():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            state['cancelled'] = True
            raise

    async def main():
        state['loop'] = asyncio.get_running_loop()
        asyncio.get_running_loop().create_task(forever())
        await asyncio.sleep(0)

    ferroloop.run(main())
    assert state['cancelled'] is True
    assert state['loop'].is_closed()


def test_run_refuses_nested_call():
    async def main():
        coro = asyncio.sleep(0)
        try:
            with pytest.raises(RuntimeError, match=r'^asyncio.run\(\) cannot '
                               r'be called from a running event loop$'):
                ferroloop.run(coro)
        finally:
            coro.close()

    ferroloop.run(main())


def test_run_ctrl_c_cancels_main_then_raises_keyboard_interrupt():
    # asyncio.Runner's SIGINT handling: the first Ctrl-C cancels the main
    # task (waking the loop out of its poll), and run() raises
    # KeyboardInterrupt.
    state = {}

    async def main():
        loop = asyncio.get_running_loop()
        never = loop.create_future()
        thread = threading.Thread(
            target=os.kill, args=(os.getpid(), signal.SIGINT))
        loop.call_soon(thread.start)
        try:
            await never
        except asyncio.CancelledError:
            state['cancelled'] = True
            raise
        finally:
            thread.join()

    with pytest.raises(KeyboardInterrupt):
        ferroloop.run(main())
    assert state == {'cancelled': True}
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_run_requires_coroutine():
    # As asyncio.run(): ValueError up to 3.11, TypeError since 3.12 (which
    # also takes other awaitables).
    not_a_coroutine = lambda: None  # noqa: E731 (its repr is in the message)
    with pytest.raises(Exception) as stock:
        asyncio.run(not_a_coroutine)
    with pytest.raises(type(stock.value)) as ours:
        ferroloop.run(not_a_coroutine)
    assert str(ours.value) == str(stock.value)


def test_policy_creates_ferroloop_loops(restore_policy, policy_api):
    ferroloop.install()
    policy = asyncio.get_event_loop_policy()
    assert isinstance(policy, ferroloop.EventLoopPolicy)
    assert isinstance(policy, asyncio.DefaultEventLoopPolicy)

    loop = asyncio.new_event_loop()
    try:
        assert type(loop) is ferroloop.Loop
    finally:
        loop.close()

    async def main():
        return type(asyncio.get_running_loop())

    assert asyncio.run(main()) is ferroloop.Loop


def stock_policy_creates_loop_on_demand():
    # Up to 3.13 the main thread's get_event_loop() creates the loop; 3.14
    # made it raise until set_event_loop() is called.
    stock = _policy.EventLoopPolicy.__mro__[1]()
    try:
        stock.get_event_loop().close()
    except RuntimeError:
        return False
    return True


def test_policy_get_event_loop(restore_policy, policy_api):
    policy = ferroloop.EventLoopPolicy()
    asyncio.set_event_loop_policy(policy)
    if stock_policy_creates_loop_on_demand():
        loop = policy.get_event_loop()
    else:
        with pytest.raises(RuntimeError, match='There is no current event loop'):
            policy.get_event_loop()
        loop = policy.new_event_loop()
        policy.set_event_loop(loop)
    try:
        assert type(loop) is ferroloop.Loop
        assert policy.get_event_loop() is loop
        policy.set_event_loop(None)
        with pytest.raises(RuntimeError, match='There is no current event loop'):
            policy.get_event_loop()
    finally:
        loop.close()


@pytest.mark.skipif(not hasattr(asyncio, 'ThreadedChildWatcher'),
                    reason='asyncio has no child watchers (removed in 3.14)')
def test_policy_keeps_child_watcher_api(restore_policy, policy_api):
    # Code written for the stock Unix policy calls these.
    asyncio.set_event_loop_policy(ferroloop.EventLoopPolicy())
    watcher = asyncio.ThreadedChildWatcher()
    asyncio.set_child_watcher(watcher)
    assert asyncio.get_child_watcher() is watcher
    asyncio.set_child_watcher(None)


def run_ferroloop_main(args, cwd):
    env = dict(os.environ)
    # The package under test must be importable in the child.
    env['PYTHONPATH'] = os.pathsep.join(
        [os.path.dirname(os.path.dirname(ferroloop.__file__))]
        + [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p])
    return subprocess.run([sys.executable, '-m', 'ferroloop', *args],
                          cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=60)


SCRIPT = textwrap.dedent('''\
    import asyncio, sys

    async def main():
        loop = asyncio.get_running_loop()
        return f"{type(loop).__module__}.{type(loop).__qualname__}"

    print(asyncio.run(main()))
    print(__name__)
    print(sys.argv)
    print(sys.path[0])
    print(type(asyncio.get_event_loop_policy()).__name__)
''')


def test_main_runs_script_with_ferroloop(tmp_path):
    script = tmp_path / 'script.py'
    script.write_text(SCRIPT)
    result = run_ferroloop_main([str(script), 'a', '--flag'], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines == ['ferroloop.Loop', '__main__',
                     repr([str(script), 'a', '--flag']), str(tmp_path),
                     'EventLoopPolicy']


def test_main_runs_module_with_ferroloop(tmp_path):
    (tmp_path / 'mymod.py').write_text(SCRIPT)
    result = run_ferroloop_main(['-m', 'mymod', 'x'], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ['ferroloop.Loop', '__main__']
    assert lines[2] == repr([str(tmp_path / 'mymod.py'), 'x'])


def test_main_script_exit_code_and_errors(tmp_path):
    script = tmp_path / 'fails.py'
    script.write_text('import sys\nsys.exit(3)\n')
    assert run_ferroloop_main([str(script)], cwd=tmp_path).returncode == 3

    result = run_ferroloop_main([str(tmp_path / 'missing.py')], cwd=tmp_path)
    assert result.returncode == 2
    assert "can't open file" in result.stderr

    result = run_ferroloop_main([], cwd=tmp_path)
    assert result.returncode == 2
    assert 'usage: python -m ferroloop' in result.stderr


def test_every_abstract_loop_method_is_implemented():
    abstract = asyncio.AbstractEventLoop
    missing = [name for name, value in vars(abstract).items()
               if callable(value) and not name.startswith('_')
               and getattr(ferroloop.Loop, name) is value]
    assert missing == []
