//! `add_reader` / `add_writer` / `remove_reader` / `remove_writer`: callbacks
//! run while an fd is readable or writable (level-triggered, as asyncio's
//! selector loop), and the kernel registration behind every fd watcher
//! (socket operations' waiters included; see `target`).

use std::collections::HashMap;
use std::os::fd::RawFd;

use ferroloop_engine::{Interest, Registration};
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

/// The kernel registration `fd`'s watchers call for, given the current one.
///
/// Callbacks (`add_reader`, transports) get asyncio's level-triggered
/// registration: they run on every poll while the fd is ready. An fd
/// watched only by socket operations' waiters is registered one-shot: the
/// kernel disarms it when it reports the fd ready, and the waiter re-arms it
/// only if it has to wait again. When the last waiter is gone, a disarmed
/// registration is kept, so the next wait on the fd (an echo server's next
/// `sock_recv`) re-arms it with one MOD instead of an ADD now and a DEL
/// before. Keeping it is safe because a disarmed registration reports
/// nothing, not even a hang-up: if the socket is closed, its file may live
/// on in a dup (or a forked child) and keep the registration, and a new
/// file may get the fd number; neither is ever woken by the old one.
/// Anything still armed with nothing to wake is removed at once.
fn target(state: &LoopState, fd: RawFd, current: Option<Registration>) -> Option<Registration> {
    let reader = state.readers.get(&fd);
    let writer = state.writers.get(&fd);
    let interest = Interest {
        read: reader.is_some(),
        write: writer.is_some(),
    };
    if interest.is_none() {
        return current.filter(|c| c.oneshot && c.interest.is_none());
    }
    let callback = |w: Option<&Runnable>| matches!(w, Some(Runnable::Handle(_)));
    Some(Registration {
        interest,
        oneshot: !callback(reader) && !callback(writer),
    })
}

/// Brings the kernel registration of `fd` in line with its watchers.
///
/// On failure the registration is forgotten: either the kernel has none
/// (the fd was closed), or the next change finds it and overwrites it.
pub(crate) fn sync(state: &mut LoopState, fd: RawFd) -> PyResult<()> {
    let current = state.registered.get(&fd).copied();
    let target = target(state, fd, current);
    if target == current {
        return Ok(());
    }
    let Some(poller) = state.poller.as_ref() else {
        return Err(pyo3::exceptions::PyRuntimeError::new_err(
            "Event loop is closed",
        ));
    };
    match poller.reregister(fd, current, target) {
        Ok(()) => {
            match target {
                Some(t) => state.registered.insert(fd, t),
                None => state.registered.remove(&fd),
            };
            Ok(())
        }
        Err(e) => {
            state.registered.remove(&fd);
            Err(e.into())
        }
    }
}

/// Notes that the poller reported `fd` (the kernel disarmed a one-shot
/// registration as it did). Returns whether it was one-shot.
#[inline]
pub(crate) fn note_reported(state: &mut LoopState, fd: RawFd) -> bool {
    match state.registered.get_mut(&fd) {
        Some(reg) if reg.oneshot => {
            reg.interest = Interest::NONE;
            true
        }
        _ => false,
    }
}

fn map_mut(state: &mut LoopState, side: Side) -> &mut HashMap<RawFd, Runnable> {
    match side {
        Side::Read => &mut state.readers,
        Side::Write => &mut state.writers,
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
    if state.poller.is_none() {
        return Err(pyo3::exceptions::PyRuntimeError::new_err(
            "Event loop is closed",
        ));
    }
    let old = map_mut(state, side).insert(fd, watcher);
    if let Err(e) = sync(state, fd) {
        // Put things back; the caller still holds the new watcher, so
        // dropping this reference here runs no destructor.
        let map = map_mut(state, side);
        match old {
            Some(old) => map.insert(fd, old),
            None => map.remove(&fd),
        };
        return Err(e);
    }
    Ok(old)
}

/// Unregisters `fd`'s side; returns the watcher that was registered.
pub(crate) fn remove(state: &mut LoopState, fd: RawFd, side: Side) -> PyResult<Option<Runnable>> {
    let Some(watcher) = map_mut(state, side).remove(&fd) else {
        return Ok(None);
    };
    // A failure here means the fd is already gone from the kernel's view;
    // the watcher is removed either way.
    let _ = sync(state, fd);
    Ok(Some(watcher))
}
