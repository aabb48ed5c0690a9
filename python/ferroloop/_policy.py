"""The event loop policy that makes asyncio create ferroloop loops.

Python 3.14 deprecated asyncio's policy system (removal planned for 3.16):
asyncio.DefaultEventLoopPolicy, get_event_loop_policy() and
set_event_loop_policy() warn when used, while asyncio.run(), Runner and
new_event_loop() still consult the policy internally, without warning,
through private accessors.  ferroloop mirrors that split:

- what the user reaches for explicitly (ferroloop.EventLoopPolicy, which
  stands for asyncio.DefaultEventLoopPolicy, and ferroloop.install(), which
  stands for set_event_loop_policy()) warns where asyncio's counterpart does;
- what ferroloop does on the user's behalf (python -m ferroloop, the base
  class lookup here) uses the same non-warning route asyncio itself uses.
"""

import asyncio
import sys
import warnings

from asyncio import events

from ._loop import Loop

# Feature check for the 3.14 deprecation: asyncio then grew private,
# non-warning accessors next to the public, warning ones.
POLICIES_DEPRECATED = hasattr(events, '_set_event_loop_policy')

# Versions where the policy system is to disappear; said in the warnings, as
# asyncio's own do.
_REMOVAL = '3.16'


def _stock_default_policy():
    # Where asyncio.DefaultEventLoopPolicy is still a plain attribute, take
    # it; on 3.14+ the attribute is served by a warning module __getattr__,
    # so take the class it would return from the platform module instead.
    policy = vars(asyncio).get('DefaultEventLoopPolicy')
    if policy is not None:
        return policy
    if sys.platform == 'win32':
        from asyncio import windows_events as platform_events
    else:
        from asyncio import unix_events as platform_events
    return platform_events._DefaultEventLoopPolicy


# asyncio's own default policy for this platform (one loop per thread; up to
# 3.13 on Unix also the child watcher API that asyncio.get_child_watcher() and
# code written for the stock policy rely on), with only the loop class
# swapped.
class EventLoopPolicy(_stock_default_policy()):
    """asyncio's default event loop policy, creating ferroloop loops.

    Deprecated on Python 3.14+, as asyncio.DefaultEventLoopPolicy is: use
    ferroloop.run() or asyncio.run(main, loop_factory=ferroloop.new_event_loop).
    """

    __module__ = 'ferroloop'

    _loop_factory = Loop


def warn_deprecated(name, stacklevel):
    """Warn about a deprecated ferroloop name as asyncio warns about its own."""
    warnings.warn(f'{name!r} is deprecated and slated for removal in '
                  f'Python {_REMOVAL}', DeprecationWarning,
                  stacklevel=stacklevel + 1)


def set_policy_quietly(policy):
    """Install policy the way asyncio's internals do: no warning on 3.14+."""
    if POLICIES_DEPRECATED:
        events._set_event_loop_policy(policy)
    else:
        asyncio.set_event_loop_policy(policy)
