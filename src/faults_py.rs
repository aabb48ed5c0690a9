//! Python's handle on the engine's fault injector (cargo feature `faults`
//! only; see ferroloop_engine::faults). `python/ferroloop/_faults.py` uses
//! these to fail the calls that Python itself makes (accept, pidfd_open) and
//! tests use them to switch injection on and off around a workload.

use ferroloop_engine::faults::{self, Call};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::sock_calls::os_error;

/// Replaces the injector's configuration and resets its counters.
#[pyfunction]
#[pyo3(signature = (rate, seed = 1, calls = None))]
fn _faults_configure(rate: f64, seed: u64, calls: Option<&str>) -> PyResult<()> {
    faults::configure(rate, seed, calls).map_err(PyValueError::new_err)
}

/// {call: (calls seen, faults injected)} since the last configuration.
#[pyfunction]
fn _faults_stats() -> Vec<(&'static str, u64, u64)> {
    faults::stats()
}

/// Raises the OSError a due fault of `call` stands for, else returns None.
#[pyfunction]
fn _fault_check(call: &str) -> PyResult<()> {
    let Some(call) = Call::from_name(call) else {
        return Err(PyValueError::new_err(format!("unknown call {call:?}")));
    };
    match faults::inject(call) {
        Some(e) => Err(os_error(e)),
        None => Ok(()),
    }
}

pub(crate) fn install(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_faults_configure, m)?)?;
    m.add_function(wrap_pyfunction!(_faults_stats, m)?)?;
    m.add_function(wrap_pyfunction!(_fault_check, m)?)?;
    Ok(())
}
