//! The ready queue (asyncio's `_ready`): callbacks that are due now, in FIFO
//! order.
//!
//! One loop iteration runs exactly the callbacks that were queued when it
//! started running callbacks; callbacks they schedule wait for the next
//! iteration (after another poll). [`ReadyQueue::batch_len`] is that count.

use std::collections::VecDeque;

/// FIFO of due callbacks.
#[derive(Debug)]
pub struct ReadyQueue<T> {
    items: VecDeque<T>,
}

impl<T> Default for ReadyQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> ReadyQueue<T> {
    pub fn new() -> Self {
        ReadyQueue {
            items: VecDeque::with_capacity(64),
        }
    }

    /// Appends a callback at the back (what `call_soon` does).
    #[inline]
    pub fn push(&mut self, item: T) {
        self.items.push_back(item);
    }

    /// Takes the oldest callback.
    pub fn pop(&mut self) -> Option<T> {
        self.items.pop_front()
    }

    /// How many callbacks the iteration that starts now must run.
    pub fn batch_len(&self) -> usize {
        self.items.len()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Moves the whole current batch into `batch` (which must be empty) in
    /// O(1), leaving the queue empty for what the batch schedules. The loop
    /// then runs the batch without touching the queue per callback.
    pub fn take_batch(&mut self, batch: &mut VecDeque<T>) {
        debug_assert!(batch.is_empty());
        std::mem::swap(&mut self.items, batch);
    }

    /// Puts the unrun rest of a batch back in front of anything queued since
    /// (an exception interrupted the batch: the rest runs next time, first).
    pub fn requeue_front(&mut self, rest: &mut VecDeque<T>) {
        if rest.is_empty() {
            return;
        }
        rest.append(&mut self.items);
        std::mem::swap(&mut self.items, rest);
    }

    /// The queued callbacks, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter()
    }

    /// Removes every queued callback and hands them back, so the caller can
    /// drop them where dropping is safe (for Python objects: outside any lock).
    pub fn drain_all(&mut self) -> Vec<T> {
        self.items.drain(..).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_order() {
        let mut q = ReadyQueue::new();
        for i in 0..5 {
            q.push(i);
        }
        let got: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn taken_batch_and_requeued_rest_keep_fifo_order() {
        let mut q = ReadyQueue::new();
        q.push(1);
        q.push(2);
        q.push(3);
        let mut batch = VecDeque::new();
        q.take_batch(&mut batch);
        assert!(q.is_empty());
        assert_eq!(batch.pop_front(), Some(1));
        q.push(10); // scheduled while running 1; then 1 raises
        q.requeue_front(&mut batch);
        assert!(batch.is_empty());
        assert_eq!(q.drain_all(), vec![2, 3, 10]);
    }

    #[test]
    fn batch_excludes_items_pushed_while_running() {
        let mut q = ReadyQueue::new();
        q.push(1);
        q.push(2);
        let n = q.batch_len();
        let mut ran = vec![];
        for _ in 0..n {
            let x = q.pop().unwrap();
            ran.push(x);
            q.push(x * 10); // scheduled by the callback: next iteration
        }
        assert_eq!(ran, vec![1, 2]);
        assert_eq!(q.drain_all(), vec![10, 20]);
        assert!(q.is_empty());
    }
}
