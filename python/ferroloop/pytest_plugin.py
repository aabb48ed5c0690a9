"""pytest plugin for virtual time (entry point ``pytest11: ferroloop``).

Inactive unless used: nothing changes for a test that neither carries the
``virtual_time`` marker nor requests the fixtures below, and ferroloop's
extension is imported only then.

* ``@pytest.mark.virtual_time(**options)`` on an ``async def`` test that no
  other plugin runs: the test runs on a new virtual-time loop (options as
  ``ferroloop.testing.new_virtual_loop``'s).
* fixtures ``virtual_loop`` (that loop) and ``virtual_clock`` (its clock).
* pytest-asyncio: put ``asyncio_loop_factories`` in a conftest.py as its
  ``pytest_asyncio_loop_factories`` hook (see docs/virtual-time.md).
* anyio: an ``anyio_backend`` fixture returning
  ``('asyncio', {'loop_factory': ferroloop.testing.new_virtual_loop})``.

A failed test that ran virtual-time loops shows their clocks in a
"virtual time" section of its report.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest

_MARKER = 'virtual_time'

# The clocks of the loops made during the current test (see
# ferroloop.testing._observers), for the failure report.
_seen: list[Any] = []


def _observe(loop: Any) -> None:
    _seen.append(loop)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        'markers',
        f'{_MARKER}(start=0.0, grace=0.01, manual=False, detect_deadlock=True): '
        "run this async test on ferroloop's virtual-time loop")


def _options(node: pytest.Item) -> dict[str, Any]:
    marker = node.get_closest_marker(_MARKER)
    return dict(marker.kwargs) if marker is not None else {}


def _testing() -> Any:
    from . import testing
    if _observe not in testing._observers:
        testing._observers.append(_observe)
    return testing


@pytest.fixture
def virtual_loop(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A new virtual-time loop (options from the ``virtual_time`` marker),
    closed after the test as ``asyncio.run`` closes its loop."""
    loop = _testing().new_virtual_loop(**_options(request.node))
    try:
        yield loop
    finally:
        _close(loop)


@pytest.fixture
def virtual_clock(virtual_loop: Any) -> Any:
    """The clock of ``virtual_loop``."""
    return virtual_loop.clock


def _close(loop: Any) -> None:
    try:
        tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            loop.run_until_complete(
                asyncio.gather(*tasks, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
    finally:
        loop.close()


def asyncio_loop_factories(config: pytest.Config,
                           item: pytest.Item) -> dict[str, Callable[[], Any]]:
    """pytest-asyncio's ``pytest_asyncio_loop_factories`` hook: tests under
    the conftest.py that imports it under that name run on virtual-time
    loops (options from a ``virtual_time`` marker)."""
    testing = _testing()
    return {'virtual': functools.partial(testing.new_virtual_loop,
                                         **_options(item))}


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    # pytest-asyncio and anyio wrap the tests they run before this hook,
    # so a test still a coroutine function here is ours.
    if pyfuncitem.get_closest_marker(_MARKER) is None:
        return None
    func = pyfuncitem.obj
    if not inspect.iscoroutinefunction(func):
        return None
    if (pyfuncitem.get_closest_marker('asyncio') is not None
            or pyfuncitem.get_closest_marker('anyio') is not None):
        return None
    loop = pyfuncitem._request.getfixturevalue('virtual_loop')
    kwargs = {name: pyfuncitem.funcargs[name]
              for name in pyfuncitem._fixtureinfo.argnames}
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(func(**kwargs))
    finally:
        asyncio.set_event_loop(None)
    return True


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    _seen.clear()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item,
                              call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed and _seen:
        lines = [f'{loop!r}: {loop.clock!r}' for loop in _seen]
        report.sections.append(('virtual time', '\n'.join(lines)))
    if report.when == 'teardown':
        _seen.clear()
    return report
