//! Running a callback inside its `contextvars.Context`, as
//! `Context.run(callback, *args)` does, without building the argument tuple
//! twice: the context is entered and exited through the C API.

use pyo3::ffi;
use pyo3::prelude::*;

use crate::call_args::CallArgs;

/// Calls `func(*args)` with `context` entered. Objects that are not real
/// `Context`s fall back to their own `run` method (as asyncio would call it).
#[inline(always)]
pub(crate) fn run_in_context(
    py: Python<'_>,
    context: &Bound<'_, PyAny>,
    func: &Bound<'_, PyAny>,
    args: &CallArgs,
) -> PyResult<()> {
    // SAFETY: `context` is a live object; PyContext_CheckExact only reads its type.
    let is_context = unsafe { ffi::PyContext_CheckExact(context.as_ptr()) } != 0;
    if !is_context {
        context.call_method1("run", args.with_func(py, func)?)?;
        return Ok(());
    }
    // SAFETY: `context` is an exact Context (checked above) that we hold a
    // reference to for the whole call; Enter fails cleanly (returns -1 with an
    // exception set) when the context is already entered.
    if unsafe { ffi::PyContext_Enter(context.as_ptr()) } < 0 {
        return Err(PyErr::fetch(py));
    }
    let raw = args.call_raw(func);
    // The callback's error is taken before the exit, as is its result
    // released inside the context; no `PyErr` is moved on success.
    let failed = if raw.is_null() {
        Some(PyErr::fetch(py))
    } else {
        // SAFETY: `raw` is the new reference the call returned.
        unsafe { ffi::Py_DECREF(raw) };
        None
    };
    // SAFETY: we entered this context just above on this thread, so exiting it
    // is balanced.
    let exited = unsafe { ffi::PyContext_Exit(context.as_ptr()) };
    if let Some(err) = failed {
        return Err(err);
    }
    if exited < 0 {
        return Err(PyErr::fetch(py));
    }
    Ok(())
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
#[inline(always)]
pub(crate) fn copy_current_context_for_handle(py: Python<'_>) -> PyResult<Py<PyAny>> {
    let ctx = copy_current_context(py)?;
    // SAFETY: `ctx` is a live Context (a GC type) that nothing else references
    // yet; untracking only removes it from the collector's lists.
    unsafe { ffi::PyObject_GC_UnTrack(ctx.as_ptr().cast()) };
    Ok(ctx)
}

/// Puts a context that [`copy_current_context_for_handle`] untracked back
/// under the collector. `untracked` is the owning handle's record of that
/// (which the handle clears as it passes it), so the common case costs no
/// call to ask the collector.
pub(crate) fn retrack(ctx: &Py<PyAny>, untracked: bool) {
    if untracked {
        // SAFETY: `ctx` is a live, exact Context (a GC type) that we hold and
        // that was untracked by `copy_current_context_for_handle` and not
        // tracked again since (the flag was set until now, under the GIL).
        unsafe { ffi::PyObject_GC_Track(ctx.as_ptr().cast()) };
    }
}

/// Returns a handle's context to user code, tracked again first.
pub(crate) fn expose_context(py: Python<'_>, ctx: &Py<PyAny>, untracked: bool) -> Py<PyAny> {
    retrack(ctx, untracked);
    ctx.clone_ref(py)
}

/// Called by a handle's destructor before it drops its context reference.
pub(crate) fn release_context(ctx: &Py<PyAny>, untracked: bool) {
    retrack(ctx, untracked);
}
