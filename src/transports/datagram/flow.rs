//! Write flow control: `pause_writing` / `resume_writing` on the protocol
//! as the queue of unsent datagrams crosses the write buffer limits.

use pyo3::exceptions::PyAttributeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::DatagramTransport;
use crate::pyhelpers::is_exit;

impl DatagramTransport {
    pub(super) fn maybe_pause_protocol(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let protocol = {
            let mut st = this.st(py);
            if (st.buffer_size as f64) <= st.limits.high_water() || st.protocol_paused {
                return Ok(());
            }
            st.protocol_paused = true;
            st.protocol.as_ref().map(|p| p.clone_ref(py))
        };
        let protocol = protocol.unwrap_or_else(|| py.None());
        if let Err(err) = protocol.bind(py).call_method0(intern!(py, "pause_writing")) {
            Self::report_flow_control_error(
                slf,
                err,
                "protocol.pause_writing() failed",
                &protocol,
            )?;
        }
        Ok(())
    }

    pub(super) fn maybe_resume_protocol(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let protocol = {
            let mut st = this.st(py);
            if !(st.protocol_paused && (st.buffer_size as f64) <= st.limits.low_water()) {
                return Ok(());
            }
            st.protocol_paused = false;
            st.protocol.as_ref().map(|p| p.clone_ref(py))
        };
        let protocol = protocol.unwrap_or_else(|| py.None());
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
        Ok(())
    }

    pub(super) fn report_flow_control_error(
        slf: &Bound<'_, Self>,
        err: PyErr,
        message: &str,
        protocol: &Py<PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        if is_exit(py, &err) {
            return Err(err);
        }
        let loop_obj = slf.get().st(py).loop_obj.as_ref().map(|l| l.clone_ref(py));
        let Some(loop_obj) = loop_obj else {
            return Err(PyAttributeError::new_err(
                "'NoneType' object has no attribute 'call_exception_handler'",
            ));
        };
        let context = PyDict::new(py);
        context.set_item("message", message)?;
        context.set_item("exception", err.into_value(py))?;
        context.set_item("transport", slf)?;
        context.set_item("protocol", protocol)?;
        loop_obj
            .bind(py)
            .call_method1(intern!(py, "call_exception_handler"), (context,))?;
        Ok(())
    }
}
