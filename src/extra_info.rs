//! A stream transport's `get_extra_info()` mapping, built on first use.
//!
//! The stock transport fills a dict at construction: the caller's extra
//! (a server's `{'peername': addr}`), `socket` (a `TransportSocket`),
//! `sockname` and `peername`. Most connections never ask, and those objects
//! (the dict, the wrapper, two address tuples with their strings and ints)
//! were most of an idle connection's memory. Here the addresses are read
//! from the kernel at construction as the stock transport reads them (so a
//! later reset or close cannot change the answer), an IPv4 connection's
//! pair is kept inline in the transport (`ExtraInfo::Inet`, 24 bytes with
//! the socket), and the dict is made the first time anyone asks for a key.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::RawFd;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use crate::transports::socket::cached;

static TRANSPORT_SOCKET: pyo3::sync::PyOnceLock<Py<PyAny>> = pyo3::sync::PyOnceLock::new();

/// A socket address as `getsockname()` / `getpeername()` returned it.
enum Name {
    /// AF_INET, as `(host, port)` once asked for.
    V4(SocketAddrV4),
    /// Any other family: the object Python's socket module made.
    Obj(Py<PyAny>),
    /// The call failed: the stock transport records None.
    Missing,
}

impl Name {
    fn to_py(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(match self {
            Name::V4(addr) => {
                let host = PyString::new(py, &addr.ip().to_string());
                PyTuple::new(
                    py,
                    [host.into_any(), addr.port().into_pyobject(py)?.into_any()],
                )?
                .into_any()
                .unbind()
            }
            Name::Obj(obj) => obj.clone_ref(py),
            Name::Missing => py.None(),
        })
    }

    /// The socket's own or peer address: natively for AF_INET, else through
    /// the Python socket object (`method` is `getsockname`/`getpeername`).
    fn read(sock: &Bound<'_, PyAny>, fd: RawFd, peer: bool, method: &Bound<'_, PyString>) -> Self {
        match ipv4_name(fd, peer) {
            Some(Ok(addr)) => Name::V4(addr),
            // Not AF_INET (or the call failed): Python's answer, or None.
            _ => sock
                .call_method0(method)
                .map_or(Name::Missing, |v| Name::Obj(v.unbind())),
        }
    }

    /// Whether `obj` is the tuple `to_py` would make (an accepted
    /// connection's `peername` from `accept()`).
    fn same_as(&self, obj: &Bound<'_, PyAny>) -> bool {
        let Name::V4(addr) = self else { return false };
        let Ok(tuple) = obj.cast_exact::<PyTuple>() else {
            return false;
        };
        if tuple.len() != 2 {
            return false;
        }
        let (Ok(host), Ok(port)) = (tuple.get_item(0), tuple.get_item(1)) else {
            return false;
        };
        let host_ok = host
            .cast_exact::<PyString>()
            .ok()
            .and_then(|h| h.to_str().ok().map(|h| h == addr.ip().to_string()))
            .unwrap_or(false);
        let port_ok = port.cast_exact::<pyo3::types::PyInt>().is_ok()
            && port.extract::<u16>().ok() == Some(addr.port());
        host_ok && port_ok
    }
}

/// `getsockname`/`getpeername` of `fd` when it is an AF_INET socket:
/// None for another family, Some(Err) when the call fails.
fn ipv4_name(fd: RawFd, peer: bool) -> Option<std::io::Result<SocketAddrV4>> {
    // SAFETY: sockaddr_in is plain data; all-zero is a valid value.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let ptr = std::ptr::addr_of_mut!(addr).cast::<libc::sockaddr>();
    // SAFETY: `ptr` points to a sockaddr_in of `len` bytes that lives across
    // the call; the kernel writes at most `len` bytes and updates `len`.
    let rc = unsafe {
        if peer {
            libc::getpeername(fd, ptr, &mut len)
        } else {
            libc::getsockname(fd, ptr, &mut len)
        }
    };
    if rc != 0 {
        return Some(Err(std::io::Error::last_os_error()));
    }
    if i32::from(addr.sin_family) != libc::AF_INET
        || (len as usize) < std::mem::size_of::<libc::sockaddr_in>()
    {
        return None;
    }
    Some(Ok(SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
        u16::from_be(addr.sin_port),
    )))
}

/// The not-yet-built mapping.
pub(crate) struct Pending {
    /// A copy of the caller's `extra`, unless it was only a `peername`
    /// equal to what the kernel reports (then `peername` holds it).
    given: Option<Py<PyDict>>,
    /// The socket object `socket` wraps (the one the transport was made
    /// with, even once closed, as the stock transport's wrapper keeps it).
    sock: Py<PyAny>,
    sockname: Name,
    /// Used unless `given` has a `peername`.
    peername: Name,
}

pub(crate) enum ExtraInfo {
    /// The common case inline (24 bytes): an IPv4 connection with no extra
    /// entries from the caller besides the peername the kernel reports.
    Inet {
        sock: Py<PyAny>,
        sockname: Inet4,
        peername: Inet4,
    },
    Pending(Box<Pending>),
    Ready(Py<PyDict>),
}

/// An IPv4 address and port, unaligned-friendly (packs beside the tag).
#[derive(Clone, Copy)]
pub(crate) struct Inet4 {
    ip: [u8; 4],
    port: [u8; 2],
}

impl From<SocketAddrV4> for Inet4 {
    fn from(a: SocketAddrV4) -> Self {
        Inet4 {
            ip: a.ip().octets(),
            port: a.port().to_ne_bytes(),
        }
    }
}

impl From<Inet4> for SocketAddrV4 {
    fn from(a: Inet4) -> Self {
        SocketAddrV4::new(Ipv4Addr::from(a.ip), u16::from_ne_bytes(a.port))
    }
}

impl ExtraInfo {
    /// Reads the addresses now, as the stock transport's constructor does.
    pub(crate) fn capture(
        sock: &Bound<'_, PyAny>,
        fd: RawFd,
        extra: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let py = sock.py();
        let extra = extra.filter(|e| !e.is_none());
        let sockname = Name::read(sock, fd, false, intern!(py, "getsockname"));
        // A server passes {'peername': addr} from accept(); when that is what
        // the kernel reports anyway, the compact form replaces it.
        let given_peer = match extra.map(|e| e.cast_exact::<PyDict>()) {
            Some(Ok(d)) if d.len() == 1 => d.get_item(intern!(py, "peername"))?,
            _ => None,
        };
        if let Name::V4(local) = sockname {
            // No extra, or only the peername the kernel reports.
            let compact = match (&extra, &given_peer) {
                (None, _) => true,
                (Some(_), Some(_)) => true,
                (Some(_), None) => false,
            };
            if compact {
                if let Some(Ok(peer)) = ipv4_name(fd, true) {
                    let same = given_peer
                        .as_ref()
                        .is_none_or(|given| Name::V4(peer).same_as(given));
                    if same {
                        return Ok(ExtraInfo::Inet {
                            sock: sock.clone().unbind(),
                            sockname: local.into(),
                            peername: peer.into(),
                        });
                    }
                }
            }
        }
        let given = match extra {
            Some(extra) => {
                let copy = PyDict::new(py);
                copy.call_method1(intern!(py, "update"), (extra,))?;
                Some(copy)
            }
            None => None,
        };
        let has_peer = match &given {
            Some(d) => d.contains(intern!(py, "peername"))?,
            None => false,
        };
        let peername = if has_peer {
            Name::Missing
        } else {
            Name::read(sock, fd, true, intern!(py, "getpeername"))
        };
        Ok(Self::pending(
            given.map(Bound::unbind),
            sock,
            sockname,
            peername,
        ))
    }

    fn pending(
        given: Option<Py<PyDict>>,
        sock: &Bound<'_, PyAny>,
        sockname: Name,
        peername: Name,
    ) -> Self {
        ExtraInfo::Pending(Box::new(Pending {
            given,
            sock: sock.clone().unbind(),
            sockname,
            peername,
        }))
    }

    /// The dict if it is built; else what `build` needs, for the caller to
    /// build it with no borrow held (building runs Python code).
    pub(crate) fn ready(&self, py: Python<'_>) -> Result<Py<PyDict>, Box<PendingRef>> {
        match self {
            ExtraInfo::Ready(d) => Ok(d.clone_ref(py)),
            ExtraInfo::Inet {
                sock,
                sockname,
                peername,
            } => Err(Box::new(PendingRef {
                given: None,
                sock: sock.clone_ref(py),
                sockname: Name::V4((*sockname).into()).to_py(py),
                peername: Name::V4((*peername).into()).to_py(py),
            })),
            ExtraInfo::Pending(p) => Err(Box::new(PendingRef {
                given: p.given.as_ref().map(|g| g.clone_ref(py)),
                sock: p.sock.clone_ref(py),
                sockname: p.sockname.to_py(py),
                peername: p.peername.to_py(py),
            })),
        }
    }

    /// Stores the dict `PendingRef::build` made, unless one was stored
    /// meanwhile (by a call from the Python code building ran); returns
    /// the dict in force and the replaced state, to drop unborrowed.
    pub(crate) fn install(
        &mut self,
        py: Python<'_>,
        dict: Py<PyDict>,
    ) -> (Py<PyDict>, Option<Self>) {
        match self {
            ExtraInfo::Ready(current) => (current.clone_ref(py), None),
            ExtraInfo::Pending(_) | ExtraInfo::Inet { .. } => {
                let old = std::mem::replace(self, ExtraInfo::Ready(dict.clone_ref(py)));
                (dict, Some(old))
            }
        }
    }

    pub(crate) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        match self {
            ExtraInfo::Ready(d) => visit.call(d),
            ExtraInfo::Inet { sock, .. } => visit.call(sock),
            ExtraInfo::Pending(p) => {
                if let Some(g) = &p.given {
                    visit.call(g)?;
                }
                visit.call(&p.sock)?;
                for name in [&p.sockname, &p.peername] {
                    if let Name::Obj(o) = name {
                        visit.call(o)?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// What building the dict takes, copied out of the transport's state.
pub(crate) struct PendingRef {
    given: Option<Py<PyDict>>,
    sock: Py<PyAny>,
    sockname: PyResult<Py<PyAny>>,
    peername: PyResult<Py<PyAny>>,
}

impl PendingRef {
    /// The stock transport's dict: the caller's entries, then `socket`,
    /// `sockname`, and `peername` unless the caller gave one.
    pub(crate) fn build(self, py: Python<'_>) -> PyResult<Py<PyDict>> {
        let dict = match self.given {
            Some(g) => g.into_bound(py),
            None => PyDict::new(py),
        };
        let wrapper = cached(py, &TRANSPORT_SOCKET, "asyncio.trsock", "TransportSocket")?
            .call1((self.sock,))?;
        dict.set_item(intern!(py, "socket"), wrapper)?;
        dict.set_item(intern!(py, "sockname"), self.sockname?)?;
        if !dict.contains(intern!(py, "peername"))? {
            dict.set_item(intern!(py, "peername"), self.peername?)?;
        }
        Ok(dict.unbind())
    }
}
