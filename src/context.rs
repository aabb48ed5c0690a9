//! Running a callback inside its `contextvars.Context`, as
//! `Context.run(callback, *args)` does, without building the argument tuple
//! twice: the context is entered and exited through the C API.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

/// Calls `func(*args)` with `context` entered. Objects that are not real
/// `Context`s fall back to their own `run` method (as asyncio would call it).
#[inline]
pub(crate) fn run_in_context(
    py: Python<'_>,
    context: &Bound<'_, PyAny>,
    func: &Bound<'_, PyAny>,
    args: &Bound<'_, PyTuple>,
) -> PyResult<()> {
    // SAFETY: `context` is a live object; PyContext_CheckExact only reads its type.
    let is_context = unsafe { ffi::PyContext_CheckExact(context.as_ptr()) } != 0;
    if !is_context {
        let mut call_args: Vec<Bound<'_, PyAny>> = Vec::with_capacity(args.len() + 1);
        call_args.push(func.clone());
        call_args.extend(args.iter());
        context.call_method1("run", PyTuple::new(py, call_args)?)?;
        return Ok(());
    }
    // SAFETY: `context` is an exact Context (checked above) that we hold a
    // reference to for the whole call; Enter fails cleanly (returns -1 with an
    // exception set) when the context is already entered.
    if unsafe { ffi::PyContext_Enter(context.as_ptr()) } < 0 {
        return Err(PyErr::fetch(py));
    }
    let result = if args.is_empty() {
        func.call0()
    } else {
        func.call1(args)
    };
    // SAFETY: we entered this context just above on this thread, so exiting it
    // is balanced.
    let exited = unsafe { ffi::PyContext_Exit(context.as_ptr()) };
    let result = result.map(drop);
    if exited < 0 && result.is_ok() {
        return Err(PyErr::fetch(py));
    }
    result
}

/// `contextvars.copy_context()`.
#[inline]
pub(crate) fn copy_current_context(py: Python<'_>) -> PyResult<Py<PyAny>> {
    // SAFETY: PyContext_CopyCurrent returns a new reference or NULL with an
    // exception set; `from_owned_ptr_or_err` takes ownership of exactly that.
    unsafe {
        let ptr = ffi::PyContext_CopyCurrent();
        Ok(Bound::from_owned_ptr_or_err(py, ptr)?.unbind())
    }
}

/// `contextvars.copy_context()` for a one-shot handle that will be the copy's
/// only owner: the copy is taken out of the garbage collector's view.
///
/// While the handle is queued, the loop owns it: the collector need not scan
/// the copy, and a large ready queue or timer heap no longer costs a scan of
/// one context per queued callback on every collection. Code can obtain the
/// copy through `Handle.get_context()`, which puts it back under the
/// collector ([`expose_context`]); and the copy can lead back to whoever keeps
/// the handle through the values it holds (those of the current context now,
/// and what the callback stores with `ContextVar.set` while it runs in it),
/// so when the loop lets go of a handle that someone else still holds, the
/// copy is put back too (`loop_core::retrack_released`). An fd watcher's
/// handle, which runs again and again, gets a tracked copy.
///
/// CPython's context destructor unlinks the object from the collector's list
/// without checking that it is tracked, so the owning handle must put the
/// copy back under the collector before letting go of it ([`release_context`]).
#[inline]
pub(crate) fn copy_current_context_for_handle(py: Python<'_>) -> PyResult<Py<PyAny>> {
    let ctx = copy_current_context(py)?;
    // SAFETY: `ctx` is a live Context (a GC type) that nothing else references
    // yet; untracking only removes it from the collector's lists.
    unsafe { ffi::PyObject_GC_UnTrack(ctx.as_ptr().cast()) };
    Ok(ctx)
}

/// Puts a context that [`copy_current_context_for_handle`] untracked back
/// under the collector (a no-op for any other object).
pub(crate) fn retrack(ctx: &Py<PyAny>) {
    let ptr = ctx.as_ptr();
    // SAFETY: `ptr` is a live object (we hold a reference); the checks read
    // its type and GC header, and only an exact Context (a GC type) that is
    // currently untracked gets tracked again.
    unsafe {
        if ffi::PyContext_CheckExact(ptr) != 0 && ffi::PyObject_GC_IsTracked(ptr) == 0 {
            ffi::PyObject_GC_Track(ptr.cast());
        }
    }
}

/// Returns a handle's context to user code, tracked again first.
pub(crate) fn expose_context(py: Python<'_>, ctx: &Py<PyAny>) -> Py<PyAny> {
    retrack(ctx);
    ctx.clone_ref(py)
}

/// Called by a handle's destructor before it drops its context reference.
pub(crate) fn release_context(ctx: &Py<PyAny>) {
    retrack(ctx);
}
