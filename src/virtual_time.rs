//! Virtual time for the test loops of `ferroloop.testing`.
//!
//! A loop gets a [`VirtualClock`] once, before it runs (`_virtual_enable`);
//! from then on `loop.time()`, `call_later` and the run loop's timer
//! expiry read it instead of the monotonic clock, and the run loop asks it
//! what to do when nothing is ready (see `run_loop.rs` and
//! `ferroloop_engine::virtual_clock`). A loop without one pays a load and a
//! predicted branch per clock read.
//!
//! The controls are module functions taking the loop, not `LoopCore`
//! methods, so the real-time loop's class keeps its API unchanged.

use ferroloop_engine::VirtualClock;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;

use crate::loop_core::LoopCore;

fn clock_of<'a>(core: &'a Bound<'_, LoopCore>) -> PyResult<&'a VirtualClock> {
    core.get()
        .vclock
        .get()
        .ok_or_else(|| PyRuntimeError::new_err("this loop's time is not virtual"))
}

/// Makes `core`'s time virtual, starting at `start`; `manual`: the clock
/// stands still until advanced. Once per loop, before any timer exists.
#[pyfunction]
#[pyo3(signature = (core, start, grace, manual, detect_deadlock))]
pub(crate) fn _virtual_enable(
    core: &Bound<'_, LoopCore>,
    start: f64,
    grace: f64,
    manual: bool,
    detect_deadlock: bool,
) -> PyResult<()> {
    if !start.is_finite() || !grace.is_finite() || grace < 0.0 {
        return Err(PyValueError::new_err(
            "start must be finite and grace finite and >= 0",
        ));
    }
    let py = core.py();
    let c = core.get();
    if !c.state(py).timers.borrow_mut(py).is_empty()
        || c.thread_id.load(std::sync::atomic::Ordering::Relaxed) != 0
    {
        return Err(PyRuntimeError::new_err(
            "virtual time must be enabled before the loop schedules timers",
        ));
    }
    c.vclock
        .set(VirtualClock::new(start, grace, manual, detect_deadlock))
        .map_err(|_| PyRuntimeError::new_err("this loop's time is already virtual"))
}

/// `(now, limit, grace, external, detect_deadlock, jumps)`, or None on a
/// real-time loop.
#[pyfunction]
pub(crate) fn _virtual_state(
    core: &Bound<'_, LoopCore>,
) -> Option<(f64, f64, f64, usize, bool, u64)> {
    core.get().vclock.get().map(|v| {
        (
            v.now(),
            v.limit(),
            v.grace(),
            v.external(),
            v.detect_deadlock(),
            v.jumps(),
        )
    })
}

/// Changes the settings given (None: unchanged). `limit`: how far the clock
/// may jump by itself (+inf: auto mode; never below the current time).
#[pyfunction]
#[pyo3(signature = (core, *, limit=None, grace=None, detect_deadlock=None))]
pub(crate) fn _virtual_set(
    core: &Bound<'_, LoopCore>,
    limit: Option<f64>,
    grace: Option<f64>,
    detect_deadlock: Option<bool>,
) -> PyResult<()> {
    let v = clock_of(core)?;
    if let Some(g) = grace {
        if !g.is_finite() || g < 0.0 {
            return Err(PyValueError::new_err("grace must be finite and >= 0"));
        }
        v.set_grace(g);
    }
    if let Some(l) = limit {
        if l.is_nan() {
            return Err(PyValueError::new_err("limit must not be NaN"));
        }
        v.set_limit(l);
    }
    if let Some(d) = detect_deadlock {
        v.set_detect_deadlock(d);
    }
    Ok(())
}

/// Outside work that may post events began (`delta` > 0) or ended (< 0):
/// while any is pending the clock waits the grace before each jump, and an
/// idle loop waits for it instead of reporting a deadlock.
#[pyfunction]
pub(crate) fn _virtual_external(core: &Bound<'_, LoopCore>, delta: isize) -> PyResult<()> {
    clock_of(core)?.add_external(delta);
    Ok(())
}

/// Nothing is ready, no timer can come due and no event can arrive: the
/// loop's Python half raises the error naming the stuck tasks. Returns if
/// the hook chose to wait instead.
#[cold]
pub(crate) fn report_deadlock(slf: &Bound<'_, LoopCore>) -> PyResult<()> {
    slf.call_method0(intern!(slf.py(), "_virtual_deadlock"))
        .map(drop)
}
