"""The loop's direct entry points (call_soon, call_soon_threadsafe, get_debug,
_check_closed; see src/fast_methods.rs) behave as the general ones do for
every argument shape, and a subclass override still wins."""

import asyncio
import contextvars

import pytest

import ferroloop


VAR = contextvars.ContextVar("VAR", default="outer")


def run_soon(loop):
    loop.call_soon(loop.stop)
    loop.run_forever()


@pytest.mark.parametrize("method", ["call_soon", "call_soon_threadsafe"])
def test_positional_args_and_context_keyword(loop, method):
    seen = []
    ctx = contextvars.copy_context()
    ctx.run(VAR.set, "inner")
    schedule = getattr(loop, method)
    schedule(lambda *a: seen.append((a, VAR.get())))
    schedule(lambda *a: seen.append((a, VAR.get())), 1, 2, 3)
    schedule(lambda *a: seen.append((a, VAR.get())), 4, context=ctx)
    schedule(lambda *a: seen.append((a, VAR.get())), 5, context=None)
    # A keyword name that is equal to "context" but not the interned string.
    name = "".join(["con", "text"])
    schedule(lambda *a: seen.append((a, VAR.get())), 6, **{name: ctx})
    run_soon(loop)
    assert seen == [((), "outer"), ((1, 2, 3), "outer"), ((4,), "inner"),
                    ((5,), "outer"), ((6,), "inner")]


@pytest.mark.parametrize("method", ["call_soon", "call_soon_threadsafe"])
def test_argument_errors_match_the_general_parser(loop, method):
    schedule = getattr(loop, method)
    with pytest.raises(TypeError, match="missing 1 required positional argument: 'callback'"):
        schedule()
    with pytest.raises(TypeError, match="unexpected keyword argument 'foo'"):
        schedule(print, foo=1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'foo'"):
        schedule(print, context=None, foo=1)


def test_closed_loop_refuses(loop):
    loop.close()
    for method in (loop.call_soon, loop.call_soon_threadsafe):
        with pytest.raises(RuntimeError, match="Event loop is closed"):
            method(print)
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop._check_closed()


def test_debug_flag_and_debug_checks(loop):
    assert loop.get_debug() is False
    loop.set_debug(True)
    assert loop.get_debug() is True

    async def coro():
        pass

    with pytest.raises(TypeError, match="coroutines cannot be used with call_soon"):
        loop.call_soon(coro)
    with pytest.raises(TypeError, match="a callable object was expected by call_soon"):
        loop.call_soon(42)
    loop.set_debug(False)
    assert loop.get_debug() is False


def test_returned_handle_runs_once_and_cancels(loop):
    ran = []
    handle = loop.call_soon(ran.append, 1)
    cancelled = loop.call_soon(ran.append, 2)
    cancelled.cancel()
    assert repr(handle).startswith("<Handle ")
    run_soon(loop)
    assert ran == [1]
    assert cancelled.cancelled()


def test_tasks_and_futures_use_the_entry_points(loop):
    async def child(i):
        await asyncio.sleep(0)
        return i

    async def main():
        return await asyncio.gather(*(child(i) for i in range(50)))

    assert loop.run_until_complete(main()) == list(range(50))


def test_subclass_override_wins():
    calls = []

    class Sub(ferroloop.Loop):
        def call_soon(self, callback, *args, context=None):
            calls.append(callback)
            return super().call_soon(callback, *args, context=context)

        def get_debug(self):
            return "overridden"

    loop = Sub()
    try:
        assert loop.get_debug() == "overridden"
        fut = loop.create_future()
        loop.call_soon(fut.set_result, 7)
        assert loop.run_until_complete(fut) == 7
        assert fut.set_result in calls
    finally:
        loop.close()


def test_entry_points_are_owned_by_the_public_class():
    for name in ("call_soon", "call_soon_threadsafe", "get_debug", "_check_closed"):
        descr = ferroloop.Loop.__dict__[name]
        assert descr.__objclass__ is ferroloop.Loop
    assert "callback" in ferroloop.Loop.call_soon.__text_signature__
