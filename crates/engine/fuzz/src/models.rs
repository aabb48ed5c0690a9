//! Model checks of the engine's queues, driven by arbitrary bytes.
//!
//! Each function decodes `data` into a sequence of operations, applies them
//! to the real structure and to a naive reference model (a sorted `Vec`, a
//! `VecDeque`, a flat byte buffer) and panics at the first disagreement.
//! The `cargo fuzz` targets of this crate feed them libFuzzer's inputs;
//! `crates/engine/tests/models.rs` feeds them seeded pseudo-random bytes so
//! a short version runs with the engine's tests on stable Rust.

use std::cell::Cell;
use std::collections::VecDeque;
use std::io::IoSlice;
use std::rc::Rc;

use ferroloop_engine::timers::{
    Timer, TimerHeap, CANCELLED_FRACTION_TO_COMPACT, MIN_TIMERS_TO_COMPACT,
};
use ferroloop_engine::write_queue::{COALESCE_MAX, MAX_IOV};
use ferroloop_engine::{ReadyQueue, WriteQueue};

/// Reads operation codes and operands off the input; zeros when it ends.
struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    fn new(data: &'a [u8]) -> Self {
        Input { data, pos: 0 }
    }
    fn more(&self) -> bool {
        self.pos < self.data.len()
    }
    fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }
    fn u16(&mut self) -> u16 {
        u16::from(self.u8()) | (u16::from(self.u8()) << 8)
    }
}

#[derive(Clone)]
struct Tm {
    id: u32,
    cancelled: Rc<Cell<bool>>,
    seq: Rc<Cell<u32>>,
}

impl Timer for Tm {
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

/// Deadlines from a small set, so many are equal; includes negatives,
/// infinities and NaNs of both signs (`float('nan')`, `-float('nan')`).
fn deadline(code: u8) -> f64 {
    match code % 13 {
        0 => f64::NAN,
        12 => -f64::NAN,
        1 => f64::INFINITY,
        2 => f64::NEG_INFINITY,
        3 => -1.0,
        4 => -0.0,
        5 => 0.0,
        k => f64::from(k - 5) * 0.5,
    }
}

/// The reference heap: every entry with its deadline and scheduling number.
struct ModelEntry {
    when: f64,
    seq: u64,
    t: Tm,
}

fn model_order(m: &mut [ModelEntry]) {
    m.sort_by(|a, b| a.when.total_cmp(&b.when).then(a.seq.cmp(&b.seq)));
}

/// `TimerHeap` against a sorted vector.
pub fn check_timers(data: &[u8]) {
    let mut inp = Input::new(data);
    // The first byte picks a small renumbering limit half of the time, so
    // the scheduling numbers wrap (and the heap renumbers) while equal
    // deadlines are pending.
    let mut heap: TimerHeap<Tm> = match inp.u8() {
        b if b % 2 == 0 => TimerHeap::with_seq_limit(1 + u32::from(b)),
        _ => TimerHeap::new(),
    };
    let mut model: Vec<ModelEntry> = Vec::new();
    let mut seq = 0u64;
    let mut next_id = 0u32;
    while inp.more() {
        match inp.u8() % 8 {
            // push (weighted: the heap must grow past the compaction floor)
            0..=2 => {
                // bounded so each step's O(n log n) model check stays cheap
                let n = if model.len() > 1000 {
                    0
                } else {
                    1 + usize::from(inp.u8() % 64)
                };
                let code = inp.u8();
                for k in 0..n {
                    let when = deadline(code.wrapping_add((k % 3) as u8));
                    let t = Tm {
                        id: next_id,
                        cancelled: Rc::new(Cell::new(false)),
                        seq: Rc::new(Cell::new(0)),
                    };
                    next_id += 1;
                    heap.push(when, t.clone());
                    // The contract: a NaN deadline is due at once (as -inf).
                    let when = if when.is_nan() {
                        f64::NEG_INFINITY
                    } else {
                        when
                    };
                    model.push(ModelEntry { when, seq, t });
                    seq += 1;
                }
            }
            // cancel some live entries (the owner reports each)
            3 => {
                let stride = 1 + usize::from(inp.u8() % 4);
                let start = usize::from(inp.u8());
                for e in model.iter().skip(start % (model.len() + 1)).step_by(stride) {
                    if !e.t.cancelled.get() {
                        e.t.cancelled.set(true);
                        heap.note_cancelled();
                    }
                }
            }
            4 => {
                let live_before = model.iter().filter(|e| !e.t.cancelled.get()).count();
                let cancelled = model.len() - live_before;
                let should = model.len() > MIN_TIMERS_TO_COMPACT
                    && cancelled as f64 / model.len() as f64 > CANCELLED_FRACTION_TO_COMPACT;
                let mut dropped = 0;
                let did = heap.compact_if_needed(|t| {
                    assert!(t.cancelled.get(), "compaction dropped live timer {}", t.id);
                    dropped += 1;
                });
                assert_eq!(did, should, "compaction decision");
                if did {
                    assert_eq!(dropped, cancelled);
                    model.retain(|e| !e.t.cancelled.get());
                }
            }
            5 => {
                let mut dropped = vec![];
                heap.remove_cancelled(|t| dropped.push(t.id));
                model_order(&mut model);
                let cancelled = model.iter().filter(|e| e.t.cancelled.get()).count();
                if model.len() > MIN_TIMERS_TO_COMPACT
                    && cancelled as f64 / model.len() as f64 > CANCELLED_FRACTION_TO_COMPACT
                {
                    dropped.sort_unstable();
                    let mut want: Vec<u32> = model
                        .iter()
                        .filter(|e| e.t.cancelled.get())
                        .map(|e| e.t.id)
                        .collect();
                    want.sort_unstable();
                    assert_eq!(dropped, want, "compaction in remove_cancelled");
                    model.retain(|e| !e.t.cancelled.get());
                } else {
                    let k = model.iter().take_while(|e| e.t.cancelled.get()).count();
                    let want: Vec<u32> = model.drain(..k).map(|e| e.t.id).collect();
                    assert_eq!(dropped, want, "cancelled head entries");
                }
            }
            6 => {
                let end = deadline(inp.u8());
                if end.is_nan() {
                    continue; // the loop's end time is a clock reading, never NaN
                }
                let (mut due, mut dropped) = (vec![], vec![]);
                heap.pop_due(end, |t| due.push(t.id), |t| dropped.push(t.id));
                model_order(&mut model);
                let k = model.iter().take_while(|e| e.when < end).count();
                let (mut want_due, mut want_dropped) = (vec![], vec![]);
                for e in model.drain(..k) {
                    if e.t.cancelled.get() {
                        want_dropped.push(e.t.id);
                    } else {
                        want_due.push(e.t.id);
                    }
                }
                assert_eq!(due, want_due, "pop_due({end}) due order");
                assert_eq!(dropped, want_dropped, "pop_due({end}) dropped");
            }
            _ => {
                if inp.u8().is_multiple_of(16) {
                    assert_eq!(heap.drain_all().len(), model.len());
                    model.clear();
                }
            }
        }
        model_order(&mut model);
        assert_eq!(heap.len(), model.len(), "len");
        assert_eq!(heap.is_empty(), model.is_empty());
        let cancelled = model.iter().filter(|e| e.t.cancelled.get()).count();
        assert_eq!(heap.cancelled_count(), cancelled, "cancelled count");
        let want = model.first().map(|e| e.when.to_bits());
        assert_eq!(
            heap.next_deadline().map(f64::to_bits),
            want,
            "next deadline"
        );
        let mut ids: Vec<u32> = heap.iter().map(|t| t.id).collect();
        ids.sort_unstable();
        let mut want_ids: Vec<u32> = model.iter().map(|e| e.t.id).collect();
        want_ids.sort_unstable();
        assert_eq!(ids, want_ids, "iter");
    }
}

/// `ReadyQueue` against a `VecDeque`, including the loop's batch protocol:
/// take the batch, run part of it while callbacks queue more, put the rest
/// back in front.
pub fn check_ready(data: &[u8]) {
    let mut inp = Input::new(data);
    let mut q: ReadyQueue<u32> = ReadyQueue::new();
    let mut model: VecDeque<u32> = VecDeque::new();
    let mut next = 0u32;
    while inp.more() {
        match inp.u8() % 5 {
            0 | 1 => {
                for _ in 0..=(inp.u8() % 8) {
                    q.push(next);
                    model.push_back(next);
                    next += 1;
                }
            }
            2 => assert_eq!(q.pop(), model.pop_front(), "pop"),
            3 => {
                let mut batch = VecDeque::new();
                assert_eq!(q.batch_len(), model.len());
                q.take_batch(&mut batch);
                assert!(q.is_empty());
                let mut want = std::mem::take(&mut model);
                for _ in 0..(inp.u8() % 8) {
                    assert_eq!(batch.pop_front(), want.pop_front(), "batch order");
                    for _ in 0..(inp.u8() % 3) {
                        q.push(next);
                        model.push_back(next);
                        next += 1;
                    }
                }
                q.requeue_front(&mut batch);
                assert!(batch.is_empty());
                want.append(&mut model);
                model = want;
            }
            _ => {
                if inp.u8().is_multiple_of(8) {
                    assert_eq!(q.drain_all(), Vec::from(std::mem::take(&mut model)));
                }
            }
        }
        assert_eq!(q.len(), model.len());
        assert!(q.iter().eq(model.iter()), "contents");
    }
}

/// `WriteQueue` against a flat buffer of pending bytes (and the positions of
/// the large chunks queued by reference).
pub fn check_write_queue(data: &[u8]) {
    let mut inp = Input::new(data);
    let mut q: WriteQueue<Vec<u8>> = WriteQueue::new();
    let mut model: Vec<u8> = Vec::new(); // the whole stream written
    let mut sent = 0usize; // bytes of it consumed
    let mut shared: Vec<(usize, Vec<u8>)> = Vec::new(); // (end offset, chunk)
    let mut fill = 0u8;
    while inp.more() {
        match inp.u8() % 6 {
            0 | 1 => {
                let n = match inp.u8() % 4 {
                    0 => 0,
                    1 => usize::from(inp.u8()),
                    2 => usize::from(inp.u16()) % (2 * COALESCE_MAX),
                    _ => COALESCE_MAX + usize::from(inp.u8() % 3) - 1,
                };
                let bytes: Vec<u8> = (0..n).map(|i| fill.wrapping_add(i as u8)).collect();
                fill = fill.wrapping_add(1);
                model.extend_from_slice(&bytes);
                if inp.u8().is_multiple_of(2) {
                    q.push_copy(&bytes);
                } else {
                    if n > COALESCE_MAX {
                        shared.push((model.len(), bytes.clone()));
                    }
                    q.push_shared(bytes);
                }
            }
            2 | 3 => {
                let n = match inp.u8() % 3 {
                    0 => usize::from(inp.u8()),
                    1 => usize::from(inp.u16()),
                    _ => usize::MAX,
                };
                q.consume(n);
                sent = sent.saturating_add(n).min(model.len());
            }
            4 => {
                let mut iov = [IoSlice::new(&[]); MAX_IOV];
                let k = q.io_slices(&mut iov);
                assert!(k <= MAX_IOV);
                let got: Vec<u8> = iov[..k].iter().flat_map(|s| s.iter().copied()).collect();
                let pending = &model[sent..];
                assert!(
                    pending.starts_with(&got),
                    "io_slices are not the pending prefix"
                );
                assert_eq!(got.is_empty(), pending.is_empty(), "io_slices empty");
                assert!(
                    iov[..k].iter().all(|s| !s.is_empty()),
                    "empty slice in io_slices"
                );
                if k < MAX_IOV {
                    assert_eq!(
                        got.len(),
                        pending.len(),
                        "fewer than MAX_IOV slices but not all bytes"
                    );
                }
            }
            _ => {
                if inp.u8().is_multiple_of(4) {
                    let back = q.clear();
                    let want: Vec<Vec<u8>> = shared
                        .iter()
                        .filter(|(end, _)| *end > sent)
                        .map(|(_, c)| c.clone())
                        .collect();
                    assert_eq!(
                        back, want,
                        "clear hands back the shared chunks still queued"
                    );
                    sent = model.len();
                }
            }
        }
        assert_eq!(q.len(), model.len() - sent, "len");
        assert_eq!(q.is_empty(), model.len() == sent);
        let live: Vec<&Vec<u8>> = shared
            .iter()
            .filter(|(end, _)| *end > sent)
            .map(|(_, c)| c)
            .collect();
        assert!(q.shared().eq(live.into_iter()), "shared chunks");
    }
}
