//! A short-lived heap reservation taken while a large read grows a stream
//! reader's empty buffer (see `docs/design-notes.md`, "Large stream reads
//! and glibc's heap top").
//!
//! When several connections each deliver ~100 KiB in one poll, every
//! reader's empty `bytearray` is grown with one `malloc` of the read's size,
//! and glibc carves those chunks one after the other from the top of the
//! heap. The tasks then drain them (`del buf[:n]` frees the storage), the
//! freed run joins the top chunk, glibc gives it back with `brk` once the
//! top passes its trim threshold, and the next poll faults the same pages
//! in again (~25 minor faults per 100 KiB).
//!
//! Stock asyncio's selector loop and rloop allocate a receive buffer per
//! read, shrink it to the bytes received, copy them into the reader's buffer
//! and free it. That order leaves a hole of the read's size just below each
//! reader storage, which the next large storage fills instead of carving a
//! fresh one from the top. ferroloop receives into a shared buffer, so it
//! takes the same step without data: a chunk slightly larger than the read
//! (so no hole of exactly a previous storage's size holds it), shrunk to just
//! over the read, held while `PyByteArray_Resize` allocates the storage, then
//! freed. It changes where the storage lands, not its size or contents, and
//! no malloc parameter.
//!
//! Only from the second large growth within one loop iteration: a lone
//! large read already stays under the trim threshold, and a reservation
//! beside it would raise the heap's swing past it (measured: 0 -> 17 faults
//! per request on a single-connection echo).

use std::cell::Cell;

use crate::iteration;

/// Reads smaller than this leave the heap alone: their storage is small
/// next to glibc's trim threshold, and the reservation would only cost.
pub(crate) const MIN_RESERVED_READ: usize = 32 * 1024;

/// The reservation is taken this much larger than the read, so no free
/// chunk of exactly a previous storage's size can hold it ...
const RESERVE_SLACK: usize = 512;

/// ... and then shrunk to this much over the read, so the hole it leaves
/// holds a storage of the read's size (CPython adds at most a bytes header
/// to it: 3.15 keeps a `bytearray`'s storage in a `bytes` object).
const RESERVE_KEEP: usize = 128;

thread_local! {
    /// (batch, large growths seen in it) for this thread's loop.
    static SEEN: Cell<(u64, u32)> = const { Cell::new((0, 0)) };
}

/// Counts this large growth; true when an earlier callback of the same loop
/// iteration already grew a reader's buffer for a large read. A lone large
/// read is left alone: its storage alone stays under glibc's trim threshold,
/// and a reservation beside it would only raise the heap's swing.
fn after_another_in_batch() -> bool {
    let batch = iteration::batch();
    SEEN.with(|seen| {
        let (last, count) = seen.get();
        let count = if last == batch {
            count.saturating_add(1)
        } else {
            1
        };
        seen.set((batch, count));
        count > 1
    })
}

/// Runs `grow` (which allocates storage for `len` bytes) while a
/// reservation of just over `len` bytes is held, then releases it. A
/// reservation that cannot be had is skipped: it only shapes the heap.
pub(crate) fn with_reserve<R>(len: usize, grow: impl FnOnce() -> R) -> R {
    if len < MIN_RESERVED_READ || !after_another_in_batch() {
        return grow();
    }
    let mut reserve: Vec<u8> = Vec::new();
    if reserve
        .try_reserve_exact(len.saturating_add(RESERVE_SLACK))
        .is_ok()
    {
        // black_box: the allocation and its shrink are the point, so the
        // optimizer must not pair them away.
        reserve = std::hint::black_box(reserve);
        reserve.shrink_to(len.saturating_add(RESERVE_KEEP));
    }
    let reserve = std::hint::black_box(reserve);
    let out = grow();
    drop(reserve);
    out
}
