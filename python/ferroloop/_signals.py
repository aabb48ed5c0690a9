"""Unix signal handlers: loop.add_signal_handler / remove_signal_handler.

As in asyncio's unix loop: the Python-level handler for the signal is a
no-op, and signal.set_wakeup_fd() makes CPython's C handler write the signal
number into a socket pair.  The loop watches the other end with add_reader,
so a signal wakes a sleeping poll, and the user's callback then runs as an
ordinary loop callback (never inside the signal handler).
"""

import errno
import signal
import socket
import sys
import threading
import warnings

from asyncio import events
from asyncio.log import logger

from ._coroutine_checks import is_coroutine_or_function


def _ignore_signal(signum, frame):
    # Installed as the Python-level handler: the wakeup fd does the work.
    pass


class SignalsMixin:
    # The socket pair carrying signal numbers: (read end, write end), made on
    # first use so loops that never handle signals do not hold two fds.
    _signal_wakeup_socks = None
    # Children being started in a thread (see _subprocess): until each is
    # watched, a SIGCHLD handler waits, as it would on the stock loop, which
    # runs no callback while its Popen call starts a child.  A handler that
    # reaps every child (asyncio's FastChildWatcher) would take the status.
    _children_starting = 0
    _sigchld_held = False

    def _init_signals(self):
        # signal number -> asyncio.Handle of the user's callback
        self._signal_handlers = {}

    def _check_signal(self, sig):
        if not isinstance(sig, int):
            raise TypeError(f'sig must be an int, not {sig!r}')
        if sig not in signal.valid_signals():
            raise ValueError(f'invalid signal number {sig}')

    def add_signal_handler(self, sig, callback, *args):
        """Run callback(*args) on the loop whenever signal sig arrives.

        Raise ValueError for an invalid signal number, RuntimeError if the
        signal cannot be caught or this is not the main thread.
        """
        if is_coroutine_or_function(callback):
            raise TypeError("coroutines cannot be used "
                            "with add_signal_handler()")
        self._check_signal(sig)
        self._check_closed()

        wakeup_sock = self._signal_wakeup_write_sock()
        try:
            # Raises ValueError outside the main thread: calling it first
            # keeps a loop in another thread from installing handlers.
            signal.set_wakeup_fd(wakeup_sock.fileno())
        except (ValueError, OSError) as exc:
            if not self._signal_handlers:
                self._close_signal_wakeup_socks()
            raise RuntimeError(str(exc))

        self._signal_handlers[sig] = events.Handle(callback, args, self, None)
        try:
            signal.signal(sig, _ignore_signal)
            # SA_RESTART: fewer EINTRs in the rest of the program.
            signal.siginterrupt(sig, False)
        except OSError as exc:
            del self._signal_handlers[sig]
            if not self._signal_handlers:
                try:
                    signal.set_wakeup_fd(-1)
                except (ValueError, OSError) as nexc:
                    logger.info('set_wakeup_fd(-1) failed: %s', nexc)
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f'sig {sig} cannot be caught')
            raise

    def remove_signal_handler(self, sig):
        """Remove the handler for signal sig; return whether there was one."""
        self._check_signal(sig)
        try:
            del self._signal_handlers[sig]
        except KeyError:
            return False

        if sig == signal.SIGINT:
            default_handler = signal.default_int_handler
        else:
            default_handler = signal.SIG_DFL
        try:
            signal.signal(sig, default_handler)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f'sig {sig} cannot be caught')
            raise

        if not self._signal_handlers:
            try:
                signal.set_wakeup_fd(-1)
            except (ValueError, OSError) as exc:
                logger.info('set_wakeup_fd(-1) failed: %s', exc)
        return True

    def _hold_sigchld(self):
        self._children_starting += 1

    def _release_sigchld(self):
        self._children_starting -= 1
        if not self._children_starting and self._sigchld_held:
            self._deliver_held_sigchld()

    def _deliver_held_sigchld(self):
        self._sigchld_held = False
        self._handle_signal(signal.SIGCHLD)

    def _handle_signal(self, sig):
        if sig == signal.SIGCHLD and self._children_starting:
            self._sigchld_held = True
            return
        handle = self._signal_handlers.get(sig)
        if handle is None:
            return  # removed after the signal arrived
        if handle._cancelled:
            self.remove_signal_handler(sig)
        else:
            self.call_soon(self._run_signal_handle, handle)

    def _run_signal_handle(self, handle):
        # Handle._run routes an exception from the callback to the
        # exception handler, naming the signal handler's Handle.
        if not handle._cancelled:
            handle._run()

    # -- waking a sleeping poll on any signal ----------------------------

    def _install_signal_wakeup(self):
        """While the loop runs in the main thread, make every signal wake its poll.

        Python runs a signal's handler (Ctrl-C's KeyboardInterrupt) only when
        the interpreter next checks; a signal arriving after the last
        callback but just before a long poll would go unnoticed until the
        poll ends.  With the loop's wakeup pipe as signal.set_wakeup_fd, the
        poll returns and the handlers run at once.  A wakeup fd someone else
        set (add_signal_handler's socket pair, the application's) is left in
        place.  Returns the fd installed, or None.
        """
        if threading.get_ident() != threading.main_thread().ident:
            return None  # set_wakeup_fd() only works in the main thread
        fd = self._signal_wakeup_fd()
        try:
            previous = signal.set_wakeup_fd(fd)
        except (ValueError, OSError):
            return None
        if previous != -1:
            signal.set_wakeup_fd(previous)
            return None
        return fd

    def _restore_signal_wakeup(self, fd):
        if fd is None:
            return
        try:
            current = signal.set_wakeup_fd(-1)
            if current != fd:
                # Replaced while running (add_signal_handler): keep that one.
                signal.set_wakeup_fd(current)
        except (ValueError, OSError) as exc:
            logger.info('set_wakeup_fd(-1) failed: %s', exc)

    # -- the wakeup socket pair -----------------------------------------

    def _signal_wakeup_write_sock(self):
        if self._signal_wakeup_socks is None:
            read_sock, write_sock = socket.socketpair()
            # set_wakeup_fd() requires a non-blocking fd; a full buffer then
            # drops signal numbers instead of blocking the C handler.
            read_sock.setblocking(False)
            write_sock.setblocking(False)
            self._signal_wakeup_socks = (read_sock, write_sock)
            self.add_reader(read_sock.fileno(), self._read_signal_numbers)
        return self._signal_wakeup_socks[1]

    def _read_signal_numbers(self):
        read_sock = self._signal_wakeup_socks[0]
        while True:
            try:
                data = read_sock.recv(4096)
            except InterruptedError:
                continue
            except BlockingIOError:
                return
            if not data:
                return
            for signum in data:
                if signum:
                    self._handle_signal(signum)

    def _close_signal_wakeup_socks(self):
        socks = self._signal_wakeup_socks
        if socks is None:
            return
        self._signal_wakeup_socks = None
        if not self.is_closed():
            self.remove_reader(socks[0].fileno())
        for sock in socks:
            sock.close()

    def _close_signal_handling(self):
        # Part of close(): restore the default handlers, unless the
        # interpreter is already finalizing and the signal module may be
        # half torn down.
        if not sys.is_finalizing():
            for sig in list(self._signal_handlers):
                self.remove_signal_handler(sig)
        elif self._signal_handlers:
            warnings.warn(f"Closing the loop {self!r} "
                          f"on interpreter shutdown "
                          f"stage, skipping signal handlers removal",
                          ResourceWarning,
                          source=self)
            self._signal_handlers.clear()
        self._close_signal_wakeup_socks()
