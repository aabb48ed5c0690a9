//! Received bytes delivered natively to a stock `asyncio.StreamReader`.
//!
//! `asyncio.open_connection` / `start_server` put asyncio's
//! `StreamReaderProtocol` on the transport, whose `data_received(data)` hands
//! `data` to `StreamReader.feed_data`. Both are pure Python (and must stay
//! the classes users get), so each read used to cost a `bytes` object of the
//! read's size plus three Python frames. When the protocol and its reader are
//! exactly the stock classes, unpatched, this module does what those frames
//! do, in the same order, on the same objects:
//!
//! ```text
//! StreamReaderProtocol.data_received(data):
//!     reader = self._stream_reader          # self._stream_reader_wr() or None
//!     if reader is not None: reader.feed_data(data)
//! StreamReader.feed_data(data):             # data is never empty here
//!     assert not self._eof
//!     self._buffer.extend(data)
//!     self._wakeup_waiter()                 # waiter = self._waiter; if not None:
//!                                           #   self._waiter = None
//!                                           #   if not waiter.cancelled(): waiter.set_result(None)
//!     if self._transport is not None and not self._paused
//!             and len(self._buffer) > 2 * self._limit:
//!         try: self._transport.pause_reading()
//!         except NotImplementedError: self._transport = None
//!         else: self._paused = True
//! ```
//!
//! (the same in CPython 3.11 through 3.15), except that the bytes go from the
//! read buffer straight into `_buffer` (or, after a large read, from the
//! kernel straight into it: `stream_direct`). Anything that is not the simple,
//! stock state makes `probe` answer None and the transport calls
//! `protocol.data_received(bytes)` as before: a subclass of either class, a
//! `data_received` / `feed_data` / `_wakeup_waiter` replaced on the class or
//! on the instance, a weakref subclass, `_eof` not exactly False, a
//! `_buffer` that is not an exact bytearray. Every check happens before
//! anything is changed; after the bytes are in `_buffer`, the rest runs
//! through ordinary Python attribute access and calls, as the Python code
//! would, so a custom waiter or transport sees the same calls.

use std::os::fd::RawFd;

use ferroloop_engine::sockio;
use pyo3::exceptions::PyNotImplementedError;
use pyo3::ffi;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyInt, PyString, PyWeakrefReference};

use crate::read_reserve;
use crate::sock_calls::{with_read_buffer, SHARED_READ_MAX};
use crate::stream_direct;

extern "C" {
    // The bound-method type and its accessor (public C API since Python 3.0;
    // PyO3 does not declare them).
    static PyMethod_Type: ffi::PyTypeObject;
    fn PyMethod_Function(method: *mut ffi::PyObject) -> *mut ffi::PyObject;
    fn PyMethod_Self(method: *mut ffi::PyObject) -> *mut ffi::PyObject;
}

/// The stock classes and the functions whose behaviour is reproduced here,
/// taken from `asyncio.streams` the first time a stream reads.
struct StockStreams {
    protocol_type: Py<PyAny>,
    reader_type: Py<PyAny>,
    data_received: Py<PyAny>,
    stream_reader_property: Py<PyAny>,
    feed_data: Py<PyAny>,
    wakeup_waiter: Py<PyAny>,
}

/// None when asyncio.streams was already altered when first looked at
/// (a function not named as asyncio's own): then every read takes the
/// ordinary Python call.
static STOCK: PyOnceLock<Option<StockStreams>> = PyOnceLock::new();

fn stock(py: Python<'_>) -> Option<&StockStreams> {
    STOCK
        .get_or_init(py, || load_stock(py).ok().flatten())
        .as_ref()
}

fn load_stock(py: Python<'_>) -> PyResult<Option<StockStreams>> {
    let streams = py.import("asyncio.streams")?;
    let protocol_type = streams.getattr("StreamReaderProtocol")?;
    let reader_type = streams.getattr("StreamReader")?;
    // From the classes' own __dict__, checked to be asyncio's functions: a
    // patch applied before this point must not be taken for the original.
    let own = |cls: &Bound<'_, PyAny>, name: &str, qualname: &str| -> PyResult<Option<Py<PyAny>>> {
        let value = cls.getattr("__dict__")?.get_item(name)?;
        let fget_or_self = if name == "_stream_reader" {
            value.getattr("fget")?
        } else {
            value.clone()
        };
        let module: String = fget_or_self.getattr("__module__")?.extract()?;
        let actual: String = fget_or_self.getattr("__qualname__")?.extract()?;
        Ok((module == "asyncio.streams" && actual == qualname).then(|| value.unbind()))
    };
    let (Some(data_received), Some(stream_reader_property), Some(feed_data), Some(wakeup_waiter)) = (
        own(
            &protocol_type,
            "data_received",
            "StreamReaderProtocol.data_received",
        )?,
        own(
            &protocol_type,
            "_stream_reader",
            "StreamReaderProtocol._stream_reader",
        )?,
        own(&reader_type, "feed_data", "StreamReader.feed_data")?,
        own(
            &reader_type,
            "_wakeup_waiter",
            "StreamReader._wakeup_waiter",
        )?,
    ) else {
        return Ok(None);
    };
    Ok(Some(StockStreams {
        protocol_type: protocol_type.unbind(),
        reader_type: reader_type.unbind(),
        data_received,
        stream_reader_property,
        feed_data,
        wakeup_waiter,
    }))
}

/// Whether `obj.name` is the stock function `func` bound to `obj` (so neither
/// the class nor the instance replaced it).
fn is_stock_method(obj: &Bound<'_, PyAny>, name: &Bound<'_, PyString>, func: &Py<PyAny>) -> bool {
    let Ok(method) = obj.getattr(name) else {
        return false;
    };
    let ptr = method.as_ptr();
    // SAFETY: `ptr` is a live object (held by `method`); reading its type and
    // taking the address of the static PyMethod_Type reads no mutable state.
    let is_method = unsafe { ffi::Py_TYPE(ptr).cast_const() == std::ptr::addr_of!(PyMethod_Type) };
    if !is_method {
        return false;
    }
    // SAFETY: `ptr` is a bound method (checked above); both accessors return
    // borrowed references kept alive by `method`.
    unsafe { PyMethod_Function(ptr) == func.as_ptr() && PyMethod_Self(ptr) == obj.as_ptr() }
}

/// Where `data_received` would put the bytes.
pub(crate) enum StreamTarget<'py> {
    /// The protocol's reader is gone (None or collected): the stock
    /// `data_received` does nothing with the data.
    Discard,
    /// The reader, in the state where `feed_data` only appends and wakes.
    Reader {
        reader: Bound<'py, PyAny>,
        buffer: Bound<'py, PyByteArray>,
    },
}

/// One read on a stream transport.
pub(crate) enum Received<'py> {
    /// For `protocol.data_received(bytes)` (empty: end of stream).
    Bytes(Bound<'py, PyBytes>),
    /// This many bytes appended to the reader's buffer (or discarded):
    /// `finish` follows.
    Streamed(StreamTarget<'py>, usize),
    /// End of stream.
    Eof,
}

/// One `recv` of at most `max` bytes (`max <= SHARED_READ_MAX`) through the
/// shared read buffer, appended to the target's reader. When the reader's
/// buffer refuses to grow (a live export of it, or no memory), the bytes
/// come back as a `bytes` for the ordinary `data_received` call, which then
/// raises that error from Python as the stock loop would.
/// `ask_queued`: the previous read was large, so first try receiving straight
/// into the reader's buffer (`stream_direct`).
pub(crate) fn recv_into_stream<'py>(
    fd: RawFd,
    target: StreamTarget<'py>,
    max: usize,
    ask_queued: bool,
) -> std::io::Result<Received<'py>> {
    let target = if ask_queued {
        match stream_direct::recv_direct(fd, target, max) {
            Ok(received) => return received,
            Err(target) => target,
        }
    } else {
        target
    };
    with_read_buffer(|buf| {
        let got = sockio::recv(fd, &mut buf[..max.min(SHARED_READ_MAX)])?;
        if got == 0 {
            return Ok(Received::Eof);
        }
        Ok(match target.append(&buf[..got]) {
            Ok(()) => Received::Streamed(target, got),
            Err(bytes) => Received::Bytes(bytes),
        })
    })
}

/// The target when `protocol` is the stock `StreamReaderProtocol` in the
/// simple state; None means: call `protocol.data_received(data)`.
/// Reads attributes only; runs no Python code of the protocol's or reader's.
pub(crate) fn probe<'py>(protocol: &Bound<'py, PyAny>) -> Option<StreamTarget<'py>> {
    let py = protocol.py();
    let stock = stock(py)?;
    let protocol_type = protocol.get_type();
    if !protocol_type.is(stock.protocol_type.bind(py))
        || !is_stock_method(protocol, intern!(py, "data_received"), &stock.data_received)
    {
        return None;
    }
    // `_stream_reader` is a property on the class: an instance attribute
    // cannot shadow it, only the class can replace it.
    let property = protocol_type.getattr(intern!(py, "_stream_reader")).ok()?;
    if !property.is(stock.stream_reader_property.bind(py)) {
        return None;
    }
    let reference = protocol.getattr(intern!(py, "_stream_reader_wr")).ok()?;
    if reference.is_none() {
        return Some(StreamTarget::Discard);
    }
    if !reference.get_type().is(py.get_type::<PyWeakrefReference>()) {
        return None;
    }
    let Some(reader) = reference.cast::<PyWeakrefReference>().ok()?.upgrade() else {
        return Some(StreamTarget::Discard);
    };
    if !reader.get_type().is(stock.reader_type.bind(py))
        || !is_stock_method(&reader, intern!(py, "feed_data"), &stock.feed_data)
        || !is_stock_method(&reader, intern!(py, "_wakeup_waiter"), &stock.wakeup_waiter)
    {
        return None;
    }
    // `assert not self._eof`: only exactly False is known to pass.
    if !reader
        .getattr(intern!(py, "_eof"))
        .ok()?
        .is(pyo3::types::PyBool::new(py, false))
    {
        return None;
    }
    let buffer = reader
        .getattr(intern!(py, "_buffer"))
        .ok()?
        .cast_into_exact::<PyByteArray>()
        .ok()?;
    Some(StreamTarget::Reader { reader, buffer })
}

impl<'py> StreamTarget<'py> {
    /// `self._buffer.extend(data)`: grows the bytearray as `extend` does
    /// (one `PyByteArray_Resize` to the new size) and copies `data` in.
    /// Growing an empty buffer for a large read holds a heap reservation
    /// meanwhile (`read_reserve`), which changes where the storage lands,
    /// not what the bytearray holds.
    /// Runs no Python code, so it may be called with the shared read buffer
    /// borrowed.
    pub(crate) fn append(&self, data: &[u8]) -> Result<(), Bound<'py, PyBytes>> {
        let StreamTarget::Reader { buffer, .. } = self else {
            return Ok(());
        };
        let py = buffer.py();
        let old_len = buffer.len();
        let new_len = old_len
            .checked_add(data.len())
            .and_then(|n| isize::try_from(n).ok());
        let resize = |new_len: isize| {
            // SAFETY: `buffer` is a live exact bytearray; PyByteArray_Resize
            // either resizes it or fails (exports, no memory) leaving it as it
            // was, with an exception set that is cleared below.
            unsafe { ffi::PyByteArray_Resize(buffer.as_ptr(), new_len) == 0 }
        };
        let grown = new_len.is_some_and(|new_len| {
            if old_len == 0 {
                // A fresh storage for the whole read: placed behind a
                // short-lived reservation (src/read_reserve.rs).
                read_reserve::with_reserve(data.len(), || resize(new_len))
            } else {
                resize(new_len)
            }
        });
        if !grown {
            drop(PyErr::take(py));
            return Err(PyBytes::new(py, data));
        }
        // SAFETY: the resize succeeded, so the bytearray's storage holds
        // `old_len + data.len()` bytes; the tail `old_len..` is ours to fill
        // and no Python code runs (nothing else can touch the object) until
        // the copy is done. `data` is Rust memory, never the bytearray's own.
        unsafe {
            let dst = ffi::PyByteArray_AsString(buffer.as_ptr()).cast::<u8>();
            std::ptr::copy_nonoverlapping(data.as_ptr(), dst.add(old_len), data.len());
        }
        Ok(())
    }

    /// The rest of `feed_data` once the bytes are in: wake the waiting read
    /// and pause the transport past twice the limit. An error is what the
    /// stock `data_received` would have raised.
    pub(crate) fn finish(self) -> PyResult<()> {
        let StreamTarget::Reader { reader, .. } = self else {
            return Ok(());
        };
        let py = reader.py();
        let waiter = reader.getattr(intern!(py, "_waiter"))?;
        if !waiter.is_none() {
            reader.setattr(intern!(py, "_waiter"), py.None())?;
            if !waiter.call_method0(intern!(py, "cancelled"))?.is_truthy()? {
                waiter.call_method1(intern!(py, "set_result"), (py.None(),))?;
            }
        }
        let transport = reader.getattr(intern!(py, "_transport"))?;
        if transport.is_none() || reader.getattr(intern!(py, "_paused"))?.is_truthy()? {
            return Ok(());
        }
        if !over_twice_limit(&reader)? {
            return Ok(());
        }
        match transport.call_method0(intern!(py, "pause_reading")) {
            Ok(_) => reader.setattr(intern!(py, "_paused"), true),
            Err(err) if err.is_instance_of::<PyNotImplementedError>(py) => {
                reader.setattr(intern!(py, "_transport"), py.None())
            }
            Err(err) => Err(err),
        }
    }
}

/// `len(self._buffer) > 2 * self._limit`, with Python's arithmetic (the
/// attributes may have changed under a custom waiter's `set_result`).
fn over_twice_limit(reader: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = reader.py();
    let length = reader.getattr(intern!(py, "_buffer"))?.len()?;
    let limit = reader.getattr(intern!(py, "_limit"))?;
    if let Ok(limit) = limit.cast_exact::<PyInt>() {
        if let Ok(limit) = limit.extract::<i64>() {
            return Ok(length as i128 > 2 * i128::from(limit));
        }
    }
    PyInt::new(py, length).gt(PyInt::new(py, 2).mul(limit)?)
}
