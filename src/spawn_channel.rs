//! The request channel of a loop's spawner thread (`_spawner.py`).
//!
//! `subprocess.Popen` runs in a thread of the loop's, and both threads need
//! the GIL: every time one of them wants it while the other holds it, the
//! GIL changes hands through its condition variable (`futex` calls and a
//! context switch each way), and Popen releases the GIL several times per
//! child (pipe2, fork_exec, close, the exec-error pipe's read). With a
//! `queue` the spawner woke at each request, while the loop thread still
//! ran the callback that made it, and the result's `call_soon_threadsafe`
//! woke the loop while the spawner still held the GIL: ~8 `futex` calls per
//! child. This channel times both hand-offs for when the other thread does
//! not want the GIL:
//!
//! - requests: `put` only queues; the loop tells the spawner just before it
//!   blocks in its poll, with the GIL released (`run_loop`), so the spawner
//!   takes a free GIL. A loop too busy to block tells it at its second poll
//!   after the request, a loop that stops tells it then, and a request made
//!   while the loop is not running is told at once: no request waits for
//!   the loop to run again.
//! - results: `deliver` queues the loop callback without waking the loop;
//!   the spawner wakes it once its batch is done, in `wait`, after
//!   releasing the GIL.
//!
//! The spawner takes every queued request at once (one wake per burst).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, Once};
use std::time::{Duration, Instant};

use ferroloop_engine::Waker;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use crate::call_args::CallArgs;
use crate::loop_core::LoopCore;
use crate::pyhelpers::lock;

/// `Shared::unsignalled` values.
const NONE: u8 = 0;
/// Queued for a waiting spawner, no poll since.
const FRESH: u8 = 1;
/// Queued for a waiting spawner, one zero-timeout poll since.
const AGED: u8 = 2;

/// Counts the `fork()`s this process descends from (an at-fork hook bumps
/// it in the child): a channel made before a fork finds a different count
/// after it, and is left alone there, since its lock may have been held by
/// the parent's spawner thread, which does not exist in the child.
static FORKS: AtomicU64 = AtomicU64::new(0);

extern "C" fn after_fork_in_child() {
    FORKS.fetch_add(1, Ordering::Relaxed);
}

fn install_fork_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // SAFETY: registers a handler that only bumps an atomic (async-
        // signal-safe, as a fork child handler must be); the other two
        // handlers are absent. The return value only reports ENOMEM, after
        // which stale channels would merely not be recognised (as before
        // this check existed).
        unsafe {
            libc::pthread_atfork(None, None, Some(after_fork_in_child));
        }
    });
}

/// What the loop (through `LoopState::spawn`) and the spawner share.
pub(crate) struct Shared {
    /// `FORKS` when made.
    forks: u64,
    queue: Mutex<Queue>,
    cond: Condvar,
    /// A request waits for a spawner that was not told yet (read by the
    /// loop at each poll without the lock).
    unsignalled: AtomicU8,
    /// The loop has a delivery it was not woken for.
    wake_loop: AtomicBool,
    /// The loop's self-pipe: written by the spawner without the GIL. Held
    /// here, a loop closed meanwhile leaves a pipe nobody reads, never a
    /// closed fd number that something else may reuse.
    waker: Arc<Waker>,
}

struct Queue {
    jobs: Vec<Py<PyAny>>,
    /// The spawner is blocked in `wait`.
    waiting: bool,
    closed: bool,
}

impl Shared {
    /// Called by the loop before each poll when `unsignalled` is set;
    /// `blocking`: the poll may sleep (the GIL is released by then).
    pub(crate) fn before_poll(&self, blocking: bool) {
        let state = self.unsignalled.load(Ordering::Relaxed);
        if state == NONE {
            return;
        }
        if !blocking && state == FRESH {
            // Busy: give the loop one more iteration to go idle.
            self.unsignalled.store(AGED, Ordering::Relaxed);
            return;
        }
        self.tell();
    }

    /// Wakes the spawner if it waits for queued jobs.
    pub(crate) fn tell(&self) {
        if self.forks != FORKS.load(Ordering::Relaxed) {
            // The parent's channel (see FORKS): its requests are not ours.
            self.unsignalled.store(NONE, Ordering::Relaxed);
            return;
        }
        let queue = lock(&self.queue);
        self.unsignalled.store(NONE, Ordering::Relaxed);
        let tell = queue.waiting && !queue.jobs.is_empty();
        // Unlocked first: woken under the lock, the spawner would block on
        // it at once (two more futex calls).
        drop(queue);
        if tell {
            self.cond.notify_one();
        }
    }

    /// Whether the loop should call `before_poll` (one load).
    #[inline]
    pub(crate) fn has_unsignalled(&self) -> bool {
        self.unsignalled.load(Ordering::Relaxed) != NONE
    }
}

/// The spawner's end (and `put`, the loop's).
#[pyclass(frozen, module = "ferroloop._ferroloop")]
pub struct SpawnChannel {
    shared: Arc<Shared>,
}

#[pymethods]
impl SpawnChannel {
    /// Queues job (called on the loop thread); the spawner gets it at the
    /// loop's next blocking poll, or its second poll, or when the loop
    /// stops; at once with `now` (the loop is not running).
    fn put(&self, job: Py<PyAny>, now: bool) -> PyResult<()> {
        let mut queue = lock(&self.shared.queue);
        if queue.closed {
            // The loop was closed: no thread will run it.
            return Err(PyRuntimeError::new_err("Event loop is closed"));
        }
        queue.jobs.push(job);
        if queue.waiting {
            // An older untold request keeps its age: a busy loop that
            // queues one per iteration still tells the spawner.
            let _ = self.shared.unsignalled.compare_exchange(
                NONE,
                FRESH,
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        drop(queue);
        if now {
            self.shared.tell();
        }
        Ok(())
    }

    /// In the spawner: wakes the loop if a delivery is waiting, then blocks
    /// (without the GIL) until jobs are queued: all of them, as a list; []
    /// after `timeout` seconds without one; None once closed and empty.
    fn wait<'py>(&self, py: Python<'py>, timeout: f64) -> PyResult<Option<Bound<'py, PyList>>> {
        let shared = &self.shared;
        let timeout = Duration::try_from_secs_f64(timeout)
            .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
        let jobs: Option<Vec<Py<PyAny>>> = py.detach(|| {
            if shared.wake_loop.swap(false, Ordering::AcqRel) {
                shared.waker.wake();
            }
            let deadline = Instant::now() + timeout;
            let mut queue = lock(&shared.queue);
            loop {
                if !queue.jobs.is_empty() {
                    return Some(std::mem::take(&mut queue.jobs));
                }
                if queue.closed {
                    return None;
                }
                let now = Instant::now();
                if now >= deadline {
                    return Some(Vec::new());
                }
                queue.waiting = true;
                queue = match shared.cond.wait_timeout(queue, deadline - now) {
                    Ok((guard, _)) => guard,
                    Err(poisoned) => poisoned.into_inner().0,
                };
                queue.waiting = false;
            }
        });
        jobs.map(|jobs| PyList::new(py, jobs)).transpose()
    }

    /// Whether jobs are queued (the spawner's idle exit checks this under
    /// its own lock, which `put`'s caller holds too).
    fn pending(&self) -> bool {
        !lock(&self.shared.queue).jobs.is_empty()
    }

    /// No more jobs: `wait` returns the queued ones, then None.
    fn close(&self) {
        let mut queue = lock(&self.shared.queue);
        queue.closed = true;
        self.shared.cond.notify_all();
    }
}

/// A new channel for `core`'s spawner; replaces any earlier one (a spawner
/// remade after `os.fork()`).
#[pyfunction]
pub(crate) fn _spawn_channel(core: &Bound<'_, LoopCore>) -> PyResult<SpawnChannel> {
    let py = core.py();
    let mut st = core.get().state(py);
    let Some(waker) = st.waker.clone() else {
        return Err(PyRuntimeError::new_err("Event loop is closed"));
    };
    install_fork_hook();
    let shared = Arc::new(Shared {
        forks: FORKS.load(Ordering::Relaxed),
        queue: Mutex::new(Queue {
            jobs: Vec::new(),
            waiting: false,
            closed: false,
        }),
        cond: Condvar::new(),
        unsignalled: AtomicU8::new(NONE),
        wake_loop: AtomicBool::new(false),
        waker,
    });
    st.spawn = Some(shared.clone());
    Ok(SpawnChannel { shared })
}

/// `core.call_soon_threadsafe(callback, *args, context=context)` from the
/// spawner, except that the loop is woken only at the spawner's next
/// `wait`, with the GIL released (see the module comment).
#[pyfunction]
#[pyo3(signature = (core, callback, *args, context=None))]
pub(crate) fn _deliver_spawned<'py>(
    core: &Bound<'py, LoopCore>,
    callback: &Bound<'py, PyAny>,
    args: Bound<'py, PyTuple>,
    context: Option<Bound<'py, PyAny>>,
) -> PyResult<()> {
    let py = core.py();
    let c = core.get();
    c.call_soon_threadsafe_quiet(py, callback, CallArgs::from_tuple(args), context)?;
    match &c.state(py).spawn {
        Some(shared) => shared.wake_loop.store(true, Ordering::Release),
        // No channel (cannot happen from a spawner): wake now.
        None => c.wake(py),
    }
    Ok(())
}
