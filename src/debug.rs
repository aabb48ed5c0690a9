//! Debug-mode checks and reports (`loop.set_debug(True)`,
//! `PYTHONASYNCIODEBUG`): wrong-thread calls, coroutine callbacks, slow
//! callbacks. Only reached when debug is on, so plain Python calls are fine.

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::handles::Handle;
use crate::pyhelpers::asyncio_logger;

static GET_IDENT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
/// `asyncio.coroutines`' `iscoroutine` and its coroutine-function test.
static COROUTINE_CHECKS: PyOnceLock<(Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();
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
    let (iscoroutine, iscoroutinefunction) = COROUTINE_CHECKS.get_or_try_init(py, || {
        let coroutines = py.import("asyncio.coroutines")?;
        // 3.14 deprecated the public `iscoroutinefunction` (it warns); the
        // stock loop calls the private one where it exists.
        let func = match coroutines.getattr("_iscoroutinefunction") {
            Ok(func) => func,
            Err(_) => coroutines.getattr("iscoroutinefunction")?,
        };
        Ok::<_, PyErr>((coroutines.getattr("iscoroutine")?.unbind(), func.unbind()))
    })?;
    if iscoroutine.bind(py).call1((callback,))?.is_truthy()?
        || iscoroutinefunction
            .bind(py)
            .call1((callback,))?
            .is_truthy()?
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
    if let Some(func) = handle.get().callback_func(py) {
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
///
/// The duration is real time: the virtual clock of a test loop stands still
/// while a callback runs. On such a loop the message also gives the virtual
/// time at which the callback ran, to find it in the test's timeline.
pub(crate) fn warn_slow_callback(
    py: Python<'_>,
    handle: &Bound<'_, Handle>,
    seconds: f64,
    virtual_now: Option<f64>,
) -> PyResult<()> {
    let text = format_handle(py, handle)?;
    let logger = asyncio_logger(py)?;
    match virtual_now {
        None => {
            logger.call_method1("warning", ("Executing %s took %.3f seconds", text, seconds))?
        }
        Some(now) => logger.call_method1(
            "warning",
            (
                "Executing %s took %.3f seconds (real time; at virtual time %.3f)",
                text,
                seconds,
                now,
            ),
        )?,
    };
    Ok(())
}
