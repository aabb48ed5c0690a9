//! `SocketTransport`: asyncio's stream transport over a connected socket
//! (selector_events' `_SelectorSocketTransport`), native.
//!
//! Reads go straight from the kernel into one shared buffer and reach the
//! protocol as a `bytes` (`data_received`) or land in the protocol's own
//! buffer (`BufferedProtocol.get_buffer` / `buffer_updated`). Writes are sent
//! at once; only what the kernel does not take is copied into a Rust buffer
//! and flushed when the socket becomes writable, with asyncio's flow control
//! (`pause_writing` / `resume_writing` at the water marks).
//!
//! All state lives in a `GilCell`; as everywhere in ferroloop, no Python code
//! runs while it is borrowed: methods copy out what they need, release the
//! borrow, then call the protocol.
//!
//! The pieces: `read` (the read path: starting and stopping reads, one read
//! handed to the protocol, EOF), `write` (the write path: sending at once,
//! queueing the rest), `flow` (write flow control), `lifecycle` (closing,
//! aborting, fatal errors, drop), `pymethods` (the Python-facing methods);
//! here the state, its accessors and the server slot.

mod flow;
mod lifecycle;
mod pymethods;
mod read;
mod write;

use std::os::fd::RawFd;

use ferroloop_engine::WriteQueue;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyTuple;

use crate::extra_info::ExtraInfo;
use crate::gil_cell::GilCell;
use crate::loop_core::LoopCore;
use crate::read_into_bytes::LargeReads;
use crate::write_limits::WriteLimits;
use write::BytesChunk;

/// asyncio's `max_size`: the most one read asks the kernel for.
const MAX_READ: usize = crate::sock_calls::SHARED_READ_MAX;
/// asyncio's `constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES`.
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u32 = 5;

struct TransportState {
    /// The loop (`core`) is no longer reported (`_loop` is None) once the
    /// connection is lost.
    loop_released: bool,
    /// The Python socket object, kept alive (it owns the fd) until the
    /// connection is lost.
    sock: Option<Py<PyAny>>,
    protocol: Option<Py<PyAny>>,
    /// The protocol is a `BufferedProtocol`.
    buffered: bool,
    protocol_connected: bool,
    /// get_extra_info()'s mapping, built on first use.
    extra: ExtraInfo,
    server: Option<Py<PyAny>>,
    buffer: WriteQueue<BytesChunk>,
    /// Non-zero once connection_lost is scheduled; counts writes after that.
    conn_lost: u32,
    closing: bool,
    /// pause_reading() was called.
    paused: bool,
    /// write_eof() was called.
    eof: bool,
    protocol_paused: bool,
    /// The last read into a stock stream reader was large: the next one asks
    /// the kernel how much is queued and receives into the reader's buffer
    /// (`src/stream_direct.rs`).
    large_stream_reads: bool,
    limits: WriteLimits,
    /// What few connections have, allocated when one is set.
    rare: Option<Box<Rare>>,
}

struct Rare {
    /// sendfile's "buffer drained" future.
    empty_waiter: Option<Py<PyAny>>,
    /// The `contextvars.Context` every callback of this transport runs in
    /// (3.15's `context=`); None: each callback copies the context current
    /// when it is scheduled, as before 3.15.
    context: Option<Py<PyAny>>,
}

impl TransportState {
    fn empty_waiter(&self) -> Option<&Py<PyAny>> {
        self.rare.as_ref().and_then(|r| r.empty_waiter.as_ref())
    }

    fn context(&self) -> Option<&Py<PyAny>> {
        self.rare.as_ref().and_then(|r| r.context.as_ref())
    }

    /// Replaces the sendfile waiter; returns the old one (to drop unborrowed).
    fn set_empty_waiter(&mut self, waiter: Option<Py<PyAny>>) -> Option<Py<PyAny>> {
        match (&mut self.rare, waiter) {
            (None, None) => None,
            (Some(rare), waiter) => std::mem::replace(&mut rare.empty_waiter, waiter),
            (rare @ None, waiter) => {
                *rare = Some(Box::new(Rare {
                    empty_waiter: waiter,
                    context: None,
                }));
                None
            }
        }
    }
}

/// `subclass`: the class the loop instantiates is the Python subclass
/// `ferroloop._socket_transport.SocketTransport`, whose instances have a
/// `__dict__` so that methods can be patched per instance
/// (`mock.patch.object(transport, "write")`), as on the stock loop's
/// transports. Only Python-level lookups see such a patch; the native paths
/// call the Rust methods directly. The subclass's `__init__` calls
/// `_connect()`, which schedules connection_made.
#[pyclass(frozen, weakref, subclass, module = "ferroloop._ferroloop")]
pub struct SocketTransport {
    fd: RawFd,
    core: Py<LoopCore>,
    state: GilCell<TransportState>,
    /// The last read was large: the next one goes straight into a `bytes`.
    large_reads: LargeReads,
}

static BUFFERED_PROTOCOL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static SET_RESULT_UNLESS_CANCELLED: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

pub(crate) fn cached<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    module: &str,
    name: &str,
) -> PyResult<&'py Bound<'py, PyAny>> {
    Ok(cell
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(py.import(module)?.getattr(name)?.unbind())
        })?
        .bind(py))
}

impl SocketTransport {
    fn st(&self, py: Python<'_>) -> crate::gil_cell::GilRefMut<'_, TransportState> {
        self.state.borrow_mut(py)
    }

    /// The loop object, None once the connection is lost.
    fn loop_obj(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        if self.st(py).loop_released {
            return None;
        }
        Some(self.core.clone_ref(py).into_any())
    }

    fn core_ref(&self) -> &LoopCore {
        self.core.get()
    }

    fn is_debug(&self) -> bool {
        self.core_ref().is_debug()
    }

    fn call_soon(
        &self,
        py: Python<'_>,
        callback: &Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        let context = self.context(py);
        self.core_ref()
            .call_soon(py, callback, args, context)
            .map(drop)
    }

    fn context<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        self.st(py).context().map(|c| c.bind(py).clone())
    }

    fn protocol(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.st(py).protocol.as_ref().map(|p| p.clone_ref(py))
    }
}

/// `server._attach()` / `server._detach()`: from Python 3.13 on they take the
/// transport (for `Server.close_clients` / `abort_clients`).
fn server_slot(
    py: Python<'_>,
    server: &Bound<'_, PyAny>,
    method: &str,
    transport: &Bound<'_, SocketTransport>,
) -> PyResult<()> {
    if py.version_info() >= (3, 13) {
        server.call_method1(method, (transport,))?;
    } else {
        server.call_method0(method)?;
    }
    Ok(())
}
