//! The loop's mutable state, behind one mutex.
//!
//! Every access happens with the GIL held and never calls into Python while
//! the lock is held, so the lock is never contended and never re-entered:
//! Python objects taken out of the state are dropped only after unlocking
//! (their destructors may run arbitrary code, including loop methods).

use std::collections::{HashMap, HashSet};
use std::os::fd::RawFd;
use std::sync::Arc;

use ferroloop_engine::{Poller, ReadyQueue, Registration, Waker};
use pyo3::prelude::*;
use pyo3::{PyTraverseError, PyVisit};

use crate::handles::Handle;
use crate::queued_call::QueuedCall;
use crate::sock_waiter::SockWaiter;
use crate::spawn_channel::Shared as SpawnShared;
use crate::timer_heap::{new_timers, Timers};

/// What the ready queue and the fd watcher maps hold: a Python callback, or
/// a socket operation's native waiter (which needs no Python object of its
/// own; see `sock_waiter.rs`), or a callback of asyncio's C Task / Future
/// (which never sees its handle; see `queued_call.rs`).
pub(crate) enum Runnable {
    Handle(Py<Handle>),
    Sock(Arc<SockWaiter>),
    Call(QueuedCall),
}

impl Runnable {
    #[inline]
    pub(crate) fn is_cancelled(&self) -> bool {
        match self {
            Runnable::Handle(h) => h.get().is_cancelled(),
            Runnable::Sock(_) | Runnable::Call(_) => false,
        }
    }

    #[inline]
    pub(crate) fn clone_ref(&self, py: Python<'_>) -> Runnable {
        match self {
            Runnable::Handle(h) => Runnable::Handle(h.clone_ref(py)),
            Runnable::Sock(w) => Runnable::Sock(w.clone()),
            Runnable::Call(c) => Runnable::Call(c.clone_ref(py)),
        }
    }

    /// GC traversal of what this holds. A waiter is shared (`Arc`) by the
    /// fd map and the ready queue, but holds one reference to each Python
    /// object: `seen` makes sure each waiter is visited once, or the
    /// collector would count its references twice.
    fn traverse(
        &self,
        visit: &PyVisit<'_>,
        seen: &mut HashSet<*const SockWaiter>,
    ) -> Result<(), PyTraverseError> {
        match self {
            Runnable::Handle(h) => visit.call(h),
            Runnable::Sock(w) if seen.insert(Arc::as_ptr(w)) => w.traverse(visit),
            Runnable::Sock(_) => Ok(()),
            Runnable::Call(c) => c.traverse(visit),
        }
    }
}

/// Things to drop with the state unborrowed.
#[must_use]
pub(crate) struct Orphans {
    _watchers: Vec<Runnable>,
    _objs: Vec<Py<PyAny>>,
}

pub(crate) struct LoopState {
    /// asyncio's `_ready`.
    pub(crate) ready: ReadyQueue<Runnable>,
    /// asyncio's `_scheduled`; the only strong reference (handles keep weak
    /// ones, see `timer_heap`). Borrowed on its own, inside or outside a
    /// borrow of this state, never across a Python call.
    pub(crate) timers: Arc<Timers>,
    /// `add_reader` / `add_writer` registrations (and socket operations'
    /// waiters) by fd: one per fd and side, as in asyncio.
    pub(crate) readers: HashMap<RawFd, Runnable>,
    pub(crate) writers: HashMap<RawFd, Runnable>,
    /// The poller's registration of each fd, as far as the loop knows: kept
    /// by `fd_watchers::sync`. A one-shot that fired has no interest left
    /// (the kernel disarmed it) and may outlive the fd's watchers.
    pub(crate) registered: HashMap<RawFd, Registration>,
    /// The file object each fd was registered with, when not an int (see
    /// `fd_watchers::add`): kept while the fd has a watcher.
    pub(crate) fileobjs: HashMap<RawFd, Py<PyAny>>,
    /// What the fd watcher maps let go of while the state was borrowed,
    /// waiting to be dropped unborrowed (`take_orphans`): dropping a Python
    /// object may run arbitrary code.
    pub(crate) orphans: Vec<Runnable>,
    pub(crate) orphan_objs: Vec<Py<PyAny>>,
    /// None once the loop is closed.
    pub(crate) poller: Option<Arc<Poller>>,
    /// The self-pipe (cross-thread wakes and signals); closed with the loop.
    pub(crate) waker: Option<Arc<Waker>>,
    /// The spawner thread's channel, once a child was started: told before
    /// each poll that requests wait (see `spawn_channel`).
    pub(crate) spawn: Option<Arc<SpawnShared>>,
}

impl LoopState {
    pub(crate) fn new(py: Python<'_>, poller: Arc<Poller>, waker: Waker) -> Self {
        LoopState {
            ready: ReadyQueue::new(),
            timers: new_timers(py),
            readers: HashMap::new(),
            writers: HashMap::new(),
            registered: HashMap::new(),
            fileobjs: HashMap::new(),
            orphans: Vec::new(),
            orphan_objs: Vec::new(),
            poller: Some(poller),
            waker: Some(Arc::new(waker)),
            spawn: None,
        }
    }

    pub(crate) fn has_fd_watchers(&self) -> bool {
        !self.readers.is_empty() || !self.writers.is_empty()
    }

    /// GC traversal of every watcher, queued callback and scheduled handle.
    pub(crate) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        let mut seen = HashSet::new();
        for r in self.readers.values().chain(self.writers.values()) {
            r.traverse(visit, &mut seen)?;
        }
        for r in self.ready.iter().chain(self.orphans.iter()) {
            r.traverse(visit, &mut seen)?;
        }
        for o in self.fileobjs.values().chain(self.orphan_objs.iter()) {
            visit.call(o)?;
        }
        if let Some(timers) = self.timers.peek_for_gc() {
            for s in timers.iter() {
                visit.call(&s.0)?;
            }
        }
        Ok(())
    }

    /// Empties everything (loop close); the caller drops the result unlocked.
    /// Handles that never ran go back under the garbage collector's eye
    /// (see `retrack_released`).
    pub(crate) fn take_all(&mut self, py: Python<'_>) -> Vec<Runnable> {
        let mut out = self.ready.drain_all();
        out.extend(
            self.timers
                .borrow_mut(py)
                .drain_all()
                .into_iter()
                .map(|s| Runnable::Handle(s.0)),
        );
        for r in &out {
            if let Runnable::Handle(h) = r {
                // Still `_scheduled`, as asyncio leaves them, but out of the heap.
                h.get().forget_heap();
                crate::loop_core::retrack_released(h);
            }
        }
        out.extend(self.readers.drain().map(|(_, r)| r));
        out.extend(self.writers.drain().map(|(_, r)| r));
        out.append(&mut self.orphans);
        self.registered.clear();
        out
    }

    /// What was let go of while borrowed (see `orphans`), and, when
    /// `all`, every registration's file object too (loop close); the
    /// caller drops the result unborrowed.
    pub(crate) fn take_orphans(&mut self, all: bool) -> Orphans {
        let mut objs = std::mem::take(&mut self.orphan_objs);
        if all {
            objs.extend(self.fileobjs.drain().map(|(_, o)| o));
        }
        Orphans {
            _watchers: std::mem::take(&mut self.orphans),
            _objs: objs,
        }
    }
}
