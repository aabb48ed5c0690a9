//! `DatagramTransport`: asyncio's datagram transport (selector_events'
//! `_SelectorDatagramTransport` and its `_SelectorTransport` base), native.
//!
//! Datagrams are received with `recvfrom` into one shared buffer and reach
//! the protocol as a `bytes` plus the sender's address, built as
//! `socket.recvfrom` builds it. The address tuple of the last sender is kept:
//! a datagram from the same sender gets the same (immutable) tuple, and a
//! reply `sendto(data, addr)` with that tuple reuses its socket address
//! without parsing it. `sendto` sends at once; only what the kernel refuses
//! (EAGAIN) is queued, as `(bytes, addr)`, and flushed when the socket is
//! writable, with asyncio's flow control.
//!
//! Only a plain `socket.socket` of family AF_INET, AF_INET6 or AF_UNIX is
//! driven natively; anything else (a subclass, which may override its
//! methods, or another family), and any address the native path does not
//! parse (host names, Unix paths, odd tuples), goes through the socket's own
//! `recvfrom` / `send` / `sendto`, so results and errors are the stock ones.
//!
//! As everywhere in ferroloop, no Python code runs while the state's
//! `GilCell` is borrowed.
//!
//! The pieces: `datagram_io` (one datagram in or out), `flow` (write flow
//! control), `lifecycle` (closing, fatal errors, repr, drop); here the state
//! and the Python-facing methods.

mod datagram_io;
mod drain;
mod flow;
mod lifecycle;

use std::collections::VecDeque;
use std::os::fd::RawFd;

use pyo3::exceptions::{PyAttributeError, PyOSError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyMemoryView, PyTuple};
use pyo3::{intern, PyTraverseError, PyVisit};

use crate::fd_watchers::Side;
use crate::gil_cell::GilCell;
use crate::loop_core::LoopCore;
use crate::pyhelpers::{asyncio_logger, is_exit};
use crate::sock_calls::is_plain_socket;
use crate::sockaddr::RawAddr;
use crate::transports::socket::cached;
use crate::write_limits::WriteLimits;

/// asyncio's `max_size`: the most one `recvfrom` asks the kernel for.
const MAX_SIZE: usize = crate::sock_calls::SHARED_READ_MAX;
/// asyncio's `constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES`.
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u32 = 5;

static TRANSPORT_SOCKET: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static SET_RESULT_UNLESS_CANCELLED: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static TRANSPORT_VIEW: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The stock datagram transport's `_header_size` (3.13+: 8, counted per
/// queued datagram in the write buffer size; 0 before). Where it is set,
/// the stock `sendto` also sends zero-length datagrams instead of dropping
/// them: both came with the same change, so one feature test covers both.
static HEADER_SIZE: PyOnceLock<i64> = PyOnceLock::new();

fn header_size(py: Python<'_>) -> PyResult<i64> {
    HEADER_SIZE
        .get_or_try_init(py, || -> PyResult<i64> {
            let cls = py
                .import("asyncio.selector_events")?
                .getattr("_SelectorDatagramTransport")?;
            match cls.getattr_opt("_header_size")? {
                Some(size) => size.extract(),
                None => Ok(0),
            }
        })
        .copied()
}

/// A queued datagram: an immutable copy of the data and its address.
struct Queued {
    data: Py<PyBytes>,
    addr: Py<PyAny>,
}

struct DatagramState {
    /// The Python loop object; None once connection_lost has run.
    loop_obj: Option<Py<PyAny>>,
    /// The Python socket (it owns the fd); None once connection_lost has run.
    sock: Option<Py<PyAny>>,
    protocol: Option<Py<PyAny>>,
    protocol_connected: bool,
    extra: Py<PyDict>,
    /// The default (and only allowed) destination, or None.
    address: Option<Py<PyAny>>,
    buffer: VecDeque<Queued>,
    /// asyncio's `_buffer_size` (signed, as its arithmetic is asyncio's).
    buffer_size: i64,
    conn_lost: u32,
    closing: bool,
    paused: bool,
    protocol_paused: bool,
    limits: WriteLimits,
    /// The last sender's address, raw and as handed to the protocol.
    last_peer: Option<(RawAddr, Py<PyAny>)>,
    /// Whether reading on after a datagram is worth a try (drain.rs).
    drain: drain::Hint,
}

#[pyclass(frozen, weakref, module = "ferroloop._ferroloop")]
pub struct DatagramTransport {
    fd: RawFd,
    core: Py<LoopCore>,
    /// The socket's family (AF_INET / AF_INET6 / AF_UNIX) when it is a plain
    /// `socket.socket` the native path drives; None otherwise.
    native_family: Option<i32>,
    state: GilCell<DatagramState>,
}

/// What became of one send.
enum Sent {
    Done,
    WouldBlock,
    Failed(PyErr),
}

impl DatagramTransport {
    fn st(&self, py: Python<'_>) -> crate::gil_cell::GilRefMut<'_, DatagramState> {
        self.state.borrow_mut(py)
    }

    fn core_ref(&self) -> &LoopCore {
        self.core.get()
    }

    fn call_soon(
        &self,
        py: Python<'_>,
        callback: &Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        self.core_ref()
            .call_soon(py, callback, args, None)
            .map(drop)
    }

    fn protocol(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.st(py).protocol.as_ref().map(|p| p.clone_ref(py))
    }

    /// The protocol, or the AttributeError asyncio's transport raises when
    /// it has dropped it (after connection_lost).
    fn protocol_or_err(&self, py: Python<'_>, method: &str) -> PyResult<Py<PyAny>> {
        self.protocol(py).ok_or_else(|| {
            PyAttributeError::new_err(format!("'NoneType' object has no attribute '{method}'"))
        })
    }

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
            .watch_fd(py, this.fd, Side::Read, &cb, PyTuple::empty(py), None)
            .map(drop)
    }

    /// One datagram (or receive error) to the protocol, as asyncio's
    /// `_read_ready`; true when a datagram was delivered.
    fn read_one(slf: &Bound<'_, Self>) -> PyResult<bool> {
        let py = slf.py();
        let this = slf.get();
        let sock = {
            let st = this.st(py);
            if st.conn_lost > 0 {
                return Ok(false);
            }
            st.sock.as_ref().map(|s| s.clone_ref(py))
        };
        let received = match (this.native_family, &sock) {
            (Some(_), Some(_)) => this.recv_native(py),
            (_, Some(sock)) => this.recv_via_python(py, sock.bind(py)),
            (_, None) => Err(PyAttributeError::new_err(
                "'NoneType' object has no attribute 'recvfrom'",
            )),
        };
        match received {
            Ok(None) => Ok(false),
            Ok(Some((data, addr))) => {
                let protocol = this.protocol_or_err(py, "datagram_received")?;
                protocol
                    .bind(py)
                    .call_method1(intern!(py, "datagram_received"), (data, addr))?;
                Ok(true)
            }
            Err(err) if err.is_instance_of::<PyOSError>(py) => {
                let protocol = this.protocol_or_err(py, "error_received")?;
                protocol
                    .bind(py)
                    .call_method1(intern!(py, "error_received"), (err.into_value(py),))?;
                Ok(false)
            }
            Err(err) if is_exit(py, &err) => Err(err),
            Err(err) => {
                Self::fatal_error(slf, err, "Fatal read error on datagram transport")?;
                Ok(false)
            }
        }
    }

    fn stop_reading(&self, py: Python<'_>) -> PyResult<()> {
        self.core_ref()
            .unwatch_fd(py, self.fd, Side::Read)
            .map(drop)
    }

    fn start_writing(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let cb = slf.getattr(intern!(py, "_sendto_ready"))?;
        slf.get()
            .core_ref()
            .watch_fd(py, slf.get().fd, Side::Write, &cb, PyTuple::empty(py), None)
            .map(drop)
    }

    fn stop_writing(&self, py: Python<'_>) -> PyResult<()> {
        self.core_ref()
            .unwatch_fd(py, self.fd, Side::Write)
            .map(drop)
    }
}

#[pymethods]
impl DatagramTransport {
    #[new]
    #[pyo3(signature = (r#loop, sock, protocol, address=None, waiter=None, extra=None))]
    fn new(
        py: Python<'_>,
        r#loop: &Bound<'_, PyAny>,
        sock: &Bound<'_, PyAny>,
        protocol: &Bound<'_, PyAny>,
        address: Option<&Bound<'_, PyAny>>,
        waiter: Option<&Bound<'_, PyAny>>,
        extra: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<Self>> {
        let core: Py<LoopCore> = r#loop.cast::<LoopCore>()?.clone().unbind();
        let extra_dict = PyDict::new(py);
        if let Some(extra) = extra.filter(|e| !e.is_none()) {
            extra_dict.call_method1(intern!(py, "update"), (extra,))?;
        }
        extra_dict.set_item(
            "socket",
            cached(py, &TRANSPORT_SOCKET, "asyncio.trsock", "TransportSocket")?.call1((sock,))?,
        )?;
        let sockname = match sock.call_method0(intern!(py, "getsockname")) {
            Ok(v) => v.unbind(),
            Err(e) if e.is_instance_of::<PyOSError>(py) => py.None(),
            Err(e) => return Err(e),
        };
        extra_dict.set_item("sockname", sockname)?;
        if !extra_dict.contains("peername")? {
            let peername = match sock.call_method0(intern!(py, "getpeername")) {
                Ok(v) => v.unbind(),
                Err(e) if e.is_instance_of::<PyOSError>(py) => py.None(),
                Err(e) => return Err(e),
            };
            extra_dict.set_item("peername", peername)?;
        }
        let fd: RawFd = sock.call_method0(intern!(py, "fileno"))?.extract()?;
        let native_family = if is_plain_socket(sock)? && fd >= 0 {
            let family: i32 = sock.getattr(intern!(py, "family"))?.extract()?;
            [libc::AF_INET, libc::AF_INET6, libc::AF_UNIX]
                .contains(&family)
                .then_some(family)
        } else {
            None
        };
        let state = DatagramState {
            loop_obj: Some(r#loop.clone().unbind()),
            sock: Some(sock.clone().unbind()),
            protocol: Some(protocol.clone().unbind()),
            protocol_connected: true,
            extra: extra_dict.unbind(),
            address: address.filter(|a| !a.is_none()).map(|a| a.clone().unbind()),
            buffer: VecDeque::new(),
            buffer_size: 0,
            conn_lost: 0,
            closing: false,
            paused: false,
            protocol_paused: false,
            limits: WriteLimits::default(py),
            last_peer: None,
            drain: drain::Hint::default(),
        };
        let transport = Bound::new(
            py,
            DatagramTransport {
                fd,
                core,
                native_family,
                state: GilCell::new(state),
            },
        )?;
        let this = transport.get();
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
        Ok(transport.unbind())
    }

    /// isinstance(transport, asyncio.Transport) holds through this, as for
    /// the stock datagram transport.
    #[getter(__class__)]
    fn class_view(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(cached(
            py,
            &TRANSPORT_VIEW,
            "ferroloop._datagram_transport",
            "DatagramTransportView",
        )?
        .clone()
        .unbind())
    }

    #[classattr]
    fn max_size() -> usize {
        MAX_SIZE
    }

    fn _start_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::start_reading(slf)
    }

    /// The fd is readable: one datagram to the protocol (and, when the
    /// stock loop would run nothing else before it, the next ones queued:
    /// drain.rs).
    fn _read_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        // The reader running now, before the protocol can replace it.
        let reader = this.drain_reader(py);
        let mut delivered = 0;
        let wasted = loop {
            if !Self::read_one(slf)? {
                break delivered > 0;
            }
            delivered += 1;
            if !this.may_read_more(py, delivered, reader.as_ref()) {
                break false;
            }
        };
        this.drain_done(py, delivered, wasted);
        Ok(())
    }

    #[pyo3(signature = (data, addr=None))]
    fn sendto(
        slf: &Bound<'_, Self>,
        data: &Bound<'_, PyAny>,
        addr: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let is_bytes = data.is_instance_of::<PyBytes>();
        if !(is_bytes
            || data.is_instance_of::<PyByteArray>()
            || data.is_instance_of::<PyMemoryView>())
        {
            return Err(PyTypeError::new_err(format!(
                "data argument must be a bytes-like object, not {}",
                data.get_type().name()?.repr()?
            )));
        }
        let empty = if data.is_exact_instance_of::<PyBytes>() {
            data.cast::<PyBytes>()?.as_bytes().is_empty()
        } else {
            !data.is_truthy()?
        };
        let header = header_size(py)?;
        if empty && header == 0 {
            return Ok(());
        }
        let none = py.None().into_bound(py);
        let mut addr = addr.cloned().unwrap_or(none.clone());
        let address = this.st(py).address.as_ref().map(|a| a.clone_ref(py));
        let address = match address {
            Some(a) if a.bind(py).is_truthy()? => Some(a.into_bound(py)),
            _ => None,
        };
        if let Some(address) = &address {
            let allowed = addr.is_none() || addr.is(address) || address.eq(&addr)?;
            if !allowed {
                return Err(PyValueError::new_err(format!(
                    "Invalid address: must be None or {}",
                    address.str()?
                )));
            }
            addr = address.clone();
        }
        {
            let mut st = this.st(py);
            if st.conn_lost > 0 && address.is_some() {
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
        if this.st(py).buffer.is_empty() {
            // Attempt to send it right away first.
            match this.send_one(py, data, &addr) {
                Sent::Done => return Ok(()),
                Sent::WouldBlock => Self::start_writing(slf)?,
                Sent::Failed(err) => return Self::send_failed(slf, err),
            }
        }
        // What is queued is immutable.
        let copy: Bound<'_, PyBytes> = if data.is_exact_instance_of::<PyBytes>() {
            data.cast::<PyBytes>()?.clone()
        } else {
            py.get_type::<PyBytes>().call1((data,))?.cast_into()?
        };
        let len = data.len()? as i64 + header;
        {
            let mut st = this.st(py);
            st.buffer.push_back(Queued {
                data: copy.unbind(),
                addr: addr.unbind(),
            });
            st.buffer_size += len;
        }
        Self::maybe_pause_protocol(slf)
    }

    /// The fd is writable: flush the queue, in order.
    fn _sendto_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let header = header_size(py)?;
        loop {
            let next = {
                let mut st = this.st(py);
                let next = st.buffer.pop_front();
                if let Some(q) = &next {
                    st.buffer_size -= q.data.bind(py).as_bytes().len() as i64 + header;
                }
                next
            };
            let Some(queued) = next else { break };
            let data = queued.data.bind(py).clone().into_any();
            match this.send_one(py, &data, queued.addr.bind(py)) {
                Sent::Done => {}
                Sent::WouldBlock => {
                    let mut st = this.st(py);
                    st.buffer_size += queued.data.bind(py).as_bytes().len() as i64 + header;
                    st.buffer.push_front(queued);
                    break;
                }
                Sent::Failed(err) => return Self::send_failed(slf, err),
            }
        }
        Self::maybe_resume_protocol(slf)?; // may queue more
        let (empty, closing) = {
            let st = this.st(py);
            (st.buffer.is_empty(), st.closing)
        };
        if empty {
            this.stop_writing(py)?;
            if closing {
                Self::_call_connection_lost(slf, None)?;
            }
        }
        Ok(())
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

    /// Runs connection_lost(exc), then closes the socket and drops the
    /// protocol and the loop.
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
        let result = if connected {
            match protocol {
                Some(p) => p
                    .bind(py)
                    .call_method1(
                        intern!(py, "connection_lost"),
                        (exc.unwrap_or_else(|| py.None()),),
                    )
                    .map(drop),
                None => Err(PyAttributeError::new_err(
                    "'NoneType' object has no attribute 'connection_lost'",
                )),
            }
        } else {
            Ok(())
        };
        let (sock, released) = {
            let mut st = this.st(py);
            let released = (st.protocol.take(), st.loop_obj.take(), st.last_peer.take());
            (st.sock.take(), released)
        };
        drop(released);
        let closed = match sock {
            Some(sock) => sock.bind(py).call_method0(intern!(py, "close")).map(drop),
            None => Err(PyAttributeError::new_err(
                "'NoneType' object has no attribute 'close'",
            )),
        };
        result.and(closed)
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
        if this.core_ref().is_debug() {
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
        if this.core_ref().is_debug() {
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
        let extra = self.st(py).extra.clone_ref(py);
        Ok(match extra.bind(py).get_item(name)? {
            Some(v) => v.unbind(),
            None => default.unwrap_or_else(|| py.None()),
        })
    }

    fn set_protocol(&self, py: Python<'_>, protocol: &Bound<'_, PyAny>) {
        let old = {
            let mut st = self.st(py);
            st.protocol_connected = true;
            st.protocol.replace(protocol.clone().unbind())
        };
        drop(old);
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

    fn get_write_buffer_size(&self, py: Python<'_>) -> i64 {
        self.st(py).buffer_size
    }

    #[getter]
    fn _sock(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.st(py).sock.as_ref().map(|s| s.clone_ref(py))
    }

    #[getter]
    fn _sock_fd(&self) -> RawFd {
        self.fd
    }

    #[getter]
    fn _loop(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.st(py).loop_obj.as_ref().map(|l| l.clone_ref(py))
    }

    #[getter]
    fn _protocol(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.protocol(py)
    }

    #[getter]
    fn _address(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.st(py).address.as_ref().map(|a| a.clone_ref(py))
    }

    #[getter]
    fn _extra(&self, py: Python<'_>) -> Py<PyDict> {
        self.st(py).extra.clone_ref(py)
    }

    #[getter]
    fn _buffer_size(&self, py: Python<'_>) -> i64 {
        self.st(py).buffer_size
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
    fn _paused(&self, py: Python<'_>) -> bool {
        self.st(py).paused
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        self.describe(py)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.core)?;
        if let Some(st) = self.state.peek_for_gc() {
            for obj in [&st.loop_obj, &st.sock, &st.protocol, &st.address]
                .into_iter()
                .flatten()
            {
                visit.call(obj)?;
            }
            visit.call(&st.extra)?;
            for queued in &st.buffer {
                visit.call(&queued.addr)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        Python::attach(|py| {
            let taken = {
                let mut st = self.st(py);
                (
                    st.loop_obj.take(),
                    st.protocol.take(),
                    st.address.take(),
                    std::mem::take(&mut st.buffer),
                    st.last_peer.take(),
                )
            };
            drop(taken);
        });
    }
}
