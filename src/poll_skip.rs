//! When an iteration with callbacks ready may leave out its zero-timeout poll.
//!
//! asyncio polls in every iteration, with a zero timeout when callbacks are
//! ready. Under load that poll mostly finds nothing: a task woken by the
//! previous poll's readiness runs in the next iteration, which polls again
//! first. ferroloop leaves that poll out while the last poll is less than
//! [`SKIP_BOUND`] old, so readiness that arrives while callbacks keep the
//! loop busy is seen at most that much (plus the batch then running) later
//! than in the stock loop. A poll that may block (nothing ready) is never
//! left out, and the first iteration of every `run_forever` always polls, so
//! "make an fd ready, then run the loop briefly" sees its callback as with
//! the stock loop. See docs/design-notes.md ("Bounded poll skip").

use ferroloop_engine::clock;

/// How long after a poll a zero-timeout poll may be left out, in seconds.
///
/// A quarter of the 1 ms I/O latency that tests/test_io_fairness.py holds the
/// loop to under a storm of callbacks, so a readable fd waits at most this
/// plus the batch running when the bound expires; and long next to one
/// iteration (a few µs), so a busy loop polls at most ~4,000 times a second.
pub(crate) const SKIP_BOUND: f64 = 250e-6;

/// The time of the last poll of one `run_forever`.
pub(crate) struct PollSkip {
    /// Monotonic time of the last poll; -inf until this run has polled.
    last_poll: f64,
}

impl PollSkip {
    /// A new run: its first iteration polls whatever is ready.
    pub(crate) fn new() -> Self {
        PollSkip {
            last_poll: f64::NEG_INFINITY,
        }
    }

    /// For an iteration with callbacks ready and fds watched: `Some(now)` to
    /// skip its zero-timeout poll (the last poll is recent), `None` to poll,
    /// which this records as the last poll.
    #[inline]
    pub(crate) fn skip_zero_poll(&mut self) -> Option<f64> {
        let now = clock::monotonic();
        if now - self.last_poll < SKIP_BOUND {
            Some(now)
        } else {
            self.last_poll = now;
            None
        }
    }

    /// Records a poll that may have blocked, once it returned.
    #[inline]
    pub(crate) fn note_blocking_poll(&mut self) {
        self.last_poll = clock::monotonic();
    }
}
