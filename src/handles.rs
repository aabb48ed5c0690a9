//! `Handle` and `TimerHandle`: what `call_soon`, `call_later`, `call_at` and
//! `add_reader` return, with asyncio's API (`cancel`, `cancelled`, `when`,
//! `get_context`, ordering of timer handles, `repr`).
//!
//! Both are one native struct: a `TimerHandle` is a `Handle` whose `timer`
//! part is set, so the loop's ready queue holds a single type.

use std::cell::UnsafeCell;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU8, Ordering};
use std::sync::Mutex;

use pyo3::prelude::*;
use pyo3::pyclass::CompareOp;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyTuple;
use pyo3::{PyTraverseError, PyVisit};

use crate::call_args::CallArgs;
use crate::context::{expose_context, release_context, run_in_context};
use crate::handle_lock;
use crate::pyhelpers::{format_callback_source, lock};
use crate::timer_heap::{self, NO_HEAP};

/// The callable and its positional arguments. Dropped on `cancel()` so a
/// cancelled handle no longer keeps what it would have called alive.
pub(crate) struct Callback {
    pub(crate) func: Py<PyAny>,
    pub(crate) args: CallArgs,
}

/// The timer part of a `TimerHandle`, as `call_at` gives it.
pub(crate) struct TimerState {
    pub(crate) when: f64,
    /// The loop's heap (see `timer_heap::heap_slot`), told when this handle
    /// is cancelled while in it.
    pub(crate) heap: u16,
}

/// The callable and its arguments, under the GIL, without a borrow flag:
/// every access below is one complete step that runs no Python code (a
/// reference-count increment at most; values taken out are dropped by the
/// caller, after the step), so no access can start inside another. The
/// garbage collector, which reads it during traversal, runs only when an
/// object is allocated, which these steps never do.
pub(crate) struct CallbackSlot(UnsafeCell<Option<Callback>>);

// SAFETY: the slot is only read or written with the GIL held (each method
// takes a `Python` token; `peek_for_gc` runs inside the collector, which
// holds the GIL), so accesses from different threads never overlap.
unsafe impl Sync for CallbackSlot {}

impl CallbackSlot {
    fn new(cb: Callback) -> Self {
        CallbackSlot(UnsafeCell::new(Some(cb)))
    }

    /// Takes the callback out (the caller drops it when convenient).
    #[inline]
    fn take(&self, _py: Python<'_>) -> Option<Callback> {
        // SAFETY: GIL held, no other access in progress (see the type).
        unsafe { (*self.0.get()).take() }
    }

    /// Puts a callback back; returns what was there, for the caller to drop.
    fn put(&self, _py: Python<'_>, cb: Callback) -> Option<Callback> {
        // SAFETY: as in `take`.
        unsafe { (*self.0.get()).replace(cb) }
    }

    /// A new reference to the callable, unless taken.
    #[inline]
    fn func(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        // SAFETY: as in `take`; `clone_ref` only increments a reference count.
        unsafe { &*self.0.get() }
            .as_ref()
            .map(|c| c.func.clone_ref(py))
    }

    /// New references to the callable and its arguments as they are kept
    /// (for running them), unless taken.
    #[inline]
    fn call_parts(&self, py: Python<'_>) -> Option<(Py<PyAny>, CallArgs)> {
        // SAFETY: as in `func`.
        unsafe { &*self.0.get() }
            .as_ref()
            .map(|c| (c.func.clone_ref(py), c.args.clone_ref(py)))
    }

    /// New references to the callable and its arguments as a tuple, unless
    /// taken. A single argument's tuple is kept in its place once built, so
    /// later looks see the same object. The tuple is allocated outside any
    /// step (the collector may run then and read this slot); in the step
    /// after, it is stored only if the slot still holds that argument.
    fn parts(&self, py: Python<'_>) -> PyResult<Option<(Py<PyAny>, Py<PyTuple>)>> {
        let Some((func, args)) = self.call_parts(py) else {
            return Ok(None);
        };
        let one = match args {
            CallArgs::None => return Ok(Some((func, PyTuple::empty(py).unbind()))),
            CallArgs::Tuple(t) => return Ok(Some((func, t))),
            CallArgs::One(arg) => arg,
        };
        let tuple = PyTuple::new(py, [one.bind(py)])?.unbind();
        let replaced = {
            // SAFETY: as in `take`; only moves references (the replaced one
            // is dropped after the step).
            let slot = unsafe { &mut *self.0.get() };
            match slot.as_mut().map(|c| &mut c.args) {
                Some(args @ CallArgs::One(_)) if args.is_one(&one) => Some(std::mem::replace(
                    args,
                    CallArgs::Tuple(tuple.clone_ref(py)),
                )),
                _ => None,
            }
        };
        drop(replaced);
        Ok(Some((func, tuple)))
    }

    /// Read access for GC traversal (GIL held, no step in progress).
    fn peek_for_gc(&self) -> Option<&Callback> {
        // SAFETY: see the type: traversal cannot start inside a step.
        unsafe { &*self.0.get() }.as_ref()
    }
}

/// A handle's context, replaced only while the loop holds the handle's one
/// reference (to recycle it, see `handle_alloc::release`).
struct ContextSlot(UnsafeCell<ManuallyDrop<Py<PyAny>>>);

// SAFETY: read and written only with the GIL held (every path reaching a
// `Handle` does), and written only while no other reference to the handle,
// and so no borrow of the slot, exists (see `Handle::take_for_reuse`).
unsafe impl Sync for ContextSlot {}

/// Bits of `Handle::flags`.
const CANCELLED: u8 = 1;
/// In the loop's timer heap (asyncio's `_scheduled`).
const SCHEDULED: u8 = 2;
/// See `Handle::is_one_shot`.
const ONE_SHOT: u8 = 4;
/// A `TimerHandle` (`when` is meaningful).
const TIMER: u8 = 8;
/// A `call_soon_threadsafe` handle on a Python with
/// `asyncio.events._ThreadSafeHandle` (3.13+): `seq` holds its lock.
const THREAD_SAFE: u8 = 16;
/// `context` is a copy taken out of the collector's view (see
/// `context::copy_current_context_for_handle`), to be tracked again before
/// user code sees it or the handle lets go of it.
const CONTEXT_UNTRACKED: u8 = 32;

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
//
// Size: 56 bytes of fields (80 with the object header and weakref slot, 96
// with the collector's header, a pymalloc size class: 8 bytes more would
// cost 16). A million pending timers each hold one, so the flags, the heap's
// slot and the heap's tie-break number (or a thread-safe handle's lock)
// share a word, and the timer part is flat rather than an `Option` of a
// struct. The callback and its arguments take 24 (see `CallArgs`).
pub struct Handle {
    callback: CallbackSlot,
    /// Released by hand in `drop` (see there). Replaced only while the
    /// loop holds the handle's one reference, to recycle it (see
    /// `handle_alloc::release`); read through `context()`.
    context: ContextSlot,
    /// The deadline of a timer handle (`TIMER` set); 0 otherwise.
    when: f64,
    /// `CANCELLED | SCHEDULED | ONE_SHOT | TIMER | THREAD_SAFE |
    /// CONTEXT_UNTRACKED`. Written only with the GIL held, so a load and a
    /// store need no read-modify-write.
    flags: AtomicU8,
    /// The loop heap's slot while `SCHEDULED` in it, else `NO_HEAP`.
    heap: AtomicU16,
    /// A timer handle's scheduling number in the heap, which orders equal
    /// deadlines. A thread-safe handle (`THREAD_SAFE`, 3.13+), never a timer,
    /// keeps its lock here instead (see `handle_lock`): one word serves both,
    /// so the handle stays in its allocator size class.
    seq: AtomicU32,
    /// Set in debug mode only (see `DebugParts`).
    debug: Option<Box<DebugParts>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        // The context copy may be untracked (see context.rs); CPython's
        // context destructor requires it tracked. A Handle lives only inside
        // its Python object, so this runs in tp_dealloc, with the GIL held.
        release_context(self.context(), self.take_flag(CONTEXT_UNTRACKED));
        // SAFETY: as above, a handle is dropped with the GIL held.
        let py = unsafe { Python::assume_attached() };
        // SAFETY: `context` is not used again; this is its only release.
        let context = unsafe { ManuallyDrop::take(self.context.0.get_mut()) };
        // As a `Bound`: released at once, without dropping a `Py`'s check of
        // whether the thread is attached (once per callback run).
        drop(context.into_bound(py));
    }
}

/// A `Handle` returned by `call_later` / `call_at`.
// Allocated from `Handle`'s free list (see `handle_alloc.rs`).
#[pyclass(frozen, extends = Handle, module = "ferroloop._ferroloop")]
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
        let mut flags = if one_shot { ONE_SHOT } else { 0 };
        let (when, heap) = match timer {
            Some(t) => {
                flags |= TIMER | SCHEDULED;
                (t.when, t.heap)
            }
            None => (0.0, NO_HEAP),
        };
        Handle {
            callback: CallbackSlot::new(Callback {
                func: callback,
                args,
            }),
            context: ContextSlot(UnsafeCell::new(ManuallyDrop::new(context))),
            when,
            flags: AtomicU8::new(flags),
            heap: AtomicU16::new(heap),
            seq: AtomicU32::new(0),
            debug: debug.then(|| {
                Box::new(DebugParts {
                    source_traceback,
                    frozen_repr: Mutex::new(None),
                })
            }),
        }
    }

    /// The context the callback runs in.
    #[inline(always)]
    pub(crate) fn context(&self) -> &Py<PyAny> {
        // SAFETY: the slot is written only by `take_for_reuse` and
        // `reinit`, which run while the loop holds the only reference to the
        // handle (no `&Py` from here can be alive then: nobody else can
        // reach the handle) and with the GIL held.
        unsafe { &*self.context.0.get() }
    }

    /// Empties a handle nobody but the caller can reach, so that its object
    /// can serve the next `call_soon` (see `handle_alloc::release`): the
    /// context is swapped for `None`, the callback taken, and both returned
    /// for the caller to drop once the handle is stored (their destructors
    /// may run Python code). The context copy is back under the collector.
    ///
    /// # Safety
    /// The caller holds the only reference to the handle's object, with the
    /// GIL, and the handle has no debug parts and is not a timer.
    #[inline(always)]
    pub(crate) unsafe fn take_for_reuse(&self, py: Python<'_>) -> (Option<Callback>, Py<PyAny>) {
        let callback = self.callback.take(py);
        release_context(self.context(), self.take_flag(CONTEXT_UNTRACKED));
        // SAFETY: see the function's contract: no other reference to the
        // slot can exist (`context()` borrows end with the callers' steps).
        let old =
            unsafe { std::mem::replace(&mut *self.context.0.get(), ManuallyDrop::new(py.None())) };
        (callback, ManuallyDrop::into_inner(old))
    }

    /// Fills a handle emptied by `take_for_reuse` as `Handle::new` would
    /// have built a one-shot, non-debug, non-timer handle (`untracked`: see
    /// `CONTEXT_UNTRACKED`; `thread_safe`: see `THREAD_SAFE`). Returns the
    /// `None` the context slot held, for the caller to drop.
    ///
    /// # Safety
    /// As for `take_for_reuse`: the caller holds the only reference.
    #[inline(always)]
    pub(crate) unsafe fn reinit(
        &self,
        py: Python<'_>,
        callback: Py<PyAny>,
        args: CallArgs,
        context: Py<PyAny>,
        untracked: bool,
        thread_safe: bool,
    ) -> Py<PyAny> {
        let empty = self.callback.put(
            py,
            Callback {
                func: callback,
                args,
            },
        );
        debug_assert!(empty.is_none(), "a recycled handle keeps no callback");
        drop(empty);
        // SAFETY: see the function's contract.
        let old =
            unsafe { std::mem::replace(&mut *self.context.0.get(), ManuallyDrop::new(context)) };
        let mut flags = ONE_SHOT;
        if untracked {
            flags |= CONTEXT_UNTRACKED;
        }
        if thread_safe {
            flags |= THREAD_SAFE;
        }
        self.flags.store(flags, Ordering::Relaxed);
        self.seq.store(0, Ordering::Relaxed);
        ManuallyDrop::into_inner(old)
    }

    /// Whether `take_for_reuse` may empty this handle: one-shot, not a
    /// timer, no debug parts.
    #[inline]
    pub(crate) fn reusable(&self) -> bool {
        self.flags.load(Ordering::Relaxed) & (ONE_SHOT | TIMER) == ONE_SHOT && self.debug.is_none()
    }

    #[inline]
    fn flag(&self, bit: u8) -> bool {
        self.flags.load(Ordering::Relaxed) & bit != 0
    }

    /// Clears `bit`, returning whether it was set. GIL held (see `flags`).
    #[inline]
    fn take_flag(&self, bit: u8) -> bool {
        let was = self.flag(bit);
        if was {
            self.set_flag(bit, false);
        }
        was
    }

    /// Puts an untracked context copy back under the collector (see
    /// `loop_core::retrack_released`).
    pub(crate) fn retrack_context(&self) {
        crate::context::retrack(self.context(), self.take_flag(CONTEXT_UNTRACKED));
    }

    /// Records that `context` is an untracked copy (see `CONTEXT_UNTRACKED`).
    pub(crate) fn set_context_untracked(&self, untracked: bool) {
        self.set_flag(CONTEXT_UNTRACKED, untracked);
    }

    /// Makes this a thread-safe handle (see `THREAD_SAFE`).
    pub(crate) fn mark_thread_safe(&self) {
        self.set_flag(THREAD_SAFE, true);
    }

    /// Sets or clears `bit`. Only called with the GIL held (see `flags`).
    #[inline]
    fn set_flag(&self, bit: u8, on: bool) {
        let f = self.flags.load(Ordering::Relaxed);
        self.flags
            .store(if on { f | bit } else { f & !bit }, Ordering::Relaxed);
    }

    /// Runs at most once (call_soon / call_later), unlike an fd watcher's
    /// handle, which runs on every readiness report. A one-shot handle lets go
    /// of its callback once it has run, so handle <-> callback reference
    /// cycles end there and handles need no garbage-collector support.
    #[inline]
    fn is_one_shot(&self) -> bool {
        self.flag(ONE_SHOT)
    }

    /// The deadline, for a timer handle.
    pub(crate) fn timer_when(&self) -> Option<f64> {
        self.flag(TIMER).then_some(self.when)
    }

    #[inline]
    pub(crate) fn seq(&self) -> u32 {
        self.seq.load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn set_seq(&self, seq: u32) {
        self.seq.store(seq, Ordering::Relaxed);
    }

    /// The loop let go of its heap (close, or the loop was dropped) with
    /// this handle still in it: `_scheduled` stays as asyncio leaves it, but
    /// a later `cancel()` has no heap to tell.
    pub(crate) fn forget_heap(&self) {
        self.heap.store(NO_HEAP, Ordering::Relaxed);
    }

    /// Runs `f` holding the thread lock, if this handle has one.
    fn locked<R>(&self, py: Python<'_>, f: impl FnOnce() -> PyResult<R>) -> PyResult<R> {
        if self.flag(THREAD_SAFE) {
            handle_lock::with_lock(&self.seq, py, f)
        } else {
            f()
        }
    }

    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        self.flag(CANCELLED)
    }

    /// Asks the CPU to load the cache lines that timer-heap compaction
    /// reads and writes: the object header (the reference count) and the
    /// flags. Computing the addresses reads nothing.
    #[inline]
    pub(crate) fn prefetch(obj: *const pyo3::ffi::PyObject, this: &Handle) {
        crate::pyhelpers::prefetch(obj.cast());
        crate::pyhelpers::prefetch((&this.flags as *const AtomicU8).cast());
    }

    pub(crate) fn mark_unscheduled(&self) {
        self.set_flag(SCHEDULED, false);
        self.forget_heap();
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
        self.callback.parts(py)
    }

    /// The callable, unless cancelled.
    pub(crate) fn callback_func(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.callback.func(py)
    }

    /// Runs the callback in its context. Errors are the caller's to route.
    #[inline(always)]
    pub(crate) fn run(&self, py: Python<'_>) -> PyResult<()> {
        if self.flag(THREAD_SAFE) {
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

    /// Runs a callback that stays in the handle: it runs again (fd
    /// watcher), or debug reports name it.
    #[inline(never)]
    fn run_kept(&self, py: Python<'_>) -> PyResult<()> {
        let Some((func, args)) = self.callback.call_parts(py) else {
            return Ok(());
        };
        let func = func.into_bound(py);
        let result = run_in_context(py, self.context().bind(py), &func, &args);
        args.release(py);
        result
    }

    // Inlined, with `run_in_context`, into the run loop: one call level per
    // callback instead of three.
    #[inline(always)]
    fn run_unlocked(&self, py: Python<'_>) -> PyResult<()> {
        if !self.is_one_shot() || self.debug.is_some() {
            return self.run_kept(py);
        }
        let Some(cb) = self.callback.take(py) else {
            return Ok(());
        };
        // As a `Bound`, released without PyO3's attached-thread check.
        let func = cb.func.into_bound(py);
        let result = run_in_context(py, self.context().bind(py), &func, &cb.args);
        if result.is_err() && !self.is_cancelled() {
            // The error report names the callback: give it back (unless the
            // callback cancelled its own handle).
            let old = self.callback.put(
                py,
                Callback {
                    func: func.unbind(),
                    args: cb.args,
                },
            );
            drop(old);
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
        if self.is_cancelled() {
            return Ok(());
        }
        self.set_flag(CANCELLED, true);
        if self.flag(SCHEDULED) {
            let heap = self.heap.load(Ordering::Relaxed);
            if heap != NO_HEAP {
                // After the flag is set: a compaction now removes this entry too.
                timer_heap::note_cancelled(slf.py(), heap);
            }
        }
        if let Some(d) = &self.debug {
            // Frozen once cancelled, so it reads "cancelled", as asyncio's
            // does. If repr fails, the callback is kept, as asyncio keeps it.
            let text = self.describe(slf.py(), &slf.get_type().name()?.to_string())?;
            *lock(&d.frozen_repr) = Some(text);
        }
        // Drop the callable outside the lock: its destructor may run Python code.
        let dropped = self.callback.take(slf.py());
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
        if let Some(when) = self.timer_when() {
            info.push(format!("when={}", crate::pyhelpers::float_repr(py, when)?));
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
        if let Some(cb) = self.callback.peek_for_gc() {
            visit.call(&cb.func)?;
            cb.args.traverse(&visit)?;
        }
        visit.call(self.context())?;
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
        if slf.get().flag(THREAD_SAFE) {
            if let Some(view) = thread_safe_view(py)? {
                return Ok(view.clone_ref(py));
            }
        }
        Ok(slf.get_type().into_any().unbind())
    }

    fn get_context(&self, py: Python<'_>) -> Py<PyAny> {
        expose_context(py, self.context(), self.take_flag(CONTEXT_UNTRACKED))
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
        expose_context(py, self.context(), self.take_flag(CONTEXT_UNTRACKED))
    }

    #[getter]
    fn _source_traceback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.source_traceback().map(|t| t.clone_ref(py))
    }
}

impl TimerHandle {
    /// The deadline (a `TimerHandle` is always built with one).
    fn when_of(slf: &Bound<'_, Self>) -> f64 {
        slf.as_super().get().when
    }
}

#[pymethods]
impl TimerHandle {
    /// The absolute loop time the callback is scheduled for.
    fn when(slf: &Bound<'_, Self>) -> f64 {
        Self::when_of(slf)
    }

    #[getter]
    fn _when(slf: &Bound<'_, Self>) -> f64 {
        Self::when_of(slf)
    }

    #[getter]
    fn _scheduled(slf: &Bound<'_, Self>) -> bool {
        slf.as_super().get().flag(SCHEDULED)
    }

    fn __hash__(slf: &Bound<'_, Self>) -> PyResult<isize> {
        Self::when_of(slf).into_pyobject(slf.py())?.hash()
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
        let (a, b) = (Self::when_of(slf), Self::when_of(other));
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
