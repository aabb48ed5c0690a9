//! One datagram in or out: natively for plain sockets of the families the
//! native path handles, through the socket's own methods otherwise.

use std::io;
use std::os::fd::RawFd;

use ferroloop_engine::sockio;
use pyo3::exceptions::{PyAttributeError, PyOSError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::{DatagramTransport, Sent, MAX_SIZE};
use crate::pyhelpers::is_exit;
use crate::read_buffer::ReadBuffer;
use crate::sock_calls::{is_would_block, os_error, with_read_buffer};
use crate::sockaddr::{addr_from_py, addr_to_py, recvfrom, sendto, RawAddr};

impl DatagramTransport {
    /// Whether sends go to the connected peer (`send`) rather than to an
    /// address (`sendto`): asyncio's `self._extra['peername']` test.
    pub(super) fn connected(&self, py: Python<'_>) -> PyResult<bool> {
        let extra = self.st(py).extra.clone_ref(py);
        match extra.bind(py).get_item(intern!(py, "peername"))? {
            Some(peer) => peer.is_truthy(),
            None => Err(pyo3::exceptions::PyKeyError::new_err("peername")),
        }
    }

    /// One datagram out: `sock.send(data)` when connected, else
    /// `sock.sendto(data, addr)`; natively when possible.
    pub(super) fn send_one(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        addr: &Bound<'_, PyAny>,
    ) -> Sent {
        let connected = match self.connected(py) {
            Ok(c) => c,
            Err(e) => return Sent::Failed(e),
        };
        let (sock, cached_peer) = {
            let st = self.st(py);
            let cached = match &st.last_peer {
                Some((raw, obj)) if raw.len > 0 && obj.bind(py).is(addr) => Some(*raw),
                _ => None,
            };
            (st.sock.as_ref().map(|s| s.clone_ref(py)), cached)
        };
        let method = if connected { "send" } else { "sendto" };
        let Some(sock) = sock else {
            return Sent::Failed(PyAttributeError::new_err(format!(
                "'NoneType' object has no attribute '{method}'"
            )));
        };
        if let Some(family) = self.native_family {
            let target = if connected {
                None
            } else {
                match cached_peer.or_else(|| addr_from_py(family, addr)) {
                    Some(raw) => Some(raw),
                    None => return self.send_via_python(py, sock.bind(py), data, addr, method),
                }
            };
            let result = if let Ok(bytes) = data.cast::<PyBytes>() {
                native_send(self.fd, bytes.as_bytes(), target.as_ref())
            } else {
                match ReadBuffer::get(data) {
                    Some(buf) => native_send(self.fd, buf.as_slice(), target.as_ref()),
                    None => return self.send_via_python(py, sock.bind(py), data, addr, method),
                }
            };
            return match result {
                Ok(_) => Sent::Done,
                Err(e) if sockio::would_block(&e) => Sent::WouldBlock,
                Err(e) => Sent::Failed(os_error(e)),
            };
        }
        self.send_via_python(py, sock.bind(py), data, addr, method)
    }

    pub(super) fn send_via_python(
        &self,
        py: Python<'_>,
        sock: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
        addr: &Bound<'_, PyAny>,
        method: &str,
    ) -> Sent {
        let result = if method == "send" {
            sock.call_method1(intern!(py, "send"), (data,))
        } else {
            sock.call_method1(intern!(py, "sendto"), (data, addr))
        };
        match result {
            Ok(_) => Sent::Done,
            Err(e) if is_would_block(py, &e) => Sent::WouldBlock,
            Err(e) => Sent::Failed(e),
        }
    }

    /// A failed send as asyncio handles it: OSError to error_received,
    /// SystemExit / KeyboardInterrupt out, anything else fatal.
    pub(super) fn send_failed(slf: &Bound<'_, Self>, err: PyErr) -> PyResult<()> {
        let py = slf.py();
        if err.is_instance_of::<PyOSError>(py) {
            let protocol = slf.get().protocol_or_err(py, "error_received")?;
            protocol
                .bind(py)
                .call_method1(intern!(py, "error_received"), (err.into_value(py),))?;
            return Ok(());
        }
        if is_exit(py, &err) {
            return Err(err);
        }
        Self::fatal_error(slf, err, "Fatal write error on datagram transport")
    }

    /// One datagram in through the socket's own `recvfrom` (subclasses,
    /// other families).
    pub(super) fn recv_via_python<'py>(
        &self,
        py: Python<'py>,
        sock: &Bound<'py, PyAny>,
    ) -> PyResult<Option<(Bound<'py, PyAny>, Bound<'py, PyAny>)>> {
        match sock.call_method1(intern!(py, "recvfrom"), (MAX_SIZE,)) {
            Ok(pair) => {
                let (data, addr): (Bound<'py, PyAny>, Bound<'py, PyAny>) = pair.extract()?;
                Ok(Some((data, addr)))
            }
            Err(e) if is_would_block(py, &e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// One datagram in natively: the data and the sender's address object
    /// (the previous sender's, when it is the same).
    pub(super) fn recv_native<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<Option<(Bound<'py, PyAny>, Bound<'py, PyAny>)>> {
        let received = with_read_buffer(|buf| {
            recvfrom(self.fd, &mut buf[..MAX_SIZE])
                .map(|(n, addr)| (PyBytes::new(py, &buf[..n]), addr))
        });
        let (data, raw) = match received {
            Ok(v) => v,
            Err(e) if sockio::would_block(&e) => return Ok(None),
            Err(e) => return Err(os_error(e)),
        };
        let cached = {
            let st = self.st(py);
            match &st.last_peer {
                Some((last, obj)) if last.same_as(&raw) => Some(obj.clone_ref(py)),
                _ => None,
            }
        };
        let addr = match cached {
            Some(obj) => obj,
            None => {
                let obj = addr_to_py(py, &raw)?;
                let old = self.st(py).last_peer.replace((raw, obj.clone_ref(py)));
                drop(old);
                obj
            }
        };
        Ok(Some((data.into_any(), addr.into_bound(py))))
    }
}

fn native_send(fd: RawFd, data: &[u8], target: Option<&RawAddr>) -> io::Result<usize> {
    match target {
        None => sockio::send(fd, data),
        Some(addr) => sendto(fd, data, addr),
    }
}
