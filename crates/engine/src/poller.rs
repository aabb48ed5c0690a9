//! Level-triggered epoll with per-fd read/write interest: the selector behind
//! `add_reader` / `add_writer`.
//!
//! asyncio's selector loop is level-triggered: a readable fd is reported on
//! every poll until it is drained or its reader removed. epoll in its default
//! (level) mode gives exactly that. The poller tracks nothing per fd itself;
//! the loop knows each fd's interest and passes old and new interest to
//! [`Poller::update`], which picks ADD, MOD or DEL and tolerates fds the
//! kernel already forgot (closed without being unregistered).
//!
//! A registration may also be one-shot ([`Registration::oneshot`],
//! EPOLLONESHOT): the kernel disarms it as it reports an event, and it stays
//! registered but silent (not even hang-ups are reported) until it is
//! modified again. Socket operations' waits use that to keep their fd
//! registered between waits without it ever firing unasked.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// What a registration waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Interest {
    pub read: bool,
    pub write: bool,
}

impl Interest {
    pub const NONE: Interest = Interest {
        read: false,
        write: false,
    };

    pub fn is_none(self) -> bool {
        !self.read && !self.write
    }

    fn epoll_bits(self) -> u32 {
        let mut bits = 0;
        if self.read {
            bits |= libc::EPOLLIN as u32;
        }
        if self.write {
            bits |= libc::EPOLLOUT as u32;
        }
        bits
    }
}

/// How an fd is registered: what it waits for, and whether one reported
/// event disarms it (EPOLLONESHOT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Registration {
    pub interest: Interest,
    pub oneshot: bool,
}

impl Registration {
    fn epoll_bits(self) -> u32 {
        let mut bits = self.interest.epoll_bits();
        if self.oneshot {
            bits |= libc::EPOLLONESHOT as u32;
        }
        bits
    }
}

/// One readiness report. Errors and hang-ups count as both readable and
/// writable (as Python's `EpollSelector` reports them); the loop masks them
/// with the interest it registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    pub token: u64,
    pub readable: bool,
    pub writable: bool,
}

/// An epoll instance.
#[derive(Debug)]
pub struct Poller {
    epfd: OwnedFd,
}

/// A buffer the kernel fills with events; reused across polls.
pub struct Events {
    buf: Vec<libc::epoll_event>,
    len: usize,
}

impl Events {
    pub fn with_capacity(cap: usize) -> Self {
        Events {
            buf: vec![libc::epoll_event { events: 0, u64: 0 }; cap.max(1)],
            len: 0,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = Event> + '_ {
        self.buf[..self.len].iter().map(|ev| {
            let bits = ev.events;
            Event {
                token: ev.u64,
                readable: bits & !(libc::EPOLLOUT as u32) != 0,
                writable: bits & !(libc::EPOLLIN as u32) != 0,
            }
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Forgets the last poll's events (when an iteration skips polling).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

impl Poller {
    pub fn new() -> io::Result<Poller> {
        // SAFETY: epoll_create1 takes no pointers; the result is checked.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: `fd` is a freshly created descriptor that nothing else owns.
        let epfd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Poller { epfd })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        // Only adding or changing a registration can fail for want of
        // memory (ENOMEM) or of watches (ENOSPC).
        if op != libc::EPOLL_CTL_DEL {
            if let Some(e) = crate::faults::inject(crate::faults::Call::EpollCtl) {
                return Err(e);
            }
        }
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call; the
        // kernel validates `fd` itself (EBADF) and never keeps the pointer.
        cvt(unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), op, fd, &mut ev) })?;
        Ok(())
    }

    /// Changes `fd`'s interest from `old` to `new`, with `fd` as the token.
    pub fn update(&self, fd: RawFd, old: Interest, new: Interest) -> io::Result<()> {
        self.update_with_token(fd, old, new, fd as u64)
    }

    /// As [`Poller::update`] with an explicit token.
    pub fn update_with_token(
        &self,
        fd: RawFd,
        old: Interest,
        new: Interest,
        token: u64,
    ) -> io::Result<()> {
        let reg = |interest: Interest| {
            (!interest.is_none()).then_some(Registration {
                interest,
                oneshot: false,
            })
        };
        self.apply(fd, reg(old), reg(new), token)
    }

    /// Changes `fd`'s registration from `old` to `new` (None: not
    /// registered), with `fd` as the token. `old` may be a one-shot that
    /// fired (the kernel disarmed it, but it is still registered); `new`
    /// with no interest removes the registration: a one-shot with no events
    /// would still report an error or hang-up once.
    pub fn reregister(
        &self,
        fd: RawFd,
        old: Option<Registration>,
        new: Option<Registration>,
    ) -> io::Result<()> {
        self.apply(fd, old, new, fd as u64)
    }

    fn apply(
        &self,
        fd: RawFd,
        old: Option<Registration>,
        new: Option<Registration>,
        token: u64,
    ) -> io::Result<()> {
        let Some(new) = new.filter(|r| !r.interest.is_none()) else {
            if old.is_none() {
                return Ok(());
            }
            return match self.ctl(libc::EPOLL_CTL_DEL, fd, 0, token) {
                // The fd was closed (the kernel dropped it) or never added.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EBADF)) => Ok(()),
                r => r,
            };
        };
        let bits = new.epoll_bits();
        if old.is_none() {
            match self.ctl(libc::EPOLL_CTL_ADD, fd, bits, token) {
                // A stale registration for a reused fd number: overwrite it.
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    self.ctl(libc::EPOLL_CTL_MOD, fd, bits, token)
                }
                r => r,
            }
        } else {
            match self.ctl(libc::EPOLL_CTL_MOD, fd, bits, token) {
                // The fd was closed and reopened under the same number: the
                // kernel forgot the old registration, so add it afresh.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    self.ctl(libc::EPOLL_CTL_ADD, fd, bits, token)
                }
                r => r,
            }
        }
    }

    /// Waits for events. `timeout_ms`: -1 blocks, 0 returns at once.
    /// EINTR is returned as `ErrorKind::Interrupted` so the caller can run
    /// signal handlers.
    pub fn wait(&self, events: &mut Events, timeout_ms: i32) -> io::Result<usize> {
        // SAFETY: `events.buf` is a live, writable array of `buf.len()` epoll_events
        // and maxevents never exceeds that length.
        let n = cvt(unsafe {
            libc::epoll_wait(
                self.epfd.as_raw_fd(),
                events.buf.as_mut_ptr(),
                events.buf.len() as libc::c_int,
                timeout_ms,
            )
        });
        match n {
            Ok(n) => {
                events.len = n as usize;
                // A full buffer means more may be waiting: grow for next time.
                if events.len == events.buf.len() && events.buf.len() < 65536 {
                    let cap = events.buf.len() * 2;
                    events
                        .buf
                        .resize(cap, libc::epoll_event { events: 0, u64: 0 });
                }
                Ok(events.len)
            }
            Err(e) => {
                events.len = 0;
                Err(e)
            }
        }
    }
}

/// Converts a timeout in seconds to epoll milliseconds, rounding up so a
/// timer is never woken for early (which would spin), and capping huge
/// values. `None` means "block".
pub fn timeout_to_ms(timeout: Option<f64>) -> i32 {
    match timeout {
        None => -1,
        Some(t) if t <= 0.0 || t.is_nan() => 0,
        Some(t) => {
            let ms = (t * 1000.0).ceil();
            if ms >= i32::MAX as f64 {
                i32::MAX
            } else {
                ms as i32
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::net::UnixStream;

    fn events_of(p: &Poller, timeout: i32) -> Vec<Event> {
        let mut evs = Events::with_capacity(8);
        p.wait(&mut evs, timeout).unwrap();
        evs.iter().collect()
    }

    #[test]
    fn readable_is_level_triggered() {
        let p = Poller::new().unwrap();
        let (a, mut b) = UnixStream::pair().unwrap();
        let fd = a.as_raw_fd();
        p.update(
            fd,
            Interest::NONE,
            Interest {
                read: true,
                write: false,
            },
        )
        .unwrap();
        assert!(events_of(&p, 0).is_empty());
        b.write_all(b"x").unwrap();
        for _ in 0..3 {
            let evs = events_of(&p, 100);
            assert_eq!(evs.len(), 1);
            assert!(evs[0].readable);
            assert_eq!(evs[0].token, fd as u64);
        }
    }

    #[test]
    fn write_interest_and_removal() {
        let p = Poller::new().unwrap();
        let (a, _b) = UnixStream::pair().unwrap();
        let fd = a.as_raw_fd();
        let w = Interest {
            read: false,
            write: true,
        };
        p.update(fd, Interest::NONE, w).unwrap();
        let evs = events_of(&p, 100);
        assert!(evs[0].writable && !evs[0].readable);
        p.update(fd, w, Interest::NONE).unwrap();
        assert!(events_of(&p, 0).is_empty());
    }

    #[test]
    fn hangup_reports_readable() {
        let p = Poller::new().unwrap();
        let (a, b) = UnixStream::pair().unwrap();
        p.update(
            a.as_raw_fd(),
            Interest::NONE,
            Interest {
                read: true,
                write: false,
            },
        )
        .unwrap();
        drop(b);
        let evs = events_of(&p, 100);
        assert!(evs[0].readable);
    }

    #[test]
    fn closed_fd_is_tolerated_on_modify_and_remove() {
        let p = Poller::new().unwrap();
        let (a, _b) = UnixStream::pair().unwrap();
        let fd = a.as_raw_fd();
        let r = Interest {
            read: true,
            write: false,
        };
        p.update(fd, Interest::NONE, r).unwrap();
        drop(a);
        // The kernel dropped the registration with the fd: removal is a no-op.
        p.update(fd, r, Interest::NONE).unwrap();
    }

    #[test]
    fn reused_fd_number_is_added_afresh_on_modify() {
        let p = Poller::new().unwrap();
        let (a, _b) = UnixStream::pair().unwrap();
        let fd = a.as_raw_fd();
        let r = Interest {
            read: true,
            write: false,
        };
        p.update(fd, Interest::NONE, r).unwrap();
        drop(a);
        let (c, mut d) = UnixStream::pair().unwrap();
        if c.as_raw_fd() == fd {
            p.update(
                fd,
                r,
                Interest {
                    read: true,
                    write: true,
                },
            )
            .unwrap();
            d.write_all(b"x").unwrap();
            assert!(!events_of(&p, 100).is_empty());
        }
    }

    const READ: Interest = Interest {
        read: true,
        write: false,
    };

    fn oneshot(interest: Interest) -> Option<Registration> {
        Some(Registration {
            interest,
            oneshot: true,
        })
    }

    #[test]
    fn oneshot_fires_once_until_rearmed() {
        let p = Poller::new().unwrap();
        let (a, mut b) = UnixStream::pair().unwrap();
        let fd = a.as_raw_fd();
        p.reregister(fd, None, oneshot(READ)).unwrap();
        b.write_all(b"x").unwrap();
        assert_eq!(events_of(&p, 100).len(), 1);
        // Still readable, but disarmed: silent, even after a hang-up.
        assert!(events_of(&p, 0).is_empty());
        drop(b);
        assert!(events_of(&p, 0).is_empty());
        // Re-armed with MOD (it is still registered).
        p.reregister(fd, oneshot(Interest::NONE), oneshot(READ))
            .unwrap();
        assert_eq!(events_of(&p, 100).len(), 1);
        p.reregister(fd, oneshot(Interest::NONE), None).unwrap();
        p.reregister(fd, None, oneshot(READ)).unwrap();
        assert_eq!(events_of(&p, 100).len(), 1);
    }

    #[test]
    fn fired_oneshot_of_a_closed_dup_stays_silent_for_a_reused_number() {
        let p = Poller::new().unwrap();
        let (a, mut b) = UnixStream::pair().unwrap();
        let fd = a.as_raw_fd();
        let dup = a.try_clone().unwrap();
        p.reregister(fd, None, oneshot(READ)).unwrap();
        b.write_all(b"x").unwrap();
        assert_eq!(events_of(&p, 100).len(), 1);
        // The file lives on in `dup`: its (disarmed) registration stays.
        drop(a);
        let (c, mut d) = UnixStream::pair().unwrap();
        if c.as_raw_fd() == fd {
            // The loop still believes fd is registered: MOD finds the new
            // file unregistered and adds it.
            p.reregister(fd, oneshot(Interest::NONE), oneshot(READ))
                .unwrap();
            b.write_all(b"old file").unwrap();
            assert!(events_of(&p, 0).is_empty());
            d.write_all(b"y").unwrap();
            assert_eq!(events_of(&p, 100).len(), 1);
        }
        drop(dup);
    }

    #[test]
    fn timeouts_round_up() {
        assert_eq!(timeout_to_ms(None), -1);
        assert_eq!(timeout_to_ms(Some(0.0)), 0);
        assert_eq!(timeout_to_ms(Some(-1.0)), 0);
        assert_eq!(timeout_to_ms(Some(0.0001)), 1);
        assert_eq!(timeout_to_ms(Some(1.0)), 1000);
        assert_eq!(timeout_to_ms(Some(1e12)), i32::MAX);
    }
}
