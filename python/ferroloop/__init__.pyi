# Type stubs for the ferroloop package.
import asyncio
import sys
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from typing_extensions import deprecated

from ._ferroloop import LoopCore

if sys.version_info >= (3, 14):
    __all__ = ("Loop", "new_event_loop", "install", "run")
else:
    __all__ = ("Loop", "new_event_loop", "EventLoopPolicy", "install", "run")

__version__: str

_T = TypeVar("_T")

class Loop(LoopCore, asyncio.AbstractEventLoop):  # type: ignore[misc]
    """asyncio event loop running on ferroloop's native core.

    The full asyncio.AbstractEventLoop API; call_soon/call_later/call_at
    return ferroloop's native Handle/TimerHandle, which have asyncio's
    Handle/TimerHandle methods.
    """

    def __init__(self) -> None: ...
    # run_forever's two halves (asyncio 3.13's hooks for subclasses that
    # drive the iterations themselves); present on every version.
    def _run_forever_setup(self) -> None: ...
    def _run_forever_cleanup(self) -> None: ...
    def set_default_executor(self, executor: ThreadPoolExecutor) -> None: ...  # type: ignore[override]

# Python 3.14 deprecated asyncio's policies (removal planned for 3.16); these
# two warn there as asyncio.DefaultEventLoopPolicy/set_event_loop_policy do.
if sys.version_info >= (3, 14):
    @deprecated("Deprecated since Python 3.14 as asyncio's policies are; use ferroloop.run() "
                "or asyncio.run(main, loop_factory=ferroloop.new_event_loop)")
    class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
        """asyncio's default event loop policy, creating ferroloop loops."""

        def new_event_loop(self) -> Loop: ...

    @deprecated("Sets an asyncio policy, deprecated since Python 3.14: use ferroloop.run() "
                "or asyncio.run(main, loop_factory=ferroloop.new_event_loop)")
    def install() -> None: ...

else:
    class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
        """asyncio's default event loop policy, creating ferroloop loops."""

        def new_event_loop(self) -> Loop: ...

    def install() -> None: ...

def new_event_loop() -> Loop: ...
def run(main: Coroutine[Any, Any, _T], *, debug: bool | None = None) -> _T: ...
