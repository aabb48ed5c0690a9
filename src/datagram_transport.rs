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

use std::collections::VecDeque;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::RawFd;

use ferroloop_engine::sockio;
use pyo3::exceptions::{PyAttributeError, PyOSError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyInt, PyMemoryView, PyString, PyTuple};
use pyo3::{intern, PyTraverseError, PyVisit};

use crate::fd_watchers::Side;
use crate::gil_cell::GilCell;
use crate::loop_core::LoopCore;
use crate::pyhelpers::{asyncio_logger, is_exit};
use crate::sock_calls::{is_plain_socket, is_would_block, os_error, with_read_buffer};
use crate::socket_transport::cached;
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

/// A socket address as the kernel reads and writes it.
#[derive(Clone, Copy)]
struct RawAddr {
    storage: libc::sockaddr_storage,
    len: libc::socklen_t,
}

impl RawAddr {
    fn zeroed() -> Self {
        RawAddr {
            // SAFETY: sockaddr_storage is plain data; all zeroes is a valid
            // (AF_UNSPEC) value.
            storage: unsafe { std::mem::zeroed() },
            len: 0,
        }
    }

    fn family(&self) -> i32 {
        i32::from(self.storage.ss_family)
    }

    /// The whole storage as bytes.
    fn storage_bytes(&self) -> &[u8] {
        // SAFETY: `storage` is a live, fully initialised plain-data struct of
        // size_of::<sockaddr_storage>() bytes, borrowed for the slice's life.
        unsafe {
            std::slice::from_raw_parts(
                (&self.storage as *const libc::sockaddr_storage).cast::<u8>(),
                std::mem::size_of::<libc::sockaddr_storage>(),
            )
        }
    }

    /// The address's meaningful bytes (`len` of them).
    fn bytes(&self) -> &[u8] {
        let all = self.storage_bytes();
        &all[..(self.len as usize).min(all.len())]
    }

    fn same_as(&self, other: &RawAddr) -> bool {
        self.len == other.len && self.bytes() == other.bytes()
    }

    fn from_v4(ip: Ipv4Addr, port: u16) -> Self {
        let mut addr = RawAddr::zeroed();
        // SAFETY: sockaddr_storage is large and aligned enough for any
        // sockaddr, sockaddr_in included; we write through the cast pointer
        // only while `addr` is borrowed mutably.
        let sin = unsafe {
            &mut *(&mut addr.storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
        };
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_port = port.to_be();
        sin.sin_addr.s_addr = u32::from(ip).to_be();
        addr.len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        addr
    }

    /// As CPython builds it: flowinfo in network order, scope id as is.
    fn from_v6(ip: Ipv6Addr, port: u16, flowinfo: u32, scope_id: u32) -> Self {
        let mut addr = RawAddr::zeroed();
        // SAFETY: as in from_v4, for sockaddr_in6.
        let sin6 = unsafe {
            &mut *(&mut addr.storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
        };
        sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        sin6.sin6_port = port.to_be();
        sin6.sin6_flowinfo = flowinfo.to_be();
        sin6.sin6_addr.s6_addr = ip.octets();
        sin6.sin6_scope_id = scope_id;
        addr.len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        addr
    }
}

extern "C" {
    // POSIX (what CPython's makesockaddr formats IPv6 hosts with); the libc
    // crate does not bind it.
    fn inet_ntop(
        af: libc::c_int,
        src: *const libc::c_void,
        dst: *mut libc::c_char,
        size: libc::socklen_t,
    ) -> *const libc::c_char;
}

/// `recvfrom(fd, buf, 0, &addr)`.
fn recvfrom(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, RawAddr)> {
    let mut addr = RawAddr::zeroed();
    addr.len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `buf` is writable for its length, `addr.storage` for
    // `addr.len` bytes, and `addr.len` is a valid socklen_t the kernel
    // updates; all outlive the call.
    let n = unsafe {
        libc::recvfrom(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            0,
            (&mut addr.storage as *mut libc::sockaddr_storage).cast(),
            &mut addr.len,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok((n as usize, addr))
    }
}

/// `sendto(fd, data, 0, addr)`.
fn sendto(fd: RawFd, data: &[u8], addr: &RawAddr) -> io::Result<usize> {
    // SAFETY: `data` is readable for its length and `addr.storage` holds a
    // socket address of `addr.len` bytes; both outlive the call.
    let n = unsafe {
        libc::sendto(
            fd,
            data.as_ptr().cast(),
            data.len(),
            0,
            (&addr.storage as *const libc::sockaddr_storage).cast(),
            addr.len,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// The Python value of a received address, as CPython's `makesockaddr`
/// builds it for `socket.recvfrom`.
fn addr_to_py(py: Python<'_>, addr: &RawAddr) -> PyResult<Py<PyAny>> {
    if addr.len == 0 {
        return Ok(py.None());
    }
    let raw = addr.storage_bytes();
    match addr.family() {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in (family AF_INET) into
            // storage, which is aligned and large enough for it.
            let sin = unsafe {
                &*(&addr.storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            let port = u16::from_be(sin.sin_port);
            Ok((ip.to_string(), port)
                .into_pyobject(py)?
                .into_any()
                .unbind())
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe {
                &*(&addr.storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let mut buf = [0 as libc::c_char; 64];
            // SAFETY: `sin6_addr` is a valid in6_addr and `buf` is writable
            // for its length (more than INET6_ADDRSTRLEN); inet_ntop writes a
            // NUL-terminated string there or returns NULL.
            let text = unsafe {
                inet_ntop(
                    libc::AF_INET6,
                    (&sin6.sin6_addr as *const libc::in6_addr).cast(),
                    buf.as_mut_ptr(),
                    buf.len() as libc::socklen_t,
                )
            };
            if text.is_null() {
                return Err(os_error(io::Error::last_os_error()));
            }
            // SAFETY: inet_ntop succeeded, so `buf` holds a C string.
            let host = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
                .to_string_lossy()
                .into_owned();
            Ok((
                host,
                u16::from_be(sin6.sin6_port),
                u32::from_be(sin6.sin6_flowinfo),
                sin6.sin6_scope_id,
            )
                .into_pyobject(py)?
                .into_any()
                .unbind())
        }
        libc::AF_UNIX => {
            let offset = std::mem::size_of::<libc::sa_family_t>();
            let path_len = (addr.len as usize).saturating_sub(offset);
            let path = &raw[offset..];
            if path_len > 0 && path[0] == 0 {
                // Linux abstract namespace: the name as bytes.
                return Ok(PyBytes::new(py, &path[..path_len.min(path.len())])
                    .into_any()
                    .unbind());
            }
            // A NUL-terminated path (the storage was zeroed).
            let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
            // SAFETY: `path[..end]` is readable; the call copies it into a
            // new str (or returns NULL with an exception set).
            unsafe {
                let obj = ffi::PyUnicode_DecodeFSDefaultAndSize(
                    path.as_ptr().cast(),
                    end as ffi::Py_ssize_t,
                );
                Ok(Bound::from_owned_ptr_or_err(py, obj)?.unbind())
            }
        }
        family => {
            // CPython's fallback: (family, sa_data).
            let sa_data = &raw[2..16];
            Ok((family, PyBytes::new(py, sa_data))
                .into_pyobject(py)?
                .into_any()
                .unbind())
        }
    }
}

/// An exact int in `T`'s range.
fn exact_int<T: for<'a, 'py> FromPyObject<'a, 'py>>(obj: &Bound<'_, PyAny>) -> Option<T> {
    if !obj.is_exact_instance_of::<PyInt>() {
        return None;
    }
    obj.extract::<T>().ok()
}

/// The socket address of an `(host, port)` / `(host, port, flowinfo,
/// scope_id)` tuple with a numeric host, when the native path can build it
/// exactly as `socket.sendto` would; None sends the tuple through Python.
fn addr_from_py(family: i32, addr: &Bound<'_, PyAny>) -> Option<RawAddr> {
    let tuple = addr.cast::<PyTuple>().ok()?;
    let len = tuple.len();
    if len < 2 {
        return None;
    }
    let host_obj = tuple.get_item(0).ok()?;
    let host = host_obj.cast_exact::<PyString>().ok()?.to_str().ok()?;
    let port: u16 = exact_int(&tuple.get_item(1).ok()?)?;
    match family {
        libc::AF_INET if len == 2 => Some(RawAddr::from_v4(host.parse().ok()?, port)),
        libc::AF_INET6 if len <= 4 => {
            if host.contains('%') {
                return None; // a scope by name: resolved by getaddrinfo
            }
            let flowinfo: u32 = match len {
                2 => 0,
                _ => exact_int(&tuple.get_item(2).ok()?)?,
            };
            if flowinfo > 0xfffff {
                return None;
            }
            let scope_id: u32 = match len {
                4 => exact_int(&tuple.get_item(3).ok()?)?,
                _ => 0,
            };
            Some(RawAddr::from_v6(
                host.parse().ok()?,
                port,
                flowinfo,
                scope_id,
            ))
        }
        _ => None,
    }
}

/// A contiguous read-only buffer export of a Python object (what `y*`
/// accepts), released on drop.
struct ReadBuffer {
    view: ffi::Py_buffer,
}

impl ReadBuffer {
    fn get(obj: &Bound<'_, PyAny>) -> Option<Self> {
        let mut view = std::mem::MaybeUninit::<ffi::Py_buffer>::uninit();
        // SAFETY: `obj` is a live object and `view` is valid for writes; on
        // success CPython fills the whole struct.
        let rc =
            unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), view.as_mut_ptr(), ffi::PyBUF_SIMPLE) };
        if rc != 0 {
            // The Python path raises the same error again, in context.
            drop(PyErr::take(obj.py()));
            return None;
        }
        // SAFETY: PyObject_GetBuffer returned 0, so `view` is initialised.
        Some(ReadBuffer {
            view: unsafe { view.assume_init() },
        })
    }

    fn as_slice(&self) -> &[u8] {
        let len = usize::try_from(self.view.len).unwrap_or(0);
        if len == 0 || self.view.buf.is_null() {
            return &[];
        }
        // SAFETY: a PyBUF_SIMPLE export is `len` contiguous readable bytes
        // at `buf`, kept alive by the export until drop; the GIL is held
        // while the slice lives (no Python code resizes the object).
        unsafe { std::slice::from_raw_parts(self.view.buf.cast::<u8>(), len) }
    }
}

impl Drop for ReadBuffer {
    fn drop(&mut self) {
        // SAFETY: `view` came from a successful PyObject_GetBuffer and is
        // released exactly once, with the GIL held (ReadBuffers only live
        // inside calls that hold it).
        unsafe { ffi::PyBuffer_Release(&mut self.view) };
    }
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

    /// asyncio's `_fatal_error`: OSErrors are logged in debug mode only;
    /// anything else goes to the exception handler. Then `_force_close`.
    fn fatal_error(slf: &Bound<'_, Self>, err: PyErr, message: &str) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (loop_obj, protocol) = {
            let st = this.st(py);
            (
                st.loop_obj.as_ref().map(|l| l.clone_ref(py)),
                st.protocol.as_ref().map(|p| p.clone_ref(py)),
            )
        };
        let Some(loop_obj) = loop_obj else {
            // asyncio's transport has dropped its loop by then.
            let attr = if err.is_instance_of::<PyOSError>(py) {
                "get_debug"
            } else {
                "call_exception_handler"
            };
            return Err(PyAttributeError::new_err(format!(
                "'NoneType' object has no attribute '{attr}'"
            )));
        };
        if err.is_instance_of::<PyOSError>(py) {
            if this.core_ref().is_debug() {
                let kwargs = PyDict::new(py);
                kwargs.set_item("exc_info", err.clone_ref(py).into_value(py))?;
                asyncio_logger(py)?.call_method(
                    "debug",
                    ("%r: %s", slf, message),
                    Some(&kwargs),
                )?;
            }
        } else {
            let context = PyDict::new(py);
            context.set_item("message", message)?;
            context.set_item("exception", err.clone_ref(py).into_value(py))?;
            context.set_item("transport", slf)?;
            context.set_item("protocol", protocol)?;
            loop_obj
                .bind(py)
                .call_method1(intern!(py, "call_exception_handler"), (context,))?;
        }
        Self::force_close(slf, Some(err.into_value(py).into_any()))
    }

    /// asyncio's `_force_close`: drop pending sends, stop reading, schedule
    /// connection_lost(exc).
    fn force_close(slf: &Bound<'_, Self>, exc: Option<Py<PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (dropped, had_buffer, was_closing) = {
            let mut st = this.st(py);
            if st.conn_lost > 0 {
                return Ok(());
            }
            let had_buffer = !st.buffer.is_empty();
            let dropped = std::mem::take(&mut st.buffer);
            let was_closing = st.closing;
            st.closing = true;
            st.conn_lost += 1;
            (dropped, had_buffer, was_closing)
        };
        drop(dropped);
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
            if (st.buffer_size as f64) <= st.limits.high_water() || st.protocol_paused {
                return Ok(());
            }
            st.protocol_paused = true;
            st.protocol.as_ref().map(|p| p.clone_ref(py))
        };
        let protocol = protocol.unwrap_or_else(|| py.None());
        if let Err(err) = protocol.bind(py).call_method0(intern!(py, "pause_writing")) {
            Self::report_flow_control_error(
                slf,
                err,
                "protocol.pause_writing() failed",
                &protocol,
            )?;
        }
        Ok(())
    }

    fn maybe_resume_protocol(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let protocol = {
            let mut st = this.st(py);
            if !(st.protocol_paused && (st.buffer_size as f64) <= st.limits.low_water()) {
                return Ok(());
            }
            st.protocol_paused = false;
            st.protocol.as_ref().map(|p| p.clone_ref(py))
        };
        let protocol = protocol.unwrap_or_else(|| py.None());
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
        let loop_obj = slf.get().st(py).loop_obj.as_ref().map(|l| l.clone_ref(py));
        let Some(loop_obj) = loop_obj else {
            return Err(PyAttributeError::new_err(
                "'NoneType' object has no attribute 'call_exception_handler'",
            ));
        };
        let context = PyDict::new(py);
        context.set_item("message", message)?;
        context.set_item("exception", err.into_value(py))?;
        context.set_item("transport", slf)?;
        context.set_item("protocol", protocol)?;
        loop_obj
            .bind(py)
            .call_method1(intern!(py, "call_exception_handler"), (context,))?;
        Ok(())
    }

    /// Whether sends go to the connected peer (`send`) rather than to an
    /// address (`sendto`): asyncio's `self._extra['peername']` test.
    fn connected(&self, py: Python<'_>) -> PyResult<bool> {
        let extra = self.st(py).extra.clone_ref(py);
        match extra.bind(py).get_item(intern!(py, "peername"))? {
            Some(peer) => peer.is_truthy(),
            None => Err(pyo3::exceptions::PyKeyError::new_err("peername")),
        }
    }

    /// One datagram out: `sock.send(data)` when connected, else
    /// `sock.sendto(data, addr)`; natively when possible.
    fn send_one(&self, py: Python<'_>, data: &Bound<'_, PyAny>, addr: &Bound<'_, PyAny>) -> Sent {
        let connected = match self.connected(py) {
            Ok(c) => c,
            Err(e) => return Sent::Failed(e),
        };
        let (sock, cached_peer) = {
            let st = self.st(py);
            let cached = match &st.last_peer {
                Some((raw, obj)) if raw.len > 0 && obj.bind(py).is(addr) => Some(*raw),
                _ => None,
            };
            (st.sock.as_ref().map(|s| s.clone_ref(py)), cached)
        };
        let method = if connected { "send" } else { "sendto" };
        let Some(sock) = sock else {
            return Sent::Failed(PyAttributeError::new_err(format!(
                "'NoneType' object has no attribute '{method}'"
            )));
        };
        if let Some(family) = self.native_family {
            let target = if connected {
                None
            } else {
                match cached_peer.or_else(|| addr_from_py(family, addr)) {
                    Some(raw) => Some(raw),
                    None => return self.send_via_python(py, sock.bind(py), data, addr, method),
                }
            };
            let result = if let Ok(bytes) = data.cast::<PyBytes>() {
                native_send(self.fd, bytes.as_bytes(), target.as_ref())
            } else {
                match ReadBuffer::get(data) {
                    Some(buf) => native_send(self.fd, buf.as_slice(), target.as_ref()),
                    None => return self.send_via_python(py, sock.bind(py), data, addr, method),
                }
            };
            return match result {
                Ok(_) => Sent::Done,
                Err(e) if sockio::would_block(&e) => Sent::WouldBlock,
                Err(e) => Sent::Failed(os_error(e)),
            };
        }
        self.send_via_python(py, sock.bind(py), data, addr, method)
    }

    fn send_via_python(
        &self,
        py: Python<'_>,
        sock: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
        addr: &Bound<'_, PyAny>,
        method: &str,
    ) -> Sent {
        let result = if method == "send" {
            sock.call_method1(intern!(py, "send"), (data,))
        } else {
            sock.call_method1(intern!(py, "sendto"), (data, addr))
        };
        match result {
            Ok(_) => Sent::Done,
            Err(e) if is_would_block(py, &e) => Sent::WouldBlock,
            Err(e) => Sent::Failed(e),
        }
    }

    /// A failed send as asyncio handles it: OSError to error_received,
    /// SystemExit / KeyboardInterrupt out, anything else fatal.
    fn send_failed(slf: &Bound<'_, Self>, err: PyErr) -> PyResult<()> {
        let py = slf.py();
        if err.is_instance_of::<PyOSError>(py) {
            let protocol = slf.get().protocol_or_err(py, "error_received")?;
            protocol
                .bind(py)
                .call_method1(intern!(py, "error_received"), (err.into_value(py),))?;
            return Ok(());
        }
        if is_exit(py, &err) {
            return Err(err);
        }
        Self::fatal_error(slf, err, "Fatal write error on datagram transport")
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

    /// The repr, from the state alone (also used while being dropped).
    fn describe(&self, py: Python<'_>) -> String {
        let (has_sock, closing, bufsize, has_loop) = {
            let st = self.st(py);
            (
                st.sock.is_some(),
                st.closing,
                st.buffer_size,
                st.loop_obj.is_some(),
            )
        };
        let mut info = vec!["DatagramTransport".to_owned()];
        if !has_sock {
            info.push("closed".into());
        } else if closing {
            info.push("closing".into());
        }
        info.push(format!("fd={}", self.fd));
        let core = self.core_ref();
        if has_loop && !core.closed.load(std::sync::atomic::Ordering::Relaxed) {
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

    /// One datagram in through the socket's own `recvfrom` (subclasses,
    /// other families).
    fn recv_via_python<'py>(
        &self,
        py: Python<'py>,
        sock: &Bound<'py, PyAny>,
    ) -> PyResult<Option<(Bound<'py, PyAny>, Bound<'py, PyAny>)>> {
        match sock.call_method1(intern!(py, "recvfrom"), (MAX_SIZE,)) {
            Ok(pair) => {
                let (data, addr): (Bound<'py, PyAny>, Bound<'py, PyAny>) = pair.extract()?;
                Ok(Some((data, addr)))
            }
            Err(e) if is_would_block(py, &e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One datagram in natively: the data and the sender's address object
    /// (the previous sender's, when it is the same).
    fn recv_native<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<Option<(Bound<'py, PyAny>, Bound<'py, PyAny>)>> {
        let received = with_read_buffer(|buf| {
            recvfrom(self.fd, &mut buf[..MAX_SIZE])
                .map(|(n, addr)| (PyBytes::new(py, &buf[..n]), addr))
        });
        let (data, raw) = match received {
            Ok(v) => v,
            Err(e) if sockio::would_block(&e) => return Ok(None),
            Err(e) => return Err(os_error(e)),
        };
        let cached = {
            let st = self.st(py);
            match &st.last_peer {
                Some((last, obj)) if last.same_as(&raw) => Some(obj.clone_ref(py)),
                _ => None,
            }
        };
        let addr = match cached {
            Some(obj) => obj,
            None => {
                let obj = addr_to_py(py, &raw)?;
                let old = self.st(py).last_peer.replace((raw, obj.clone_ref(py)));
                drop(old);
                obj
            }
        };
        Ok(Some((data.into_any(), addr.into_bound(py))))
    }
}

fn native_send(fd: RawFd, data: &[u8], target: Option<&RawAddr>) -> io::Result<usize> {
    match target {
        None => sockio::send(fd, data),
        Some(addr) => sendto(fd, data, addr),
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

    /// The fd is readable: one datagram to the protocol.
    fn _read_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let sock = {
            let st = this.st(py);
            if st.conn_lost > 0 {
                return Ok(());
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
            Ok(None) => Ok(()),
            Ok(Some((data, addr))) => {
                let protocol = this.protocol_or_err(py, "datagram_received")?;
                protocol
                    .bind(py)
                    .call_method1(intern!(py, "datagram_received"), (data, addr))
                    .map(drop)
            }
            Err(err) if err.is_instance_of::<PyOSError>(py) => {
                let protocol = this.protocol_or_err(py, "error_received")?;
                protocol
                    .bind(py)
                    .call_method1(intern!(py, "error_received"), (err.into_value(py),))
                    .map(drop)
            }
            Err(err) if is_exit(py, &err) => Err(err),
            Err(err) => Self::fatal_error(slf, err, "Fatal read error on datagram transport"),
        }
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

impl Drop for DatagramTransport {
    /// An unclosed transport warns (ResourceWarning) and closes its socket,
    /// as asyncio's transports do in `__del__`.
    fn drop(&mut self) {
        Python::attach(|py| {
            // Not the full repr: the loop's state may be borrowed while
            // its last reference to the transport goes away.
            let message = format!("unclosed transport <DatagramTransport fd={}>", self.fd);
            let sock = self.state.borrow_mut(py).sock.take();
            let Some(sock) = sock else { return };
            let warned = PyErr::warn(
                py,
                &py.get_type::<pyo3::exceptions::PyResourceWarning>(),
                &std::ffi::CString::new(message).unwrap_or_default(),
                1,
            );
            if let Err(e) = warned {
                e.write_unraisable(py, None);
            }
            if let Err(e) = sock.bind(py).call_method0("close") {
                e.write_unraisable(py, None);
            }
        });
    }
}
