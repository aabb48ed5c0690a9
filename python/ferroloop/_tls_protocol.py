"""asyncio's SSLProtocol with its per-record methods native.

The state machine (handshake, shutdown, timeouts, error routing) is
``asyncio.sslproto.SSLProtocol``'s own Python code, unchanged.  The methods
that run for every TLS record (get_buffer, buffer_updated, _do_read,
_do_write, _write_appdata, _process_outgoing and the flow-control checks)
come first in the MRO from ``_ferroloop.TlsProtocolCore``, which mirrors
them method for method (see src/tls_protocol.rs).  The app transport's
``write`` goes straight to the native ``_write_appdata``.

The stock ``__init__`` runs with the instance's ``max_size`` at 0 (see
``SSLProtocol.__init__``), so it does not allocate a receive buffer that
ferroloop's socket transport would never use.

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

    def __init__(self, *args, **kwargs):
        # The stock __init__ starts with
        # ``self._ssl_buffer = bytearray(self.max_size)``: 256 KiB allocated
        # and zero-filled per connection, as much work as the rest of a
        # handshake's Python code. ferroloop's socket transport reads into
        # the incoming BIO without that buffer (src/tls_read.rs), so
        # allocate it empty; get_buffer() still grows it for a caller.
        self.max_size = 0
        try:
            super().__init__(*args, **kwargs)
        finally:
            del self.max_size

    def _get_app_transport(self):
        if self._app_transport is None:
            if self._app_transport_created:
                raise RuntimeError('Creating _SSLProtocolTransport twice')
            self._app_transport = _SSLProtocolTransport(self._loop, self)
            self._app_transport_created = True
        return self._app_transport
