"""The loop class's MRO: LoopCore early, and no mixin after it shadowed.

ferroloop.Loop puts the native LoopCore right after the mixins that wrap
its methods, because each native method call walks the MRO up to LoopCore
to check the instance's type. A mixin placed after LoopCore that defined a
name LoopCore also defines would silently lose to the native method.
"""

import asyncio

import ferroloop
from ferroloop._ferroloop import LoopCore

IGNORED = {'__module__', '__doc__', '__dict__', '__weakref__', '__qualname__',
           '__init__', '__new__', '__slots__', '__annotations__'}


def test_loopcore_stands_early_in_the_mro():
    mro = ferroloop.Loop.__mro__
    assert mro.index(LoopCore) <= 3


def test_mixins_after_loopcore_do_not_define_its_names():
    mro = ferroloop.Loop.__mro__
    native = set(vars(LoopCore)) - IGNORED
    after = mro[mro.index(LoopCore) + 1:]
    shadowed = {cls.__name__: sorted(native & set(vars(cls)))
                for cls in after
                if cls not in (asyncio.AbstractEventLoop, asyncio.events.AbstractEventLoop,
                               object)}
    assert {k: v for k, v in shadowed.items() if v} == {}


def test_wrapping_mixins_still_come_first():
    # set_debug and the fd watcher methods are Python wrappers over the
    # native ones, which they reach with super().
    for name in ('set_debug', 'add_reader', 'add_writer', 'remove_reader', 'remove_writer'):
        owner = next(cls for cls in ferroloop.Loop.__mro__ if name in vars(cls))
        assert owner is not LoopCore, name
        assert name in vars(LoopCore), name
