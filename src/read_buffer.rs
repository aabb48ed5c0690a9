//! A read-only buffer export of a Python object (what `socket.send`'s `y*`
//! argument accepts), for sending any bytes-like object natively.

use pyo3::ffi;
use pyo3::prelude::*;

/// A contiguous read-only buffer export of a Python object (what `y*`
/// accepts), released on drop.
pub(crate) struct ReadBuffer {
    view: ffi::Py_buffer,
}

impl ReadBuffer {
    pub(crate) fn get(obj: &Bound<'_, PyAny>) -> Option<Self> {
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

    pub(crate) fn as_slice(&self) -> &[u8] {
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
