//! The lock of a `call_soon_threadsafe` handle (3.13+ asyncio's
//! `_ThreadSafeHandle`): held while the callback runs and while another
//! thread cancels the handle or asks `cancelled()`, so a cancel from another
//! thread either lands before the run or waits for the callback to finish.
//!
//! Native, not a `threading.RLock`: the loop takes it for every such
//! callback, so the uncontended path is one compare-and-swap to take it and
//! one swap plus one load to give it back, with no syscall. It is reentrant
//! for the thread holding it (a callback may cancel its own handle), and a
//! thread that has to wait does so with the GIL released (the callback it
//! waits for may need the GIL), parked on a condition variable.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Condvar, Mutex, PoisonError};

use pyo3::prelude::*;

use crate::gil_cell::GilCell;

thread_local! {
    /// Its address tells threads apart (never 0).
    static THREAD_KEY: u8 = const { 0 };
}

fn current_thread_key() -> usize {
    THREAD_KEY.with(|key| key as *const u8 as usize)
}

/// Released locks kept for the next thread-safe handles: allocating one per
/// `call_soon_threadsafe` was a heap allocation and release per call.
// Boxed in the list too: a handle holds its lock in a box, which moves in
// and out of the list without reallocating.
#[allow(clippy::vec_box)]
static SPARE: GilCell<Vec<Box<HandleLock>>> = GilCell::new(Vec::new());

/// How many released locks `SPARE` keeps.
const SPARE_CAPACITY: usize = 256;

#[derive(Default)]
pub(crate) struct HandleLock {
    /// The key of the thread holding the lock; 0 when free.
    holder: AtomicUsize,
    /// Threads parked in `released`. A release notifies only when there are
    /// some: a notify is a futex syscall even with nobody waiting.
    waiters: AtomicUsize,
    /// Guards parking, so a release cannot slip between a waiter's failed
    /// attempt and its sleep.
    parking: Mutex<()>,
    released: Condvar,
}

impl HandleLock {
    /// A free lock, reused from `SPARE` when one is there.
    pub(crate) fn boxed(py: Python<'_>) -> Box<HandleLock> {
        SPARE.borrow_mut(py).pop().unwrap_or_default()
    }

    /// Gives back the lock of a handle being dropped (nobody holds it or
    /// waits for it: both would hold a reference to the handle).
    pub(crate) fn recycle(py: Python<'_>, lock: Box<HandleLock>) {
        debug_assert_eq!(lock.holder.load(SeqCst), 0);
        let mut spare = SPARE.borrow_mut(py);
        if spare.len() < SPARE_CAPACITY {
            spare.push(lock);
        }
    }

    /// Runs `f` holding the lock (at once if this thread holds it already).
    pub(crate) fn with<R>(&self, py: Python<'_>, f: impl FnOnce() -> PyResult<R>) -> PyResult<R> {
        let me = current_thread_key();
        match self.holder.compare_exchange(0, me, SeqCst, SeqCst) {
            Ok(_) => {}
            Err(holder) if holder == me => return f(),
            Err(_) => py.detach(|| self.park_until_acquired(me)),
        }
        // Released on unwinding too, so a panic in `f` leaves no waiter stuck.
        struct Release<'a>(&'a HandleLock);
        impl Drop for Release<'_> {
            fn drop(&mut self) {
                let lock = self.0;
                lock.holder.store(0, SeqCst);
                if lock.waiters.load(SeqCst) > 0 {
                    // Taking the parking mutex orders this notify after a
                    // waiter's last failed attempt, or before its next one.
                    let _parked = lock.parking.lock().unwrap_or_else(PoisonError::into_inner);
                    lock.released.notify_all();
                }
            }
        }
        let _release = Release(self);
        f()
    }

    fn park_until_acquired(&self, me: usize) {
        let mut parked = self.parking.lock().unwrap_or_else(PoisonError::into_inner);
        self.waiters.fetch_add(1, SeqCst);
        while self.holder.compare_exchange(0, me, SeqCst, SeqCst).is_err() {
            parked = self
                .released
                .wait(parked)
                .unwrap_or_else(PoisonError::into_inner);
        }
        self.waiters.fetch_sub(1, SeqCst);
    }
}
