#!/usr/bin/env python3
"""Run CPython's own test_asyncio modules against ferroloop (or stock asyncio).

    python tests/cpython/run.py [options] [module ...]

Each module runs in its own subprocess (_child.py) with the loop under test
installed; the child streams per-test results to an event file, so a crash
or a hang loses at most one test: the runner records it as failed and
restarts the module after it. See README.md.

Exit status: 0 if nothing failed, 1 if any test failed/errored, 2 on usage
or setup errors.
"""

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD = os.path.join(HERE, "_child.py")
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import exclusions as exclusions_mod  # noqa: E402

REQUIRED_MODULES = [
    "test_tasks",
    "test_futures",
    "test_futures2",
    "test_locks",
    "test_queues",
    "test_pep492",
    "test_context",
    "test_timeouts",
    "test_taskgroups",
    "test_waitfor",
    "test_runners",
    "test_sock_lowlevel",
    "test_subprocess",
    "test_threads",
    "test_events",
    "test_streams",
    "test_server",
    "test_sendfile",
    "test_buffered_proto",
    "test_protocols",
    "test_unix_events",
    "test_ssl",
    "test_sslproto",
]

# Modules that newer Pythons added to test_asyncio; each runs where the
# interpreter has it, so every version is held to its own suite.
# The modules run on the virtual-time loop (--loop virtual, make
# test-virtual): those whose tests do not measure real time.
VIRTUAL_MODULES = [
    "test_tasks",
    "test_locks",
    "test_queues",
    "test_timeouts",
    "test_taskgroups",
    "test_waitfor",
]

NEWER_MODULES = [
    "test_eager_task_factory",  # 3.12
    "test_staggered",           # 3.12
    "test_free_threading",      # 3.14
    "test_graph",               # 3.14
    "test_tools",               # 3.14
    "test_server_context",      # 3.15
]


def default_modules():
    """REQUIRED_MODULES plus the NEWER_MODULES this interpreter ships."""
    try:
        import test.test_asyncio as pkg
    except ImportError:
        return list(REQUIRED_MODULES)
    here = os.path.dirname(pkg.__file__)
    return list(REQUIRED_MODULES) + [
        m for m in NEWER_MODULES
        if os.path.exists(os.path.join(here, m + ".py"))]

LOOP_ENV = "FERROLOOP_CONFORMANCE_LOOP"
FAILED = ("failed", "error", "xpass")
MAX_RESTARTS = 20  # per module, after crashes / per-test timeouts
EXIT_GRACE = 30    # seconds a child may take to exit after its last test


class ModuleRun:
    """Outcome of running one module (possibly over several child processes)."""

    def __init__(self, name):
        self.name = name
        self.results = {}        # id -> {"outcome", "detail", "secs"}
        self.order = []
        self.loop_info = None
        self.loops_created = 0
        self.stale = []
        self.skip_reason = None  # whole module skipped
        self.notes = []          # crashes, timeouts, restarts
        self.secs = 0.0
        self.logs = []           # child stderr/stdout log paths

    def record(self, tid, outcome, detail="", secs=None):
        if tid not in self.results:
            self.order.append(tid)
        self.results[tid] = {"outcome": outcome, "detail": detail,
                             "secs": secs}

    def count(self, *outcomes):
        return sum(1 for r in self.results.values()
                   if r["outcome"] in outcomes)

    @property
    def passed(self):
        return self.count("passed", "xfail")

    @property
    def failed(self):
        return self.count("failed", "xpass")

    @property
    def errors(self):
        return self.count("error")

    @property
    def skipped(self):
        return self.count("skipped", "excluded")

    @property
    def excluded(self):
        return self.count("excluded")

    def failing(self):
        return [(tid, self.results[tid]) for tid in self.order
                if self.results[tid]["outcome"] in FAILED]


def read_events(path, offset):
    """Return (events, new_offset); only complete lines are consumed."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    events = []
    end = data.rfind(b"\n")
    if end < 0:
        return [], offset
    for line in data[:end].splitlines():
        if line.strip():
            events.append(json.loads(line))
    return events, offset + end + 1


def kill_child(proc, dump_stacks):
    if proc.poll() is not None:
        return
    if dump_stacks:
        # _child.py registered faulthandler on SIGUSR1: dump every stack
        try:
            proc.send_signal(signal.SIGUSR1)
            proc.wait(timeout=2)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            pass
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def run_module(name, opts, workdir):
    """Run one module to completion, restarting the child after a crash or
    a per-test timeout. Returns a ModuleRun."""
    mr = ModuleRun(name)
    t_start = time.monotonic()
    deadline = t_start + opts.timeout
    collected = None  # ids the first child collected, in order
    attempt = 0

    while True:
        attempt += 1
        events_path = os.path.join(workdir, f"{name}.{attempt}.events")
        log_path = os.path.join(workdir, f"{name}.{attempt}.log")
        skip_path = os.path.join(workdir, f"{name}.{attempt}.skip")
        mr.logs.append(log_path)
        cmd = [sys.executable, CHILD, name, "--loop", opts.loop,
               "--events", events_path]
        if mr.results:
            with open(skip_path, "w", encoding="utf-8") as f:
                f.write("\n".join(mr.results) + "\n")
            cmd += ["--skip-ids", skip_path]
        if opts.ignore_exclusions:
            cmd.append("--ignore-exclusions")
        for sub in opts.run_excluded:
            cmd += ["--run-excluded", sub]
        for p in opts.patterns:
            cmd += ["-k", p]
        cwd = tempfile.mkdtemp(prefix=f"{name}.cwd.", dir=workdir)
        env = dict(os.environ)
        env[LOOP_ENV] = opts.loop
        env.setdefault("PYTHONUNBUFFERED", "1")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=cwd,
                                    env=env, start_new_session=True)

        offset = 0
        current = None       # (id, start time)
        finished = False     # child emitted "done"/module_skip/module_error
        finished_at = None
        killed_for = None    # "test-timeout" | "module-timeout" | "exit-hang"

        def consume(events):
            nonlocal current, finished, finished_at, collected
            for ev in events:
                kind = ev["e"]
                if kind == "loop":
                    mr.loop_info = ev
                elif kind == "collected":
                    if collected is None:
                        collected = list(ev["ids"])
                elif kind == "start":
                    current = (ev["id"], time.monotonic())
                elif kind == "end":
                    mr.record(ev["id"], ev["outcome"], ev.get("detail", ""),
                              ev.get("secs"))
                    if current and current[0] == ev["id"]:
                        current = None
                elif kind in ("done", "module_skip", "module_error"):
                    if kind == "done":
                        mr.loops_created += ev.get("loops_created", 0)
                        mr.stale = ev.get("stale_exclusions", [])
                    elif kind == "module_skip":
                        mr.skip_reason = ev["reason"]
                    else:
                        mr.record(f"{name} (module)", "error", ev["detail"])
                    finished = True
                    finished_at = time.monotonic()

        while True:
            exited = proc.poll() is not None
            events, offset = read_events(events_path, offset)
            consume(events)
            if exited:
                break
            now = time.monotonic()
            if finished and now - finished_at > EXIT_GRACE:
                killed_for = "exit-hang"
            elif now > deadline:
                killed_for = "module-timeout"
            elif current and now - current[1] > opts.test_timeout:
                killed_for = "test-timeout"
            if killed_for:
                kill_child(proc, dump_stacks=True)
                events, offset = read_events(events_path, offset)
                consume(events)  # results that raced with the kill
                break
            time.sleep(0.05)

        shutil.rmtree(cwd, ignore_errors=True)
        rc = proc.returncode
        tail = log_tail(log_path)
        if finished:
            if killed_for == "exit-hang" or rc not in (0, 2):
                why = ("child hung at interpreter exit after the last test "
                       f"(killed after {EXIT_GRACE}s)"
                       if killed_for == "exit-hang" else
                       f"child exited with status {rc} after the last test")
                mr.record(f"{name} (interpreter exit)", "error",
                          f"{why}\n--- child output tail ---\n{tail}")
                mr.notes.append(why)
            break

        if killed_for == "test-timeout":
            why = f"hung: no result after {opts.test_timeout:g}s (test timeout)"
        elif killed_for == "module-timeout":
            why = f"module timeout ({opts.timeout:g}s) while running this test"
        else:
            why = f"child process died (exit status {rc}) while running this test"
        if current is not None:
            mr.record(current[0], "error",
                      f"{why}\n--- child output tail ---\n{tail}")
            mr.notes.append(f"{why}: {current[0]}")
        else:
            why = why.replace("while running this test", "outside any test")
            mr.notes.append(why)
            mr.record(f"{name} (module)", "error",
                      f"{why}\n--- child output tail ---\n{tail}")

        remaining = [t for t in (collected or []) if t not in mr.results]
        if not remaining:
            break
        out_of_time = time.monotonic() > deadline
        if out_of_time or attempt > MAX_RESTARTS or current is None:
            # (a crash outside any test, e.g. in setUpClass, would recur)
            reason = ("not run: module timeout" if out_of_time else
                      "not run: too many crashes/timeouts" if current else
                      "not run: child died outside any test")
            for t in remaining:
                mr.record(t, "error", reason)
            mr.notes.append(f"{len(remaining)} test(s) {reason}")
            break
        mr.notes.append(f"restarted the module after {current[0]}")

    mr.secs = time.monotonic() - t_start
    return mr


def log_tail(path, lines=40):
    try:
        with open(path, "rb") as f:
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def module_line(mr):
    if mr.skip_reason is not None:
        return f"{mr.name}: module skipped ({mr.skip_reason})  [{mr.secs:.1f}s]"
    return (f"{mr.name}: {mr.passed} passed, {mr.failed} failed, "
            f"{mr.errors} errors, {mr.skipped} skipped "
            f"({mr.excluded} excluded)  [{mr.secs:.1f}s]")


def print_module(mr, opts, out):
    print(module_line(mr), file=out)
    for note in mr.notes:
        print(f"    note: {note}", file=out)
    if opts.verbose:
        if mr.loop_info:
            print(f"    loop: {mr.loop_info.get('loop_type')} "
                  f"(policy {mr.loop_info.get('policy')}); "
                  f"{mr.loops_created} loop(s) created by the tests", file=out)
        for key in mr.stale:
            print(f"    stale exclusion (matches no test): {key}", file=out)
    for tid, res in mr.failing():
        print(f"    FAIL {tid} [{res['outcome']}]", file=out)
        if opts.verbose and res["detail"]:
            for line in res["detail"].rstrip().splitlines():
                print(f"        {line}", file=out)
    out.flush()


def failure_cause(detail):
    """One line naming why a test failed: the last line of its traceback
    (the first line for crashes/hangs/not-run, whose detail is the runner's
    note plus the child's output tail), with object addresses and port
    numbers and fds blanked so that the same cause groups together."""
    lines = [ln.strip() for ln in detail.strip().splitlines() if ln.strip()]
    if not lines:
        return "(no detail)"
    if "--- child output tail ---" in lines or lines[0].startswith("not run:"):
        cause = lines[0]
    else:
        cause = next((ln for ln in reversed(lines)
                      if not ln.startswith(("File ", "[subtest"))), lines[-1])
    cause = re.sub(r"0x[0-9a-fA-F]+", "0x...", cause)
    cause = re.sub(r"\bfd=\d+", "fd=...", cause)
    cause = re.sub(r"(\d+\.\d+\.\d+\.\d+'?, )\d+", r"\1...", cause)
    return cause[:200]


def print_by_cause(ordered, out):
    groups = {}
    for mr in ordered:
        for tid, res in mr.failing():
            groups.setdefault(failure_cause(res["detail"]), []).append(tid)
    print(f"\nfailing tests by cause ({len(groups)} causes):", file=out)
    for cause, tids in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        print(f"  [{len(tids)}] {cause}", file=out)
        for tid in tids:
            print(f"      {tid}", file=out)


def print_passing_excluded(ordered, out):
    """With --ignore-exclusions/--run-excluded: excluded tests that passed,
    i.e. exclusions to delete."""
    excl = exclusions_mod.Exclusions(exclusions_mod.for_this_python())
    rows = []
    for mr in ordered:
        for tid in mr.order:
            if mr.results[tid]["outcome"] not in ("passed", "xfail"):
                continue
            m = excl.match(tid)
            if m is not None:
                rows.append((tid, m[0]))
    if rows:
        print(f"\nexcluded tests that passed ({len(rows)}; drop the "
              "exclusion if they pass on every run):", file=out)
        for tid, key in rows:
            print(f"  {tid}" + ("" if key == tid else f"   (entry {key})"),
                  file=out)


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description="Run CPython's test_asyncio modules on ferroloop "
                    "(each module in its own subprocess).")
    ap.add_argument("modules", nargs="*", metavar="module",
                    help="test_asyncio module names (default: the required "
                         "list: %s)" % " ".join(REQUIRED_MODULES))
    ap.add_argument("--loop", choices=("ferroloop", "asyncio", "virtual"),
                    default=os.environ.get(LOOP_ENV, "ferroloop"),
                    help="loop under test (default: $%s or ferroloop); "
                         "'asyncio' = stock loop, for the baseline; 'virtual' = "
                         "ferroloop's virtual-time test loop, on the "
                         "modules that do not measure real time" % LOOP_ENV)
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="show tracebacks of failing tests, loop info and "
                         "stale exclusions")
    ap.add_argument("-k", dest="patterns", action="append", default=[],
                    help="only run tests whose id contains this substring "
                         "(repeatable)")
    ap.add_argument("-j", "--jobs", type=int, default=1,
                    help="modules to run in parallel (default 1; timing-"
                         "sensitive tests may flake when >1)")
    ap.add_argument("--timeout", type=float, default=300,
                    help="per-module timeout in seconds (default 300)")
    ap.add_argument("--test-timeout", type=float, default=30,
                    help="per-test timeout in seconds (default 30; the "
                         "slowest test takes ~2.5 s on the stock loop)")
    ap.add_argument("--ignore-exclusions", action="store_true",
                    help="run excluded tests too (to check whether an "
                         "exclusion is still needed)")
    ap.add_argument("--run-excluded", action="append", default=[],
                    metavar="SUBSTR",
                    help="run the excluded tests whose exclusion reason "
                         "contains SUBSTR (repeatable)")
    ap.add_argument("--in-progress", action="store_true",
                    help="run the excluded tests of the features being "
                         "built (exclusions.IN_PROGRESS: %s)"
                         % "; ".join(exclusions_mod.IN_PROGRESS))
    ap.add_argument("--by-cause", action="store_true",
                    help="also list the failing tests grouped by cause "
                         "(the last line of their traceback)")
    ap.add_argument("--json", metavar="FILE",
                    help="also write every test's outcome to FILE")
    ap.add_argument("--keep-logs", metavar="DIR",
                    help="keep the children's logs and event files in DIR")
    opts = ap.parse_args(argv)
    if opts.loop not in ("ferroloop", "asyncio", "virtual"):
        ap.error(f"${LOOP_ENV} must be ferroloop, asyncio or virtual")
    if opts.in_progress:
        opts.run_excluded += list(exclusions_mod.IN_PROGRESS)
    if not opts.modules and opts.loop == "virtual":
        opts.modules = list(VIRTUAL_MODULES)
    opts.modules = opts.modules or default_modules()
    for i, m in enumerate(opts.modules):
        m = m[:-3] if m.endswith(".py") else m
        opts.modules[i] = m.rsplit(".", 1)[-1]
    return opts


PREFLIGHT = """
import sys
try:
    import test.test_asyncio
except ImportError as exc:
    sys.exit(f"cannot import CPython's test package ({exc}): this Python was "
             "packaged without its test suite; use a pyenv/python.org build "
             "or install e.g. libpython3.X-testsuite")
if sys.argv[1] == "ferroloop":
    import ferroloop
    ferroloop.new_event_loop().close()
if sys.argv[1] == "virtual":
    import ferroloop.testing
    ferroloop.testing.new_virtual_loop().close()
"""


def preflight(opts):
    """Fail fast, once, if the loop under test or the tests can't load."""
    proc = subprocess.run([sys.executable, "-c", PREFLIGHT, opts.loop],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        msg = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
        print("\n".join(msg[-15:]), file=sys.stderr)
        hint = " (build it: make build)" if opts.loop != "asyncio" else ""
        print(f"error: cannot run the tests with {sys.executable} and "
              f"--loop {opts.loop}{hint}", file=sys.stderr)
        return False
    return True


def main(argv=None):
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    out = sys.stdout
    if not preflight(opts):
        return 2

    if opts.keep_logs:
        os.makedirs(opts.keep_logs, exist_ok=True)
        workdir = opts.keep_logs
    else:
        workdir = tempfile.mkdtemp(prefix="ferroloop-cpython-")

    print(f"loop under test: {opts.loop}   python: {sys.executable} "
          f"({sys.version.split()[0]})", file=out)
    out.flush()

    t0 = time.monotonic()
    runs = {}
    lock = threading.Lock()

    def job(name):
        mr = run_module(name, opts, workdir)
        with lock:
            runs[name] = mr
            print_module(mr, opts, out)
        return mr

    try:
        with concurrent.futures.ThreadPoolExecutor(max(1, opts.jobs)) as ex:
            list(ex.map(job, opts.modules))
    except KeyboardInterrupt:
        print("interrupted", file=out)
        return 130
    finally:
        if not opts.keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)

    total = time.monotonic() - t0
    ordered = [runs[m] for m in opts.modules]
    n_pass = sum(mr.passed for mr in ordered)
    n_fail = sum(mr.failed + mr.errors for mr in ordered)
    n_skip = sum(mr.skipped for mr in ordered)
    n_excl = sum(mr.excluded for mr in ordered)

    if opts.json:
        with open(opts.json, "w", encoding="utf-8") as f:
            json.dump({
                "loop": opts.loop,
                "python": sys.version,
                "seconds": round(total, 1),
                "modules": {mr.name: {
                    "seconds": round(mr.secs, 1),
                    "skip_reason": mr.skip_reason,
                    "notes": mr.notes,
                    "loops_created": mr.loops_created,
                    "tests": mr.results,
                } for mr in ordered},
            }, f, indent=1)

    failing = [tid for mr in ordered for tid, _ in mr.failing()]
    if failing:
        print(f"\nfailing tests ({len(failing)}):", file=out)
        for tid in failing:
            print(f"  {tid}", file=out)
    if opts.by_cause and failing:
        print_by_cause(ordered, out)
    if opts.loop == "ferroloop" and (opts.ignore_exclusions
                                     or opts.run_excluded):
        print_passing_excluded(ordered, out)
    print(f"\n{n_skip} skipped ({n_excl} excluded); total time {total:.1f}s",
          file=out)
    print(f"{n_pass} passed, {n_fail} failed", file=out)
    return 1 if n_fail else 0


if __name__ == "__main__":
    sys.exit(main())
