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
use pyo3::exceptions::{PyBlockingIOError, PyInterruptedError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyBytes;

static SOCKET_TYPE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// The fd of a plain `socket.socket`, or None for anything else.
fn plain_socket_fd(sock: &Bound<'_, PyAny>) -> PyResult<Option<i32>> {
    let py = sock.py();
    let socket_type = SOCKET_TYPE
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import("socket")?.getattr("socket")?.unbind())
        })?
        .bind(py);
    if !sock.get_type().is(socket_type) {
        return Ok(None);
    }
    Ok(Some(sock.call_method0(intern!(py, "fileno"))?.extract()?))
}

fn is_would_block(py: Python<'_>, err: &PyErr) -> bool {
    err.is_instance_of::<PyBlockingIOError>(py) || err.is_instance_of::<PyInterruptedError>(py)
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
    match recv_bytes(py, fd, n as usize) {
        Ok(data) => Ok(Some(data)),
        Err(e) if sockio::would_block(&e) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The most bytes one read takes through the shared buffer (asyncio's
/// transports' `max_size`); larger reads get a buffer of their own.
pub(crate) const SHARED_READ_MAX: usize = 256 * 1024;

thread_local! {
    /// Reads land here first, then only the bytes received are copied into
    /// the `bytes` object (no `bytes` of the requested size per read).
    static READ_BUFFER: RefCell<Vec<u8>> = RefCell::new(vec![0; SHARED_READ_MAX]);
}

/// One `recv` of at most `max` bytes from `fd`, as a `bytes`. `Ok` with an
/// empty `bytes` is end of stream.
pub(crate) fn recv_bytes<'py>(
    py: Python<'py>,
    fd: i32,
    max: usize,
) -> std::io::Result<Bound<'py, PyBytes>> {
    if max > SHARED_READ_MAX {
        let mut buf = vec![0u8; max];
        let got = sockio::recv(fd, &mut buf)?;
        return Ok(PyBytes::new(py, &buf[..got]));
    }
    READ_BUFFER.with(|cell| {
        let mut buf = cell.borrow_mut();
        let got = sockio::recv(fd, &mut buf[..max])?;
        Ok(PyBytes::new(py, &buf[..got]))
    })
}

/// `sock.send(data)`, or 0 if it would block.
#[pyfunction]
pub(crate) fn send_nowait(sock: &Bound<'_, PyAny>, data: &Bound<'_, PyAny>) -> PyResult<usize> {
    let py = sock.py();
    if let (Some(fd), Ok(bytes)) = (plain_socket_fd(sock)?, data.cast::<PyBytes>()) {
        return match sockio::send(fd, bytes.as_bytes()) {
            Ok(sent) => Ok(sent),
            Err(e) if sockio::would_block(&e) => Ok(0),
            Err(e) => Err(e.into()),
        };
    }
    match sock.call_method1(intern!(py, "send"), (data,)) {
        Ok(sent) => sent.extract(),
        Err(e) if is_would_block(py, &e) => Ok(0),
        Err(e) => Err(e),
    }
}
