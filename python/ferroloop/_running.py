"""Running the loop: run_forever, run_until_complete and debug-mode tracking.

The iterations themselves (poll, timers, ready callbacks) run natively in
``LoopCore._run_forever_native``.  What stays here is the per-run setup that
asyncio does in Python around its ``_run_once`` loop: marking the thread as
running this loop, the async-generator hooks, and coroutine origin tracking.
"""

import sys
import threading

from asyncio import constants
from asyncio import events
from asyncio import futures
from asyncio import tasks


def _stop_loop_when_done(fut):
    # A future that ended in SystemExit/KeyboardInterrupt has already
    # propagated out of run_forever(), so there is no running loop to stop
    # (bpo-22429).
    if not fut.cancelled():
        exc = fut.exception()
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            return
    futures._get_loop(fut).stop()


class RunningMixin:
    _coroutine_origin_tracking_enabled = False
    _coroutine_origin_tracking_saved_depth = None
    _old_agen_hooks = None
    _saved_signal_wakeup_fd = None

    def _check_running(self):
        if self.is_running():
            raise RuntimeError('This event loop is already running')
        if events._get_running_loop() is not None:
            raise RuntimeError(
                'Cannot run the event loop while another loop is running')

    # The stock loop's split of run_forever (3.13) into a setup and a
    # cleanup step, so that subclasses driving the iterations themselves
    # (GUI integrations) or extending the run can reuse them.  Present on
    # every version: on older ones nothing calls them but run_forever.
    def _run_forever_setup(self):
        """Make this the running loop of the current thread."""
        self._check_closed()
        self._check_running()
        self._set_coroutine_origin_tracking(self._debug)
        self._old_agen_hooks = sys.get_asyncgen_hooks()
        self._saved_signal_wakeup_fd = self._install_signal_wakeup()
        self._thread_id = threading.get_ident()
        sys.set_asyncgen_hooks(firstiter=self._asyncgen_firstiter_hook,
                               finalizer=self._asyncgen_finalizer_hook)
        events._set_running_loop(self)

    def _run_forever_cleanup(self):
        """Undo _run_forever_setup (whatever ended the run)."""
        # A stop() requested during this run must not leak into the next.
        self._stopping = False
        self._thread_id = None
        events._set_running_loop(None)
        self._set_coroutine_origin_tracking(False)
        if self._old_agen_hooks is not None:
            sys.set_asyncgen_hooks(*self._old_agen_hooks)
            self._old_agen_hooks = None
        wakeup_fd, self._saved_signal_wakeup_fd = (
            self._saved_signal_wakeup_fd, None)
        self._restore_signal_wakeup(wakeup_fd)

    def run_forever(self):
        """Run until stop() is called."""
        self._run_forever_setup()
        try:
            self._run_forever_native()
        finally:
            self._run_forever_cleanup()

    def run_until_complete(self, future):
        """Run until the Future is done and return its result (or raise).

        A coroutine is wrapped in a Task first.
        """
        self._check_closed()
        self._check_running()

        new_task = not futures.isfuture(future)
        future = tasks.ensure_future(future, loop=self)
        if new_task:
            # If the task does not finish, the caller gets a RuntimeError
            # below, so the "Task was destroyed but it is pending!" log
            # would only be noise.
            future._log_destroy_pending = False

        future.add_done_callback(_stop_loop_when_done)
        try:
            self.run_forever()
        except:
            if new_task and future.done() and not future.cancelled():
                # The coroutine raised a BaseException that is propagating
                # now; mark the task's exception as retrieved, since the
                # caller never sees the task and cannot retrieve it.
                future.exception()
            raise
        finally:
            future.remove_done_callback(_stop_loop_when_done)
        if not future.done():
            raise RuntimeError('Event loop stopped before Future completed.')

        return future.result()

    def set_debug(self, enabled):
        super().set_debug(enabled)
        # Turning debug on or off while running must also switch coroutine
        # origin tracking, which is per-thread: do it from the loop's thread.
        if self.is_running():
            self.call_soon_threadsafe(
                self._set_coroutine_origin_tracking, enabled)

    def _set_coroutine_origin_tracking(self, enabled):
        if bool(enabled) == bool(self._coroutine_origin_tracking_enabled):
            return

        if enabled:
            self._coroutine_origin_tracking_saved_depth = (
                sys.get_coroutine_origin_tracking_depth())
            sys.set_coroutine_origin_tracking_depth(
                constants.DEBUG_STACK_DEPTH)
        else:
            sys.set_coroutine_origin_tracking_depth(
                self._coroutine_origin_tracking_saved_depth)

        self._coroutine_origin_tracking_enabled = enabled
