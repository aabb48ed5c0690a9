"""The event loop policy that makes asyncio create ferroloop loops."""

from asyncio import events

from ._loop import Loop


class EventLoopPolicy(events.BaseDefaultEventLoopPolicy):
    """asyncio's default policy (one loop per thread, created on demand in
    the main thread), creating ferroloop loops.
    """

    __module__ = 'ferroloop'

    _loop_factory = Loop

    def __repr__(self):
        return f'<{self.__class__.__name__}>'
