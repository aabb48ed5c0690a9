//! The per-record half of asyncio's `sslproto.SSLProtocol`, native.
//!
//! ferroloop's TLS is asyncio's own SSLProtocol state machine: handshake,
//! shutdown, timeouts and error routing stay its Python code, so their
//! exceptions, messages and ordering are the stock ones. What runs for every
//! record is here instead: taking ciphertext from the socket transport
//! (`get_buffer` / `buffer_updated`), decrypting into the app protocol's
//! `data_received` (`_do_read`), encrypting app writes (`_write_appdata`,
//! `_do_write`), handing ciphertext to the socket transport
//! (`_process_outgoing`) and both flow-control checks. Each method mirrors
//! the stock method of the same name line by line;
//! `ferroloop._tls_protocol.SSLProtocol` puts `TlsProtocolCore` in front of
//! asyncio's `SSLProtocol` in its MRO, so the stock Python code calls these
//! too.
//!
//! The attributes the record path reads (`_state`, `_sslobj`, the BIOs, the
//! write backlog, the flow-control flags and water marks, ...) are native
//! fields exposed under their stock names, so SSLProtocol's Python code and
//! the native methods share one copy; the rest stay in the instance dict.
//!
//! Two shortcuts, both invisible to the app:
//! - After a record is decrypted, the read loop stops when neither the
//!   incoming BIO nor OpenSSL holds anything more (the BIO is empty, and the
//!   read returned less than `max_size` or `pending()` is 0), instead of
//!   calling `read()` once more only to catch `SSLWantReadError` (building
//!   that exception costs more than decrypting a 1 KiB record). With
//!   OpenSSL's read-ahead off (Python never turns it on) that read could
//!   only fail.
//! - `ssl.SSLObject.read/write/pending` are one-line Python wrappers over
//!   the C object in its `_sslobj`; for exactly `ssl.SSLObject` (not a
//!   context's custom `sslobject_class`) the C methods are called directly.

use pyo3::exceptions::{PyAttributeError, PyException, PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyMemoryView, PyTuple};
use pyo3::{intern, PyTraverseError, PyVisit};

use crate::pyhelpers::{asyncio_logger, is_exit, slice_of};

/// The asyncio and ssl objects the hot path compares against, imported once.
struct SslProtoRefs {
    /// `SSLProtocolState` members.
    do_handshake: Py<PyAny>,
    wrapped: Py<PyAny>,
    flushing: Py<PyAny>,
    shutdown: Py<PyAny>,
    unwrapped: Py<PyAny>,
    /// `sslproto.SSLAgainErrors`: (SSLWantReadError, SSLSyscallError).
    again_errors: Py<PyAny>,
    /// `ssl.SSLObject`, whose methods may be bypassed for its C `_sslobj`.
    ssl_object_type: Py<PyAny>,
    /// `constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES`.
    conn_lost_log_threshold: i64,
}

static REFS: PyOnceLock<SslProtoRefs> = PyOnceLock::new();

fn refs(py: Python<'_>) -> PyResult<&SslProtoRefs> {
    REFS.get_or_try_init(py, || {
        let sslproto = py.import("asyncio.sslproto")?;
        let state = sslproto.getattr("SSLProtocolState")?;
        let member = |name: &str| -> PyResult<Py<PyAny>> { Ok(state.getattr(name)?.unbind()) };
        Ok::<_, PyErr>(SslProtoRefs {
            do_handshake: member("DO_HANDSHAKE")?,
            wrapped: member("WRAPPED")?,
            flushing: member("FLUSHING")?,
            shutdown: member("SHUTDOWN")?,
            unwrapped: member("UNWRAPPED")?,
            again_errors: sslproto.getattr("SSLAgainErrors")?.unbind(),
            ssl_object_type: py.import("ssl")?.getattr("SSLObject")?.unbind(),
            conn_lost_log_threshold: py
                .import("asyncio.constants")?
                .getattr("LOG_THRESHOLD_FOR_CONNLOST_WRITES")?
                .extract()?,
        })
    })
}

/// `except SSLAgainErrors`.
fn is_again(py: Python<'_>, err: &PyErr) -> PyResult<bool> {
    Ok(err.matches(py, refs(py)?.again_errors.bind(py))?)
}

/// `except Exception as ex: self._fatal_error(ex, 'Fatal error on SSL protocol')`;
/// BaseExceptions that are not Exceptions propagate.
fn route_to_fatal_error(this: &Bound<'_, PyAny>, err: PyErr) -> PyResult<()> {
    let py = this.py();
    if !err.is_instance_of::<PyException>(py) {
        return Err(err);
    }
    this.call_method1(
        intern!(py, "_fatal_error"),
        (err.into_value(py), "Fatal error on SSL protocol"),
    )?;
    Ok(())
}

/// `bio.pending`: bytes written into a MemoryBIO and not yet read out.
fn bio_pending(bio: &Bound<'_, PyAny>) -> PyResult<i64> {
    bio.getattr(intern!(bio.py(), "pending"))?.extract()
}

/// `b''.join(chunks)` for the decrypted chunks of one read.
fn join_chunks<'py>(py: Python<'py>, chunks: &[Bound<'py, PyAny>]) -> PyResult<Bound<'py, PyAny>> {
    let mut parts = Vec::with_capacity(chunks.len());
    for chunk in chunks {
        match chunk.cast::<PyBytes>() {
            Ok(bytes) => parts.push(bytes.as_bytes()),
            // Not bytes (a custom sslobject_class): let join decide.
            Err(_) => {
                return PyBytes::new(py, b"").call_method1(intern!(py, "join"), (chunks.to_vec(),))
            }
        }
    }
    let total = parts.iter().map(|p| p.len()).sum();
    let joined = PyBytes::new_with(py, total, |out| {
        let mut at = 0;
        for part in &parts {
            out[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        Ok(())
    })?;
    Ok(joined.into_any())
}

/// `obj` when set, else the AttributeError reading an unset attribute raises.
fn present<'py>(
    py: Python<'py>,
    obj: &Option<Py<PyAny>>,
    name: &str,
) -> PyResult<Bound<'py, PyAny>> {
    match obj {
        Some(obj) => Ok(obj.bind(py).clone()),
        None => Err(PyAttributeError::new_err(name.to_owned())),
    }
}

/// A water mark as a number to compare with (they are ints, or floats
/// when the user passed floats).
fn water_mark(py: Python<'_>, mark: &Option<Py<PyAny>>, name: &str) -> PyResult<f64> {
    present(py, mark, name)?.extract()
}

/// Native base of `ferroloop._tls_protocol.SSLProtocol`.
///
/// The fields are SSLProtocol's instance attributes that the record path
/// reads, stored natively and exposed under their stock names (data
/// descriptors win over the instance dict, so SSLProtocol's Python code
/// reads and writes these). Borrows of `self` are never held across a call
/// into Python: the app's callbacks may set these attributes re-entrantly.
#[pyclass(subclass, module = "ferroloop._ferroloop")]
#[derive(Default)]
pub struct TlsProtocolCore {
    #[pyo3(get, set, name = "_state")]
    state: Option<Py<PyAny>>,
    #[pyo3(get, name = "_sslobj")]
    sslobj: Option<Py<PyAny>>,
    /// The object whose read/write/pending do the TLS work: the C `_sslobj`
    /// inside a plain `ssl.SSLObject`, else the SSLObject itself.
    engine: Option<Py<PyAny>>,
    #[pyo3(get, set, name = "_incoming")]
    incoming: Option<Py<PyAny>>,
    #[pyo3(get, set, name = "_outgoing")]
    outgoing: Option<Py<PyAny>>,
    #[pyo3(get, set, name = "_write_backlog")]
    write_backlog: Option<Py<PyAny>>,
    #[pyo3(get, set, name = "_write_buffer_size")]
    write_buffer_size: i64,
    #[pyo3(get, set, name = "_transport")]
    transport: Option<Py<PyAny>>,
    #[pyo3(get, set, name = "_app_protocol")]
    app_protocol: Option<Py<PyAny>>,
    #[pyo3(get, set, name = "_app_protocol_is_buffer")]
    app_protocol_is_buffer: bool,
    #[pyo3(get, set, name = "_app_reading_paused")]
    app_reading_paused: bool,
    #[pyo3(get, set, name = "_app_writing_paused")]
    app_writing_paused: bool,
    #[pyo3(get, set, name = "_ssl_reading_paused")]
    ssl_reading_paused: bool,
    #[pyo3(get, set, name = "_ssl_writing_paused")]
    ssl_writing_paused: bool,
    #[pyo3(get, set, name = "_incoming_high_water")]
    incoming_high_water: Option<Py<PyAny>>,
    #[pyo3(get, set, name = "_incoming_low_water")]
    incoming_low_water: Option<Py<PyAny>>,
    #[pyo3(get, set, name = "_outgoing_high_water")]
    outgoing_high_water: Option<Py<PyAny>>,
    #[pyo3(get, set, name = "_outgoing_low_water")]
    outgoing_low_water: Option<Py<PyAny>>,
}

/// Which SSLProtocolState `_state` holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    DoHandshake,
    Wrapped,
    Flushing,
    Shutdown,
    Unwrapped,
    Other,
}

impl TlsProtocolCore {
    /// SSLProtocol.get_buffer; the socket transport calls it directly.
    pub(crate) fn get_buffer_impl<'py>(
        slf: &Bound<'py, Self>,
        n: isize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let this = slf.as_any();
        let max_size: isize = this.getattr(intern!(py, "max_size"))?.extract()?;
        let want = if n <= 0 || n > max_size { max_size } else { n };
        if (this.getattr(intern!(py, "_ssl_buffer"))?.len()? as isize) < want {
            let buffer = PyByteArray::new_with(py, want as usize, |_| Ok(()))?;
            let view = PyMemoryView::from(&buffer)?;
            this.setattr(intern!(py, "_ssl_buffer"), buffer)?;
            this.setattr(intern!(py, "_ssl_buffer_view"), view)?;
        }
        this.getattr(intern!(py, "_ssl_buffer_view"))
    }

    /// SSLProtocol.buffer_updated, for Python callers.
    pub(crate) fn buffer_updated_impl(slf: &Bound<'_, Self>, nbytes: isize) -> PyResult<()> {
        let py = slf.py();
        let received = slice_of(
            &slf.getattr(intern!(py, "_ssl_buffer_view"))?,
            None,
            Some(nbytes),
        )?;
        Self::incoming(slf)?.call_method1(intern!(py, "write"), (received,))?;
        Self::advance(slf)
    }

    /// The size of one read from the socket: what `get_buffer(-1)` asks
    /// for (`max_size`).
    pub(crate) fn read_size(slf: &Bound<'_, Self>) -> PyResult<usize> {
        let max_size: isize = slf.getattr(intern!(slf.py(), "max_size"))?.extract()?;
        if max_size <= 0 {
            // get_buffer would return an empty view.
            return Err(PyRuntimeError::new_err(
                "get_buffer() returned an empty buffer",
            ));
        }
        Ok(max_size as usize)
    }

    /// The incoming BIO, for the socket transport's read (`tls_read`).
    pub(crate) fn incoming_bio<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Self::incoming(slf)
    }

    /// The rest of buffer_updated: what the state machine does with new
    /// ciphertext in the incoming BIO. The socket transport calls it after
    /// its own read into the BIO (`tls_read`), which skips `_ssl_buffer`.
    pub(crate) fn advance(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        match Self::state(slf)? {
            State::DoHandshake => drop(slf.call_method0(intern!(py, "_do_handshake"))?),
            State::Wrapped => Self::do_read(slf)?,
            State::Flushing => drop(slf.call_method0(intern!(py, "_do_flush"))?),
            State::Shutdown => drop(slf.call_method0(intern!(py, "_do_shutdown"))?),
            State::Unwrapped | State::Other => {}
        }
        Ok(())
    }

    fn state(slf: &Bound<'_, Self>) -> PyResult<State> {
        let py = slf.py();
        let refs = refs(py)?;
        let me = slf.borrow();
        let Some(state) = me.state.as_ref() else {
            return Ok(State::Other);
        };
        let state = state.bind(py);
        Ok(if state.is(refs.wrapped.bind(py)) {
            State::Wrapped
        } else if state.is(refs.do_handshake.bind(py)) {
            State::DoHandshake
        } else if state.is(refs.flushing.bind(py)) {
            State::Flushing
        } else if state.is(refs.shutdown.bind(py)) {
            State::Shutdown
        } else if state.is(refs.unwrapped.bind(py)) {
            State::Unwrapped
        } else {
            State::Other
        })
    }

    fn engine<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        present(slf.py(), &slf.borrow().engine, "_sslobj")
    }

    fn incoming<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        present(slf.py(), &slf.borrow().incoming, "_incoming")
    }

    fn outgoing<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        present(slf.py(), &slf.borrow().outgoing, "_outgoing")
    }

    fn write_backlog<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        present(slf.py(), &slf.borrow().write_backlog, "_write_backlog")
    }

    fn transport<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        // Stock code reads self._transport, None after connection_lost.
        Ok(match &slf.borrow().transport {
            Some(t) => t.bind(slf.py()).clone(),
            None => slf.py().None().into_bound(slf.py()),
        })
    }

    fn app_protocol<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        Ok(match &slf.borrow().app_protocol {
            Some(p) => p.bind(slf.py()).clone(),
            None => slf.py().None().into_bound(slf.py()),
        })
    }

    /// Calls `protocol.pause_writing()` / `resume_writing()`; a failure goes to
    /// the loop's exception handler, as in SSLProtocol._control_app_writing.
    fn call_flow_control(slf: &Bound<'_, Self>, method: &str) -> PyResult<()> {
        let py = slf.py();
        let Err(err) = Self::app_protocol(slf)?.call_method0(method) else {
            return Ok(());
        };
        if is_exit(py, &err) {
            return Err(err);
        }
        let this = slf.as_any();
        let context = PyDict::new(py);
        context.set_item("message", format!("protocol.{method}() failed"))?;
        context.set_item("exception", err.into_value(py))?;
        context.set_item("transport", this.getattr(intern!(py, "_app_transport"))?)?;
        context.set_item("protocol", this)?;
        this.getattr(intern!(py, "_loop"))?
            .call_method1(intern!(py, "call_exception_handler"), (context,))?;
        Ok(())
    }

    /// SSLProtocol._do_read__copied: decrypt everything available and hand
    /// it to the app protocol in one `data_received`.
    fn read_copied(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.as_any();
        let engine = Self::engine(slf)?;
        let incoming = Self::incoming(slf)?;
        let max_size = this.getattr(intern!(py, "max_size"))?;
        let max_len: usize = max_size.extract()?;
        let mut chunks: Vec<Bound<'_, PyAny>> = Vec::new();
        let mut close_notify = false;
        loop {
            match engine.call_method1(intern!(py, "read"), (&max_size,)) {
                Ok(chunk) => {
                    if !chunk.is_truthy()? {
                        close_notify = true;
                        break;
                    }
                    // A read shorter than max_size emptied its record, so
                    // OpenSSL holds nothing decrypted: ask pending() only
                    // after a full one.
                    let full = chunk.len()? >= max_len;
                    chunks.push(chunk);
                    let more = bio_pending(&incoming)? > 0
                        || (full
                            && engine
                                .call_method0(intern!(py, "pending"))?
                                .extract::<i64>()?
                                > 0);
                    if !more {
                        break; // the next read() could only raise SSLWantReadError
                    }
                }
                Err(err) if is_again(py, &err)? => break,
                Err(err) => return Err(err),
            }
        }
        if !chunks.is_empty() {
            let data = if chunks.len() == 1 {
                chunks.swap_remove(0)
            } else {
                join_chunks(py, &chunks)?
            };
            Self::app_protocol(slf)?.call_method1(intern!(py, "data_received"), (data,))?;
        }
        if close_notify {
            this.call_method0(intern!(py, "_call_eof_received"))?;
            this.call_method0(intern!(py, "_start_shutdown"))?;
        }
        Ok(())
    }

    fn do_read(slf: &Bound<'_, Self>) -> PyResult<()> {
        if !matches!(Self::state(slf)?, State::Wrapped | State::Flushing) {
            return Ok(());
        }
        Self::do_read_unguarded(slf).or_else(|err| route_to_fatal_error(slf.as_any(), err))
    }

    fn do_read_unguarded(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let (reading_paused, buffered) = {
            let me = slf.borrow();
            (me.app_reading_paused, me.app_protocol_is_buffer)
        };
        if !reading_paused {
            if buffered {
                slf.call_method0(intern!(py, "_do_read__buffered"))?;
            } else {
                Self::read_copied(slf)?;
            }
            if Self::write_backlog(slf)?.is_truthy()? {
                Self::do_write(slf)?;
            } else {
                Self::process_outgoing(slf)?;
            }
        }
        Self::control_ssl_reading(slf)
    }

    /// SSLProtocol._do_write: encrypt the write backlog into the outgoing BIO.
    fn do_write(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let engine = Self::engine(slf)?;
        let backlog = Self::write_backlog(slf)?;
        while backlog.is_truthy()? {
            let data = backlog.get_item(0)?;
            let count: i64 = match engine.call_method1(intern!(py, "write"), (&data,)) {
                Ok(count) => count.extract()?,
                Err(err) if is_again(py, &err)? => break,
                Err(err) => return Err(err),
            };
            let data_len = data.len()? as i64;
            if count < data_len {
                let rest = slice_of(&data, Some(count as isize), None)?;
                backlog.set_item(0, rest)?;
                slf.borrow_mut().write_buffer_size -= count;
            } else {
                backlog.del_item(0)?;
                slf.borrow_mut().write_buffer_size -= data_len;
            }
        }
        Self::process_outgoing(slf)
    }

    /// SSLProtocol._process_outgoing: hand the ciphertext to the socket transport.
    fn process_outgoing(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        if !slf.borrow().ssl_writing_paused {
            let data = Self::outgoing(slf)?.call_method0(intern!(py, "read"))?;
            if data.len()? > 0 {
                Self::transport(slf)?.call_method1(intern!(py, "write"), (data,))?;
            }
        }
        Self::control_app_writing(slf)
    }

    fn control_app_writing(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let size = (bio_pending(&Self::outgoing(slf)?)? + slf.borrow().write_buffer_size) as f64;
        let pause = {
            let me = slf.borrow();
            if !me.app_writing_paused
                && size >= water_mark(py, &me.outgoing_high_water, "_outgoing_high_water")?
            {
                Some(true)
            } else if me.app_writing_paused
                && size <= water_mark(py, &me.outgoing_low_water, "_outgoing_low_water")?
            {
                Some(false)
            } else {
                None
            }
        };
        match pause {
            Some(pause) => {
                slf.borrow_mut().app_writing_paused = pause;
                let method = if pause {
                    "pause_writing"
                } else {
                    "resume_writing"
                };
                Self::call_flow_control(slf, method)
            }
            None => Ok(()),
        }
    }

    fn control_ssl_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let size = bio_pending(&Self::incoming(slf)?)? as f64;
        let pause = {
            let me = slf.borrow();
            if !me.ssl_reading_paused
                && size >= water_mark(py, &me.incoming_high_water, "_incoming_high_water")?
            {
                Some(true)
            } else if me.ssl_reading_paused
                && size <= water_mark(py, &me.incoming_low_water, "_incoming_low_water")?
            {
                Some(false)
            } else {
                None
            }
        };
        if let Some(pause) = pause {
            slf.borrow_mut().ssl_reading_paused = pause;
            let method = if pause {
                intern!(py, "pause_reading")
            } else {
                intern!(py, "resume_reading")
            };
            Self::transport(slf)?.call_method0(method)?;
        }
        Ok(())
    }

    /// Appends to the write backlog (`_write_buffer_size` counts it).
    fn queue_write(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>, len: i64) -> PyResult<()> {
        Self::write_backlog(slf)?.call_method1(intern!(slf.py(), "append"), (data,))?;
        slf.borrow_mut().write_buffer_size += len;
        Ok(())
    }

    /// One app write while WRAPPED with nothing queued: encrypt it at once and
    /// queue only what OpenSSL did not take. Same outcome as appending it to
    /// the backlog and running `_do_write`, without the deque round trip.
    fn write_one_now(slf: &Bound<'_, Self>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let data_len = data.len()? as i64;
        match Self::engine(slf)?.call_method1(intern!(py, "write"), (data,)) {
            Ok(count) => {
                let count: i64 = count.extract()?;
                if count < data_len {
                    let rest = slice_of(data, Some(count as isize), None)?;
                    Self::queue_write(slf, &rest, data_len - count)?;
                }
            }
            Err(err) => {
                Self::queue_write(slf, data, data_len)?;
                if !is_again(py, &err)? {
                    return Err(err);
                }
            }
        }
        Self::process_outgoing(slf)
    }

    pub(crate) fn write_appdata(
        slf: &Bound<'_, Self>,
        list_of_data: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let py = slf.py();
        let state = Self::state(slf)?;
        if matches!(state, State::Flushing | State::Shutdown | State::Unwrapped) {
            let conn_lost: i64 = slf.getattr(intern!(py, "_conn_lost"))?.extract()?;
            if conn_lost >= refs(py)?.conn_lost_log_threshold {
                asyncio_logger(py)?.call_method1("warning", ("SSL connection is closed",))?;
            }
            return slf.setattr(intern!(py, "_conn_lost"), conn_lost + 1);
        }
        if state == State::Wrapped {
            if let Ok(single) = list_of_data.cast::<PyTuple>() {
                if single.len() == 1 && !Self::write_backlog(slf)?.is_truthy()? {
                    return Self::write_one_now(slf, &single.get_item(0)?)
                        .or_else(|err| route_to_fatal_error(slf.as_any(), err));
                }
            }
        }
        for data in list_of_data.try_iter()? {
            let data = data?;
            let len = data.len()? as i64;
            Self::queue_write(slf, &data, len)?;
        }
        if state == State::Wrapped {
            Self::do_write(slf).or_else(|err| route_to_fatal_error(slf.as_any(), err))?;
        }
        Ok(())
    }
}

#[pymethods]
impl TlsProtocolCore {
    /// Accepts and ignores SSLProtocol's constructor arguments; its Python
    /// `__init__` sets everything up.
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> Self {
        TlsProtocolCore::default()
    }

    #[setter(_sslobj)]
    fn set_sslobj(&mut self, py: Python<'_>, sslobj: Py<PyAny>) -> PyResult<()> {
        let bound = sslobj.bind(py);
        let mut engine = sslobj.clone_ref(py);
        if bound.get_type().is(refs(py)?.ssl_object_type.bind(py)) {
            if let Ok(inner) = bound.getattr(intern!(py, "_sslobj")) {
                if !inner.is_none() {
                    engine = inner.unbind();
                }
            }
        }
        self.engine = Some(engine);
        self.sslobj = Some(sslobj);
        Ok(())
    }

    fn get_buffer<'py>(slf: &Bound<'py, Self>, n: isize) -> PyResult<Bound<'py, PyAny>> {
        Self::get_buffer_impl(slf, n)
    }

    fn buffer_updated(slf: &Bound<'_, Self>, nbytes: isize) -> PyResult<()> {
        Self::buffer_updated_impl(slf, nbytes)
    }

    #[pyo3(name = "_do_read")]
    fn py_do_read(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::do_read(slf)
    }

    #[pyo3(name = "_do_read__copied")]
    fn py_read_copied(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::read_copied(slf)
    }

    #[pyo3(name = "_do_write")]
    fn py_do_write(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::do_write(slf)
    }

    #[pyo3(name = "_process_outgoing")]
    fn py_process_outgoing(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::process_outgoing(slf)
    }

    #[pyo3(name = "_control_app_writing")]
    fn py_control_app_writing(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::control_app_writing(slf)
    }

    #[pyo3(name = "_control_ssl_reading")]
    fn py_control_ssl_reading(slf: &Bound<'_, Self>) -> PyResult<()> {
        Self::control_ssl_reading(slf)
    }

    #[pyo3(name = "_write_appdata")]
    fn py_write_appdata(slf: &Bound<'_, Self>, list_of_data: &Bound<'_, PyAny>) -> PyResult<()> {
        Self::write_appdata(slf, list_of_data)
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        for obj in self.refs() {
            visit.call(obj)?;
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        *self = TlsProtocolCore {
            write_buffer_size: self.write_buffer_size,
            ..TlsProtocolCore::default()
        };
    }
}

impl TlsProtocolCore {
    fn refs(&self) -> impl Iterator<Item = &Py<PyAny>> {
        [
            &self.state,
            &self.sslobj,
            &self.engine,
            &self.incoming,
            &self.outgoing,
            &self.write_backlog,
            &self.transport,
            &self.app_protocol,
            &self.incoming_high_water,
            &self.incoming_low_water,
            &self.outgoing_high_water,
            &self.outgoing_low_water,
        ]
        .into_iter()
        .flatten()
    }
}

/// `_SSLProtocolTransport.write(data)` for the app transport of a
/// ferroloop SSLProtocol: the stock checks, then straight into `_write_appdata`.
#[pyfunction]
pub(crate) fn tls_app_write(
    ssl_protocol: &Bound<'_, PyAny>,
    data: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let py = data.py();
    if !(data.is_instance_of::<PyBytes>()
        || data.is_instance_of::<PyByteArray>()
        || data.is_instance_of::<PyMemoryView>())
    {
        return Err(PyTypeError::new_err(format!(
            "data: expecting a bytes-like instance, got {}",
            data.get_type().name()?
        )));
    }
    if !data.is_truthy()? {
        return Ok(());
    }
    let single = PyTuple::new(py, [data])?;
    match ssl_protocol.cast::<TlsProtocolCore>() {
        Ok(core) => TlsProtocolCore::write_appdata(core, single.as_any()),
        Err(_) => {
            ssl_protocol.call_method1(intern!(py, "_write_appdata"), (single,))?;
            Ok(())
        }
    }
}
