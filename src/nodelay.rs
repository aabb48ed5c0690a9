//! `asyncio.base_events._set_nodelay(sock)` for the socket transport:
//! TCP_NODELAY on TCP sockets.
//!
//! The stock function reads `sock.family` and `sock.type`, which
//! `socket.socket` turns into `AddressFamily` / `SocketKind` enum members on
//! every read: two enum lookups per connection that cost more than the rest
//! of the check. For a plain `socket.socket` this reads the ints from
//! `_socket.socket`'s own members instead; any other object (a subclass that
//! may override them, a test's stand-in) goes to the stock function.

use std::os::fd::RawFd;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::sock_calls::os_error;
use crate::transports::socket::cached;

static SET_NODELAY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// `socket.socket` and `_socket.socket`'s `family`, `type`, `proto` members.
struct SocketMembers {
    socket_type: Py<PyAny>,
    family: Py<PyAny>,
    kind: Py<PyAny>,
    proto: Py<PyAny>,
}

static MEMBERS: PyOnceLock<SocketMembers> = PyOnceLock::new();

fn members(py: Python<'_>) -> PyResult<&SocketMembers> {
    MEMBERS.get_or_try_init(py, || {
        let base = py.import("_socket")?.getattr("socket")?;
        let member = |name: &str| -> PyResult<Py<PyAny>> {
            Ok(base.getattr("__dict__")?.get_item(name)?.unbind())
        };
        Ok::<_, PyErr>(SocketMembers {
            socket_type: py.import("socket")?.getattr("socket")?.unbind(),
            family: member("family")?,
            kind: member("type")?,
            proto: member("proto")?,
        })
    })
}

/// Whether a plain `socket.socket` is a stream socket (`_socket.socket`'s
/// `type` member, without the `SocketKind` enum conversion).
pub(crate) fn is_stream_socket(sock: &Bound<'_, PyAny>) -> PyResult<bool> {
    let py = sock.py();
    let kind: i32 = members(py)?
        .kind
        .bind(py)
        .call_method1(intern!(py, "__get__"), (sock,))?
        .extract()?;
    Ok(kind == libc::SOCK_STREAM)
}

/// Sets TCP_NODELAY on `sock` (whose fd is `fd`) when it is a TCP socket,
/// as `_set_nodelay(sock)` does.
pub(crate) fn set_nodelay(sock: &Bound<'_, PyAny>, fd: RawFd) -> PyResult<()> {
    let py = sock.py();
    let m = members(py)?;
    if !sock.get_type().is(m.socket_type.bind(py)) {
        cached(py, &SET_NODELAY, "asyncio.base_events", "_set_nodelay")?.call1((sock,))?;
        return Ok(());
    }
    let get = |member: &Py<PyAny>| -> PyResult<i32> {
        member
            .bind(py)
            .call_method1(intern!(py, "__get__"), (sock,))?
            .extract()
    };
    let family = get(&m.family)?;
    if !(family == libc::AF_INET || family == libc::AF_INET6)
        || get(&m.kind)? != libc::SOCK_STREAM
        || get(&m.proto)? != libc::IPPROTO_TCP
    {
        return Ok(());
    }
    let on: libc::c_int = 1;
    // SAFETY: `on` is a live c_int for the call and the length passed is
    // its size; the kernel validates `fd` (kept open by `sock`).
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(os_error(std::io::Error::last_os_error()));
    }
    Ok(())
}
