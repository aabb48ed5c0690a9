"""Futures and tasks: the loop creates CPython's own (C-accelerated) ones.

create_task() follows the running Python's own BaseEventLoop.create_task,
whose contract changed from version to version:

- 3.11, 3.12: create_task(coro, *, name=None, context=None); a task factory
  is called as factory(loop, coro) (or with context= when one is given) and
  the name is applied to its result afterwards;
- 3.13: create_task(coro, *, name=None, context=None, **kwargs); extra
  keywords (eager_start=...) go to the factory or to Task(), the name is
  still applied afterwards with set_name();
- 3.14+: create_task(coro, **kwargs); every keyword, name included, goes to
  the factory or to Task() and the factory's result is returned untouched.

Which of these applies is read from the stock loop's create_task signature
(a feature check, so a 3.12 or a patched build gets what its asyncio does).
"""

import inspect

from asyncio import base_events
from asyncio import tasks


def _stock_create_task_style():
    params = inspect.signature(base_events.BaseEventLoop.create_task).parameters
    takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD
                       for p in params.values())
    if takes_kwargs and 'name' not in params:
        return 'forward'          # 3.14+
    if takes_kwargs:
        return 'kwargs'           # 3.13
    return 'name_context'         # 3.11, 3.12


_STYLE = _stock_create_task_style()

# 3.11 and 3.12 name a factory's task with tasks._set_task_name(), which
# skips name=None and task-likes without set_name(); 3.13 removed it along
# with that create_task style.  Fall back to set_name() should a build have
# the old style without the helper.
_set_task_name = getattr(tasks, '_set_task_name', None)


def _name_factory_task(task, name):
    if _set_task_name is not None:
        _set_task_name(task, name)
    else:
        task.set_name(name)


def _trim_source_traceback(task):
    """Debug mode: point the traceback at create_task()'s caller.

    The stock loop drops its create_task frame; here that frame is in this
    file too.
    """
    source_traceback = task._source_traceback
    while source_traceback and source_traceback[-1].filename == __file__:
        del source_traceback[-1]


# create_task() below calls tasks.Task directly (no helper frame, no keyword
# dict): it runs once per task, and gather() or TaskGroup create many.  A
# failed eager task's traceback can reach create_task's frame, so the task is
# not left in a local of that frame (gh-128552): the `del task` in `finally`.
class TasksMixin:
    """create_task and the task factory; create_future is native (LoopCore)."""

    _task_factory = None

    if _STYLE == 'forward':
        def create_task(self, coro, **kwargs):
            """Schedule (or, eagerly, start) a coroutine; return its Task."""
            self._check_closed()
            if self._task_factory is not None:
                return self._task_factory(self, coro, **kwargs)
            task = tasks.Task(coro, loop=self, **kwargs)
            if task._source_traceback:
                _trim_source_traceback(task)
            try:
                return task
            finally:
                del task

    elif _STYLE == 'kwargs':
        def create_task(self, coro, *, name=None, context=None, **kwargs):
            """Schedule (or, eagerly, start) a coroutine; return its Task."""
            self._check_closed()
            if self._task_factory is not None:
                if context is not None:
                    kwargs['context'] = context
                task = self._task_factory(self, coro, **kwargs)
                task.set_name(name)
                try:
                    return task
                finally:
                    del task    # gh-128552, as below
            task = tasks.Task(coro, loop=self, name=name, context=context,
                         **kwargs)
            if task._source_traceback:
                _trim_source_traceback(task)
            try:
                return task
            finally:
                del task

    else:
        def create_task(self, coro, *, name=None, context=None):
            """Schedule a coroutine object and return its Task."""
            self._check_closed()
            if self._task_factory is None:
                task = tasks.Task(coro, loop=self, name=name, context=context)
                if task._source_traceback:
                    _trim_source_traceback(task)
                return task
            if context is None:
                # Factories written before 3.11 take only (loop, coro).
                task = self._task_factory(self, coro)
            else:
                task = self._task_factory(self, coro, context=context)
            _name_factory_task(task, name)
            return task

    def set_task_factory(self, factory):
        """Set the factory used by create_task(); None restores the default.

        The factory is called as factory(loop, coro, **kwargs) with the
        keywords create_task() passes on in this Python version (see the
        module docstring), and returns a Future.
        """
        if factory is not None and not callable(factory):
            raise TypeError('task factory must be a callable or None')
        self._task_factory = factory

    def get_task_factory(self):
        """Return the task factory, or None if the default one is in use."""
        return self._task_factory
