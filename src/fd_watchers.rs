//! `add_reader` / `add_writer` / `remove_reader` / `remove_writer`: callbacks
//! run while an fd is readable or writable (level-triggered, as asyncio's
//! selector loop), and the kernel registration behind every fd watcher
//! (socket operations' waiters included; see `target`).

use std::collections::HashMap;
use std::os::fd::RawFd;

use ferroloop_engine::{Interest, Registration};
use pyo3::exceptions::{PyAttributeError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyInt;

use crate::state::{LoopState, Runnable};

/// Which side of an fd a watcher is on.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Read,
    Write,
}

/// What `fileobj_to_fd` made of an fd-or-file-object.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum FdNumber {
    /// A valid fd number.
    Fd(RawFd),
    /// A non-negative int too large for a C int: never registered (the
    /// stock loop's selector finds no key for it, and its epoll refuses to
    /// register it with OverflowError).
    TooLarge,
}

/// selectors' `_fileobj_to_fd`: an `int` as it is, anything else as
/// `int(obj.fileno())`; AttributeError, TypeError and ValueError from either
/// call become `ValueError("Invalid file object: ...")`, other exceptions
/// propagate, and a negative number is `ValueError("Invalid file
/// descriptor: ...")`.
pub(crate) fn fileobj_to_fd(obj: &Bound<'_, PyAny>) -> PyResult<FdNumber> {
    let py = obj.py();
    let number = if obj.is_instance_of::<PyInt>() {
        obj.clone()
    } else {
        let invalid = |e: PyErr| -> PyErr {
            if e.is_instance_of::<PyAttributeError>(py)
                || e.is_instance_of::<PyTypeError>(py)
                || e.is_instance_of::<PyValueError>(py)
            {
                PyValueError::new_err(format!(
                    "Invalid file object: {}",
                    match obj.repr() {
                        Ok(r) => r.to_string(),
                        Err(_) => String::new(),
                    }
                ))
            } else {
                e
            }
        };
        let n = obj.call_method0(intern!(py, "fileno")).map_err(invalid)?;
        // int(n), as the stock loop converts it: a str "5" or a float 5.0
        // from fileno() is accepted.
        py.get_type::<PyInt>().call1((n,)).map_err(invalid)?
    };
    match number.extract::<i64>() {
        Ok(fd) if fd < 0 => Err(invalid_fd(&number)),
        Ok(fd) => Ok(RawFd::try_from(fd).map_or(FdNumber::TooLarge, FdNumber::Fd)),
        // Beyond i64 either way.
        Err(_) if number.lt(0)? => Err(invalid_fd(&number)),
        Err(_) => Ok(FdNumber::TooLarge),
    }
}

fn invalid_fd(number: &Bound<'_, PyAny>) -> PyErr {
    PyValueError::new_err(format!(
        "Invalid file descriptor: {}",
        match number.str() {
            Ok(s) => s.to_string(),
            Err(_) => String::new(),
        }
    ))
}

/// selectors' `_fileobj_lookup`: the fd `obj` names, or, when it names
/// none (a socket closed since: `fileno()` is -1), the fd it was registered
/// under, found by identity among the current registrations' file objects.
/// Fails with `fileobj_to_fd`'s error when neither.
///
/// Call with no cell borrowed (`fileno()` is Python code).
pub(crate) fn lookup(
    py: Python<'_>,
    state: &crate::gil_cell::GilCell<LoopState>,
    obj: &Bound<'_, PyAny>,
) -> PyResult<FdNumber> {
    match fileobj_to_fd(obj) {
        Err(e) if e.is_instance_of::<PyValueError>(py) => {
            let st = state.borrow_mut(py);
            st.fileobjs
                .iter()
                .find(|(_, o)| o.as_ptr() == obj.as_ptr())
                .map(|(fd, _)| FdNumber::Fd(*fd))
                .ok_or(e)
        }
        other => other,
    }
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
            Err(crate::sock_calls::os_error(e))
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

/// Whether `fd` has a watcher on either side (the stock loop's selector
/// has a key for it).
fn is_watched(state: &LoopState, fd: RawFd) -> bool {
    state.readers.contains_key(&fd) || state.writers.contains_key(&fd)
}

/// The kernel refused to change an existing registration (the fd was closed
/// under it): as the stock loop's selector does then, the whole registration
/// is dropped, both sides (their watchers are not cancelled) and its file
/// object. Everything goes to the orphans, dropped unlocked later.
fn drop_registration(state: &mut LoopState, fd: RawFd) {
    let dropped = [state.readers.remove(&fd), state.writers.remove(&fd)];
    state.orphans.extend(dropped.into_iter().flatten());
    forget_fileobj(state, fd);
}

/// Forgets the file object `fd` was registered with (into the orphans).
fn forget_fileobj(state: &mut LoopState, fd: RawFd) {
    if let Some(obj) = state.fileobjs.remove(&fd) {
        state.orphan_objs.push(obj);
    }
}

/// Registers `watcher` for `fd`'s side, replacing (and returning, for the
/// caller to retire) a previous watcher. `fileobj` is what the caller
/// registered (None for an int fd): a registration made when the fd had
/// none keeps it, so that `lookup` finds the fd by it after the file is
/// closed, as the stock loop's selector keys do.
pub(crate) fn add(
    state: &mut LoopState,
    fd: RawFd,
    side: Side,
    watcher: Runnable,
    fileobj: Option<Py<PyAny>>,
) -> PyResult<Option<Runnable>> {
    if state.poller.is_none() {
        return Err(pyo3::exceptions::PyRuntimeError::new_err(
            "Event loop is closed",
        ));
    }
    let fresh = !is_watched(state, fd);
    let old = map_mut(state, side).insert(fd, watcher);
    if let Err(e) = sync(state, fd) {
        // The caller still holds the new watcher, so dropping this
        // reference here runs no destructor.
        map_mut(state, side).remove(&fd);
        if let Some(old) = old {
            map_mut(state, side).insert(fd, old);
        }
        if !fresh {
            drop_registration(state, fd);
        }
        if let Some(obj) = fileobj {
            state.orphan_objs.push(obj);
        }
        return Err(e);
    }
    if fresh {
        forget_fileobj(state, fd);
        if let Some(obj) = fileobj {
            state.fileobjs.insert(fd, obj);
        }
    } else if let Some(obj) = fileobj {
        // The registration keeps the file object it was made with.
        state.orphan_objs.push(obj);
    }
    Ok(old)
}

/// Unregisters `fd`'s side; returns the watcher that was registered.
///
/// If the other side stays registered and the kernel refuses the change
/// (the fd was closed), the error is returned and the whole registration is
/// dropped, as the stock loop's selector does: the removed watcher goes to
/// the orphans with the other side's.
pub(crate) fn remove(state: &mut LoopState, fd: RawFd, side: Side) -> PyResult<Option<Runnable>> {
    let Some(watcher) = map_mut(state, side).remove(&fd) else {
        return Ok(None);
    };
    if !is_watched(state, fd) {
        forget_fileobj(state, fd);
        // A failure here means the fd is already gone from the kernel's
        // view; the watcher is removed either way.
        let _ = sync(state, fd);
        return Ok(Some(watcher));
    }
    match sync(state, fd) {
        Ok(()) => Ok(Some(watcher)),
        Err(e) => {
            state.orphans.push(watcher);
            drop_registration(state, fd);
            Err(e)
        }
    }
}
