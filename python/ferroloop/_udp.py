"""Datagram endpoints: loop.create_datagram_endpoint.

Follows base_events (3.11) step by step, so that results, exception types
and messages are the stock loop's: pick the (family, proto) pairs for which
every given address resolves, then try them in turn (create the socket, set
SO_REUSEPORT / SO_BROADCAST if asked, bind, connect) and raise the FIRST
failure if none works.  Unix datagram sockets (family=AF_UNIX) take paths,
and a stale socket file at the local path is removed before binding, as for
Unix stream servers.  The socket is then handed to the loop's datagram
transport (see _datagram_transport).

There is no reuse_address parameter: 3.11 removed it (after refusing
reuse_address=True since 3.8.1, SO_REUSEADDR on UDP letting another process
steal the datagrams), so passing it is a TypeError, as on the stock loop.
"""

import socket
import sys

from asyncio.log import logger

from . import _datagram_transport
from . import _transports
from ._servers import _set_reuse_port
from ._unix import _is_abstract, _remove_stale_socket_file


# 3.13 takes any socket but a stream one (SOCK_RAW, SOCK_SEQPACKET, ...),
# and says "datagram", not "UDP".
_ANY_NON_STREAM_SOCKET = sys.version_info >= (3, 13)


def _check_given_socket(sock, modifiers):
    # modifiers: the keyword arguments that configure a socket the loop
    # creates; with sock= the truthy ones are refused, by name and value.
    if _ANY_NON_STREAM_SOCKET:
        if sock.type == socket.SOCK_STREAM:
            raise ValueError(
                f'A datagram socket was expected, got {sock!r}')
    elif sock.type != socket.SOCK_DGRAM:
        raise ValueError(f'A UDP Socket was expected, got {sock!r}')
    problems = ', '.join(f'{name}={value}'
                         for name, value in modifiers.items() if value)
    if problems:
        raise ValueError(
            f'socket modifier keyword arguments can not be used '
            f'when sock is specified. ({problems})')


class UdpMixin:

    async def create_datagram_endpoint(self, protocol_factory,
                                       local_addr=None, remote_addr=None, *,
                                       family=0, proto=0, flags=0,
                                       reuse_port=None,
                                       allow_broadcast=None, sock=None):
        """Create a datagram endpoint (UDP, or Unix datagram with
        family=AF_UNIX) bound to local_addr and/or connected to
        remote_addr, or wrapping the datagram socket sock.

        Return (transport, protocol) once the protocol's connection_made
        has run.
        """
        if sock is not None:
            _check_given_socket(sock, dict(
                local_addr=local_addr, remote_addr=remote_addr,
                family=family, proto=proto, flags=flags,
                reuse_port=reuse_port, allow_broadcast=allow_broadcast))
            sock.setblocking(False)
            peer = None
            protocol = protocol_factory()
        else:
            candidates = await self._datagram_candidates(
                local_addr, remote_addr, family, proto, flags)
            sock, peer = await self._open_datagram_socket(
                candidates, local_addr, remote_addr, reuse_port,
                allow_broadcast)
            try:
                protocol = protocol_factory()
            except:
                # The stock loop leaves the socket it made to the garbage
                # collector (and a ResourceWarning); the caller's sock= is
                # left open in both loops.
                sock.close()
                raise

        waiter = self.create_future()
        transport = self._make_datagram_transport(sock, protocol, peer,
                                                  waiter)
        if self._debug:
            # The stock loop's words and levels.
            if local_addr:
                logger.info("Datagram endpoint local_addr=%r remote_addr=%r "
                            "created: (%r, %r)",
                            local_addr, remote_addr, transport, protocol)
            else:
                logger.debug("Datagram endpoint remote_addr=%r created: "
                             "(%r, %r)",
                             remote_addr, transport, protocol)
        try:
            # Resolved once connection_made has run.
            await waiter
        except:
            transport.close()
            raise
        return transport, protocol

    async def _datagram_candidates(self, local_addr, remote_addr, family,
                                   proto, flags):
        """The ((family, proto), (local address, remote address)) pairs to
        try, in the resolver's order."""
        if not (local_addr or remote_addr):
            # An unbound, unconnected socket: only the family says which.
            if family == 0:
                raise ValueError('unexpected address family')
            return [((family, proto), (None, None))]

        if family == socket.AF_UNIX:
            for addr in (local_addr, remote_addr):
                if addr is not None and not isinstance(addr, str):
                    raise TypeError('string is expected')
            if local_addr and not _is_abstract(local_addr):
                # Left behind by an endpoint that did not clean up; binding
                # would fail with EADDRINUSE.
                _remove_stale_socket_file(local_addr)
            return [((family, proto), (local_addr, remote_addr))]

        # (family, proto) -> [local address, remote address]; a dict keeps
        # the order in which the resolver listed them.
        by_key = {}
        for index, addr in enumerate((local_addr, remote_addr)):
            if addr is None:
                continue
            if not (isinstance(addr, tuple) and len(addr) == 2):
                raise TypeError('2-tuple is expected')
            infos = await self._ensure_resolved(
                addr, family=family, type=socket.SOCK_DGRAM,
                proto=proto, flags=flags, loop=self)
            if not infos:
                raise OSError('getaddrinfo() returned empty list')
            for info_family, _, info_proto, _, address in infos:
                pair = by_key.setdefault((info_family, info_proto),
                                         [None, None])
                pair[index] = address

        # Only a pair with an address for every given side can be used:
        # e.g. an IPv4 local address with an IPv6 remote one cannot.
        candidates = [
            (key, pair) for key, pair in by_key.items()
            if not ((local_addr and pair[0] is None) or
                    (remote_addr and pair[1] is None))]
        if not candidates:
            raise ValueError('can not get address information')
        return candidates

    async def _open_datagram_socket(self, candidates, local_addr,
                                    remote_addr, reuse_port,
                                    allow_broadcast):
        """Return (sock, peer address or None) for the first candidate that
        works; if none does, raise the first candidate's error."""
        errors = []
        for (family, proto), (local_address, remote_address) in candidates:
            sock = None
            try:
                sock = socket.socket(
                    family=family, type=socket.SOCK_DGRAM, proto=proto)
                if reuse_port:
                    _set_reuse_port(sock)
                if allow_broadcast:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                sock.setblocking(False)
                if local_addr:
                    sock.bind(local_address)
                peer = None
                if remote_addr:
                    # A broadcast endpoint stays unconnected: connecting
                    # would make the kernel drop replies from any other
                    # address than the broadcast one, i.e. all of them.
                    # sendto() still defaults to remote_addr.
                    if not allow_broadcast:
                        await self.sock_connect(sock, remote_address)
                    peer = remote_address
            except OSError as exc:
                if sock is not None:
                    sock.close()
                errors.append(exc)
            except:
                # Cancellation and ValueError (reuse_port unsupported)
                # included.
                if sock is not None:
                    sock.close()
                raise
            else:
                return sock, peer
        try:
            raise errors[0]
        finally:
            # The tracebacks reference this frame.
            errors = None

    def _make_datagram_transport(self, sock, protocol, address=None,
                                 waiter=None, extra=None):
        """Wrap the non-blocking datagram socket sock.

        address is the default destination of sendto() (the only one
        allowed), or None.  The transport schedules protocol.connection_made,
        then starts reading, then resolves waiter (if given).
        """
        fd = sock.fileno()
        if _transports.CHECK_FD_FREE:
            self._ensure_fd_no_transport(fd)
        # Looked up on the module, not imported by name: the class is chosen
        # there (and tests swap it there).
        transport = _datagram_transport.DatagramTransport(
            self, sock, protocol, address, waiter, extra)
        # As for stream transports: registered here whatever the class.
        self._transports[fd] = transport
        return transport
