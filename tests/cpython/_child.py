"""Child process of the CPython test_asyncio conformance runner.

Runs ONE test_asyncio module with the selected event loop installed and
streams one JSON object per line to an event file, so that the parent
(run.py) can account for every test even if this process crashes or hangs.

Not meant to be run by hand; see run.py and README.md.

Event lines written to --events:
  {"e": "loop", "loop": "...", "policy": "..."}          loop installed
  {"e": "collected", "ids": [...]}                        tests to run, in order
  {"e": "start", "id": "..."}                             a test started
  {"e": "end", "id": "...", "outcome": "...", "detail": "..."}
  {"e": "module_skip", "reason": "..."}                   module raised SkipTest
  {"e": "module_error", "detail": "..."}                  module import failed
  {"e": "done", "loops_created": N, "stale_exclusions": [...]}

Outcomes: passed, failed, error, skipped, excluded, xfail, xpass.
"""

import argparse
import asyncio
import faulthandler
import importlib
import json
import os
import signal
import sys
import time
import traceback
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import exclusions as exclusions_mod  # noqa: E402
import hooks  # noqa: E402

PACKAGE = "test.test_asyncio."
EXCLUDED_PREFIX = "excluded: "


class EventWriter:
    def __init__(self, path):
        self._f = open(path, "a", encoding="utf-8", buffering=1)

    def emit(self, **event):
        self._f.write(json.dumps(event) + "\n")
        self._f.flush()


def short_id(test):
    """'test.test_asyncio.test_events.Cls.test_x' -> 'test_events.Cls.test_x'."""
    tid = test.id()
    if tid.startswith(PACKAGE):
        tid = tid[len(PACKAGE):]
    return tid


def fixture_id(holder):
    """Id for unittest's _ErrorHolder (setUpClass/tearDownModule errors).

    Its description looks like 'setUpClass (test.test_asyncio.m.Cls)'."""
    return holder.id().replace(PACKAGE, "")


# --------------------------------------------------------------------------
# Loop installation
# --------------------------------------------------------------------------

class LoopUnderTest:
    """Everything the hooks need to know about the loop being tested."""

    def __init__(self, name):
        self.name = name
        self.created = 0
        if name == "ferroloop":
            import ferroloop
            self.policy_base = ferroloop.EventLoopPolicy
            self._factory = ferroloop.new_event_loop
        elif name == "virtual":
            # ferroloop's virtual-time test loop (ferroloop.testing).
            from ferroloop import _policy, testing

            class VirtualTimePolicy(_policy.EventLoopPolicy):
                def new_event_loop(self):
                    return testing.new_virtual_loop()

            self.policy_base = VirtualTimePolicy
            self._factory = testing.new_virtual_loop
        elif name == "asyncio":
            self.policy_base = asyncio.DefaultEventLoopPolicy
            # Must NOT go through the current policy: test_runners installs
            # its own policy whose loop factory is this.
            self._factory = asyncio.SelectorEventLoop
        else:
            raise SystemExit(f"unknown loop {name!r}")
        self.policy_class = self._make_policy_class()

    def new_loop(self):
        loop = self._factory()
        self.created += 1
        return loop

    def _make_policy_class(self):
        # A subclass only to count loops created through the policy (proves
        # the tests really ran on the loop under test). Fall back to the
        # class itself if it can't be subclassed.
        lut = self
        try:
            class ConformancePolicy(self.policy_base):
                def new_event_loop(self):
                    loop = super().new_event_loop()
                    lut.created += 1
                    return loop
        except TypeError:
            return self.policy_base
        ConformancePolicy.__qualname__ = ConformancePolicy.__name__ = (
            f"Conformance{self.policy_base.__name__}")
        return ConformancePolicy

    def install(self):
        """Make the loop under test the default everywhere asyncio looks.

        Tests call asyncio.set_event_loop_policy(None) (tearDownModule,
        test_runners.BaseTest.tearDown, ...), which makes the next
        get_event_loop_policy() build a fresh *default* policy via
        asyncio.events._init_event_loop_policy(); patch that so the "default"
        is the loop under test's policy."""
        events = asyncio.events
        policy_class = self.policy_class

        def _init_event_loop_policy():
            with events._lock:
                if events._event_loop_policy is None:
                    events._event_loop_policy = policy_class()

        events._init_event_loop_policy = _init_event_loop_policy
        asyncio.set_event_loop_policy(policy_class())

    def reset_policy_if_leaked(self):
        """Called before every test: a previous test may have installed some
        other policy and not restored it (e.g. test_events.PolicyTests
        .test_set_event_loop_policy installs a stock DefaultEventLoopPolicy)."""
        events = asyncio.events
        pol = events._event_loop_policy
        if pol is not None and type(pol) is not self.policy_class:
            events._event_loop_policy = None


# --------------------------------------------------------------------------
# Result collection
# --------------------------------------------------------------------------

class StreamingResult(unittest.TextTestResult):
    """TextTestResult that also streams a JSON event per test."""

    writer = None  # set before use
    lut = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._cur = None
        self.reported = set()
        self.fixture_skips = 0

    # one record per test: worst outcome wins
    _RANK = {"pending": -1, "passed": 0, "xfail": 0, "skipped": 1,
             "excluded": 1, "xpass": 2, "failed": 3, "error": 4}

    def _set(self, outcome, detail=""):
        cur = self._cur
        if cur is None:
            return
        prev = cur["outcome"]
        if prev in ("failed", "error") and outcome in ("failed", "error"):
            # several failures in one test (subtests, tearDown): keep all
            cur["outcome"] = "error" if "error" in (outcome, prev) else "failed"
            cur["detail"] += "\n" + detail
        elif self._RANK[outcome] >= self._RANK[prev]:
            cur["outcome"] = outcome
            cur["detail"] = detail

    def _fixture(self, holder, outcome, detail):
        tid = fixture_id(holder)
        self.writer.emit(e="end", id=tid, outcome=outcome, detail=detail,
                         fixture=True)
        if outcome == "skipped":
            self.fixture_skips += 1

    def startTest(self, test):
        self.lut.reset_policy_if_leaked()
        super().startTest(test)
        tid = short_id(test)
        self._cur = {"id": tid, "outcome": "pending", "detail": "",
                     "t0": time.monotonic()}
        self.writer.emit(e="start", id=tid)

    def stopTest(self, test):
        super().stopTest(test)
        cur = self._cur
        self._cur = None
        if cur is None:
            return
        outcome = cur["outcome"]
        if outcome == "pending":  # e.g. a result method we didn't hook
            outcome = "passed"
        self.reported.add(cur["id"])
        self.writer.emit(e="end", id=cur["id"], outcome=outcome,
                         detail=cur["detail"],
                         secs=round(time.monotonic() - cur["t0"], 3))

    def _is_holder(self, test):
        return not isinstance(test, unittest.TestCase) or \
            type(test).__name__ == "_ErrorHolder"

    def addSuccess(self, test):
        super().addSuccess(test)
        self._set("passed")

    def addError(self, test, err):
        super().addError(test, err)
        detail = self.errors[-1][1]
        if self._cur is None or self._is_holder(test):
            self._fixture(test, "error", detail)
        else:
            self._set("error", detail)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        detail = self.failures[-1][1]
        if self._cur is None or self._is_holder(test):
            self._fixture(test, "failed", detail)
        else:
            self._set("failed", detail)

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            lst = self.failures if failed else self.errors
            detail = f"[subtest {subtest._subDescription()}]\n{lst[-1][1]}"
            self._set("failed" if failed else "error", detail)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        if self._cur is None or self._is_holder(test):
            self._fixture(test, "skipped", reason)
            return
        if isinstance(test, unittest.case._SubTest):
            return  # a skipped subtest does not skip the whole test
        if reason.startswith(EXCLUDED_PREFIX):
            self._set("excluded", reason[len(EXCLUDED_PREFIX):])
        else:
            self._set("skipped", reason)

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._set("xfail")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._set("xpass", "unexpected success")


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def flatten(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from flatten(t)
        else:
            yield t


def mark_excluded(test, reason):
    def excluded():
        pass
    excluded.__unittest_skip__ = True
    excluded.__unittest_skip_why__ = EXCLUDED_PREFIX + reason
    # An instance attribute shadows the method; TestCase.run() looks the
    # method up on the instance and honours __unittest_skip__.
    setattr(test, test._testMethodName, excluded)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("module")
    ap.add_argument("--loop", required=True)
    ap.add_argument("--events", required=True)
    ap.add_argument("--skip-ids", help="file: ids already handled, one a line")
    ap.add_argument("--ignore-exclusions", action="store_true")
    ap.add_argument("--run-excluded", action="append", default=[],
                    metavar="SUBSTR")
    ap.add_argument("-k", dest="patterns", action="append", default=[])
    args = ap.parse_args()

    writer = EventWriter(args.events)
    faulthandler.enable(all_threads=True)
    # the parent sends SIGUSR1 before killing a hung child: dump all stacks
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    # CPython's tests (test_runners' interrupt tests) assume Python's default
    # Ctrl-C handler. A child started from a background job of a
    # non-interactive shell inherits SIGINT ignored, and Python then leaves it
    # ignored: interrupt_main() would do nothing and those tests would hang.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    try:
        import test.test_asyncio  # noqa: F401
    except ImportError as exc:
        writer.emit(e="module_error", detail=(
            f"cannot import CPython's test package ({exc}); this interpreter "
            f"({sys.executable}) was built/packaged without its test suite. "
            "Use a python.org/pyenv build (or install the distro's "
            "libpython3.X-testsuite package)."))
        return 2

    try:
        lut = LoopUnderTest(args.loop)
        lut.install()
        probe = asyncio.new_event_loop()
        writer.emit(e="loop", loop=args.loop,
                    loop_type=f"{type(probe).__module__}.{type(probe).__qualname__}",
                    policy=f"{lut.policy_base.__module__}.{lut.policy_base.__qualname__}")
        probe.close()
        lut.created = 0
    except BaseException:
        writer.emit(e="module_error",
                    detail="cannot install loop under test:\n"
                    + traceback.format_exc())
        return 2

    name = args.module
    try:
        module = importlib.import_module(PACKAGE + name)
    except unittest.SkipTest as exc:
        writer.emit(e="module_skip", reason=str(exc))
        return 0
    except BaseException:
        writer.emit(e="module_error", detail=traceback.format_exc())
        return 2

    try:
        hooks.apply(name, module, lut)
    except BaseException:
        writer.emit(e="module_error",
                    detail="hooks.apply failed:\n" + traceback.format_exc())
        return 2

    suite = unittest.defaultTestLoader.loadTestsFromModule(module)
    tests = list(flatten(suite))

    done = set()
    if args.skip_ids:
        with open(args.skip_ids, encoding="utf-8") as f:
            done = {line.strip() for line in f if line.strip()}

    excl = exclusions_mod.Exclusions(
        exclusions_mod.for_this_python(loop=args.loop))
    selected = []
    for t in tests:
        if not isinstance(t, unittest.TestCase):
            # _FailedTest etc. from the loader
            selected.append(t)
            continue
        tid = short_id(t)
        if tid in done:
            continue
        if args.patterns and not any(p in tid for p in args.patterns):
            continue
        reason = excl.reason(tid)
        if (reason is not None and not args.ignore_exclusions
                and not any(sub in reason for sub in args.run_excluded)):
            mark_excluded(t, reason)
        selected.append(t)

    writer.emit(e="collected", ids=[short_id(t) for t in selected])

    StreamingResult.writer = writer
    StreamingResult.lut = lut
    runner = unittest.TextTestRunner(stream=sys.stderr, verbosity=2,
                                     resultclass=StreamingResult)
    result = runner.run(unittest.TestSuite(selected))

    # Tests never started (their setUpClass/setUpModule failed or skipped)
    for t in selected:
        tid = short_id(t)
        if tid not in result.reported:
            if result.fixture_skips:
                writer.emit(e="end", id=tid, outcome="skipped",
                            detail="not run: class/module fixture skipped")
            else:
                writer.emit(e="end", id=tid, outcome="error",
                            detail="not run: class/module fixture failed")

    stale = excl.unused(name, [short_id(t) for t in tests])
    writer.emit(e="done", loops_created=lut.created, stale_exclusions=stale)
    return 0


if __name__ == "__main__":
    sys.exit(main())
