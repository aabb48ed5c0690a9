"""Closing the loop, the unclosed-loop warning, and the loop's repr."""

import warnings

from asyncio.log import logger


class LifecycleMixin:

    def close(self):
        """Close the event loop.

        Drops pending callbacks, shuts the default executor down without
        waiting for it, and restores the signal handlers this loop installed.
        The loop must not be running.
        """
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self._closed:
            return
        if self._debug:
            # Logged before closing so the repr still says closed=False, as
            # asyncio's does.
            logger.debug("Close %r", self)
        self._close_native()
        self._close_default_executor()
        self._close_signal_handling()

    # The default argument keeps warnings.warn reachable while the
    # interpreter is tearing modules down.
    def __del__(self, _warn=warnings.warn):
        if not self.is_closed():
            _warn(f"unclosed event loop {self!r}", ResourceWarning, source=self)
            if not self.is_running():
                self.close()

    def __repr__(self):
        return (
            f'<{self.__class__.__name__} running={self.is_running()} '
            f'closed={self.is_closed()} debug={self.get_debug()}>'
        )
