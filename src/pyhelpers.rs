//! Small bridges to Python used off the hot path: cached imports of asyncio's
//! helpers, float formatting, and a poison-tolerant lock.

use std::sync::{Mutex, MutexGuard};

use pyo3::exceptions::{PyKeyboardInterrupt, PySystemExit};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyTuple;

/// Locks a mutex, recovering the data if a previous holder panicked (a panic
/// in one callback must not wedge the loop forever).
#[inline]
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// SystemExit and KeyboardInterrupt: the errors that propagate out of the
/// loop instead of going to its exception handler.
pub(crate) fn is_exit(py: Python<'_>, err: &PyErr) -> bool {
    err.is_instance_of::<PySystemExit>(py) || err.is_instance_of::<PyKeyboardInterrupt>(py)
}

static FORMAT_HELPERS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
static LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

fn format_helpers(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    Ok(FORMAT_HELPERS
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import("asyncio.format_helpers")?.unbind())
        })?
        .bind(py))
}

/// `logging.getLogger("asyncio")`, where asyncio logs.
pub(crate) fn asyncio_logger(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    Ok(LOGGER
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(
                py.import("logging")?
                    .call_method1("getLogger", ("asyncio",))?
                    .unbind(),
            )
        })?
        .bind(py))
}

/// asyncio's text for a callback and its arguments: `func(arg, ...) at file:line`.
pub(crate) fn format_callback_source(
    py: Python<'_>,
    func: &Bound<'_, PyAny>,
    args: &Bound<'_, PyTuple>,
) -> PyResult<String> {
    format_helpers(py)?
        .call_method1("_format_callback_source", (func, args))?
        .extract()
}

/// `format_helpers.extract_stack(sys._getframe(0))`: the stack of the Python
/// code calling into the loop, for debug-mode source tracebacks.
pub(crate) fn extract_stack(py: Python<'_>) -> PyResult<Py<PyAny>> {
    let frame = py.import("sys")?.call_method1("_getframe", (0,))?;
    Ok(format_helpers(py)?
        .call_method1("extract_stack", (frame,))?
        .unbind())
}

/// Python's `repr(float)`, so `when=` in reprs reads as in asyncio.
pub(crate) fn float_repr(py: Python<'_>, x: f64) -> PyResult<String> {
    Ok(x.into_pyobject(py)?.repr()?.to_string())
}

/// `obj[start:stop]`, None meaning an open end, with Python's slicing rules.
///
/// Not `PySlice::new`: PyO3 0.30 hands it fresh ints that `PySlice_New`
/// does not steal, so every slice leaked its (non-cached) bounds, about
/// 30 bytes a record on the TLS read path.
pub(crate) fn slice_of<'py>(
    obj: &Bound<'py, PyAny>,
    start: Option<isize>,
    stop: Option<isize>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = obj.py();
    let bound = |v: Option<isize>| -> PyResult<Bound<'py, PyAny>> {
        Ok(match v {
            Some(v) => v.into_pyobject(py)?.into_any(),
            None => py.None().into_bound(py),
        })
    };
    let (start, stop) = (bound(start)?, bound(stop)?);
    // SAFETY: PySlice_New only borrows its arguments (both live for the
    // call; a null step means None) and returns a new reference or null
    // with an exception set, which from_owned_ptr_or_err turns into Err.
    let slice = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            pyo3::ffi::PySlice_New(start.as_ptr(), stop.as_ptr(), std::ptr::null_mut()),
        )?
    };
    obj.get_item(slice)
}

/// What an unclosed transport's finalizer does, as asyncio's `__del__`:
/// warns (ResourceWarning) and closes its socket. Errors are unraisable.
///
/// The transport is dropped in `tp_dealloc`, which the garbage collector
/// reaches only after it has cleared the other objects of a dead cycle; a
/// `socket.socket` whose slots were cleared that way no longer has the
/// `_io_refs` that its `close()` reads. Its fd is then closed through
/// `_socket.socket.close`, the base method that `close()` ends in.
pub(crate) fn close_unclosed_transport_socket(py: Python<'_>, message: &str, sock: Py<PyAny>) {
    let warned = PyErr::warn(
        py,
        &py.get_type::<pyo3::exceptions::PyResourceWarning>(),
        &std::ffi::CString::new(message).unwrap_or_default(),
        1,
    );
    if let Err(e) = warned {
        e.write_unraisable(py, None);
    }
    let sock = sock.bind(py);
    let Err(err) = sock.call_method0("close") else {
        return;
    };
    if err.is_instance_of::<pyo3::exceptions::PyAttributeError>(py) {
        let base_close = py
            .import("_socket")
            .and_then(|m| m.getattr("socket"))
            .and_then(|base| {
                if sock.is_instance(&base)? {
                    base.getattr("close")?.call1((sock,)).map(|_| true)
                } else {
                    Ok(false)
                }
            });
        match base_close {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => e.write_unraisable(py, None),
        }
    }
    err.write_unraisable(py, None);
}

/// A hint to load the cache line at `p` (no effect on other targets).
/// Never dereferences `p`: any address will do.
#[inline(always)]
pub(crate) fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of the x86_64 baseline, and a prefetch never
    // faults nor reads memory architecturally, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
