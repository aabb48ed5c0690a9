"""The coroutine tests the loop applies to callbacks, without 3.14's warning.

3.14 deprecated ``asyncio.iscoroutinefunction`` (calling it warns); the stock
loop calls the private ``_iscoroutinefunction`` there, which earlier versions
do not have. Feature-detected, so 3.12's layout works whichever it has.
"""

from asyncio import coroutines

iscoroutine = coroutines.iscoroutine
iscoroutinefunction = getattr(coroutines, '_iscoroutinefunction',
                              coroutines.iscoroutinefunction)


def is_coroutine_or_function(obj):
    """True for a coroutine object or a coroutine function: not a callback."""
    return iscoroutine(obj) or iscoroutinefunction(obj)
