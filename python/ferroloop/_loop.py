"""The public event loop class, composed from one mixin per asyncio concept.

LoopCore (native) runs the iterations and owns callbacks, timers and fd
watching; the mixins add the rest of asyncio's event loop API in Python.
"""

import asyncio

from asyncio import coroutines

from ._ferroloop import LoopCore, _install_fast_methods
from ._asyncgens import AsyncGensMixin
from ._dns import DnsMixin
from ._exception_handling import ExceptionHandlingMixin
from ._executor import ExecutorMixin
from ._lifecycle import LifecycleMixin
from ._pipes import PipesMixin
from ._running import RunningMixin
from ._sendfile import SendfileMixin
from ._servers import ServersMixin
from ._signals import SignalsMixin
from ._sock_ops import SockOpsMixin
from ._subprocess import SubprocessMixin
from ._tasks import TasksMixin
from ._tcp import TcpMixin
from ._tls import TlsMixin
from ._transports import TransportsMixin
from ._udp import UdpMixin
from ._unix import UnixSocketsMixin


# The ignore below: the native Handle/TimerHandle have asyncio's Handle API
# but are not subclasses of asyncio.Handle, which typeshed's signatures name.
class Loop(RunningMixin, TransportsMixin,  # type: ignore[misc]
           LoopCore,
           SubprocessMixin, LifecycleMixin, TasksMixin,
           ExceptionHandlingMixin, AsyncGensMixin, ExecutorMixin, DnsMixin,
           SockOpsMixin, TcpMixin, TlsMixin, UdpMixin, UnixSocketsMixin, ServersMixin,
           SendfileMixin, SignalsMixin, PipesMixin,
           asyncio.AbstractEventLoop):
    """asyncio event loop running on ferroloop's native core.

    LoopCore comes third in the MRO, right after the two mixins whose
    methods wrap native ones (RunningMixin.set_debug, TransportsMixin's
    add_/remove_reader/writer): every call of a native method on the loop
    (call_soon, time, call_at, ... many times per I/O round trip) checks
    that the instance's type derives from LoopCore by walking the MRO up
    to it, so the earlier it stands, the cheaper each call. The mixins
    after it define no name LoopCore defines (tests/test_loop_mro.py).
    UnixSocketsMixin comes before ServersMixin because its _stop_serving
    extends the TCP one, and SubprocessMixin before LifecycleMixin because
    its close() extends that one (reaping children still running).
    AbstractEventLoop is last because it only defines the interface.
    """

    # Shown in reprs and tracebacks under the name users import it by.
    __module__ = 'ferroloop'

    def __init__(self):
        super().__init__()
        self._init_transports()
        self._init_unix_sockets()
        self._init_asyncgens()
        self._init_signals()
        # Debug mode follows -X dev / PYTHONASYNCIODEBUG, as asyncio's does.
        self.set_debug(coroutines._is_debug_mode())


# The methods asyncio's C Task and Future call on every step get entry points
# owned by this class: a call then checks `self` with one comparison instead
# of walking the MRO above (see src/fast_methods.rs).
_install_fast_methods(Loop)
