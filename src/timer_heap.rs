//! The loop's timer heap (asyncio's `_scheduled`) as the PyO3 side holds it.
//!
//! The loop state owns the heap through the only strong `Arc`. So that
//! `cancel()` can report itself and let the heap compact right away, each
//! scheduled `TimerHandle` keeps the heap's slot in a process-wide table of
//! `Weak`s (two bytes in the handle, beside its flags, where a `Weak` took a
//! word of every pending handle). Without that, a million
//! `call_later(...).cancel()` made while the loop is not running (before
//! `run_forever`, or inside one long callback) would keep a million dead
//! handles until the next iteration. The table holds weak references so
//! that pending handles never keep a dropped loop's heap, and the handles in
//! it, alive; a heap gives its slot back when dropped, after telling every
//! handle still in it to forget the slot, so a reused slot never reaches a
//! handle of an earlier loop.
//!
//! More than 65,535 loops alive at once get no slot: their handles are then
//! compacted at the loop's next iteration only, as asyncio does.

use std::ops::Deref;
use std::sync::{Arc, Weak};

use ferroloop_engine::{Timer, TimerHeap};
use pyo3::prelude::*;

use crate::gil_cell::GilCell;
use crate::handles::Handle;

/// The slot of a handle that is in no live heap.
pub(crate) const NO_HEAP: u16 = u16::MAX;

/// A handle in the timer heap.
pub(crate) struct Scheduled(pub(crate) Py<Handle>);

impl Timer for Scheduled {
    #[inline]
    fn is_cancelled(&self) -> bool {
        self.0.get().is_cancelled()
    }

    #[inline]
    fn seq(&self) -> u32 {
        self.0.get().seq()
    }

    #[inline]
    fn set_seq(&self, seq: u32) {
        self.0.get().set_seq(seq);
    }

    #[inline]
    fn prefetch(&self) {
        // The object header (its reference count, which compaction may
        // decrement) and the flags are what compaction touches.
        Handle::prefetch(self.0.as_ptr(), self.0.get());
    }
}

/// A loop's heap and its slot in `SLOTS`.
pub(crate) struct Timers {
    heap: GilCell<TimerHeap<Scheduled>>,
    slot: u16,
}

impl Timers {
    /// The slot handles scheduled in this heap keep.
    pub(crate) fn slot(&self) -> u16 {
        self.slot
    }
}

impl Deref for Timers {
    type Target = GilCell<TimerHeap<Scheduled>>;

    fn deref(&self) -> &Self::Target {
        &self.heap
    }
}

impl Drop for Timers {
    fn drop(&mut self) {
        // SAFETY: the heap is dropped with its loop state, in the loop's
        // deallocation, or as the last `Arc` of `note_cancelled`: both with
        // the GIL held.
        let py = unsafe { Python::assume_attached() };
        for s in self.heap.borrow_mut(py).iter() {
            s.0.get().forget_heap();
        }
        if self.slot != NO_HEAP {
            let mut slots = SLOTS.borrow_mut(py);
            slots.live[usize::from(self.slot)] = Weak::new();
            slots.free.push(self.slot);
        }
    }
}

/// The heaps of live loops, by slot.
struct Slots {
    live: Vec<Weak<Timers>>,
    free: Vec<u16>,
}

static SLOTS: GilCell<Slots> = GilCell::new(Slots {
    live: Vec::new(),
    free: Vec::new(),
});

pub(crate) fn new_timers(py: Python<'_>) -> Arc<Timers> {
    Arc::new_cyclic(|weak| {
        let mut slots = SLOTS.borrow_mut(py);
        let slot = match slots.free.pop() {
            Some(slot) => {
                slots.live[usize::from(slot)] = weak.clone();
                slot
            }
            None if slots.live.len() < usize::from(NO_HEAP) => {
                slots.live.push(weak.clone());
                (slots.live.len() - 1) as u16
            }
            None => NO_HEAP,
        };
        Timers {
            heap: GilCell::new(TimerHeap::new()),
            slot,
        }
    })
}

/// A scheduled timer handle was just cancelled (its cancelled flag is set):
/// count it, and compact the heap if cancelled entries are now the majority.
///
/// The count and the check run on every `cancel()`, so they go through the
/// table's `Weak` without upgrading it (two atomic read-modify-writes per
/// cancel): the step runs no Python code and takes the GIL-only borrows, so
/// a heap seen alive stays alive until it ends. Only a compaction, which
/// releases handles and so may run Python code, holds a strong reference.
pub(crate) fn note_cancelled(py: Python<'_>, slot: u16) {
    let compact = {
        let slots = SLOTS.borrow_mut(py);
        let Some(weak) = slots.live.get(usize::from(slot)) else {
            return;
        };
        if weak.strong_count() == 0 {
            return; // the loop is gone
        }
        // SAFETY: the heap is alive (a strong count above zero) and can only
        // be dropped with the GIL held, by code that cannot run before this
        // block ends: it calls no Python code and holds `SLOTS`' borrow.
        let timers = unsafe { &*weak.as_ptr() };
        let mut heap = timers.borrow_mut(py);
        heap.note_cancelled();
        heap.needs_compaction()
    };
    if compact {
        compact_now(py, slot);
    }
}

/// Compacts the heap in `slot`. Removed handles are no longer scheduled
/// (asyncio clears `_scheduled` when it drops them). One that someone else
/// still holds (the caller of `call_later` usually does) loses the heap's
/// reference at once, while its memory is at hand from the check of its
/// flag: a million of them otherwise meant a second pass over a million
/// handles in random memory order. The others are released after the heap
/// is let go of, since a handle's destructor may run Python code that
/// schedules timers.
#[cold]
fn compact_now(py: Python<'_>, slot: u16) {
    let heap = SLOTS
        .borrow_mut(py)
        .live
        .get(usize::from(slot))
        .and_then(Weak::upgrade);
    let Some(heap) = heap else {
        return;
    };
    let mut removed = Vec::new();
    {
        let mut timers = heap.borrow_mut(py);
        timers.compact_if_needed(|s| {
            s.0.get().mark_unscheduled();
            let handle = s.0.into_bound(py);
            // SAFETY: `handle` is a live object we hold; this reads its count.
            if unsafe { pyo3::ffi::Py_REFCNT(handle.as_ptr()) } > 1 {
                // Not the last reference: this release deallocates nothing
                // and runs no code. Its holder keeps it, so it goes back
                // under the collector, as the run loop's release does: a
                // cycle through it (owner -> handle -> context) must stay
                // collectable.
                crate::loop_core::retrack_released(handle.as_unbound());
                drop(handle);
            } else {
                removed.push(handle);
            }
        });
    }
    drop(removed);
    drop(heap);
}
