//! The run loop: one iteration is asyncio's `BaseEventLoop._run_once`.
//!
//! 1. drop cancelled timers (compacting the heap when most are cancelled);
//! 2. poll: timeout 0 when callbacks are ready, else until the next timer;
//!    the GIL is released only for a poll that may block;
//! 3. fd readiness becomes ready callbacks (or socket operations' native
//!    waiters, which take their turn in the queue like callbacks);
//! 4. expired timers become ready callbacks, in (when, seq) order;
//! 5. run exactly the callbacks that were ready at this point.
//!
//! A poll with a zero timeout is skipped when no fd is watched: nothing could
//! be reported but the waker, and work posted by other threads is already in
//! the ready queue. With fds watched, every iteration polls, so I/O is never
//! starved by a stream of callbacks.
//!
//! On a virtual-time loop (`ferroloop.testing`), step 2 asks the virtual
//! clock instead: with nothing ready, the poll waits at most the real-time
//! grace (zero when nothing outside the loop is pending) and the clock then
//! jumps to the next timer; with nothing pending at all, the loop reports
//! a deadlock instead of sleeping forever.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use ferroloop_engine::{clock, timeout_to_ms, Events, Plan};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::debug;
use crate::fd_watchers::{self, Side};
use crate::handles::Handle;
use crate::iteration;
use crate::loop_core::{retrack_released, LoopCore, MAXIMUM_SELECT_TIMEOUT, WAKER_TOKEN};
use crate::pyhelpers::{format_callback_source, is_exit, lock};
use crate::state::{LoopState, Runnable};
use crate::virtual_time;

/// Runs iterations until `stop()` was called.
pub(crate) fn run_until_stopped(slf: &Bound<'_, LoopCore>) -> PyResult<()> {
    let core = slf.get();
    let mut events = Events::with_capacity(256);
    let mut garbage: Vec<Runnable> = Vec::with_capacity(64);
    let mut batch: VecDeque<Runnable> = VecDeque::with_capacity(64);
    let result = loop {
        if let Err(e) = run_once(slf, core, &mut events, &mut garbage, &mut batch) {
            break Err(e);
        }
        if core.stopping.load(Ordering::Relaxed) {
            break Ok(());
        }
    };
    core.stopping.store(false, Ordering::Relaxed);
    // Spawn requests made in the last iteration start without the loop.
    let spawn = core.state(slf.py()).spawn.clone();
    if let Some(spawn) = spawn.filter(|s| s.has_unsignalled()) {
        spawn.tell();
    }
    result
}

fn run_once(
    slf: &Bound<'_, LoopCore>,
    core: &LoopCore,
    events: &mut Events,
    garbage: &mut Vec<Runnable>,
    batch: &mut VecDeque<Runnable>,
) -> PyResult<()> {
    let py = slf.py();

    // 1 + 2a: housekeeping, the poll timeout, and whether to poll at all.
    // On a virtual-time loop: the deadline to jump to if the poll reports
    // nothing, or that nothing can ever happen.
    let mut jump_to: Option<f64> = None;
    let mut deadlock = false;
    let (timeout_ms, poller, spawn) = {
        let st = core.state(py);
        let mut timers = st.timers.borrow_mut(py);
        if !timers.is_empty() {
            timers.remove_cancelled(|t| {
                t.0.get().mark_unscheduled();
                garbage.push(Runnable::Handle(t.0));
            });
        }
        let timeout = if !st.ready.is_empty() || core.stopping.load(Ordering::Relaxed) {
            Some(0.0)
        } else if let Some(vc) = core.vclock.get() {
            // Virtual time: jump to the next timer rather than sleep.
            match vc.plan(timers.next_deadline(), st.has_fd_watchers()) {
                Plan::Wait(t) => t,
                Plan::Jump { target, wait } => {
                    jump_to = Some(target);
                    Some(wait)
                }
                Plan::Deadlock => {
                    deadlock = true;
                    None
                }
            }
        } else {
            timers
                .next_deadline()
                .map(|when| (when - clock::monotonic()).clamp(0.0, MAXIMUM_SELECT_TIMEOUT))
        };
        let timeout_ms = timeout_to_ms(timeout);
        let Some(poller) = st.poller.as_ref() else {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "Event loop is closed",
            ));
        };
        // A zero-timeout poll with no fd watched could only report the waker.
        let poller = (timeout_ms != 0 || st.has_fd_watchers()).then(|| poller.clone());
        // Requests for the spawner thread, told at this poll (see
        // spawn_channel): one load per iteration when none waits.
        let spawn = st.spawn.as_ref().filter(|s| s.has_unsignalled()).cloned();
        (timeout_ms, poller, spawn)
    };
    clear(py, garbage);
    if deadlock {
        virtual_time::report_deadlock(slf)?;
    }

    // 2b: poll (the GIL is released only for a poll that may block).
    let blocking = poller.is_some() && timeout_ms != 0;
    if let Some(spawn) = spawn.as_ref().filter(|_| !blocking) {
        spawn.before_poll(false);
    }
    let polled = match &poller {
        None => {
            events.clear();
            Ok(0)
        }
        Some(poller) if timeout_ms == 0 => poller.wait(events, 0),
        Some(poller) => {
            let polled = py.detach(|| {
                if let Some(spawn) = &spawn {
                    // The spawner finds the GIL free.
                    spawn.before_poll(true);
                }
                poller.wait(events, timeout_ms)
            });
            if matches!(polled, Ok(0)) {
                // Waited the whole timeout with nothing to do: quiet.
                crate::handle_alloc::trim(py);
            }
            polled
        }
    };
    let polled_ok = match polled {
        Ok(_) => true,
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
            // A signal arrived: run Python's handlers now (Ctrl-C raises
            // KeyboardInterrupt here), then go on with this iteration.
            py.check_signals()?;
            false
        }
        Err(e) => return Err(e.into()),
    };

    // 3: readiness to callbacks.
    let mut signalled = false;
    if polled_ok && !events.is_empty() {
        let mut st = core.state(py);
        for ev in events.iter() {
            if ev.token == WAKER_TOKEN {
                if let Some(waker) = &st.waker {
                    waker.drain();
                }
                // Maybe a signal's byte (see ferroloop_engine::waker).
                signalled = true;
                continue;
            }
            let fd = ev.token as i32;
            let oneshot = fd_watchers::note_reported(&mut st, fd);
            if ev.readable {
                queue_watcher(&mut st, py, fd, Side::Read, garbage);
            }
            if ev.writable {
                queue_watcher(&mut st, py, fd, Side::Write, garbage);
            }
            // The report disarmed the whole one-shot registration: re-arm it
            // for a waiter on the side that was not reported (a reader and a
            // writer waiting on one socket).
            if oneshot
                && ((!ev.readable && st.readers.contains_key(&fd))
                    || (!ev.writable && st.writers.contains_key(&fd)))
            {
                let _ = fd_watchers::sync(&mut st, fd);
            }
        }
    }
    clear(py, garbage);
    core.drop_orphans(py);
    if signalled {
        // If a signal woke the poll, run Python's handlers now, as after
        // EINTR (a cheap flag check when none is pending).
        py.check_signals()?;
    }

    // 4: expired timers; 5a: take the batch to run.
    {
        let mut st = core.state(py);
        let st = &mut *st;
        let mut timers = st.timers.borrow_mut(py);
        if let Some(target) = jump_to {
            // Nothing arrived within the grace: the clock moves on.
            if polled_ok && events.is_empty() && st.ready.is_empty() {
                if let Some(vc) = core.vclock.get() {
                    vc.jump_to(target);
                }
            }
        }
        let end_time = if timers.is_empty() {
            f64::NEG_INFINITY
        } else {
            core.now() + core.clock_resolution
        };
        let ready = &mut st.ready;
        if !timers.is_empty() {
            timers.pop_due(
                end_time,
                |t| {
                    t.0.get().mark_unscheduled();
                    ready.push(Runnable::Handle(t.0));
                },
                |t| {
                    t.0.get().mark_unscheduled();
                    garbage.push(Runnable::Handle(t.0));
                },
            );
        }
        // 5: run what is ready now; what these callbacks schedule waits for
        // the next iteration. The batch is moved out in one step.
        st.ready.take_batch(batch);
    }
    clear(py, garbage);

    let debug = core.is_debug();
    iteration::start_batch();
    // The thread-local flag is written only when it changes (it is false
    // between batches): a thread-local access per callback is a call to the
    // TLS resolver in a shared library.
    let mut last_flag = false;
    while let Some(mut item) = batch.pop_front() {
        let last = batch.is_empty();
        if last != last_flag {
            iteration::set_last_of_batch(last);
            last_flag = last;
        }
        if debug {
            if let Runnable::Call(call) = &item {
                // Debug reports name the handle: run it as one.
                // (Should that allocation fail, it runs untimed.)
                if let Ok(handle) = call.to_handle(py, true) {
                    let handle = Runnable::Handle(handle.unbind());
                    release(py, std::mem::replace(&mut item, handle));
                }
            }
        }
        let result = match &item {
            Runnable::Handle(handle) => {
                let h = handle.get();
                if h.is_cancelled() {
                    release(py, item);
                    continue;
                }
                if debug {
                    run_timed(py, core, handle)
                } else {
                    h.run(py)
                }
            }
            Runnable::Sock(waiter) => waiter.fire(py, core),
            Runnable::Call(call) => call.run(py),
        };
        if let Err(err) = result {
            if let Err(fatal) = report_callback_error(slf, &item, err) {
                iteration::set_last_of_batch(false);
                core.state(py).ready.requeue_front(batch);
                release(py, item);
                return Err(fatal);
            }
        }
        release(py, item);
    }
    iteration::set_last_of_batch(false);
    Ok(())
}

/// Empties `garbage` (cancelled handles), usually already empty.
#[inline(always)]
fn clear(py: Python<'_>, garbage: &mut Vec<Runnable>) {
    if !garbage.is_empty() {
        for item in garbage.drain(..) {
            release(py, item);
        }
    }
}

/// Drops a run item. A handle goes through `Bound`, which releases it at
/// once: dropping a `Py` first asks PyO3's thread-local whether the thread
/// is attached, on every callback.
///
/// A one-shot handle is out of the collector's view while queued (see
/// `loop_core::untrack_one_shot`); one that someone else still holds (the
/// caller of `call_later` keeps it, an exception handler kept its context)
/// outlives the loop's hold and goes back under the collector here. It may
/// still lead back to its holder: through its callback, which it keeps after
/// an error and in debug mode, or through its context, which the callback
/// may have stored values in. Untracked, such a cycle leaked for good (found
/// by the differential fuzzer: raising callbacks kept in a dict of handles).
#[inline(always)]
fn release(py: Python<'_>, item: Runnable) {
    match item {
        Runnable::Handle(handle) => {
            let handle = handle.into_bound(py);
            // SAFETY: `handle` is a live object we hold; this reads its count.
            if unsafe { pyo3::ffi::Py_REFCNT(handle.as_ptr()) } > 1 {
                retrack_released(handle.as_unbound());
                drop(handle);
            } else {
                // Ours alone: maybe kept for the next `call_soon`.
                crate::handle_alloc::release(py, handle);
            }
        }
        Runnable::Sock(waiter) => drop(waiter),
        Runnable::Call(call) => call.release(py),
    }
}

/// Queues the watcher of `fd`'s `side` to run, or drops it if cancelled.
#[inline]
fn queue_watcher(
    st: &mut LoopState,
    py: Python<'_>,
    fd: i32,
    side: Side,
    garbage: &mut Vec<Runnable>,
) {
    let map = match side {
        Side::Read => &st.readers,
        Side::Write => &st.writers,
    };
    let Some(watcher) = map.get(&fd) else {
        return;
    };
    if watcher.is_cancelled() {
        if let Ok(Some(old)) = fd_watchers::remove(st, fd, side) {
            garbage.push(old);
        }
    } else {
        let watcher = watcher.clone_ref(py);
        st.ready.push(watcher);
    }
}

/// Debug mode: run one handle, warn when it took `slow_callback_duration`.
fn run_timed(py: Python<'_>, core: &LoopCore, handle: &Py<Handle>) -> PyResult<()> {
    *lock(&core.current_handle) = Some(handle.clone_ref(py));
    let t0 = clock::monotonic();
    let result = handle.get().run(py);
    let dt = clock::monotonic() - t0;
    let previous = lock(&core.current_handle).take();
    drop(previous);
    if dt >= core.slow_callback_duration() {
        let virtual_now = core.vclock.get().map(|vc| vc.now());
        debug::warn_slow_callback(py, handle.bind(py), dt, virtual_now)?;
    }
    result
}

/// asyncio's `Handle._run` error path: SystemExit and KeyboardInterrupt
/// propagate out of the loop; everything else goes to the loop's exception
/// handler and the loop goes on.
fn report_callback_error(slf: &Bound<'_, LoopCore>, item: &Runnable, err: PyErr) -> PyResult<()> {
    let py = slf.py();
    if is_exit(py, &err) {
        return Err(err);
    }
    let made;
    let handle = match item {
        Runnable::Handle(handle) => handle,
        Runnable::Call(call) => {
            // The exception handler's context names the handle: made now.
            made = call.to_handle(py, false)?.unbind();
            &made
        }
        Runnable::Sock(waiter) => {
            let context = PyDict::new(py);
            let message = format!("Exception in callback {}", waiter.describe());
            context.set_item("message", message)?;
            context.set_item("exception", err.into_value(py))?;
            slf.call_method1("call_exception_handler", (context,))?;
            return Ok(());
        }
    };
    let h = handle.get();
    // A handle cancelled while it ran has no callback left: asyncio then
    // formats `None()`.
    let source = match h.callback_parts(py)? {
        Some((func, args)) => format_callback_source(py, func.bind(py), args.bind(py))?,
        None => format_callback_source(
            py,
            &py.None().into_bound(py),
            &pyo3::types::PyTuple::empty(py),
        )?,
    };
    let context = PyDict::new(py);
    context.set_item("message", format!("Exception in callback {source}"))?;
    // into_value keeps the traceback on the exception (value() would not on 3.11).
    context.set_item("exception", err.into_value(py))?;
    context.set_item("handle", handle.bind(py))?;
    if let Some(tb) = h.source_traceback() {
        if tb.bind(py).is_truthy()? {
            context.set_item("source_traceback", tb.bind(py))?;
        }
    }
    slf.call_method1("call_exception_handler", (context,))?;
    Ok(())
}
