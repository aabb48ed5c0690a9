"""Subprocesses: loop.subprocess_exec and loop.subprocess_shell.

asyncio.create_subprocess_exec/shell call these.  The argument checks are
base_events' (same order, same ValueErrors; wrong argument types reach
subprocess.Popen, whose TypeErrors the stock loop raises too).

The transport is asyncio's own unix subprocess transport: it starts the
child with subprocess.Popen (close_fds=True by default, so the loop's fds do
not leak into it), connects the child's pipes with connect_read_pipe /
connect_write_pipe (so native pipe transports, once built, are used without
a change here), and reports pipe data, pipe closes and the exit to the
protocol in base_subprocess's order: connection_lost comes only once the
child has exited AND every pipe is closed, so output written just before
exiting is never lost.

What differs from the stock unix loop:

- Who notices the exit: the loop's own ChildExitWatcher (pidfd, or a waiter
  thread), not the policy's child watcher (see _child_watcher).
- Where subprocess.Popen runs: in a thread of the loop's (_spawner), while
  the loop goes on.  Popen blocks until the child has exec'd (it reads the
  exec-error pipe, and runs preexec_fn in the child before that); the loop
  thread never waits for it.  Popen's exception (FileNotFoundError, ...) is
  raised from subprocess_exec/subprocess_shell as in the stock loop, and
  the transport is made from the finished Popen object, so everything after
  (pipes, callbacks and their order) is the stock transport's.  The stock
  loop's Popen call cannot be interrupted: a cancellation that arrives
  while the child is being started waits for it to be started, then kills
  and reaps it before propagating, as a cancellation during the pipes'
  connection does.
"""

import asyncio
import contextvars
import subprocess

from asyncio import base_events
from asyncio import unix_events
from asyncio.log import logger

from ._child_watcher import ChildExitWatcher
from ._ferroloop import _deliver_spawned
from ._spawner import Spawner


# 3.14 dropped the policy-level child watchers (feature-detected here): its
# loop reaps the child and publishes the exit (transport._process_exited) in
# one step, and the transport's send_signal() trusts a None returncode to
# mean the pid is still ours.  Before, the exit was published an iteration
# after the reaping.
_PUBLISH_EXIT_WHEN_REAPED = not hasattr(unix_events, 'AbstractChildWatcher')


class _UnixSubprocessTransport(unix_events._UnixSubprocessTransport):
    """asyncio's unix subprocess transport, given a child already started.

    Its pipes are ferroloop's pipe transports (chosen in _pipe_transport).
    Same name as the stock class: reprs read the same.
    """

    def _start(self, args, shell, stdin, stdout, stderr, bufsize, *,
               started):
        self._proc = started


# The one place that names the transport class.
SubprocessTransport = _UnixSubprocessTransport


class _ChildStart:
    """One child being started: Popen runs in the loop's spawner thread
    (__call__); back on the loop thread, _deliver makes the transport (which
    starts connecting the pipes) and watches for the exit.  The coroutine
    awaits one future for all of it: Popen's exception, or the pipes'
    connection (the transport's waiter), so it wakes once per child."""

    __slots__ = ('_loop', '_popen_args', '_popen_kwargs', '_transport_args',
                 '_context', 'waiter', 'delivered', 'transport')

    def __init__(self, loop, popen_args, popen_kwargs, transport_args):
        self._loop = loop
        self._popen_args = popen_args
        self._popen_kwargs = popen_kwargs
        # (protocol, args, shell, stdin, stdout, stderr, bufsize, extra)
        self._transport_args = transport_args
        # The caller's: _deliver runs in it, so the transport's task (and
        # through it the protocol's callbacks) and the exit watch see the
        # context they see on the stock loop, which makes them in the
        # caller's coroutine.
        self._context = contextvars.copy_context()
        # Popen's exception, or the transport's waiter (set when the pipes
        # are connected), unless cancelled; a cancelled start that is not
        # delivered yet awaits a fresh one.
        self.waiter = loop.create_future()
        self.delivered = False
        # The transport, once Popen succeeded
        self.transport = None

    def __call__(self):
        # In the spawner thread.
        proc, exc = _popen(self._popen_args, self._popen_kwargs)
        self._popen_args = self._popen_kwargs = None
        try:
            # call_soon_threadsafe, with the loop woken once the spawner's
            # batch is done and the GIL released (see _spawner).
            _deliver_spawned(self._loop, self._deliver, proc, exc,
                             context=self._context)
        except RuntimeError:
            # The loop closed meanwhile: nobody will wait for this child.
            if proc is not None:
                _kill(proc)
                proc.wait()

    def _deliver(self, proc, exc):
        # One frame per start on the loop thread (callgrind counts every
        # Python call here, and a spawn is only a few hundred of them).
        loop = self._loop
        waiter = self.waiter
        try:
            if exc is None:
                protocol, args, shell, stdin, stdout, stderr, bufsize, \
                    extra = self._transport_args
                try:
                    # Starts a task connecting the child's pipes, which
                    # resolves waiter (unless it was cancelled).
                    self.transport = SubprocessTransport(
                        loop, protocol, args, shell, stdin, stdout, stderr,
                        bufsize, waiter=waiter, extra=extra, started=proc)
                except BaseException as error:
                    # Nothing to tell of the child: kill it, reap it below.
                    _kill(proc)
                    exc = error
                # Watch for the exit now, in this callback.  With a signal
                # handler on the loop, also reap a child that has exited
                # already: a SIGCHLD handler that reaps every child
                # (asyncio's FastChildWatcher), held until now, must not get
                # to it first.  Without one, the pidfd's report will do.
                watcher = loop._child_exit_watcher
                if watcher is None:
                    watcher = loop._child_exits()
                watcher.watch(proc.pid, self._exited,
                              now=bool(loop._signal_handlers))
            self._transport_args = self._context = None
            self.delivered = True
            if exc is not None and not waiter.done():
                # else: cancelled, the coroutine looks at self.delivered
                waiter.set_exception(exc)
        finally:
            # loop._release_sigchld(), inline
            loop._children_starting -= 1
            if loop._sigchld_held and not loop._children_starting:
                loop._deliver_held_sigchld()

    def _exited(self, pid, returncode):
        transport = self.transport
        if transport is None:
            return  # the transport could not be made: nobody to tell
        if returncode is None:
            returncode = _returncode_read_elsewhere(pid, transport)
        if _PUBLISH_EXIT_WHEN_REAPED:
            transport._process_exited(returncode)
            return
        # Skip one iteration, as the stock loop does: pipe data that is
        # already readable is delivered before process_exited.
        loop = self._loop
        loop.call_soon(loop.call_soon, transport._process_exited, returncode)


def _popen(popen_args, popen_kwargs):
    """(Popen(*popen_args, **popen_kwargs), None), or (None, its exception).

    A frame of its own: the exception's traceback holds no _ChildStart.
    """
    try:
        return subprocess.Popen(*popen_args, **popen_kwargs), None
    except BaseException as exc:  # handed to the awaiting coroutine
        return None, exc


def _kill(proc):
    """Kill a child that nobody awaits; its pipes are closed."""
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    try:
        proc.kill()
    except ProcessLookupError:
        pass


def _returncode_read_elsewhere(pid, transport):
    """The return code to report for a child whose status we did not get."""
    proc = transport._proc
    if proc is not None and proc.returncode is not None:
        # Collected through the Popen object itself (transport.close() polls
        # it; users call get_extra_info('subprocess').wait()): it knows the
        # real code, where the stock loop reports 255.
        return proc.returncode
    logger.warning(
        "child process pid %d exit status already read: "
        " will report returncode 255", pid)
    return 255


class SubprocessMixin:
    """Placed before LifecycleMixin: close() extends its close()."""

    # Made on first use: loops that never start a process create nothing.
    _child_exit_watcher = None
    _child_spawner = None

    async def subprocess_shell(self, protocol_factory, cmd, *,
                               stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE,
                               universal_newlines=False,
                               shell=True, bufsize=0,
                               encoding=None, errors=None, text=None,
                               **kwargs):
        """Run cmd through the shell; return (transport, protocol)."""
        if not isinstance(cmd, (bytes, str)):
            raise ValueError("cmd must be a string")
        if universal_newlines:
            raise ValueError("universal_newlines must be False")
        if not shell:
            raise ValueError("shell must be True")
        if bufsize != 0:
            raise ValueError("bufsize must be 0")
        if text:
            raise ValueError("text must be False")
        if encoding is not None:
            raise ValueError("encoding must be None")
        if errors is not None:
            raise ValueError("errors must be None")

        protocol = protocol_factory()
        debug_log = None
        if self._debug:
            # Not the arguments: they may hold secrets, or be huge.
            debug_log = 'run shell command %r' % cmd
            self._log_subprocess(debug_log, stdin, stdout, stderr)
        transport = await self._make_subprocess_transport(
            protocol, cmd, True, stdin, stdout, stderr, bufsize, **kwargs)
        if self._debug and debug_log is not None:
            logger.info('%s: %r', debug_log, transport)
        return transport, protocol

    async def subprocess_exec(self, protocol_factory, program, *args,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=False,
                              shell=False, bufsize=0,
                              encoding=None, errors=None, text=None,
                              **kwargs):
        """Run program with args; return (transport, protocol)."""
        if universal_newlines:
            raise ValueError("universal_newlines must be False")
        if shell:
            raise ValueError("shell must be False")
        if bufsize != 0:
            raise ValueError("bufsize must be 0")
        if text:
            raise ValueError("text must be False")
        if encoding is not None:
            raise ValueError("encoding must be None")
        if errors is not None:
            raise ValueError("errors must be None")

        popen_args = (program,) + args
        protocol = protocol_factory()
        debug_log = None
        if self._debug:
            # Not the arguments: they may hold secrets, or be huge.
            debug_log = f'execute program {program!r}'
            self._log_subprocess(debug_log, stdin, stdout, stderr)
        transport = await self._make_subprocess_transport(
            protocol, popen_args, False, stdin, stdout, stderr,
            bufsize, **kwargs)
        if self._debug and debug_log is not None:
            logger.info('%s: %r', debug_log, transport)
        return transport, protocol

    def _log_subprocess(self, msg, stdin, stdout, stderr):
        info = [msg]
        if stdin is not None:
            info.append(f'stdin={base_events._format_pipe(stdin)}')
        if stdout is not None and stderr == subprocess.STDOUT:
            info.append(f'stdout=stderr={base_events._format_pipe(stdout)}')
        else:
            if stdout is not None:
                info.append(f'stdout={base_events._format_pipe(stdout)}')
            if stderr is not None:
                info.append(f'stderr={base_events._format_pipe(stderr)}')
        logger.debug(' '.join(info))

    async def _make_subprocess_transport(self, protocol, args, shell,
                                         stdin, stdout, stderr, bufsize,
                                         extra=None, **kwargs):
        # The stock transport's Popen call, made in the spawner thread; a
        # Popen failure raises here, with no child left.
        start = _ChildStart(
            self, (args,),
            dict(shell=shell, stdin=stdin, stdout=stdout, stderr=stderr,
                 universal_newlines=False, bufsize=bufsize, **kwargs),
            (protocol, args, shell, stdin, stdout, stderr, bufsize, extra))
        self._children_starting += 1  # self._hold_sigchld(), inline
        try:
            spawner = self._child_spawner
            if spawner is None:
                spawner = self._spawner()
            spawner.submit(start)
        except BaseException:
            self._release_sigchld()
            raise
        # A cancellation while the child is being started waits for it,
        # to kill and reap it below (raised at once if Popen failed).
        cancelled = error = None
        while True:
            try:
                await start.waiter
            except asyncio.CancelledError as exc:
                cancelled = exc
                if not start.delivered:
                    # Not started yet (the waiter was cancelled): wait on.
                    start.waiter = self.create_future()
                    continue
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                # Popen's exception, or the pipes' connection failed
                error = exc
            break
        transport = start.transport
        if cancelled is None and error is None:
            return transport
        if transport is not None:
            # Pipes failed to connect, or we were cancelled: kill the child
            # and wait for it, so it is reaped before the error propagates.
            transport.close()
            await transport._wait()
        if cancelled is not None:
            raise cancelled
        raise error

    def _spawner(self):
        if self._child_spawner is None:
            self._child_spawner = Spawner(self)
        return self._child_spawner

    def _child_exits(self):
        if self._child_exit_watcher is None:
            self._child_exit_watcher = ChildExitWatcher(self)
        return self._child_exit_watcher

    @property
    def _watcher(self):
        # The stock 3.14 loop's name for its child watcher.
        return self._child_exits()

    def close(self):
        """Close the loop; children still running are reaped in the
        background (without notifying their transports)."""
        super().close()
        if self._child_spawner is not None:
            self._child_spawner.close()
        if self._child_exit_watcher is not None:
            self._child_exit_watcher.close()
