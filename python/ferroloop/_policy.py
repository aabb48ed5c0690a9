"""The event loop policy that makes asyncio create ferroloop loops."""

import asyncio

from ._loop import Loop


# asyncio's own default policy for this platform (on Unix: one loop per
# thread, created on demand in the main thread, plus the child watcher API
# that asyncio.get_child_watcher()/set_child_watcher() and code written for
# the stock policy rely on), with only the loop class swapped.
class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """asyncio's default event loop policy, creating ferroloop loops."""

    __module__ = 'ferroloop'

    _loop_factory = Loop
