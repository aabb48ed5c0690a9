//! Reading on after a datagram, without a poll in between.
//!
//! asyncio's `_read_ready` delivers one datagram per readiness report; the
//! next one waits for the next loop iteration, which costs a poll (a system
//! call) per datagram under load. The transport delivers the next datagram
//! queued in the kernel at once only when the stock loop would run nothing
//! else before it: this callback is the last of its iteration's batch, the
//! protocol scheduled nothing (the ready queue is empty), the loop is not
//! stopping, not in debug mode (whose slow-callback report times each
//! callback), and the transport still reads with the same reader (not
//! paused, closing, or replaced by `add_reader` / removed). The stock loop
//! would then poll, find this fd readable and call `_read_ready` again;
//! other fds or timers that became due meanwhile would run after it in the
//! same way (I/O callbacks come first in an iteration, and the order of fds
//! reported together is the kernel's). At most `MAX_PER_WAKEUP` datagrams
//! go out per report, so timers and other fds wait boundedly.
//!
//! A read that finds nothing is a wasted system call: after one, the next
//! few reports deliver one datagram each without trying further.

use std::sync::atomic::Ordering;

use pyo3::prelude::*;

use super::DatagramTransport;
use crate::handles::Handle;
use crate::iteration;
use crate::state::Runnable;

/// The most datagrams one readiness report delivers.
const MAX_PER_WAKEUP: u32 = 16;

/// Reports that deliver one datagram only, after a read found nothing.
const SKIP_AFTER_MISS: u8 = 8;

/// Whether reading on is worth a try.
#[derive(Default)]
pub(super) struct Hint {
    skip: u8,
}

impl DatagramTransport {
    /// The reader handle registered for the fd, when reading on may apply
    /// at all: taken as the call starts, it is the one running.
    pub(super) fn drain_reader(&self, py: Python<'_>) -> Option<Py<Handle>> {
        let core = self.core_ref();
        if self.native_family.is_none() || core.is_debug() || self.st(py).drain.skip > 0 {
            return None;
        }
        match core.state(py).readers.get(&self.fd) {
            Some(Runnable::Handle(h)) => Some(h.clone_ref(py)),
            _ => None,
        }
    }

    /// After `delivered` datagrams in this call: whether the next one queued
    /// may be delivered now (see the module comment).
    pub(super) fn may_read_more(
        &self,
        py: Python<'_>,
        delivered: u32,
        reader: Option<&Py<Handle>>,
    ) -> bool {
        let Some(reader) = reader else {
            return false;
        };
        if delivered >= MAX_PER_WAKEUP {
            return false;
        }
        let core = self.core_ref();
        if !iteration::is_last_of_batch()
            || core.stopping.load(Ordering::Relaxed)
            || core.is_debug()
        {
            return false;
        }
        let st = self.st(py);
        if st.conn_lost > 0 || st.closing || st.paused || st.drain.skip > 0 {
            return false;
        }
        drop(st);
        let loop_state = core.state(py);
        loop_state.ready.is_empty()
            && matches!(
                loop_state.readers.get(&self.fd),
                Some(Runnable::Handle(h)) if h.is(reader) && !h.get().is_cancelled()
            )
    }

    /// Updates the hint after a readiness report: `wasted` when a read after
    /// the first datagram found nothing.
    pub(super) fn drain_done(&self, py: Python<'_>, delivered: u32, wasted: bool) {
        let mut st = self.st(py);
        if wasted {
            st.drain.skip = SKIP_AFTER_MISS;
        } else if delivered > 1 {
            st.drain.skip = 0;
        } else if delivered == 1 {
            st.drain.skip = st.drain.skip.saturating_sub(1);
        }
    }
}
