"""The default executor: run blocking functions in threads."""

import concurrent.futures
import threading
import warnings

from asyncio import coroutines
from asyncio import futures
from asyncio import timeouts

# 3.14 deprecated asyncio.iscoroutinefunction (calling it warns); the stock
# loop calls its private, silent twin wherever that exists.
_iscoroutinefunction = getattr(coroutines, '_iscoroutinefunction',
                               coroutines.iscoroutinefunction)


def _check_callable(func, method):
    # The debug-mode check asyncio applies to functions handed to the loop.
    if coroutines.iscoroutine(func) or _iscoroutinefunction(func):
        raise TypeError(f"coroutines cannot be used with {method}()")
    if not callable(func):
        raise TypeError(
            f'a callable object was expected by {method}(), got {func!r}')


class ExecutorMixin:
    _default_executor = None
    _executor_shutdown_called = False

    def _check_default_executor(self):
        if self._executor_shutdown_called:
            raise RuntimeError('Executor shutdown has been called')

    def run_in_executor(self, executor, func, *args):
        """Run func(*args) in executor (None: the default one); return a Future."""
        self._check_closed()
        if self._debug:
            _check_callable(func, 'run_in_executor')
        if executor is None:
            # Only the default executor is guarded against use after shutdown.
            self._check_default_executor()
            executor = self._default_executor
            if executor is None:
                executor = concurrent.futures.ThreadPoolExecutor(
                    thread_name_prefix='asyncio')
                self._default_executor = executor
        return futures.wrap_future(executor.submit(func, *args), loop=self)

    def set_default_executor(self, executor):
        if not isinstance(executor, concurrent.futures.ThreadPoolExecutor):
            raise TypeError('executor must be ThreadPoolExecutor instance')
        self._default_executor = executor

    async def shutdown_default_executor(self, timeout=None):
        """Shut the default executor down, waiting for its threads to finish.

        timeout (3.12+; accepted on 3.11 too) bounds the wait: past it, a
        RuntimeWarning is issued and the executor is shut down without
        waiting, as the stock loop does.
        """
        self._executor_shutdown_called = True
        if self._default_executor is None:
            return
        future = self.create_future()
        # executor.shutdown(wait=True) blocks: wait for it in a helper thread
        # so the loop keeps running meanwhile.
        thread = threading.Thread(target=self._shutdown_executor_in_thread,
                                  args=(future,))
        thread.start()
        try:
            async with timeouts.timeout(timeout):
                await future
        except TimeoutError:
            # The stock loop's wording, typo included: filters match on it.
            warnings.warn("The executor did not finishing joining "
                          f"its threads within {timeout} seconds.",
                          RuntimeWarning, stacklevel=2)
            self._default_executor.shutdown(wait=False)
        else:
            thread.join()

    def _shutdown_executor_in_thread(self, future):
        try:
            self._default_executor.shutdown(wait=True)
            if not self.is_closed():
                self.call_soon_threadsafe(
                    futures._set_result_unless_cancelled, future, None)
        except Exception as ex:
            if not self.is_closed() and not future.cancelled():
                self.call_soon_threadsafe(future.set_exception, ex)

    def _close_default_executor(self):
        # Part of close(): no waiting, and no new work for the default
        # executor afterwards.
        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is not None:
            self._default_executor = None
            executor.shutdown(wait=False)
