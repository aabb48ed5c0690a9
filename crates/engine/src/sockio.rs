//! Non-blocking socket calls on raw fds, as transports need them: `recv`,
//! `send` without SIGPIPE, and `shutdown(SHUT_WR)`.
//!
//! The fds belong to Python socket objects that the transport keeps alive for
//! as long as it uses the fd.

use std::io;
use std::os::fd::RawFd;

use crate::faults::{self, Call};

fn cvt(n: isize) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// `recv(fd, buf, 0)`: Ok(0) is end of stream.
pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    if let Some(e) = faults::inject(Call::Recv) {
        return Err(e);
    }
    // SAFETY: `buf` is a live, writable slice of `buf.len()` bytes for the
    // duration of the call; the kernel validates `fd`.
    cvt(unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) })
}

/// `ioctl(fd, FIONREAD)`: how many bytes a stream socket holds ready to be
/// received (what one `recv` of that size returns when nothing else reads
/// the socket meanwhile).
pub fn queued(fd: RawFd) -> io::Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which points to
    // a live local; the kernel validates `fd`.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n as *mut libc::c_int) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usize::try_from(n).unwrap_or(0))
}

/// `recv(fd, ptr, len, 0)` into memory that may be uninitialised.
///
/// # Safety
/// SAFETY: `ptr` must be valid for writes of `len` bytes for the duration of
/// the call (the memory may be uninitialised; only the kernel writes it).
pub unsafe fn recv_raw(fd: RawFd, ptr: *mut u8, len: usize) -> io::Result<usize> {
    if let Some(e) = faults::inject(Call::Recv) {
        return Err(e);
    }
    // SAFETY: the caller guarantees `ptr..ptr+len` is writable.
    cvt(unsafe { libc::recv(fd, ptr.cast(), len, 0) })
}

/// `read(fd, buf)`: for pipes and other non-socket fds. Ok(0) is end of file.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is a live, writable slice of `buf.len()` bytes for the
    // duration of the call; the kernel validates `fd`.
    cvt(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
}

/// `send(fd, buf, MSG_NOSIGNAL)`: a closed peer gives EPIPE, never SIGPIPE.
pub fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    if let Some(e) = faults::inject(Call::Send) {
        return Err(e);
    }
    // SAFETY: `buf` is a live slice of `buf.len()` bytes for the duration of
    // the call; the kernel validates `fd`.
    cvt(unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL) })
}

/// `sendmsg(fd, slices, MSG_NOSIGNAL)`: one vectored send, no SIGPIPE.
pub fn send_vectored(fd: RawFd, slices: &[std::io::IoSlice<'_>]) -> io::Result<usize> {
    if let Some(e) = faults::inject(Call::Send) {
        return Err(e);
    }
    // SAFETY: a zeroed msghdr is valid (no name, no control data); msg_iov
    // points at `slices`, whose IoSlice layout is guaranteed to match iovec on
    // Unix, and both outlive the call; the kernel only reads them.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = slices.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = slices.len() as _;
        cvt(libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL))
    }
}

/// `shutdown(fd, SHUT_WR)`: sends FIN after the pending data.
pub fn shutdown_write(fd: RawFd) -> io::Result<()> {
    // SAFETY: no pointers; the kernel validates `fd`.
    let rc = unsafe { libc::shutdown(fd, libc::SHUT_WR) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// True for the errors that only mean "try again when ready".
pub fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn send_recv_and_eof() {
        let (a, b) = UnixStream::pair().unwrap();
        b.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 16];
        let e = recv(b.as_raw_fd(), &mut buf).unwrap_err();
        assert!(would_block(&e));
        assert_eq!(send(a.as_raw_fd(), b"ping").unwrap(), 4);
        assert_eq!(recv(b.as_raw_fd(), &mut buf).unwrap(), 4);
        assert_eq!(&buf[..4], b"ping");
        shutdown_write(a.as_raw_fd()).unwrap();
        assert_eq!(recv(b.as_raw_fd(), &mut buf).unwrap(), 0);
    }

    #[test]
    fn vectored_send_keeps_order() {
        let (a, b) = UnixStream::pair().unwrap();
        let parts = [std::io::IoSlice::new(b"ab"), std::io::IoSlice::new(b"cd")];
        assert_eq!(send_vectored(a.as_raw_fd(), &parts).unwrap(), 4);
        let mut buf = [0u8; 8];
        assert_eq!(recv(b.as_raw_fd(), &mut buf).unwrap(), 4);
        assert_eq!(&buf[..4], b"abcd");
    }

    #[test]
    fn send_to_closed_peer_is_an_error_not_a_signal() {
        let (a, b) = UnixStream::pair().unwrap();
        drop(b);
        let e = send(a.as_raw_fd(), b"x").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPIPE));
    }
}
