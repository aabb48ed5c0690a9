//! Large reads received by the kernel straight into a stock
//! `StreamReader`'s buffer (see `docs/design-notes.md`, "Streams fed
//! natively").
//!
//! The ordinary native path (`stream_delivery`) receives into the shared
//! read buffer and copies the bytes into `reader._buffer`: for a 100 KiB
//! message that second copy is a quarter of the server's instructions. When
//! the previous read on the transport was large, this path asks the kernel
//! how much is queued (`FIONREAD`, one syscall, so small reads never pay
//! it), grows the empty buffer to that size with the same
//! `PyByteArray_Resize` call `extend` would make, and `recv`s into it.
//!
//! The bytearray must end as stock `extend(data)` leaves it, whatever the
//! `recv` returns:
//! * all the announced bytes: the resize was exactly `extend`'s;
//! * fewer (urgent data, another reader of the fd): the bytes are copied
//!   out, the buffer is emptied again and the ordinary path appends them, so
//!   the allocation is `extend`'s of what arrived;
//! * nothing, or an error: the buffer is emptied again and the read goes on
//!   as the stock loop's would (end of stream, would-block, fatal error).
//!
//! Emptying restores the buffer exactly only when it held no bytes and had
//! the allocation CPython leaves in an emptied bytearray (1 byte up to 3.14,
//! none on 3.15): both are preconditions, checked before anything changes.

use std::io;
use std::os::fd::RawFd;

use ferroloop_engine::sockio;
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyByteArray;

use crate::read_reserve;
use crate::sock_calls::{with_read_buffer, SHARED_READ_MAX};
use crate::stream_delivery::{Received, StreamTarget};

/// A streamed read at least this large makes the transport's next read ask
/// the kernel how much is queued: at this size the copy saved outweighs the
/// `ioctl`, and a small-message connection never pays it.
pub(crate) const ASK_QUEUED_AFTER: usize = 32 * 1024;

/// `__alloc__()` of a bytearray emptied by `PyByteArray_Resize(0)` after it
/// held bytes, on the running Python; None if it cannot be learnt.
static EMPTIED_ALLOC: PyOnceLock<Option<isize>> = PyOnceLock::new();

fn emptied_alloc(py: Python<'_>) -> Option<isize> {
    *EMPTIED_ALLOC.get_or_init(py, || {
        let probe = PyByteArray::new(py, &[0; 64]);
        if !resize(&probe, 0) {
            drop(PyErr::take(py));
            return None;
        }
        alloc_of(&probe)
    })
}

fn alloc_of(buffer: &Bound<'_, PyByteArray>) -> Option<isize> {
    buffer
        .call_method0(intern!(buffer.py(), "__alloc__"))
        .ok()?
        .extract()
        .ok()
}

/// `PyByteArray_Resize(buffer, len)`; on failure the exception stays set.
fn resize(buffer: &Bound<'_, PyByteArray>, len: usize) -> bool {
    let Ok(len) = isize::try_from(len) else {
        return false;
    };
    // SAFETY: `buffer` is a live exact bytearray; PyByteArray_Resize resizes
    // it or fails (exports, no memory) leaving it as it was.
    unsafe { ffi::PyByteArray_Resize(buffer.as_ptr(), len) == 0 }
}

/// Empties the buffer after a read that did not fill it as announced (back
/// to the state checked by `recv_direct`'s preconditions).
fn empty_again(buffer: &Bound<'_, PyByteArray>) {
    if !resize(buffer, 0) {
        // Shrinking only fails when realloc does: the length is what
        // matters then; the allocation is left as it is.
        drop(PyErr::take(buffer.py()));
    }
}

/// The read through the reader's own buffer, or `Err(target)` untouched
/// when a precondition does not hold (the caller then takes the shared
/// buffer path). `max` caps the read as the transport's maximum read size.
pub(crate) fn recv_direct<'py>(
    fd: RawFd,
    target: StreamTarget<'py>,
    max: usize,
) -> Result<io::Result<Received<'py>>, StreamTarget<'py>> {
    let StreamTarget::Reader { buffer, .. } = &target else {
        return Err(target);
    };
    let py = buffer.py();
    if !buffer.is_empty() || emptied_alloc(py).is_none() || alloc_of(buffer) != emptied_alloc(py) {
        return Err(target);
    }
    let want = match sockio::queued(fd) {
        Ok(n) if n > 0 => n.min(max).min(SHARED_READ_MAX),
        // Nothing queued (end of stream, a pending error, a spurious wake
        // up) or no FIONREAD: the ordinary recv reports it as stock would.
        _ => return Err(target),
    };
    // The same growth as `extend` of `want` bytes into the empty buffer,
    // behind the same heap reservation as the copying path.
    if !read_reserve::with_reserve(want, || resize(buffer, want)) {
        drop(PyErr::take(py));
        return Err(target);
    }
    // SAFETY: the resize succeeded, so the storage holds `want` writable
    // bytes; no Python code runs (nothing else can touch the object) until
    // the recv returns and the length is settled below.
    let got = unsafe {
        let dst = ffi::PyByteArray_AsString(buffer.as_ptr()).cast::<u8>();
        sockio::recv_raw(fd, dst, want)
    };
    Ok(match got {
        Ok(got) if got == want => Ok(Received::Streamed(target, got)),
        Ok(0) => {
            empty_again(buffer);
            Ok(Received::Eof)
        }
        Ok(got) => Ok(short_read(target, got)),
        Err(e) => {
            empty_again(buffer);
            Err(e)
        }
    })
}

/// Fewer bytes than announced: they move to the shared buffer, the reader's
/// buffer is emptied, and the ordinary append grows it as `extend(data)`.
fn short_read(target: StreamTarget<'_>, got: usize) -> Received<'_> {
    let buffer = match &target {
        StreamTarget::Reader { buffer, .. } => buffer.clone(),
        StreamTarget::Discard => return Received::Streamed(target, got),
    };
    with_read_buffer(|buf| {
        // SAFETY: the buffer's storage holds at least `got` initialised
        // bytes (the kernel wrote them); `buf` is Rust memory of
        // SHARED_READ_MAX >= got bytes, distinct from it.
        unsafe {
            let src = ffi::PyByteArray_AsString(buffer.as_ptr()).cast::<u8>();
            std::ptr::copy_nonoverlapping(src, buf.as_mut_ptr(), got);
        }
        empty_again(&buffer);
        match target.append(&buf[..got]) {
            Ok(()) => Received::Streamed(target, got),
            Err(bytes) => Received::Bytes(bytes),
        }
    })
}
