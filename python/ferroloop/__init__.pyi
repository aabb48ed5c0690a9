# Type stubs for the ferroloop package.
import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from ._ferroloop import LoopCore

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

class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """asyncio's default event loop policy, creating ferroloop loops."""

    def new_event_loop(self) -> Loop: ...

def new_event_loop() -> Loop: ...
def install() -> None: ...
def run(main: Coroutine[Any, Any, _T], *, debug: bool | None = None) -> _T: ...
