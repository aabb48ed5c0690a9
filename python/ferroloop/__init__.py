"""ferroloop: a drop-in replacement for asyncio's event loop, in Rust.

    import ferroloop
    ferroloop.run(main())          # like asyncio.run(), on a ferroloop loop

    asyncio.run(main(), loop_factory=ferroloop.new_event_loop)   # 3.12+

    ferroloop.install()            # make asyncio itself create ferroloop loops
    asyncio.run(main())            # (a policy: deprecated on Python 3.14+)

or, without changing the program: python -m ferroloop script.py [args]
"""

import asyncio as _asyncio

from asyncio import events as _events

from . import _faults
from . import _policy
from ._loop import Loop

_faults.install()  # a no-op outside fault-injection builds

if _policy.POLICIES_DEPRECATED:
    # As asyncio.DefaultEventLoopPolicy on 3.14+: still there, but it warns
    # when looked up (module __getattr__ below) and is out of __all__.
    __all__ = ('Loop', 'new_event_loop', 'install', 'run')
else:
    from ._policy import EventLoopPolicy
    __all__ = ('Loop', 'new_event_loop', 'EventLoopPolicy', 'install', 'run')

__version__ = '0.1.0'


def new_event_loop():
    """Return a new ferroloop event loop."""
    return Loop()


def install():
    """Make asyncio use ferroloop loops (asyncio.run, get_event_loop, ...).

    This sets asyncio's event loop policy, so on Python 3.14+ it warns
    (DeprecationWarning) as asyncio.set_event_loop_policy() does; use run()
    or asyncio.run(main, loop_factory=new_event_loop) there instead.
    """
    if _policy.POLICIES_DEPRECATED:
        _policy.warn_deprecated('ferroloop.install', stacklevel=2)
    # One warning is enough: the deprecated setter would warn again.
    _policy.set_policy_quietly(_policy.EventLoopPolicy())


def run(main, *, debug=None):
    """Run the coroutine main on a new ferroloop loop and return its result.

    Same contract as asyncio.run(): cancels the remaining tasks, finalizes
    async generators and the default executor, then closes the loop.
    """
    if _events._get_running_loop() is not None:
        # Fail fast, with a short traceback.
        raise RuntimeError(
            "asyncio.run() cannot be called from a running event loop")
    with _asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
        return runner.run(main)


def __getattr__(name):
    if name == 'EventLoopPolicy' and _policy.POLICIES_DEPRECATED:
        _policy.warn_deprecated(f'ferroloop.{name}', stacklevel=2)
        return _policy.EventLoopPolicy
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
