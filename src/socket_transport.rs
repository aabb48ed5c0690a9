//! `SocketTransport`: asyncio's stream transport over a connected socket
//! (selector_events' `_SelectorSocketTransport`), native.
//!
//! Reads go straight from the kernel into one shared buffer and reach the
//! protocol as a `bytes` (`data_received`) or land in the protocol's own
//! buffer (`BufferedProtocol.get_buffer` / `buffer_updated`). Writes are sent
//! at once; only what the kernel does not take is copied into a Rust buffer
//! and flushed when the socket becomes writable, with asyncio's flow control
//! (`pause_writing` / `resume_writing` at the water marks).
//!
//! All state lives in a `GilCell`; as everywhere in ferroloop, no Python code
//! runs while it is borrowed: methods copy out what they need, release the
//! borrow, then call the protocol.

use std::os::fd::RawFd;

use ferroloop_engine::write_queue::{COALESCE_MAX, MAX_IOV};
use ferroloop_engine::{sockio, WriteQueue};
use pyo3::exceptions::{PyAttributeError, PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyTuple};
use pyo3::{intern, PyTraverseError, PyVisit};

use crate::extra_info::ExtraInfo;
use crate::fd_watchers::Side;
use crate::gil_cell::GilCell;
use crate::loop_core::LoopCore;
use crate::pyhelpers::{asyncio_logger, is_exit};
use crate::sock_calls::{os_error, recv_bytes_copied};
use crate::stream_delivery::{self, Received};
use crate::tls_protocol::TlsProtocolCore;
use crate::tls_read::{self, TlsReceived};
use crate::writable_buffer::recv_into_object;
use crate::write_limits::WriteLimits;

/// asyncio's `max_size`: the most one read asks the kernel for.
const MAX_READ: usize = crate::sock_calls::SHARED_READ_MAX;
/// asyncio's `constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES`.
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u32 = 5;

struct TransportState {
    /// The loop (`core`) is no longer reported (`_loop` is None) once the
    /// connection is lost.
    loop_released: bool,
    /// The Python socket object, kept alive (it owns the fd) until the
    /// connection is lost.
    sock: Option<Py<PyAny>>,
    protocol: Option<Py<PyAny>>,
    /// The protocol is a `BufferedProtocol`.
    buffered: bool,
    protocol_connected: bool,
    /// get_extra_info()'s mapping, built on first use.
    extra: ExtraInfo,
    server: Option<Py<PyAny>>,
    buffer: WriteQueue<BytesChunk>,
    /// Non-zero once connection_lost is scheduled; counts writes after that.
    conn_lost: u32,
    closing: bool,
    /// pause_reading() was called.
    paused: bool,
    /// write_eof() was called.
    eof: bool,
    protocol_paused: bool,
    limits: WriteLimits,
    /// What few connections have, allocated when one is set.
    rare: Option<Box<Rare>>,
}

struct Rare {
    /// sendfile's "buffer drained" future.
    empty_waiter: Option<Py<PyAny>>,
    /// The `contextvars.Context` every callback of this transport runs in
    /// (3.15's `context=`); None: each callback copies the context current
    /// when it is scheduled, as before 3.15.
    context: Option<Py<PyAny>>,
}

impl TransportState {
    fn empty_waiter(&self) -> Option<&Py<PyAny>> {
        self.rare.as_ref().and_then(|r| r.empty_waiter.as_ref())
    }

    fn context(&self) -> Option<&Py<PyAny>> {
        self.rare.as_ref().and_then(|r| r.context.as_ref())
    }

    /// Replaces the sendfile waiter; returns the old one (to drop unborrowed).
    fn set_empty_waiter(&mut self, waiter: Option<Py<PyAny>>) -> Option<Py<PyAny>> {
        match (&mut self.rare, waiter) {
            (None, None) => None,
            (Some(rare), waiter) => std::mem::replace(&mut rare.empty_waiter, waiter),
            (rare @ None, waiter) => {
                *rare = Some(Box::new(Rare {
                    empty_waiter: waiter,
                    context: None,
                }));
                None
            }
        }
    }
}

/// `subclass`: the class the loop instantiates is the Python subclass
/// `ferroloop._socket_transport.SocketTransport`, whose instances have a
/// `__dict__` so that methods can be patched per instance
/// (`mock.patch.object(transport, "write")`), as on the stock loop's
/// transports. Only Python-level lookups see such a patch; the native paths
/// call the Rust methods directly. The subclass's `__init__` calls
/// `_connect()`, which schedules connection_made.
#[pyclass(frozen, weakref, subclass, module = "ferroloop._ferroloop")]
pub struct SocketTransport {
    fd: RawFd,
    core: Py<LoopCore>,
    state: GilCell<TransportState>,
}

static BUFFERED_PROTOCOL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static SET_RESULT_UNLESS_CANCELLED: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

pub(crate) fn cached<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    module: &str,
    name: &str,
) -> PyResult<&'py Bound<'py, PyAny>> {
    Ok(cell
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import(module)?.getattr(name)?.unbind())
        })?
        .bind(py))
}

impl SocketTransport {
    fn st(&self, py: Python<'_>) -> crate::gil_cell::GilRefMut<'_, TransportState> {
        self.state.borrow_mut(py)
    }

    /// The loop object, None once the connection is lost.
    fn loop_obj(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        if self.st(py).loop_released {
            return None;
        }
        Some(self.core.clone_ref(py).into_any())
    }

    fn core_ref(&self) -> &LoopCore {
        self.core.get()
    }

    fn is_debug(&self) -> bool {
        self.core_ref().is_debug()
    }

    fn call_soon(
        &self,
        py: Python<'_>,
        callback: &Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        let context = self.context(py);
        self.core_ref()
            .call_soon(py, callback, args, context)
            .map(drop)
    }

    fn context<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        self.st(py).context().map(|c| c.bind(py).clone())
    }

    /// Starts reading unless paused or closing (the transport's `_add_reader`).
    fn start_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
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

    fn stop_reading(&self, py: Python<'_>) -> PyResult<()> {
        self.core_ref()
            .unwatch_fd(py, self.fd, Side::Read)
            .map(drop)
    }

    fn start_writing(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let cb = slf.getattr(intern!(py, "_write_ready"))?;
        slf.get()
            .core_ref()
            .watch_fd(
                py,
                slf.get().fd,
                Side::Write,
                &cb,
                PyTuple::empty(py),
                slf.get().context(py),
            )
            .map(drop)
    }

    fn stop_writing(&self, py: Python<'_>) -> PyResult<()> {
        self.core_ref()
            .unwatch_fd(py, self.fd, Side::Write)
            .map(drop)
    }

    fn protocol(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.st(py).protocol.as_ref().map(|p| p.clone_ref(py))
    }

    /// asyncio's `_fatal_error`: OSErrors are expected network weather (logged
    /// in debug mode only); anything else goes to the exception handler.
    /// Then the transport is force-closed.
    fn fatal_error(slf: &Bound<'_, Self>, err: PyErr, message: &str) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if err.is_instance_of::<PyOSError>(py) {
            if this.is_debug() {
                let kwargs = PyDict::new(py);
                kwargs.set_item("exc_info", err.clone_ref(py).into_value(py))?;
                asyncio_logger(py)?.call_method(
                    "debug",
                    ("%r: %s", slf, message),
                    Some(&kwargs),
                )?;
            }
        } else {
            let loop_obj = this.loop_obj(py);
            let protocol = this.protocol(py);
            if let Some(loop_obj) = loop_obj {
                let context = PyDict::new(py);
                context.set_item("message", message)?;
                context.set_item("exception", err.clone_ref(py).into_value(py))?;
                context.set_item("transport", slf)?;
                context.set_item("protocol", protocol)?;
                loop_obj
                    .bind(py)
                    .call_method1(intern!(py, "call_exception_handler"), (context,))?;
            }
        }
        Self::force_close(slf, Some(err.into_value(py).into_any()))
    }

    /// asyncio's `_force_close`: drop pending writes, stop reading, schedule
    /// connection_lost(exc).
    fn force_close(slf: &Bound<'_, Self>, exc: Option<Py<PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (had_buffer, was_closing) = {
            let mut st = this.st(py);
            if st.conn_lost > 0 {
                return Ok(());
            }
            let had_buffer = !st.buffer.is_empty();
            st.buffer.clear();
            let was_closing = st.closing;
            st.closing = true;
            st.conn_lost += 1;
            (had_buffer, was_closing)
        };
        if had_buffer {
            this.stop_writing(py)?;
        }
        if !was_closing {
            this.stop_reading(py)?;
        }
        let cb = slf.getattr(intern!(py, "_call_connection_lost"))?;
        let exc = exc.unwrap_or_else(|| py.None());
        this.call_soon(py, &cb, PyTuple::new(py, [exc])?)
    }

    fn maybe_pause_protocol(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let protocol = {
            let mut st = this.st(py);
            if (st.buffer.len() as f64) <= st.limits.high_water() || st.protocol_paused {
                return Ok(());
            }
            st.protocol_paused = true;
            st.protocol.as_ref().map(|p| p.clone_ref(py))
        };
        if let Some(protocol) = protocol {
            if let Err(err) = protocol.bind(py).call_method0(intern!(py, "pause_writing")) {
                Self::report_flow_control_error(
                    slf,
                    err,
                    "protocol.pause_writing() failed",
                    &protocol,
                )?;
            }
        }
        Ok(())
    }

    fn maybe_resume_protocol(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let protocol = {
            let mut st = this.st(py);
            if !(st.protocol_paused && (st.buffer.len() as f64) <= st.limits.low_water()) {
                return Ok(());
            }
            st.protocol_paused = false;
            st.protocol.as_ref().map(|p| p.clone_ref(py))
        };
        if let Some(protocol) = protocol {
            if let Err(err) = protocol
                .bind(py)
                .call_method0(intern!(py, "resume_writing"))
            {
                Self::report_flow_control_error(
                    slf,
                    err,
                    "protocol.resume_writing() failed",
                    &protocol,
                )?;
            }
        }
        Ok(())
    }

    fn report_flow_control_error(
        slf: &Bound<'_, Self>,
        err: PyErr,
        message: &str,
        protocol: &Py<PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        if is_exit(py, &err) {
            return Err(err);
        }
        let loop_obj = slf.get().loop_obj(py);
        if let Some(loop_obj) = loop_obj {
            let context = PyDict::new(py);
            context.set_item("message", message)?;
            context.set_item("exception", err.into_value(py))?;
            context.set_item("transport", slf)?;
            context.set_item("protocol", protocol)?;
            loop_obj
                .bind(py)
                .call_method1(intern!(py, "call_exception_handler"), (context,))?;
        }
        Ok(())
    }

    /// Sends what it can of `data` now; queues the rest (by reference when
    /// it is large: a `bytes` never changes).
    fn write_bytes(slf: &Bound<'_, Self>, data: &Bound<'_, PyBytes>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let bytes = data.as_bytes();
        let buffer_was_empty = this.st(py).buffer.is_empty();
        let mut sent = 0;
        if buffer_was_empty {
            match sockio::send(this.fd, bytes) {
                Ok(n) => {
                    sent = n;
                    if sent == bytes.len() {
                        return Ok(());
                    }
                }
                Err(e) if sockio::would_block(&e) => {}
                Err(e) => {
                    return Self::fatal_error(
                        slf,
                        os_error(e),
                        "Fatal write error on socket transport",
                    );
                }
            }
            Self::start_writing(slf)?;
        }
        {
            let mut st = this.st(py);
            if bytes.len() - sent > COALESCE_MAX {
                st.buffer.push_shared(BytesChunk::new(data, sent));
            } else {
                st.buffer.push_copy(&bytes[sent..]);
            }
        }
        Self::maybe_pause_protocol(slf)
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

    fn read_into_protocol_buffer(
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

    fn read_into_bytes(slf: &Bound<'_, Self>, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let received = match stream_delivery::probe(protocol) {
            Some(target) => stream_delivery::recv_into_stream(slf.get().fd, target, MAX_READ),
            None => recv_bytes_copied(py, slf.get().fd, MAX_READ).map(Received::Bytes),
        };
        let data = match received {
            Ok(Received::Bytes(data)) => data,
            Ok(Received::Eof) => return Self::on_eof(slf),
            Ok(Received::Streamed(target)) => {
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

    fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let buffer_empty = {
            let mut st = this.st(py);
            if st.closing {
                return Ok(());
            }
            st.closing = true;
            let empty = st.buffer.is_empty();
            if empty {
                st.conn_lost += 1;
            }
            empty
        };
        this.stop_reading(py)?;
        if buffer_empty {
            this.stop_writing(py)?;
            let cb = slf.getattr(intern!(py, "_call_connection_lost"))?;
            this.call_soon(py, &cb, PyTuple::new(py, [py.None()])?)?;
        }
        Ok(())
    }
}

/// `server._attach()` / `server._detach()`: from Python 3.13 on they take the
/// transport (for `Server.close_clients` / `abort_clients`).
fn server_slot(
    py: Python<'_>,
    server: &Bound<'_, PyAny>,
    method: &str,
    transport: &Bound<'_, SocketTransport>,
) -> PyResult<()> {
    if py.version_info() >= (3, 13) {
        server.call_method1(method, (transport,))?;
    } else {
        server.call_method0(method)?;
    }
    Ok(())
}

/// What `transport.__class__` answers: see `SocketTransportView` in
/// python/ferroloop/_socket_transport.py.
static TRANSPORT_VIEW: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Bytes of a bytes-like object, as `write()` accepts them.
/// As an exact `bytes` (the object itself when it is one, else a copy), so
/// the write path can keep a reference instead of copying.
fn with_bytes<R>(
    data: &Bound<'_, PyAny>,
    f: impl FnOnce(&Bound<'_, PyBytes>) -> PyResult<R>,
) -> PyResult<R> {
    let py = data.py();
    if let Ok(bytes) = data.cast_exact::<PyBytes>() {
        return f(bytes);
    }
    if let Ok(bytes) = data.cast::<PyBytes>() {
        return f(&PyBytes::new(py, bytes.as_bytes()));
    }
    let is_bytes_like = data.is_instance_of::<pyo3::types::PyByteArray>()
        || data.is_instance_of::<pyo3::types::PyMemoryView>();
    if !is_bytes_like {
        // 3.13 names the accepted types.
        let accepted = if py.version_info() >= (3, 13) {
            "a bytes, bytearray, or memoryview object"
        } else {
            "a bytes-like object"
        };
        return Err(PyTypeError::new_err(format!(
            "data argument must be {accepted}, not {}",
            data.get_type().name()?.repr()?
        )));
    }
    let copied = PyBytes::new(py, &pyo3::buffer::PyBuffer::<u8>::get(data)?.to_vec(py)?);
    f(&copied)
}

/// A queued tail of a `bytes` object, from `start` on.
struct BytesChunk {
    _owner: Py<PyBytes>,
    ptr: *const u8,
    len: usize,
}

impl BytesChunk {
    fn new(bytes: &Bound<'_, PyBytes>, start: usize) -> Self {
        let all = bytes.as_bytes();
        let tail = &all[start.min(all.len())..];
        BytesChunk {
            _owner: bytes.clone().unbind(),
            ptr: tail.as_ptr(),
            len: tail.len(),
        }
    }
}

impl AsRef<[u8]> for BytesChunk {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `ptr..ptr+len` lies inside the data of an exact `bytes`
        // object, which is immutable and kept alive by `_owner` for as long as
        // this chunk exists.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

// SAFETY: the pointer refers to immutable memory owned by `_owner` (a
// `Py<PyBytes>`, itself Send); moving the chunk between threads moves that
// ownership with it.
unsafe impl Send for BytesChunk {}

#[pymethods]
impl SocketTransport {
    #[new]
    #[pyo3(signature = (r#loop, sock, protocol, waiter=None, extra=None, server=None, context=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        r#loop: &Bound<'_, PyAny>,
        sock: &Bound<'_, PyAny>,
        protocol: &Bound<'_, PyAny>,
        waiter: Option<&Bound<'_, PyAny>>,
        extra: Option<&Bound<'_, PyAny>>,
        server: Option<&Bound<'_, PyAny>>,
        context: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        // `waiter` is `_connect()`'s; accepted here too because Python
        // passes the constructor's arguments to both `__new__` and `__init__`.
        let _ = waiter;
        let core: Py<LoopCore> = r#loop.cast::<LoopCore>()?.clone().unbind();
        let fd: RawFd = sock.call_method0(intern!(py, "fileno"))?.extract()?;
        if fd < 0 {
            return Err(PyValueError::new_err(format!(
                "Invalid file descriptor: {fd}"
            )));
        }
        let extra = ExtraInfo::capture(sock, fd, extra)?;
        let buffered = protocol.is_instance(cached(
            py,
            &BUFFERED_PROTOCOL,
            "asyncio.protocols",
            "BufferedProtocol",
        )?)?;
        let state = TransportState {
            loop_released: false,
            sock: Some(sock.clone().unbind()),
            protocol: Some(protocol.clone().unbind()),
            buffered,
            protocol_connected: true,
            extra,
            server: server.filter(|s| !s.is_none()).map(|s| s.clone().unbind()),
            buffer: WriteQueue::new(),
            conn_lost: 0,
            closing: false,
            paused: false,
            eof: false,
            protocol_paused: false,
            limits: WriteLimits::default(py),
            rare: context.filter(|c| !c.is_none()).map(|c| {
                Box::new(Rare {
                    empty_waiter: None,
                    context: Some(c.clone().unbind()),
                })
            }),
        };
        Ok(SocketTransport {
            fd,
            core,
            state: GilCell::new(state),
        })
    }

    /// The second half of construction, once the object exists: attach to
    /// the server, schedule connection_made, the first read and the waiter.
    #[pyo3(signature = (waiter=None))]
    fn _connect(slf: &Bound<'_, Self>, waiter: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let transport = slf;
        let this = transport.get();
        let (server, sock, protocol) = {
            let st = this.st(py);
            (
                st.server.as_ref().map(|s| s.clone_ref(py)),
                st.sock.as_ref().map(|s| s.clone_ref(py)),
                st.protocol.as_ref().map(|p| p.clone_ref(py)),
            )
        };
        let (Some(sock), Some(protocol)) = (sock, protocol) else {
            return Err(PyRuntimeError::new_err("the transport is closed"));
        };
        let (sock, protocol) = (sock.bind(py), protocol.bind(py));
        if let Some(server) = server {
            server_slot(py, server.bind(py), "_attach", transport)?;
        }
        // Disable Nagle: small writes go out without waiting for the ACK.
        crate::nodelay::set_nodelay(sock, this.fd)?;
        this.call_soon(
            py,
            &protocol.getattr(intern!(py, "connection_made"))?,
            PyTuple::new(py, [&transport])?,
        )?;
        // Reading starts only once connection_made() has run.
        this.call_soon(
            py,
            &transport.getattr(intern!(py, "_start_reading"))?,
            PyTuple::empty(py),
        )?;
        if let Some(waiter) = waiter.filter(|w| !w.is_none()) {
            let set = cached(
                py,
                &SET_RESULT_UNLESS_CANCELLED,
                "asyncio.futures",
                "_set_result_unless_cancelled",
            )?;
            this.call_soon(
                py,
                set,
                PyTuple::new(py, [waiter.clone(), py.None().into_bound(py)])?,
            )?;
        }
        Ok(())
    }

    /// isinstance(transport, asyncio.Transport) holds through this.
    #[getter(__class__)]
    fn class_view(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(cached(
            py,
            &TRANSPORT_VIEW,
            "ferroloop._socket_transport",
            "SocketTransportView",
        )?
        .clone()
        .unbind())
    }

    fn _start_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::start_reading(slf)
    }

    /// The fd is readable: one read, handed to the protocol.
    fn _read_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let (protocol, buffered) = {
            let st = slf.get().st(py);
            if st.conn_lost > 0 {
                return Ok(());
            }
            match &st.protocol {
                Some(p) => (p.clone_ref(py), st.buffered),
                None => return Ok(()),
            }
        };
        if buffered {
            Self::read_into_protocol_buffer(slf, protocol.bind(py))
        } else {
            Self::read_into_bytes(slf, protocol.bind(py))
        }
    }

    /// The fd is writable: flush the buffer.
    fn _write_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let sent = {
            let mut st = this.st(py);
            if st.conn_lost > 0 || st.buffer.is_empty() {
                return Ok(());
            }
            let mut slices = [std::io::IoSlice::new(&[]); MAX_IOV];
            let count = st.buffer.io_slices(&mut slices);
            match sockio::send_vectored(this.fd, &slices[..count]) {
                Ok(n) => {
                    st.buffer.consume(n);
                    Ok(())
                }
                Err(e) if sockio::would_block(&e) => return Ok(()),
                Err(e) => {
                    st.buffer.clear();
                    Err(e)
                }
            }
        };
        if let Err(e) = sent {
            this.stop_writing(py)?;
            let err: PyErr = os_error(e);
            let waiter = this.st(py).empty_waiter().map(|w| w.clone_ref(py));
            Self::fatal_error(
                slf,
                err.clone_ref(py),
                "Fatal write error on socket transport",
            )?;
            if let Some(waiter) = waiter {
                waiter
                    .bind(py)
                    .call_method1(intern!(py, "set_exception"), (err.into_value(py),))?;
            }
            return Ok(());
        }
        Self::maybe_resume_protocol(slf)?; // may write more
        let (empty, closing, eof, waiter) = {
            let st = this.st(py);
            (
                st.buffer.is_empty(),
                st.closing,
                st.eof,
                st.empty_waiter().map(|w| w.clone_ref(py)),
            )
        };
        if empty {
            this.stop_writing(py)?;
            if let Some(waiter) = waiter {
                waiter
                    .bind(py)
                    .call_method1(intern!(py, "set_result"), (py.None(),))?;
            }
            if closing {
                Self::_call_connection_lost(slf, None)?;
            } else if eof {
                sockio::shutdown_write(this.fd)?;
            }
        }
        Ok(())
    }

    fn write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        with_bytes(data, |bytes| {
            {
                let mut st = slf.get().st(py);
                if st.eof {
                    return Err(PyRuntimeError::new_err(
                        "Cannot call write() after write_eof()",
                    ));
                }
                if st.empty_waiter().is_some() {
                    return Err(PyRuntimeError::new_err(
                        "unable to write; sendfile is in progress",
                    ));
                }
                if bytes.as_bytes().is_empty() {
                    return Ok(());
                }
                if st.conn_lost > 0 {
                    let warn = st.conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES;
                    st.conn_lost += 1;
                    drop(st);
                    if warn {
                        asyncio_logger(py)?
                            .call_method1("warning", ("socket.send() raised exception.",))?;
                    }
                    return Ok(());
                }
            }
            Self::write_bytes(slf, bytes)
        })
    }

    fn writelines(slf: &Bound<'_, Self>, list_of_data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let joined = PyBytes::new(py, b"").call_method1(intern!(py, "join"), (list_of_data,))?;
        Self::write(slf, &joined)
    }

    fn write_eof(&self, py: Python<'_>) -> PyResult<()> {
        let shutdown_now = {
            let mut st = self.st(py);
            if st.closing || st.eof {
                return Ok(());
            }
            st.eof = true;
            st.buffer.is_empty()
        };
        if shutdown_now {
            sockio::shutdown_write(self.fd)?;
        }
        Ok(())
    }

    fn can_write_eof(&self) -> bool {
        true
    }

    #[pyo3(name = "close")]
    fn py_close(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::close(slf)
    }

    fn abort(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::force_close(slf, None)
    }

    fn _force_close(slf: &Bound<'_, Self>, exc: Option<Py<PyAny>>) -> PyResult<()> {
        Self::force_close(slf, exc.filter(|e| !e.is_none(slf.py())))
    }

    #[pyo3(signature = (exc, message = "Fatal error on transport"))]
    fn _fatal_error(slf: &Bound<'_, Self>, exc: &Bound<'_, PyAny>, message: &str) -> PyResult<()> {
        Self::fatal_error(slf, PyErr::from_value(exc.clone()), message)
    }

    /// Runs connection_lost(exc), then releases the socket, the protocol, the
    /// loop and the server slot.
    #[pyo3(signature = (exc=None))]
    fn _call_connection_lost(slf: &Bound<'_, Self>, exc: Option<Py<PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (protocol, connected) = {
            let st = this.st(py);
            (
                st.protocol.as_ref().map(|p| p.clone_ref(py)),
                st.protocol_connected,
            )
        };
        let result = match protocol {
            Some(p) if connected => p
                .bind(py)
                .call_method1(
                    intern!(py, "connection_lost"),
                    (exc.unwrap_or_else(|| py.None()),),
                )
                .map(drop),
            _ => Ok(()),
        };
        let (sock, server, waiter, released) = {
            let mut st = this.st(py);
            let released = st.protocol.take();
            st.loop_released = true;
            (
                st.sock.take(),
                st.server.take(),
                st.empty_waiter().map(|w| w.clone_ref(py)),
                released,
            )
        };
        drop(released);
        let closed = match sock {
            Some(sock) => sock.bind(py).call_method0(intern!(py, "close")).map(drop),
            None => Ok(()),
        };
        let detached = match server {
            Some(server) => server_slot(py, server.bind(py), "_detach", slf),
            None => Ok(()),
        };
        if let Some(waiter) = waiter {
            let exc = pyo3::exceptions::PyConnectionError::new_err("Connection is closed by peer");
            waiter
                .bind(py)
                .call_method1(intern!(py, "set_exception"), (exc.into_value(py),))?;
        }
        result.and(closed).and(detached)
    }

    fn is_closing(&self, py: Python<'_>) -> bool {
        self.st(py).closing
    }

    fn is_reading(&self, py: Python<'_>) -> bool {
        let st = self.st(py);
        !st.closing && !st.paused
    }

    fn pause_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        {
            let mut st = this.st(py);
            if st.closing || st.paused {
                return Ok(());
            }
            st.paused = true;
        }
        this.stop_reading(py)?;
        if this.is_debug() {
            asyncio_logger(py)?.call_method1("debug", ("%r pauses reading", slf))?;
        }
        Ok(())
    }

    fn resume_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        {
            let mut st = this.st(py);
            if st.closing || !st.paused {
                return Ok(());
            }
            st.paused = false;
        }
        Self::start_reading(slf)?;
        if this.is_debug() {
            asyncio_logger(py)?.call_method1("debug", ("%r resumes reading", slf))?;
        }
        Ok(())
    }

    #[pyo3(signature = (name, default=None))]
    fn get_extra_info(
        &self,
        py: Python<'_>,
        name: &Bound<'_, PyAny>,
        default: Option<Py<PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let ready = self.st(py).extra.ready(py);
        let extra = match ready {
            Ok(dict) => dict,
            Err(pending) => {
                let dict = pending.build(py)?;
                let (dict, old) = self.st(py).extra.install(py, dict);
                drop(old); // with the state released
                dict
            }
        };
        Ok(match extra.bind(py).get_item(name)? {
            Some(v) => v.unbind(),
            None => default.unwrap_or_else(|| py.None()),
        })
    }

    fn set_protocol(&self, py: Python<'_>, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let buffered = protocol.is_instance(cached(
            py,
            &BUFFERED_PROTOCOL,
            "asyncio.protocols",
            "BufferedProtocol",
        )?)?;
        let old = {
            let mut st = self.st(py);
            st.buffered = buffered;
            st.protocol_connected = true;
            st.protocol.replace(protocol.clone().unbind())
        };
        drop(old);
        Ok(())
    }

    fn get_protocol(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.protocol(py)
    }

    #[pyo3(signature = (high=None, low=None))]
    fn set_write_buffer_limits(
        slf: &Bound<'_, Self>,
        high: Option<Bound<'_, PyAny>>,
        low: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let limits = WriteLimits::new(py, high, low)?;
        let old = std::mem::replace(&mut slf.get().st(py).limits, limits);
        drop(old); // with the state released
        Self::maybe_pause_protocol(slf)
    }

    fn get_write_buffer_limits(&self, py: Python<'_>) -> (Py<PyAny>, Py<PyAny>) {
        self.st(py).limits.as_tuple(py)
    }

    fn get_write_buffer_size(&self, py: Python<'_>) -> usize {
        self.st(py).buffer.len()
    }

    /// sendfile: a future done once the write buffer is empty.
    fn _make_empty_waiter(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let empty = {
            let st = self.st(py);
            if st.empty_waiter().is_some() {
                return Err(PyRuntimeError::new_err("Empty waiter is already set"));
            }
            st.buffer.is_empty()
        };
        let loop_obj = self.loop_obj(py);
        let Some(loop_obj) = loop_obj else {
            return Err(PyRuntimeError::new_err("Transport is closed"));
        };
        let waiter = loop_obj
            .bind(py)
            .call_method0(intern!(py, "create_future"))?;
        if empty {
            waiter.call_method1(intern!(py, "set_result"), (py.None(),))?;
        }
        let old = self.st(py).set_empty_waiter(Some(waiter.clone().unbind()));
        drop(old);
        Ok(waiter.unbind())
    }

    fn _reset_empty_waiter(&self, py: Python<'_>) {
        let old = self.st(py).set_empty_waiter(None);
        drop(old);
    }

    #[getter]
    fn _sock(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.st(py).sock.as_ref().map(|s| s.clone_ref(py))
    }

    /// Tests wrap the stock transport's socket in place (`transport._sock =
    /// Wrapper(transport._sock)`). Allowed for an object on the same fd: the
    /// native I/O keeps using the fd; the object is what `_sock` reports
    /// and what is closed at the end.
    #[setter(_sock)]
    fn set_sock(&self, py: Python<'_>, value: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        let Some(value) = value else {
            return Err(PyAttributeError::new_err("can't delete attribute '_sock'"));
        };
        let fd: RawFd = value.call_method0(intern!(py, "fileno"))?.extract()?;
        if fd != self.fd {
            return Err(PyValueError::new_err(format!(
                "_sock must be a socket on fd {}, got one on fd {fd}",
                self.fd
            )));
        }
        let mut st = self.st(py);
        if st.sock.is_none() {
            return Err(PyValueError::new_err("the transport is closed"));
        }
        let old = st.sock.replace(value.unbind());
        drop(st);
        drop(old);
        Ok(())
    }

    /// The stock transport's read callback, None once it is closing (3.13+
    /// sets it to None in close()); tests read it to tell a closed transport.
    #[getter]
    fn _read_ready_cb(slf: &Bound<'_, Self>) -> PyResult<Option<Py<PyAny>>> {
        if slf.get().st(slf.py()).closing {
            return Ok(None);
        }
        Ok(Some(
            slf.getattr(intern!(slf.py(), "_read_ready"))?.unbind(),
        ))
    }

    /// pause_reading() is in effect (the stock transport's attribute).
    #[getter]
    fn _paused(&self, py: Python<'_>) -> bool {
        self.st(py).paused
    }

    #[getter]
    fn _sock_fd(&self) -> RawFd {
        self.fd
    }

    #[getter]
    fn _loop(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.loop_obj(py)
    }

    #[getter]
    fn _protocol_paused(&self, py: Python<'_>) -> bool {
        self.st(py).protocol_paused
    }

    #[getter]
    fn _conn_lost(&self, py: Python<'_>) -> u32 {
        self.st(py).conn_lost
    }

    #[getter]
    fn _closing(&self, py: Python<'_>) -> bool {
        self.st(py).closing
    }

    #[getter]
    fn _server(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.st(py).server.as_ref().map(|s| s.clone_ref(py))
    }

    /// sendfile compatibility marker, as selector_events' transport has it.
    #[classattr]
    fn _sendfile_compatible(py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(py
            .import("asyncio.constants")?
            .getattr("_SendfileMode")?
            .getattr("TRY_NATIVE")?
            .unbind())
    }

    #[classattr]
    fn _start_tls_compatible() -> bool {
        true
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let (has_sock, closing, bufsize) = {
            let st = self.st(py);
            (st.sock.is_some(), st.closing, st.buffer.len())
        };
        let mut info = vec!["SocketTransport".to_owned()];
        if !has_sock {
            info.push("closed".into());
        } else if closing {
            info.push("closing".into());
        }
        info.push(format!("fd={}", self.fd));
        let core = self.core_ref();
        if has_sock && !core.closed.load(std::sync::atomic::Ordering::Relaxed) {
            let reading = core.is_watching(py, self.fd, Side::Read);
            let writing = core.is_watching(py, self.fd, Side::Write);
            info.push(format!("read={}", if reading { "polling" } else { "idle" }));
            info.push(format!(
                "write=<{}, bufsize={bufsize}>",
                if writing { "polling" } else { "idle" }
            ));
        }
        format!("<{}>", info.join(" "))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.core)?;
        if let Some(st) = self.state.peek_for_gc() {
            for obj in [&st.sock, &st.protocol, &st.server]
                .into_iter()
                .flatten()
                .chain(st.empty_waiter())
                .chain(st.context())
            {
                visit.call(obj)?;
            }
            st.extra.traverse(&visit)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        Python::attach(|py| {
            let taken = {
                let mut st = self.st(py);
                st.loop_released = true;
                (st.protocol.take(), st.server.take(), st.rare.take())
            };
            drop(taken);
        });
    }
}

impl Drop for SocketTransport {
    /// An unclosed transport warns (ResourceWarning) and closes its socket,
    /// as asyncio's transports do in `__del__`.
    fn drop(&mut self) {
        Python::attach(|py| {
            let sock = self.state.borrow_mut(py).sock.take();
            let Some(sock) = sock else { return };
            let message = format!("unclosed transport <SocketTransport fd={}>", self.fd);
            crate::pyhelpers::close_unclosed_transport_socket(py, &message, sock);
        });
    }
}
