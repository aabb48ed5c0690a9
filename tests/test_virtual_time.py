"""Virtual time (ferroloop.testing): the clock jumps to the next timer when
the loop has nothing else to do, stands still in manual mode, keeps real
I/O working, and reports deadlocks.

Assertions are on virtual timestamps and order, never on real durations
(benchmarks/virtual_time.py measures those).
"""

import asyncio
import socket
import sys
import threading

import pytest

import ferroloop
from ferroloop import testing

from _tlsutil import certs  # noqa: F401  (certs is a fixture)


def run(main, **options):
    return testing.run(main, **options)


# -- the retry proof ---------------------------------------------------------

async def retry_with_backoff(op, *, first=1.0, factor=2.0, cap=600.0,
                             budget=3600.0):
    """A client's retry loop: exponential back-off, capped, giving up when
    the next wait would end past the budget."""
    loop = asyncio.get_running_loop()
    attempts = []
    start = loop.time()
    delay, planned = first, 0.0
    while True:
        attempts.append(loop.time() - start)
        try:
            return await op(), attempts
        except ConnectionError:
            if planned + delay > budget:
                raise TimeoutError(attempts)
            await asyncio.sleep(delay)
            planned += delay
            delay = min(delay * factor, cap)


def expected_schedule(first=1.0, factor=2.0, cap=600.0, budget=3600.0):
    t, delay, out = 0.0, first, [0.0]
    while t + delay <= budget:
        t += delay
        out.append(t)
        delay = min(delay * factor, cap)
    return out


async def always_down():
    raise ConnectionError('refused')


def test_retry_backoff_through_an_hour_of_virtual_time():
    async def main():
        with pytest.raises(TimeoutError) as info:
            await retry_with_backoff(always_down)
        return info.value.args[0], asyncio.get_running_loop().time()

    attempts, end = run(main())
    assert attempts == expected_schedule()
    assert attempts[-1] <= 3600.0 and end == attempts[-1]


def test_retry_schedule_matches_the_real_loop_scaled_down():
    scale = 1e-5   # an hour of back-off in 36 ms of real time

    async def main(scale):
        with pytest.raises(TimeoutError) as info:
            await retry_with_backoff(always_down, first=scale, cap=600 * scale,
                                     budget=3600 * scale)
        return info.value.args[0]

    virtual = run(main(1.0))
    real = ferroloop.run(main(scale))
    # The same attempts; on the real loop each wait ends late, never early.
    assert len(real) == len(virtual) == len(expected_schedule())
    gaps = [(r2 - r1, v2 - v1) for (r1, v1), (r2, v2)
            in zip(zip(real, virtual), zip(real[1:], virtual[1:]))]
    for real_gap, virtual_gap in gaps:
        assert real_gap >= virtual_gap * scale - 1e-6


def test_retry_succeeds_after_outage():
    calls = []

    async def flaky():
        calls.append(asyncio.get_running_loop().time())
        if len(calls) < 5:
            raise ConnectionError
        return 'ok'

    async def main():
        return await retry_with_backoff(flaky)

    result, attempts = run(main())
    assert result == 'ok'
    assert attempts == calls == [0.0, 1.0, 3.0, 7.0, 15.0]


# -- everything that reads the loop's clock follows it ------------------------

def test_timeouts_and_waits_follow_virtual_time():
    async def main():
        loop = asyncio.get_running_loop()
        seen = {}
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.Event().wait(), 5)
        seen['wait_for'] = loop.time()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout_at(loop.time() + 10):
                await asyncio.sleep(100)
        seen['timeout_at'] = loop.time()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.Queue().get(), 1.5)
        seen['queue'] = loop.time()
        cond = asyncio.Condition()
        async with cond:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(cond.wait_for(lambda: False), 2)
        seen['condition'] = loop.time()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(7):
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(asyncio.sleep(60))
                    tg.create_task(asyncio.sleep(70))
        seen['taskgroup'] = loop.time()
        fired = loop.create_future()
        loop.call_at(1000.0, fired.set_result, None)
        await fired
        seen['call_at'] = loop.time()
        return seen

    assert run(main()) == {'wait_for': 5.0, 'timeout_at': 15.0, 'queue': 16.5,
                           'condition': 18.5, 'taskgroup': 25.5,
                           'call_at': 1000.0}


def test_start_time_and_repr():
    async def main():
        loop = asyncio.get_running_loop()
        await asyncio.sleep(2.5)
        return loop.time(), repr(loop), repr(loop.clock)

    now, loop_repr, clock_repr = run(main(), start=100.0)
    assert now == 102.5
    assert 'time=102.5' in loop_repr
    assert clock_repr.startswith('<VirtualClock t=102.5 auto')


# -- real I/O while the clock jumps --------------------------------------------

def test_timeout_around_a_hung_read_on_a_real_socketpair():
    a, b = socket.socketpair()

    async def main():
        loop = asyncio.get_running_loop()
        reader, writer = await asyncio.open_connection(sock=a)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(30):
                await reader.read(100)
        fired_at = loop.time()
        # The connection is still up: data sent now arrives.
        b.sendall(b'still here')
        data = await reader.readexactly(10)
        writer.close()
        await writer.wait_closed()
        return fired_at, data

    try:
        fired_at, data = run(main())
    finally:
        b.close()
    assert fired_at == 30.0
    assert data == b'still here'


def test_subprocess_and_executor_finish_while_timers_jump():
    async def ticker(n):
        loop = asyncio.get_running_loop()
        stamps = []
        for _ in range(n):
            await asyncio.sleep(1)
            stamps.append(loop.time())
        return stamps

    def job():
        return sum(i * i for i in range(10_000))

    async def main():
        tick = asyncio.create_task(ticker(50))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, '-c',
            'import sys; sys.stdout.write(sys.stdin.read().upper())',
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate(b'virtual')
        result = await asyncio.get_running_loop().run_in_executor(None, job)
        return out, proc.returncode, result, await tick

    out, rc, result, stamps = run(main(), grace=0.001)
    assert (out, rc, result) == (b'VIRTUAL', 0, sum(i * i for i in range(10_000)))
    assert stamps == [float(i) for i in range(1, 51)]


def test_declared_outside_work_arrives_before_the_jump():
    # With a generous grace, a thread's callback arrives before the clock
    # jumps to the far timer: it sees the time still at 0.
    async def main():
        loop = asyncio.get_running_loop()
        clock = loop.clock
        far = loop.call_later(100, lambda: None)
        got = loop.create_future()

        def worker():
            loop.call_soon_threadsafe(got.set_result, 'from thread')

        with clock.external():
            thread = threading.Thread(target=worker)
            thread.start()
            value = await got
            at = loop.time()
        thread.join()
        far.cancel()
        return value, at

    assert run(main(), grace=30.0) == ('from thread', 0.0)


# -- manual mode -----------------------------------------------------------------

def test_manual_mode_stands_still_until_advanced():
    async def main():
        loop = asyncio.get_running_loop()
        clock = loop.clock
        log = []
        for d in (3, 1, 2, 2):
            loop.call_later(d, lambda d=d: log.append((d, loop.time())))
        for _ in range(10):
            await asyncio.sleep(0)
        assert loop.time() == 0.0 and log == []
        await clock.advance(2)
        first = list(log)
        await clock.advance_to(10)
        with pytest.raises(ValueError):
            await clock.advance(-1)
        return first, log, loop.time(), clock.manual

    first, log, now, manual = run(main(), manual=True)
    assert first == [(1, 1.0), (2, 2.0), (2, 2.0)]
    assert log == first + [(3, 3.0)]
    assert (now, manual) == (10.0, True)


def test_manual_mode_waiting_without_advance_is_a_deadlock():
    async def main():
        await asyncio.sleep(5)

    with pytest.raises(testing.DeadlockError, match='manual clock stands still'):
        run(main(), manual=True)


def test_switching_to_auto_mode():
    async def main():
        clock = testing.current_clock()
        clock.manual = False
        await asyncio.sleep(42)
        return clock.time(), clock.jumps

    assert run(main(), manual=True) == (42.0, 1)


# -- the deadlock detector ----------------------------------------------------------

def test_deadlock_names_the_stuck_task():
    async def wait_forever(event):
        await event.wait()

    async def main():
        event = asyncio.Event()
        task = asyncio.create_task(wait_forever(event), name='stuck-worker')
        await asyncio.sleep(12)
        await task

    with pytest.raises(testing.DeadlockError) as info:
        run(main())
    message = str(info.value)
    assert 'virtual time t=12.0' in message
    assert "name='stuck-worker'" in message
    assert 'in wait_forever' in message and 'await event.wait()' in message
    assert isinstance(info.value, RuntimeError)


def test_deadlock_detection_can_be_turned_off():
    async def main():
        loop = asyncio.get_running_loop()
        loop.clock.detect_deadlock = False
        fut = loop.create_future()
        thread = threading.Thread(target=loop.call_soon_threadsafe,
                                  args=(fut.set_result, 7))
        thread.start()
        value = await fut
        thread.join()
        return value

    assert run(main()) == 7


# -- determinism ---------------------------------------------------------------------

def trace_program():
    async def worker(name, delays, trace):
        loop = asyncio.get_running_loop()
        for d in delays:
            await asyncio.sleep(d)
            trace.append((loop.time(), name))
            loop.call_soon(trace.append, (loop.time(), name + '-soon'))

    async def main():
        trace = []
        async with asyncio.TaskGroup() as tg:
            for i in range(6):
                tg.create_task(worker(f'w{i}', [0.5, 1.0, 0.25 * i, 2.0], trace))
        loop = asyncio.get_running_loop()
        equal = []
        for i in range(5):
            loop.call_at(loop.time() + 1, equal.append, i)
        await asyncio.sleep(1)
        return trace, equal

    return run(main())


def test_runs_are_deterministic():
    first, equal = trace_program()
    assert equal == [0, 1, 2, 3, 4]   # equal deadlines fire FIFO
    for _ in range(3):
        assert trace_program() == (first, equal)
    assert [t for t, _ in first] == sorted(t for t, _ in first)


# -- the API ---------------------------------------------------------------------------

def test_enable_rules():
    loop = testing.new_virtual_loop()
    try:
        from ferroloop._ferroloop import _virtual_enable
        with pytest.raises(RuntimeError, match='already virtual'):
            _virtual_enable(loop, 0.0, 0.0, False, True)
        with pytest.raises(ValueError):
            loop.clock.grace = -1
        assert isinstance(loop, ferroloop.Loop)
    finally:
        loop.close()
    real = ferroloop.new_event_loop()
    try:
        real.call_later(1, lambda: None)
        with pytest.raises(RuntimeError, match='before the loop schedules'):
            _virtual_enable(real, 0.0, 0.0, False, True)
    finally:
        real.close()


def test_current_clock_needs_a_virtual_loop():
    async def main():
        testing.current_clock()

    with pytest.raises(RuntimeError, match='not a virtual-time loop'):
        ferroloop.run(main())


def test_asyncio_run_with_the_loop_factory():
    async def main():
        await asyncio.sleep(86400)
        return asyncio.get_running_loop().time()

    assert asyncio.Runner(loop_factory=testing.new_virtual_loop).run(main()) == 86400.0


def test_a_library_timeout_follows_virtual_time():
    # aiohttp's client timeout is a loop timer like any other: against a
    # real listening socket that never answers, it fires at t=30.
    aiohttp = pytest.importorskip('aiohttp')
    listener = socket.create_server(('127.0.0.1', 0))
    port = listener.getsockname()[1]

    async def main():
        loop = asyncio.get_running_loop()
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            with pytest.raises(TimeoutError):
                await session.get(f'http://127.0.0.1:{port}/')
            return loop.time()

    try:
        assert run(main()) == 30.0
    finally:
        listener.close()


def test_tls_handshake_timeout_follows_virtual_time(certs):  # noqa: F811
    # The stock SSLProtocol's handshake timeout is a loop timer: a client
    # that connects over TCP and never says hello is cut off at t=60.
    async def main():
        loop = asyncio.get_running_loop()
        server = await asyncio.start_server(
            lambda r, w: None, '127.0.0.1', 0,
            ssl=certs.server_context(), ssl_handshake_timeout=60)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection('127.0.0.1', port)
        try:
            await reader.read()
        except ConnectionResetError:
            pass
        cut_at = loop.time()
        writer.close()
        server.close()
        await server.wait_closed()
        return cut_at

    cut_at = run(main())
    assert 60.0 <= cut_at < 61.0


def test_slow_callback_warning_names_the_virtual_time(caplog):
    # The duration is real (the virtual clock stands still while a callback
    # runs); the message says when, in virtual time, the callback ran.
    async def main():
        loop = asyncio.get_running_loop()
        loop.slow_callback_duration = 0.0
        await asyncio.sleep(5)
        return loop.time()

    with caplog.at_level('WARNING', logger='asyncio'):
        assert run(main(), start=100.0, debug=True) == 105.0
    messages = [r.getMessage() for r in caplog.records if 'Executing' in r.getMessage()]
    assert any(m.endswith('(real time; at virtual time 105.000)') for m in messages), messages
