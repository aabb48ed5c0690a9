//! When an iteration with callbacks ready may leave out its zero-timeout poll.
//!
//! asyncio polls in every iteration, with a zero timeout when callbacks are
//! ready. After a poll that blocked and woke on readiness, the next
//! iteration's poll mostly finds nothing: it runs the task steps the wake-up's
//! callbacks scheduled, which then write and wait again. ferroloop leaves out
//! that one poll, and only it:
//!
//! * at most one skip per wake-up from a poll that may have blocked, and not
//!   when that poll filled its event buffer (more fds may be ready);
//! * never in the first iteration of a `run_forever` / `run_until_complete`
//!   (nor ever in the iterations of runs that do not block, such as
//!   `test_utils.run_briefly` and `run_once`);
//! * never after a kernel registration changed since the last poll
//!   (`add_reader`, `remove_reader`, a transport's pause/resume, a one-shot
//!   re-arm): an fd registered already ready is seen as by the stock loop;
//! * never when stopping, and never on a virtual-time loop.
//!
//! See docs/design-notes.md ("Every iteration with fds watched polls").

/// The poll-skip state of one `run_forever`.
pub(crate) struct PollSkip {
    /// One skip is allowed: the last poll may have blocked and woke.
    armed: bool,
}

impl PollSkip {
    /// A new run: its first iteration polls.
    pub(crate) fn new() -> Self {
        PollSkip { armed: false }
    }

    /// For an iteration with callbacks ready and fds watched: whether its
    /// zero-timeout poll may be left out. Either way the allowance is used.
    #[inline]
    pub(crate) fn take(&mut self, registrations_changed: bool, stopping: bool) -> bool {
        let armed = std::mem::replace(&mut self.armed, false);
        armed && !registrations_changed && !stopping
    }

    /// After a poll: one that may have blocked arms one skip, unless it
    /// filled its event buffer; a zero-timeout poll disarms.
    #[inline]
    pub(crate) fn note_poll(&mut self, blocking: bool, full: bool) {
        self.armed = blocking && !full;
    }
}
