//! `add_reader` / `add_writer` / `remove_reader` / `remove_writer`: callbacks
//! run while an fd is readable or writable (level-triggered, as asyncio's
//! selector loop).

use std::os::fd::RawFd;

use ferroloop_engine::Interest;
use pyo3::exceptions::{PyAttributeError, PyTypeError, PyValueError};
use pyo3::prelude::*;

use crate::state::{LoopState, Runnable};

/// Which side of an fd a watcher is on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Read,
    Write,
}

/// asyncio's `_fileobj_to_fd`: an int, or an object with `fileno()`.
pub(crate) fn fileobj_to_fd(obj: &Bound<'_, PyAny>) -> PyResult<RawFd> {
    let fd: i64 = if let Ok(fd) = obj.extract::<i64>() {
        fd
    } else {
        let invalid = || {
            PyValueError::new_err(format!(
                "Invalid file object: {}",
                obj.repr().map(|r| r.to_string()).unwrap_or_default()
            ))
        };
        match obj.call_method0("fileno") {
            Ok(n) => n.extract::<i64>().map_err(|_| invalid())?,
            Err(e)
                if e.is_instance_of::<PyAttributeError>(obj.py())
                    || e.is_instance_of::<PyTypeError>(obj.py())
                    || e.is_instance_of::<PyValueError>(obj.py()) =>
            {
                return Err(invalid())
            }
            Err(e) => return Err(e),
        }
    };
    if fd < 0 || fd > i32::MAX as i64 {
        return Err(PyValueError::new_err(format!(
            "Invalid file descriptor: {fd}"
        )));
    }
    Ok(fd as RawFd)
}

fn interest(state: &LoopState, fd: RawFd) -> Interest {
    Interest {
        read: state.readers.contains_key(&fd),
        write: state.writers.contains_key(&fd),
    }
}

/// Registers `watcher` for `fd`'s side, replacing (and returning, for the
/// caller to retire) a previous watcher.
pub(crate) fn add(
    state: &mut LoopState,
    fd: RawFd,
    side: Side,
    watcher: Runnable,
) -> PyResult<Option<Runnable>> {
    let old = interest(state, fd);
    let mut new = old;
    match side {
        Side::Read => new.read = true,
        Side::Write => new.write = true,
    }
    if new != old {
        let Some(poller) = state.poller.as_ref() else {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "Event loop is closed",
            ));
        };
        poller.update(fd, old, new)?;
    }
    let map = match side {
        Side::Read => &mut state.readers,
        Side::Write => &mut state.writers,
    };
    Ok(map.insert(fd, watcher))
}

/// Unregisters `fd`'s side; returns the watcher that was registered.
pub(crate) fn remove(state: &mut LoopState, fd: RawFd, side: Side) -> PyResult<Option<Runnable>> {
    let old = interest(state, fd);
    let map = match side {
        Side::Read => &mut state.readers,
        Side::Write => &mut state.writers,
    };
    let Some(watcher) = map.remove(&fd) else {
        return Ok(None);
    };
    let new = interest(state, fd);
    if let Some(poller) = state.poller.as_ref() {
        // A failure here means the fd is already gone from the kernel's view;
        // the watcher is removed either way.
        let _ = poller.update(fd, old, new);
    }
    Ok(Some(watcher))
}
