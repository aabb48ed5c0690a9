//! The calls behind `loop.sock_recvfrom`, `sock_recvfrom_into` and
//! `sock_sendto`, without the exception a plain `socket.recvfrom` raises
//! when nothing is ready, and the waits that retry them natively (see
//! sock_waiter.rs).
//!
//! asyncio tries `sock.recvfrom(bufsize)`, `sock.recvfrom_into(buf, nbytes)`
//! or `sock.sendto(data, address)` at once and, if it would block, retries it
//! whenever the fd is ready. Here the call is made in Rust when the result
//! is certain to be the socket module's own: a plain `socket.socket` of
//! family AF_INET, AF_INET6 or AF_UNIX in non-blocking mode (timeout 0),
//! with arguments the native path reads exactly as CPython parses them.
//! Everything else (a subclass, another family, a blocking or timeout
//! socket, an odd argument, an address to resolve) goes through the socket's
//! own method, so results and errors, argument errors included, are the
//! stock ones.

use std::os::fd::RawFd;

use ferroloop_engine::sockio;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyTuple};
use pyo3::{intern, PyTraverseError, PyVisit};

use crate::fd_watchers::Side;
use crate::loop_core::LoopCore;
use crate::read_buffer::ReadBuffer;
use crate::sock_calls::SHARED_READ_MAX;
use crate::sock_calls::{is_plain_socket, is_would_block, os_error, with_read_buffer};
use crate::sock_waiter::{self, SockOp};
use crate::sockaddr::{addr_from_py, addr_to_py, exact_int, recvfrom_raw, sendto, RawAddr};
use crate::writable_buffer::with_writable_buffer;

/// `_socket.socket`'s own `family` and `timeout` descriptors: reading them
/// skips `socket.socket.family`, a Python property that builds an IntEnum.
static FAMILY_DESCR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static TIMEOUT_DESCR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn socket_descr<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    name: &str,
) -> PyResult<&'py Bound<'py, PyAny>> {
    Ok(cell
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(
                py.import("_socket")?
                    .getattr("socket")?
                    .getattr(name)?
                    .unbind(),
            )
        })?
        .bind(py))
}

/// `descr.__get__(obj, type(obj))`, as attribute lookup calls it.
fn descr_get<'py>(
    descr: &Bound<'py, PyAny>,
    obj: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = obj.py();
    // SAFETY: `descr` is a live object; its type's slot table is readable.
    let get = unsafe { (*ffi::Py_TYPE(descr.as_ptr())).tp_descr_get };
    match get {
        // SAFETY: the slot is called as CPython's attribute lookup calls it,
        // with the live descriptor, a live instance and that instance's type;
        // it returns a new reference, or NULL with an exception set.
        Some(get) => unsafe {
            Bound::from_owned_ptr_or_err(
                py,
                get(
                    descr.as_ptr(),
                    obj.as_ptr(),
                    ffi::Py_TYPE(obj.as_ptr()).cast(),
                ),
            )
        },
        None => descr.call_method1(intern!(py, "__get__"), (obj,)),
    }
}

/// The fd and family of a socket whose datagram calls can be made natively:
/// a plain `socket.socket`, non-blocking (as asyncio expects; a blocking or
/// timeout socket keeps its own waiting behaviour), of family AF_INET,
/// AF_INET6 or AF_UNIX (whose addresses are built here as CPython builds
/// them). None for anything else.
pub(crate) fn native_dgram(sock: &Bound<'_, PyAny>) -> PyResult<Option<(RawFd, i32)>> {
    let py = sock.py();
    if !is_plain_socket(sock)? {
        return Ok(None);
    }
    let timeout = descr_get(socket_descr(py, &TIMEOUT_DESCR, "timeout")?, sock)?;
    if timeout.is_none() || timeout.extract::<f64>()? != 0.0 {
        return Ok(None);
    }
    let family: i32 = descr_get(socket_descr(py, &FAMILY_DESCR, "family")?, sock)?.extract()?;
    if ![libc::AF_INET, libc::AF_INET6, libc::AF_UNIX].contains(&family) {
        return Ok(None);
    }
    // The current fd: -1 once closed, so the call fails with EBADF as the
    // socket module's would.
    let fd: RawFd = sock.call_method0(intern!(py, "fileno"))?.extract()?;
    Ok(Some((fd, family)))
}

/// A native call's outcome: None when it would block.
fn settle<T, R>(
    result: std::io::Result<T>,
    done: impl FnOnce(T) -> PyResult<R>,
) -> PyResult<Option<R>> {
    match result {
        Ok(value) => done(value).map(Some),
        Err(e) if sockio::would_block(&e) => Ok(None),
        Err(e) => Err(os_error(e)),
    }
}

/// A Python call's outcome: None when it would block.
fn settle_py<'py>(
    py: Python<'py>,
    result: PyResult<Bound<'py, PyAny>>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if is_would_block(py, &e) => Ok(None),
        Err(e) => Err(e),
    }
}

fn pair<'py>(
    py: Python<'py>,
    first: Bound<'py, PyAny>,
    addr: &RawAddr,
) -> PyResult<Bound<'py, PyAny>> {
    let addr = addr_to_py(py, addr)?;
    Ok(PyTuple::new(py, [first, addr.into_bound(py)])?.into_any())
}

/// `sock.recvfrom(bufsize)`, or None if it would block.
#[pyfunction]
pub(crate) fn recvfrom_nowait<'py>(
    sock: &Bound<'py, PyAny>,
    bufsize: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let py = sock.py();
    if let Some((fd, _)) = native_dgram(sock)? {
        // Larger sizes (and negative or non-int ones) are left to the socket
        // module: its allocation (MemoryError) and errors are the stock ones.
        if let Some(n) = exact_int::<usize>(bufsize).filter(|&n| n <= SHARED_READ_MAX) {
            let received = with_read_buffer(|buf| {
                // SAFETY: `buf` is writable for SHARED_READ_MAX >= n bytes.
                unsafe { recvfrom_raw(fd, buf.as_mut_ptr(), n) }
                    .map(|(got, addr)| (PyBytes::new(py, &buf[..got]), addr))
            });
            return settle(received, |(data, addr)| pair(py, data.into_any(), &addr));
        }
    }
    settle_py(py, sock.call_method1(intern!(py, "recvfrom"), (bufsize,)))
}

/// `sock.recvfrom_into(buf, nbytes)`, or None if it would block.
#[pyfunction]
pub(crate) fn recvfrom_into_nowait<'py>(
    sock: &Bound<'py, PyAny>,
    buf: &Bound<'py, PyAny>,
    nbytes: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let py = sock.py();
    if let Some((fd, _)) = native_dgram(sock)? {
        // Only a size the socket module would accept as is: 0 < nbytes <=
        // the buffer's length (it raises its own ValueError otherwise).
        if let Some(n) = exact_int::<usize>(nbytes).filter(|&n| n > 0) {
            // SAFETY: `ptr` is writable for `len` bytes while the export
            // lasts, which covers the call; n <= len is checked first.
            let received = with_writable_buffer(buf, |ptr, len| {
                (n <= len).then(|| unsafe { recvfrom_raw(fd, ptr, n) })
            });
            // Not a writable buffer: the socket module raises its TypeError.
            if let Ok(Some(received)) = received {
                return settle(received, |(got, addr)| {
                    pair(py, got.into_pyobject(py)?.into_any(), &addr)
                });
            }
        }
    }
    settle_py(
        py,
        sock.call_method1(intern!(py, "recvfrom_into"), (buf, nbytes)),
    )
}

/// `sock.sendto(data, address)`, or None if it would block.
#[pyfunction]
pub(crate) fn sendto_nowait<'py>(
    sock: &Bound<'py, PyAny>,
    data: &Bound<'py, PyAny>,
    address: &Bound<'py, PyAny>,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let py = sock.py();
    if let Some(sent) = sendto_native(sock, data, address)? {
        return settle(sent, |n| Ok(n.into_pyobject(py)?.into_any()));
    }
    settle_py(
        py,
        sock.call_method1(intern!(py, "sendto"), (data, address)),
    )
}

/// The native `sendto`, when it sends exactly what `sock.sendto` would: a
/// numeric address of the socket's family and a contiguous bytes-like
/// `data`. None leaves the call to the socket module.
fn sendto_native(
    sock: &Bound<'_, PyAny>,
    data: &Bound<'_, PyAny>,
    address: &Bound<'_, PyAny>,
) -> PyResult<Option<std::io::Result<usize>>> {
    let Some((fd, family)) = native_dgram(sock)? else {
        return Ok(None);
    };
    let Some(target) = addr_from_py(family, address) else {
        return Ok(None);
    };
    if let Ok(bytes) = data.cast::<PyBytes>() {
        return Ok(Some(sendto(fd, bytes.as_bytes(), &target)));
    }
    Ok(ReadBuffer::get(data).map(|buf| sendto(fd, buf.as_slice(), &target)))
}

/// A datagram call a waiter retries (sock_waiter's `SockOp::Dgram`); the
/// arguments are kept as given, for the socket module when it makes the call.
pub(crate) enum DgramOp {
    /// `sock.recvfrom(bufsize)`.
    RecvFrom { bufsize: Py<PyAny> },
    /// `sock.recvfrom_into(buf, nbytes)`.
    RecvFromInto { buf: Py<PyAny>, nbytes: Py<PyAny> },
    /// `sock.sendto(data, 0, address)`.
    SendTo { data: Py<PyAny>, address: Py<PyAny> },
}

impl DgramOp {
    pub(crate) fn clone_ref(&self, py: Python<'_>) -> DgramOp {
        match self {
            DgramOp::RecvFrom { bufsize } => DgramOp::RecvFrom {
                bufsize: bufsize.clone_ref(py),
            },
            DgramOp::RecvFromInto { buf, nbytes } => DgramOp::RecvFromInto {
                buf: buf.clone_ref(py),
                nbytes: nbytes.clone_ref(py),
            },
            DgramOp::SendTo { data, address } => DgramOp::SendTo {
                data: data.clone_ref(py),
                address: address.clone_ref(py),
            },
        }
    }

    /// asyncio's name of the callback this replaces, for error reports.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            DgramOp::RecvFrom { .. } => "_sock_recvfrom",
            DgramOp::RecvFromInto { .. } => "_sock_recvfrom_into",
            DgramOp::SendTo { .. } => "_sock_sendto",
        }
    }

    pub(crate) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        match self {
            DgramOp::RecvFrom { bufsize } => visit.call(bufsize),
            DgramOp::RecvFromInto { buf, nbytes } => {
                visit.call(buf)?;
                visit.call(nbytes)
            }
            DgramOp::SendTo { data, address } => {
                visit.call(data)?;
                visit.call(address)
            }
        }
    }
}

/// One retry of a waiting datagram call (selector_events' `_sock_recvfrom`,
/// `_sock_recvfrom_into`, `_sock_sendto`): its result, or None to wait on.
pub(crate) fn attempt<'py>(
    sock: &Bound<'py, PyAny>,
    op: &DgramOp,
) -> PyResult<Option<Bound<'py, PyAny>>> {
    let py = sock.py();
    match op {
        DgramOp::RecvFrom { bufsize } => recvfrom_nowait(sock, bufsize.bind(py)),
        DgramOp::RecvFromInto { buf, nbytes } => {
            recvfrom_into_nowait(sock, buf.bind(py), nbytes.bind(py))
        }
        DgramOp::SendTo { data, address } => {
            let (data, address) = (data.bind(py), address.bind(py));
            if let Some(sent) = sendto_native(sock, data, address)? {
                return settle(sent, |n| Ok(n.into_pyobject(py)?.into_any()));
            }
            // asyncio's retry spells it with the flags argument.
            settle_py(
                py,
                sock.call_method1(intern!(py, "sendto"), (data, 0, address)),
            )
        }
    }
}

/// Waits until `sock.recvfrom(bufsize)` succeeds or fails; returns the future.
#[pyfunction]
pub(crate) fn sock_wait_recvfrom<'py>(
    r#loop: &Bound<'py, LoopCore>,
    fd: RawFd,
    sock: &Bound<'py, PyAny>,
    bufsize: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let op = SockOp::Dgram(DgramOp::RecvFrom {
        bufsize: bufsize.clone().unbind(),
    });
    sock_waiter::wait(r#loop, fd, Side::Read, sock, op)
}

/// Waits until `sock.recvfrom_into(buf, nbytes)` succeeds or fails.
#[pyfunction]
pub(crate) fn sock_wait_recvfrom_into<'py>(
    r#loop: &Bound<'py, LoopCore>,
    fd: RawFd,
    sock: &Bound<'py, PyAny>,
    buf: &Bound<'py, PyAny>,
    nbytes: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let op = SockOp::Dgram(DgramOp::RecvFromInto {
        buf: buf.clone().unbind(),
        nbytes: nbytes.clone().unbind(),
    });
    sock_waiter::wait(r#loop, fd, Side::Read, sock, op)
}

/// Waits until `sock.sendto(data, 0, address)` succeeds or fails.
#[pyfunction]
pub(crate) fn sock_wait_sendto<'py>(
    r#loop: &Bound<'py, LoopCore>,
    fd: RawFd,
    sock: &Bound<'py, PyAny>,
    data: &Bound<'py, PyAny>,
    address: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let op = SockOp::Dgram(DgramOp::SendTo {
        data: data.clone().unbind(),
        address: address.clone().unbind(),
    });
    sock_waiter::wait(r#loop, fd, Side::Write, sock, op)
}
