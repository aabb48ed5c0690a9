"""The transport class behind TCP and Unix stream connections.

The data path is meant to be native: ``_ferroloop.SocketTransport``, with
selector_events' constructor ``(loop, sock, protocol, waiter=None,
extra=None, server=None)`` and asyncio's Transport API.  Until the extension
provides it, asyncio's own pure-Python selector transport runs on ferroloop's
fd watchers (``_add_reader``/``_add_writer`` returning handles,
``_remove_reader``/``_remove_writer`` returning bool): everything above the
transport (servers, streams, sendfile) works the same either way.

``SocketTransport`` below is the one place where that choice is made.
"""

import asyncio
from asyncio import selector_events

from . import _ferroloop


class SelectorSocketTransport(selector_events._SelectorSocketTransport):
    """asyncio's selector socket transport, running on ferroloop's core.

    Only the repr differs: the stock one asks the loop's ``_selector`` what
    the fd is polled for, and ferroloop has no selector object (code that
    finds a ``_selector`` attribute assumes it can drive it).
    """

    def __repr__(self):
        info = [self.__class__.__name__]
        if self._sock is None:
            info.append('closed')
        elif self._closing:
            info.append('closing')
        info.append(f'fd={self._sock_fd}')
        loop = self._loop
        # _loop is None once connection_lost has run.
        if loop is not None and not loop.is_closed():
            reading = loop._is_watching(self._sock_fd, True)
            info.append('read=polling' if reading else 'read=idle')
            writing = loop._is_watching(self._sock_fd, False)
            state = 'polling' if writing else 'idle'
            info.append(
                f'write=<{state}, bufsize={self.get_write_buffer_size()}>')
        return '<{}>'.format(' '.join(info))


class SocketTransportView(asyncio.Transport):
    """The class the native transport reports as its ``__class__``.

    ``isinstance(transport, asyncio.Transport)`` must hold, as it does for
    the stock loop's transports, but a native class cannot also derive from
    asyncio's (BaseTransport's ``__slots__`` clash with the native layout).
    isinstance() falls back to ``__class__`` when the real type does not
    match, so the native class answers with this subclass of
    asyncio.Transport, named like itself; ``type(transport)`` stays native.
    """

    __slots__ = ()


SocketTransportView.__name__ = 'SocketTransport'
SocketTransportView.__qualname__ = 'SocketTransport'


_Native = getattr(_ferroloop, 'SocketTransport', None)

if _Native is not None:
    class NativeSocketTransport(_Native):
        """The native transport, instantiable with a per-instance __dict__.

        Tests and instrumentation patch methods on a transport instance
        (``mock.patch.object(transport, "write")``), which the stock loop's
        Python transports allow; a native class has no instance dict, this
        subclass does.  Python-level calls see a patch; the native paths
        call the Rust methods directly, so the data path is unchanged.
        """

        def __init__(self, loop, sock, protocol, waiter=None, extra=None,
                     server=None, context=None):
            # The native __new__ built the state; this schedules
            # connection_made, the first read and the waiter.
            self._connect(waiter)

    NativeSocketTransport.__name__ = 'SocketTransport'
    NativeSocketTransport.__qualname__ = 'SocketTransport'


# The native transport wins as soon as the extension has it.
SocketTransport = (NativeSocketTransport if _Native is not None
                   else SelectorSocketTransport)
