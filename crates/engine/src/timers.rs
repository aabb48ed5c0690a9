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
//!
//! Layout, for a million pending timers: a 4-ary implicit heap of 16-byte
//! entries (the deadline as an ordered integer key, and the item, a pointer
//! for the loop). A node's four children are one 64-byte cache line, and the
//! tree is half as deep as a binary one, so a pop touches about half as many
//! lines. The scheduling number that breaks ties between equal deadlines
//! lives in the item ([`Timer::seq`]) and is read only when two keys are
//! equal. It is 32 bits: when the counter would wrap, the heap renumbers
//! its entries in order (a sort, once per ~4 billion pushes), so the tie
//! order stays exact however long the loop runs.

use std::cmp::Ordering;

/// Below this many scheduled timers the heap is never compacted
/// (asyncio's `_MIN_SCHEDULED_TIMER_HANDLES`).
pub const MIN_TIMERS_TO_COMPACT: usize = 100;
/// Compact when more than this fraction of the heap is cancelled
/// (asyncio's `_MIN_CANCELLED_TIMER_HANDLES_FRACTION`).
pub const CANCELLED_FRACTION_TO_COMPACT: f64 = 0.5;

/// Children per node.
const ARITY: usize = 4;

/// Something stored in the heap that may have been cancelled since, and
/// that keeps the scheduling number the heap gives it.
pub trait Timer {
    fn is_cancelled(&self) -> bool;
    /// The number [`Timer::set_seq`] last stored.
    fn seq(&self) -> u32;
    /// Called by the heap at push, and when it renumbers its entries.
    fn set_seq(&self, seq: u32);
    /// A hint that [`Timer::is_cancelled`] will soon be asked of this item:
    /// compaction reads a million items in heap order, i.e. in random
    /// memory order, and asks ahead so that the reads overlap.
    #[inline]
    fn prefetch(&self) {}
}

/// How many entries ahead compaction prefetches.
const PREFETCH_AHEAD: usize = 16;

/// `f64::total_cmp`'s order as a signed integer, computed once at push.
#[inline]
fn key_of(when: f64) -> i64 {
    let bits = when.to_bits() as i64;
    bits ^ ((((bits >> 63) as u64) >> 1) as i64)
}

/// Inverse of [`key_of`] (the transform is its own inverse).
#[inline]
fn when_of(key: i64) -> f64 {
    f64::from_bits((key ^ ((((key >> 63) as u64) >> 1) as i64)) as u64)
}

struct Entry<T> {
    key: i64,
    item: T,
}

impl<T: Timer> Entry<T> {
    #[inline]
    fn cmp(&self, other: &Self) -> Ordering {
        self.key
            .cmp(&other.key)
            .then_with(|| self.item.seq().cmp(&other.item.seq()))
    }

    /// `cmp(..) == Less`, reading the items only on equal keys. Written as
    /// one branch on key equality (predictable: deadlines rarely tie) and a
    /// comparison the compiler can turn into a conditional move.
    #[inline]
    fn before(&self, other: &Self) -> bool {
        if self.key != other.key {
            self.key < other.key
        } else {
            self.item.seq() < other.item.seq()
        }
    }
}

/// Min-heap of timers by `(when, seq)`.
pub struct TimerHeap<T> {
    heap: Vec<Entry<T>>,
    next_seq: u32,
    /// Renumber when `next_seq` reaches this (`u32::MAX`; lower in tests).
    seq_limit: u32,
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
        Self::with_seq_limit(u32::MAX)
    }

    /// A heap that renumbers its entries once `limit` numbers were given
    /// out, for tests of the renumbering (`new()` uses `u32::MAX`).
    pub fn with_seq_limit(limit: u32) -> Self {
        TimerHeap {
            heap: Vec::new(),
            next_seq: 0,
            seq_limit: limit.max(1),
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

    /// Whether cancelled entries are more than
    /// [`CANCELLED_FRACTION_TO_COMPACT`] of a heap larger than
    /// [`MIN_TIMERS_TO_COMPACT`] (asyncio's rule). Checked after every
    /// cancellation, so integers only: `cancelled > len / 2` is exactly
    /// `cancelled / len > 0.5`.
    #[inline]
    pub fn needs_compaction(&self) -> bool {
        let count = self.heap.len();
        count > MIN_TIMERS_TO_COMPACT && self.cancelled > count / 2
    }

    /// Rebuilds the heap without its cancelled entries when
    /// [`TimerHeap::needs_compaction`]. Removed items go to `dropped`, in
    /// heap order. Returns whether it compacted.
    #[inline]
    pub fn compact_if_needed(&mut self, dropped: impl FnMut(T)) -> bool {
        if !self.needs_compaction() {
            return false;
        }
        self.compact(dropped);
        true
    }

    #[cold]
    fn compact(&mut self, mut dropped: impl FnMut(T)) {
        let entries = std::mem::take(&mut self.heap);
        // A new, right-sized vector: the old one (as large as the heap ever
        // was) is freed with the cancelled entries.
        let mut live = Vec::with_capacity(entries.len() - self.cancelled.min(entries.len()));
        for e in entries.iter().take(PREFETCH_AHEAD) {
            e.item.prefetch();
        }
        let mut rest = entries.into_iter();
        while let Some(e) = rest.next() {
            if let Some(ahead) = rest.as_slice().get(PREFETCH_AHEAD - 1) {
                ahead.item.prefetch();
            }
            if e.item.is_cancelled() {
                dropped(e.item);
            } else {
                live.push(e);
            }
        }
        self.heap = live;
        self.heapify();
        self.cancelled = 0;
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
        if self.next_seq >= self.seq_limit {
            self.renumber();
        }
        item.set_seq(self.next_seq);
        self.next_seq += 1;
        self.heap.push(Entry {
            key: key_of(when),
            item,
        });
        self.sift_up(self.heap.len() - 1);
    }

    /// Gives the entries the numbers 0..len in their `(when, seq)` order.
    /// A sorted array is a valid heap, so it stays in place.
    #[cold]
    fn renumber(&mut self) {
        self.heap.sort_unstable_by(Entry::cmp);
        for (i, e) in self.heap.iter().enumerate() {
            // The heap never holds more than u32::MAX entries: each push
            // takes a number below the limit.
            e.item.set_seq(i as u32);
        }
        self.next_seq = self.heap.len() as u32;
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Deadline of the earliest timer, cancelled or not.
    pub fn next_deadline(&self) -> Option<f64> {
        self.heap.first().map(|e| when_of(e.key))
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
        while self.heap.first().is_some_and(|e| e.item.is_cancelled()) {
            if let Some(item) = self.pop() {
                self.cancelled = self.cancelled.saturating_sub(1);
                dropped(item);
            }
        }
    }

    /// Pops every timer due before `end_time` (asyncio: `when < now +
    /// clock_resolution`) in `(when, seq)` order. Cancelled ones go to
    /// `dropped`; live ones to `due`.
    pub fn pop_due(&mut self, end_time: f64, mut due: impl FnMut(T), mut dropped: impl FnMut(T)) {
        while self.heap.first().is_some_and(|e| when_of(e.key) < end_time) {
            let Some(item) = self.pop() else { break };
            if item.is_cancelled() {
                self.cancelled = self.cancelled.saturating_sub(1);
                dropped(item);
            } else {
                due(item);
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
            .into_iter()
            .map(|e| e.item)
            .collect()
    }

    /// Removes and returns the earliest entry's item.
    fn pop(&mut self) -> Option<T> {
        let last = self.heap.pop()?;
        if self.heap.is_empty() {
            return Some(last.item);
        }
        let top = std::mem::replace(&mut self.heap[0], last);
        // The moved entry came from the bottom and most likely belongs there:
        // walk the smallest children up to the bottom without comparing it,
        // then let it rise (as std's BinaryHeap does).
        let pos = self.sift_down_to_bottom(0);
        self.sift_up(pos);
        Some(top.item)
    }

    /// Moves the entry at `pos` up while it is before its parent.
    fn sift_up(&mut self, mut pos: usize) {
        while pos > 0 {
            let parent = (pos - 1) / ARITY;
            if !self.heap[pos].before(&self.heap[parent]) {
                break;
            }
            self.heap.swap(pos, parent);
            pos = parent;
        }
    }

    /// The smallest child of `pos`, if it has any. The children are one
    /// slice, so the scan needs no bounds check per child.
    #[inline]
    fn min_child(&self, pos: usize) -> Option<usize> {
        let first = ARITY * pos + 1;
        let kids = self.heap.get(first..(first + ARITY).min(self.heap.len()))?;
        let (mut best, mut best_entry) = (0, kids.first()?);
        for (i, k) in kids.iter().enumerate().skip(1) {
            if k.before(best_entry) {
                best = i;
                best_entry = k;
            }
        }
        Some(first + best)
    }

    /// Swaps the entry at `pos` with its smallest child until it has none;
    /// returns where it ended.
    ///
    /// Every node above the last level but one has all four children: for
    /// those, the smallest is picked as a tournament (two pairs, then their
    /// winners: 3 comparisons, no loop, one bounds check per level, and
    /// conditional moves where `before` is decided by the keys). Entries
    /// never tie (the scheduling numbers differ), so the pairing order does
    /// not matter. A node with fewer children is a last parent: its
    /// children are leaves.
    fn sift_down_to_bottom(&mut self, mut pos: usize) -> usize {
        let len = self.heap.len();
        loop {
            let first = ARITY * pos + 1;
            if first + ARITY > len {
                break;
            }
            let kids = &self.heap[first..first + ARITY];
            let a = usize::from(kids[1].before(&kids[0]));
            let b = 2 + usize::from(kids[3].before(&kids[2]));
            let best = if kids[b].before(&kids[a]) { b } else { a };
            self.heap.swap(pos, first + best);
            pos = first + best;
        }
        if let Some(c) = self.min_child(pos) {
            self.heap.swap(pos, c);
            pos = c;
        }
        pos
    }

    /// Moves the entry at `pos` down while a child is before it.
    fn sift_down(&mut self, mut pos: usize) {
        while let Some(c) = self.min_child(pos) {
            if !self.heap[c].before(&self.heap[pos]) {
                break;
            }
            self.heap.swap(pos, c);
            pos = c;
        }
    }

    /// Restores the heap order of the whole vector (after compaction).
    fn heapify(&mut self) {
        let len = self.heap.len();
        if len < 2 {
            return;
        }
        for pos in (0..=(len - 2) / ARITY).rev() {
            self.sift_down(pos);
        }
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
        seq: Rc<Cell<u32>>,
    }
    impl Timer for T {
        fn is_cancelled(&self) -> bool {
            self.cancelled.get()
        }
        fn seq(&self) -> u32 {
            self.seq.get()
        }
        fn set_seq(&self, seq: u32) {
            self.seq.set(seq);
        }
    }
    fn t(id: u32) -> T {
        T {
            id,
            cancelled: Rc::new(Cell::new(false)),
            seq: Rc::new(Cell::new(0)),
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

    #[test]
    fn entries_are_16_bytes_for_a_pointer_item() {
        assert_eq!(std::mem::size_of::<Entry<Box<u8>>>(), 16);
    }

    #[test]
    fn keys_keep_total_order_and_round_trip() {
        let values = [
            f64::NEG_INFINITY,
            -1e300,
            -1.0,
            -0.0,
            0.0,
            1e-300,
            1.0,
            1e300,
            f64::INFINITY,
        ];
        for w in values.windows(2) {
            assert!(key_of(w[0]) < key_of(w[1]), "{} < {}", w[0], w[1]);
        }
        for v in values {
            assert_eq!(when_of(key_of(v)).to_bits(), v.to_bits());
        }
    }

    #[test]
    fn renumbering_keeps_scheduling_order_of_equal_deadlines() {
        // Limit 7: the numbers wrap many times while equal deadlines pend.
        let mut h = TimerHeap::with_seq_limit(7);
        let mut all = vec![];
        for id in 0..200u32 {
            let x = t(id);
            all.push(x.clone());
            h.push(f64::from(id % 3), x);
            if id % 5 == 0 {
                // some leave early, so renumbering sees gaps
                let mut out = vec![];
                h.pop_due(-0.5, |x| out.push(x.id), |_| {});
                assert!(out.is_empty());
            }
        }
        let want: Vec<u32> = (0..3)
            .flat_map(|k| (0..200).filter(move |id| id % 3 == k))
            .collect();
        assert_eq!(due_ids(&mut h, 10.0), want);
    }

    #[test]
    fn compaction_threshold_is_asyncios_ratio_exactly() {
        for len in [50usize, 100, 101, 102, 199, 200, 201, 1001] {
            for cancelled in 0..=len {
                let mut h = TimerHeap::new();
                for id in 0..len {
                    h.push(id as f64, t(id as u32));
                }
                for _ in 0..cancelled {
                    h.note_cancelled();
                }
                let asyncio = len > MIN_TIMERS_TO_COMPACT
                    && cancelled as f64 / len as f64 > CANCELLED_FRACTION_TO_COMPACT;
                assert_eq!(h.needs_compaction(), asyncio, "{cancelled}/{len}");
            }
        }
    }

    #[test]
    fn compaction_drops_exactly_the_cancelled_and_keeps_order() {
        // Sizes around the prefetch distance and around full heap levels;
        // equal deadlines among them, so order rests on the numbers too.
        for len in (101..140).chain([341, 342, 1365, 1366, 5000]) {
            let mut h = TimerHeap::new();
            let mut all = vec![];
            for id in 0..len {
                let x = t(id);
                all.push(x.clone());
                h.push(f64::from((id * 7919) % 13), x);
            }
            let mut cancelled = 0;
            for x in &all {
                if x.id % 3 != 1 {
                    x.cancelled.set(true);
                    h.note_cancelled();
                    cancelled += 1;
                }
            }
            let mut dropped = vec![];
            assert!(h.compact_if_needed(|x| dropped.push(x.id)));
            dropped.sort_unstable();
            let want_dropped: Vec<u32> = (0..len).filter(|id| id % 3 != 1).collect();
            assert_eq!(dropped, want_dropped);
            assert_eq!(h.len(), len as usize - cancelled);
            assert_eq!(h.cancelled_count(), 0);
            let mut want: Vec<(u32, u32)> = (0..len)
                .filter(|id| id % 3 == 1)
                .map(|id| ((id * 7919) % 13, id))
                .collect();
            want.sort_unstable();
            let want: Vec<u32> = want.into_iter().map(|(_, id)| id).collect();
            assert_eq!(due_ids(&mut h, 1e9), want, "len {len}");
        }
    }

    #[test]
    fn interleaved_pushes_and_pops_keep_when_then_scheduling_order() {
        // Few distinct deadlines, so most comparisons tie on the key and are
        // decided by the scheduling number, at every depth of the heap.
        let mut h = TimerHeap::new();
        let mut model: Vec<(u64, u32)> = vec![];
        let mut s = 0x9e37_79b9_u64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let mut id = 0u32;
        for round in 0..200 {
            for _ in 0..(next() % 300) {
                let when = next() % 5 + round / 4;
                h.push(when as f64, t(id));
                model.push((when, id));
                id += 1;
            }
            let end = (next() % 6 + round / 4) as f64;
            model.sort_unstable();
            let split = model.partition_point(|&(w, _)| (w as f64) < end);
            let want: Vec<u32> = model.drain(..split).map(|(_, i)| i).collect();
            assert_eq!(due_ids(&mut h, end), want, "round {round}");
            assert_eq!(h.len(), model.len());
        }
    }

    #[test]
    fn random_deadlines_pop_sorted() {
        let mut h = TimerHeap::new();
        let mut s = 0x2545_f491_u64;
        let mut want = vec![];
        for id in 0..5000u32 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let when = (s % 1000) as f64 * 0.25;
            want.push((when, id));
            h.push(when, t(id));
        }
        want.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let want: Vec<u32> = want.into_iter().map(|(_, id)| id).collect();
        assert_eq!(due_ids(&mut h, 1e9), want);
    }
}
