//! `LoopCore`: the native half of ferroloop's event loop — scheduling
//! (`call_soon`, `call_later`, `call_at`, `call_soon_threadsafe`), fd
//! watchers, the loop flags, and the run loop itself (see `run_loop.rs`).
//!
//! The public `ferroloop.Loop` is a Python subclass that adds the parts of
//! asyncio's API that are pure Python in CPython too (run_until_complete,
//! exception handlers, executors, sockets, signals, ...).

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use ferroloop_engine::{clock, Interest, Poller, VirtualClock, Waker};
use pyo3::exceptions::{PyOverflowError, PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple};
use pyo3::{intern, PyTraverseError, PyVisit};

use crate::call_args::CallArgs;
use crate::context::copy_current_context_for_handle;
use crate::debug;
use crate::fd_watchers::{self, FdNumber, Side};
use crate::gil_cell::{GilCell, GilRefMut};
use crate::handles::{Handle, TimerHandle, TimerState};
use crate::pyhelpers::{extract_stack, lock};
use crate::sock_waiter::{self, SockOp};
use crate::state::{LoopState, Runnable};
use crate::timer_heap::Scheduled;

/// The `asyncio.futures` module, for `create_future`.
static ASYNCIO_FUTURES: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Token under which the waker's pipe is registered with the poller.
pub(crate) const WAKER_TOKEN: u64 = u64::MAX;

/// asyncio's `MAXIMUM_SELECT_TIMEOUT`: never sleep longer than a day.
pub(crate) const MAXIMUM_SELECT_TIMEOUT: f64 = 24.0 * 3600.0;

#[pyclass(frozen, subclass, module = "ferroloop._ferroloop")]
pub struct LoopCore {
    pub(crate) state: GilCell<LoopState>,
    pub(crate) stopping: AtomicBool,
    pub(crate) closed: AtomicBool,
    pub(crate) debug: AtomicBool,
    /// `threading.get_ident()` of the thread running the loop; 0 when not running.
    pub(crate) thread_id: AtomicU64,
    /// `slow_callback_duration` as f64 bits.
    slow_callback_bits: AtomicU64,
    pub(crate) clock_resolution: f64,
    /// The handle being run, in debug mode (asyncio's `_current_handle`).
    pub(crate) current_handle: Mutex<Option<Py<Handle>>>,
    /// Set once on the test loops of `ferroloop.testing`: the loop's time
    /// is then virtual (see `virtual_time.rs`). Unset, reading the clock
    /// costs one load and a predicted branch more than the real clock.
    pub(crate) vclock: OnceLock<VirtualClock>,
}

impl LoopCore {
    #[inline]
    pub(crate) fn state(&self, py: Python<'_>) -> GilRefMut<'_, LoopState> {
        self.state.borrow_mut(py)
    }

    /// Makes the current (or next) poll return; a no-op once closed.
    pub(crate) fn wake(&self, py: Python<'_>) {
        if let Some(waker) = &self.state(py).waker {
            waker.wake();
        }
    }

    /// The loop's time: the monotonic clock, or the virtual one.
    #[inline]
    pub(crate) fn now(&self) -> f64 {
        match self.vclock.get() {
            None => clock::monotonic(),
            Some(v) => v.now(),
        }
    }

    #[inline]
    pub(crate) fn is_debug(&self) -> bool {
        self.debug.load(Ordering::Relaxed)
    }

    pub(crate) fn slow_callback_duration(&self) -> f64 {
        f64::from_bits(self.slow_callback_bits.load(Ordering::Relaxed))
    }

    fn loop_thread(&self) -> Option<u64> {
        match self.thread_id.load(Ordering::Relaxed) {
            0 => None,
            id => Some(id),
        }
    }

    #[inline]
    pub(crate) fn ensure_open(&self) -> PyResult<()> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(PyRuntimeError::new_err("Event loop is closed"));
        }
        Ok(())
    }

    /// Builds a handle with asyncio's defaults: a copy of the current context
    /// when none is given, and a source traceback in debug mode.
    // Inlined so the handle is built where it is stored, not moved through
    // each caller's result.
    #[inline(always)]
    fn make_handle(
        &self,
        py: Python<'_>,
        callback: &Bound<'_, PyAny>,
        args: CallArgs,
        context: Option<Bound<'_, PyAny>>,
        timer: Option<TimerState>,
        one_shot: bool,
    ) -> PyResult<Handle> {
        let debug = self.is_debug();
        let source_traceback = if debug {
            Some(extract_stack(py)?)
        } else {
            None
        };
        // Last of the fallible steps: an untracked copy must reach the handle,
        // whose destructor tracks it again (see `context.rs`).
        // Only a one-shot handle's copy stays out of the collector's view
        // (see there): an fd watcher's callback runs in its copy again and
        // again, and may store values in it.
        let (context, untracked) = match context {
            Some(c) if !c.is_none() => (c.unbind(), false),
            _ if one_shot => (copy_current_context_for_handle(py)?, true),
            _ => (crate::context::copy_current_context(py)?, false),
        };
        if one_shot {
            args.untrack_if_atomic(py);
        }
        let handle = Handle::new(
            callback.clone().unbind(),
            args,
            context,
            timer,
            source_traceback,
            debug,
            one_shot,
        );
        handle.set_context_untracked(untracked);
        Ok(handle)
    }

    #[inline(always)]
    fn push_ready<'py>(&self, py: Python<'py>, handle: Handle) -> PyResult<Bound<'py, Handle>> {
        let handle = Bound::new(py, handle)?;
        untrack_one_shot(&handle);
        self.state(py)
            .ready
            .push(Runnable::Handle(handle.clone().unbind()));
        Ok(handle)
    }

    /// Queues a one-shot, non-debug handle, in an emptied handle object
    /// when the pool has one (see `handle_alloc.rs`), else in a new one;
    /// with `wake`, then wakes the poll (`call_soon_threadsafe`).
    /// What it holds is what `make_handle` gives outside debug mode.
    #[inline(always)]
    fn queue_one_shot<'py>(
        &self,
        py: Python<'py>,
        callback: &Bound<'py, PyAny>,
        args: CallArgs,
        context: Option<Bound<'py, PyAny>>,
        thread_safe: bool,
        wake: bool,
    ) -> PyResult<Bound<'py, Handle>> {
        let handle = match crate::handle_alloc::take_pooled(py) {
            Some(pooled) => {
                let copied = match context {
                    Some(c) if !c.is_none() => Ok((c.unbind(), false)),
                    _ => copy_current_context_for_handle(py).map(|c| (c, true)),
                };
                let (context, untracked) = match copied {
                    Ok(parts) => parts,
                    Err(err) => {
                        // Back where it was (untracked, empty), for the next call.
                        crate::handle_alloc::return_pooled(py, pooled);
                        return Err(err);
                    }
                };
                args.untrack_if_atomic(py);
                // SAFETY: a pooled handle's only reference is `pooled` (see
                // `take_pooled`), and the GIL is held.
                let none = unsafe {
                    pooled.get().reinit(
                        py,
                        callback.clone().unbind(),
                        args,
                        context,
                        untracked,
                        thread_safe,
                    )
                };
                drop(none.into_bound(py));
                pooled
            }
            None => {
                let handle = self.make_handle(py, callback, args, context, None, true)?;
                if thread_safe {
                    handle.mark_thread_safe();
                }
                let handle = Bound::new(py, handle)?;
                untrack_one_shot(&handle);
                handle
            }
        };
        let mut st = self.state(py);
        st.ready.push(Runnable::Handle(handle.clone().unbind()));
        if wake {
            // The poll's wake-up, in the same borrow (no Python code runs).
            if let Some(waker) = &st.waker {
                waker.wake();
            }
        }
        drop(st);
        Ok(handle)
    }

    /// `call_soon` with its arguments parsed (the fast entry's way in).
    #[inline(always)]
    pub(crate) fn call_soon_args<'py>(
        &self,
        py: Python<'py>,
        callback: &Bound<'py, PyAny>,
        args: CallArgs,
        context: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, Handle>> {
        self.ensure_open()?;
        if self.is_debug() {
            debug::check_thread(py, self.loop_thread())?;
            debug::check_callback(py, callback, "call_soon")?;
            let handle = self.make_handle(py, callback, args, context, None, true)?;
            return self.push_ready(py, handle);
        }
        self.queue_one_shot(py, callback, args, context, false, false)
    }

    /// `call_soon_threadsafe` with its arguments parsed.
    // Inlined into the fast entry point (one call level less per post).
    #[inline(always)]
    pub(crate) fn call_soon_threadsafe_args<'py>(
        &self,
        py: Python<'py>,
        callback: &Bound<'py, PyAny>,
        args: CallArgs,
        context: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, Handle>> {
        let handle = self.call_soon_threadsafe_quiet(py, callback, args, context)?;
        self.wake(py);
        Ok(handle)
    }

    /// `call_soon_threadsafe` without the wake (the caller wakes the loop).
    pub(crate) fn call_soon_threadsafe_quiet<'py>(
        &self,
        py: Python<'py>,
        callback: &Bound<'py, PyAny>,
        args: CallArgs,
        context: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, Handle>> {
        self.ensure_open()?;
        let thread_safe = crate::handles::thread_safe_view(py)?.is_some();
        if !self.is_debug() {
            // Queued and the poll woken (see `queue_one_shot`).
            return self.queue_one_shot(py, callback, args, context, thread_safe, true);
        }
        debug::check_callback(py, callback, "call_soon_threadsafe")?;
        let handle = self.make_handle(py, callback, args, context, None, true)?;
        if thread_safe {
            handle.mark_thread_safe();
        }
        self.push_ready(py, handle)
    }

    fn schedule_at<'py>(
        &self,
        py: Python<'py>,
        when: f64,
        callback: &Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
        context: Option<Bound<'py, PyAny>>,
        method: &str,
    ) -> PyResult<Bound<'py, TimerHandle>> {
        self.ensure_open()?;
        if self.is_debug() {
            debug::check_thread(py, self.loop_thread())?;
            debug::check_callback(py, callback, method)?;
        }
        let timer = TimerState {
            when,
            heap: self.state(py).timers.slot(),
        };
        let handle = self.make_handle(
            py,
            callback,
            CallArgs::from_tuple(args),
            context,
            Some(timer),
            true,
        )?;
        let init = PyClassInitializer::from(handle).add_subclass(TimerHandle {});
        let timer_handle = Bound::new(py, init)?;
        untrack_one_shot(timer_handle.as_super());
        let base: Py<Handle> = timer_handle.as_super().clone().unbind();
        self.state(py)
            .timers
            .borrow_mut(py)
            .push(when, Scheduled(base));
        Ok(timer_handle)
    }

    fn add_fd_watcher(
        &self,
        py: Python<'_>,
        fileobj: &Bound<'_, PyAny>,
        side: Side,
        callback: &Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        self.ensure_open()?;
        let fd = match fd_watchers::lookup(py, &self.state, fileobj)? {
            FdNumber::Fd(fd) => fd,
            // What the stock loop's epoll says when asked to register it.
            FdNumber::TooLarge => {
                return Err(PyOverflowError::new_err(
                    "Python int too large to convert to C int",
                ))
            }
        };
        // An int is not kept: only a file object can be looked up by
        // identity (selectors' lookup tries identity only when the object
        // names no fd, which an int registered here always does).
        let keep =
            (!fileobj.is_instance_of::<pyo3::types::PyInt>()).then(|| fileobj.clone().unbind());
        let handle = self.make_handle(
            py,
            callback,
            CallArgs::from_tuple(args),
            context,
            None,
            false,
        )?;
        self.add_watcher(py, fd, side, handle, keep)
    }

    /// Registers `callback(*args)` to run while `fd`'s side is ready,
    /// replacing (and cancelling) a previous watcher. Used by transports.
    /// `context`: the callback's context (None: a copy of the current one).
    pub(crate) fn watch_fd(
        &self,
        py: Python<'_>,
        fd: RawFd,
        side: Side,
        callback: &Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        self.ensure_open()?;
        let handle = self.make_handle(
            py,
            callback,
            CallArgs::from_tuple(args),
            context,
            None,
            false,
        )?;
        self.add_watcher(py, fd, side, handle, None)
    }

    fn add_watcher(
        &self,
        py: Python<'_>,
        fd: RawFd,
        side: Side,
        handle: Handle,
        fileobj: Option<Py<PyAny>>,
    ) -> PyResult<Py<Handle>> {
        let handle = Py::new(py, handle)?;
        let (replaced, orphans) = {
            let mut st = self.state(py);
            let replaced = fd_watchers::add(
                &mut st,
                fd,
                side,
                Runnable::Handle(handle.clone_ref(py)),
                fileobj,
            );
            (replaced, st.take_orphans(false))
        };
        drop(orphans);
        if let Some(old) = replaced? {
            sock_waiter::retire(py, old)?;
        }
        Ok(handle)
    }

    fn remove_fd_watcher(
        &self,
        py: Python<'_>,
        fileobj: &Bound<'_, PyAny>,
        side: Side,
    ) -> PyResult<bool> {
        if self.closed.load(Ordering::Relaxed) {
            return Ok(false);
        }
        match fd_watchers::lookup(py, &self.state, fileobj)? {
            FdNumber::Fd(fd) => self.unwatch_fd(py, fd, side),
            FdNumber::TooLarge => Ok(false),
        }
    }

    /// Whether `fd` has a live watcher on `side`.
    pub(crate) fn is_watching(&self, py: Python<'_>, fd: RawFd, side: Side) -> bool {
        let st = self.state(py);
        let map = match side {
            Side::Read => &st.readers,
            Side::Write => &st.writers,
        };
        map.get(&fd).is_some_and(|r| !r.is_cancelled())
    }

    /// Removes `fd`'s watcher on `side`; false if there was none.
    pub(crate) fn unwatch_fd(&self, py: Python<'_>, fd: RawFd, side: Side) -> PyResult<bool> {
        if self.closed.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let (removed, orphans) = {
            let mut st = self.state(py);
            let removed = fd_watchers::remove(&mut st, fd, side);
            (removed, st.take_orphans(false))
        };
        drop(orphans);
        match removed? {
            Some(old) => {
                sock_waiter::retire(py, old)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Drops what the fd watcher maps let go of (see `LoopState::orphans`).
    pub(crate) fn drop_orphans(&self, py: Python<'_>) {
        let orphans = {
            let mut st = self.state(py);
            // Once per loop iteration: skip the take when there is nothing.
            if st.orphans.is_empty() && st.orphan_objs.is_empty() {
                return;
            }
            st.take_orphans(false)
        };
        drop(orphans);
    }
}

#[pymethods]
impl LoopCore {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let py = _args.py();
        let poller = Arc::new(Poller::new()?);
        let waker = Waker::new()?;
        poller.update_with_token(
            waker.as_raw_fd(),
            Interest::NONE,
            Interest {
                read: true,
                write: false,
            },
            WAKER_TOKEN,
        )?;
        Ok(LoopCore {
            state: GilCell::new(LoopState::new(py, poller, waker)),
            stopping: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            debug: AtomicBool::new(false),
            thread_id: AtomicU64::new(0),
            slow_callback_bits: AtomicU64::new(0.1f64.to_bits()),
            clock_resolution: clock::resolution(),
            current_handle: Mutex::new(None),
            vclock: OnceLock::new(),
        })
    }

    /// The loop clock (`time.monotonic()`, or the virtual clock).
    fn time(&self) -> f64 {
        self.now()
    }

    /// `asyncio.futures.Future(loop=self)`, as the stock loop: CPython's own
    /// (C) Future. Native because asyncio and its users call it once or more
    /// per I/O round trip. `Future` is looked up in `asyncio.futures` on
    /// every call, as the stock method does, so a patched class is honoured.
    fn create_future<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let futures = ASYNCIO_FUTURES
            .get_or_try_init(py, || {
                Ok::<_, PyErr>(py.import("asyncio.futures")?.into_any().unbind())
            })?
            .bind(py);
        let kwargs = PyDict::new(py);
        kwargs.set_item(intern!(py, "loop"), slf)?;
        futures
            .getattr(intern!(py, "Future"))?
            .call((), Some(&kwargs))
    }

    #[pyo3(signature = (callback, *args, context=None))]
    pub(crate) fn call_soon<'py>(
        &self,
        py: Python<'py>,
        callback: &Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
        context: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, Handle>> {
        self.call_soon_args(py, callback, CallArgs::from_tuple(args), context)
    }

    #[pyo3(signature = (callback, *args, context=None))]
    fn call_soon_threadsafe<'py>(
        &self,
        py: Python<'py>,
        callback: &Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
        context: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, Handle>> {
        self.call_soon_threadsafe_args(py, callback, CallArgs::from_tuple(args), context)
    }

    #[pyo3(signature = (delay, callback, *args, context=None))]
    fn call_later<'py>(
        &self,
        py: Python<'py>,
        delay: &Bound<'py, PyAny>,
        callback: &Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
        context: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, TimerHandle>> {
        if delay.is_none() {
            return Err(PyTypeError::new_err("delay must not be None"));
        }
        let when = self.now() + delay.extract::<f64>()?;
        self.schedule_at(py, when, callback, args, context, "call_at")
    }

    #[pyo3(signature = (when, callback, *args, context=None))]
    fn call_at<'py>(
        &self,
        py: Python<'py>,
        when: &Bound<'py, PyAny>,
        callback: &Bound<'py, PyAny>,
        args: Bound<'py, PyTuple>,
        context: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, TimerHandle>> {
        if when.is_none() {
            return Err(PyTypeError::new_err("when cannot be None"));
        }
        let when = when.extract::<f64>()?;
        self.schedule_at(py, when, callback, args, context, "call_at")
    }

    #[pyo3(signature = (fd, callback, *args))]
    fn add_reader(
        &self,
        py: Python<'_>,
        fd: &Bound<'_, PyAny>,
        callback: &Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        self.add_fd_watcher(py, fd, Side::Read, callback, args, None)
            .map(drop)
    }

    #[pyo3(signature = (fd, callback, *args))]
    fn add_writer(
        &self,
        py: Python<'_>,
        fd: &Bound<'_, PyAny>,
        callback: &Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        self.add_fd_watcher(py, fd, Side::Write, callback, args, None)
            .map(drop)
    }

    /// As `add_reader`, returning the registered handle (selector_events'
    /// `_add_reader`): socket operations keep it to remove only their own
    /// watcher when they finish.
    /// `context` (3.15's selector transports pass theirs): the context the
    /// callback runs in; None: a copy of the current one.
    #[pyo3(signature = (fd, callback, *args, context=None))]
    fn _add_reader(
        &self,
        py: Python<'_>,
        fd: &Bound<'_, PyAny>,
        callback: &Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        self.add_fd_watcher(py, fd, Side::Read, callback, args, context)
    }

    /// As `add_writer`, returning the registered handle.
    #[pyo3(signature = (fd, callback, *args, context=None))]
    fn _add_writer(
        &self,
        py: Python<'_>,
        fd: &Bound<'_, PyAny>,
        callback: &Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        self.add_fd_watcher(py, fd, Side::Write, callback, args, context)
    }

    fn remove_reader(&self, py: Python<'_>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.remove_fd_watcher(py, fd, Side::Read)
    }

    fn remove_writer(&self, py: Python<'_>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.remove_fd_watcher(py, fd, Side::Write)
    }

    /// selector_events' private spelling of `remove_reader`, used by
    /// transports and socket operations.
    fn _remove_reader(&self, py: Python<'_>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.remove_fd_watcher(py, fd, Side::Read)
    }

    /// selector_events' private spelling of `remove_writer`.
    fn _remove_writer(&self, py: Python<'_>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.remove_fd_watcher(py, fd, Side::Write)
    }

    /// Whether `fd` has a live reader (`read=True`) or writer registered;
    /// used by transports' `repr` ("read=polling").
    fn _is_watching(&self, py: Python<'_>, fd: i32, read: bool) -> bool {
        self.is_watching(py, fd, if read { Side::Read } else { Side::Write })
    }

    // -- socket operations' waits (see sock_waiter.rs) ------------------

    /// Waits until `sock.recv(n)` succeeds or fails; returns the future.
    fn _sock_wait_recv<'py>(
        slf: &Bound<'py, Self>,
        fd: RawFd,
        sock: &Bound<'py, PyAny>,
        n: isize,
    ) -> PyResult<Bound<'py, PyAny>> {
        sock_waiter::wait(slf, fd, Side::Read, sock, SockOp::Recv { n })
    }

    /// Waits until `sock.recv_into(buf)` succeeds or fails.
    fn _sock_wait_recv_into<'py>(
        slf: &Bound<'py, Self>,
        fd: RawFd,
        sock: &Bound<'py, PyAny>,
        buf: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let op = SockOp::RecvInto {
            buf: buf.clone().unbind(),
        };
        sock_waiter::wait(slf, fd, Side::Read, sock, op)
    }

    /// Sends the rest of `data` from byte `sent` on, as `sock.send` accepts
    /// it, until all is sent or a send fails.
    fn _sock_wait_sendall<'py>(
        slf: &Bound<'py, Self>,
        fd: RawFd,
        sock: &Bound<'py, PyAny>,
        data: &Bound<'py, PyAny>,
        sent: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let op = match data.cast::<pyo3::types::PyBytes>() {
            Ok(bytes) if crate::sock_calls::is_plain_socket(sock)? => SockOp::SendAll {
                len: bytes.as_bytes().len(),
                data: bytes.clone().into_any().unbind(),
                pos: sent,
                native: true,
            },
            _ => {
                // asyncio's way: slices of a memoryview, sent with sock.send.
                let view = pyo3::types::PyMemoryView::from(data)?;
                SockOp::SendAll {
                    len: view.len()?,
                    data: view.into_any().unbind(),
                    pos: sent,
                    native: false,
                }
            }
        };
        sock_waiter::wait(slf, fd, Side::Write, sock, op)
    }

    /// Waits until `sock.accept()` succeeds or fails.
    fn _sock_wait_accept<'py>(
        slf: &Bound<'py, Self>,
        fd: RawFd,
        sock: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        sock_waiter::wait(slf, fd, Side::Read, sock, SockOp::Accept)
    }

    /// Waits until the background `sock.connect(address)` has finished;
    /// the future fails with `OSError(err, 'Connect call failed ...')`.
    fn _sock_wait_connect<'py>(
        slf: &Bound<'py, Self>,
        fd: RawFd,
        sock: &Bound<'py, PyAny>,
        address: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let op = SockOp::Connect {
            address: address.clone().unbind(),
        };
        sock_waiter::wait(slf, fd, Side::Write, sock, op)
    }

    /// Removes the waiter that would resolve `fut` from `fd` (the writer side
    /// when `write`), if it is still registered: a wait that ended otherwise
    /// (cancellation). Returns whether it was.
    fn _sock_unwait(
        &self,
        py: Python<'_>,
        fd: RawFd,
        write: bool,
        fut: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        let side = if write { Side::Write } else { Side::Read };
        sock_waiter::unwait(self, py, fd, side, fut)
    }

    /// Asks the running loop to stop after the current iteration.
    fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    fn is_running(&self) -> bool {
        self.thread_id.load(Ordering::Relaxed) != 0
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    fn get_debug(&self) -> bool {
        self.is_debug()
    }

    fn set_debug(&self, enabled: &Bound<'_, PyAny>) -> PyResult<()> {
        self.debug.store(enabled.is_truthy()?, Ordering::Relaxed);
        Ok(())
    }

    #[getter]
    fn get_slow_callback_duration(&self) -> f64 {
        self.slow_callback_duration()
    }

    #[setter]
    fn set_slow_callback_duration(&self, value: f64) {
        self.slow_callback_bits
            .store(value.to_bits(), Ordering::Relaxed);
    }

    #[getter]
    fn _debug(&self) -> bool {
        self.is_debug()
    }

    #[getter]
    fn _closed(&self) -> bool {
        self.is_closed()
    }

    #[getter(_stopping)]
    fn stopping_flag(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    #[setter(_stopping)]
    fn set_stopping_flag(&self, value: bool) {
        self.stopping.store(value, Ordering::Relaxed);
    }

    #[getter(_thread_id)]
    fn thread_id_value(&self) -> Option<u64> {
        self.loop_thread()
    }

    #[setter(_thread_id)]
    fn set_thread_id_value(&self, value: Option<u64>) {
        self.thread_id.store(value.unwrap_or(0), Ordering::Relaxed);
    }

    #[getter]
    fn _clock_resolution(&self) -> f64 {
        self.clock_resolution
    }

    #[getter]
    fn _current_handle(&self, py: Python<'_>) -> Option<Py<Handle>> {
        lock(&self.current_handle).as_ref().map(|h| h.clone_ref(py))
    }

    fn _check_closed(&self) -> PyResult<()> {
        self.ensure_open()
    }

    /// Wakes the poll from any thread (asyncio's self-pipe write).
    fn _write_to_self(&self, py: Python<'_>) {
        self.wake(py);
    }

    /// Runs loop iterations until `stop()`; see `run_loop.rs`.
    fn _run_forever_native(slf: &Bound<'_, Self>) -> PyResult<()> {
        crate::run_loop::run_until_stopped(slf)
    }

    /// Marks the loop closed and releases everything it holds.
    fn _close_native(&self, py: Python<'_>) {
        self.closed.store(true, Ordering::Relaxed);
        let (handles, orphans, poller, waker) = {
            let mut st = self.state(py);
            (
                st.take_all(py),
                st.take_orphans(true),
                st.poller.take(),
                st.waker.take(),
            )
        };
        drop(poller);
        drop(waker);
        drop(handles);
        drop(orphans);
        // What a burst left in the handle free list (see handle_alloc.rs).
        crate::handle_alloc::trim(py);
    }

    /// The write end of the loop's self-pipe: `run_forever` in the main
    /// thread hands it to `signal.set_wakeup_fd`, so that a signal arriving
    /// just before a long poll still wakes it (see ferroloop_engine::waker).
    fn _signal_wakeup_fd(&self, py: Python<'_>) -> PyResult<RawFd> {
        self.ensure_open()?;
        match &self.state(py).waker {
            Some(waker) => Ok(waker.write_fd()),
            None => Err(PyRuntimeError::new_err("Event loop is closed")),
        }
    }

    /// Number of scheduled timers (cancelled ones included until removed).
    fn _timer_count(&self, py: Python<'_>) -> usize {
        self.state(py).timers.borrow_mut(py).len()
    }

    /// Number of cancelled timers still in the heap (asyncio's
    /// `_timer_cancelled_count` attribute).
    #[getter]
    fn _timer_cancelled_count(&self, py: Python<'_>) -> usize {
        self.state(py).timers.borrow_mut(py).cancelled_count()
    }

    /// Number of callbacks waiting in the ready queue.
    fn _ready_count(&self, py: Python<'_>) -> usize {
        self.state(py).ready.len()
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(st) = self.state.peek_for_gc() {
            st.traverse(&visit)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        let (handles, orphans) = Python::attach(|py| {
            let mut st = self.state(py);
            (st.take_all(py), st.take_orphans(true))
        });
        drop(handles);
        drop(orphans);
    }
}

/// Takes an argument tuple out of the garbage collector's view when none of
/// its items is a tracked container, as CPython's own collector does for
/// such tuples on its first pass over them. A tuple is immutable, so it can
/// never come to hold a reference cycle later. Queued callbacks' arguments
/// (`call_soon(cb, 42)`, `call_soon(fut.set_result, None)`) are thus never
/// scanned while they wait.
pub(crate) fn untrack_atomic_args(args: &Bound<'_, PyTuple>) {
    if args.is_empty() {
        return;
    }
    // SAFETY: `args` and its items are live objects; PyObject_GC_IsTracked only
    // reads type flags and the GC header.
    let has_tracked_item = args
        .iter_borrowed()
        .any(|item| unsafe { pyo3::ffi::PyObject_GC_IsTracked(item.as_ptr()) } != 0);
    if !has_tracked_item {
        // SAFETY: a tuple is a GC type; untracking a live object only removes it
        // from the collector's lists, and no tracked object is reachable from it.
        unsafe { pyo3::ffi::PyObject_GC_UnTrack(args.as_ptr().cast()) };
    }
}

/// Puts a one-shot handle that the loop lets go of while someone else still
/// holds it (at loop close, or after it ran or was cancelled: see
/// `run_loop::release`) back in the garbage collector's view, with its
/// context. Whoever keeps the handle (`self._timer = loop.call_later(d,
/// self._tick)`) may be in a cycle through it, which only the collector can
/// break: untracked, such a cycle leaked for good (found by the differential
/// fuzzer; asyncio's handles are always tracked).
pub(crate) fn retrack_released(handle: &Py<Handle>) {
    let p = handle.as_ptr();
    // SAFETY: `p` is a live object of a GC-enabled type (we hold a
    // reference); tracking an untracked GC object is permitted at any time
    // the GIL is held (the loop's state is only reached with it), and the
    // IsTracked check keeps us from tracking it twice.
    unsafe {
        if pyo3::ffi::PyObject_GC_IsTracked(p) == 0 {
            pyo3::ffi::PyObject_GC_Track(p.cast());
        }
    }
    handle.get().retrack_context();
}

/// Takes a one-shot handle out of the garbage collector's view.
///
/// PyO3 makes every class a GC container, but while pending the loop owns a
/// one-shot handle (and visits it). Untracking it spares the collector from
/// scanning every queued handle: with a large ready queue or timer heap that
/// scanning was most of the loop's time. When the loop lets go of it and
/// someone else still holds it, it is tracked again (`retrack_released`):
/// it may keep its callback (after an error, in debug mode) or a context
/// the callback stored values in, either of which can close a cycle.
fn untrack_one_shot(handle: &Bound<'_, Handle>) {
    // SAFETY: `handle` is a live object of a GC-enabled type that we just
    // created; untracking an object is always permitted (it only removes it
    // from the collector's lists), and PyO3's dealloc untracks only if tracked.
    unsafe { pyo3::ffi::PyObject_GC_UnTrack(handle.as_ptr().cast()) };
}
