//! The timer heap (asyncio's `_scheduled`): callbacks due at a loop time.
//!
//! Entries are ordered by `(when, seq)`: equal deadlines fire in the order
//! they were scheduled. Cancellation is lazy, as in asyncio: a cancelled
//! timer stays in the heap until it reaches the top or until cancelled
//! entries are the majority, when the heap is rebuilt without them
//! ([`TimerHeap::compact_if_needed`]) so a program that schedules and cancels
//! millions of timers does not keep them alive.
//!
//! The owner reports each cancellation of a scheduled timer
//! ([`TimerHeap::note_cancelled`]) and may compact right then, not only when
//! the loop next iterates: a million `call_later(...).cancel()` made before
//! the loop runs then hold about a hundred entries, not a million. Each
//! compaction costs O(len) and is preceded by at least len/2 cancellations
//! since the previous one, so it is amortised O(1) per cancel.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Below this many scheduled timers the heap is never compacted
/// (asyncio's `_MIN_SCHEDULED_TIMER_HANDLES`).
pub const MIN_TIMERS_TO_COMPACT: usize = 100;
/// Compact when more than this fraction of the heap is cancelled
/// (asyncio's `_MIN_CANCELLED_TIMER_HANDLES_FRACTION`).
pub const CANCELLED_FRACTION_TO_COMPACT: f64 = 0.5;

/// Something stored in the heap that may have been cancelled since.
pub trait Timer {
    fn is_cancelled(&self) -> bool;
}

struct Entry<T> {
    when: f64,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    // Reversed so that std's max-heap pops the earliest (when, seq) first.
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .when
            .total_cmp(&self.when)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

/// Min-heap of timers by `(when, seq)`.
pub struct TimerHeap<T> {
    heap: BinaryHeap<Entry<T>>,
    next_seq: u64,
    /// Entries cancelled while in the heap (asyncio's `_timer_cancelled_count`).
    cancelled: usize,
}

impl<T: Timer> Default for TimerHeap<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Timer> TimerHeap<T> {
    pub fn new() -> Self {
        TimerHeap {
            heap: BinaryHeap::new(),
            next_seq: 0,
            cancelled: 0,
        }
    }

    /// Records that an entry still in the heap was cancelled; its owner calls
    /// this once per such cancellation.
    pub fn note_cancelled(&mut self) {
        self.cancelled += 1;
    }

    /// Cancelled entries still in the heap, as far as reported.
    pub fn cancelled_count(&self) -> usize {
        self.cancelled
    }

    /// Rebuilds the heap without its cancelled entries when they are more
    /// than [`CANCELLED_FRACTION_TO_COMPACT`] of a heap larger than
    /// [`MIN_TIMERS_TO_COMPACT`] (asyncio's rule). Removed items go to
    /// `dropped`. Returns whether it compacted.
    pub fn compact_if_needed(&mut self, mut dropped: impl FnMut(T)) -> bool {
        let count = self.heap.len();
        if count <= MIN_TIMERS_TO_COMPACT
            || self.cancelled as f64 / count as f64 <= CANCELLED_FRACTION_TO_COMPACT
        {
            return false;
        }
        let entries = std::mem::take(&mut self.heap).into_vec();
        // A new, right-sized vector: the old one (as large as the heap ever
        // was) is freed with the cancelled entries.
        let mut live = Vec::with_capacity(count - self.cancelled.min(count));
        for e in entries {
            if e.item.is_cancelled() {
                dropped(e.item);
            } else {
                live.push(e);
            }
        }
        self.heap = BinaryHeap::from(live);
        self.cancelled = 0;
        true
    }

    /// Schedules `item` at `when`. A NaN deadline is due at once: asyncio's
    /// `when >= end_time` test is false for NaN, so the stock loop fires such
    /// a timer as soon as it reaches the top of its heap. Kept as NaN, it
    /// would sort after every number (or, with the sign bit set, before
    /// every number and block all later timers), never be due and make every
    /// poll timeout 0: a busy loop. So it is queued as `-inf`, in scheduling
    /// order among the other timers due at `-inf`.
    pub fn push(&mut self, when: f64, item: T) {
        let when = if when.is_nan() {
            f64::NEG_INFINITY
        } else {
            when
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Entry { when, seq, item });
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Deadline of the earliest timer, cancelled or not.
    pub fn next_deadline(&self) -> Option<f64> {
        self.heap.peek().map(|e| e.when)
    }

    /// Housekeeping before computing the poll timeout, as asyncio does at the
    /// start of an iteration: rebuild the heap without cancelled timers when
    /// they are the majority, else pop the cancelled ones off the top.
    /// Removed items are handed to `dropped` (so Python objects can be
    /// released outside any lock).
    pub fn remove_cancelled(&mut self, mut dropped: impl FnMut(T)) {
        if self.compact_if_needed(&mut dropped) {
            return;
        }
        while self.heap.peek().is_some_and(|e| e.item.is_cancelled()) {
            if let Some(e) = self.heap.pop() {
                self.cancelled = self.cancelled.saturating_sub(1);
                dropped(e.item);
            }
        }
    }

    /// Pops every timer due before `end_time` (asyncio: `when < now +
    /// clock_resolution`) in `(when, seq)` order. Cancelled ones go to
    /// `dropped`; live ones to `due`.
    pub fn pop_due(&mut self, end_time: f64, mut due: impl FnMut(T), mut dropped: impl FnMut(T)) {
        while self.heap.peek().is_some_and(|e| e.when < end_time) {
            let Some(e) = self.heap.pop() else { break };
            if e.item.is_cancelled() {
                self.cancelled = self.cancelled.saturating_sub(1);
                dropped(e.item);
            } else {
                due(e.item);
            }
        }
    }

    /// Every scheduled item, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.heap.iter().map(|e| &e.item)
    }

    /// Empties the heap (loop close), handing every item back.
    pub fn drain_all(&mut self) -> Vec<T> {
        self.cancelled = 0;
        std::mem::take(&mut self.heap)
            .into_vec()
            .into_iter()
            .map(|e| e.item)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    #[derive(Debug, Clone)]
    struct T {
        id: u32,
        cancelled: Rc<Cell<bool>>,
    }
    impl Timer for T {
        fn is_cancelled(&self) -> bool {
            self.cancelled.get()
        }
    }
    fn t(id: u32) -> T {
        T {
            id,
            cancelled: Rc::new(Cell::new(false)),
        }
    }

    fn due_ids(h: &mut TimerHeap<T>, end: f64) -> Vec<u32> {
        let mut out = vec![];
        h.pop_due(end, |x| out.push(x.id), |_| {});
        out
    }

    #[test]
    fn pops_in_deadline_order() {
        let mut h = TimerHeap::new();
        h.push(3.0, t(3));
        h.push(1.0, t(1));
        h.push(2.0, t(2));
        assert_eq!(h.next_deadline(), Some(1.0));
        assert_eq!(due_ids(&mut h, 10.0), vec![1, 2, 3]);
    }

    #[test]
    fn equal_deadlines_fire_in_scheduling_order() {
        let mut h = TimerHeap::new();
        for id in 0..1000 {
            h.push(5.0, t(id));
        }
        assert_eq!(due_ids(&mut h, 6.0), (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn only_timers_before_end_time_are_due() {
        let mut h = TimerHeap::new();
        h.push(1.0, t(1));
        h.push(2.0, t(2));
        assert_eq!(due_ids(&mut h, 2.0), vec![1]);
        assert_eq!(h.len(), 1);
    }

    #[test]
    fn cancelled_timers_never_fire() {
        let mut h = TimerHeap::new();
        let a = t(1);
        h.push(1.0, a.clone());
        h.push(2.0, t(2));
        a.cancelled.set(true);
        h.note_cancelled();
        let mut dropped = vec![];
        let mut due = vec![];
        h.pop_due(10.0, |x| due.push(x.id), |x| dropped.push(x.id));
        assert_eq!(due, vec![2]);
        assert_eq!(dropped, vec![1]);
        assert_eq!(h.cancelled_count(), 0);
    }

    #[test]
    fn cancelled_head_is_removed_before_timeout_computation() {
        let mut h = TimerHeap::new();
        let a = t(1);
        h.push(1.0, a.clone());
        h.push(2.0, t(2));
        a.cancelled.set(true);
        h.note_cancelled();
        h.remove_cancelled(|_| {});
        assert_eq!(h.next_deadline(), Some(2.0));
    }

    #[test]
    fn heap_is_compacted_when_most_timers_are_cancelled() {
        let mut h = TimerHeap::new();
        let mut all = vec![];
        for id in 0..1000 {
            let x = t(id);
            all.push(x.clone());
            h.push(id as f64, x);
        }
        // Cancel the later 900: the head stays live, so only compaction frees them.
        for x in &all[100..] {
            x.cancelled.set(true);
            h.note_cancelled();
        }
        let mut dropped = 0;
        h.remove_cancelled(|_| dropped += 1);
        assert_eq!(dropped, 900);
        assert_eq!(h.len(), 100);
        assert_eq!(h.cancelled_count(), 0);
        assert_eq!(due_ids(&mut h, 1e9), (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn small_heaps_are_not_compacted() {
        let mut h = TimerHeap::new();
        let mut all = vec![];
        for id in 0..50 {
            let x = t(id);
            all.push(x.clone());
            h.push(id as f64, x);
        }
        for x in &all[1..] {
            x.cancelled.set(true);
            h.note_cancelled();
        }
        h.remove_cancelled(|_| {});
        assert_eq!(
            h.len(),
            50,
            "head is live: nothing popped, nothing compacted"
        );
    }

    #[test]
    fn compacting_at_each_cancel_keeps_the_heap_bounded() {
        let mut h = TimerHeap::new();
        let mut compactions = 0;
        for id in 0..100_000 {
            let x = t(id);
            h.push(1.0 + id as f64, x.clone());
            x.cancelled.set(true);
            h.note_cancelled();
            if h.compact_if_needed(|_| {}) {
                compactions += 1;
            }
            assert!(h.len() <= MIN_TIMERS_TO_COMPACT + 1);
        }
        // One O(100) rebuild per ~100 cancels: amortised O(1).
        assert!((900..=1100).contains(&compactions), "{compactions}");
    }

    #[test]
    fn compaction_keeps_equal_deadlines_in_scheduling_order() {
        let mut h = TimerHeap::new();
        for id in 0..3000 {
            let x = t(id);
            h.push(5.0, x.clone());
            if id % 3 != 0 {
                x.cancelled.set(true);
                h.note_cancelled();
                h.compact_if_needed(|_| {});
            }
        }
        assert!(h.len() < 3000);
        let live: Vec<u32> = (0..3000).filter(|id| id % 3 == 0).collect();
        assert_eq!(due_ids(&mut h, 6.0), live);
    }

    #[test]
    fn nan_deadlines_are_due_at_once() {
        let mut h = TimerHeap::new();
        h.push(1.0, t(1));
        h.push(f64::NAN, t(2));
        h.push(-f64::NAN, t(3));
        h.push(f64::NEG_INFINITY, t(4));
        assert_eq!(h.next_deadline(), Some(f64::NEG_INFINITY));
        assert_eq!(due_ids(&mut h, 0.5), vec![2, 3, 4]);
        assert_eq!(due_ids(&mut h, 2.0), vec![1]);
    }

    #[test]
    fn drain_all_empties() {
        let mut h = TimerHeap::new();
        h.push(1.0, t(1));
        h.push(2.0, t(2));
        assert_eq!(h.drain_all().len(), 2);
        assert!(h.is_empty());
    }
}
