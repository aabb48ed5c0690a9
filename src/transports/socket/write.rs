//! The write path: a write is sent at once; what the kernel does not take is
//! queued (copied, or a large `bytes` by reference) until the fd is writable.

use ferroloop_engine::sockio;
use ferroloop_engine::write_queue::COALESCE_MAX;
use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

use super::SocketTransport;
use crate::fd_watchers::Side;
use crate::sock_calls::os_error;

impl SocketTransport {
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

    pub(super) fn stop_writing(&self, py: Python<'_>) -> PyResult<()> {
        self.core_ref()
            .unwatch_fd(py, self.fd, Side::Write)
            .map(drop)
    }

    /// Sends what it can of `data` now; queues the rest (by reference when
    /// it is large: a `bytes` never changes).
    pub(super) fn write_bytes(slf: &Bound<'_, Self>, data: &Bound<'_, PyBytes>) -> PyResult<()> {
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
}

/// Bytes of a bytes-like object, as `write()` accepts them.
/// As an exact `bytes` (the object itself when it is one, else a copy), so
/// the write path can keep a reference instead of copying.
pub(super) fn with_bytes<R>(
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
pub(super) struct BytesChunk {
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
