//! `recv` straight into a Python object's writable buffer (what
//! `socket.recv_into(buf)` does), for the transports' BufferedProtocol path:
//! no bound-method lookup, no argument parsing, no exception object when the
//! socket has nothing to read.

use std::io;
use std::os::fd::RawFd;

use ferroloop_engine::sockio;
use pyo3::ffi;
use pyo3::prelude::*;

/// A writable, C-contiguous buffer export of a Python object, released on drop.
struct WritableBuffer {
    view: ffi::Py_buffer,
}

impl WritableBuffer {
    /// `PyObject_GetBuffer(obj, PyBUF_WRITABLE)`: the same request as
    /// `recv_into`'s `w*` argument, so the same objects are accepted and the
    /// same TypeError / BufferError is raised for the rest.
    fn get(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        let mut view = std::mem::MaybeUninit::<ffi::Py_buffer>::uninit();
        // SAFETY: `obj` is a live object (we hold a reference) and `view` is
        // valid for writes; on success CPython fills the whole struct.
        let rc = unsafe {
            ffi::PyObject_GetBuffer(obj.as_ptr(), view.as_mut_ptr(), ffi::PyBUF_WRITABLE)
        };
        if rc != 0 {
            return Err(PyErr::fetch(obj.py()));
        }
        // SAFETY: PyObject_GetBuffer returned 0, so `view` is initialised.
        Ok(WritableBuffer {
            view: unsafe { view.assume_init() },
        })
    }
}

impl Drop for WritableBuffer {
    fn drop(&mut self) {
        // SAFETY: `view` was filled by a successful PyObject_GetBuffer and is
        // released exactly once; the GIL is held (a WritableBuffer only lives
        // inside `recv_into_object`, which holds the GIL).
        unsafe { ffi::PyBuffer_Release(&mut self.view) };
    }
}

/// Runs `f` on `obj`'s writable buffer (start, length in bytes): Err when
/// obj does not export one (TypeError / BufferError as `w*` raises them).
/// The export lasts until `f` returns; `f` must not run Python code.
pub(crate) fn with_writable_buffer<R>(
    obj: &Bound<'_, PyAny>,
    f: impl FnOnce(*mut u8, usize) -> R,
) -> PyResult<R> {
    let buffer = WritableBuffer::get(obj)?;
    let len = usize::try_from(buffer.view.len).unwrap_or(0);
    Ok(f(buffer.view.buf.cast(), len))
}

/// `sock.recv_into(obj)` on the socket `fd`: Err(PyErr) when obj is not a
/// writable buffer, Ok(Err(io)) when the kernel refuses (EAGAIN included).
pub(crate) fn recv_into_object(fd: RawFd, obj: &Bound<'_, PyAny>) -> PyResult<io::Result<usize>> {
    let buffer = WritableBuffer::get(obj)?;
    let len = usize::try_from(buffer.view.len).unwrap_or(0);
    // SAFETY: PyBUF_WRITABLE without PyBUF_STRIDES/ND requests a simple
    // contiguous writable buffer, so `buf .. buf + len` is writable memory
    // owned by `obj`, kept exported (and alive) by `buffer` until after the
    // call; the GIL stays held, so no Python code can resize it meanwhile.
    Ok(unsafe { sockio::recv_raw(fd, buffer.view.buf.cast(), len) })
}
