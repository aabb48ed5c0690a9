"""TLS: ssl= on connections and servers, and loop.start_tls.

As in the stock loop, TLS is asyncio's ``sslproto.SSLProtocol`` layered
over a plain socket transport -- here its subclass from ``_tls_protocol``,
whose per-record methods are native and whose state machine is the stock
Python code.  The SSLProtocol is the socket transport's
(buffered) protocol, runs the TLS state machine on an ``ssl.MemoryBIO``
pair, and hands the user's protocol an app transport
(a ``sslproto._SSLProtocolTransport``) that encrypts on write and answers
get_extra_info('ssl_object' / 'peercert' / 'cipher' / 'compression' /
'sslcontext'), falling back to the socket transport for the rest
(peername, socket, ...).  Handshake failures, timeouts and shutdown are all
SSLProtocol's, so their exceptions and messages are the stock ones.

What this needs from the socket transport (native or not): the
BufferedProtocol calls (get_buffer / buffer_updated), pause_reading /
resume_reading, set_protocol, write / writelines, close / abort,
is_closing, get_extra_info, and ``_start_tls_compatible = True`` for
start_tls.
"""

from asyncio import constants
from asyncio import streams

from ._tls_protocol import SSLProtocol

try:
    import ssl
except ImportError:  # pragma: no cover - Python built without ssl
    ssl = None  # type: ignore[assignment]


# Since 3.13 start_tls(server_side=True) hands data a StreamReaderProtocol
# already buffered (typically the ClientHello, read before the server called
# start_tls) to the TLS layer (gh-142352).  Feature-detected through the
# streams change that came with it (StreamReaderProtocol._replace_transport).
_MOVE_BUFFERED_STREAM_DATA = hasattr(streams.StreamReaderProtocol,
                                     '_replace_transport')


def _move_buffered_stream_data(protocol, ssl_protocol):
    """Give ssl_protocol the ciphertext protocol's StreamReader buffered."""
    if not isinstance(protocol, streams.StreamReaderProtocol):
        return
    reader = getattr(protocol, '_stream_reader', None)
    if reader is None:
        return
    if reader._buffer:
        ssl_protocol._incoming.write(reader._buffer)
        reader._buffer.clear()


class TlsMixin:

    def _make_ssl_transport(
            self, rawsock, protocol, sslcontext, waiter=None,
            *, server_side=False, server_hostname=None,
            extra=None, server=None,
            ssl_handshake_timeout=constants.SSL_HANDSHAKE_TIMEOUT,
            ssl_shutdown_timeout=constants.SSL_SHUTDOWN_TIMEOUT,
            context=None):
        """Wrap the connected socket rawsock in TLS; return the app transport.

        waiter (if given) is resolved once the handshake has completed and
        protocol.connection_made has run, or fails with the handshake's
        error.
        """
        ssl_protocol = SSLProtocol(
            self, protocol, sslcontext, waiter,
            server_side, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout)
        # The socket transport carries ciphertext; it schedules
        # ssl_protocol.connection_made, which starts the handshake.
        self._make_socket_transport(rawsock, ssl_protocol,
                                    extra=extra, server=server,
                                    context=context)
        return ssl_protocol._app_transport

    async def start_tls(self, transport, protocol, sslcontext, *,
                        server_side=False,
                        server_hostname=None,
                        ssl_handshake_timeout=None,
                        ssl_shutdown_timeout=None):
        """Start TLS on the open connection `transport`.

        Returns the TLS (app) transport, which `protocol` must use from now
        on in place of `transport`.
        """
        if ssl is None:
            raise RuntimeError('Python ssl module is not available')

        if not isinstance(sslcontext, ssl.SSLContext):
            raise TypeError(
                f'sslcontext is expected to be an instance of ssl.SSLContext, '
                f'got {sslcontext!r}')

        if not getattr(transport, '_start_tls_compatible', False):
            raise TypeError(
                f'transport {transport!r} is not supported by start_tls()')

        waiter = self.create_future()
        ssl_protocol = SSLProtocol(
            self, protocol, sslcontext, waiter,
            server_side, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
            call_connection_made=False)

        # Pause first, so that ssl_protocol cannot get data before its
        # connection_made has run.
        transport.pause_reading()

        if server_side and _MOVE_BUFFERED_STREAM_DATA:
            _move_buffered_stream_data(protocol, ssl_protocol)

        transport.set_protocol(ssl_protocol)
        conmade_cb = self.call_soon(ssl_protocol.connection_made, transport)
        resume_cb = self.call_soon(transport.resume_reading)

        try:
            await waiter
        except BaseException:
            transport.close()
            conmade_cb.cancel()
            resume_cb.cancel()
            # The handshake error on the waiter references this frame
            # through its traceback: drop it, or the error, the transports
            # and the protocols stay alive in a cycle (gh-109534/gh-159049).
            waiter = None
            raise

        return ssl_protocol._app_transport

