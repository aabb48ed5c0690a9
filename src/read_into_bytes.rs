//! Large socket reads received straight into the `bytes` handed to
//! `protocol.data_received` (see `docs/design-notes.md`, "Large reads into
//! `bytes`").
//!
//! A socket transport's read normally lands in the thread's shared read
//! buffer and is copied into an exact-size `bytes`: for the usual small
//! reads that is cheaper than allocating a `bytes` of the largest read size
//! and shrinking it. For a 100 KiB read the copy is most of what the loop
//! adds to the read. So once a read of this transport was large, the next
//! read first asks the kernel how many bytes are queued (`FIONREAD`, one
//! cheap system call) and receives them into a fresh `bytes` of exactly
//! that size. The data, its chunking and the read's errors are the same;
//! only where the kernel writes changes.
//!
//! `loop.sock_recv(sock, n)` on a stream socket, for `n` past the probe
//! size, skips its probe read (a 16 KiB copy and a second recv) after a
//! large read on the same fd: it receives into a `bytes` of `n` bytes and
//! shrinks it, as `sock.recv(n)` does.

use std::cell::RefCell;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU8, Ordering};

use ferroloop_engine::sockio;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::sock_calls::{recv_bytes_copied, shrink};

/// A read at least this large makes the transport's next read ask for the
/// queued byte count. Below it the copy out of the shared buffer costs less
/// than the extra system call (measured: see the design notes).
const LARGE_READ: usize = 32 * 1024;

/// Whether a transport's last read was large (the next one then receives
/// straight into a `bytes`), or its socket does not answer `FIONREAD` (it
/// then always reads through the shared buffer). Atomic only because the
/// transport object is `Sync`; it is read and written with the GIL held.
#[derive(Default)]
pub(crate) struct LargeReads(AtomicU8);

const LAST_SMALL: u8 = 0;
const LAST_LARGE: u8 = 1;
const NO_FIONREAD: u8 = 2;

impl LargeReads {
    fn get(&self) -> u8 {
        self.0.load(Ordering::Relaxed)
    }

    /// Records the size of a read (unless `FIONREAD` is unsupported).
    fn record(&self, got: usize) {
        if self.get() != NO_FIONREAD {
            let state = if got >= LARGE_READ {
                LAST_LARGE
            } else {
                LAST_SMALL
            };
            self.0.store(state, Ordering::Relaxed);
        }
    }

    fn set_unsupported(&self) {
        self.0.store(NO_FIONREAD, Ordering::Relaxed);
    }
}

/// The number of bytes queued on socket `fd`, None when the call fails
/// (not a socket that answers `FIONREAD`): the caller then reads as usual.
fn queued(fd: RawFd) -> Option<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer, which is valid
    // for writes for the duration of the call; the kernel validates `fd`.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n as *mut libc::c_int) };
    if rc < 0 {
        return None;
    }
    usize::try_from(n).ok()
}

/// One `recv` of at most `size` bytes into a new `bytes` of `size` bytes,
/// shrunk to what came. None when the `bytes` cannot be allocated (the
/// caller reads through the shared buffer instead, as it would anyway).
fn recv_fresh<'py>(
    py: Python<'py>,
    fd: RawFd,
    size: usize,
) -> Option<std::io::Result<Bound<'py, PyBytes>>> {
    let len = ffi::Py_ssize_t::try_from(size).ok()?;
    // SAFETY: PyBytes_FromStringAndSize(NULL, n) returns a new bytes object
    // whose n bytes are ours to write (uninitialised), or NULL with an
    // exception set. Nobody else holds it until it is returned.
    let bytes = unsafe {
        let raw = ffi::PyBytes_FromStringAndSize(std::ptr::null(), len);
        match Bound::from_owned_ptr_or_err(py, raw) {
            Ok(bytes) => bytes.cast_into_unchecked::<PyBytes>(),
            Err(err) => {
                drop(err); // the shared-buffer read needs no large block
                return None;
            }
        }
    };
    // SAFETY: `bytes` is the live, unshared bytes object created above.
    let data = unsafe { ffi::PyBytes_AsString(bytes.as_ptr()) }.cast::<u8>();
    // SAFETY: `data..data + size` is the object's writable buffer; only the
    // kernel writes it, and only the `got` bytes it wrote are kept.
    let got = match unsafe { sockio::recv_raw(fd, data, size) } {
        Ok(got) => got,
        Err(e) => return Some(Err(e)),
    };
    Some(shrink(py, bytes, got))
}

/// One `recv` of at most `max` bytes (`max <= SHARED_READ_MAX`) from a
/// socket transport's `fd`, as a `bytes` (empty: end of stream), the same
/// as `recv_bytes_copied` gives. After a large read of this transport the
/// queued bytes go straight into a `bytes` of their size.
pub(crate) fn recv_bytes<'py>(
    py: Python<'py>,
    fd: RawFd,
    max: usize,
    large: &LargeReads,
) -> std::io::Result<Bound<'py, PyBytes>> {
    if large.get() == LAST_LARGE {
        match queued(fd) {
            // Nothing queued (end of stream, an error, a spurious wake-up):
            // the ordinary read reports it.
            Some(0) => {}
            Some(n) => {
                if let Some(received) = recv_fresh(py, fd, n.min(max)) {
                    if let Ok(bytes) = &received {
                        large.record(bytes.as_bytes().len());
                    }
                    return received;
                }
            }
            None => large.set_unsupported(),
        }
    }
    let bytes = recv_bytes_copied(py, fd, max)?;
    large.record(bytes.as_bytes().len());
    Ok(bytes)
}

/// `sock_recv` hints are kept for fds below this (others read as usual).
const MAX_HINTED_FD: usize = 1 << 16;

thread_local! {
    /// By fd: the last `sock_recv` past the probe size on it was large. A
    /// stale entry (the fd closed and reused) costs at most one allocation
    /// of `n` bytes; only stream sockets consult it.
    static SOCK_LARGE: RefCell<Vec<bool>> = const { RefCell::new(Vec::new()) };
}

fn sock_hint(fd: RawFd) -> bool {
    let Ok(index) = usize::try_from(fd) else {
        return false;
    };
    SOCK_LARGE.with(|hints| hints.borrow().get(index).copied().unwrap_or(false))
}

/// Records the size of a `sock_recv` on `fd` (nothing is stored for small
/// reads on fds never seen large).
pub(crate) fn sock_record(fd: RawFd, got: usize) {
    let Ok(index) = usize::try_from(fd) else {
        return;
    };
    let large = got >= LARGE_READ;
    SOCK_LARGE.with(|hints| {
        let mut hints = hints.borrow_mut();
        if index < hints.len() {
            hints[index] = large;
        } else if large && index < MAX_HINTED_FD {
            hints.resize(index + 1, false);
            hints[index] = true;
        }
    });
}

/// `sock.recv(max)` on a stream socket's `fd` straight into a `bytes` of
/// `max` bytes, shrunk to what came (what `sock.recv` itself does), when
/// its last such read was large; None: read as usual. No `FIONREAD` here:
/// the caller's `max` is the stock allocation, and exact-size ones raised
/// the heap's swing (13 page faults per 100 KiB sock echo instead of 7).
pub(crate) fn sock_recv_large(
    py: Python<'_>,
    fd: RawFd,
    max: usize,
) -> Option<std::io::Result<Bound<'_, PyBytes>>> {
    if !sock_hint(fd) {
        return None;
    }
    recv_fresh(py, fd, max)
}
