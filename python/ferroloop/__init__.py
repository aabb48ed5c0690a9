"""ferroloop: a drop-in replacement for asyncio's event loop, in Rust.

    import ferroloop
    ferroloop.run(main())          # like asyncio.run(), on a ferroloop loop

    ferroloop.install()            # make asyncio itself create ferroloop loops
    asyncio.run(main())

or, without changing the program: python -m ferroloop script.py [args]
"""

import asyncio as _asyncio

from asyncio import events as _events

from ._loop import Loop
from ._policy import EventLoopPolicy

__all__ = ('Loop', 'new_event_loop', 'EventLoopPolicy', 'install', 'run')

__version__ = '0.1.0'


def new_event_loop():
    """Return a new ferroloop event loop."""
    return Loop()


def install():
    """Make asyncio use ferroloop loops (asyncio.run, get_event_loop, ...)."""
    _asyncio.set_event_loop_policy(EventLoopPolicy())


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
