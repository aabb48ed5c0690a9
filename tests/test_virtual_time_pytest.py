"""The virtual-time pytest plugin (ferroloop.pytest_plugin, entry point
pytest11): its marker and fixtures, pytest-asyncio's loop-factory hook,
anyio's asyncio backend, and the failure report. Each case runs a small
test file in a pytest run of its own (pytester), which loads the plugin
through its entry point as users get it."""

import pytest

pytest_plugins = ["pytester"]


def run(pytester, source, *args, conftest=None):
    pytester.makeini('[pytest]\nasyncio_default_fixture_loop_scope = function\n')
    if conftest is not None:
        pytester.makeconftest(conftest)
    pytester.makepyfile(test_it=source)
    return pytester.runpytest('-p', 'no:cacheprovider', *args)


def test_plugin_is_registered_through_the_entry_point(pytester):
    result = run(pytester, 'def test_nothing():\n    pass\n', '--markers')
    result.stdout.fnmatch_lines(['*@pytest.mark.virtual_time(*'])
    assert result.ret == 0


def test_marker_runs_an_async_test_on_virtual_time(pytester):
    result = run(pytester, '''
import asyncio
import pytest
import ferroloop.testing

@pytest.mark.virtual_time
async def test_hour():
    loop = asyncio.get_running_loop()
    assert isinstance(loop, ferroloop.testing.VirtualLoop)
    await asyncio.sleep(3600)
    assert loop.time() == 3600.0

@pytest.mark.virtual_time(start=50.0, manual=True)
async def test_manual(virtual_clock):
    fired = []
    asyncio.get_running_loop().call_later(10, fired.append, 1)
    await virtual_clock.advance(9)
    assert fired == []
    await virtual_clock.advance(1)
    assert fired == [1] and virtual_clock.time() == 60.0

def test_sync_tests_are_left_alone():
    assert True
''')
    result.assert_outcomes(passed=3)


def test_unmarked_tests_are_not_touched(pytester):
    # Without the marker the plugin stays out of the way: pytest's own
    # handling of an async test (it is skipped with a warning) is unchanged.
    result = run(pytester, '''
async def test_plain():
    pass
''')
    outcomes = result.parseoutcomes()
    assert outcomes.get('passed', 0) == 0
    assert 'virtual' not in result.stdout.str()


def test_failure_report_shows_the_virtual_time(pytester):
    result = run(pytester, '''
import asyncio
import pytest

@pytest.mark.virtual_time
async def test_fails_late():
    await asyncio.sleep(90)
    assert False
''')
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(['*virtual time*',
                                 '*<VirtualLoop*time=90.0>: <VirtualClock t=90.0 auto*'])


def test_deadlock_fails_the_test_at_once(pytester):
    result = run(pytester, '''
import asyncio
import pytest

@pytest.mark.virtual_time
async def test_stuck():
    await asyncio.Event().wait()
''')
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(['*DeadlockError: deadlock at virtual time t=0.0*',
                                 "*name='Task-*", '*in test_stuck*'])


def test_pytest_asyncio_loop_factories_hook(pytester):
    conftest = ('from ferroloop.pytest_plugin import '
                'asyncio_loop_factories as pytest_asyncio_loop_factories\n')
    result = run(pytester, '''
import asyncio
import pytest
import ferroloop.testing

@pytest.mark.asyncio
async def test_on_virtual_loop():
    loop = asyncio.get_running_loop()
    assert isinstance(loop, ferroloop.testing.VirtualLoop)
    async with asyncio.timeout(5):
        await asyncio.sleep(4)
    assert loop.time() == 4.0

@pytest.mark.asyncio
@pytest.mark.virtual_time(start=1000.0)
async def test_marker_options():
    assert asyncio.get_running_loop().time() == 1000.0
''', conftest=conftest)
    result.assert_outcomes(passed=2)


def test_anyio_backend_with_the_virtual_loop(pytester):
    result = run(pytester, '''
import asyncio
import anyio
import pytest
import ferroloop.testing

@pytest.fixture
def anyio_backend():
    return ('asyncio', {'loop_factory': ferroloop.testing.new_virtual_loop})

@pytest.mark.anyio
async def test_fail_after():
    loop = asyncio.get_running_loop()
    assert isinstance(loop, ferroloop.testing.VirtualLoop)
    with pytest.raises(TimeoutError):
        with anyio.fail_after(30):
            await anyio.sleep(3600)
    assert loop.time() == 30.0
''')
    result.assert_outcomes(passed=1)
