"""Which fds belong to transports, and making socket transports.

As in asyncio's selector loop, ``loop._transports`` maps an fd to the live
transport using it (weakly: a transport that is dropped is no longer listed),
and the public fd-watcher methods refuse an fd that an open transport owns:
a user's add_reader would silently steal the transport's reads.  The
transports themselves use the private ``_add_reader``/``_remove_reader``
spellings, which do not check.
"""

import sys

from . import _ferroloop, _socket_transport


# 3.13: making a transport for an fd that an open transport still uses is
# a RuntimeError, as adding a reader for it is.
CHECK_FD_FREE = sys.version_info >= (3, 13)


def _fd_number(fd):
    # Same acceptance as selectors' fd lookup: an int, or an object with a
    # fileno() method.
    if isinstance(fd, int):
        return fd
    try:
        return int(fd.fileno())
    except (AttributeError, TypeError, ValueError):
        raise ValueError(f"Invalid file object: {fd!r}") from None


class TransportsMixin:
    """Placed before LoopCore: the public add_/remove_ methods wrap its
    native ones."""

    def _init_transports(self):
        # fd -> transport, weakly: the mapping behaviour of the stock loop's
        # WeakValueDictionary at a fraction of its memory per connection.
        self._transports = _ferroloop.TransportMap()

    def _ensure_fd_no_transport(self, fd):
        transport = self._transports.get(_fd_number(fd))
        # A closing transport no longer reads; its fd may be reused.
        if transport is not None and not transport.is_closing():
            raise RuntimeError(
                f'File descriptor {fd!r} is used by transport '
                f'{transport!r}')

    def add_reader(self, fd, callback, *args):
        """Call callback(*args) whenever fd is readable."""
        self._ensure_fd_no_transport(fd)
        super().add_reader(fd, callback, *args)

    def remove_reader(self, fd):
        """Stop watching fd for reading; return whether it was watched."""
        self._ensure_fd_no_transport(fd)
        return super().remove_reader(fd)

    def add_writer(self, fd, callback, *args):
        """Call callback(*args) whenever fd is writable."""
        self._ensure_fd_no_transport(fd)
        super().add_writer(fd, callback, *args)

    def remove_writer(self, fd):
        """Stop watching fd for writing; return whether it was watched."""
        self._ensure_fd_no_transport(fd)
        return super().remove_writer(fd)

    def _make_socket_transport(self, sock, protocol, waiter=None, *,
                               extra=None, server=None, context=None):
        """Wrap the connected, non-blocking stream socket sock.

        The transport schedules protocol.connection_made, then starts
        reading, then resolves waiter (if given): the waiter's owner finds
        the protocol connected.  context (3.15): the contextvars.Context all
        its callbacks run in.
        """
        kwargs = {} if context is None else {'context': context}
        # Read before the transport takes the socket over.
        fd = sock.fileno()
        if CHECK_FD_FREE:
            self._ensure_fd_no_transport(fd)
        # Looked up on the module, not imported by name: the class is chosen
        # there (and tests swap it there).
        transport = _socket_transport.SocketTransport(
            self, sock, protocol, waiter, extra, server, **kwargs)
        # selector_events' transport registers itself too; doing it here
        # keeps the registry right for any transport class.
        self._transports[fd] = transport
        return transport
