//! A transport's pending outgoing data as a queue of chunks, flushed with
//! one vectored send.
//!
//! Large immutable payloads are queued by reference (the caller's chunk type
//! owns them), so backpressure costs no copy; small writes are coalesced
//! into an owned tail chunk so a stream of tiny writes stays compact.

use std::collections::VecDeque;
use std::io::IoSlice;

/// Writes up to this size are copied into the owned tail chunk.
pub const COALESCE_MAX: usize = 4096;
/// At most this many chunks go into one vectored send.
pub const MAX_IOV: usize = 64;

/// A queued chunk: either bytes the queue owns or a caller-owned payload.
pub enum Chunk<T> {
    Owned(Vec<u8>),
    Shared(T),
}

impl<T: AsRef<[u8]>> Chunk<T> {
    fn bytes(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Shared(t) => t.as_ref(),
        }
    }
}

/// A transport's pending outgoing bytes. Empty, it is one pointer: most
/// connections never have to queue a byte (the kernel takes every write),
/// so an idle connection carries no queue. Once allocated, the queue is
/// kept while the connection lives, so a busy connection allocates it once.
pub struct WriteQueue<T> {
    queued: Option<Box<Queued<T>>>,
}

impl<T: AsRef<[u8]>> Default for WriteQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: AsRef<[u8]>> WriteQueue<T> {
    pub const fn new() -> Self {
        WriteQueue { queued: None }
    }

    /// Bytes waiting to be sent.
    pub fn len(&self) -> usize {
        self.queued.as_ref().map_or(0, |q| q.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn queued(&mut self) -> &mut Queued<T> {
        self.queued.get_or_insert_with(|| Box::new(Queued::new()))
    }

    /// Queues a copy of `bytes` (coalesced with a small owned tail).
    pub fn push_copy(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.queued().push_copy(bytes);
        }
    }

    /// Queues `chunk` by reference if it is large, else copies it.
    pub fn push_shared(&mut self, chunk: T) {
        if !chunk.as_ref().is_empty() {
            self.queued().push_shared(chunk);
        }
    }

    /// Fills `out` with the pending bytes, oldest first; returns how many
    /// slices were filled.
    pub fn io_slices<'a>(&'a self, out: &mut [IoSlice<'a>; MAX_IOV]) -> usize {
        self.queued.as_ref().map_or(0, |q| q.io_slices(out))
    }

    /// Drops the first `n` pending bytes (what the kernel accepted).
    pub fn consume(&mut self, n: usize) {
        if let Some(q) = self.queued.as_mut() {
            q.consume(n);
        }
    }

    /// Drops everything (abort), handing caller-owned chunks back so they
    /// can be released where that is safe.
    pub fn clear(&mut self) -> Vec<T> {
        self.queued.take().map_or_else(Vec::new, |mut q| q.clear())
    }

    /// The caller-owned chunks still queued (garbage-collector traversal).
    pub fn shared(&self) -> impl Iterator<Item = &T> {
        self.queued.iter().flat_map(|q| q.shared())
    }
}

/// The queue proper, allocated at the first byte that has to wait.
struct Queued<T> {
    chunks: VecDeque<Chunk<T>>,
    /// Bytes of the front chunk already sent.
    head: usize,
    len: usize,
}

impl<T: AsRef<[u8]>> Queued<T> {
    fn new() -> Self {
        Queued {
            chunks: VecDeque::new(),
            head: 0,
            len: 0,
        }
    }

    fn push_copy(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        self.len += bytes.len();
        if let Some(Chunk::Owned(tail)) = self.chunks.back_mut() {
            if tail.len() + bytes.len() <= COALESCE_MAX.max(tail.capacity()) {
                tail.extend_from_slice(bytes);
                return;
            }
        }
        let mut v = Vec::with_capacity(bytes.len().max(COALESCE_MAX.min(bytes.len() * 2)));
        v.extend_from_slice(bytes);
        self.chunks.push_back(Chunk::Owned(v));
    }

    /// Queues `chunk` by reference if it is large, else copies it.
    fn push_shared(&mut self, chunk: T) {
        let n = chunk.as_ref().len();
        if n == 0 {
            return;
        }
        if n <= COALESCE_MAX {
            self.push_copy(chunk.as_ref());
            return;
        }
        self.len += n;
        self.chunks.push_back(Chunk::Shared(chunk));
    }

    /// Fills `out` with the pending bytes, oldest first; returns how many
    /// slices were filled.
    fn io_slices<'a>(&'a self, out: &mut [IoSlice<'a>; MAX_IOV]) -> usize {
        let mut n = 0;
        for (i, chunk) in self.chunks.iter().take(MAX_IOV).enumerate() {
            let bytes = chunk.bytes();
            out[i] = IoSlice::new(if i == 0 { &bytes[self.head..] } else { bytes });
            n += 1;
        }
        n
    }

    /// Drops the first `n` pending bytes (what the kernel accepted).
    fn consume(&mut self, mut n: usize) {
        n = n.min(self.len);
        self.len -= n;
        while n > 0 {
            let Some(front) = self.chunks.front() else {
                break;
            };
            let left = front.bytes().len() - self.head;
            if n < left {
                self.head += n;
                return;
            }
            n -= left;
            self.head = 0;
            self.chunks.pop_front();
        }
    }

    /// Drops everything (abort), handing caller-owned chunks back so they
    /// can be released where that is safe.
    fn clear(&mut self) -> Vec<T> {
        self.len = 0;
        self.head = 0;
        self.chunks
            .drain(..)
            .filter_map(|c| match c {
                Chunk::Shared(t) => Some(t),
                Chunk::Owned(_) => None,
            })
            .collect()
    }

    /// The caller-owned chunks still queued (garbage-collector traversal).
    fn shared(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().filter_map(|c| match c {
            Chunk::Shared(t) => Some(t),
            Chunk::Owned(_) => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(q: &WriteQueue<Vec<u8>>) -> Vec<u8> {
        let mut slices = [IoSlice::new(&[]); MAX_IOV];
        let n = q.io_slices(&mut slices);
        slices[..n].iter().flat_map(|s| s.iter().copied()).collect()
    }

    #[test]
    fn small_writes_coalesce_into_one_chunk() {
        let mut q: WriteQueue<Vec<u8>> = WriteQueue::new();
        for _ in 0..100 {
            q.push_copy(b"ab");
        }
        assert_eq!(q.queued.as_ref().unwrap().chunks.len(), 1);
        assert_eq!(q.len(), 200);
    }

    #[test]
    fn large_chunks_are_queued_by_reference_in_order() {
        let mut q: WriteQueue<Vec<u8>> = WriteQueue::new();
        q.push_copy(b"head-");
        q.push_shared(vec![b'x'; 10_000]);
        q.push_copy(b"-tail");
        assert_eq!(q.queued.as_ref().unwrap().chunks.len(), 3);
        let p = pending(&q);
        assert_eq!(&p[..5], b"head-");
        assert_eq!(&p[p.len() - 5..], b"-tail");
        assert_eq!(p.len(), q.len());
    }

    #[test]
    fn consume_across_chunk_boundaries() {
        let mut q: WriteQueue<Vec<u8>> = WriteQueue::new();
        q.push_shared(vec![1u8; 5000]);
        q.push_shared(vec![2u8; 5000]);
        q.consume(4999);
        assert_eq!(q.len(), 5001);
        let p = pending(&q);
        assert_eq!(p[0], 1);
        assert_eq!(p[1], 2);
        q.consume(2);
        assert_eq!(pending(&q), vec![2u8; 4999]);
        q.consume(10_000);
        assert!(q.is_empty());
        assert!(q.queued.as_ref().unwrap().chunks.is_empty());
    }

    #[test]
    fn an_empty_queue_is_one_pointer_and_allocates_nothing() {
        let mut q: WriteQueue<Vec<u8>> = WriteQueue::new();
        assert_eq!(std::mem::size_of_val(&q), std::mem::size_of::<usize>());
        q.push_copy(b"");
        q.push_shared(Vec::new());
        q.consume(10);
        assert!(q.queued.is_none());
        assert_eq!(pending(&q), b"");
        q.push_copy(b"x");
        q.consume(1);
        // Kept for the next write once allocated.
        assert!(q.queued.is_some() && q.is_empty());
    }

    #[test]
    fn clear_returns_shared_chunks() {
        let mut q: WriteQueue<Vec<u8>> = WriteQueue::new();
        q.push_copy(b"x");
        q.push_shared(vec![0u8; 8000]);
        assert_eq!(q.clear().len(), 1);
        assert!(q.is_empty());
    }
}
