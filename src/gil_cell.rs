//! `GilCell`: interior mutability for state that is only touched with the
//! GIL held — the loop's queues and a handle's callback.
//!
//! The GIL already serialises every thread that can reach these objects, so
//! a lock per access (an atomic read-modify-write on each `call_soon`, each
//! callback run) would only repeat that guarantee at a cost. A plain flag
//! still catches re-entrant access (a bug: calling Python while holding the
//! borrow) with a panic, which PyO3 turns into a Python exception, instead
//! of aliasing.

use std::cell::{Cell, UnsafeCell};
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use pyo3::Python;

#[cfg(Py_GIL_DISABLED)]
compile_error!("GilCell relies on the GIL; free-threaded builds need a real lock here");

pub(crate) struct GilCell<T> {
    borrowed: Cell<bool>,
    value: UnsafeCell<T>,
}

// SAFETY: all access to `borrowed` and `value` goes through `borrow_mut`,
// which takes a `Python` token, i.e. the calling thread holds the GIL; the
// returned guard is neither Send nor able to cross `Python::detach` (it is
// !Send), so no two threads can be inside at once. Values moved in and out are
// `Send`.
unsafe impl<T: Send> Sync for GilCell<T> {}

impl<T> GilCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        GilCell {
            borrowed: Cell::new(false),
            value: UnsafeCell::new(value),
        }
    }

    /// Exclusive access while the GIL is held. Panics on re-entrant use.
    #[inline]
    pub(crate) fn borrow_mut<'a>(&'a self, _py: Python<'_>) -> GilRefMut<'a, T> {
        assert!(
            !self.borrowed.get(),
            "ferroloop: re-entrant access to loop state (a Python call while it was borrowed)"
        );
        self.borrowed.set(true);
        GilRefMut {
            cell: self,
            _not_send: PhantomData,
        }
    }

    /// Read access for the garbage collector's traversal, which runs with the
    /// GIL held but without a `Python` token. None while borrowed.
    pub(crate) fn peek_for_gc(&self) -> Option<&T> {
        if self.borrowed.get() {
            return None;
        }
        // SAFETY: GC traversal runs with the GIL held and no borrow is live
        // (checked above); traversal code does not mutate the state, and
        // nothing else can run on another thread while this thread holds the
        // GIL without calling into Python.
        Some(unsafe { &*self.value.get() })
    }
}

pub(crate) struct GilRefMut<'a, T> {
    cell: &'a GilCell<T>,
    _not_send: PhantomData<*const ()>,
}

impl<T> Deref for GilRefMut<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: this guard is the only live borrow (flag set in borrow_mut).
        unsafe { &*self.cell.value.get() }
    }
}

impl<T> DerefMut for GilRefMut<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: this guard is the only live borrow (flag set in borrow_mut).
        unsafe { &mut *self.cell.value.get() }
    }
}

impl<T> Drop for GilRefMut<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.cell.borrowed.set(false);
    }
}
