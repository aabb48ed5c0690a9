//! A handle's positional arguments, kept without a tuple when there are
//! none or one.
//!
//! Most callbacks get zero or one argument (`call_soon(cb)`,
//! `call_soon_threadsafe(fut.set_result, value)`, `call_soon(cb, i)`). A tuple
//! for them was a GC object allocated per call and released per run, and
//! calling through it went the tuple-unpacking way; one argument is now held
//! as is and passed by vectorcall. The tuple `handle._args` shows is built on
//! first look and kept (the same object on every later look, as asyncio's).

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::{PyTraverseError, PyVisit};

pub(crate) enum CallArgs {
    None,
    One(Py<PyAny>),
    Tuple(Py<PyTuple>),
}

impl CallArgs {
    /// From a tuple the caller built already (PyO3's `*args`).
    pub(crate) fn from_tuple(args: Bound<'_, PyTuple>) -> CallArgs {
        if args.is_empty() {
            CallArgs::None
        } else {
            CallArgs::Tuple(args.unbind())
        }
    }

    /// From a vectorcall argument array.
    ///
    /// # Safety
    /// `args[0..n]` are live borrowed references.
    #[inline(always)]
    pub(crate) unsafe fn from_slice(
        py: Python<'_>,
        args: *const *mut ffi::PyObject,
        n: ffi::Py_ssize_t,
    ) -> PyResult<CallArgs> {
        match n {
            0 => Ok(CallArgs::None),
            // SAFETY: see the function's contract.
            1 => Ok(CallArgs::One(unsafe {
                Bound::from_borrowed_ptr(py, *args).unbind()
            })),
            // SAFETY: PyTuple_New returns a new tuple or NULL; each slot is
            // filled with a new reference before the tuple is used.
            _ => unsafe {
                let tuple = ffi::PyTuple_New(n);
                if tuple.is_null() {
                    return Err(PyErr::fetch(py));
                }
                for i in 0..n {
                    let item = *args.offset(i);
                    ffi::Py_INCREF(item);
                    ffi::PyTuple_SET_ITEM(tuple, i, item);
                }
                Ok(CallArgs::Tuple(
                    Bound::from_owned_ptr(py, tuple)
                        .cast_into_unchecked::<PyTuple>()
                        .unbind(),
                ))
            },
        }
    }

    /// Whether this is the single argument `arg` (the same object).
    pub(crate) fn is_one(&self, arg: &Py<PyAny>) -> bool {
        matches!(self, CallArgs::One(a) if a.as_ptr() == arg.as_ptr())
    }

    pub(crate) fn clone_ref(&self, py: Python<'_>) -> CallArgs {
        match self {
            CallArgs::None => CallArgs::None,
            CallArgs::One(a) => CallArgs::One(a.clone_ref(py)),
            CallArgs::Tuple(t) => CallArgs::Tuple(t.clone_ref(py)),
        }
    }

    /// Takes a tuple of atomic values out of the collector's view: it cannot
    /// be part of a cycle (see `loop_core::untrack_atomic_args`).
    #[inline(always)]
    pub(crate) fn untrack_if_atomic(&self, py: Python<'_>) {
        if let CallArgs::Tuple(t) = self {
            crate::loop_core::untrack_atomic_args(t.bind(py));
        }
    }

    /// `func(*args)`: a new reference, or NULL with an exception set (the
    /// run loop's path, which builds a `PyErr` only on failure).
    #[inline(always)]
    pub(crate) fn call_raw(&self, func: &Bound<'_, PyAny>) -> *mut ffi::PyObject {
        let f = func.as_ptr();
        // SAFETY: `f` and the arguments are live objects we hold for the
        // call; each call returns a new reference or NULL with an exception
        // set. A tuple's items are a contiguous array of its length.
        unsafe {
            match self {
                CallArgs::None => ffi::PyObject_CallNoArgs(f),
                CallArgs::One(arg) => ffi::PyObject_CallOneArg(f, arg.as_ptr()),
                CallArgs::Tuple(t) => {
                    let t = t.as_ptr();
                    let n = ffi::PyTuple_GET_SIZE(t);
                    ffi::PyObject_Vectorcall(
                        f,
                        tuple_items(t),
                        usize::try_from(n).unwrap_or(0),
                        std::ptr::null_mut(),
                    )
                }
            }
        }
    }

    /// `(func, *args)`, for a context object's own `run`.
    pub(crate) fn with_func<'py>(
        &self,
        py: Python<'py>,
        func: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyTuple>> {
        let mut items: Vec<Bound<'py, PyAny>> = vec![func.clone()];
        match self {
            CallArgs::None => {}
            CallArgs::One(a) => items.push(a.bind(py).clone()),
            CallArgs::Tuple(t) => items.extend(t.bind(py).iter()),
        }
        PyTuple::new(py, items)
    }

    pub(crate) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        match self {
            CallArgs::None => Ok(()),
            CallArgs::One(a) => visit.call(a),
            CallArgs::Tuple(t) => visit.call(t),
        }
    }

    /// Releases the references at once (see `run_loop::release`).
    #[inline(always)]
    pub(crate) fn release(self, py: Python<'_>) {
        match self {
            CallArgs::None => {}
            CallArgs::One(a) => drop(a.into_bound(py)),
            CallArgs::Tuple(t) => drop(t.into_bound(py)),
        }
    }
}

/// The address of a tuple's first item slot.
///
/// # Safety
/// `t` is a live tuple.
#[inline(always)]
unsafe fn tuple_items(t: *mut ffi::PyObject) -> *const *mut ffi::PyObject {
    // SAFETY: a tuple's items are stored inline after its header.
    unsafe { (*t.cast::<ffi::PyTupleObject>()).ob_item.as_ptr() }
}
