"""Tests of CPython's test_asyncio that the conformance run skips, and why.

Key: a test id relative to test.test_asyncio, in one of three forms
    "module.Class.test_name"     one test
    "module.Class"               every test of a class
    "module.Class.test_*"        an fnmatch pattern (* ? [...]) over test ids
Value: a ONE-LINE reason starting with one of the categories in CATEGORIES.

Classes that the runner builds itself (see hooks.py) are named
"EventLoopTests" in test_events and test_sock_lowlevel, whatever the loop.

Genuine ferroloop bugs do NOT belong here: fix them in ferroloop.
"""

import fnmatch
import sys

CATEGORIES = (
    # The test pokes private internals of asyncio's own Python loop
    # (_selector, _ready, _run_once, _csock, ...), or mocks them.
    "internal-only: ",
    # ferroloop does not implement this transport / feature yet.
    "transport not built yet: ",
    # The test fails with the stock asyncio loop on this machine as well.
    "fails on stock asyncio too: ",
    # --loop virtual only: the test measures real time (time.monotonic, a
    # thread's timeout) against the loop's clock, which is virtual there.
    "real-time: ",
)

# The features being built now: `run.py --in-progress` runs the excluded
# tests whose reason contains one of these, i.e. the to-do list of that work.
# (Issue 3's TCP / Unix sockets / sendfile entries are all gone: their tests
# pass; so are issue 5's "transport not built yet: SSL ..." entries. Put the
# next feature here.)
IN_PROGRESS = (
    "transport not built yet: SSL",
)

EXCLUSIONS = {
    # ---------------------------------------------------------------- internal
    "test_events.EventLoopTests.test_internal_fds":
        "internal-only: checks selector loop's _internal_fds/_csock/_ssock",
    "test_events.EventLoopTests.test_timeout_rounding":
        "internal-only: wraps loop._run_once and reads _clock_resolution/_selector",
    "test_events.EventLoopTests.test_create_server_multiple_hosts_*":
        "internal-only: mocks asyncio.base_events.socket and loop._start_serving",

    # test_unix_events: SelectorEventLoopSignalTests and
    # SelectorEventLoopUnixSocketTests run on the loop under test (hooks.py);
    # these of their tests mock modules that only asyncio's loop imports.
    # (Their other tests patch it too but don't depend on the mock: they run.)
    "test_unix_events.SelectorEventLoopSignalTests.test_add_signal_handler_setup_error":
        "internal-only: patches asyncio.unix_events.signal (stock loop's module; ferroloop imports signal itself) to fake a set_wakeup_fd() failure",
    "test_unix_events.SelectorEventLoopSignalTests.test_add_signal_handler_install_error*":
        "internal-only: patches asyncio.unix_events.signal (stock loop's module; ferroloop imports signal itself) to fake signal() failures",
    "test_unix_events.SelectorEventLoopSignalTests.test_remove_signal_handler":
        "internal-only: patches asyncio.unix_events.signal and asserts calls on the mock (stock loop's module; ferroloop imports signal itself)",
    "test_unix_events.SelectorEventLoopSignalTests.test_remove_signal_handler_2":
        "internal-only: patches asyncio.unix_events.signal and asserts calls on the mock (stock loop's module; ferroloop imports signal itself)",
    "test_unix_events.SelectorEventLoopSignalTests.test_remove_signal_handler_error*":
        "internal-only: patches asyncio.unix_events.signal (stock loop's module; ferroloop imports signal itself) to fake signal() failures",
    "test_unix_events.SelectorEventLoopSignalTests.test_close*":
        "internal-only: patches asyncio.unix_events.signal/sys and asserts calls on the mocks (stock loop's modules)",
    "test_unix_events.SelectorEventLoopUnixSocketTests.test_create_unix_server_bind_error":
        "internal-only: patches asyncio.unix_events.socket to fake a bind() error (stock loop's module)",
    "test_unix_events.SelectorEventLoopUnixSockSendfileTests.test_sock_sendfile_not_available":
        "internal-only: patches asyncio.unix_events.os to hide os.sendfile (stock loop's module)",
    "test_unix_events.SelectorEventLoopUnixSockSendfileTests.test_sock_sendfile_[bceo]*":
        "internal-only: calls the selector loop's private _sock_sendfile_native_impl() and reads loop._selector",
    "test_unix_events.UnixReadPipeTransportTests":
        "internal-only: unit tests of asyncio's _UnixReadPipeTransport on a TestLoop with a mocked pipe and os.read",
    "test_unix_events.UnixWritePipeTransportTests":
        "internal-only: unit tests of asyncio's _UnixWritePipeTransport on a TestLoop with a mocked pipe and os.write",
    "test_unix_events.SafeChildWatcherTests":
        "internal-only: asyncio's SafeChildWatcher driven by a TestLoop with mocked os.waitpid (no loop under test)",
    "test_unix_events.FastChildWatcherTests":
        "internal-only: asyncio's FastChildWatcher driven by a TestLoop with mocked os.waitpid (no loop under test)",

    # ------------------------------------------- transports: TCP, Unix
    # (none left: TCP and Unix sockets, servers, streams and sendfile pass)

    # ------------------------------------------------------- transports: SSL
    # (none left: ssl= on connections/servers, start_tls and sendfile over TLS
    # pass: test_events, test_streams, test_sendfile, test_ssl, test_sslproto)

    # ----------------------------------------------- UDP, pipes, subprocess
    # (none left: their tests pass)
    "test_subprocess.GenericWatcherTests.test_create_subprocess_fails_with_inactive_watcher":
        "internal-only: expects the loop to consult the policy's deprecated, process-global child watcher (ferroloop watches its own children with pidfd)",

    # ------------------------------------------- fails on stock asyncio too
    # (filled from the `--loop asyncio` baseline; see README.md)
}

# Exclusions that hold only on some Pythons: (min, max) version bounds,
# inclusive, as tuples like (3, 14); None for an open end.
VERSIONED_EXCLUSIONS = [
    ((3, 14), None, {
        # The pid-lifetime tests of the same classes run (and pass): ferroloop
        # watches with pidfd or a waitid(WNOWAIT) thread, as 3.14 does.
        "test_subprocess.Subprocess*WatcherTests.test_watcher_implementation":
            "internal-only: asserts the stock loop's private loop._watcher is an instance of asyncio.unix_events._PidfdChildWatcher/_ThreadedChildWatcher",
    }),
]


# Tests that cannot pass on the virtual-time loop (--loop virtual), each
# with the reason: they hold the loop's clock against real time.
VIRTUAL_EXCLUSIONS = {
}


def for_this_python(version=None, loop=None):
    """EXCLUSIONS plus the VERSIONED_EXCLUSIONS that apply to this Python
    (and VIRTUAL_EXCLUSIONS for the virtual-time loop)."""
    version = tuple(version or sys.version_info[:2])
    table = dict(EXCLUSIONS)
    for lo, hi, entries in VERSIONED_EXCLUSIONS:
        if (lo is None or version >= lo) and (hi is None or version <= hi):
            table.update(entries)
    if loop == "virtual":
        table.update(VIRTUAL_EXCLUSIONS)
    return table


class Exclusions:
    def __init__(self, table):
        self.exact = {}
        self.patterns = []
        for key, reason in table.items():
            if "\n" in reason or not reason.startswith(CATEGORIES):
                raise ValueError(
                    f"exclusions.py: reason for {key!r} must be one line "
                    f"starting with one of {CATEGORIES}: {reason!r}")
            if any(c in key for c in "*?["):
                self.patterns.append((key, reason))
            else:
                self.exact[key] = reason

    def match(self, test_id):
        """Return (key, reason) of the entry excluding test_id, or None."""
        if test_id in self.exact:
            return test_id, self.exact[test_id]
        # class-level (or any prefix) entry
        parts = test_id.split(".")
        for i in range(len(parts) - 1, 0, -1):
            key = ".".join(parts[:i])
            if key in self.exact and i >= 2:
                return key, self.exact[key]
        for key, reason in self.patterns:
            if fnmatch.fnmatchcase(test_id, key):
                return key, reason
        return None

    def reason(self, test_id):
        m = self.match(test_id)
        return None if m is None else m[1]

    def unused(self, module, test_ids):
        """Entries for `module` that match none of `test_ids` (stale)."""
        used = set()
        for tid in test_ids:
            m = self.match(tid)
            if m is not None:
                used.add(m[0])
        keys = list(self.exact) + [k for k, _ in self.patterns]
        return sorted(k for k in keys
                      if k.split(".", 1)[0] == module and k not in used)


for _p in IN_PROGRESS:
    if not _p.startswith("transport not built yet: "):
        raise ValueError(f"exclusions.py: IN_PROGRESS entry {_p!r} must start "
                         "with 'transport not built yet: '")
del _p
