//! Where the running loop is within its current iteration's batch of
//! callbacks: whether the callback now running is the last one queued.
//!
//! A datagram transport that has just delivered one datagram may deliver the
//! next one queued in the kernel at once, instead of in the next iteration,
//! only when nothing else would have run in between in the stock loop (see
//! transports/datagram/drain.rs). One loop runs per thread, so the position
//! is thread-local.

use std::cell::Cell;

thread_local! {
    static LAST_OF_BATCH: Cell<bool> = const { Cell::new(false) };
    static BATCH: Cell<u64> = const { Cell::new(0) };
}

/// Called by the loop before it runs an iteration's batch of callbacks.
#[inline]
pub(crate) fn start_batch() {
    BATCH.with(|c| c.set(c.get().wrapping_add(1)));
}

/// Which batch is running (changes once per loop iteration), so a callback
/// can tell whether an earlier callback of the same batch did something.
#[inline]
pub(crate) fn batch() -> u64 {
    BATCH.with(Cell::get)
}

/// Set by the loop before it runs each callback of a batch.
#[inline]
pub(crate) fn set_last_of_batch(last: bool) {
    LAST_OF_BATCH.with(|c| c.set(last));
}

/// Whether the running callback is the last of its iteration's batch.
#[inline]
pub(crate) fn is_last_of_batch() -> bool {
    LAST_OF_BATCH.with(Cell::get)
}
