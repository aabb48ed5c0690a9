"""Async generator hooks and loop.shutdown_asyncgens()."""

import asyncio
import gc
import logging

import pytest

import ferroloop


@pytest.fixture
def loop():
    loop = ferroloop.new_event_loop()
    yield loop
    loop.close()


def test_shutdown_asyncgens_closes_suspended_generators(loop):
    finalized = []

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            finalized.append('closed')

    async def main():
        gen = agen()
        assert await gen.__anext__() == 1
        return gen

    gen = loop.run_until_complete(main())
    assert gen in loop._asyncgens
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert finalized == ['closed']
    assert len(loop._asyncgens) == 0


def test_shutdown_asyncgens_reports_errors(loop, caplog):
    async def agen():
        try:
            yield 1
        finally:
            raise ZeroDivisionError('in aclose')

    async def main():
        gen = agen()
        await gen.__anext__()
        return gen

    gen = loop.run_until_complete(main())
    seen = []
    loop.set_exception_handler(lambda lp, ctx: seen.append(ctx))
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert len(seen) == 1
    assert seen[0]['message'] == (
        f'an error occurred during closing of asynchronous generator {gen!r}')
    assert isinstance(seen[0]['exception'], ZeroDivisionError)
    assert seen[0]['asyncgen'] is gen


def test_firstiter_after_shutdown_warns(loop):
    loop.run_until_complete(loop.shutdown_asyncgens())

    async def agen():
        yield 1

    async def main():
        gen = agen()
        with pytest.warns(ResourceWarning,
                          match='was scheduled after loop.shutdown_asyncgens'):
            await gen.__anext__()
        await gen.aclose()

    loop.run_until_complete(main())


def test_dropped_generator_is_finalized_on_the_loop(loop):
    finalized = loop.create_future()

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            finalized.set_result(asyncio.current_task() is not None)

    async def main():
        gen = agen()
        await gen.__anext__()
        del gen
        gc.collect()
        # The finalizer hook scheduled aclose() as a task on this loop.
        return await finalized

    assert loop.run_until_complete(main()) is True


def test_hooks_restored_after_run(loop):
    import sys
    before = sys.get_asyncgen_hooks()
    loop.run_until_complete(asyncio.sleep(0))
    assert sys.get_asyncgen_hooks() == before
