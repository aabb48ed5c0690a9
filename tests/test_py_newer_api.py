"""APIs whose contract changed after Python 3.11: create_task's keywords and
task factories, eager tasks, the context a custom exception handler runs in,
the 3.14 policy deprecation and 3.14's task introspection (python -m asyncio
ps/pstree).

Most checks run the same scenario on the stock loop of the running Python
and on ferroloop and compare: the expectation is whatever asyncio does here,
so one test covers every version.
"""

import asyncio
import contextvars
import os
import re
import subprocess
import sys
import textwrap
import time

import pytest

import ferroloop
from ferroloop import _policy


def stock_loop():
    # Not asyncio.new_event_loop(): the policy may be ferroloop's.
    return asyncio.SelectorEventLoop()


def on_both(scenario):
    """scenario(loop) on the stock loop and on ferroloop: both outcomes
    (the result, or the exception's type and message)."""
    outcomes = []
    for make in (stock_loop, ferroloop.new_event_loop):
        loop = make()
        try:
            outcomes.append(('ok', scenario(loop)))
        except Exception as exc:
            # "BaseEventLoop.create_task() got an unexpected keyword ...":
            # the qualified name is the class's own, the rest must match.
            message = re.sub(r'^[\w.]+\.(\w+\(\))', r'\1', str(exc))
            outcomes.append(('raised', type(exc), message))
        finally:
            loop.close()
    return outcomes


def recording_factory(calls):
    """A task factory that records what create_task() passed on."""
    def factory(loop, coro, **kwargs):
        calls.append(sorted(kwargs))
        return asyncio.Task(coro, loop=loop, **kwargs)
    return factory


async def noop():
    return 'done'


CREATE_TASK_CALLS = [
    {},
    {'name': 'named'},
    {'context': 'copy'},
    {'name': 'named', 'context': 'copy'},
    {'eager_start': True},      # 3.13+ forward it; 3.11/3.12 refuse it
    {'eager_start': False},
    {'unknown_keyword': 1},
]


@pytest.mark.parametrize('with_factory', [False, True])
@pytest.mark.parametrize('kwargs', CREATE_TASK_CALLS, ids=repr)
def test_create_task_keywords_as_stock(kwargs, with_factory):
    def scenario(loop):
        calls = []
        if with_factory:
            loop.set_task_factory(recording_factory(calls))
        kw = dict(kwargs)
        if kw.get('context') == 'copy':
            kw['context'] = contextvars.copy_context()
        coro = noop()
        try:
            task = loop.create_task(coro, **kw)
        except TypeError:
            coro.close()
            raise
        # The name is whatever this version's create_task made of it (3.13
        # applies set_name(name) to a factory's task even for name=None).
        name = task.get_name()
        result = loop.run_until_complete(task)
        return calls, name if not name.startswith('Task-') else 'Task-N', result
    stock, ours = on_both(scenario)
    assert ours == stock


def test_debug_source_traceback_ends_at_the_caller():
    def scenario(loop):
        loop.set_debug(True)
        task = loop.create_task(noop())
        last = task._source_traceback[-1]
        loop.run_until_complete(task)
        return last.filename, last.name
    stock, ours = on_both(scenario)
    assert ours == stock == ('ok', (__file__, 'scenario'))


@pytest.mark.skipif(not hasattr(asyncio, 'eager_task_factory'),
                    reason='eager tasks are Python 3.12+')
def test_eager_task_factory_starts_tasks_synchronously():
    def scenario(loop):
        loop.set_task_factory(asyncio.eager_task_factory)
        steps = []

        async def child():
            steps.append('child ran')
            return 42

        async def main():
            task = asyncio.get_running_loop().create_task(child(), name='eager')
            steps.append(f'after create_task: done={task.done()}')
            return await task, task.get_name()

        return loop.run_until_complete(main()), steps
    stock, ours = on_both(scenario)
    assert ours == stock
    assert ours[1][1] == ['child ran', 'after create_task: done=True']


@pytest.mark.skipif(not hasattr(asyncio, 'eager_task_factory'),
                    reason='eager tasks are Python 3.12+')
def test_eager_task_is_current_and_listed_while_running():
    def scenario(loop):
        seen = {}

        async def child():
            me = asyncio.current_task()
            # 3.13 names a factory's task only after the factory returned,
            # i.e. after the eager first step: Task-<counter> meanwhile.
            name = me.get_name()
            seen['current'] = 'Task-N' if name.startswith('Task-') else name
            seen['listed'] = me in asyncio.all_tasks()
            await asyncio.sleep(0)

        async def main():
            loop.set_task_factory(asyncio.eager_task_factory)
            task = loop.create_task(child(), name='eager-child')
            await task

        loop.run_until_complete(main())
        return seen
    stock, ours = on_both(scenario)
    assert ours == stock
    assert ours[1]['listed'] is True


def test_exception_handler_context_as_stock():
    """3.12+ run a custom handler in the context of the failing handle or
    task; 3.11 in the caller's.  Whichever asyncio does, ferroloop does."""
    var = contextvars.ContextVar('var', default='loop')

    def scenario(loop):
        seen = []
        loop.set_exception_handler(
            lambda loop, context: seen.append(var.get()))

        def fails():
            raise ZeroDivisionError

        ctx = contextvars.copy_context()
        ctx.run(var.set, 'handle')
        loop.call_soon(fails, context=ctx)

        async def task_fails():
            var.set('task')
            raise ZeroDivisionError

        async def main():
            task = asyncio.ensure_future(task_fails())
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            assert task.done()
            del task        # unretrieved exception: reported on collection

        loop.run_until_complete(main())
        import gc
        gc.collect()
        return seen
    stock, ours = on_both(scenario)
    assert ours == stock
    if hasattr(asyncio.Handle, 'get_context'):     # 3.12+
        assert ours == ('ok', ['handle', 'task'])
    else:
        assert ours == ('ok', ['loop', 'loop'])


# -- the 3.14 policy deprecation ------------------------------------------------

def run_python(code, *args, cwd=None):
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(
        [os.path.dirname(os.path.dirname(ferroloop.__file__))]
        + [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p])
    return subprocess.run(
        [sys.executable, '-W', 'error::DeprecationWarning', *code, *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


QUIET_ENTRY_POINTS = textwrap.dedent('''\
    import asyncio, inspect, signal, ferroloop

    async def main():
        return type(asyncio.get_running_loop()).__name__

    print(ferroloop.run(main()))
    if 'loop_factory' in inspect.signature(asyncio.run).parameters:  # 3.12+
        print(asyncio.run(main(), loop_factory=ferroloop.new_event_loop))
    else:
        print('Loop')
    with asyncio.Runner(loop_factory=ferroloop.new_event_loop) as runner:
        print(runner.run(main()))
    from ferroloop import *

    async def debug_checks():
        # Debug mode checks callbacks with asyncio's coroutine-function test,
        # whose public name 3.14 deprecated.
        loop = asyncio.get_running_loop()
        loop.call_soon(print, 'call_soon')
        await asyncio.sleep(0)
        await loop.run_in_executor(None, print, 'run_in_executor')
        loop.add_signal_handler(signal.SIGUSR1, print)
        loop.remove_signal_handler(signal.SIGUSR1)
        return 'debug'

    print(ferroloop.run(debug_checks(), debug=True))
''')


def test_recommended_entry_points_do_not_warn():
    result = run_python(['-c', QUIET_ENTRY_POINTS])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['Loop', 'Loop', 'Loop', 'call_soon',
                                     'run_in_executor', 'debug']


def test_python_m_ferroloop_does_not_warn(tmp_path):
    script = tmp_path / 'app.py'
    script.write_text(textwrap.dedent('''\
        import asyncio

        async def main():
            return type(asyncio.get_running_loop()).__module__

        print(asyncio.run(main()))
    '''))
    result = run_python(['-m', 'ferroloop', str(script)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['ferroloop']


def stock_policy_api_warns():
    # What the stock asyncio of this Python does when asked for its policy.
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        asyncio.get_event_loop_policy()
    return any(issubclass(w.category, DeprecationWarning) for w in caught)


def test_policy_api_warns_exactly_where_asyncio_does():
    import warnings
    saved = _policy.events._event_loop_policy
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            policy_class = ferroloop.EventLoopPolicy
            ferroloop.install()
        messages = [str(w.message) for w in caught
                    if issubclass(w.category, DeprecationWarning)]
        if stock_policy_api_warns():
            assert messages == [
                "'ferroloop.EventLoopPolicy' is deprecated and slated for "
                "removal in Python 3.16",
                "'ferroloop.install' is deprecated and slated for removal in "
                "Python 3.16"]
            # Warnings point at the caller, as asyncio's do.
            assert {w.filename for w in caught} == {__file__}
            assert 'EventLoopPolicy' not in ferroloop.__all__
        else:
            assert messages == []
            assert 'EventLoopPolicy' in ferroloop.__all__
        # Deprecated or not, it still works.
        assert isinstance(_policy.events._get_event_loop_policy()
                          if hasattr(_policy.events, '_get_event_loop_policy')
                          else asyncio.get_event_loop_policy(), policy_class)
        loop = asyncio.new_event_loop()
        assert type(loop) is ferroloop.Loop
        loop.close()
    finally:
        _policy.events._event_loop_policy = saved


# -- 3.14 task introspection -------------------------------------------------

INTROSPECTED = textwrap.dedent('''\
    import asyncio, sys, ferroloop

    async def worker():
        await asyncio.sleep(60)

    async def main():
        async with asyncio.TaskGroup() as tg:
            for i in range(3):
                tg.create_task(worker(), name=f'ferroloop-worker-{i}')
            await asyncio.sleep(0)
            print('ready', flush=True)
            sys.stdin.read()        # until the test closes our stdin
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

    ferroloop.run(main())
''')


@pytest.mark.skipif(sys.version_info < (3, 14),
                    reason='python -m asyncio ps/pstree are Python 3.14+')
@pytest.mark.parametrize('command', ['ps', 'pstree'])
def test_asyncio_ps_sees_ferroloop_tasks(command):
    env = dict(os.environ)
    env['PYTHONPATH'] = os.path.dirname(os.path.dirname(ferroloop.__file__))
    app = subprocess.Popen([sys.executable, '-c', INTROSPECTED], env=env,
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           text=True)
    try:
        assert app.stdout.readline() == 'ready\n'
        # Reading another process's memory needs ptrace rights (root, or
        # ptrace_scope 0 for a child): report that as a skip, not a failure.
        result = subprocess.run(
            [sys.executable, '-m', 'asyncio', command, str(app.pid)],
            capture_output=True, text=True, timeout=60)
        if result.returncode != 0 and ('ermission' in result.stderr
                                       or 'ptrace' in result.stderr):
            pytest.skip(f'no permission to inspect the process: '
                        f'{result.stderr.strip()[-200:]}')
        assert result.returncode == 0, result.stderr
        for i in range(3):
            assert f'ferroloop-worker-{i}' in result.stdout
        assert 'worker' in result.stdout and 'main' in result.stdout
    finally:
        app.stdin.close()
        try:
            app.wait(timeout=30)
        except subprocess.TimeoutExpired:
            app.kill()
            app.wait()
    assert app.returncode == 0
