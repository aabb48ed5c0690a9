"""Async generators: track the ones iterated on this loop, close them at shutdown.

run_forever installs the two hooks with sys.set_asyncgen_hooks().
"""

import warnings
import weakref

from asyncio import tasks


class AsyncGensMixin:
    _asyncgens_shutdown_called = False

    def _init_asyncgens(self):
        # Weak: an async generator that is simply dropped must not be kept
        # alive by the loop; its finalizer hook schedules its aclose().
        self._asyncgens = weakref.WeakSet()

    def _asyncgen_finalizer_hook(self, agen):
        self._asyncgens.discard(agen)
        if not self.is_closed():
            # Garbage collection may run this hook from any thread.
            self.call_soon_threadsafe(self.create_task, agen.aclose())

    def _asyncgen_firstiter_hook(self, agen):
        if self._asyncgens_shutdown_called:
            warnings.warn(
                f"asynchronous generator {agen!r} was scheduled after "
                f"loop.shutdown_asyncgens() call",
                ResourceWarning, source=self)
        self._asyncgens.add(agen)

    async def shutdown_asyncgens(self):
        """Shutdown all active asynchronous generators."""
        self._asyncgens_shutdown_called = True

        if not len(self._asyncgens):
            return

        closing_agens = list(self._asyncgens)
        self._asyncgens.clear()

        results = await tasks.gather(
            *[agen.aclose() for agen in closing_agens],
            return_exceptions=True)

        for result, agen in zip(results, closing_agens):
            if isinstance(result, Exception):
                self.call_exception_handler({
                    'message': f'an error occurred during closing of '
                               f'asynchronous generator {agen!r}',
                    'exception': result,
                    'asyncgen': agen,
                })
