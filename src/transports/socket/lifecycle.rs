//! Closing the socket transport: `close`, `_force_close` (abort),
//! `_fatal_error` (asyncio's `_SelectorTransport` versions), and the
//! ResourceWarning of a transport dropped unclosed.

use pyo3::exceptions::PyOSError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use super::SocketTransport;
use crate::pyhelpers::asyncio_logger;

impl SocketTransport {
    /// asyncio's `_fatal_error`: OSErrors are expected network weather (logged
    /// in debug mode only); anything else goes to the exception handler.
    /// Then the transport is force-closed.
    pub(super) fn fatal_error(slf: &Bound<'_, Self>, err: PyErr, message: &str) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if err.is_instance_of::<PyOSError>(py) {
            if this.is_debug() {
                let kwargs = PyDict::new(py);
                kwargs.set_item("exc_info", err.clone_ref(py).into_value(py))?;
                asyncio_logger(py)?.call_method(
                    "debug",
                    ("%r: %s", slf, message),
                    Some(&kwargs),
                )?;
            }
        } else {
            let loop_obj = this.loop_obj(py);
            let protocol = this.protocol(py);
            if let Some(loop_obj) = loop_obj {
                let context = PyDict::new(py);
                context.set_item("message", message)?;
                context.set_item("exception", err.clone_ref(py).into_value(py))?;
                context.set_item("transport", slf)?;
                context.set_item("protocol", protocol)?;
                loop_obj
                    .bind(py)
                    .call_method1(intern!(py, "call_exception_handler"), (context,))?;
            }
        }
        Self::force_close(slf, Some(err.into_value(py).into_any()))
    }

    /// asyncio's `_force_close`: drop pending writes, stop reading, schedule
    /// connection_lost(exc).
    pub(super) fn force_close(slf: &Bound<'_, Self>, exc: Option<Py<PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (had_buffer, was_closing) = {
            let mut st = this.st(py);
            if st.conn_lost > 0 {
                return Ok(());
            }
            let had_buffer = !st.buffer.is_empty();
            st.buffer.clear();
            let was_closing = st.closing;
            st.closing = true;
            st.conn_lost += 1;
            (had_buffer, was_closing)
        };
        if had_buffer {
            this.stop_writing(py)?;
        }
        if !was_closing {
            this.stop_reading(py)?;
        }
        let cb = slf.getattr(intern!(py, "_call_connection_lost"))?;
        let exc = exc.unwrap_or_else(|| py.None());
        this.call_soon(py, &cb, PyTuple::new(py, [exc])?)
    }

    pub(super) fn close(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let buffer_empty = {
            let mut st = this.st(py);
            if st.closing {
                return Ok(());
            }
            st.closing = true;
            let empty = st.buffer.is_empty();
            if empty {
                st.conn_lost += 1;
            }
            empty
        };
        this.stop_reading(py)?;
        if buffer_empty {
            this.stop_writing(py)?;
            let cb = slf.getattr(intern!(py, "_call_connection_lost"))?;
            this.call_soon(py, &cb, PyTuple::new(py, [py.None()])?)?;
        }
        Ok(())
    }
}

impl Drop for SocketTransport {
    /// An unclosed transport warns (ResourceWarning) and closes its socket,
    /// as asyncio's transports do in `__del__`.
    fn drop(&mut self) {
        Python::attach(|py| {
            let sock = self.state.borrow_mut(py).sock.take();
            let Some(sock) = sock else { return };
            let message = format!("unclosed transport <SocketTransport fd={}>", self.fd);
            crate::pyhelpers::close_unclosed_transport_socket(py, &message, sock);
        });
    }
}
