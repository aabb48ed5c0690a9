//! Native waiters behind `sock_recv`, `sock_recv_into`, `sock_sendall`,
//! `sock_accept`, `sock_connect`, `sock_recvfrom`, `sock_recvfrom_into` and
//! `sock_sendto`.
//!
//! asyncio's selector loop waits for a socket by registering a Python
//! callback with `add_reader` / `add_writer` that retries the call, and it
//! removes that registration from a done callback of the future. Here the
//! registration is a `SockWaiter`. When the poller reports the fd ready, the
//! waiter takes its turn in the ready queue (where asyncio's callback would
//! run), makes the call in Rust and resolves the future itself, removing its
//! own registration as it does: no Python callback, handle, partial or done
//! callback per wait. If the wait ends any other way (the awaiting task is
//! cancelled), the coroutine that awaits the future removes the waiter
//! (`_sock_unwait`, see `_sock_ops.py`).
//!
//! Semantics follow selector_events: one reader and one writer per fd, so a
//! new waiter (or an `add_reader`) replaces the previous one, whose future is
//! then never resolved; errors from the call are set on the future, except
//! SystemExit and KeyboardInterrupt, which propagate out of the loop and
//! leave the waiter registered.

use std::os::fd::RawFd;
use std::sync::Arc;

use ferroloop_engine::{faults, sockio};
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3::{PyTraverseError, PyVisit};

use crate::fd_watchers::{self, Side};
use crate::gil_cell::GilCell;
use crate::handles::Handle;
use crate::loop_core::LoopCore;
use crate::pyhelpers::{is_exit, slice_of};
use crate::sock_calls::{self, os_error};
use crate::sock_dgram::{self, DgramOp};
use crate::state::{LoopState, Runnable};

/// The call a waiter retries until it succeeds or fails.
pub(crate) enum SockOp {
    /// `sock.recv(n)`.
    Recv { n: isize },
    /// `sock.recv_into(buf)`.
    RecvInto { buf: Py<PyAny> },
    /// The rest of `sock.sendall(data)`: `data[pos..len]`. `data` is a
    /// `bytes` sent natively when `native`, else a memoryview sent with
    /// `sock.send` (asyncio's way, for socket subclasses and other buffers).
    SendAll {
        data: Py<PyAny>,
        pos: usize,
        len: usize,
        native: bool,
    },
    /// `sock.accept()`; the new connection is made non-blocking.
    Accept,
    /// The end of a background `sock.connect(address)`: `SO_ERROR` says
    /// how it went (selector_events' `_sock_connect_cb`).
    Connect { address: Py<PyAny> },
    /// `sock.recvfrom`, `sock.recvfrom_into` or `sock.sendto` (sock_dgram.rs).
    Dgram(DgramOp),
}

impl SockOp {
    fn clone_ref(&self, py: Python<'_>) -> SockOp {
        match self {
            SockOp::Recv { n } => SockOp::Recv { n: *n },
            SockOp::RecvInto { buf } => SockOp::RecvInto {
                buf: buf.clone_ref(py),
            },
            SockOp::SendAll {
                data,
                pos,
                len,
                native,
            } => SockOp::SendAll {
                data: data.clone_ref(py),
                pos: *pos,
                len: *len,
                native: *native,
            },
            SockOp::Accept => SockOp::Accept,
            SockOp::Connect { address } => SockOp::Connect {
                address: address.clone_ref(py),
            },
            SockOp::Dgram(op) => SockOp::Dgram(op.clone_ref(py)),
        }
    }

    /// asyncio's name of the callback this replaces, for error reports.
    fn name(&self) -> &'static str {
        match self {
            SockOp::Recv { .. } => "_sock_recv",
            SockOp::RecvInto { .. } => "_sock_recv_into",
            SockOp::SendAll { .. } => "_sock_sendall",
            SockOp::Accept => "_sock_accept",
            SockOp::Connect { .. } => "_sock_connect_cb",
            SockOp::Dgram(op) => op.name(),
        }
    }
}

/// A wait in progress.
struct Pending {
    fut: Py<PyAny>,
    sock: Py<PyAny>,
    /// `sock` is a plain `socket.socket`: its calls are made natively.
    plain: bool,
    op: SockOp,
}

pub(crate) struct SockWaiter {
    pub(crate) fd: RawFd,
    pub(crate) side: Side,
    /// asyncio's name for the retry callback, for error reports.
    name: &'static str,
    /// None once the wait is over (resolved, cancelled or replaced): a copy
    /// still in the ready queue then does nothing.
    pending: GilCell<Option<Pending>>,
}

/// What one attempt of the call came to.
enum Step {
    /// Not ready after all: keep waiting.
    Wait,
    /// `sendall` got this far; keep waiting for the rest.
    Sent(usize),
    /// The operation's result.
    Done(Py<PyAny>),
}

impl SockWaiter {
    /// Runs when the poller reported the fd ready: one attempt of the call;
    /// on success or failure the future is resolved and the waiter removed.
    /// Errors returned are the loop's to report (or, for SystemExit and
    /// KeyboardInterrupt, to propagate).
    pub(crate) fn fire(self: &Arc<Self>, py: Python<'_>, core: &LoopCore) -> PyResult<()> {
        // Copy out what the attempt needs: no Python code runs while the
        // cell is borrowed.
        let (fut, sock, plain, op) = {
            let pending = self.pending.borrow_mut(py);
            let Some(p) = pending.as_ref() else {
                return Ok(());
            };
            (
                p.fut.clone_ref(py),
                p.sock.clone_ref(py),
                p.plain,
                p.op.clone_ref(py),
            )
        };
        let fut = fut.bind(py);
        if fut.call_method0(intern!(py, "done"))?.is_truthy()? {
            // Cancelled: leave the data to whoever reads next. The awaiting
            // coroutine would remove this waiter when it resumes; do it now.
            self.finish(py, core);
            return Ok(());
        }
        match attempt(py, sock.bind(py), plain, &op) {
            Ok(Step::Wait) => {
                self.rearm(py, core);
                Ok(())
            }
            Ok(Step::Sent(pos)) => {
                if let Some(Pending {
                    op: SockOp::SendAll { pos: at, .. },
                    ..
                }) = self.pending.borrow_mut(py).as_mut()
                {
                    *at = pos;
                }
                self.rearm(py, core);
                Ok(())
            }
            Ok(Step::Done(value)) => {
                self.finish(py, core);
                fut.call_method1(intern!(py, "set_result"), (value,))
                    .map(drop)
            }
            Err(err) if is_exit(py, &err) => Err(err),
            Err(err) => {
                self.finish(py, core);
                fut.call_method1(intern!(py, "set_exception"), (err.into_value(py),))
                    .map(drop)
            }
        }
    }

    /// Ends the wait: forgets it and removes this waiter's registration,
    /// unless another watcher has replaced it meanwhile.
    fn finish(self: &Arc<Self>, py: Python<'_>, core: &LoopCore) {
        let pending = self.pending.borrow_mut(py).take();
        let removed = remove_if_current(&mut core.state(py), self);
        // Dropped here, with no cell borrowed.
        drop(removed);
        drop(pending);
        core.drop_orphans(py);
    }

    /// Waits again: re-arms the fd's registration, which the report that
    /// ran this waiter disarmed if it was one-shot.
    fn rearm(&self, py: Python<'_>, core: &LoopCore) {
        // If that fails, the fd was closed under the wait: as with a
        // level-triggered reader on a closed fd, nothing will wake it.
        let _ = fd_watchers::sync(&mut core.state(py), self.fd);
    }

    /// Whether this waiter resolves `fut`.
    fn waits_for(&self, py: Python<'_>, fut: &Bound<'_, PyAny>) -> bool {
        self.pending
            .borrow_mut(py)
            .as_ref()
            .is_some_and(|p| p.fut.as_ptr() == fut.as_ptr())
    }

    /// Ends a replaced or removed wait without resolving its future (as
    /// asyncio cancels a replaced reader's handle).
    fn forget(&self, py: Python<'_>) {
        let pending = self.pending.borrow_mut(py).take();
        drop(pending);
    }

    /// A short description for error reports: asyncio's callback name.
    pub(crate) fn describe(&self) -> String {
        format!("{}(fd={})", self.name, self.fd)
    }

    pub(crate) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        let Some(Some(p)) = self.pending.peek_for_gc() else {
            return Ok(());
        };
        visit.call(&p.fut)?;
        visit.call(&p.sock)?;
        match &p.op {
            SockOp::RecvInto { buf } => visit.call(buf),
            SockOp::SendAll { data, .. } => visit.call(data),
            SockOp::Connect { address } => visit.call(address),
            SockOp::Dgram(op) => op.traverse(visit),
            SockOp::Recv { .. } | SockOp::Accept => Ok(()),
        }
    }
}

/// Removes `waiter`'s registration if it is still the registered one.
fn remove_if_current(state: &mut LoopState, waiter: &Arc<SockWaiter>) -> Option<Runnable> {
    let map = match waiter.side {
        Side::Read => &state.readers,
        Side::Write => &state.writers,
    };
    match map.get(&waiter.fd) {
        Some(Runnable::Sock(w)) if Arc::ptr_eq(w, waiter) => {
            fd_watchers::remove(state, waiter.fd, waiter.side)
                .ok()
                .flatten()
        }
        _ => None,
    }
}

/// The socket's current fd: -1 once it is closed, so a call on a socket
/// closed while its waiter was queued fails with EBADF, as `sock.recv` would,
/// instead of reaching whatever file now has the old number.
fn current_fd(sock: &Bound<'_, PyAny>) -> PyResult<RawFd> {
    sock.call_method0(intern!(sock.py(), "fileno"))?.extract()
}

/// A Python call's outcome; BlockingIOError / InterruptedError mean "wait".
fn py_step(py: Python<'_>, result: PyResult<Bound<'_, PyAny>>) -> PyResult<Step> {
    match result {
        Ok(value) => Ok(Step::Done(value.unbind())),
        Err(e) if sock_calls::is_would_block(py, &e) => Ok(Step::Wait),
        Err(e) => Err(e),
    }
}

/// A native call's outcome.
fn io_step<T>(
    result: std::io::Result<T>,
    done: impl FnOnce(T) -> PyResult<Step>,
) -> PyResult<Step> {
    match result {
        Ok(value) => done(value),
        Err(e) if sockio::would_block(&e) => Ok(Step::Wait),
        Err(e) => Err(os_error(e)),
    }
}

/// One attempt of the call (selector_events' `_sock_recv`, `_sock_sendall`, ...).
fn attempt(py: Python<'_>, sock: &Bound<'_, PyAny>, plain: bool, op: &SockOp) -> PyResult<Step> {
    match op {
        SockOp::Recv { n } if plain => {
            // n >= 0: recv_nowait refused a negative size before the wait.
            io_step(
                sock_calls::recv_bytes(sock, current_fd(sock)?, *n as usize),
                |data| Ok(Step::Done(data.into_any().unbind())),
            )
        }
        SockOp::Recv { n } => py_step(py, sock.call_method1(intern!(py, "recv"), (*n,))),
        SockOp::RecvInto { buf } => {
            if plain {
                let buf = buf.bind(py);
                if let Some(result) = sock_calls::recv_into_native(current_fd(sock)?, buf) {
                    return io_step(result, |n| {
                        Ok(Step::Done(n.into_pyobject(py)?.into_any().unbind()))
                    });
                }
            }
            py_step(py, sock.call_method1(intern!(py, "recv_into"), (buf,)))
        }
        SockOp::SendAll {
            data,
            pos,
            len,
            native,
        } => {
            let sent = if *native {
                let bytes = data.bind(py).cast::<PyBytes>()?;
                match io_step(
                    sockio::send(current_fd(sock)?, &bytes.as_bytes()[*pos..]),
                    |n| Ok(Step::Sent(n)),
                )? {
                    Step::Sent(n) => n,
                    other => return Ok(other),
                }
            } else {
                let rest = slice_of(data.bind(py), Some(*pos as isize), None)?;
                match py_step(py, sock.call_method1(intern!(py, "send"), (rest,)))? {
                    Step::Done(n) => n.bind(py).extract::<usize>()?,
                    other => return Ok(other),
                }
            };
            let pos = pos + sent;
            if pos >= *len {
                Ok(Step::Done(py.None()))
            } else {
                Ok(Step::Sent(pos))
            }
        }
        SockOp::Connect { address } => {
            if let Some(e) = faults::inject(faults::Call::Connect) {
                let code = e.raw_os_error().unwrap_or(libc::EIO);
                return Err(PyOSError::new_err((
                    code,
                    format!("Connect call failed {}", address.bind(py).str()?),
                )));
            }
            let err = sock.call_method1(
                intern!(py, "getsockopt"),
                (libc::SOL_SOCKET, libc::SO_ERROR),
            );
            match py_step(py, err)? {
                Step::Done(err) => match err.bind(py).extract::<i32>()? {
                    0 => Ok(Step::Done(py.None())),
                    // OSError(errno, ...) picks the subclass (ConnectionRefusedError, ...).
                    err => Err(PyOSError::new_err((
                        err,
                        format!("Connect call failed {}", address.bind(py).str()?),
                    ))),
                },
                other => Ok(other),
            }
        }
        SockOp::Dgram(op) => Ok(match sock_dgram::attempt(sock, op)? {
            Some(value) => Step::Done(value.unbind()),
            None => Step::Wait,
        }),
        SockOp::Accept => {
            if let Some(e) = faults::inject(faults::Call::Accept) {
                return io_step(Err::<(), _>(e), |_| Ok(Step::Wait));
            }
            accept_step(py, sock)
        }
    }
}

/// `sock.accept()`, the new connection made non-blocking.
fn accept_step(py: Python<'_>, sock: &Bound<'_, PyAny>) -> PyResult<Step> {
    match py_step(py, sock.call_method0(intern!(py, "accept")))? {
        Step::Done(pair) => {
            let conn = pair.bind(py).get_item(0)?;
            conn.call_method1(intern!(py, "setblocking"), (false,))?;
            Ok(Step::Done(pair))
        }
        other => Ok(other),
    }
}

/// Registers a waiter for `op` on `fd`'s `side` and returns the future it
/// will resolve (from the loop's `create_future`, as asyncio's).
pub(crate) fn wait<'py>(
    slf: &Bound<'py, LoopCore>,
    fd: RawFd,
    side: Side,
    sock: &Bound<'py, PyAny>,
    op: SockOp,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    let core = slf.get();
    core.ensure_open()?;
    if fd < 0 {
        return Err(PyValueError::new_err(format!(
            "Invalid file descriptor: {fd}"
        )));
    }
    let fut = slf.call_method0(intern!(py, "create_future"))?;
    let plain = sock_calls::is_plain_socket(sock)?;
    let waiter = Arc::new(SockWaiter {
        fd,
        side,
        name: op.name(),
        pending: GilCell::new(Some(Pending {
            fut: fut.clone().unbind(),
            sock: sock.clone().unbind(),
            plain,
            op,
        })),
    });
    // Our own `waiter` reference outlives the borrow: if registering fails,
    // the waiter (and the Python objects it holds) is dropped after it.
    let replaced = fd_watchers::add(
        &mut core.state(py),
        fd,
        side,
        Runnable::Sock(waiter.clone()),
        None,
    );
    core.drop_orphans(py);
    if let Some(old) = replaced? {
        retire(py, old)?;
    }
    drop(waiter);
    Ok(fut)
}

/// The awaiting coroutine's cleanup when the wait ended without the waiter
/// (cancellation): removes the waiter for `fut` on `fd`'s `side`, if that is
/// still the registered watcher. Returns whether it was.
pub(crate) fn unwait(
    core: &LoopCore,
    py: Python<'_>,
    fd: RawFd,
    side: Side,
    fut: &Bound<'_, PyAny>,
) -> PyResult<bool> {
    if core.closed.load(std::sync::atomic::Ordering::Relaxed) {
        return Ok(false);
    }
    let removed = {
        let mut st = core.state(py);
        let map = match side {
            Side::Read => &st.readers,
            Side::Write => &st.writers,
        };
        let ours = matches!(map.get(&fd), Some(Runnable::Sock(w)) if w.waits_for(py, fut));
        if ours {
            // If the kernel refused the change (the fd was closed), the
            // waiter is among the orphans: removed all the same.
            fd_watchers::remove(&mut st, fd, side).unwrap_or_else(|_| None)
        } else {
            None
        }
    };
    core.drop_orphans(py);
    match removed {
        Some(r) => {
            retire(py, r)?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Retires a watcher that was replaced or removed: a handle is cancelled, a
/// waiter forgets its wait. Call with no cell borrowed.
pub(crate) fn retire(py: Python<'_>, old: Runnable) -> PyResult<()> {
    match old {
        Runnable::Handle(h) => Handle::cancel_handle(h.bind(py)),
        Runnable::Sock(w) => {
            w.forget(py);
            Ok(())
        }
        // Never an fd watcher; nothing to retire.
        Runnable::Call(c) => {
            c.release(py);
            Ok(())
        }
    }
}
