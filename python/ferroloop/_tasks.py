"""Futures and tasks: the loop creates CPython's own (C-accelerated) ones."""

from asyncio import futures
from asyncio import tasks


class TasksMixin:
    _task_factory = None

    def create_future(self):
        """Create a Future object attached to the loop."""
        return futures.Future(loop=self)

    def create_task(self, coro, *, name=None, context=None):
        """Schedule a coroutine object and return its Task."""
        self._check_closed()
        if self._task_factory is None:
            task = tasks.Task(coro, loop=self, name=name, context=context)
            if task._source_traceback:
                # Point the debug traceback at the caller, not at this line.
                del task._source_traceback[-1]
        else:
            if context is None:
                # Factories written before 3.11 take only (loop, coro).
                task = self._task_factory(self, coro)
            else:
                task = self._task_factory(self, coro, context=context)
            tasks._set_task_name(task, name)
        return task

    def set_task_factory(self, factory):
        """Set the factory used by create_task(); None restores the default.

        A factory is called as factory(loop, coro) or, when a context is
        given, factory(loop, coro, context=context), and returns a Future.
        """
        if factory is not None and not callable(factory):
            raise TypeError('task factory must be a callable or None')
        self._task_factory = factory

    def get_task_factory(self):
        """Return the task factory, or None if the default one is in use."""
        return self._task_factory
