//! Non-blocking `recv` / `send` for the loop's `sock_*` methods, without the
//! exception a plain `socket.recv` raises when nothing is ready.
//!
//! asyncio's `sock_recv` / `sock_sendall` first try the call at once and wait
//! for readiness only when it would block. In Python that "would block" is a
//! BlockingIOError raised and caught on nearly every wait; here it is a
//! `None` (or `0` bytes sent). Only plain `socket.socket` objects take the
//! native path; subclasses (whose methods may be overridden) go through their
//! own `recv` / `send`.

use std::cell::RefCell;

use ferroloop_engine::sockio;
use pyo3::exceptions::{PyBlockingIOError, PyInterruptedError, PyOSError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyBytes;

use crate::nodelay::is_stream_socket;
use crate::read_into_bytes;
use crate::writable_buffer::recv_into_object;

static SOCKET_TYPE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Whether `sock` is a plain `socket.socket`, whose calls can be made
/// natively (a subclass may override them).
pub(crate) fn is_plain_socket(sock: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = sock.py();
    let socket_type = SOCKET_TYPE
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import("socket")?.getattr("socket")?.unbind())
        })?
        .bind(py);
    Ok(sock.get_type().is(socket_type))
}

/// The fd of a plain `socket.socket`, or None for anything else.
fn plain_socket_fd(sock: &Bound<'_, PyAny>) -> PyResult<Option<i32>> {
    if !is_plain_socket(sock)? {
        return Ok(None);
    }
    Ok(Some(
        sock.call_method0(intern!(sock.py(), "fileno"))?.extract()?,
    ))
}

pub(crate) fn is_would_block(py: Python<'_>, err: &PyErr) -> bool {
    err.is_instance_of::<PyBlockingIOError>(py) || err.is_instance_of::<PyInterruptedError>(py)
}

/// A failed socket call as the `socket` module raises it: `OSError(errno,
/// strerror)`, which Python turns into the errno's subclass
/// (ConnectionResetError, BrokenPipeError, ...) with `errno` set.
pub(crate) fn os_error(err: std::io::Error) -> PyErr {
    let Some(code) = err.raw_os_error() else {
        return err.into();
    };
    let mut buf = [0 as libc::c_char; 256];
    // SAFETY: `buf` is writable for its length; the XSI strerror_r (which the
    // libc crate binds on Linux) writes a NUL-terminated message into it.
    let rc = unsafe { libc::strerror_r(code, buf.as_mut_ptr(), buf.len()) };
    let message = if rc == 0 {
        // SAFETY: on success `buf` holds a NUL-terminated string.
        unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    } else {
        format!("Unknown error {code}")
    };
    PyOSError::new_err((code, message))
}

/// `sock.recv(n)`, or None if it would block.
#[pyfunction]
pub(crate) fn recv_nowait<'py>(
    sock: &Bound<'py, PyAny>,
    n: isize,
) -> PyResult<Option<Bound<'py, PyBytes>>> {
    let py = sock.py();
    let Some(fd) = plain_socket_fd(sock)? else {
        return match sock.call_method1(intern!(py, "recv"), (n,)) {
            Ok(data) => Ok(Some(data.cast_into::<PyBytes>()?)),
            Err(e) if is_would_block(py, &e) => Ok(None),
            Err(e) => Err(e),
        };
    };
    if n < 0 {
        return Err(PyValueError::new_err("negative buffersize in recv"));
    }
    match recv_bytes(sock, fd, n as usize) {
        Ok(data) => Ok(Some(data)),
        Err(e) if sockio::would_block(&e) => Ok(None),
        Err(e) => Err(os_error(e)),
    }
}

/// Reads first land in a small shared buffer: most reads are small, and
/// copying a few KiB out of it is cheaper than allocating a `bytes` of the
/// requested size and shrinking it.
const PROBE_READ: usize = 16 * 1024;

/// Above this size a fresh `bytes` would come from mmap (glibc's threshold),
/// paying page faults on every read: such reads are copied out of the
/// (already mapped) shared buffer instead.
const DIRECT_READ_MAX: usize = 96 * 1024;

/// The shared buffer's size: asyncio transports' `max_size`.
pub(crate) const SHARED_READ_MAX: usize = 256 * 1024;

thread_local! {
    static READ_BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; SHARED_READ_MAX]);
}

/// Runs `f` on the shared read buffer (`SHARED_READ_MAX` bytes). `f` must
/// not run Python code: a re-entrant use of the buffer would panic.
pub(crate) fn with_read_buffer<R>(f: impl FnOnce(&mut [u8]) -> R) -> R {
    READ_BUFFER.with(|cell| f(&mut cell.borrow_mut()))
}

/// One `recv` of at most `max` bytes (`max <= SHARED_READ_MAX`) through the
/// shared buffer, copied into a `bytes`: the transports' read path.
pub(crate) fn recv_bytes_copied<'py>(
    py: Python<'py>,
    fd: i32,
    max: usize,
) -> std::io::Result<Bound<'py, PyBytes>> {
    READ_BUFFER.with(|cell| {
        let mut buf = cell.borrow_mut();
        let got = sockio::recv(fd, &mut buf[..max.min(SHARED_READ_MAX)])?;
        Ok(PyBytes::new(py, &buf[..got]))
    })
}

extern "C" {
    // CPython's (private, stable since 2.x) in-place resize of a fresh bytes
    // object; PyO3 no longer declares it.
    fn _PyBytes_Resize(
        bytes: *mut *mut pyo3::ffi::PyObject,
        newsize: pyo3::ffi::Py_ssize_t,
    ) -> std::os::raw::c_int;
}

/// `sock.recv(max)` on the plain socket `sock` (fd `fd`), as a `bytes`
/// (`Ok` and empty: end of stream).
///
/// A read past the probe size on a datagram (or any non-stream) socket is
/// one `recv` of `max`, as `sock.recv` does: a probe would cut the datagram
/// short. On a stream socket whose last such read was large, the read goes
/// straight into a `bytes` of `max` bytes, shrunk after (`read_into_bytes`);
/// otherwise the probe reads first (`recv_bytes_probed`).
pub(crate) fn recv_bytes<'py>(
    sock: &Bound<'py, PyAny>,
    fd: i32,
    max: usize,
) -> std::io::Result<Bound<'py, PyBytes>> {
    let py = sock.py();
    if max <= PROBE_READ {
        return recv_bytes_probed(py, fd, max);
    }
    // An error reading the member (none is known) takes the one-recv path,
    // right for every socket type.
    if !is_stream_socket(sock).unwrap_or(false) {
        return recv_bytes_once(py, fd, max);
    }
    // Past DIRECT_READ_MAX a fresh `bytes` of `max` would come from mmap.
    let direct = (max <= DIRECT_READ_MAX)
        .then(|| read_into_bytes::sock_recv_large(py, fd, max))
        .flatten();
    let received = match direct {
        Some(received) => received,
        None => recv_bytes_probed(py, fd, max),
    };
    if let Ok(bytes) = &received {
        read_into_bytes::sock_record(fd, bytes.as_bytes().len());
    }
    received
}

/// One `recv` of at most `max` bytes, copied out of the shared buffer (or a
/// temporary one past its size).
fn recv_bytes_once(py: Python<'_>, fd: i32, max: usize) -> std::io::Result<Bound<'_, PyBytes>> {
    if max <= SHARED_READ_MAX {
        return recv_bytes_copied(py, fd, max);
    }
    let mut buf = vec![0u8; max];
    let got = sockio::recv(fd, &mut buf)?;
    Ok(PyBytes::new(py, &buf[..got]))
}

/// One `recv` of at most `max` bytes from `fd`, as a `bytes`. `Ok` with an
/// empty `bytes` is end of stream.
///
/// Small reads go through the probe buffer (one copy). When the probe fills
/// up, more is likely queued: the rest is received straight into a `bytes`
/// of `max` bytes that is then shrunk to size, so a large read costs one copy
/// of the probe, not of everything.
fn recv_bytes_probed<'py>(
    py: Python<'py>,
    fd: i32,
    max: usize,
) -> std::io::Result<Bound<'py, PyBytes>> {
    if max > DIRECT_READ_MAX {
        return recv_bytes_once(py, fd, max);
    }
    READ_BUFFER.with(|cell| {
        let mut probe = cell.borrow_mut();
        let first = sockio::recv(fd, &mut probe[..max.min(PROBE_READ)])?;
        if first < PROBE_READ || max <= PROBE_READ {
            return Ok(PyBytes::new(py, &probe[..first]));
        }
        // SAFETY: PyBytes_FromStringAndSize(NULL, n) returns a new bytes object
        // with n writable (uninitialised) bytes, or NULL with an exception set.
        // We write the probe into its first `first` bytes and let the kernel
        // write at most `max - first` more; only the initialised prefix
        // survives the shrink below. Nobody else sees the object until then.
        let bytes = unsafe {
            let raw = pyo3::ffi::PyBytes_FromStringAndSize(
                std::ptr::null(),
                max as pyo3::ffi::Py_ssize_t,
            );
            let bytes = Bound::from_owned_ptr_or_err(py, raw)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let data = pyo3::ffi::PyBytes_AsString(raw) as *mut u8;
            std::ptr::copy_nonoverlapping(probe.as_ptr(), data, first);
            bytes
        };
        // SAFETY: `bytes` is the live bytes object created above.
        let data = unsafe { pyo3::ffi::PyBytes_AsString(bytes.as_ptr()) as *mut u8 };
        // SAFETY: `data + first .. data + max` is inside the object's buffer.
        let more = unsafe { sockio::recv_raw(fd, data.add(first), max - first) }.unwrap_or(0);
        let bytes = bytes
            .cast_into::<PyBytes>()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        shrink(py, bytes, first + more)
    })
}

/// Shrinks a `bytes` we just created (and nobody else references) to `len`.
pub(crate) fn shrink<'py>(
    py: Python<'py>,
    bytes: Bound<'py, PyBytes>,
    len: usize,
) -> std::io::Result<Bound<'py, PyBytes>> {
    if len == bytes.as_bytes().len() {
        return Ok(bytes);
    }
    let mut ptr = bytes.into_ptr();
    // SAFETY: `ptr` is an owned reference to a bytes object we created and
    // have not shared (refcount 1), which is what _PyBytes_Resize requires;
    // on failure it releases the object and sets `ptr` to NULL with an
    // exception set, which `from_owned_ptr_or_err` turns into an error.
    unsafe {
        _PyBytes_Resize(&mut ptr, len as pyo3::ffi::Py_ssize_t);
        Bound::from_owned_ptr_or_err(py, ptr)
            .and_then(|b| Ok(b.cast_into::<PyBytes>()?))
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
}

/// One `recv` into `buf`'s memory, as `socket.recv_into(buf)` does; None when
/// `buf` does not export a writable contiguous buffer (the caller then lets
/// `sock.recv_into` raise asyncio's exact TypeError).
pub(crate) fn recv_into_native(fd: i32, buf: &Bound<'_, PyAny>) -> Option<std::io::Result<usize>> {
    // Not a writable buffer: the exception is dropped, the fallback raises its own.
    recv_into_object(fd, buf).ok()
}

/// `sock.recv_into(buf)`, or None if it would block.
#[pyfunction]
pub(crate) fn recv_into_nowait(
    sock: &Bound<'_, PyAny>,
    buf: &Bound<'_, PyAny>,
) -> PyResult<Option<usize>> {
    let py = sock.py();
    if let Some(fd) = plain_socket_fd(sock)? {
        if let Some(result) = recv_into_native(fd, buf) {
            return match result {
                Ok(n) => Ok(Some(n)),
                Err(e) if sockio::would_block(&e) => Ok(None),
                Err(e) => Err(os_error(e)),
            };
        }
    }
    match sock.call_method1(intern!(py, "recv_into"), (buf,)) {
        Ok(n) => Ok(Some(n.extract()?)),
        Err(e) if is_would_block(py, &e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `sock.send(data)`, or 0 if it would block.
#[pyfunction]
pub(crate) fn send_nowait(sock: &Bound<'_, PyAny>, data: &Bound<'_, PyAny>) -> PyResult<usize> {
    let py = sock.py();
    if let (Some(fd), Ok(bytes)) = (plain_socket_fd(sock)?, data.cast::<PyBytes>()) {
        return match sockio::send(fd, bytes.as_bytes()) {
            Ok(sent) => Ok(sent),
            Err(e) if sockio::would_block(&e) => Ok(0),
            Err(e) => Err(os_error(e)),
        };
    }
    match sock.call_method1(intern!(py, "send"), (data,)) {
        Ok(sent) => sent.extract(),
        Err(e) if is_would_block(py, &e) => Ok(0),
        Err(e) => Err(e),
    }
}

/// `os.read(fd, n)` through the shared read buffer: the same result and
/// errors (BlockingIOError included), without allocating a `bytes` of `n`
/// bytes per read. Pipe transports read with n = 256 KiB; a fresh
/// allocation that size comes from mmap and is unmapped again on every read.
#[pyfunction]
pub(crate) fn read_fd<'py>(py: Python<'py>, fd: i32, n: isize) -> PyResult<Bound<'py, PyBytes>> {
    if n < 0 {
        return Err(PyValueError::new_err("negative buffersize in read"));
    }
    let n = n as usize;
    if n > SHARED_READ_MAX {
        let mut buf = vec![0u8; n];
        let got = sockio::read(fd, &mut buf)?;
        return Ok(PyBytes::new(py, &buf[..got]));
    }
    READ_BUFFER.with(|cell| {
        let mut buf = cell.borrow_mut();
        let got = sockio::read(fd, &mut buf[..n])?;
        Ok(PyBytes::new(py, &buf[..got]))
    })
}
