"""TCP servers (loop.create_server) and the accept loop behind every server.

Servers are asyncio's own ``asyncio.Server`` objects (base_events.Server):
its close/wait_closed/serve_forever/start_serving logic, and whatever newer
Pythons add to it (close_clients, abort_clients), work unchanged because it
only needs two loop methods, implemented here: ``_start_serving`` (watch a
listening socket and accept from it) and ``_stop_serving`` (stop and close
it).  Accepted connections become socket transports with ``server=`` set,
which attach to and detach from the server as they open and close.
"""

import collections.abc
import errno
import inspect
import itertools
import os
import socket
import sys

from asyncio import base_events
from asyncio import constants
from asyncio import tasks
from asyncio import trsock
from asyncio.log import logger

from ._sock_ops import _check_not_ssl

_HAS_IPv6 = hasattr(socket, 'AF_INET6')

# 3.13: create_server(keep_alive=) sets SO_KEEPALIVE on the listening
# sockets (accepted ones inherit it).  Feature-detected; where the stock loop
# lacks the parameter, passing it is the TypeError it would be there.
_HAS_KEEP_ALIVE = 'keep_alive' in inspect.signature(
    base_events.BaseEventLoop.create_server).parameters

# 3.13's binding: SO_REUSEPORT only on AF_INET/AF_INET6 sockets (Linux
# 6.12.9+ refuses it on others), an address that is not available
# (EADDRNOTAVAIL: the family is configured off, bpo-30945) skipped rather
# than fatal, and bind errors quoting str(err).
_NEW_BIND_RULES = sys.version_info >= (3, 13)

# 3.13's accept loop: one accept more than the backlog per readiness, and a
# connection aborted before accept() is skipped, not the end of the round.
_EXTRA_ACCEPT = 1 if sys.version_info >= (3, 13) else 0
_SKIP_ABORTED_ACCEPTS = sys.version_info >= (3, 13)

# accept() failing for want of a resource: the listening socket stays
# readable, so retrying at once would spin.  These back off instead.
_OUT_OF_RESOURCES = frozenset((errno.EMFILE, errno.ENFILE,
                               errno.ENOBUFS, errno.ENOMEM))


def _set_reuse_port(sock):
    if not hasattr(socket, 'SO_REUSEPORT'):
        raise ValueError('reuse_port not supported by socket module')
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    except OSError:
        raise ValueError('reuse_port not supported by socket module, '
                         'SO_REUSEPORT defined but not implemented.')


def _hosts_to_bind(host):
    # '' means every interface, like None; a str is one host; any other
    # iterable is several.
    if host == '':
        return [None]
    if isinstance(host, str) or not isinstance(host,
                                               collections.abc.Iterable):
        return [host]
    return host


class ServersMixin:

    async def create_server(
            self, protocol_factory, host=None, port=None,
            *,
            family=socket.AF_UNSPEC,
            flags=socket.AI_PASSIVE,
            sock=None,
            backlog=100,
            ssl=None,
            reuse_address=None,
            reuse_port=None,
            ssl_handshake_timeout=None,
            ssl_shutdown_timeout=None,
            start_serving=True,
            keep_alive=None):
        """Listen on host:port (every address it resolves to) or on sock.

        host may be None or '' (all interfaces), a host, or a sequence of
        hosts; an address reached through several hosts is bound once.
        Return an asyncio.Server, already accepting unless start_serving
        is false.
        """
        if keep_alive is not None and not _HAS_KEEP_ALIVE:
            raise TypeError("create_server() got an unexpected keyword "
                            "argument 'keep_alive'")
        if isinstance(ssl, bool):
            raise TypeError('ssl argument must be an SSLContext or None')
        if ssl_handshake_timeout is not None and ssl is None:
            raise ValueError(
                'ssl_handshake_timeout is only meaningful with ssl')
        if ssl_shutdown_timeout is not None and ssl is None:
            raise ValueError(
                'ssl_shutdown_timeout is only meaningful with ssl')
        if sock is not None:
            _check_not_ssl(sock)

        bind_by_address = host is not None or port is not None
        if bind_by_address:
            if sock is not None:
                raise ValueError(
                    'host/port and sock can not be specified at the same time')
        elif sock is None:
            raise ValueError('Neither host/port nor sock were specified')
        elif sock.type != socket.SOCK_STREAM:
            raise ValueError(f'A Stream Socket was expected, got {sock!r}')

        if bind_by_address:
            if reuse_address is None:
                # Restarting a server must not wait out TIME_WAIT.
                reuse_address = os.name == 'posix' and sys.platform != 'cygwin'
            sockets = await self._bound_server_sockets(
                host, port, family, flags, reuse_address, reuse_port,
                keep_alive)
        else:
            sockets = [sock]

        for sock in sockets:
            sock.setblocking(False)

        server = base_events.Server(self, sockets, protocol_factory,
                                    ssl, backlog, ssl_handshake_timeout,
                                    ssl_shutdown_timeout)
        if start_serving:
            server._start_serving()
            # As the stock loop does: give the server one iteration before
            # returning.
            await tasks.sleep(0)

        if self._debug:
            logger.info("%r is serving", server)
        return server

    async def _create_server_getaddrinfo(self, host, port, family, flags):
        infos = await self._ensure_resolved((host, port), family=family,
                                            type=socket.SOCK_STREAM,
                                            flags=flags, loop=self)
        if not infos:
            raise OSError(f'getaddrinfo({host!r}) returned empty list')
        return infos

    async def _bound_server_sockets(self, host, port, family, flags,
                                    reuse_address, reuse_port,
                                    keep_alive=None):
        """One bound (not yet listening) socket per distinct address."""
        lookups = [self._create_server_getaddrinfo(h, port, family=family,
                                                   flags=flags)
                   for h in _hosts_to_bind(host)]
        # A set: hosts resolving to the same address bind it once.
        infos = set(itertools.chain.from_iterable(
            await tasks.gather(*lookups)))

        sockets = []
        completed = False
        try:
            for af, socktype, proto, _, address in infos:
                try:
                    sock = socket.socket(af, socktype, proto)
                except socket.error:
                    # Probably a family this host cannot do (say, IPv6
                    # disabled): serve on the others.
                    if self._debug:
                        logger.warning('create_server() failed to create '
                                       'socket.socket(%r, %r, %r)',
                                       af, socktype, proto, exc_info=True)
                    continue
                sockets.append(sock)
                if reuse_address:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR,
                                    True)
                if reuse_port and (not _NEW_BIND_RULES or af in (
                        socket.AF_INET, socket.AF_INET6)):
                    _set_reuse_port(sock)
                if keep_alive:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE,
                                    True)
                if (_HAS_IPv6 and af == socket.AF_INET6 and
                        hasattr(socket, 'IPPROTO_IPV6')):
                    # Linux makes IPv6 sockets dual-stack by default; the
                    # IPv4 address has its own socket here.
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY,
                                    True)
                try:
                    sock.bind(address)
                except OSError as err:
                    if not _NEW_BIND_RULES:
                        raise OSError(err.errno, 'error while attempting '
                                      'to bind on address %r: %s'
                                      % (address, err.strerror.lower())
                                      ) from None
                    msg = ('error while attempting to bind on address '
                           '%r: %s' % (address, str(err).lower()))
                    if err.errno == errno.EADDRNOTAVAIL:
                        sockets.pop()
                        sock.close()
                        if self._debug:
                            logger.warning(msg)
                        continue
                    raise OSError(err.errno, msg) from None
            if _NEW_BIND_RULES and not sockets:
                raise OSError('could not bind on any address out of %r'
                              % ([info[4] for info in infos],))
            completed = True
        finally:
            if not completed:
                for sock in sockets:
                    sock.close()
        return sockets

    # -- the accept loop (called by asyncio.Server) ---------------------

    def _start_serving(self, protocol_factory, sock,
                       sslcontext=None, server=None, backlog=100,
                       ssl_handshake_timeout=constants.SSL_HANDSHAKE_TIMEOUT,
                       ssl_shutdown_timeout=constants.SSL_SHUTDOWN_TIMEOUT,
                       context=None):
        # context (3.15): the server's, captured when it was created; each
        # connection gets its own copy.
        self._add_reader(sock.fileno(), self._accept_connection,
                         protocol_factory, sock, sslcontext, server, backlog,
                         ssl_handshake_timeout, ssl_shutdown_timeout, context)

    def _resume_serving(self, protocol_factory, sock, *args):
        # After an out-of-resources back-off; the server may have been
        # closed meanwhile.
        if sock.fileno() != -1:
            self._start_serving(protocol_factory, sock, *args)

    def _stop_serving(self, sock):
        self._remove_reader(sock.fileno())
        sock.close()

    def _accept_connection(
            self, protocol_factory, sock,
            sslcontext=None, server=None, backlog=100,
            ssl_handshake_timeout=constants.SSL_HANDSHAKE_TIMEOUT,
            ssl_shutdown_timeout=constants.SSL_SHUTDOWN_TIMEOUT,
            context=None):
        # Runs once per iteration in which the listening socket is readable;
        # several connections may be queued, so accept up to `backlog` of
        # them (bpo-27906; 3.13+: backlog + 1) without starving the rest of
        # the loop.
        for _ in range(backlog + _EXTRA_ACCEPT):
            try:
                conn, addr = sock.accept()
                if self._debug:
                    logger.debug("%r got a new connection from %r: %r",
                                 server, addr, conn)
                conn.setblocking(False)
            except ConnectionAbortedError:
                if _SKIP_ABORTED_ACCEPTS:
                    continue  # that client gave up; others may be queued
                return
            except (BlockingIOError, InterruptedError):
                return  # the queue is empty
            except OSError as exc:
                if exc.errno not in _OUT_OF_RESOURCES:
                    raise  # the loop reports it to the exception handler
                # Nobody awaits an accept: report, stop watching for a
                # while, then start again.
                self.call_exception_handler({
                    'message': 'socket.accept() out of system resource',
                    'exception': exc,
                    'socket': trsock.TransportSocket(sock),
                })
                self._remove_reader(sock.fileno())
                self.call_later(constants.ACCEPT_RETRY_DELAY,
                                self._resume_serving,
                                protocol_factory, sock, sslcontext, server,
                                backlog, ssl_handshake_timeout,
                                ssl_shutdown_timeout, context)
                # The stock loop goes on looping here, reporting the same
                # error up to `backlog` times; once is enough.
                return
            else:
                if context is None:
                    self.create_task(self._accept_connection2(
                        protocol_factory, conn, {'peername': addr},
                        sslcontext, server, ssl_handshake_timeout,
                        ssl_shutdown_timeout))
                    continue
                # The protocol factory, the protocol and the transport all
                # run in the connection's own copy.
                conn_context = context.copy()
                self.create_task(self._accept_connection2(
                    protocol_factory, conn, {'peername': addr}, sslcontext,
                    server, ssl_handshake_timeout, ssl_shutdown_timeout,
                    context=conn_context), context=conn_context)

    async def _accept_connection2(
            self, protocol_factory, conn, extra,
            sslcontext=None, server=None,
            ssl_handshake_timeout=constants.SSL_HANDSHAKE_TIMEOUT,
            ssl_shutdown_timeout=constants.SSL_SHUTDOWN_TIMEOUT,
            context=None):
        protocol = None
        transport = None
        kwargs = {} if context is None else {'context': context}
        try:
            protocol = protocol_factory()
            waiter = self.create_future()
            if sslcontext:
                transport = self._make_ssl_transport(
                    conn, protocol, sslcontext, waiter=waiter,
                    server_side=True, extra=extra, server=server,
                    ssl_handshake_timeout=ssl_handshake_timeout,
                    ssl_shutdown_timeout=ssl_shutdown_timeout, **kwargs)
            else:
                transport = self._make_socket_transport(
                    conn, protocol, waiter=waiter, extra=extra,
                    server=server, **kwargs)
            try:
                await waiter
            except BaseException:
                transport.close()
                # A handshake error set on the waiter references the
                # SSLProtocol: drop it rather than keep a cycle (gh-109534).
                waiter = None
                raise
            # From here on the protocol owns the connection.
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            if transport is None:
                # Nothing owns the connection: close it now rather than
                # leave the client waiting for the garbage collector (the
                # stock loop leaves it open).
                conn.close()
            # As in asyncio: a failure to set up an incoming connection is
            # only reported in debug mode.
            if self._debug:
                context = {
                    'message':
                        'Error on transport creation for incoming connection',
                    'exception': exc,
                }
                if protocol is not None:
                    context['protocol'] = protocol
                if transport is not None:
                    context['transport'] = transport
                self.call_exception_handler(context)
