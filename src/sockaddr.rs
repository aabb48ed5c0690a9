//! Socket addresses between the kernel and Python, for datagram sockets:
//! `recvfrom` / `sendto` on raw fds, the Python value of a received address
//! (as CPython's `makesockaddr` builds it) and the kernel form of a numeric
//! `(host, port[, flowinfo, scope_id])` tuple (as `socket.sendto` parses it).
//!
//! Used by the datagram transport and by `loop.sock_recvfrom` /
//! `sock_recvfrom_into` / `sock_sendto`.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::RawFd;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyInt, PyString, PyTuple};

use crate::sock_calls::os_error;

/// A socket address as the kernel reads and writes it.
#[derive(Clone, Copy)]
pub(crate) struct RawAddr {
    pub(crate) storage: libc::sockaddr_storage,
    pub(crate) len: libc::socklen_t,
}

impl RawAddr {
    pub(crate) fn zeroed() -> Self {
        RawAddr {
            // SAFETY: sockaddr_storage is plain data; all zeroes is a valid
            // (AF_UNSPEC) value.
            storage: unsafe { std::mem::zeroed() },
            len: 0,
        }
    }

    pub(crate) fn family(&self) -> i32 {
        i32::from(self.storage.ss_family)
    }

    /// The whole storage as bytes.
    pub(crate) fn storage_bytes(&self) -> &[u8] {
        // SAFETY: `storage` is a live, fully initialised plain-data struct of
        // size_of::<sockaddr_storage>() bytes, borrowed for the slice's life.
        unsafe {
            std::slice::from_raw_parts(
                (&self.storage as *const libc::sockaddr_storage).cast::<u8>(),
                std::mem::size_of::<libc::sockaddr_storage>(),
            )
        }
    }

    /// The address's meaningful bytes (`len` of them).
    pub(crate) fn bytes(&self) -> &[u8] {
        let all = self.storage_bytes();
        &all[..(self.len as usize).min(all.len())]
    }

    pub(crate) fn same_as(&self, other: &RawAddr) -> bool {
        self.len == other.len && self.bytes() == other.bytes()
    }

    pub(crate) fn from_v4(ip: Ipv4Addr, port: u16) -> Self {
        let mut addr = RawAddr::zeroed();
        // SAFETY: sockaddr_storage is large and aligned enough for any
        // sockaddr, sockaddr_in included; we write through the cast pointer
        // only while `addr` is borrowed mutably.
        let sin = unsafe {
            &mut *(&mut addr.storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in>()
        };
        sin.sin_family = libc::AF_INET as libc::sa_family_t;
        sin.sin_port = port.to_be();
        sin.sin_addr.s_addr = u32::from(ip).to_be();
        addr.len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        addr
    }

    /// As CPython builds it: flowinfo in network order, scope id as is.
    pub(crate) fn from_v6(ip: Ipv6Addr, port: u16, flowinfo: u32, scope_id: u32) -> Self {
        let mut addr = RawAddr::zeroed();
        // SAFETY: as in from_v4, for sockaddr_in6.
        let sin6 = unsafe {
            &mut *(&mut addr.storage as *mut libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
        };
        sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
        sin6.sin6_port = port.to_be();
        sin6.sin6_flowinfo = flowinfo.to_be();
        sin6.sin6_addr.s6_addr = ip.octets();
        sin6.sin6_scope_id = scope_id;
        addr.len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
        addr
    }
}

extern "C" {
    // POSIX (what CPython's makesockaddr formats IPv6 hosts with); the libc
    // crate does not bind it.
    fn inet_ntop(
        af: libc::c_int,
        src: *const libc::c_void,
        dst: *mut libc::c_char,
        size: libc::socklen_t,
    ) -> *const libc::c_char;
}

/// `recvfrom(fd, buf, 0, &addr)`.
pub(crate) fn recvfrom(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, RawAddr)> {
    // SAFETY: `buf` is a live, writable slice of `buf.len()` bytes.
    unsafe { recvfrom_raw(fd, buf.as_mut_ptr(), buf.len()) }
}

/// `recvfrom(fd, ptr, len, 0, &addr)` into memory the caller vouches for.
///
/// # Safety
/// SAFETY: `ptr` must be valid for writes of `len` bytes for the duration of
/// the call (only the kernel writes there).
pub(crate) unsafe fn recvfrom_raw(
    fd: RawFd,
    ptr: *mut u8,
    len: usize,
) -> io::Result<(usize, RawAddr)> {
    if let Some(e) = ferroloop_engine::faults::inject(ferroloop_engine::faults::Call::Recv) {
        return Err(e);
    }
    let mut addr = RawAddr::zeroed();
    addr.len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: the caller guarantees `ptr..ptr+len` is writable; `addr.storage`
    // is writable for `addr.len` bytes and `addr.len` is a valid socklen_t
    // the kernel updates; all outlive the call.
    let n = unsafe {
        libc::recvfrom(
            fd,
            ptr.cast(),
            len,
            0,
            (&mut addr.storage as *mut libc::sockaddr_storage).cast(),
            &mut addr.len,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok((n as usize, addr))
    }
}

/// `sendto(fd, data, 0, addr)`.
pub(crate) fn sendto(fd: RawFd, data: &[u8], addr: &RawAddr) -> io::Result<usize> {
    if let Some(e) = ferroloop_engine::faults::inject(ferroloop_engine::faults::Call::Send) {
        return Err(e);
    }
    // SAFETY: `data` is readable for its length and `addr.storage` holds a
    // socket address of `addr.len` bytes; both outlive the call.
    let n = unsafe {
        libc::sendto(
            fd,
            data.as_ptr().cast(),
            data.len(),
            0,
            (&addr.storage as *const libc::sockaddr_storage).cast(),
            addr.len,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// The Python value of a received address, as CPython's `makesockaddr`
/// builds it for `socket.recvfrom`.
pub(crate) fn addr_to_py(py: Python<'_>, addr: &RawAddr) -> PyResult<Py<PyAny>> {
    if addr.len == 0 {
        return Ok(py.None());
    }
    let raw = addr.storage_bytes();
    match addr.family() {
        libc::AF_INET => {
            // SAFETY: the kernel wrote a sockaddr_in (family AF_INET) into
            // storage, which is aligned and large enough for it.
            let sin = unsafe {
                &*(&addr.storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>()
            };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            let port = u16::from_be(sin.sin_port);
            Ok((ip.to_string(), port)
                .into_pyobject(py)?
                .into_any()
                .unbind())
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe {
                &*(&addr.storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let mut buf = [0 as libc::c_char; 64];
            // SAFETY: `sin6_addr` is a valid in6_addr and `buf` is writable
            // for its length (more than INET6_ADDRSTRLEN); inet_ntop writes a
            // NUL-terminated string there or returns NULL.
            let text = unsafe {
                inet_ntop(
                    libc::AF_INET6,
                    (&sin6.sin6_addr as *const libc::in6_addr).cast(),
                    buf.as_mut_ptr(),
                    buf.len() as libc::socklen_t,
                )
            };
            if text.is_null() {
                return Err(os_error(io::Error::last_os_error()));
            }
            // SAFETY: inet_ntop succeeded, so `buf` holds a C string.
            let host = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
                .to_string_lossy()
                .into_owned();
            Ok((
                host,
                u16::from_be(sin6.sin6_port),
                u32::from_be(sin6.sin6_flowinfo),
                sin6.sin6_scope_id,
            )
                .into_pyobject(py)?
                .into_any()
                .unbind())
        }
        libc::AF_UNIX => {
            let offset = std::mem::size_of::<libc::sa_family_t>();
            let path_len = (addr.len as usize).saturating_sub(offset);
            let path = &raw[offset..];
            if path_len > 0 && path[0] == 0 {
                // Linux abstract namespace: the name as bytes.
                return Ok(PyBytes::new(py, &path[..path_len.min(path.len())])
                    .into_any()
                    .unbind());
            }
            // A NUL-terminated path (the storage was zeroed).
            let end = path.iter().position(|&b| b == 0).unwrap_or(path.len());
            // SAFETY: `path[..end]` is readable; the call copies it into a
            // new str (or returns NULL with an exception set).
            unsafe {
                let obj = ffi::PyUnicode_DecodeFSDefaultAndSize(
                    path.as_ptr().cast(),
                    end as ffi::Py_ssize_t,
                );
                Ok(Bound::from_owned_ptr_or_err(py, obj)?.unbind())
            }
        }
        family => {
            // CPython's fallback: (family, sa_data).
            let sa_data = &raw[2..16];
            Ok((family, PyBytes::new(py, sa_data))
                .into_pyobject(py)?
                .into_any()
                .unbind())
        }
    }
}

/// An exact int in `T`'s range.
pub(crate) fn exact_int<T: for<'a, 'py> FromPyObject<'a, 'py>>(
    obj: &Bound<'_, PyAny>,
) -> Option<T> {
    if !obj.is_exact_instance_of::<PyInt>() {
        return None;
    }
    obj.extract::<T>().ok()
}

/// The socket address of an `(host, port)` / `(host, port, flowinfo,
/// scope_id)` tuple with a numeric host, when the native path can build it
/// exactly as `socket.sendto` would; None sends the tuple through Python.
pub(crate) fn addr_from_py(family: i32, addr: &Bound<'_, PyAny>) -> Option<RawAddr> {
    let tuple = addr.cast::<PyTuple>().ok()?;
    let len = tuple.len();
    if len < 2 {
        return None;
    }
    let host_obj = tuple.get_item(0).ok()?;
    let host = host_obj.cast_exact::<PyString>().ok()?.to_str().ok()?;
    let port: u16 = exact_int(&tuple.get_item(1).ok()?)?;
    match family {
        libc::AF_INET if len == 2 => Some(RawAddr::from_v4(host.parse().ok()?, port)),
        libc::AF_INET6 if len <= 4 => {
            if host.contains('%') {
                return None; // a scope by name: resolved by getaddrinfo
            }
            let flowinfo: u32 = match len {
                2 => 0,
                _ => exact_int(&tuple.get_item(2).ok()?)?,
            };
            if flowinfo > 0xfffff {
                return None;
            }
            let scope_id: u32 = match len {
                4 => exact_int(&tuple.get_item(3).ok()?)?,
                _ => 0,
            };
            Some(RawAddr::from_v6(
                host.parse().ok()?,
                port,
                flowinfo,
                scope_id,
            ))
        }
        _ => None,
    }
}
