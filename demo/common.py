"""What the demo's child programs share: picking the loop, reading CPU time, reporting errors.

Each child program (``crawler_aiohttp.py``, ``crawler_raw.py``, ``echo.py``) runs one
benchmark on one loop in a fresh interpreter. With ``--json`` it prints one JSON object on
stdout; ``main.py`` reads the last line that starts with ``{``.
"""

from __future__ import annotations

import asyncio
import os
import resource
import sys
import time
import traceback
from typing import Callable, Iterable

LOOPS = ("asyncio", "ferroloop", "uvloop", "rloop")

_STDLIB_ASYNCIO = os.path.dirname(asyncio.__file__)
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """Return ``new_event_loop`` of the named loop implementation (imports it)."""
    if name == "asyncio":
        return asyncio.SelectorEventLoop  # the stock loop on Linux
    if name in LOOPS:
        module = __import__(name)
        return module.new_event_loop
    raise ValueError(f"unknown loop {name!r}: expected one of {', '.join(LOOPS)}")


def loop_description(loop: asyncio.AbstractEventLoop) -> str:
    cls = type(loop)
    return f"{cls.__module__}.{cls.__qualname__}"


def describe_exception(exc: BaseException) -> str:
    """One line: the exception, and where it was raised.

    asyncio's abstract loop methods raise a bare ``NotImplementedError`` (no message), so
    the line names the method that raised it, e.g.
    ``NotImplementedError raised by loop.create_connection() (asyncio/events.py:...)``.
    """
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return text
    last = frames[-1]
    where = f"{_short_path(last.filename)}:{last.lineno} in {last.name}()"
    if isinstance(exc, NotImplementedError):
        if last.filename.startswith(_STDLIB_ASYNCIO) and \
                os.path.basename(last.filename) == "events.py":
            text += f" raised by loop.{last.name}() ({where}: the loop does not implement it)"
        else:
            text += f" raised at {where}"
        caller = _first_caller_outside_loop(frames[:-1])
        if caller is not None:
            text += (f", called from {_short_path(caller.filename)}:{caller.lineno} "
                     f"in {caller.name}()")
        return text
    return f"{text} (at {where})"


def _first_caller_outside_loop(frames: list[traceback.FrameSummary]):
    """The innermost frame that belongs to neither asyncio nor the loop package."""
    for frame in reversed(frames):
        path = frame.filename
        if path.startswith(_STDLIB_ASYNCIO) or f"{os.sep}ferroloop{os.sep}" in path:
            continue
        return frame
    return None


def _short_path(path: str) -> str:
    """``.../site-packages/aiohttp/connector.py`` -> ``aiohttp/connector.py``."""
    parts = path.split(os.sep)
    for anchor in ("site-packages", "lib", "python"):
        if anchor in parts:
            idx = len(parts) - 1 - parts[::-1].index(anchor)
            rest = parts[idx + 1:]
            if rest and not rest[0].startswith("python3"):
                return "/".join(rest)
            if len(rest) > 1:
                return "/".join(rest[1:])
    return "/".join(parts[-2:])


def summarize_errors(errors: Iterable[BaseException | str], limit: int = 5) -> list[str]:
    """Distinct error lines with their counts, most frequent first."""
    counts: dict[str, int] = {}
    for err in errors:
        line = err if isinstance(err, str) else describe_exception(err)
        counts[line] = counts.get(line, 0) + 1
    ordered = sorted(counts.items(), key=lambda kv: -kv[1])[:limit]
    return [f"{n} x {line}" if n > 1 else line for line, n in ordered]


def process_cpu(pids: Iterable[int]) -> float | None:
    """CPU seconds (user + system) used so far by the given processes; None if unreadable."""
    total = 0
    try:
        for pid in pids:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    except (OSError, IndexError, ValueError):
        return None
    return total / _CLK_TCK


class Window:
    """The timed window of a run: wall time and this process's user and system CPU time.

    CPU comes from ``getrusage(RUSAGE_SELF)``, so it covers every thread of the process
    (a loop's executor threads included). With ``perf_control`` (``"CTL,ACK"``, the FIFOs
    of ``perf record --control fifo:CTL,ACK -D -1``) a profiler records exactly this
    window: it is enabled when the window opens and disabled when it closes.
    """

    def __init__(self, perf_control: str | None = None) -> None:
        self._perf = perf_control.split(",", 1) if perf_control else None
        self.wall = self.user = self.sys = 0.0

    def _perf_command(self, command: str) -> None:
        if self._perf is None:
            return
        ctl, ack = self._perf
        with open(ctl, "w") as f:
            f.write(command + "\n")
        with open(ack) as f:  # perf answers "ack" once the command took effect
            f.readline()

    def __enter__(self) -> "Window":
        self._perf_command("enable")
        self._ru0 = resource.getrusage(resource.RUSAGE_SELF)
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._t0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        self._perf_command("disable")
        self.user = ru1.ru_utime - self._ru0.ru_utime
        self.sys = ru1.ru_stime - self._ru0.ru_stime

    def result(self) -> dict:
        return {"wall": self.wall, "cpu": self.user + self.sys, "user": self.user,
                "sys": self.sys}


def pin_to_cpus(text: str | None) -> None:
    """``--cpus 0`` or ``--cpus 0,1``: run this process (and its threads) on those CPUs only."""
    if text:
        os.sched_setaffinity(0, {int(c) for c in text.split(",") if c})


def parse_pids(text: str | None) -> list[int]:
    return [int(p) for p in text.split(",") if p] if text else []


def fail_line(program: str, exc: BaseException) -> None:
    """Print the error of a child program that could not run at all (after the traceback)."""
    traceback.print_exception(exc, file=sys.stderr)
    print(f"{program}: {describe_exception(exc)}", file=sys.stderr, flush=True)


def _probe(name: str) -> int:
    """``python demo/common.py probe LOOP``: print the loop's class if it imports and runs."""
    try:
        factory = loop_factory(name)
    except ImportError as exc:
        print(f"cannot import {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(asyncio.sleep(0))
        print(loop_description(runner.get_loop()))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "probe":
        sys.exit("usage: common.py probe LOOP")
    sys.exit(_probe(sys.argv[2]))
