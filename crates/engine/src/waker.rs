//! Cross-thread wake-up of a sleeping poll (asyncio's self-pipe,
//! `_write_to_self`), as an eventfd registered with the poller.
//!
//! Wakes are coalesced: while one wake is pending (written and not yet
//! drained), further wakes skip the syscall. `call_soon_threadsafe` from a
//! busy producer thus costs one write per loop iteration, not one per call.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug)]
pub struct Waker {
    fd: OwnedFd,
    pending: AtomicBool,
}

impl Waker {
    pub fn new() -> io::Result<Waker> {
        // SAFETY: eventfd takes no pointers; the result is checked below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Waker {
            fd,
            pending: AtomicBool::new(false),
        })
    }

    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Makes the next (or current) poll return. Safe from any thread.
    pub fn wake(&self) {
        if self.pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own eventfd. EAGAIN
        // (counter saturated) still leaves the fd readable, which is all we need.
        unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                &one as *const u64 as *const libc::c_void,
                8,
            );
        }
    }

    /// Called by the loop after the poll reported the waker readable.
    /// Work queued before a wake is visible to the loop once this returns,
    /// because the loop looks at its queues after draining.
    pub fn drain(&self) {
        let mut buf: u64 = 0;
        // SAFETY: reads at most 8 bytes into a live u64 from our own eventfd.
        unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                &mut buf as *mut u64 as *mut libc::c_void,
                8,
            );
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
