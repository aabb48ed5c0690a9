"""The transport class behind datagram endpoints (UDP and Unix datagrams).

The data path is native: ``_ferroloop.DatagramTransport``, with
selector_events' constructor ``(loop, sock, protocol, address=None,
waiter=None, extra=None)`` and the stock datagram transport's API
(``sendto``, ``abort``, ``close``, write buffer size and limits).  The
pure-Python fallback below is asyncio's own selector datagram transport,
running on ferroloop's fd watchers (``_add_reader``/``_add_writer``
returning handles, ``_remove_reader``/``_remove_writer`` returning bool);
the tests run it too, until it is deleted.

``DatagramTransport`` below is the one place where that choice is made.
"""

import asyncio
from asyncio import selector_events

from . import _ferroloop
from . import _socket_transport


class SelectorDatagramTransport(selector_events._SelectorDatagramTransport):
    """asyncio's selector datagram transport, running on ferroloop's core.

    Only the repr differs, for the same reason as the stream transport's:
    the stock one asks the loop's ``_selector`` what the fd is polled for,
    and ferroloop has no selector object.  Both transports keep the same
    attributes (_sock, _sock_fd, _closing, _loop), so the repr is shared.
    """

    __repr__ = _socket_transport.SelectorSocketTransport.__repr__

    # Datagrams are received into one buffer per transport: the stock
    # ``recvfrom(256 KiB)`` allocates (and mmaps, then unmaps) a 256 KiB
    # object for every datagram.
    _read_buffer = None

    def _read_ready(self):
        if self._conn_lost:
            return
        buf = self._read_buffer
        if buf is None:
            buf = self._read_buffer = memoryview(bytearray(self.max_size))
        try:
            nbytes, addr = self._sock.recvfrom_into(buf)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            self._protocol.error_received(exc)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, 'Fatal read error on datagram transport')
        else:
            self._protocol.datagram_received(bytes(buf[:nbytes]), addr)


class DatagramTransportView(asyncio.Transport):
    """The class a native datagram transport should report as __class__.

    Same trick as _socket_transport.SocketTransportView: isinstance() falls
    back to ``__class__``, so a native class answering with this one passes
    ``isinstance(transport, asyncio.Transport)``.  That, and not
    asyncio.DatagramTransport, is what the stock transport is an instance
    of (selector_events derives it from its stream transport base), and what
    CPython's test_events checks.
    """

    __slots__ = ()


DatagramTransportView.__name__ = 'DatagramTransport'
DatagramTransportView.__qualname__ = 'DatagramTransport'


# The native transport wins as soon as the extension has it.
DatagramTransport = getattr(_ferroloop, 'DatagramTransport',
                            SelectorDatagramTransport)
