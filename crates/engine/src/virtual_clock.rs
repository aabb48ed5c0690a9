//! A virtual loop clock for tests: `loop.time()` that moves only when the
//! loop has nothing else to do.
//!
//! The run loop asks [`VirtualClock::plan`] what to do when no callback is
//! ready. With a timer pending and the clock allowed to reach it (auto mode,
//! or manual mode within an `advance`), the answer is a jump: poll for at
//! most the real-time grace, and if nothing arrived, set the clock to the
//! timer's deadline. The grace is paid only when something outside the loop
//! could still produce an event (a watched fd, executor jobs, threads the
//! loop was told about): pure-timer code jumps with a zero-timeout poll.
//! With nothing pending at all, nothing can ever make progress: a deadlock.
//!
//! The state is atomics so the loop core stays `Sync`; it is only written
//! with the GIL held, so relaxed ordering is enough.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// An `f64` in an atomic cell.
struct AtomicF64(AtomicU64);

impl AtomicF64 {
    fn new(v: f64) -> Self {
        AtomicF64(AtomicU64::new(v.to_bits()))
    }
    #[inline]
    fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
    #[inline]
    fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed)
    }
}

/// What the run loop does in an iteration where nothing is ready.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Plan {
    /// Poll with this timeout in seconds (`None`: until an event), no jump.
    Wait(Option<f64>),
    /// Poll for up to `wait` real seconds; if nothing arrived, move the
    /// clock to `target` (the next timer's deadline).
    Jump { target: f64, wait: f64 },
    /// Nothing is ready, no timer can come due and no event can arrive.
    Deadlock,
}

pub struct VirtualClock {
    now: AtomicF64,
    /// The clock may jump to timers up to here: +inf in auto mode; in
    /// manual mode the current time, or the target of an `advance`.
    limit: AtomicF64,
    /// Real seconds to wait for outside events before a jump.
    grace: AtomicF64,
    /// Outside work that may still post an event (executor jobs, child
    /// watchers' threads, work the test declared).
    external: AtomicUsize,
    detect_deadlock: AtomicBool,
    jumps: AtomicU64,
}

impl VirtualClock {
    /// A clock reading `start`; `manual`: it stands still until advanced.
    pub fn new(start: f64, grace: f64, manual: bool, detect_deadlock: bool) -> Self {
        VirtualClock {
            now: AtomicF64::new(start),
            limit: AtomicF64::new(if manual { start } else { f64::INFINITY }),
            grace: AtomicF64::new(grace.max(0.0)),
            external: AtomicUsize::new(0),
            detect_deadlock: AtomicBool::new(detect_deadlock),
            jumps: AtomicU64::new(0),
        }
    }

    #[inline]
    pub fn now(&self) -> f64 {
        self.now.get()
    }

    pub fn limit(&self) -> f64 {
        self.limit.get()
    }

    /// Lets the clock jump up to `limit` (+inf: auto mode). Never below
    /// the current time: the clock does not go back.
    pub fn set_limit(&self, limit: f64) {
        self.limit.set(limit.max(self.now()));
    }

    pub fn grace(&self) -> f64 {
        self.grace.get()
    }

    pub fn set_grace(&self, grace: f64) {
        self.grace.set(grace.max(0.0));
    }

    pub fn detect_deadlock(&self) -> bool {
        self.detect_deadlock.load(Ordering::Relaxed)
    }

    pub fn set_detect_deadlock(&self, on: bool) {
        self.detect_deadlock.store(on, Ordering::Relaxed)
    }

    /// Outside work started (`delta` > 0) or ended (< 0).
    pub fn add_external(&self, delta: isize) {
        if delta >= 0 {
            self.external.fetch_add(delta as usize, Ordering::Relaxed);
        } else {
            let n = delta.unsigned_abs();
            let _ = self
                .external
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                    Some(v.saturating_sub(n))
                });
        }
    }

    pub fn external(&self) -> usize {
        self.external.load(Ordering::Relaxed)
    }

    /// How many times the clock jumped.
    pub fn jumps(&self) -> u64 {
        self.jumps.load(Ordering::Relaxed)
    }

    /// Moves the clock forward to `target` (never back).
    pub fn jump_to(&self, target: f64) {
        if target > self.now() {
            self.now.set(target);
            self.jumps.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The decision for an iteration with no callback ready.
    /// `next_deadline`: the earliest live timer; `watched_fds`: whether
    /// any fd (the loop's own waker aside) is watched.
    pub fn plan(&self, next_deadline: Option<f64>, watched_fds: bool) -> Plan {
        let outside = watched_fds || self.external() > 0;
        match next_deadline {
            Some(when) if when <= self.now() => Plan::Wait(Some(0.0)),
            Some(when) if when <= self.limit() => Plan::Jump {
                target: when,
                wait: if outside { self.grace() } else { 0.0 },
            },
            _ if outside || !self.detect_deadlock() => Plan::Wait(None),
            _ => Plan::Deadlock,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_mode_jumps_to_the_next_timer_without_waiting() {
        let c = VirtualClock::new(0.0, 0.5, false, true);
        assert_eq!(
            c.plan(Some(3600.0), false),
            Plan::Jump {
                target: 3600.0,
                wait: 0.0
            }
        );
        c.jump_to(3600.0);
        assert_eq!(c.now(), 3600.0);
        assert_eq!(c.jumps(), 1);
    }

    #[test]
    fn outside_work_costs_the_grace() {
        let c = VirtualClock::new(0.0, 0.5, false, true);
        let jump = Plan::Jump {
            target: 1.0,
            wait: 0.5,
        };
        assert_eq!(c.plan(Some(1.0), true), jump);
        c.add_external(1);
        assert_eq!(c.plan(Some(1.0), false), jump);
        assert_eq!(c.plan(None, false), Plan::Wait(None));
        c.add_external(-1);
        assert_eq!(c.plan(None, false), Plan::Deadlock);
    }

    #[test]
    fn due_timer_means_no_jump() {
        let c = VirtualClock::new(10.0, 0.0, false, true);
        assert_eq!(c.plan(Some(9.0), false), Plan::Wait(Some(0.0)));
        c.jump_to(5.0);
        assert_eq!(c.now(), 10.0, "the clock never goes back");
    }

    #[test]
    fn manual_mode_stands_still_until_advanced() {
        let c = VirtualClock::new(0.0, 0.0, true, true);
        assert_eq!(c.plan(Some(1.0), false), Plan::Deadlock);
        assert_eq!(c.plan(Some(1.0), true), Plan::Wait(None));
        c.set_limit(2.0);
        assert_eq!(
            c.plan(Some(1.0), false),
            Plan::Jump {
                target: 1.0,
                wait: 0.0
            }
        );
        assert_eq!(c.plan(Some(3.0), false), Plan::Deadlock);
    }

    #[test]
    fn without_detection_an_idle_loop_waits() {
        let c = VirtualClock::new(0.0, 0.0, false, false);
        assert_eq!(c.plan(None, false), Plan::Wait(None));
    }
}
