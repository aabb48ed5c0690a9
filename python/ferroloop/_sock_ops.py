"""Low-level socket operations (loop.sock_*).

Same scheme as asyncio's selector loop: try the non-blocking call at once;
if it would block, wait for the fd to be ready, retry, and resolve a future
with the outcome.

sock_recv, sock_recv_into, sock_sendall, sock_accept, sock_connect,
sock_recvfrom, sock_recvfrom_into and sock_sendto wait natively: the loop
registers a waiter (src/sock_waiter.rs) that makes the call and resolves the
future itself, removing its registration as it does.
When the wait ends otherwise (the awaiting task is cancelled), the
coroutine removes the waiter (_sock_unwait), so nothing stays registered.
Their bodies are kept minimal: they run once per message.

sock_sendfile's fallback waits in asyncio's shape (_wait_writable): a writer
callback that retries, and a done callback on the future that removes it.
"""

import _socket
import functools
import socket

from ._ferroloop import (
    recv_into_nowait, recv_nowait, recvfrom_into_nowait, recvfrom_nowait,
    send_nowait, sendto_nowait, sock_wait_recvfrom, sock_wait_recvfrom_into,
    sock_wait_sendto)

try:
    import ssl
except ImportError:  # pragma: no cover - Python built without ssl
    ssl = None  # type: ignore[assignment]

_HAS_IPv6 = hasattr(socket, 'AF_INET6')
_INET_FAMILIES = ((socket.AF_INET, socket.AF_INET6) if _HAS_IPv6
                  else (socket.AF_INET,))

# socket.socket's family / type properties convert the int to an enum member
# on every read; _socket.socket's own members give the int. Only for exactly
# socket.socket: a subclass may override the properties.
_raw_family = _socket.socket.__dict__['family'].__get__
_raw_type = _socket.socket.__dict__['type'].__get__


def _family_type_proto(sock):
    """(sock.family, sock.type, sock.proto), as ints when they can be."""
    if type(sock) is socket.socket:
        return _raw_family(sock), _raw_type(sock), sock.proto
    return sock.family, sock.type, sock.proto


def _check_not_ssl(sock):
    # Bytes on an SSLSocket are ciphertext: raw sock_* calls would corrupt
    # the TLS stream.
    if ssl is not None and isinstance(sock, ssl.SSLSocket):
        raise TypeError("Socket cannot be of type SSLSocket")


class SockOpsMixin:

    def _check_sock(self, sock):
        _check_not_ssl(sock)
        # As in the stock loop, a blocking socket is only refused in debug
        # mode (the check costs a syscall per operation).
        if self._debug and sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")

    # -- waiting for readiness ------------------------------------------

    def _retry_when_writable(self, fut, sock, retry, *args):
        fd = sock.fileno()
        self._ensure_fd_no_transport(fd)
        handle = self._add_writer(fd, retry, fut, sock, *args)
        fut.add_done_callback(
            functools.partial(self._sock_write_done, fd, handle=handle))

    def _wait_writable(self, sock, retry, *args):
        fut = self.create_future()
        self._retry_when_writable(fut, sock, retry, *args)
        return fut

    def _sock_write_done(self, fd, fut, handle):
        if not handle.cancelled():
            self.remove_writer(fd)

    # -- receiving ------------------------------------------------------

    async def sock_recv(self, sock, n):
        """Receive up to n bytes from sock."""
        self._check_sock(sock)
        # None means "would block" (no exception raised and caught per wait).
        data = recv_nowait(sock, n)
        if data is not None:
            return data
        fd = sock.fileno()
        # As in the stock loop, only an operation that has to wait is
        # refused on a transport's socket (a native lookup first).
        if fd in self._transports:
            self._ensure_fd_no_transport(fd)
        fut = self._sock_wait_recv(fd, sock, n)
        try:
            return await fut
        except BaseException:
            # Cancelled (or this coroutine closed): the waiter is still
            # registered, unless it was replaced or failed the future.
            self._sock_unwait(fd, False, fut)
            raise

    async def sock_recv_into(self, sock, buf):
        """Receive into the writable buffer buf; return the byte count."""
        self._check_sock(sock)
        nbytes = recv_into_nowait(sock, buf)
        if nbytes is not None:
            return nbytes
        fd = sock.fileno()
        if fd in self._transports:
            self._ensure_fd_no_transport(fd)
        fut = self._sock_wait_recv_into(fd, sock, buf)
        try:
            return await fut
        except BaseException:
            self._sock_unwait(fd, False, fut)
            raise

    async def sock_recvfrom(self, sock, bufsize):
        """Receive a datagram of up to bufsize bytes: (data, address)."""
        self._check_sock(sock)
        result = recvfrom_nowait(sock, bufsize)  # None: would block
        if result is not None:
            return result
        fd = sock.fileno()
        if fd in self._transports:
            self._ensure_fd_no_transport(fd)
        fut = sock_wait_recvfrom(self, fd, sock, bufsize)
        try:
            return await fut
        except BaseException:
            self._sock_unwait(fd, False, fut)
            raise

    async def sock_recvfrom_into(self, sock, buf, nbytes=0):
        """Receive a datagram into buf: (byte count, address)."""
        self._check_sock(sock)
        if not nbytes:
            nbytes = len(buf)
        result = recvfrom_into_nowait(sock, buf, nbytes)
        if result is not None:
            return result
        fd = sock.fileno()
        if fd in self._transports:
            self._ensure_fd_no_transport(fd)
        fut = sock_wait_recvfrom_into(self, fd, sock, buf, nbytes)
        try:
            return await fut
        except BaseException:
            self._sock_unwait(fd, False, fut)
            raise

    # -- sending --------------------------------------------------------

    async def sock_sendall(self, sock, data):
        """Send all of data on the connected socket sock."""
        self._check_sock(sock)
        sent = send_nowait(sock, data)  # 0 when it would block
        if sent == len(data):
            return
        fd = sock.fileno()
        if fd in self._transports:
            self._ensure_fd_no_transport(fd)
        fut = self._sock_wait_sendall(fd, sock, data, sent)
        try:
            return await fut
        except BaseException:
            self._sock_unwait(fd, True, fut)
            raise

    async def sock_sendto(self, sock, data, address):
        """Send the datagram data to address; return the byte count."""
        self._check_sock(sock)
        sent = sendto_nowait(sock, data, address)  # None: would block
        if sent is not None:
            return sent
        fd = sock.fileno()
        if fd in self._transports:
            self._ensure_fd_no_transport(fd)
        fut = sock_wait_sendto(self, fd, sock, data, address)
        try:
            return await fut
        except BaseException:
            self._sock_unwait(fd, True, fut)
            raise

    # -- connecting and accepting ---------------------------------------

    async def sock_connect(self, sock, address):
        """Connect sock to address (host names are resolved first)."""
        self._check_sock(sock)
        family, type_, proto = _family_type_proto(sock)
        if family in _INET_FAMILIES:
            if self._debug:
                # getaddrinfo's debug log shows them as enum members.
                family, type_ = sock.family, sock.type
            resolved = await self._ensure_resolved(
                address, family=family, type=type_, proto=proto, loop=self)
            address = resolved[0][4]

        try:
            sock.connect(address)
        except (BlockingIOError, InterruptedError):
            # The connection proceeds in the background (also after EINTR,
            # bpo-23618); writability says it finished, SO_ERROR how.
            pass
        else:
            return None
        fd = sock.fileno()
        self._ensure_fd_no_transport(fd)
        fut = self._sock_wait_connect(fd, sock, address)
        try:
            return await fut
        except BaseException:
            self._sock_unwait(fd, True, fut)
            raise
        finally:
            # Break the reference cycle through the traceback on error.
            fut = None

    async def sock_accept(self, sock):
        """Accept a connection on the listening sock: (conn, address).

        conn is returned non-blocking.
        """
        self._check_sock(sock)
        try:
            conn, address = sock.accept()
            conn.setblocking(False)
        except (BlockingIOError, InterruptedError):
            pass
        else:
            return conn, address
        fd = sock.fileno()
        if fd in self._transports:
            self._ensure_fd_no_transport(fd)
        fut = self._sock_wait_accept(fd, sock)
        try:
            return await fut
        except BaseException:
            self._sock_unwait(fd, False, fut)
            raise
