//! Wake-up of a sleeping poll (asyncio's self-pipe): from other threads
//! (`call_soon_threadsafe`, `_write_to_self`) and from signals.
//!
//! A non-blocking pipe whose read end the poller watches. Wakes are
//! coalesced: while one wake is pending (written and not yet drained),
//! further wakes skip the syscall, so `call_soon_threadsafe` from a busy
//! producer costs one write per loop iteration, not one per call.
//!
//! The write end is also what the loop hands to `signal.set_wakeup_fd` while
//! it runs in the main thread: CPython's C-level signal handler only sets a
//! flag (Python runs the handler, e.g. Ctrl-C's KeyboardInterrupt, when the
//! interpreter next checks), so a signal landing after the loop's last
//! callback but before its poll would otherwise sleep through the poll. The
//! handler writes single bytes, which is why this is a pipe and not an
//! eventfd.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug)]
pub struct Waker {
    read: OwnedFd,
    write: OwnedFd,
    pending: AtomicBool,
}

impl Waker {
    pub fn new() -> io::Result<Waker> {
        let mut fds = [0 as libc::c_int; 2];
        // SAFETY: `fds` is a writable array of two ints, as pipe2 requires;
        // the result is checked before the fds are used.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded: both fds are new and owned by nothing else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        Ok(Waker {
            read,
            write,
            pending: AtomicBool::new(false),
        })
    }

    /// The end the poller watches for readability.
    pub fn as_raw_fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// The end wakes (and signals, via `signal.set_wakeup_fd`) write to.
    pub fn write_fd(&self) -> RawFd {
        self.write.as_raw_fd()
    }

    /// Makes the next (or current) poll return. Safe from any thread.
    pub fn wake(&self) {
        // A plain load first: while a wake is pending (a busy producer's
        // every call), no read-modify-write takes the cache line from the
        // loop's core.
        if self.pending.load(Ordering::Acquire) || self.pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let byte = 0u8;
        // SAFETY: writes one byte from a live local to our own pipe. EAGAIN
        // (pipe full) still leaves it readable, which is all we need.
        unsafe {
            libc::write(self.write.as_raw_fd(), (&byte as *const u8).cast(), 1);
        }
    }

    /// Called by the loop after the poll reported the pipe readable.
    /// Work queued before a wake is visible to the loop once this returns,
    /// because the loop looks at its queues after draining. The bytes
    /// themselves (signal numbers, or 0 for a wake) are not needed: Python's
    /// pending-signal flags say which handlers to run.
    pub fn drain(&self) {
        let mut buf = [0u8; 256];
        loop {
            // SAFETY: reads at most `buf.len()` bytes into a live local array
            // from our own non-blocking pipe.
            let n =
                unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n == buf.len() as isize {
                continue; // maybe more
            }
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break; // emptied (a short read or EAGAIN)
        }
        self.pending.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::poller::{Events, Interest, Poller};
    use std::sync::Arc;

    #[test]
    fn wake_from_another_thread_interrupts_a_blocking_poll() {
        let p = Poller::new().unwrap();
        let w = Arc::new(Waker::new().unwrap());
        p.update_with_token(
            w.as_raw_fd(),
            Interest::NONE,
            Interest {
                read: true,
                write: false,
            },
            u64::MAX,
        )
        .unwrap();
        let w2 = w.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            w2.wake();
        });
        let mut evs = Events::with_capacity(4);
        let n = p.wait(&mut evs, 5000).unwrap();
        t.join().unwrap();
        assert_eq!(n, 1);
        assert_eq!(evs.iter().next().unwrap().token, u64::MAX);
        w.drain();
        assert_eq!(
            p.wait(&mut evs, 0).unwrap(),
            0,
            "drained: no longer readable"
        );
    }

    #[test]
    fn bytes_written_by_a_signal_handler_wake_the_poll_until_drained() {
        let p = Poller::new().unwrap();
        let w = Waker::new().unwrap();
        let read = Interest {
            read: true,
            write: false,
        };
        p.update(w.as_raw_fd(), Interest::NONE, read).unwrap();
        let mut evs = Events::with_capacity(4);
        assert_eq!(p.wait(&mut evs, 0).unwrap(), 0);
        // More than one read's worth, as a burst of signals would write.
        for _ in 0..300 {
            let signum = [2u8];
            // SAFETY: writes one byte from a live array to the pipe we own.
            assert_eq!(
                unsafe { libc::write(w.write_fd(), signum.as_ptr().cast(), 1) },
                1
            );
        }
        assert_eq!(p.wait(&mut evs, 1000).unwrap(), 1);
        w.drain();
        assert_eq!(p.wait(&mut evs, 0).unwrap(), 0);
    }

    #[test]
    fn wakes_coalesce_until_drained() {
        let p = Poller::new().unwrap();
        let w = Waker::new().unwrap();
        p.update(
            w.as_raw_fd(),
            Interest::NONE,
            Interest {
                read: true,
                write: false,
            },
        )
        .unwrap();
        for _ in 0..1000 {
            w.wake();
        }
        let mut evs = Events::with_capacity(4);
        assert_eq!(p.wait(&mut evs, 0).unwrap(), 1);
        w.drain();
        assert_eq!(p.wait(&mut evs, 0).unwrap(), 0);
        w.wake();
        assert_eq!(
            p.wait(&mut evs, 0).unwrap(),
            1,
            "a wake after draining is not lost"
        );
    }
}
