"""Running, stopping and closing rules of the stock loop."""
import asyncio

import pytest

import ferroloop


def test_run_until_complete_returns_result(loop):
    async def main():
        await asyncio.sleep(0)
        return 'done'

    assert loop.run_until_complete(main()) == 'done'


def test_nested_run_raises(loop):
    async def main():
        with pytest.raises(RuntimeError, match='already running'):
            loop.run_until_complete(loop.create_future())
        with pytest.raises(RuntimeError, match='already running'):
            loop.run_forever()

    loop.run_until_complete(main())


def test_running_a_loop_inside_another_running_loop_raises(loop):
    other = ferroloop.new_event_loop()

    async def main():
        with pytest.raises(RuntimeError, match='another loop is running'):
            other.run_until_complete(other.create_future())

    try:
        loop.run_until_complete(main())
    finally:
        other.close()


def test_close_running_loop_raises(loop):
    errors = []

    def try_close():
        try:
            loop.close()
        except RuntimeError as e:
            errors.append(str(e))
        loop.stop()

    loop.call_soon(try_close)
    loop.run_forever()
    assert errors == ['Cannot close a running event loop']


def test_close_is_idempotent_and_final(loop):
    loop.close()
    loop.close()
    assert loop.is_closed()
    with pytest.raises(RuntimeError, match='Event loop is closed'):
        loop.run_forever()
    with pytest.raises(RuntimeError, match='Event loop is closed'):
        loop.call_later(1, print)


def test_stop_before_run_runs_one_iteration(loop):
    seen = []
    loop.stop()
    loop.call_soon(seen.append, 1)
    loop.run_forever()
    assert seen == [1]


def test_is_running_and_running_loop(loop):
    seen = []

    def check():
        seen.append((loop.is_running(), asyncio.get_running_loop() is loop))
        loop.stop()

    loop.call_soon(check)
    assert not loop.is_running()
    loop.run_forever()
    assert seen == [(True, True)]
    assert not loop.is_running()


def test_asyncio_runner_accepts_ferroloop_factory():
    async def main():
        return type(asyncio.get_running_loop())

    with asyncio.Runner(loop_factory=ferroloop.new_event_loop) as runner:
        assert runner.run(main()) is ferroloop.Loop


def test_ferroloop_run():
    async def main():
        await asyncio.sleep(0.001)
        return isinstance(asyncio.get_running_loop(), ferroloop.Loop)

    assert ferroloop.run(main()) is True
