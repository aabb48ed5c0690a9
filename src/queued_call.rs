//! Callbacks that asyncio's C `Task` and `Future` schedule, queued without a
//! `Handle` object.
//!
//! The C accelerator (`_asyncio`) calls `loop.call_soon(cb[, fut],
//! context=ctx)` for every task step and every future done callback, through
//! one internal helper that drops the returned handle at once: nothing can
//! ever cancel, inspect or compare it. Building a `Handle` there cost a
//! Python object allocation and release per call and, because PyO3 classes
//! are garbage-collector types, one count towards the collector's next
//! collection each, so with many tasks alive (a large `gather`) the loop
//! paid for extra collections, each scanning every live task.
//!
//! That helper passes a keyword-names tuple of its own, `("context",)`,
//! which no Python code can obtain. `learn` finds it once, by letting a C
//! `Future` schedule a callback on a probe loop; `call_soon` then recognises
//! a call from the helper by pointer and queues a `QueuedCall` (callable, at
//! most one argument, context) and returns None, which the helper discards
//! in place of the handle. Anything else (another caller, debug mode, no
//! context) goes the ordinary way and gets its `Handle`.
//!
//! A `Handle` is made after all where one is observable: when the callback
//! raises (the exception handler's context names it) and when the loop runs
//! it in debug mode (slow-callback reports name it).

use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3::{Borrowed, PyVisit};

use crate::call_args::CallArgs;
use crate::handles::Handle;
use crate::loop_core::LoopCore;
use crate::state::Runnable;

/// A callback queued by asyncio's C helper: `func(arg)` or `func()` in
/// `context`.
pub(crate) struct QueuedCall {
    func: Py<PyAny>,
    arg: Option<Py<PyAny>>,
    context: Py<PyAny>,
}

impl QueuedCall {
    /// Runs the callback in its context. Errors are the caller's to route.
    #[inline]
    pub(crate) fn run(&self, py: Python<'_>) -> PyResult<()> {
        let context = self.context.as_ptr();
        // SAFETY: `context` is a live object we hold; the check reads its type.
        if unsafe { ffi::PyContext_CheckExact(context) } == 0 {
            // Not a real Context: its own `run`, as asyncio would call it.
            let ctx = self.context.bind(py);
            let func = self.func.bind(py);
            match &self.arg {
                None => ctx.call_method1("run", (func,))?,
                Some(arg) => ctx.call_method1("run", (func, arg.bind(py)))?,
            };
            return Ok(());
        }
        // SAFETY: an exact Context we hold for the whole call; Enter fails
        // cleanly (-1 with an exception set) if it is entered already.
        if unsafe { ffi::PyContext_Enter(context) } < 0 {
            return Err(PyErr::fetch(py));
        }
        // SAFETY: `func` and `arg` are live objects we hold; each call returns
        // a new reference or NULL with an exception set.
        let result = unsafe {
            let raw = match &self.arg {
                None => ffi::PyObject_CallNoArgs(self.func.as_ptr()),
                Some(arg) => ffi::PyObject_CallOneArg(self.func.as_ptr(), arg.as_ptr()),
            };
            Bound::from_owned_ptr_or_err(py, raw).map(drop)
        };
        // SAFETY: entered just above on this thread: balanced.
        let exited = unsafe { ffi::PyContext_Exit(context) };
        if exited < 0 && result.is_ok() {
            return Err(PyErr::fetch(py));
        }
        result
    }

    /// The `Handle` the stock loop would have queued for this call; with
    /// `debug`, one that keeps naming its callback after running.
    pub(crate) fn to_handle<'py>(
        &self,
        py: Python<'py>,
        debug: bool,
    ) -> PyResult<Bound<'py, Handle>> {
        let args = match &self.arg {
            None => CallArgs::None,
            Some(arg) => CallArgs::One(arg.clone_ref(py)),
        };
        let handle = Handle::new(
            self.func.clone_ref(py),
            args,
            self.context.clone_ref(py),
            None,
            None,
            debug,
            true,
        );
        Bound::new(py, handle)
    }

    /// Drops the references at once (as `Bound`s: see `run_loop::release`).
    #[inline]
    pub(crate) fn release(self, py: Python<'_>) {
        drop(self.func.into_bound(py));
        drop(self.arg.map(|a| a.into_bound(py)));
        drop(self.context.into_bound(py));
    }

    pub(crate) fn clone_ref(&self, py: Python<'_>) -> QueuedCall {
        QueuedCall {
            func: self.func.clone_ref(py),
            arg: self.arg.as_ref().map(|a| a.clone_ref(py)),
            context: self.context.clone_ref(py),
        }
    }

    pub(crate) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        visit.call(&self.func)?;
        if let Some(arg) = &self.arg {
            visit.call(arg)?;
        }
        visit.call(&self.context)
    }
}

/// The `("context",)` tuple of `_asyncio`'s call_soon helper; null until
/// `learn` found it (or if it could not). Its reference is kept for the
/// process's life, so the address is never reused.
static ASYNCIO_KWNAMES: AtomicPtr<ffi::PyObject> = AtomicPtr::new(ptr::null_mut());

/// Whether a `call_soon` comes from `_asyncio`'s helper (which discards the
/// returned handle).
#[inline(always)]
pub(crate) fn from_asyncio_helper(kwnames: *mut ffi::PyObject) -> bool {
    !kwnames.is_null() && kwnames == ASYNCIO_KWNAMES.load(Ordering::Relaxed)
}

/// Queues `func([arg])` in `context` as asyncio's C helper asked, or returns
/// false for the ordinary path (debug mode, or no context).
pub(crate) fn queue(
    py: Python<'_>,
    core: &LoopCore,
    func: Borrowed<'_, '_, PyAny>,
    arg: Option<Borrowed<'_, '_, PyAny>>,
    context: Borrowed<'_, '_, PyAny>,
) -> PyResult<bool> {
    if core.is_debug() || context.is_none() {
        return Ok(false);
    }
    core.ensure_open()?;
    let call = QueuedCall {
        func: func.to_owned().unbind(),
        arg: arg.map(|a| a.to_owned().unbind()),
        context: context.to_owned().unbind(),
    };
    core.state(py).ready.push(Runnable::Call(call));
    Ok(true)
}

/// A new reference to None (what `call_soon` returns for a queued call).
#[inline(always)]
pub(crate) fn new_none() -> *mut ffi::PyObject {
    // SAFETY: None is always alive; the caller gets the reference added here.
    unsafe {
        let none = ffi::Py_None();
        ffi::Py_INCREF(none);
        none
    }
}

/// The probe loop's `call_soon`: records the keyword names it is called with
/// (`_asyncio`'s tuple) and returns None.
unsafe extern "C" fn record_kwnames(
    _slf: *mut ffi::PyObject,
    _args: *const *mut ffi::PyObject,
    _nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: called by CPython with the GIL held; kwnames, when given, is a
    // tuple of strings. Only a `("context",)` tuple is kept, with a reference
    // of its own that is never released.
    unsafe {
        if !kwnames.is_null()
            && ffi::PyTuple_GET_SIZE(kwnames) == 1
            && ffi::PyUnicode_CompareWithASCIIString(
                ffi::PyTuple_GET_ITEM(kwnames, 0),
                c"context".as_ptr(),
            ) == 0
            && ASYNCIO_KWNAMES.load(Ordering::Relaxed).is_null()
        {
            ffi::Py_INCREF(kwnames);
            ASYNCIO_KWNAMES.store(kwnames, Ordering::Relaxed);
        }
        let none = ffi::Py_None();
        ffi::Py_INCREF(none);
        none
    }
}

struct MethodDef(ffi::PyMethodDef);

// SAFETY: never mutated; CPython only reads it (static strings and a function).
unsafe impl Sync for MethodDef {}

static RECORDER: MethodDef = MethodDef(ffi::PyMethodDef {
    ml_name: c"call_soon".as_ptr(),
    ml_meth: ffi::PyMethodDefPointer {
        PyCFunctionFastWithKeywords: record_kwnames,
    },
    ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
    ml_doc: ptr::null(),
});

/// Finds `_asyncio`'s keyword-names tuple: a C `Future` on a probe loop gets
/// a done callback and a result, and schedules the callback through its
/// helper. Without the C accelerator nothing is learnt and every call takes
/// the ordinary path, as it does if the probe fails in any way.
pub(crate) fn learn(py: Python<'_>) {
    if ASYNCIO_KWNAMES.load(Ordering::Relaxed).is_null() {
        // A failure only leaves the optimisation off.
        drop(probe(py));
    }
}

fn probe(py: Python<'_>) -> PyResult<()> {
    let Ok(c_asyncio) = py.import("_asyncio") else {
        return Ok(());
    };
    // SAFETY: `RECORDER` is a static definition that outlives the function
    // object; the result is a new reference or NULL with an exception set.
    let recorder = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyCFunction_NewEx(
                ptr::from_ref(&RECORDER.0).cast_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
            ),
        )?
    };
    let builtins = py.import("builtins")?;
    let attrs = PyDict::new(py);
    attrs.set_item("call_soon", recorder)?;
    attrs.set_item("get_debug", builtins.getattr("bool")?)?;
    let probe = py
        .import("types")?
        .getattr("SimpleNamespace")?
        .call((), Some(&attrs))?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("loop", probe)?;
    let fut = c_asyncio.getattr("Future")?.call((), Some(&kwargs))?;
    fut.call_method1("add_done_callback", (builtins.getattr("id")?,))?;
    fut.call_method1("set_result", (py.None(),))?;
    Ok(())
}
