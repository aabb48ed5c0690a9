//! Debug-mode checks and reports (`loop.set_debug(True)`,
//! `PYTHONASYNCIODEBUG`): wrong-thread calls, coroutine callbacks, slow
//! callbacks. Only reached when debug is on, so plain Python calls are fine.

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::handles::Handle;
use crate::pyhelpers::asyncio_logger;

static GET_IDENT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static COROUTINES: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
static TASK_TYPE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `threading.get_ident()`.
pub(crate) fn current_thread_id(py: Python<'_>) -> PyResult<u64> {
    GET_IDENT
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import("threading")?.getattr("get_ident")?.unbind())
        })?
        .bind(py)
        .call0()?
        .extract()
}

/// Raises asyncio's RuntimeError when a non-threadsafe method is called from a
/// thread other than the one running the loop.
pub(crate) fn check_thread(py: Python<'_>, loop_thread: Option<u64>) -> PyResult<()> {
    let Some(owner) = loop_thread else {
        return Ok(());
    };
    if current_thread_id(py)? != owner {
        return Err(PyRuntimeError::new_err(
            "Non-thread-safe operation invoked on an event loop other than the current one",
        ));
    }
    Ok(())
}

/// Refuses coroutines and non-callables as callbacks, with asyncio's messages.
pub(crate) fn check_callback(
    py: Python<'_>,
    callback: &Bound<'_, PyAny>,
    method: &str,
) -> PyResult<()> {
    let coroutines = COROUTINES
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import("asyncio.coroutines")?.unbind())
        })?
        .bind(py);
    // 3.14 deprecated asyncio.iscoroutinefunction (calling it warns); the
    // stock loop calls its private, silent twin wherever that exists.
    let iscoroutinefunction = match coroutines.getattr("_iscoroutinefunction") {
        Ok(func) => func,
        Err(_) => coroutines.getattr("iscoroutinefunction")?,
    };
    if coroutines
        .call_method1("iscoroutine", (callback,))?
        .is_truthy()?
        || iscoroutinefunction.call1((callback,))?.is_truthy()?
    {
        return Err(PyTypeError::new_err(format!(
            "coroutines cannot be used with {method}()"
        )));
    }
    if !callback.is_callable() {
        return Err(PyTypeError::new_err(format!(
            "a callable object was expected by {method}(), got {}",
            callback.repr()?
        )));
    }
    Ok(())
}

/// asyncio's `_format_handle`: a task step is shown as its task.
fn format_handle(py: Python<'_>, handle: &Bound<'_, Handle>) -> PyResult<String> {
    if let Some((func, _)) = handle.get().callback_parts(py) {
        if let Ok(owner) = func.bind(py).getattr("__self__") {
            let task_type = TASK_TYPE
                .get_or_try_init(py, || {
                    Ok::<_, PyErr>(py.import("asyncio")?.getattr("Task")?.unbind())
                })?
                .bind(py);
            if owner.is_instance(task_type)? {
                return Ok(owner.repr()?.to_string());
            }
        }
    }
    Ok(handle.str()?.to_string())
}

/// Logs `Executing <handle> took X seconds` as asyncio does for slow callbacks.
pub(crate) fn warn_slow_callback(
    py: Python<'_>,
    handle: &Bound<'_, Handle>,
    seconds: f64,
) -> PyResult<()> {
    let text = format_handle(py, handle)?;
    asyncio_logger(py)?
        .call_method1("warning", ("Executing %s took %.3f seconds", text, seconds))?;
    Ok(())
}
