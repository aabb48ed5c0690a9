"""Pipes: loop.connect_read_pipe and loop.connect_write_pipe.

As in base_events: build the transport (which checks the file type and makes
the fd non-blocking, raising ValueError for anything but a pipe, FIFO,
socket or character device), then wait until the protocol's connection_made
has run.  The transport classes are chosen in _pipe_transport.

Like the stock unix loop, pipe transports are not entered in
``loop._transports``: add_reader on a pipe's fd is the caller's business.
"""

from asyncio.log import logger

from . import _pipe_transport


class PipesMixin:

    async def connect_read_pipe(self, protocol_factory, pipe):
        """Read from the pipe-like file object pipe into a protocol.

        Return (transport, protocol) once connection_made has run.
        """
        protocol = protocol_factory()
        waiter = self.create_future()
        transport = self._make_read_pipe_transport(pipe, protocol, waiter)
        try:
            await waiter
        except:
            transport.close()
            raise

        if self._debug:
            logger.debug('Read pipe %r connected: (%r, %r)',
                         pipe.fileno(), transport, protocol)
        return transport, protocol

    async def connect_write_pipe(self, protocol_factory, pipe):
        """Write to the pipe-like file object pipe through a transport.

        Return (transport, protocol) once connection_made has run.
        """
        protocol = protocol_factory()
        waiter = self.create_future()
        transport = self._make_write_pipe_transport(pipe, protocol, waiter)
        try:
            await waiter
        except:
            transport.close()
            raise

        if self._debug:
            logger.debug('Write pipe %r connected: (%r, %r)',
                         pipe.fileno(), transport, protocol)
        return transport, protocol

    # The classes are looked up on the module, not imported by name: they
    # are chosen there (and tests swap them there).

    def _make_read_pipe_transport(self, pipe, protocol, waiter=None,
                                  extra=None):
        return _pipe_transport.ReadPipeTransport(
            self, pipe, protocol, waiter, extra)

    def _make_write_pipe_transport(self, pipe, protocol, waiter=None,
                                   extra=None):
        return _pipe_transport.WritePipeTransport(
            self, pipe, protocol, waiter, extra)
