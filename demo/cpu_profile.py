"""Where a crawler's CPU goes: ``perf record`` over the timed fetches, grouped by object.

``main.py`` runs one extra crawl per loop under ``perf record``, with the crawler's
``--perf-control``: perf starts with its events disabled and the crawler enables them when
its timed fetches start and disables them when they end (``perf record --control``), so
start-up, imports and the warm-up are left out. The samples are then summed per object
file (``perf report --sort dso``) into a few groups:

* ``loop``: the loop's own compiled code (``_ferroloop*.so``, uvloop's ``loop*.so``,
  ``_rloop*.so``). Stock asyncio's loop is Python code, so for asyncio it is part of
  ``interpreter`` and has no share of its own.
* ``interpreter``: ``libpython``, i.e. every piece of Python code: aiohttp's, asyncio's
  Tasks and locks, the crawler's (and stock asyncio's loop).
* ``C extensions``: aiohttp's HTTP parser and writer, multidict, yarl, propcache,
  ``_asyncio``'s C Futures and Tasks.
* ``kernel``: system calls, loopback TCP, scheduling.
* ``libc``: memory allocation and copies called from all of the above.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from typing import Callable

# Substrings of the object names of each loop's own compiled code.
LOOP_OBJECTS = {"ferroloop": ("_ferroloop.",), "uvloop": ("loop.cpython", "loop.abi3"),
                "rloop": ("_rloop.",)}
C_EXTENSIONS = ("_http_parser", "_http_writer", "_websocket", "_helpers", "multidict",
                "_quoting", "yarl", "propcache", "_asyncio.", "_frozenlist")
GROUPS = ("loop", "interpreter", "C extensions", "kernel", "libc", "other")
SAMPLE_HZ = 1999

Runner = Callable[[list[str], float], tuple[int, str, str]]


def perf_unavailable(run: Runner) -> str | None:
    """Why ``perf record`` cannot be used here, or None when it can."""
    if shutil.which("perf") is None:
        return "perf is not installed"
    with tempfile.TemporaryDirectory(prefix="ferroloop-demo-") as tmp:
        rc, _, err = run(["perf", "record", "-q", "-o", os.path.join(tmp, "probe.data"),
                          "--", "true"], 15)
    if rc != 0:
        lines = [ln.strip() for ln in err.splitlines() if ln.strip()]
        return f"perf record failed: {lines[0] if lines else f'exit status {rc}'}"
    return None


def group_of(dso: str, loop: str) -> str:
    name = os.path.basename(dso)
    if any(part in name for part in LOOP_OBJECTS.get(loop, ())):
        return "loop"
    if name.startswith("libpython") or name.startswith("python3"):
        return "interpreter"
    if name.startswith("[kernel") or name in ("[vdso]", "[vsyscall]"):
        return "kernel"
    if name.startswith("libc.") or name.startswith("libc-") or name.startswith("ld-linux"):
        return "libc"
    if any(part in name for part in C_EXTENSIONS):
        return "C extensions"
    return "other"


def parse_report(text: str, loop: str) -> dict[str, float]:
    """``perf report --sort dso --stdio`` output -> percent per group."""
    shares = dict.fromkeys(GROUPS, 0.0)
    for line in text.splitlines():
        m = re.match(r"^\s*([\d.]+)%\s+(\S.*?)\s*$", line)
        if m:
            shares[group_of(m.group(2), loop)] += float(m.group(1))
    return shares


def profile(cmd: list[str], loop: str, run: Runner, timeout: float) -> dict:
    """Run ``cmd`` (a crawler that takes ``--perf-control``) under perf.

    Returns ``{"shares": {group: percent}}`` or ``{"error": line}``.
    """
    with tempfile.TemporaryDirectory(prefix="ferroloop-demo-") as tmp:
        ctl, ack, data = (os.path.join(tmp, n) for n in ("ctl", "ack", "perf.data"))
        os.mkfifo(ctl)
        os.mkfifo(ack)
        rc, _, err = run(["perf", "record", "-q", "-F", str(SAMPLE_HZ), "-D", "-1",
                          "--control", f"fifo:{ctl},{ack}", "-o", data, "--", *cmd,
                          "--perf-control", f"{ctl},{ack}"], timeout)
        if rc != 0:
            lines = [ln.strip() for ln in err.splitlines() if ln.strip()]
            return {"error": lines[-1] if lines else f"exit status {rc}"}
        try:
            report = subprocess.run(["perf", "report", "-i", data, "--no-children",
                                     "--sort", "dso", "--stdio", "-g", "none"],
                                    capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            return {"error": "perf report took longer than 60 s"}
    shares = parse_report(report.stdout, loop)
    if sum(shares.values()) < 50:
        return {"error": f"perf report gave no samples ({report.stderr.strip()[:80]})"}
    return {"shares": shares}
