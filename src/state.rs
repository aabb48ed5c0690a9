//! The loop's mutable state, behind one mutex.
//!
//! Every access happens with the GIL held and never calls into Python while
//! the lock is held, so the lock is never contended and never re-entered:
//! Python objects taken out of the state are dropped only after unlocking
//! (their destructors may run arbitrary code, including loop methods).

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::Arc;

use ferroloop_engine::{Poller, ReadyQueue, Timer, TimerHeap};
use pyo3::prelude::*;

use crate::handles::Handle;

/// A handle in the timer heap.
pub(crate) struct Scheduled(pub(crate) Py<Handle>);

impl Timer for Scheduled {
    #[inline]
    fn is_cancelled(&self) -> bool {
        self.0.get().is_cancelled()
    }
}

pub(crate) struct LoopState {
    /// asyncio's `_ready`.
    pub(crate) ready: ReadyQueue<Py<Handle>>,
    /// asyncio's `_scheduled`.
    pub(crate) timers: TimerHeap<Scheduled>,
    /// `add_reader` / `add_writer` registrations by fd.
    pub(crate) readers: HashMap<RawFd, Py<Handle>>,
    pub(crate) writers: HashMap<RawFd, Py<Handle>>,
    /// None once the loop is closed.
    pub(crate) poller: Option<Arc<Poller>>,
}

impl LoopState {
    pub(crate) fn new(poller: Arc<Poller>) -> Self {
        LoopState {
            ready: ReadyQueue::new(),
            timers: TimerHeap::new(),
            readers: HashMap::new(),
            writers: HashMap::new(),
            poller: Some(poller),
        }
    }

    pub(crate) fn has_fd_watchers(&self) -> bool {
        !self.readers.is_empty() || !self.writers.is_empty()
    }

    /// Calls `visit` on every queued and scheduled handle (GC traversal).
    pub(crate) fn visit_queued<E>(
        &self,
        mut visit: impl FnMut(&Py<Handle>) -> Result<(), E>,
    ) -> Result<(), E> {
        for h in self.ready.iter() {
            visit(h)?;
        }
        for s in self.timers.iter() {
            visit(&s.0)?;
        }
        Ok(())
    }

    /// Empties everything (loop close); the caller drops the result unlocked.
    pub(crate) fn take_all(&mut self) -> Vec<Py<Handle>> {
        let mut out = self.ready.drain_all();
        out.extend(self.timers.drain_all().into_iter().map(|s| s.0));
        out.extend(self.readers.drain().map(|(_, h)| h));
        out.extend(self.writers.drain().map(|(_, h)| h));
        out
    }
}
