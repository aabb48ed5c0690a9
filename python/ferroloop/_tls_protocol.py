"""asyncio's SSLProtocol with its per-record methods native.

The state machine (handshake, shutdown, timeouts, error routing) is
``asyncio.sslproto.SSLProtocol``'s own Python code, unchanged.  The methods
that run for every TLS record (get_buffer, buffer_updated, _do_read,
_do_write, _write_appdata, _process_outgoing and the flow-control checks)
come first in the MRO from ``_ferroloop.TlsProtocolCore``, which mirrors
them method for method (see src/tls_protocol.rs).  The app transport's
``write`` goes straight to the native ``_write_appdata``.

Both classes keep the names of the stock classes they extend (and are
subclasses of them), so type names in reprs, logs and user checks read as
with the stock loop.
"""

from asyncio import sslproto

from ._ferroloop import TlsProtocolCore, tls_app_write


class _SSLProtocolTransport(sslproto._SSLProtocolTransport):
    """The transport a TLS connection's app protocol writes to."""

    def write(self, data):
        """Write some data bytes to the transport.

        This does not block; it buffers the data and arranges for it
        to be sent out asynchronously.
        """
        tls_app_write(self._ssl_protocol, data)


class SSLProtocol(TlsProtocolCore, sslproto.SSLProtocol):
    """sslproto.SSLProtocol with the record path in Rust."""

    def _get_app_transport(self):
        if self._app_transport is None:
            if self._app_transport_created:
                raise RuntimeError('Creating _SSLProtocolTransport twice')
            self._app_transport = _SSLProtocolTransport(self._loop, self)
            self._app_transport_created = True
        return self._app_transport
