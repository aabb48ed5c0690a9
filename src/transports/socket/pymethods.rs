//! The Python-facing methods and attributes of `SocketTransport`
//! (construction included: `__new__` and `_connect`).

use std::os::fd::RawFd;

use ferroloop_engine::write_queue::MAX_IOV;
use ferroloop_engine::{sockio, WriteQueue};
use pyo3::exceptions::{PyAttributeError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyTuple};
use pyo3::{intern, PyTraverseError, PyVisit};

use super::write::with_bytes;
use super::{
    cached, server_slot, Rare, SocketTransport, TransportState, BUFFERED_PROTOCOL,
    LOG_THRESHOLD_FOR_CONNLOST_WRITES, SET_RESULT_UNLESS_CANCELLED,
};
use crate::extra_info::ExtraInfo;
use crate::fd_watchers::Side;
use crate::gil_cell::GilCell;
use crate::loop_core::LoopCore;
use crate::pyhelpers::asyncio_logger;
use crate::read_into_bytes::LargeReads;
use crate::sock_calls::os_error;
use crate::write_limits::WriteLimits;

/// What `transport.__class__` answers: see `SocketTransportView` in
/// python/ferroloop/_socket_transport.py.
static TRANSPORT_VIEW: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

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
            large_stream_reads: false,
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
            large_reads: LargeReads::default(),
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
