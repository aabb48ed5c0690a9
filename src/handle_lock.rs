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
//! The lock is a 32-bit word inside the handle (the one a timer handle
//! keeps its scheduling number in). Waiting is rare (a cancel from
//! another thread at the very moment the callback runs), so all handles share
//! one parking place: a released lock wakes every parked thread, and each
//! one tries its own lock again. A per-handle mutex and condition variable
//! were a heap allocation per `call_soon_threadsafe` once a burst of posts
//! outgrew the list of spare ones.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering::SeqCst};
use std::sync::{Condvar, Mutex, PoisonError};

use pyo3::prelude::*;

/// The next thread key to hand out (0 means "free", so it is skipped).
static NEXT_KEY: AtomicU32 = AtomicU32::new(1);

thread_local! {
    /// This thread's key, handed out on first use (0 until then).
    static THREAD_KEY: Cell<u32> = const { Cell::new(0) };
}

/// A number that tells threads apart (never 0). A `u32`, so that the lock
/// fits in the word a timer handle uses for its scheduling number (a
/// thread-safe handle is never a timer).
fn current_thread_key() -> u32 {
    THREAD_KEY.with(|key| {
        if key.get() == 0 {
            let mut k = NEXT_KEY.fetch_add(1, SeqCst);
            if k == 0 {
                // Wrapped after 2^32 threads: keys of threads long gone are
                // reused, and 0 stays "free".
                k = NEXT_KEY.fetch_add(1, SeqCst);
            }
            key.set(k);
        }
        key.get()
    })
}

/// Threads parked on any handle lock. A release notifies only when there
/// are some: a notify is a futex syscall even with nobody waiting.
static PARKED: AtomicUsize = AtomicUsize::new(0);
/// Guards parking, so a release cannot slip between a waiter's failed
/// attempt and its sleep.
static PARKING: Mutex<()> = Mutex::new(());
static RELEASED: Condvar = Condvar::new();

/// Runs `f` holding the lock whose word is `holder` (the key of the thread
/// holding it, 0 when free); at once if this thread holds it already.
pub(crate) fn with_lock<R>(
    holder: &AtomicU32,
    py: Python<'_>,
    f: impl FnOnce() -> PyResult<R>,
) -> PyResult<R> {
    let me = current_thread_key();
    match holder.compare_exchange(0, me, SeqCst, SeqCst) {
        Ok(_) => {}
        Err(h) if h == me => return f(),
        Err(_) => py.detach(|| park_until_acquired(holder, me)),
    }
    // Released on unwinding too, so a panic in `f` leaves no waiter stuck.
    struct Release<'a>(&'a AtomicU32);
    impl Drop for Release<'_> {
        fn drop(&mut self) {
            self.0.store(0, SeqCst);
            if PARKED.load(SeqCst) > 0 {
                // Taking the parking mutex orders this notify after a
                // waiter's last failed attempt, or before its next one.
                let _parked = PARKING.lock().unwrap_or_else(PoisonError::into_inner);
                RELEASED.notify_all();
            }
        }
    }
    let _release = Release(holder);
    f()
}

fn park_until_acquired(holder: &AtomicU32, me: u32) {
    let mut parked = PARKING.lock().unwrap_or_else(PoisonError::into_inner);
    PARKED.fetch_add(1, SeqCst);
    while holder.compare_exchange(0, me, SeqCst, SeqCst).is_err() {
        parked = RELEASED
            .wait(parked)
            .unwrap_or_else(PoisonError::into_inner);
    }
    PARKED.fetch_sub(1, SeqCst);
}
