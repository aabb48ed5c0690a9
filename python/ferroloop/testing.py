"""Virtual time for tests: loops whose ``loop.time()`` is not the wall clock.

    import ferroloop.testing

    asyncio.run(main(), loop_factory=ferroloop.testing.new_virtual_loop)

On a virtual-time loop, ``loop.time()`` starts at 0.0 and moves only when
the loop has nothing else to do: the clock then jumps straight to the next
timer. ``asyncio.sleep(3600)``, ``call_later``, ``wait_for``,
``asyncio.timeout`` and every timer a library schedules take no real time.

Real I/O keeps working: while an fd is watched or executor jobs are
pending, the loop first waits up to ``grace`` real seconds for an event
before each jump. With ``manual=True`` the clock stands still until
``await loop.clock.advance(seconds)``. A loop on which nothing can ever
happen again (nothing ready, no timer that can come due, no fd, no pending
executor job) raises :class:`DeadlockError` naming the stuck tasks.

What does not follow: ``time.monotonic()`` / ``time.time()`` read directly,
and timeouts applied by threads (``queue.Queue.get(timeout=...)`` in an
executor job) -- they measure real time (see docs/virtual-time.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any, TypeVar

from ._ferroloop import (
    _virtual_enable, _virtual_external, _virtual_set, _virtual_state,
)
from ._loop import Loop

__all__ = ('DEFAULT_GRACE', 'DeadlockError', 'VirtualClock', 'VirtualLoop',
           'current_clock', 'new_virtual_loop', 'run')

_T = TypeVar('_T')

#: Real seconds the loop waits for outside events (fds, executor jobs)
#: before each jump of the clock; nothing is waited for with none pending.
DEFAULT_GRACE = 0.01

# Called with each new virtual-time loop (the pytest plugin reports their
# clocks in failed tests' output).
_observers: list[Callable[[VirtualLoop], None]] = []

# Turns on an advance: the ready queue is drained at most this many times
# (a task spinning on sleep(0) keeps it from ever being empty).
_SETTLE_ROUNDS = 100


class DeadlockError(RuntimeError):
    """Nothing is ready, no timer can come due and nothing outside the
    loop can wake it: the pending tasks can never make progress."""


class VirtualClock:
    """The controls of a virtual-time loop's clock (``loop.clock``)."""

    def __init__(self, loop: VirtualLoop) -> None:
        self._loop = loop
        self._advancing: list[float] = []

    def _core(self) -> VirtualLoop:
        return self._loop

    def _state(self) -> tuple[float, float, float, int, bool, int]:
        state = _virtual_state(self._core())
        assert state is not None
        return state

    def time(self) -> float:
        """The loop's current time (``loop.time()``)."""
        return self._state()[0]

    @property
    def manual(self) -> bool:
        """True: the clock moves only in :meth:`advance` / :meth:`advance_to`."""
        return self._state()[1] != math.inf

    @manual.setter
    def manual(self, value: bool) -> None:
        self._set_limit(manual=bool(value))

    @property
    def grace(self) -> float:
        """Real seconds to wait for outside events before each jump."""
        return self._state()[2]

    @grace.setter
    def grace(self, value: float) -> None:
        _virtual_set(self._core(), grace=float(value))

    @property
    def detect_deadlock(self) -> bool:
        return self._state()[4]

    @detect_deadlock.setter
    def detect_deadlock(self, value: bool) -> None:
        _virtual_set(self._core(), detect_deadlock=bool(value))

    @property
    def jumps(self) -> int:
        """How many times the clock jumped to a timer."""
        return self._state()[5]

    @property
    def pending_external(self) -> int:
        """Outside work the loop waits for (executor jobs, :meth:`external`)."""
        return self._state()[3]

    def _set_limit(self, manual: bool) -> None:
        if not manual:
            limit = math.inf
        elif self._advancing:
            limit = max(self._advancing)
        else:
            limit = -math.inf   # clamped to the current time
        _virtual_set(self._core(), limit=limit)

    async def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward, running every timer due on
        the way at its own time, in order. Works in both modes."""
        if seconds < 0:
            raise ValueError('cannot advance the clock by a negative time')
        await self.advance_to(self.time() + seconds)

    async def advance_to(self, when: float) -> None:
        """Move the clock forward to ``when`` (see :meth:`advance`)."""
        loop = self._core()
        if when < self.time():
            raise ValueError(
                f'cannot move the clock back: {when} < now {self.time()}')
        manual = self.manual
        reached = loop.create_future()
        handle = loop.call_at(when, _resolve, reached)
        self._advancing.append(when)
        try:
            if manual:
                self._set_limit(manual=True)
            await reached
            # Let what the last timers started run before returning, as
            # it would have before the next jump.
            for _ in range(_SETTLE_ROUNDS):
                if loop._ready_count() == 0:
                    break
                await asyncio.sleep(0)
        finally:
            handle.cancel()
            self._advancing.remove(when)
            if manual:
                self._set_limit(manual=True)

    @contextlib.contextmanager
    def external(self) -> Iterator[None]:
        """Declare work outside the loop (a thread the loop does not know
        of, that will call ``call_soon_threadsafe``): while inside, the
        clock waits the grace before each jump and an idle loop waits for
        it instead of raising :class:`DeadlockError`."""
        loop = self._core()
        _virtual_external(loop, 1)
        try:
            yield
        finally:
            _virtual_external(loop, -1)

    def __repr__(self) -> str:
        now, _, grace, external, _, jumps = self._state()
        mode = 'manual' if self.manual else 'auto'
        return (f'<VirtualClock t={now!r} {mode} grace={grace!r} '
                f'jumps={jumps} external={external}>')


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class VirtualLoop(Loop):
    """A ferroloop loop whose time is virtual (see the module docstring)."""

    def __init__(self, *, start: float = 0.0, grace: float = DEFAULT_GRACE,
                 manual: bool = False, detect_deadlock: bool = True) -> None:
        super().__init__()
        _virtual_enable(self, float(start), float(grace), bool(manual),
                        bool(detect_deadlock))
        self.clock = VirtualClock(self)
        for observe in _observers:
            observe(self)

    def __repr__(self) -> str:
        return (
            f'<{self.__class__.__name__} running={self.is_running()} '
            f'closed={self.is_closed()} debug={self.get_debug()} '
            f'time={self.time()!r}>'
        )

    def _external_done(self, _fut: object) -> None:
        if not self.is_closed():
            _virtual_external(self, -1)

    def run_in_executor(self, executor: Any, func: Callable[..., _T],
                        *args: Any) -> asyncio.Future[_T]:
        fut = super().run_in_executor(executor, func, *args)
        # A job may call back at any moment: wait the grace before jumps.
        _virtual_external(self, 1)
        fut.add_done_callback(self._external_done)
        return fut

    async def _make_subprocess_transport(self, *args: Any, **kwargs: Any) -> Any:
        # Popen runs in a thread of its own; once started, the child's
        # exit is watched through a pidfd (a watched fd) and its pipes.
        _virtual_external(self, 1)
        try:
            return await super()._make_subprocess_transport(*args, **kwargs)
        finally:
            if not self.is_closed():
                _virtual_external(self, -1)

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:
        # Joining threads takes real time: a virtual timeout would expire
        # at the first jump, so the wait here is not bounded.
        _virtual_external(self, 1)
        try:
            await super().shutdown_default_executor()
        finally:
            if not self.is_closed():
                _virtual_external(self, -1)

    def _virtual_deadlock(self) -> None:
        raise DeadlockError(_describe_deadlock(self))


def _describe_deadlock(loop: VirtualLoop) -> str:
    clock = loop.clock
    lines = [f'deadlock at virtual time t={clock.time()!r}: no callback is '
             'ready, no fd is watched, no executor job or declared outside '
             'work is pending, and ']
    timers = loop._timer_count()
    if timers and clock.manual:
        lines[0] += (f'the manual clock stands still with {timers} timer(s) '
                     'scheduled later (await loop.clock.advance(...))')
    else:
        lines[0] += 'no timer is scheduled'
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    if not tasks:
        lines.append('no task is pending (a future nobody will resolve?)')
    else:
        lines.append(f'{len(tasks)} pending task(s):')
        for task in sorted(tasks, key=lambda t: t.get_name()):
            buf = io.StringIO()
            task.print_stack(file=buf)
            lines.append('  ' + buf.getvalue().rstrip().replace('\n', '\n  '))
    return '\n'.join(lines)


def new_virtual_loop(*, start: float = 0.0, grace: float = DEFAULT_GRACE,
                     manual: bool = False,
                     detect_deadlock: bool = True) -> VirtualLoop:
    """A new loop with virtual time starting at ``start``.

    grace: real seconds to wait for outside events before each jump while
    fds are watched or executor jobs are pending. manual: the clock stands
    still until ``loop.clock.advance()``. detect_deadlock: raise
    DeadlockError instead of sleeping forever when nothing can happen.
    """
    return VirtualLoop(start=start, grace=grace, manual=manual,
                       detect_deadlock=detect_deadlock)


def current_clock() -> VirtualClock:
    """The clock of the running loop, which must be a virtual-time loop."""
    loop = asyncio.get_running_loop()
    if not isinstance(loop, VirtualLoop):
        raise RuntimeError('the running loop is not a virtual-time loop')
    return loop.clock


def run(main: Coroutine[Any, Any, _T] | Awaitable[_T], *,
        debug: bool | None = None, **options: Any) -> _T:
    """asyncio.run(main) on a new virtual-time loop (options as
    new_virtual_loop's)."""
    def factory() -> VirtualLoop:
        return new_virtual_loop(**options)
    with asyncio.Runner(debug=debug, loop_factory=factory) as runner:
        return runner.run(main)  # type: ignore[arg-type]
