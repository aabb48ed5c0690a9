"""Noticing that a loop's child processes exited, and reaping them.

Each loop watches its own children; asyncio's policy-level child watchers
(``asyncio.get_child_watcher()``) are not used: they are process-global,
deprecated since 3.12 and gone in 3.14, whose unix loop does what this
module does:

- pidfd (Linux 5.3+): ``os.pidfd_open(pid)`` gives an fd that turns
  readable when the child exits; the loop watches it like any other fd, and
  its callback reaps the child with ``waitpid``.  No thread, no signal.
- otherwise (no pidfd_open, or it fails, e.g. EMFILE): one daemon thread per
  child blocks until the child exits and tells the loop with
  ``call_soon_threadsafe`` (asyncio's ThreadedChildWatcher).  Where
  ``os.waitid`` exists the thread only waits (``WNOWAIT``) and the loop
  thread reaps, so the pid stays reserved (a zombie) until the exit is
  published: ``send_signal()`` can never hit a recycled pid (gh-127049,
  the 3.14 behaviour).  Without waitid the thread reaps itself.

Which of the two a loop uses follows ``asyncio.unix_events.can_use_pidfd()``
where asyncio has it (3.13+), as the stock loop's choice does.

Only the watched pid is ever waited for (never ``waitpid(-1)``), so children
started elsewhere in the process are left alone.  When the loop closes with
children still running, they are reaped in the background: closing a loop
never leaves zombies.
"""

import os
import sys
import threading

from asyncio import unix_events
from asyncio.log import logger


def _pidfd_open_works():
    if not hasattr(os, 'pidfd_open'):
        return False
    try:
        # Old kernels (ENOSYS) and seccomp filters (EPERM) refuse it.
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        return False
    return True


# Read at each watch(): tests set it to False to exercise the thread path.
USE_PIDFD = _pidfd_open_works()


def _exit_code(status):
    # unix_events' version copes with a status os.waitstatus_to_exitcode()
    # does not understand (returns it as is instead of raising).
    return unix_events.waitstatus_to_exitcode(status)


def _wait_blocking(pid):
    """Wait for pid to exit; its return code, or None if already reaped."""
    while True:
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:
            # Someone else collected the status (a waitpid() elsewhere).
            return None
        except InterruptedError:
            continue
        return _exit_code(status)


def _reap_in_background(pid, loop):
    """Reap pid for a closed loop, so the child does not stay a zombie."""
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return
    if waited:
        return  # had exited already: reaped just now

    def reap():
        _wait_blocking(pid)
        # What the stock loop's waiter thread says in the same situation.
        logger.warning("Loop %r that handles pid %r is closed", loop, pid)

    try:
        threading.Thread(target=reap, name=f'ferroloop-reap-{pid}',
                         daemon=True).start()
    except RuntimeError:
        # Interpreter shutdown (a loop closed by its __del__): no new
        # threads.  The child outlives us, and init reaps it.
        pass


def _wait_without_reaping(pid):
    """Block until pid exits, leaving it a zombie; False if it is gone."""
    while True:
        try:
            res = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            return False  # reaped elsewhere
        except InterruptedError:
            continue
        # macOS reports stopped children to WEXITED: consume the stop and
        # go on waiting for the real exit.
        if res is not None and res.si_code == getattr(os, 'CLD_STOPPED', None):
            os.waitid(os.P_PID, pid, os.WSTOPPED | os.WNOHANG)
            continue
        return True


def _reap_now(pid):
    """Reap pid, which has exited; its return code, or None."""
    try:
        _, status = os.waitpid(pid, 0)
    except ChildProcessError:
        return None
    return _exit_code(status)


_STOCK_CAN_USE_PIDFD = getattr(unix_events, 'can_use_pidfd', None)


def _stock_can_use_pidfd():
    # Asked only when someone replaced asyncio's probe (tests force the
    # threaded watcher that way): unreplaced, it answers what USE_PIDFD's
    # probe at import did, and calling it would open a pidfd per loop.
    can_use = getattr(unix_events, 'can_use_pidfd', None)
    if can_use is None or can_use is _STOCK_CAN_USE_PIDFD:
        return True
    return can_use()


class ChildExitWatcher:
    """Calls callback(pid, returncode, *args) on the loop when pid exits.

    returncode is the exit code as subprocess reports it (negative: killed
    by that signal), or None when the child had already been reaped by
    someone else, so its status is lost to us.  The callback runs as a loop
    callback in both cases.
    """

    def __init__(self, loop):
        self._loop = loop
        # pid -> its pidfd, for the children watched through the loop
        self._pidfds = {}
        # pid -> its waiter thread (the names of asyncio's threaded watcher,
        # which tests of the pid's lifetime look at)
        self._threads = {}
        # Decided once per loop, as the stock loop does.
        self._pidfd_allowed = _stock_can_use_pidfd()

    def watch(self, pid, callback, *args, now=False):
        """Start watching the child pid (which must be our unreaped child).

        now: the child may have exited already; if it has, reap it at once
        instead of at the pidfd's report (a report that could come after a
        SIGCHLD handler reaping every child, asyncio's FastChildWatcher,
        took the status).  The callback still runs only from here on.
        """
        # The pidfd path is inline (one frame per child); False from it
        # means the thread must do it instead.
        if USE_PIDFD and self._pidfd_allowed:
            try:
                # pidfds are close-on-exec: no other child inherits one.
                pidfd = os.pidfd_open(pid)
            except ProcessLookupError:
                # Already reaped elsewhere; the pid no longer names our child.
                self._loop.call_soon(callback, pid, None, *args)
                return
            except OSError:
                # Out of fds, typically: the thread needs none.
                pidfd = None
            if pidfd is not None:
                try:
                    self._loop._add_reader(pidfd, self._pidfd_readable,
                                           pid, pidfd, callback, args)
                except Exception:
                    # Whatever the poller refused, the child must still be
                    # reaped.
                    os.close(pidfd)
                else:
                    self._pidfds[pid] = pidfd
                    if now:
                        self._pidfd_readable(pid, pidfd, callback, args)
                    return
        self._watch_in_thread(pid, callback, args)

    def _pidfd_readable(self, pid, pidfd, callback, args):
        # One frame for the whole exit (this runs once per child): reap,
        # stop watching, log, tell.
        try:
            waited, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            returncode = None
        except BaseException:
            # Whatever else waitpid() raised (reported by the loop), the
            # pidfd must not leak nor stay watched: it would fire forever.
            self._stop_watching_pidfd(pid)
            raise
        else:
            if not waited:
                # Not exited yet (the check at watch(now=True)), or a
                # spurious report: a pidfd turns readable only once the
                # child exited.  Keep watching.
                return
            try:
                returncode = os.waitstatus_to_exitcode(status)
            except ValueError:
                # A status it does not understand: reported as is, as
                # asyncio's unix_events.waitstatus_to_exitcode does.
                returncode = status
            if self._loop._debug:
                self._log_exit(pid, returncode)
        del self._pidfds[pid]
        self._loop._remove_reader(pidfd)
        os.close(pidfd)
        callback(pid, returncode, *args)

    def _log_exit(self, pid, returncode):
        # The stock loop's default watcher (ThreadedChildWatcher) logs this.
        if self._loop.get_debug():
            logger.debug('process %s exited with returncode %s',
                         pid, returncode)

    def _stop_watching_pidfd(self, pid):
        pidfd = self._pidfds.pop(pid)
        self._loop._remove_reader(pidfd)
        os.close(pidfd)

    def _watch_in_thread(self, pid, callback, args):
        thread = threading.Thread(target=self._wait_in_thread,
                                  name=f'ferroloop-waitpid-{pid}',
                                  args=(pid, callback, args), daemon=True)
        self._threads[pid] = thread
        thread.start()

    def _wait_in_thread(self, pid, callback, args):
        try:
            if hasattr(os, 'waitid') and sys.platform != 'win32':
                _wait_without_reaping(pid)
                if self._notify(self._reap_and_notify, pid, callback, args):
                    return
                # No loop to reap it in: reap here so no zombie is left.
                _reap_now(pid)
                return
            returncode = _wait_blocking(pid)
            if returncode is not None:
                self._log_exit(pid, returncode)
            self._notify(callback, pid, returncode, *args)
        finally:
            self._threads.pop(pid, None)

    def _notify(self, func, pid, *args):
        """func(pid, *args) in the loop thread; False if the loop is closed."""
        loop = self._loop
        try:
            if not loop.is_closed():
                loop.call_soon_threadsafe(func, pid, *args)
                return True
        except RuntimeError:
            if not loop.is_closed():
                raise
        # Only the notification is lost.
        logger.warning("Loop %r that handles pid %r is closed", loop, pid)
        return False

    def _reap_and_notify(self, pid, callback, args):
        # In the loop thread: reaping and publishing the exit are one step.
        returncode = _reap_now(pid)
        if returncode is not None:
            self._log_exit(pid, returncode)
        callback(pid, returncode, *args)

    def close(self):
        """The loop closes: stop watching, but still reap every child.

        Waiter threads reap their own children and find the loop closed.
        """
        pids = list(self._pidfds)
        for pid in pids:
            self._stop_watching_pidfd(pid)
            _reap_in_background(pid, self._loop)
