"""Prove that every workload's result check has teeth.

Runs each workload on plain asyncio (must pass) and on deliberately broken
asyncio subclasses (each must fail the workloads it sabotages). A benchmark
whose check cannot fail would happily time a loop that does nothing.

    .venv/bin/python benchmarks/selftest.py
"""

import asyncio
import heapq
import logging
import sys
import warnings

import micro

SIZE = 0.04  # fraction of each workload's DEFAULT_N
WATCHDOG = 1.0  # a sabotaged loop may lose work and hang; stop it after this


class DropsCallbacks(asyncio.SelectorEventLoop):
    """Silently loses one call_soon / call_soon_threadsafe in 997."""

    _calls = 0

    def _lose(self):
        self._calls += 1
        return self._calls % 997 == 0

    def call_soon(self, callback, *args, context=None):
        if self._lose():
            return asyncio.Handle(callback, args, self, context)
        return super().call_soon(callback, *args, context=context)

    def call_soon_threadsafe(self, callback, *args, context=None):
        if self._lose():
            return asyncio.Handle(callback, args, self, context)
        return super().call_soon_threadsafe(callback, *args, context=context)


class RunsCallbacksLifo(asyncio.SelectorEventLoop):
    """Puts every new callback at the front of the ready queue."""

    def call_soon(self, callback, *args, context=None):
        handle = super().call_soon(callback, *args, context=context)
        self._ready.remove(handle)
        self._ready.appendleft(handle)
        return handle

    def call_soon_threadsafe(self, callback, *args, context=None):
        handle = self.call_soon(callback, *args, context=context)
        self._write_to_self()
        return handle


class IgnoresDelays(asyncio.SelectorEventLoop):
    """Fires every timer immediately."""

    def call_later(self, delay, callback, *args, context=None):
        return super().call_later(0, callback, *args, context=context)


class InvertsDelays(asyncio.SelectorEventLoop):
    """Fires timers in roughly the reverse of their deadline order."""

    def call_later(self, delay, callback, *args, context=None):
        return super().call_later(max(0.0, 0.010 - delay), callback, *args,
                                  context=context)


class _UncancellableTimer(asyncio.TimerHandle):
    __slots__ = ()

    def cancel(self):
        pass


class IgnoresCancel(asyncio.SelectorEventLoop):
    """TimerHandle.cancel() does nothing."""

    def call_at(self, when, callback, *args, context=None):
        timer = _UncancellableTimer(when, callback, args, self, context)
        heapq.heappush(self._scheduled, timer)
        timer._scheduled = True
        return timer


# loop class -> workloads it must make fail
CASES = {
    asyncio.SelectorEventLoop: set(),
    DropsCallbacks: {"call_soon_chain", "call_soon_batch", "sleep0_switch",
                     "gather_tasks", "future_roundtrip", "threadsafe_post"},
    RunsCallbacksLifo: {"call_soon_batch", "threadsafe_post"},
    IgnoresDelays: {"call_later_random"},
    InvertsDelays: {"call_later_random"},
    IgnoresCancel: {"timer_cancel_churn"},
}


def attempt(loop_cls, workload):
    """Return None if the workload passed, else a short failure description."""
    loop = loop_cls()
    # Bypass any sabotaged call_later so the watchdog itself always works.
    asyncio.SelectorEventLoop.call_later(loop, WATCHDOG, loop.stop)
    try:
        with micro.trap_loop_errors(loop):
            workload.run(loop, max(1, int(workload.DEFAULT_N * SIZE)))
    except Exception as exc:  # any loud failure counts
        return f"{type(exc).__name__}: {exc}"
    finally:
        loop.close()
    return None


def main():
    # Sabotaged runs abandon pending tasks; asyncio's complaints about them are noise.
    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
    warnings.simplefilter("ignore", RuntimeWarning)
    problems = 0
    for loop_cls, must_fail in CASES.items():
        label = "asyncio (control)" if loop_cls is asyncio.SelectorEventLoop \
            else loop_cls.__name__
        for name, workload in micro.WORKLOADS.items():
            failure = attempt(loop_cls, workload)
            expected = name in must_fail
            ok = (failure is not None) == expected
            problems += not ok
            if failure is None:
                outcome = "passed" if ok else "passed, but the check should have failed"
            else:
                outcome = f"failed: {failure[:72]}"
            print(f"{'ok ' if ok else 'BAD'}  {label:18} {name:19} {outcome}")
    print(f"\n{problems} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
