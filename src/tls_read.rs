//! The socket read of a TLS connection: from the kernel straight into the
//! SSLProtocol's incoming `ssl.MemoryBIO`.
//!
//! The stock path reads into the protocol's `_ssl_buffer`, a `max_size`
//! (256 KiB) `bytearray` that every SSLProtocol allocates and zero-fills in
//! its `__init__`, and writes a slice of it into the BIO. Per short-lived
//! connection that buffer cost more than the TLS record work: 256 KiB of
//! memset and, as glibc hands such blocks back to the kernel, a few dozen
//! page faults. ferroloop's SSLProtocol skips the allocation
//! (`ferroloop._tls_protocol`) and the socket transport reads into the
//! thread's shared read buffer instead; `MemoryBIO.write` copies the bytes
//! into OpenSSL's BIO either way, so what OpenSSL sees is the same.

use std::io;
use std::os::fd::RawFd;
use std::os::raw::c_char;

use ferroloop_engine::sockio;
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyType};

use crate::sock_calls::{with_read_buffer, SHARED_READ_MAX};

static MEMORY_BIO: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// `ssl.MemoryBIO`: a C type that cannot be subclassed, whose `write` runs
/// no Python code and keeps no reference to its argument.
fn is_memory_bio(bio: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = bio.py();
    let ty = MEMORY_BIO.import(py, "ssl", "MemoryBIO")?;
    Ok(bio.get_type().is(ty))
}

/// `bio.write(data)` without copying `data` into a Python object first: a
/// read-only memoryview over it, released before returning.
pub(crate) fn write_to_bio(bio: &Bound<'_, PyAny>, data: &[u8]) -> PyResult<()> {
    let py = bio.py();
    // SAFETY: the view covers exactly `data` (live and unmodified for the
    // whole call: we hold a shared borrow of it) and is read-only
    // (PyBUF_READ). It is released below before `data`'s borrow ends, so a
    // reference to it kept by `write` could not read freed memory: a
    // released memoryview raises ValueError on any access.
    let view = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyMemoryView_FromMemory(
                data.as_ptr() as *mut c_char,
                data.len() as ffi::Py_ssize_t,
                ffi::PyBUF_READ,
            ),
        )?
    };
    let written = bio.call_method1(intern!(py, "write"), (&view,));
    view.call_method0(intern!(py, "release"))?;
    written.map(drop)
}

/// What one read gave.
pub(crate) enum TlsReceived<'py> {
    /// The peer closed its side.
    Eof,
    /// The bytes are in the incoming BIO.
    InBio,
    /// The incoming "BIO" is not a `ssl.MemoryBIO` (a test's stand-in): the
    /// bytes, for the caller to write with no buffer borrowed.
    Copied(Bound<'py, PyBytes>),
}

/// One `recv` of at most `max` bytes on `fd` into `incoming`. The outer
/// Err is the BIO's write failing (as in `buffer_updated`), the inner one
/// the socket's.
pub(crate) fn recv_into_bio<'py>(
    fd: RawFd,
    max: usize,
    incoming: &Bound<'py, PyAny>,
) -> PyResult<io::Result<TlsReceived<'py>>> {
    let py = incoming.py();
    let direct = is_memory_bio(incoming)?;
    with_read_buffer(|buf| {
        let n = match sockio::recv(fd, &mut buf[..max.min(SHARED_READ_MAX)]) {
            Ok(0) => return Ok(Ok(TlsReceived::Eof)),
            Ok(n) => n,
            Err(e) => return Ok(Err(e)),
        };
        if direct {
            // MemoryBIO.write is C and copies: no Python code runs while
            // the shared buffer is borrowed.
            write_to_bio(incoming, &buf[..n])?;
            Ok(Ok(TlsReceived::InBio))
        } else {
            Ok(Ok(TlsReceived::Copied(PyBytes::new(py, &buf[..n]))))
        }
    })
}
