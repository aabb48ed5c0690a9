//! ferroloop's event-loop engine: the parts of asyncio's `BaseEventLoop` that
//! do not need Python.
//!
//! * [`ready::ReadyQueue`] — the `_ready` FIFO of callbacks due now;
//! * [`timers::TimerHeap`] — the `_scheduled` heap ordered by `(when, seq)`,
//!   with lazy cancellation and compaction;
//! * [`poller::Poller`] — level-triggered epoll with per-fd read/write interest;
//! * [`waker::Waker`] — the self-pipe that wakes a sleeping poll from any
//!   thread or signal;
//! * [`write_queue::WriteQueue`] and [`sockio`] — a transport's pending bytes
//!   and its non-blocking socket calls;
//! * [`clock`] — the monotonic clock asyncio's `loop.time()` uses;
//! * [`virtual_clock::VirtualClock`] — the test loops' virtual clock, and
//!   the decision to jump it to the next timer;
//! * [`faults`] — optional syscall fault injection (feature `faults`).
//!
//! Everything is generic over the callback type, so it is tested with plain
//! Rust values; the PyO3 crate instantiates it with Python handles.

pub mod clock;
pub mod faults;
pub mod poller;
pub mod ready;
pub mod sockio;
pub mod timers;
pub mod virtual_clock;
pub mod waker;
pub mod write_queue;

pub use poller::{timeout_to_ms, Event, Events, Interest, Poller, Registration};
pub use ready::ReadyQueue;
pub use timers::{Timer, TimerHeap};
pub use virtual_clock::{Plan, VirtualClock};
pub use waker::Waker;
pub use write_queue::WriteQueue;
