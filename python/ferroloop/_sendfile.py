"""Sending files: loop.sock_sendfile (on a socket) and loop.sendfile (on a
transport).

Both try the zero-copy way first, os.sendfile() from the file's fd to the
socket, and fall back (unless told not to) to reading the file in the
default executor and writing what was read.  The split into _*_native and
_*_fallback methods is base_events' and selector_events', so code that
overrides one of them (tests do) keeps working.

Either way the file position ends up just after the last byte sent, also
when the transfer fails midway or is cancelled.  From 3.13 on that holds
even when nothing was sent (offset at or past EOF, or a failure before the
first byte): the position is then ``offset``; before 3.13 a transfer that
sent nothing leaves the position alone, and the fallbacks seek only for a
non-zero offset.
"""

import errno
import io
import os
import socket

from asyncio import constants
from asyncio import exceptions
from asyncio import protocols
from asyncio import unix_events

import inspect

from ._sock_ops import _check_not_ssl

# The fallback's read size for transports (sock_sendfile's is
# constants.SENDFILE_FALLBACK_READBUFFER_SIZE, read at each call).
_TRANSPORT_FALLBACK_BLOCKSIZE = 16384

# Feature-detected from the stock loop, not assumed from the version: the
# stock helper lost its total_sent parameter when it started to seek
# unconditionally (3.13).
_SEEK_EVEN_IF_NOTHING_SENT = 'total_sent' not in inspect.signature(
    unix_events._UnixSelectorEventLoop._sock_sendfile_update_filepos
).parameters


def _seek_to_start(file, offset):
    """Where the fallbacks start reading."""
    if _SEEK_EVEN_IF_NOTHING_SENT:
        if hasattr(file, 'seek'):
            file.seek(offset)
    elif offset:
        file.seek(offset)


def _check_sendfile_params(sock, file, offset, count):
    if 'b' not in getattr(file, 'mode', 'b'):
        raise ValueError("file should be opened in binary mode")
    if not sock.type == socket.SOCK_STREAM:
        raise ValueError("only SOCK_STREAM type sockets are supported")
    if count is not None:
        if not isinstance(count, int):
            raise TypeError(
                f"count must be a positive integer (got {count!r})")
        if count <= 0:
            raise ValueError(
                f"count must be a positive integer (got {count!r})")
    if not isinstance(offset, int):
        raise TypeError(
            f"offset must be a non-negative integer (got {offset!r})")
    if offset < 0:
        raise ValueError(
            f"offset must be a non-negative integer (got {offset!r})")


def _regular_file_fd(file):
    # os.sendfile() needs a file it can map: one with an fd and a size.
    try:
        fileno = file.fileno()
    except (AttributeError, io.UnsupportedOperation):
        raise exceptions.SendfileNotAvailableError("not a regular file")
    try:
        size = os.fstat(fileno).st_size
    except OSError:
        raise exceptions.SendfileNotAvailableError("not a regular file")
    return fileno, size


def _set_writable(fut, sock):
    if not fut.done():
        fut.set_result(None)


class _SendfileFallbackProtocol(protocols.Protocol):
    """Stands in for a transport's protocol while the fallback writes a file.

    Reading is paused for the duration (incoming data would reach the wrong
    protocol), and the transport's flow control (pause_writing /
    resume_writing) paces the writes.  restore() puts the user's protocol
    back in the state it was found in.
    """

    def __init__(self, loop, transp):
        # The transport's write-side flow control state: selector_events'
        # transports and ferroloop's native one both keep it here.
        if not hasattr(transp, '_protocol_paused'):
            raise TypeError("transport should be _FlowControlMixin instance")
        self._loop = loop
        self._transport = transp
        self._proto = transp.get_protocol()
        self._should_resume_reading = transp.is_reading()
        self._should_resume_writing = transp._protocol_paused
        transp.pause_reading()
        transp.set_protocol(self)
        # Set while writing must wait for resume_writing().
        self._write_ready_fut = (loop.create_future()
                                 if self._should_resume_writing else None)

    async def drain(self):
        if self._transport.is_closing():
            raise ConnectionError("Connection closed by peer")
        if self._write_ready_fut is not None:
            await self._write_ready_fut

    def connection_made(self, transport):
        raise RuntimeError("Invalid state: "
                           "connection should have been established already.")

    def connection_lost(self, exc):
        if self._write_ready_fut is not None:
            # The file was not sent completely: an error whatever exc is.
            if exc is None:
                exc = ConnectionError("Connection is closed by peer")
            self._write_ready_fut.set_exception(exc)
        self._proto.connection_lost(exc)

    def pause_writing(self):
        if self._write_ready_fut is None:
            self._write_ready_fut = self._loop.create_future()

    def resume_writing(self):
        if self._write_ready_fut is not None:
            self._write_ready_fut.set_result(False)
            self._write_ready_fut = None

    def data_received(self, data):
        raise RuntimeError("Invalid state: reading should be paused")

    def eof_received(self):
        raise RuntimeError("Invalid state: reading should be paused")

    async def restore(self):
        self._transport.set_protocol(self._proto)
        if self._should_resume_reading:
            self._transport.resume_reading()
        if self._write_ready_fut is not None:
            # Nobody waits on it any more.
            self._write_ready_fut.cancel()
        if self._should_resume_writing:
            # The user's protocol was paused when we took over and has
            # missed whatever happened since: let it write again.
            self._proto.resume_writing()


class SendfileMixin:

    # -- on a socket ----------------------------------------------------

    async def sock_sendfile(self, sock, file, offset=0, count=None,
                            *, fallback=True):
        """Send file (from offset, count bytes or to EOF) on the connected
        stream socket sock; return the number of bytes sent."""
        if self._debug and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        _check_not_ssl(sock)
        self._check_sendfile_params(sock, file, offset, count)
        try:
            return await self._sock_sendfile_native(sock, file, offset, count)
        except exceptions.SendfileNotAvailableError:
            if not fallback:
                raise
        return await self._sock_sendfile_fallback(sock, file, offset, count)

    def _check_sendfile_params(self, sock, file, offset, count):
        _check_sendfile_params(sock, file, offset, count)

    def _sock_writable(self, sock):
        """A future resolved when sock is writable."""
        return self._wait_writable(sock, _set_writable)

    async def _sock_sendfile_native(self, sock, file, offset, count):
        if not hasattr(os, 'sendfile'):
            raise exceptions.SendfileNotAvailableError(
                "os.sendfile() is not available")
        fileno, size = _regular_file_fd(file)
        blocksize = count if count else size
        if not blocksize:
            return 0  # empty file

        fd = sock.fileno()
        total_sent = 0
        try:
            while True:
                if count:
                    blocksize = count - total_sent
                    if blocksize <= 0:
                        return total_sent
                try:
                    sent = os.sendfile(fd, fileno, offset + total_sent,
                                       blocksize)
                except (BlockingIOError, InterruptedError):
                    await self._sock_writable(sock)
                    continue
                except OSError as exc:
                    if total_sent == 0:
                        # Most likely a file sendfile() cannot read (not
                        # mmap-able): the fallback can still send it.
                        raise exceptions.SendfileNotAvailableError(
                            "os.sendfile call failed")
                    if (exc.errno == errno.ENOTCONN and
                            type(exc) is not ConnectionError):
                        # The peer went away midway; other POSIX systems
                        # say so with a ConnectionError, so say it here too.
                        raise ConnectionError(
                            "socket is not connected", errno.ENOTCONN
                        ) from exc
                    raise
                if sent == 0:
                    return total_sent  # EOF
                total_sent += sent
                # One chunk per readiness, as the stock loop does, so a big
                # file does not hold the loop while the socket takes it.
                await self._sock_writable(sock)
        finally:
            if total_sent > 0 or _SEEK_EVEN_IF_NOTHING_SENT:
                os.lseek(fileno, offset + total_sent, os.SEEK_SET)

    async def _sock_sendfile_fallback(self, sock, file, offset, count):
        _seek_to_start(file, offset)
        # Looked up per call: tests shrink it.
        max_block = constants.SENDFILE_FALLBACK_READBUFFER_SIZE
        blocksize = min(count, max_block) if count else max_block
        buf = bytearray(blocksize)
        total_sent = 0
        try:
            while True:
                if count:
                    blocksize = min(count - total_sent, blocksize)
                    if blocksize <= 0:
                        break
                view = memoryview(buf)[:blocksize]
                read = await self.run_in_executor(None, file.readinto, view)
                if not read:
                    break  # EOF
                await self.sock_sendall(sock, view[:read])
                total_sent += read
            return total_sent
        finally:
            if total_sent > 0 and hasattr(file, 'seek'):
                file.seek(offset + total_sent)

    # -- on a transport -------------------------------------------------

    async def sendfile(self, transport, file, offset=0, count=None,
                       *, fallback=True):
        """Send file (from offset, count bytes or to EOF) on transport;
        return the number of bytes sent.

        The transport's own writes are refused meanwhile ("sendfile is in
        progress") and its reading is paused.  Raise
        SendfileNotAvailableError if the zero-copy way cannot be used and
        fallback is false.
        """
        if transport.is_closing():
            raise RuntimeError("Transport is closing")
        mode = getattr(transport, '_sendfile_compatible',
                       constants._SendfileMode.UNSUPPORTED)
        if mode is constants._SendfileMode.UNSUPPORTED:
            raise RuntimeError(
                f"sendfile is not supported for transport {transport!r}")
        if mode is constants._SendfileMode.TRY_NATIVE:
            try:
                return await self._sendfile_native(transport, file,
                                                   offset, count)
            except exceptions.SendfileNotAvailableError:
                if not fallback:
                    raise
        if not fallback:
            raise RuntimeError(
                f"fallback is disabled and native sendfile is not "
                f"supported for transport {transport!r}")
        return await self._sendfile_fallback(transport, file, offset, count)

    async def _sendfile_native(self, transp, file, offset, count):
        # The file goes straight to the transport's socket, after whatever
        # the transport has buffered; the transport must neither read nor
        # write meanwhile.
        fd = transp._sock_fd
        # Let sock_sendfile's fd watching through the transport check.
        self._transports.pop(fd, None)
        resume_reading = transp.is_reading()
        transp.pause_reading()
        try:
            await transp._make_empty_waiter()
            try:
                return await self.sock_sendfile(transp._sock, file, offset,
                                                count, fallback=False)
            finally:
                transp._reset_empty_waiter()
        finally:
            if resume_reading:
                transp.resume_reading()
            self._transports[fd] = transp

    async def _sendfile_fallback(self, transp, file, offset, count):
        _seek_to_start(file, offset)
        blocksize = (min(count, _TRANSPORT_FALLBACK_BLOCKSIZE) if count
                     else _TRANSPORT_FALLBACK_BLOCKSIZE)
        buf = bytearray(blocksize)
        total_sent = 0
        proto = _SendfileFallbackProtocol(self, transp)
        try:
            while True:
                if count:
                    blocksize = min(count - total_sent, blocksize)
                    if blocksize <= 0:
                        return total_sent
                view = memoryview(buf)[:blocksize]
                read = await self.run_in_executor(None, file.readinto, view)
                if not read:
                    return total_sent  # EOF
                await proto.drain()
                # The transport sends or copies it before returning: buf is
                # refilled by the next read.
                transp.write(view[:read])
                total_sent += read
        finally:
            if total_sent > 0 and hasattr(file, 'seek'):
                file.seek(offset + total_sent)
            await proto.restore()
