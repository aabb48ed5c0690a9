//! `Handle` and `TimerHandle`: what `call_soon`, `call_later`, `call_at` and
//! `add_reader` return, with asyncio's API (`cancel`, `cancelled`, `when`,
//! `get_context`, ordering of timer handles, `repr`).
//!
//! Both are one native struct: a `TimerHandle` is a `Handle` whose `timer`
//! part is set, so the loop's ready queue holds a single type.

use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, Weak};

use pyo3::prelude::*;
use pyo3::pyclass::CompareOp;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyTuple;
use pyo3::{PyTraverseError, PyVisit};

use crate::call_args::CallArgs;
use crate::context::{expose_context, release_context, run_in_context};
use crate::gil_cell::GilCell;
use crate::handle_lock::HandleLock;
use crate::pyhelpers::{format_callback_source, lock};
use crate::timer_heap::{self, Timers};

/// The callable and its positional arguments. Dropped on `cancel()` so a
/// cancelled handle no longer keeps what it would have called alive.
pub(crate) struct Callback {
    pub(crate) func: Py<PyAny>,
    pub(crate) args: CallArgs,
}

/// The timer part of a `TimerHandle`.
pub(crate) struct TimerState {
    pub(crate) when: f64,
    /// The loop's heap, told when this handle is cancelled while in it.
    pub(crate) heap: Weak<Timers>,
}

/// What only debug mode keeps, out of line: most handles never need it, and
/// every pending handle would otherwise carry its size.
struct DebugParts {
    /// `format_helpers.extract_stack()` at creation.
    source_traceback: Option<Py<PyAny>>,
    /// `repr()` frozen at cancel time (as asyncio does) so slow-callback and
    /// error reports still name the callback.
    frozen_repr: Mutex<Option<String>>,
}

// Allocated from a free list of its own (see `handle_alloc.rs`).
#[pyclass(frozen, subclass, weakref, module = "ferroloop._ferroloop")]
pub struct Handle {
    pub(crate) callback: GilCell<Option<Callback>>,
    /// Released by hand in `drop` (see there).
    pub(crate) context: ManuallyDrop<Py<PyAny>>,
    /// Whether `context` is a copy taken out of the collector's view (see
    /// `context::copy_current_context_for_handle`), to be tracked again
    /// before user code sees it or the handle lets go of it.
    pub(crate) context_untracked: AtomicBool,
    cancelled: AtomicBool,
    /// True while a timer handle sits in the loop's timer heap (asyncio's
    /// `_scheduled`). Beside the other flags rather than in `TimerState`, so
    /// it takes no padded word of its own.
    scheduled: AtomicBool,
    pub(crate) timer: Option<TimerState>,
    /// Set in debug mode only (see `DebugParts`).
    debug: Option<Box<DebugParts>>,
    /// Runs at most once (call_soon / call_later), unlike an fd watcher's
    /// handle, which runs on every readiness report. A one-shot handle lets go
    /// of its callback once it has run, so handle <-> callback reference
    /// cycles end there and handles need no garbage-collector support.
    one_shot: bool,
    /// Set on `call_soon_threadsafe` handles on Pythons with
    /// `asyncio.events._ThreadSafeHandle` (3.13+): `thread_lock` is then in
    /// use (see `handle_lock`).
    pub(crate) thread_safe: bool,
    thread_lock: HandleLock,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // The context copy may be untracked (see context.rs); CPython's
        // context destructor requires it tracked. A Handle lives only inside
        // its Python object, so this runs in tp_dealloc, with the GIL held.
        release_context(&self.context, &self.context_untracked);
        // SAFETY: as above, a handle is dropped with the GIL held.
        let py = unsafe { Python::assume_attached() };
        // SAFETY: `context` is not used again; this is its only release.
        let context = unsafe { ManuallyDrop::take(&mut self.context) };
        // As a `Bound`: released at once, without dropping a `Py`'s check of
        // whether the thread is attached (once per callback run).
        drop(context.into_bound(py));
    }
}

/// A `Handle` returned by `call_later` / `call_at`.
#[pyclass(frozen, extends = Handle, freelist = 1024, module = "ferroloop._ferroloop")]
pub struct TimerHandle {}

impl Handle {
    // Inlined into `call_soon`'s path: the struct is built in place.
    #[inline(always)]
    pub(crate) fn new(
        callback: Py<PyAny>,
        args: CallArgs,
        context: Py<PyAny>,
        timer: Option<TimerState>,
        source_traceback: Option<Py<PyAny>>,
        debug: bool,
        one_shot: bool,
    ) -> Handle {
        Handle {
            callback: GilCell::new(Some(Callback {
                func: callback,
                args,
            })),
            context: ManuallyDrop::new(context),
            context_untracked: AtomicBool::new(false),
            cancelled: AtomicBool::new(false),
            scheduled: AtomicBool::new(timer.is_some()),
            timer,
            debug: debug.then(|| {
                Box::new(DebugParts {
                    source_traceback,
                    frozen_repr: Mutex::new(None),
                })
            }),
            one_shot,
            thread_safe: false,
            thread_lock: HandleLock::default(),
        }
    }

    /// Runs `f` holding the thread lock, if this handle has one.
    fn locked<R>(&self, py: Python<'_>, f: impl FnOnce() -> PyResult<R>) -> PyResult<R> {
        if self.thread_safe {
            self.thread_lock.with(py, f)
        } else {
            f()
        }
    }

    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    pub(crate) fn mark_unscheduled(&self) {
        self.scheduled.store(false, Ordering::Relaxed);
    }

    /// `format_helpers.extract_stack()` at creation, in debug mode.
    pub(crate) fn source_traceback(&self) -> Option<&Py<PyAny>> {
        self.debug.as_ref()?.source_traceback.as_ref()
    }

    /// The callable and arguments (as a tuple), unless cancelled.
    pub(crate) fn callback_parts(
        &self,
        py: Python<'_>,
    ) -> PyResult<Option<(Py<PyAny>, Py<PyTuple>)>> {
        let mut callback = self.callback.borrow_mut(py);
        let Some(c) = callback.as_mut() else {
            return Ok(None);
        };
        let args = c.args.as_tuple(py)?;
        Ok(Some((c.func.clone_ref(py), args)))
    }

    /// The callable, unless cancelled.
    pub(crate) fn callback_func(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.callback
            .borrow_mut(py)
            .as_ref()
            .map(|c| c.func.clone_ref(py))
    }

    /// Runs the callback in its context. Errors are the caller's to route.
    #[inline]
    pub(crate) fn run(&self, py: Python<'_>) -> PyResult<()> {
        if self.thread_safe {
            // Another thread may have cancelled it since the loop looked.
            return self.locked(py, || {
                if self.is_cancelled() {
                    return Ok(());
                }
                self.run_unlocked(py)
            });
        }
        self.run_unlocked(py)
    }

    #[inline]
    fn run_unlocked(&self, py: Python<'_>) -> PyResult<()> {
        if !self.one_shot || self.debug.is_some() {
            // Kept: it runs again (fd watcher), or debug reports name it.
            let parts = self
                .callback
                .borrow_mut(py)
                .as_ref()
                .map(|c| (c.func.clone_ref(py).into_bound(py), c.args.clone_ref(py)));
            let Some((func, args)) = parts else {
                return Ok(());
            };
            let result = run_in_context(py, self.context.bind(py), &func, &args);
            args.release(py);
            return result;
        }
        let Some(cb) = self.callback.borrow_mut(py).take() else {
            return Ok(());
        };
        // As a `Bound`, released without PyO3's attached-thread check.
        let func = cb.func.into_bound(py);
        let result = run_in_context(py, self.context.bind(py), &func, &cb.args);
        if result.is_err() && !self.is_cancelled() {
            // The error report names the callback: give it back (unless the
            // callback cancelled its own handle).
            *self.callback.borrow_mut(py) = Some(Callback {
                func: func.unbind(),
                args: cb.args,
            });
        } else {
            cb.args.release(py);
        }
        result
    }

    /// `handle.cancel()` from Rust (replaced or removed fd watchers).
    pub(crate) fn cancel_handle(handle: &Bound<'_, Handle>) -> PyResult<()> {
        handle.get().do_cancel(handle)
    }

    fn do_cancel(&self, slf: &Bound<'_, Handle>) -> PyResult<()> {
        if self.cancelled.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.cancelled.store(true, Ordering::Relaxed);
        if let Some(t) = &self.timer {
            if self.scheduled.load(Ordering::Relaxed) {
                // After the flag is set: a compaction now removes this entry too.
                timer_heap::note_cancelled(slf.py(), &t.heap);
            }
        }
        if let Some(d) = &self.debug {
            // Frozen once cancelled, so it reads "cancelled", as asyncio's
            // does. If repr fails, the callback is kept, as asyncio keeps it.
            let text = self.describe(slf.py(), &slf.get_type().name()?.to_string())?;
            *lock(&d.frozen_repr) = Some(text);
        }
        // Drop the callable outside the lock: its destructor may run Python code.
        let dropped = self.callback.borrow_mut(slf.py()).take();
        drop(dropped);
        Ok(())
    }

    /// asyncio's `_repr_info()` joined: `<Name [cancelled] [when=..] cb(args) [created at f:l]>`.
    fn describe(&self, py: Python<'_>, class_name: &str) -> PyResult<String> {
        if let Some(d) = &self.debug {
            if let Some(text) = lock(&d.frozen_repr).as_ref() {
                return Ok(text.clone());
            }
        }
        let mut info = vec![class_name.to_owned()];
        if self.is_cancelled() {
            info.push("cancelled".into());
        }
        if let Some(t) = &self.timer {
            info.push(format!(
                "when={}",
                crate::pyhelpers::float_repr(py, t.when)?
            ));
        }
        if let Some((func, args)) = self.callback_parts(py)? {
            info.push(format_callback_source(py, func.bind(py), args.bind(py))?);
        }
        if let Some(tb) = self.source_traceback() {
            let tb = tb.bind(py);
            if tb.len()? > 0 {
                let frame = tb.get_item(-1)?;
                info.push(format!(
                    "created at {}:{}",
                    frame.get_item(0)?.str()?,
                    frame.get_item(1)?.str()?
                ));
            }
        }
        Ok(format!("<{}>", info.join(" ")))
    }
}

#[pymethods]
impl Handle {
    /// GC traversal. One-shot handles are untracked while queued (the loop
    /// owns them and visits them), so this matters for fd watchers' handles
    /// and for one-shot handles the loop let go of unrun at close, which are
    /// tracked again (`loop_core::retrack_released`): a cycle through their
    /// callback is then found and collected, as with asyncio's handles.
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(Some(cb)) = self.callback.peek_for_gc() {
            visit.call(&cb.func)?;
            cb.args.traverse(&visit)?;
        }
        visit.call(&*self.context)?;
        Ok(())
    }

    /// Cancels the call. Idempotent.
    fn cancel(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        this.locked(slf.py(), || this.do_cancel(slf))
    }

    fn cancelled(&self, py: Python<'_>) -> PyResult<bool> {
        self.locked(py, || Ok(self.is_cancelled()))
    }

    /// `isinstance(handle, asyncio.events._ThreadSafeHandle)` holds for the
    /// handles `call_soon_threadsafe` returns, as on the stock loop (3.13+);
    /// `type(handle)` stays native.
    #[getter(__class__)]
    fn class_view(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        if slf.get().thread_safe {
            if let Some(view) = thread_safe_view(py)? {
                return Ok(view.clone_ref(py));
            }
        }
        Ok(slf.get_type().into_any().unbind())
    }

    fn get_context(&self, py: Python<'_>) -> Py<PyAny> {
        expose_context(py, &self.context, &self.context_untracked)
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let name = slf.get_type().name()?.to_string();
        slf.get().describe(slf.py(), &name)
    }

    // Read-only views of asyncio's private attributes, which tools and
    // asyncio's own helpers (`_format_handle`, exception handlers) read.
    #[getter]
    fn _callback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.callback_func(py)
    }

    #[getter]
    fn _args(&self, py: Python<'_>) -> PyResult<Option<Py<PyTuple>>> {
        Ok(self.callback_parts(py)?.map(|(_, a)| a))
    }

    #[getter]
    fn _cancelled(&self) -> bool {
        self.is_cancelled()
    }

    #[getter]
    fn _context(&self, py: Python<'_>) -> Py<PyAny> {
        expose_context(py, &self.context, &self.context_untracked)
    }

    #[getter]
    fn _source_traceback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.source_traceback().map(|t| t.clone_ref(py))
    }
}

impl TimerHandle {
    fn timer<'a>(slf: &'a Bound<'_, Self>) -> &'a TimerState {
        slf.as_super()
            .get()
            .timer
            .as_ref()
            .expect("a TimerHandle always has a timer part")
    }
}

#[pymethods]
impl TimerHandle {
    /// The absolute loop time the callback is scheduled for.
    fn when(slf: &Bound<'_, Self>) -> f64 {
        Self::timer(slf).when
    }

    #[getter]
    fn _when(slf: &Bound<'_, Self>) -> f64 {
        Self::timer(slf).when
    }

    #[getter]
    fn _scheduled(slf: &Bound<'_, Self>) -> bool {
        slf.as_super().get().scheduled.load(Ordering::Relaxed)
    }

    fn __hash__(slf: &Bound<'_, Self>) -> PyResult<isize> {
        Self::timer(slf).when.into_pyobject(slf.py())?.hash()
    }

    /// Ordered by deadline; equal when deadline, callback, arguments and
    /// cancellation all match (asyncio's rules).
    fn __richcmp__(
        slf: &Bound<'_, Self>,
        other: &Bound<'_, PyAny>,
        op: CompareOp,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let Ok(other) = other.cast::<TimerHandle>() else {
            return Ok(py.NotImplemented());
        };
        let (a, b) = (Self::timer(slf).when, Self::timer(other).when);
        let equal = || -> PyResult<bool> {
            let (x, y) = (slf.as_super().get(), other.as_super().get());
            if a != b || x.is_cancelled() != y.is_cancelled() {
                return Ok(false);
            }
            match (x.callback_parts(py)?, y.callback_parts(py)?) {
                (None, None) => Ok(true),
                (Some((f1, a1)), Some((f2, a2))) => {
                    Ok(f1.bind(py).eq(f2.bind(py))? && a1.bind(py).eq(a2.bind(py))?)
                }
                _ => Ok(false),
            }
        };
        let result = match op {
            CompareOp::Lt => a < b,
            CompareOp::Gt => a > b,
            CompareOp::Le => a < b || equal()?,
            CompareOp::Ge => a > b || equal()?,
            CompareOp::Eq => equal()?,
            CompareOp::Ne => !equal()?,
        };
        Ok(pyo3::types::PyBool::new(py, result)
            .to_owned()
            .into_any()
            .unbind())
    }
}

/// `ferroloop._handles.ThreadSafeHandleView`, or None on Pythons without
/// `asyncio.events._ThreadSafeHandle` (before 3.13).
static THREAD_SAFE_VIEW: PyOnceLock<Option<Py<PyAny>>> = PyOnceLock::new();

pub(crate) fn thread_safe_view(py: Python<'_>) -> PyResult<Option<&'static Py<PyAny>>> {
    let view = THREAD_SAFE_VIEW.get_or_try_init(py, || -> PyResult<_> {
        let view = py
            .import("ferroloop._handles")?
            .getattr("ThreadSafeHandleView")?;
        Ok((!view.is_none()).then(|| view.unbind()))
    })?;
    Ok(view.as_ref())
}
