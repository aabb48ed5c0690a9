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
//!
//! The lock is one word inside the handle. Waiting is rare (a cancel from
//! another thread at the very moment the callback runs), so all handles share
//! one parking place: a released lock wakes every parked thread, and each
//! one tries its own lock again. A per-handle mutex and condition variable
//! were a heap allocation per `call_soon_threadsafe` once a burst of posts
//! outgrew the list of spare ones.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Condvar, Mutex, PoisonError};

use pyo3::prelude::*;

thread_local! {
    /// Its address tells threads apart (never 0).
    static THREAD_KEY: u8 = const { 0 };
}

fn current_thread_key() -> usize {
    THREAD_KEY.with(|key| key as *const u8 as usize)
}

/// Threads parked on any handle lock. A release notifies only when there
/// are some: a notify is a futex syscall even with nobody waiting.
static PARKED: AtomicUsize = AtomicUsize::new(0);
/// Guards parking, so a release cannot slip between a waiter's failed
/// attempt and its sleep.
static PARKING: Mutex<()> = Mutex::new(());
static RELEASED: Condvar = Condvar::new();

#[derive(Default)]
pub(crate) struct HandleLock {
    /// The key of the thread holding the lock; 0 when free.
    holder: AtomicUsize,
}

impl HandleLock {
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
                self.0.holder.store(0, SeqCst);
                if PARKED.load(SeqCst) > 0 {
                    // Taking the parking mutex orders this notify after a
                    // waiter's last failed attempt, or before its next one.
                    let _parked = PARKING.lock().unwrap_or_else(PoisonError::into_inner);
                    RELEASED.notify_all();
                }
            }
        }
        let _release = Release(self);
        f()
    }

    fn park_until_acquired(&self, me: usize) {
        let mut parked = PARKING.lock().unwrap_or_else(PoisonError::into_inner);
        PARKED.fetch_add(1, SeqCst);
        while self.holder.compare_exchange(0, me, SeqCst, SeqCst).is_err() {
            parked = RELEASED
                .wait(parked)
                .unwrap_or_else(PoisonError::into_inner);
        }
        PARKED.fetch_sub(1, SeqCst);
    }
}
