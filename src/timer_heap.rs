//! The loop's timer heap (asyncio's `_scheduled`) as the PyO3 side holds it.
//!
//! The loop state owns the heap through the only strong `Arc`; every
//! scheduled `TimerHandle` keeps a `Weak` to it so that `cancel()` can report
//! itself and let the heap compact right away. Without that, a million
//! `call_later(...).cancel()` made while the loop is not running (before
//! `run_forever`, or inside one long callback) would keep a million dead
//! handles until the next iteration. The reference is weak so that pending
//! handles never keep a dropped loop's heap, and the handles in it, alive.

use std::sync::{Arc, Weak};

use ferroloop_engine::{Timer, TimerHeap};
use pyo3::prelude::*;

use crate::gil_cell::GilCell;
use crate::handles::Handle;

/// A handle in the timer heap.
pub(crate) struct Scheduled(pub(crate) Py<Handle>);

impl Timer for Scheduled {
    #[inline]
    fn is_cancelled(&self) -> bool {
        self.0.get().is_cancelled()
    }
}

pub(crate) type Timers = GilCell<TimerHeap<Scheduled>>;

pub(crate) fn new_timers() -> Arc<Timers> {
    Arc::new(GilCell::new(TimerHeap::new()))
}

/// A scheduled timer handle was just cancelled (its cancelled flag is set):
/// count it, and compact the heap if cancelled entries are now the majority.
/// Removed handles are no longer scheduled (asyncio clears `_scheduled` when
/// it drops them) and are released after the heap is let go of, since a
/// handle's destructor may run Python code that schedules timers.
pub(crate) fn note_cancelled(py: Python<'_>, heap: &Weak<Timers>) {
    let Some(heap) = heap.upgrade() else {
        return; // the loop is gone
    };
    let mut removed = Vec::new();
    {
        let mut timers = heap.borrow_mut(py);
        timers.note_cancelled();
        timers.compact_if_needed(|s| {
            s.0.get().mark_unscheduled();
            removed.push(s);
        });
    }
    drop(removed);
}
