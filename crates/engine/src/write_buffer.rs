//! A transport's pending outgoing bytes: appended at the back, consumed from
//! the front as the kernel accepts them.
//!
//! Consuming only moves a head offset; the consumed prefix is dropped when the
//! buffer empties or when it outweighs the live part, so a slowly draining
//! socket costs O(bytes) copies overall, not O(bytes²).

/// Below this many consumed bytes the prefix is never compacted away.
const COMPACT_MIN: usize = 64 * 1024;
/// An emptied buffer keeps at most this much capacity.
const KEEP_CAPACITY: usize = 1024 * 1024;

#[derive(Debug, Default)]
pub struct WriteBuffer {
    data: Vec<u8>,
    head: usize,
}

impl WriteBuffer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes waiting to be sent.
    pub fn len(&self) -> usize {
        self.data.len() - self.head
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes to hand to `send()`, oldest first.
    pub fn as_slice(&self) -> &[u8] {
        &self.data[self.head..]
    }

    pub fn extend(&mut self, bytes: &[u8]) {
        self.data.extend_from_slice(bytes);
    }

    /// Drops the first `n` pending bytes (what `send()` accepted).
    pub fn consume(&mut self, n: usize) {
        self.head = (self.head + n).min(self.data.len());
        if self.head == self.data.len() {
            self.clear();
        } else if self.head >= COMPACT_MIN && self.head * 2 >= self.data.len() {
            self.data.drain(..self.head);
            self.head = 0;
        }
    }

    /// Drops everything (abort), releasing a large allocation.
    pub fn clear(&mut self) {
        self.data.clear();
        self.head = 0;
        if self.data.capacity() > KEEP_CAPACITY {
            self.data = Vec::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consume_keeps_order() {
        let mut b = WriteBuffer::new();
        b.extend(b"hello ");
        b.extend(b"world");
        b.consume(3);
        assert_eq!(b.as_slice(), b"lo world");
        b.consume(100);
        assert!(b.is_empty());
    }

    #[test]
    fn large_consumed_prefix_is_compacted() {
        let mut b = WriteBuffer::new();
        b.extend(&vec![1u8; 200 * 1024]);
        b.extend(&[2u8; 10]);
        b.consume(200 * 1024);
        assert_eq!(b.len(), 10);
        assert_eq!(b.as_slice(), &[2u8; 10]);
        assert_eq!(b.head, 0, "prefix dropped");
    }

    #[test]
    fn clear_releases_big_allocations() {
        let mut b = WriteBuffer::new();
        b.extend(&vec![0u8; 4 * 1024 * 1024]);
        b.clear();
        assert!(b.data.capacity() <= KEEP_CAPACITY);
    }
}
