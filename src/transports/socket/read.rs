//! The read path: starting and stopping reads, and one read handed to the
//! protocol (as a `bytes`, into its own buffer, or into ferroloop's
//! SSLProtocol), EOF included.

use ferroloop_engine::sockio;
use pyo3::exceptions::PyRuntimeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::{SocketTransport, MAX_READ};
use crate::fd_watchers::Side;
use crate::pyhelpers::{asyncio_logger, is_exit};
use crate::read_into_bytes;
use crate::sock_calls::os_error;
use crate::stream_delivery::{self, Received};
use crate::stream_direct;
use crate::tls_protocol::TlsProtocolCore;
use crate::tls_read::{self, TlsReceived};
use crate::writable_buffer::recv_into_object;

impl SocketTransport {
    /// Starts reading unless paused or closing (the transport's `_add_reader`).
    pub(super) fn start_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        {
            let st = this.st(py);
            if st.closing || st.paused {
                return Ok(());
            }
        }
        let cb = slf.getattr(intern!(py, "_read_ready"))?;
        this.core_ref()
            .watch_fd(
                py,
                this.fd,
                Side::Read,
                &cb,
                PyTuple::empty(py),
                this.context(py),
            )
            .map(drop)
    }

    pub(super) fn stop_reading(&self, py: Python<'_>) -> PyResult<()> {
        self.core_ref()
            .unwatch_fd(py, self.fd, Side::Read)
            .map(drop)
    }

    fn on_eof(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.is_debug() {
            asyncio_logger(py)?.call_method1("debug", ("%r received EOF", slf))?;
        }
        let Some(protocol) = this.protocol(py) else {
            return Ok(());
        };
        match protocol.bind(py).call_method0(intern!(py, "eof_received")) {
            Err(err) if is_exit(py, &err) => Err(err),
            Err(err) => Self::fatal_error(
                slf,
                err,
                "Fatal error: protocol.eof_received() call failed.",
            ),
            Ok(keep_open) => {
                if keep_open.is_truthy()? {
                    // The protocol keeps the write side open; nothing more can be read.
                    this.stop_reading(py)
                } else {
                    Self::close(slf)
                }
            }
        }
    }

    pub(super) fn read_into_protocol_buffer(
        slf: &Bound<'_, Self>,
        protocol: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        // ferroloop's own SSLProtocol: straight into its incoming BIO.
        if let Ok(tls) = protocol.cast::<TlsProtocolCore>() {
            return Self::read_into_tls(slf, tls);
        }
        let buf = match protocol
            .call_method1(intern!(py, "get_buffer"), (-1,))
            .and_then(|buf| {
                if buf.len()? == 0 {
                    Err(PyRuntimeError::new_err(
                        "get_buffer() returned an empty buffer",
                    ))
                } else {
                    Ok(buf)
                }
            }) {
            Ok(buf) => buf,
            Err(err) if is_exit(py, &err) => return Err(err),
            Err(err) => {
                return Self::fatal_error(
                    slf,
                    err,
                    "Fatal error: protocol.get_buffer() call failed.",
                )
            }
        };
        if slf.get().st(py).sock.is_none() {
            return Ok(()); // get_buffer() closed the transport
        }
        let nbytes: usize = match recv_into_object(slf.get().fd, &buf) {
            Ok(Ok(n)) => n,
            Ok(Err(e)) if sockio::would_block(&e) => return Ok(()),
            Ok(Err(e)) => {
                return Self::fatal_error(slf, os_error(e), "Fatal read error on socket transport")
            }
            // Not a writable buffer: the TypeError recv_into raises.
            Err(err) => return Self::fatal_error(slf, err, "Fatal read error on socket transport"),
        };
        if nbytes == 0 {
            return Self::on_eof(slf);
        }
        match protocol.call_method1(intern!(py, "buffer_updated"), (nbytes,)) {
            Err(err) if is_exit(py, &err) => Err(err),
            Err(err) => Self::fatal_error(
                slf,
                err,
                "Fatal error: protocol.buffer_updated() call failed.",
            ),
            Ok(_) => Ok(()),
        }
    }

    /// read_into_protocol_buffer for ferroloop's SSLProtocol: the same
    /// steps (get_buffer's size, recv, buffer_updated) and the same error
    /// messages, with the ciphertext going from the shared read buffer into
    /// the incoming BIO instead of through `_ssl_buffer` (see `tls_read`).
    fn read_into_tls(slf: &Bound<'_, Self>, tls: &Bound<'_, TlsProtocolCore>) -> PyResult<()> {
        let py = slf.py();
        let fail = |err: PyErr, message: &str| {
            if is_exit(py, &err) {
                Err(err)
            } else {
                Self::fatal_error(slf, err, message)
            }
        };
        let size_and_bio = TlsProtocolCore::read_size(tls)
            .and_then(|size| Ok((size, TlsProtocolCore::incoming_bio(tls)?)));
        let (size, incoming) = match size_and_bio {
            Ok(found) => found,
            Err(err) => return fail(err, "Fatal error: protocol.get_buffer() call failed."),
        };
        let fed = match tls_read::recv_into_bio(slf.get().fd, size, &incoming) {
            Ok(Ok(TlsReceived::Eof)) => return Self::on_eof(slf),
            Ok(Ok(TlsReceived::InBio)) => Ok(()),
            Ok(Ok(TlsReceived::Copied(data))) => incoming
                .call_method1(intern!(py, "write"), (data,))
                .map(drop),
            Ok(Err(e)) if sockio::would_block(&e) => return Ok(()),
            Ok(Err(e)) => {
                return Self::fatal_error(slf, os_error(e), "Fatal read error on socket transport")
            }
            Err(err) => Err(err),
        };
        match fed.and_then(|()| TlsProtocolCore::advance(tls)) {
            Err(err) => fail(err, "Fatal error: protocol.buffer_updated() call failed."),
            Ok(()) => Ok(()),
        }
    }

    pub(super) fn read_into_bytes(
        slf: &Bound<'_, Self>,
        protocol: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let received = match stream_delivery::probe(protocol) {
            Some(target) => {
                let ask_queued = this.st(py).large_stream_reads;
                let received =
                    stream_delivery::recv_into_stream(this.fd, target, MAX_READ, ask_queued);
                let large = matches!(&received,
                    Ok(Received::Streamed(_, n)) if *n >= stream_direct::ASK_QUEUED_AFTER);
                if large != ask_queued {
                    this.st(py).large_stream_reads = large;
                }
                received
            }
            None => read_into_bytes::recv_bytes(py, this.fd, MAX_READ, &this.large_reads)
                .map(Received::Bytes),
        };
        let data = match received {
            Ok(Received::Bytes(data)) => data,
            Ok(Received::Eof) => return Self::on_eof(slf),
            Ok(Received::Streamed(target, _)) => {
                return match target.finish() {
                    Err(err) if is_exit(py, &err) => Err(err),
                    Err(err) => Self::fatal_error(
                        slf,
                        err,
                        "Fatal error: protocol.data_received() call failed.",
                    ),
                    Ok(_) => Ok(()),
                }
            }
            Err(e) if sockio::would_block(&e) => return Ok(()),
            Err(e) => {
                return Self::fatal_error(slf, os_error(e), "Fatal read error on socket transport")
            }
        };
        if data.as_bytes().is_empty() {
            return Self::on_eof(slf);
        }
        match protocol.call_method1(intern!(py, "data_received"), (data,)) {
            Err(err) if is_exit(py, &err) => Err(err),
            Err(err) => Self::fatal_error(
                slf,
                err,
                "Fatal error: protocol.data_received() call failed.",
            ),
            Ok(_) => Ok(()),
        }
    }
}
