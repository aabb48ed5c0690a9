//! Write flow control: `pause_writing` / `resume_writing` on the protocol
//! as the write buffer crosses the write buffer limits.

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::SocketTransport;
use crate::pyhelpers::is_exit;

impl SocketTransport {
    pub(super) fn maybe_pause_protocol(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let protocol = {
            let mut st = this.st(py);
            if (st.buffer.len() as f64) <= st.limits.high_water() || st.protocol_paused {
                return Ok(());
            }
            st.protocol_paused = true;
            st.protocol.as_ref().map(|p| p.clone_ref(py))
        };
        if let Some(protocol) = protocol {
            if let Err(err) = protocol.bind(py).call_method0(intern!(py, "pause_writing")) {
                Self::report_flow_control_error(
                    slf,
                    err,
                    "protocol.pause_writing() failed",
                    &protocol,
                )?;
            }
        }
        Ok(())
    }

    pub(super) fn maybe_resume_protocol(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let protocol = {
            let mut st = this.st(py);
            if !(st.protocol_paused && (st.buffer.len() as f64) <= st.limits.low_water()) {
                return Ok(());
            }
            st.protocol_paused = false;
            st.protocol.as_ref().map(|p| p.clone_ref(py))
        };
        if let Some(protocol) = protocol {
            if let Err(err) = protocol
                .bind(py)
                .call_method0(intern!(py, "resume_writing"))
            {
                Self::report_flow_control_error(
                    slf,
                    err,
                    "protocol.resume_writing() failed",
                    &protocol,
                )?;
            }
        }
        Ok(())
    }

    fn report_flow_control_error(
        slf: &Bound<'_, Self>,
        err: PyErr,
        message: &str,
        protocol: &Py<PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        if is_exit(py, &err) {
            return Err(err);
        }
        let loop_obj = slf.get().loop_obj(py);
        if let Some(loop_obj) = loop_obj {
            let context = PyDict::new(py);
            context.set_item("message", message)?;
            context.set_item("exception", err.into_value(py))?;
            context.set_item("transport", slf)?;
            context.set_item("protocol", protocol)?;
            loop_obj
                .bind(py)
                .call_method1(intern!(py, "call_exception_handler"), (context,))?;
        }
        Ok(())
    }
}
