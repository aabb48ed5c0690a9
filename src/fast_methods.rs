//! Direct C entry points for the loop methods asyncio's C `Task` and
//! `Future` call on every step: `call_soon` (each task step, each done
//! callback), `get_debug` (each new future or task), and the thread-safe
//! `call_soon_threadsafe`.
//!
//! Why not the `#[pymethods]` ones: the public loop is a Python subclass of
//! `LoopCore` with a long MRO (one mixin per asyncio concept). A method
//! descriptor owned by `LoopCore` checks `self` with `PyType_IsSubtype`,
//! which walks that MRO, and PyO3's own `self` extraction walks it again;
//! PyO3's generic argument parsing and trampoline come on top. These entry
//! points are installed as method descriptors owned by the final class
//! (`install`), so CPython's `self` check is one pointer comparison for its
//! instances, and they parse the common argument shapes by hand.
//!
//! Anything unusual (a missing argument, an unknown keyword) goes to the
//! `#[pymethods]` implementation, which raises exactly as before; the common
//! path calls the same Rust methods, so behaviour is shared, not copied.

use std::os::raw::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::intern;
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::types::PyType;
use pyo3::{Borrowed, PyTypeInfo};

use crate::call_args::CallArgs;
use crate::gil_cell::GilCell;
use crate::loop_core::LoopCore;
use crate::queued_call;

/// A `PyMethodDef` in a static: CPython keeps a pointer to it in every
/// descriptor made from it.
struct MethodDef(ffi::PyMethodDef);

// SAFETY: the definitions are never mutated; CPython only reads them (the
// raw pointers they hold are to static C strings and functions).
unsafe impl Sync for MethodDef {}

const FASTCALL_KW: i32 = ffi::METH_FASTCALL | ffi::METH_KEYWORDS;

static DEFS: [MethodDef; 4] = [
    MethodDef(ffi::PyMethodDef {
        ml_name: c"call_soon".as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: call_soon,
        },
        ml_flags: FASTCALL_KW,
        ml_doc: c"call_soon($self, callback, *args, context=None)\n--\n\n".as_ptr(),
    }),
    MethodDef(ffi::PyMethodDef {
        ml_name: c"call_soon_threadsafe".as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: call_soon_threadsafe,
        },
        ml_flags: FASTCALL_KW,
        ml_doc: c"call_soon_threadsafe($self, callback, *args, context=None)\n--\n\n".as_ptr(),
    }),
    MethodDef(ffi::PyMethodDef {
        ml_name: c"get_debug".as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunction: get_debug,
        },
        ml_flags: ffi::METH_NOARGS,
        ml_doc: c"get_debug($self)\n--\n\n".as_ptr(),
    }),
    MethodDef(ffi::PyMethodDef {
        ml_name: c"_check_closed".as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunction: check_closed,
        },
        ml_flags: ffi::METH_NOARGS,
        ml_doc: c"_check_closed($self)\n--\n\n".as_ptr(),
    }),
];

/// Installs the entry points on `cls`, a Python subclass of `LoopCore`, for
/// each method `cls` inherits from `LoopCore` unchanged (a Python override
/// stays in charge).
#[pyfunction]
pub(crate) fn _install_fast_methods(cls: &Bound<'_, PyType>) -> PyResult<()> {
    let py = cls.py();
    if !cls.is_subclass_of::<LoopCore>()? {
        return Err(PyTypeError::new_err("expected a subclass of LoopCore"));
    }
    crate::queued_call::learn(py);
    let core_type = LoopCore::type_object(py);
    for def in &DEFS {
        // SAFETY: ml_name is a static NUL-terminated string.
        let name = unsafe { std::ffi::CStr::from_ptr(def.0.ml_name as *const c_char) };
        let name = name
            .to_str()
            .map_err(|e| PyValueError::new_err(e.to_string()))?;
        let inherited = cls.getattr(name)?;
        let native = core_type.getattr(name)?;
        if !inherited.is(&native) {
            continue;
        }
        // SAFETY: `cls` is a live type object and `def` a static method
        // definition that outlives it; the result is a new reference or NULL
        // with an exception set.
        let descr = unsafe {
            Bound::from_owned_ptr_or_err(
                py,
                ffi::PyDescr_NewMethod(cls.as_type_ptr(), ptr::from_ref(&def.0).cast_mut()),
            )?
        };
        cls.setattr(name, descr)?;
    }
    Ok(())
}

/// Runs an entry point's body: errors become the raised exception, a panic
/// becomes a `PanicException` (unwinding must not cross into C).
///
/// The body must not drop a `Py<T>` on its normal path: outside PyO3's own
/// trampolines PyO3 does not know the thread is attached and would defer the
/// decref. `Bound` values are released at once.
#[inline(always)]
fn entry(f: impl FnOnce(Python<'_>) -> PyResult<*mut ffi::PyObject>) -> *mut ffi::PyObject {
    // SAFETY: CPython calls method implementations with the thread attached
    // (the GIL held).
    let py = unsafe { Python::assume_attached() };
    match catch_unwind(AssertUnwindSafe(|| f(py))) {
        Ok(Ok(obj)) => obj,
        Ok(Err(err)) => {
            err.restore(py);
            ptr::null_mut()
        }
        Err(_) => {
            PanicException::new_err("ferroloop: panic in a loop method").restore(py);
            ptr::null_mut()
        }
    }
}

/// `self` as the native core.
///
/// # Safety
/// `slf` must be a live instance of `LoopCore` or a subclass: the method
/// descriptors made by `_install_fast_methods` are owned by a subclass of
/// `LoopCore`, and CPython checks `self` against the owner before calling.
#[inline(always)]
unsafe fn core_of<'a, 'py>(
    py: Python<'py>,
    slf: *mut ffi::PyObject,
) -> Borrowed<'a, 'py, LoopCore> {
    // SAFETY: see the function's contract.
    unsafe { Borrowed::from_ptr(py, slf).cast_unchecked::<LoopCore>() }
}

/// Calls `LoopCore`'s own implementation of `name` (PyO3's argument parsing,
/// errors and all) with the same arguments.
///
/// # Safety
/// The arguments are those CPython passed to a vectorcall entry point.
unsafe fn fallback(
    py: Python<'_>,
    name: &str,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    let native = LoopCore::type_object(py).getattr(name)?;
    let nkw = if kwnames.is_null() {
        0
    } else {
        // SAFETY: kwnames, when given, is a tuple of strings.
        unsafe { ffi::PyTuple_GET_SIZE(kwnames) }
    };
    let total = usize::try_from(nargs + nkw).unwrap_or(0);
    let mut stack = Vec::with_capacity(total + 1);
    stack.push(slf);
    if total > 0 {
        // SAFETY: CPython passes nargs positional values followed by one
        // value per keyword name.
        stack.extend_from_slice(unsafe { std::slice::from_raw_parts(args, total) });
    }
    // SAFETY: `stack` holds borrowed references that stay alive for the call
    // (the caller owns them); the result is a new reference or NULL.
    let result = unsafe {
        ffi::PyObject_Vectorcall(
            native.as_ptr(),
            stack.as_ptr(),
            (nargs + 1) as usize,
            kwnames,
        )
    };
    if result.is_null() {
        Err(PyErr::fetch(py))
    } else {
        Ok(result)
    }
}

/// `(callback, *args, context=None)` as the C Task passes them, or None for
/// any other shape (left to the PyO3 implementation).
struct CallbackArgs<'py> {
    callback: Borrowed<'py, 'py, PyAny>,
    args: CallArgs,
    context: Option<Bound<'py, PyAny>>,
}

/// The last `("context",)` keyword-names tuple that is not spelled with the
/// interned string: the C Task of 3.11 and 3.12 passes one of its own on
/// every step. Kept alive here, so a pointer comparison recognises it.
static CONTEXT_KWNAMES: GilCell<Option<Py<PyAny>>> = GilCell::new(None);

/// Whether a one-item keyword-names tuple is `("context",)`.
///
/// # Safety
/// `kwnames` is a live tuple of one `str` (CPython checks keyword names).
#[inline(always)]
unsafe fn is_context_kwnames(py: Python<'_>, kwnames: *mut ffi::PyObject) -> bool {
    // SAFETY: see the function's contract; the checks only read the objects.
    unsafe {
        let name = ffi::PyTuple_GET_ITEM(kwnames, 0);
        if name == intern!(py, "context").as_ptr() {
            return true;
        }
        let mut last = CONTEXT_KWNAMES.borrow_mut(py);
        if last.as_ref().is_some_and(|t| t.as_ptr() == kwnames) {
            return true;
        }
        if ffi::PyUnicode_CompareWithASCIIString(name, c"context".as_ptr()) != 0 {
            return false;
        }
        let previous = last.replace(Borrowed::from_ptr(py, kwnames).to_owned().unbind());
        drop(last);
        // Released as a `Bound` (see `entry`); a tuple of a str runs no code.
        drop(previous.map(|t| t.into_bound(py)));
        true
    }
}

/// # Safety
/// The arguments are those CPython passed to a vectorcall entry point.
#[inline(always)]
unsafe fn parse_callback_args<'py>(
    py: Python<'py>,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> Option<CallbackArgs<'py>> {
    if nargs < 1 {
        return None;
    }
    let context = if kwnames.is_null() {
        None
    } else {
        // SAFETY: kwnames is a tuple of strings; its values follow the
        // positional ones in `args`.
        unsafe {
            match ffi::PyTuple_GET_SIZE(kwnames) {
                0 => None,
                1 if is_context_kwnames(py, kwnames) => {
                    Some(Borrowed::from_ptr(py, *args.offset(nargs)).to_owned())
                }
                // Other keywords: the general parser decides.
                _ => return None,
            }
        }
    };
    // SAFETY: args[0..nargs] are live borrowed references.
    let callback = unsafe { Borrowed::from_ptr(py, *args) };
    // SAFETY: args[1..nargs] are live borrowed references. (Should the
    // tuple for several arguments fail to allocate, the general path retries
    // and raises.)
    let args = unsafe { CallArgs::from_slice(py, args.offset(1), nargs - 1) }.ok()?;
    Some(CallbackArgs {
        callback,
        args,
        context,
    })
}

unsafe extern "C" fn call_soon(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    entry(|py| {
        // SAFETY: CPython passes vectorcall arguments (see the callees).
        unsafe {
            let nargs = ffi::PyVectorcall_NARGS(nargsf as usize);
            if queued_call::from_asyncio_helper(kwnames) && (nargs == 1 || nargs == 2) {
                // asyncio's C Task / Future: the handle would be discarded.
                let at = |i: isize| Borrowed::from_ptr(py, *args.offset(i));
                let arg = (nargs == 2).then(|| at(1));
                if queued_call::queue(py, core_of(py, slf).get(), at(0), arg, at(nargs))? {
                    return Ok(queued_call::new_none());
                }
            }
            let Some(parsed) = parse_callback_args(py, args, nargs, kwnames) else {
                return fallback(py, "call_soon", slf, args, nargs, kwnames);
            };
            let core = core_of(py, slf);
            core.get()
                .call_soon_args(py, &parsed.callback, parsed.args, parsed.context)
                .map(Bound::into_ptr)
        }
    })
}

unsafe extern "C" fn call_soon_threadsafe(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargsf: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    entry(|py| {
        // SAFETY: CPython passes vectorcall arguments (see the callees).
        unsafe {
            let nargs = ffi::PyVectorcall_NARGS(nargsf as usize);
            let Some(parsed) = parse_callback_args(py, args, nargs, kwnames) else {
                return fallback(py, "call_soon_threadsafe", slf, args, nargs, kwnames);
            };
            let core = core_of(py, slf);
            core.get()
                .call_soon_threadsafe_args(py, &parsed.callback, parsed.args, parsed.context)
                .map(Bound::into_ptr)
        }
    })
}

unsafe extern "C" fn get_debug(
    slf: *mut ffi::PyObject,
    _noargs: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: called by CPython with the thread attached and `slf` checked
    // against the descriptor's owner (see `core_of`).
    unsafe {
        let py = Python::assume_attached();
        let value = if core_of(py, slf).get().is_debug() {
            ffi::Py_True()
        } else {
            ffi::Py_False()
        };
        ffi::Py_INCREF(value);
        value
    }
}

unsafe extern "C" fn check_closed(
    slf: *mut ffi::PyObject,
    _noargs: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    entry(|py| {
        // SAFETY: `slf` was checked against the descriptor's owner.
        unsafe { core_of(py, slf) }.get().ensure_open()?;
        // SAFETY: Py_None is immortal-or-counted; we return a new reference.
        unsafe {
            let none = ffi::Py_None();
            ffi::Py_INCREF(none);
            Ok(none)
        }
    })
}
