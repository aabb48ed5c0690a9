"""The transport classes behind connect_read_pipe and connect_write_pipe.

The data path is meant to be native: ``_ferroloop.ReadPipeTransport`` and
``_ferroloop.WritePipeTransport``, with unix_events' constructors
``(loop, pipe, protocol, waiter=None, extra=None)`` and asyncio's
ReadTransport / WriteTransport API.  Until the extension provides them,
asyncio's own pure-Python unix pipe transports run on ferroloop's fd watchers
(``_add_reader``/``_add_writer``, ``_remove_reader``/``_remove_writer``):
subprocesses and streams above them work the same either way.

``ReadPipeTransport`` and ``WritePipeTransport`` at the bottom are the one
place where that choice is made.
"""

from asyncio import unix_events
from asyncio.log import logger

from . import _ferroloop


def _loop_can_tell_polling(loop):
    # The stock reprs ask the selector, which a closed selector loop no
    # longer has (they then say "open"); _loop is None once connection_lost
    # has run.
    return loop is not None and not loop.is_closed()


class UnixReadPipeTransport(unix_events._UnixReadPipeTransport):
    """asyncio's unix read-pipe transport, running on ferroloop's core.

    The repr differs: the stock one asks the loop's ``_selector`` whether
    the fd is polled, and ferroloop has no selector object (code that finds
    a ``_selector`` attribute assumes it can drive it). And reads go through
    ferroloop's shared read buffer: ``os.read(fd, 256 KiB)`` allocates (and
    mmaps, then unmaps) a 256 KiB object on every read.
    """

    def _read_ready(self):
        try:
            data = _ferroloop.read_fd(self._fileno, self.max_size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fatal_error(exc, 'Fatal read error on pipe transport')
            return
        if data:
            self._protocol.data_received(data)
            return
        # End of file: the same sequence as the stock transport.
        if self._loop.get_debug():
            logger.info("%r was closed by peer", self)
        self._closing = True
        self._loop._remove_reader(self._fileno)
        self._loop.call_soon(self._protocol.eof_received)
        self._loop.call_soon(self._call_connection_lost, None)

    def __repr__(self):
        info = [self.__class__.__name__]
        if self._pipe is None:
            info.append('closed')
        elif self._closing:
            info.append('closing')
        info.append(f'fd={self._fileno}')
        if self._pipe is not None and _loop_can_tell_polling(self._loop):
            polling = self._loop._is_watching(self._fileno, True)
            info.append('polling' if polling else 'idle')
        elif self._pipe is not None:
            info.append('open')
        else:
            info.append('closed')
        return '<{}>'.format(' '.join(info))


class UnixWritePipeTransport(unix_events._UnixWritePipeTransport):
    """asyncio's unix write-pipe transport, running on ferroloop's core.

    Only the repr differs, as for UnixReadPipeTransport.
    """

    def __repr__(self):
        info = [self.__class__.__name__]
        if self._pipe is None:
            info.append('closed')
        elif self._closing:
            info.append('closing')
        info.append(f'fd={self._fileno}')
        if self._pipe is not None and _loop_can_tell_polling(self._loop):
            polling = self._loop._is_watching(self._fileno, False)
            info.append('polling' if polling else 'idle')
            info.append(f'bufsize={self.get_write_buffer_size()}')
        elif self._pipe is not None:
            info.append('open')
        else:
            info.append('closed')
        return '<{}>'.format(' '.join(info))


# The native transports win as soon as the extension has them.
ReadPipeTransport = getattr(_ferroloop, 'ReadPipeTransport',
                            UnixReadPipeTransport)
WritePipeTransport = getattr(_ferroloop, 'WritePipeTransport',
                             UnixWritePipeTransport)
