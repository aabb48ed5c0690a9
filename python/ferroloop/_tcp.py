"""TCP clients: loop.create_connection and loop.connect_accepted_socket.

Connecting follows base_events: resolve host and port (numeric addresses
inline, names in the executor), try each address in turn, or race them with
Happy Eyeballs (RFC 8305) when happy_eyeballs_delay is given, and report
the failures of all attempts together.  The connected socket is then handed
to the loop's socket transport (see _transports).
"""

import contextvars
import functools
import inspect
import itertools
import socket
import sys

from asyncio import base_events
from asyncio import staggered
from asyncio.log import logger

from ._sock_ops import _check_not_ssl


# 3.15: a connection's transport runs all its callbacks in one context, a
# copy of the one current when the connection was made (an accepted one: a
# copy of its server's, taken when the server was created), instead of a copy
# per callback taken when it is scheduled (gh-140947).  Feature-detected.
TRANSPORT_CONTEXT = 'context' in inspect.signature(
    base_events.BaseEventLoop._create_connection_transport).parameters


# 3.12: create_connection(all_errors=True) raises every attempt's error as
# one ExceptionGroup.  Feature-detected.
HAS_ALL_ERRORS = 'all_errors' in inspect.signature(
    base_events.BaseEventLoop.create_connection).parameters

# 3.13: bind errors quote str(exc) (errno included), and a connection
# attempt that ends with no error at all (every attempt cancelled) is a
# TimeoutError rather than an IndexError from an empty error list.
_NEW_CONNECT_ERRORS = sys.version_info >= (3, 13)

# 3.14 (gh-153133): a socket handed over for a transport is closed when no
# transport gets made (protocol_factory() failed, say); before, it was left
# open to the caller.
_CLOSE_SOCK_WITHOUT_TRANSPORT = sys.version_info >= (3, 14)


def interleave_by_family(infos, first_family_count=1):
    """Reorder address infos so that families alternate (RFC 8305 §4).

    The first family (the resolver's preference) keeps its first
    `first_family_count` addresses at the head of the list; after that one
    address of each family is taken in turn.
    """
    by_family = {}  # insertion order: the order families first appear
    for info in infos:
        by_family.setdefault(info[0], []).append(info)
    queues = list(by_family.values())

    ordered = []
    if first_family_count > 1:
        head = first_family_count - 1
        ordered.extend(queues[0][:head])
        queues[0] = queues[0][head:]
    for round_ in itertools.zip_longest(*queues):
        ordered.extend(info for info in round_ if info is not None)
    return ordered


def _combined_connect_error(errors):
    """The one OSError that create_connection raises when no address worked.

    A single failure, or failures that all read the same, are raised as
    they are; otherwise one OSError lists every message.
    """
    if len(errors) == 1:
        return errors[0]
    first = str(errors[0])
    if all(str(exc) == first for exc in errors):
        return errors[0]
    return OSError('Multiple exceptions: {}'.format(
        ', '.join(str(exc) for exc in errors)))


class TcpMixin:

    async def create_connection(
            self, protocol_factory, host=None, port=None,
            *, ssl=None, family=0,
            proto=0, flags=0, sock=None,
            local_addr=None, server_hostname=None,
            ssl_handshake_timeout=None,
            ssl_shutdown_timeout=None,
            happy_eyeballs_delay=None, interleave=None,
            all_errors=False):
        """Open a TCP connection to host:port, or wrap the socket sock.

        Return (transport, protocol) once the protocol's connection_made
        has run.  all_errors (3.12+): when every address fails, raise an
        ExceptionGroup of all the errors instead of one OSError.
        """
        if all_errors and not HAS_ALL_ERRORS:
            raise TypeError("create_connection() got an unexpected keyword "
                            "argument 'all_errors'")
        # The argument checks, in the stock loop's order and words.
        if server_hostname is not None and not ssl:
            raise ValueError('server_hostname is only meaningful with ssl')
        if server_hostname is None and ssl:
            # The host is verified against the certificate by default.
            if not host:
                raise ValueError('You must set server_hostname '
                                 'when using ssl without a host')
            server_hostname = host
        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError(
                'ssl_handshake_timeout is only meaningful with ssl')
        if ssl_shutdown_timeout is not None and not ssl:
            raise ValueError(
                'ssl_shutdown_timeout is only meaningful with ssl')
        if sock is not None:
            _check_not_ssl(sock)

        connect_by_address = host is not None or port is not None
        if connect_by_address:
            if sock is not None:
                raise ValueError(
                    'host/port and sock can not be specified at the same time')
        elif sock is None:
            raise ValueError(
                'host and port was not specified and no sock specified')
        elif sock.type != socket.SOCK_STREAM:
            # AF_UNIX stream sockets are accepted here too, as in asyncio.
            raise ValueError(f'A Stream Socket was expected, got {sock!r}')

        if connect_by_address:
            if happy_eyeballs_delay is not None and interleave is None:
                # Racing addresses of one family only would defeat the
                # purpose: alternate families by default.
                interleave = 1
            sock = await self._connect_to_address(
                host, port, family, proto, flags, local_addr,
                happy_eyeballs_delay, interleave, all_errors)

        transport, protocol = await self._create_connection_transport(
            sock, protocol_factory, ssl, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout)
        if self._debug:
            logger.debug("%r connected to %s:%r: (%r, %r)",
                         transport.get_extra_info('socket'), host, port,
                         transport, protocol)
        return transport, protocol

    async def _connect_to_address(self, host, port, family, proto, flags,
                                  local_addr, happy_eyeballs_delay,
                                  interleave, all_errors=False):
        """Return a socket connected to one of host:port's addresses."""
        infos = await self._ensure_resolved(
            (host, port), family=family, type=socket.SOCK_STREAM,
            proto=proto, flags=flags, loop=self)
        if not infos:
            raise OSError('getaddrinfo() returned empty list')

        local_infos = None
        if local_addr is not None:
            local_infos = await self._ensure_resolved(
                local_addr, family=family, type=socket.SOCK_STREAM,
                proto=proto, flags=flags, loop=self)
            if not local_infos:
                raise OSError('getaddrinfo() returned empty list')

        if interleave:
            infos = interleave_by_family(infos, interleave)

        # One list of errors per attempt, filled by _connect_sock.
        errors = []
        sock = None
        if happy_eyeballs_delay is None:
            for info in infos:
                try:
                    sock = await self._connect_sock(errors, info, local_infos)
                except OSError:
                    continue
                break
        else:
            # Start the next attempt every happy_eyeballs_delay seconds (or
            # as soon as one fails) until one succeeds; the losers are
            # cancelled, and close their sockets.
            sock, _, _ = await staggered.staggered_race(
                (functools.partial(self._connect_sock, errors, info,
                                   local_infos)
                 for info in infos),
                happy_eyeballs_delay, loop=self)

        if sock is None:
            flat = [exc for attempt in errors for exc in attempt]
            try:
                if all_errors:
                    raise ExceptionGroup("create_connection failed", flat)
                if not flat and _NEW_CONNECT_ERRORS:
                    raise TimeoutError('create_connection failed')
                raise _combined_connect_error(flat)
            finally:
                # The tracebacks reference this frame.
                errors = flat = None
        return sock

    async def _connect_sock(self, exceptions, addr_info, local_addr_infos=None):
        """Create a socket for addr_info, bind it if asked, and connect it.

        Appends this attempt's own error list to `exceptions` first, so the
        caller sees the errors of attempts that were cancelled midway too.
        """
        my_errors = []
        exceptions.append(my_errors)
        family, type_, proto, _, address = addr_info
        sock = None
        try:
            sock = socket.socket(family=family, type=type_, proto=proto)
            sock.setblocking(False)
            if local_addr_infos is not None:
                self._bind_local(sock, family, local_addr_infos, my_errors)
            await self.sock_connect(sock, address)
            return sock
        except OSError as exc:
            my_errors.append(exc)
            if sock is not None:
                sock.close()
            raise
        except:
            # Cancellation (a lost Happy Eyeballs race) included.
            if sock is not None:
                sock.close()
            raise
        finally:
            exceptions = my_errors = None

    @staticmethod
    def _bind_local(sock, family, local_addr_infos, errors):
        # Bind to the first local address of the socket's family that
        # works; earlier bind failures are kept in errors.
        tried = False
        for local_family, _, _, _, local_address in local_addr_infos:
            if local_family != family:
                continue
            tried = True
            try:
                sock.bind(local_address)
                return
            except OSError as exc:
                reason = str(exc) if _NEW_CONNECT_ERRORS else exc.strerror
                errors.append(OSError(
                    exc.errno,
                    f'error while attempting to bind on address '
                    f'{local_address!r}: {reason.lower()}'))
        if tried:
            raise errors.pop()
        raise OSError(f"no matching local address with {family=} found")

    async def _create_connection_transport(
            self, sock, protocol_factory, ssl,
            server_hostname, server_side=False,
            ssl_handshake_timeout=None,
            ssl_shutdown_timeout=None, context=None):
        try:
            sock.setblocking(False)
            if TRANSPORT_CONTEXT and context is None:
                context = contextvars.copy_context()
            protocol = protocol_factory()
            waiter = self.create_future()
            transport = self._make_connection_transport(
                sock, protocol, waiter, ssl, server_hostname, server_side,
                ssl_handshake_timeout, ssl_shutdown_timeout, context)
        except:
            if _CLOSE_SOCK_WITHOUT_TRANSPORT:
                sock.close()
            raise
        try:
            # Resolved once connection_made has run.
            await waiter
        except:
            transport.close()
            # Its error's traceback references this frame (gh-109534).
            waiter = None
            raise
        return transport, protocol

    def _make_connection_transport(self, sock, protocol, waiter, ssl,
                                   server_hostname, server_side,
                                   ssl_handshake_timeout,
                                   ssl_shutdown_timeout, context):
        if ssl:
            # ssl=True: SSLProtocol makes a default client context.
            sslcontext = None if isinstance(ssl, bool) else ssl
            transport = self._make_ssl_transport(
                sock, protocol, sslcontext, waiter,
                server_side=server_side, server_hostname=server_hostname,
                ssl_handshake_timeout=ssl_handshake_timeout,
                ssl_shutdown_timeout=ssl_shutdown_timeout, context=context)
        else:
            transport = self._make_socket_transport(sock, protocol, waiter,
                                                    context=context)
        return transport

    async def connect_accepted_socket(
            self, protocol_factory, sock,
            *, ssl=None,
            ssl_handshake_timeout=None,
            ssl_shutdown_timeout=None):
        """Wrap a socket accepted outside asyncio in a transport.

        Return (transport, protocol).
        """
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f'A Stream Socket was expected, got {sock!r}')
        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError(
                'ssl_handshake_timeout is only meaningful with ssl')
        if ssl_shutdown_timeout is not None and not ssl:
            raise ValueError(
                'ssl_shutdown_timeout is only meaningful with ssl')
        _check_not_ssl(sock)

        transport, protocol = await self._create_connection_transport(
            sock, protocol_factory, ssl, '', server_side=True,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout)
        if self._debug:
            logger.debug("%r handled: (%r, %r)",
                         transport.get_extra_info('socket'), transport,
                         protocol)
        return transport, protocol
