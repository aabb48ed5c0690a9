"""The thread that starts a loop's children (runs subprocess.Popen for it).

_subprocess says why Popen runs off the loop thread.  One thread per loop
does it, and it stays while children are being started, then IDLE_S past
the last one, so that a burst of children costs one thread start, not one
each (a thread's start and exit were the largest part of the loop's own
CPU per child).  An idle loop keeps no thread: thread counts, and the
warning os.fork() gives in a threaded process (3.12+), see what they see on
the stock loop, which starts its children in the loop thread.

- loop.close() stops the thread and joins it; a Popen call in flight
  finishes first (its child is then killed and reaped, as the loop it was
  for is closed).
- os.fork(): the thread does not survive in the child process, whose first
  start makes a thread of its own, with a new lock and channel (the
  parent's lock may have been held at the fork).

Jobs travel through a native channel (_ferroloop.SpawnChannel, see
src/spawn_channel.rs) that times both GIL hand-offs for when the other
thread does not want the GIL: the loop tells the thread of new jobs as it
blocks in its poll, and the thread wakes the loop once a batch is done,
having released the GIL.  The thread takes every queued job at once.
"""

import os
import threading

from ._ferroloop import _spawn_channel

# How long the thread waits for the next child before it exits.
IDLE_S = 0.1

# Counts the os.fork()s this process descends from: a spawner made before
# one finds a different count after it.  Cheaper than comparing
# os.getpid() at every submit (a system call per child).
_forks = 0


def _after_fork_in_child():
    global _forks
    _forks += 1


if hasattr(os, 'register_at_fork'):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Spawner:
    """Runs a loop's jobs, one at a time and in order, in a thread of its
    own."""

    def __init__(self, loop):
        self._loop = loop
        self._reset()

    def _reset(self, channel=True):
        self._forks = _forks
        self._lock = threading.Lock()
        # The loop's current channel (a new one replaces the parent's after
        # a fork); none is made for a closed loop.
        self._jobs = _spawn_channel(self._loop) if channel else None
        # The thread taking jobs, if any (guarded by _lock)
        self._thread = None
        # Every thread started and not joined yet (an idle thread that has
        # given up its place may still be winding down)
        self._threads = []

    def submit(self, job):
        """Run job() in the thread; job must not raise."""
        if self._forks != _forks:
            self._reset()
        with self._lock:
            if self._thread is None:
                thread = threading.Thread(target=self._serve,
                                          name='ferroloop-spawner',
                                          daemon=True)
                # Raises (no thread, nothing queued) when no thread can
                # start; the caller reports it as Popen's failure would be.
                thread.start()
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(thread)
                self._thread = thread
            # The loop tells the thread as it next blocks in its poll (the
            # GIL then free); a loop that is not running, at once.
            self._jobs.put(job, not self._loop.is_running())

    def _serve(self):
        channel = self._jobs
        while True:
            # Wakes the loop for the last batch's deliveries first.
            jobs = channel.wait(IDLE_S)
            if jobs is None:
                return  # closed
            if not jobs:
                with self._lock:
                    if channel.pending():
                        continue  # submitted as the wait ran out
                    if self._thread is threading.current_thread():
                        self._thread = None
                    return
            for job in jobs:
                job()
            jobs = job = None  # not kept alive until the next batch

    def close(self):
        """Stop the thread after the jobs already submitted; join it."""
        if self._forks != _forks:
            self._reset(channel=False)  # the parent's thread; none runs here
            return
        with self._lock:
            self._thread = None
            # The thread runs what is queued, then returns.
            self._jobs.close()
            threads, self._threads = self._threads, []
        current = threading.current_thread()
        for thread in threads:
            if thread is not current:  # a loop closed from a job's __del__
                thread.join()
