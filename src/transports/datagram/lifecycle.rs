//! Closing the datagram transport: `close`, `_force_close`, `_fatal_error`
//! (asyncio's `_SelectorTransport` versions), its repr, and the
//! ResourceWarning of a transport dropped unclosed.

use pyo3::exceptions::{PyAttributeError, PyOSError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use super::DatagramTransport;
use crate::fd_watchers::Side;
use crate::pyhelpers::asyncio_logger;

impl DatagramTransport {
    /// asyncio's `_fatal_error`: OSErrors are logged in debug mode only;
    /// anything else goes to the exception handler. Then `_force_close`.
    pub(super) fn fatal_error(slf: &Bound<'_, Self>, err: PyErr, message: &str) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (loop_obj, protocol) = {
            let st = this.st(py);
            (
                st.loop_obj.as_ref().map(|l| l.clone_ref(py)),
                st.protocol.as_ref().map(|p| p.clone_ref(py)),
            )
        };
        let Some(loop_obj) = loop_obj else {
            // asyncio's transport has dropped its loop by then.
            let attr = if err.is_instance_of::<PyOSError>(py) {
                "get_debug"
            } else {
                "call_exception_handler"
            };
            return Err(PyAttributeError::new_err(format!(
                "'NoneType' object has no attribute '{attr}'"
            )));
        };
        if err.is_instance_of::<PyOSError>(py) {
            if this.core_ref().is_debug() {
                let kwargs = PyDict::new(py);
                kwargs.set_item("exc_info", err.clone_ref(py).into_value(py))?;
                asyncio_logger(py)?.call_method(
                    "debug",
                    ("%r: %s", slf, message),
                    Some(&kwargs),
                )?;
            }
        } else {
            let context = PyDict::new(py);
            context.set_item("message", message)?;
            context.set_item("exception", err.clone_ref(py).into_value(py))?;
            context.set_item("transport", slf)?;
            context.set_item("protocol", protocol)?;
            loop_obj
                .bind(py)
                .call_method1(intern!(py, "call_exception_handler"), (context,))?;
        }
        Self::force_close(slf, Some(err.into_value(py).into_any()))
    }

    /// asyncio's `_force_close`: drop pending sends, stop reading, schedule
    /// connection_lost(exc).
    pub(super) fn force_close(slf: &Bound<'_, Self>, exc: Option<Py<PyAny>>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (dropped, had_buffer, was_closing) = {
            let mut st = this.st(py);
            if st.conn_lost > 0 {
                return Ok(());
            }
            let had_buffer = !st.buffer.is_empty();
            let dropped = std::mem::take(&mut st.buffer);
            let was_closing = st.closing;
            st.closing = true;
            st.conn_lost += 1;
            (dropped, had_buffer, was_closing)
        };
        drop(dropped);
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

    /// The repr, from the state alone (also used while being dropped).
    pub(super) fn describe(&self, py: Python<'_>) -> String {
        let (has_sock, closing, bufsize, has_loop) = {
            let st = self.st(py);
            (
                st.sock.is_some(),
                st.closing,
                st.buffer_size,
                st.loop_obj.is_some(),
            )
        };
        let mut info = vec!["DatagramTransport".to_owned()];
        if !has_sock {
            info.push("closed".into());
        } else if closing {
            info.push("closing".into());
        }
        info.push(format!("fd={}", self.fd));
        let core = self.core_ref();
        if has_loop && !core.closed.load(std::sync::atomic::Ordering::Relaxed) {
            let reading = core.is_watching(py, self.fd, Side::Read);
            let writing = core.is_watching(py, self.fd, Side::Write);
            info.push(format!("read={}", if reading { "polling" } else { "idle" }));
            info.push(format!(
                "write=<{}, bufsize={bufsize}>",
                if writing { "polling" } else { "idle" }
            ));
        }
        format!("<{}>", info.join(" "))
    }
}

impl Drop for DatagramTransport {
    /// An unclosed transport warns (ResourceWarning) and closes its socket,
    /// as asyncio's transports do in `__del__`.
    fn drop(&mut self) {
        Python::attach(|py| {
            // Not the full repr: the loop's state may be borrowed while
            // its last reference to the transport goes away.
            let message = format!("unclosed transport <DatagramTransport fd={}>", self.fd);
            let sock = self.state.borrow_mut(py).sock.take();
            let Some(sock) = sock else { return };
            crate::pyhelpers::close_unclosed_transport_socket(py, &message, sock);
        });
    }
}
