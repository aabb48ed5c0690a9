"""Unix domain stream sockets: create_unix_connection, create_unix_server.

Transports and servers are the TCP ones (see _transports and _servers);
what is Unix-specific is naming the socket: filesystem paths (a stale socket
file left by a dead server is removed before binding, as asyncio does) and
Linux's abstract namespace (a path starting with a NUL byte, which has no
file).  On Pythons whose asyncio has it (3.13+), create_unix_server's
``cleanup_socket`` removes the socket file again when the server closes.
"""

import errno
import inspect
import os
import socket
import stat

from asyncio import base_events
from asyncio import tasks
from asyncio import unix_events
from asyncio.log import logger


# Feature-detected, not assumed: 3.13 added cleanup_socket.
_HAS_CLEANUP_SOCKET = 'cleanup_socket' in inspect.signature(
    unix_events._UnixSelectorEventLoop.create_unix_server).parameters


def _is_abstract(path):
    # str and bytes paths alike: a leading NUL names an abstract socket.
    return path[0] in (0, '\x00')


def _remove_stale_socket_file(path):
    # Only a socket is removed: binding over a regular file must keep
    # failing with EADDRINUSE.
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        # The directory may only allow creating the socket; binding will
        # tell whether the path is usable.
        logger.error('Unable to check or remove stale UNIX socket '
                     '%r: %r', path, err)


def _check_unix_stream_socket(sock):
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        raise ValueError(
            f'A UNIX Domain Stream Socket was expected, got {sock!r}')


class UnixSocketsMixin:

    def _init_unix_sockets(self):
        # listening socket -> (path, inode) of the socket file to remove
        # when the server closes (cleanup_socket)
        self._unix_server_socket_files = {}

    async def create_unix_connection(
            self, protocol_factory, path=None, *,
            ssl=None, sock=None,
            server_hostname=None,
            ssl_handshake_timeout=None,
            ssl_shutdown_timeout=None):
        """Connect to the Unix socket at path (or wrap the socket sock).

        Return (transport, protocol).
        """
        assert server_hostname is None or isinstance(server_hostname, str)
        if ssl:
            if server_hostname is None:
                raise ValueError(
                    'you have to pass server_hostname when using ssl')
        else:
            if server_hostname is not None:
                raise ValueError('server_hostname is only meaningful with ssl')
            if ssl_handshake_timeout is not None:
                raise ValueError(
                    'ssl_handshake_timeout is only meaningful with ssl')
            if ssl_shutdown_timeout is not None:
                raise ValueError(
                    'ssl_shutdown_timeout is only meaningful with ssl')

        if path is not None:
            if sock is not None:
                raise ValueError(
                    'path and sock can not be specified at the same time')
        elif sock is None:
            raise ValueError('no path and sock were specified')
        else:
            _check_unix_stream_socket(sock)

        if path is not None:
            path = os.fspath(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0)
            try:
                sock.setblocking(False)
                await self.sock_connect(sock, path)
            except:
                sock.close()
                raise
        else:
            sock.setblocking(False)

        return await self._create_connection_transport(
            sock, protocol_factory, ssl, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout)

    async def _create_unix_server(self, protocol_factory, path, sock,
                                  backlog, ssl, ssl_handshake_timeout,
                                  ssl_shutdown_timeout, start_serving,
                                  cleanup_socket):
        if isinstance(ssl, bool):
            raise TypeError('ssl argument must be an SSLContext or None')
        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError(
                'ssl_handshake_timeout is only meaningful with ssl')
        if ssl_shutdown_timeout is not None and not ssl:
            raise ValueError(
                'ssl_shutdown_timeout is only meaningful with ssl')

        if path is not None:
            if sock is not None:
                raise ValueError(
                    'path and sock can not be specified at the same time')
        elif sock is None:
            raise ValueError('path was not specified, and no sock specified')
        else:
            _check_unix_stream_socket(sock)

        if path is not None:
            sock = self._bound_unix_socket(os.fspath(path))

        if cleanup_socket:
            self._remember_unix_socket_file(sock)

        sock.setblocking(False)
        server = base_events.Server(self, [sock], protocol_factory,
                                    ssl, backlog, ssl_handshake_timeout,
                                    ssl_shutdown_timeout)
        if start_serving:
            server._start_serving()
            # One iteration before returning, as the stock loop does.
            await tasks.sleep(0)
        return server

    @staticmethod
    def _bound_unix_socket(path):
        abstract = _is_abstract(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        if not abstract:
            _remove_stale_socket_file(path)
        try:
            sock.bind(path)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                # Name the address: the bare errno message does not.
                raise OSError(errno.EADDRINUSE,
                              f'Address {path!r} is already in use') from None
            raise
        except:
            sock.close()
            raise
        return sock

    # -- cleanup_socket (3.13+) -----------------------------------------

    def _remember_unix_socket_file(self, sock):
        # Note the socket file's inode now: on close, a file at the same
        # path with another inode belongs to someone else and stays.
        path = sock.getsockname()
        if not path or _is_abstract(path):
            return
        try:
            inode = os.stat(path).st_ino
        except FileNotFoundError:
            return
        self._unix_server_socket_files[sock] = (path, inode)

    def _stop_serving(self, sock):
        socket_file = self._unix_server_socket_files.pop(sock, None)
        super()._stop_serving(sock)
        if socket_file is None:
            return
        path, inode = socket_file
        try:
            if os.stat(path).st_ino == inode:
                os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as err:
            logger.error('Unable to clean up listening UNIX socket '
                         '%r: %r', path, err)

    if _HAS_CLEANUP_SOCKET:
        async def create_unix_server(
                self, protocol_factory, path=None, *,
                sock=None, backlog=100, ssl=None,
                ssl_handshake_timeout=None,
                ssl_shutdown_timeout=None,
                start_serving=True, cleanup_socket=True):
            """Listen on the Unix socket path (or on sock).

            A stale socket file at path is removed first; with
            cleanup_socket, the socket file is removed when the server
            closes.  Return an asyncio.Server.
            """
            return await self._create_unix_server(
                protocol_factory, path, sock, backlog, ssl,
                ssl_handshake_timeout, ssl_shutdown_timeout, start_serving,
                cleanup_socket)
    else:
        async def create_unix_server(
                self, protocol_factory, path=None, *,
                sock=None, backlog=100, ssl=None,
                ssl_handshake_timeout=None,
                ssl_shutdown_timeout=None,
                start_serving=True):
            """Listen on the Unix socket path (or on sock).

            A stale socket file at path is removed first.  Return an
            asyncio.Server.
            """
            return await self._create_unix_server(
                protocol_factory, path, sock, backlog, ssl,
                ssl_handshake_timeout, ssl_shutdown_timeout, start_serving,
                cleanup_socket=False)
