//! The "ceiling" echo server of the network benchmarks: what the kernel allows
//! one thread to do with no interpreter and no event-loop library on top.
//!
//! `ceiling [--port 0] [--lifetime 300]` listens on 127.0.0.1, prints one JSON
//! line `{"port": P, "loop": "ceiling", "style": "echo"}` once it accepts
//! connections, then echoes until it is killed (net.py sends SIGTERM) or
//! `--lifetime` seconds pass.
//!
//! It does per readiness event what a Python loop's echo does at best, and no
//! more, so that a loop's requests/s and CPU per request can be read as a
//! fraction of it:
//! * level-triggered epoll (as asyncio's selector, uvloop's libuv and ferroloop
//!   use it), non-blocking sockets, TCP_NODELAY;
//! * one `recv` of up to 64 KiB (the servers' read size) per readable event and
//!   one `send` of what it read; a partial send keeps the rest, waits for
//!   EPOLLOUT instead of EPOLLIN (no reading while the peer is not reading:
//!   the same back-pressure a transport's write buffer gives) and sends it with
//!   one `send` per writable event;
//! * one `accept` per readable event on the listener.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

const READ_SIZE: usize = 65536;
const MAX_EVENTS: usize = 256;
const LISTENER: u64 = u64::MAX;

const USAGE: &str = "usage: ceiling [--port 0] [--lifetime 300]";

struct Conn {
    stream: TcpStream,
    /// Echo bytes the last `send` did not take; while non-empty the connection
    /// waits for EPOLLOUT and does not read.
    pending: Vec<u8>,
}

/// An epoll instance used level-triggered; closed on drop.
struct Epoll {
    fd: RawFd,
}

impl Epoll {
    fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers; the result is checked.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Epoll { fd })
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a valid epoll_event for the duration of the call
        // (the kernel copies it); `self.fd` is an open epoll descriptor.
        if unsafe { libc::epoll_ctl(self.fd, op, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn wait(&self, events: &mut [libc::epoll_event], timeout_ms: i32) -> io::Result<usize> {
        // SAFETY: the kernel writes at most `events.len()` entries into the
        // slice, which stays borrowed mutably for the call.
        let n = unsafe {
            libc::epoll_wait(
                self.fd,
                events.as_mut_ptr(),
                events.len() as libc::c_int,
                timeout_ms,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(err);
        }
        Ok(n as usize)
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        // SAFETY: we own this descriptor and close it once.
        unsafe { libc::close(self.fd) };
    }
}

struct Config {
    port: u16,
    lifetime: Duration,
}

fn parse_args(args: &[String]) -> Result<Config, String> {
    let mut cfg = Config {
        port: 0,
        lifetime: Duration::from_secs(300),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--port" => cfg.port = value()?.parse().map_err(|_| "bad --port".to_string())?,
            "--lifetime" => {
                let secs: f64 = value()?.parse().map_err(|_| "bad --lifetime".to_string())?;
                if !(secs > 0.0 && secs <= 86_400.0) {
                    return Err("--lifetime must be in (0, 86400]".into());
                }
                cfg.lifetime = Duration::from_secs_f64(secs);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok(cfg)
}

/// What one readiness event on a connection leads to.
enum Next {
    Keep,
    /// The socket now waits for EPOLLOUT (a partial send left bytes).
    WantWrite,
    /// Back to EPOLLIN (the pending bytes are gone).
    WantRead,
    Close,
}

fn on_readable(conn: &mut Conn, buf: &mut [u8]) -> Next {
    let n = match conn.stream.read(buf) {
        Ok(0) => return Next::Close,
        Ok(n) => n,
        Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
            return Next::Keep
        }
        Err(_) => return Next::Close,
    };
    match conn.stream.write(&buf[..n]) {
        Ok(sent) if sent == n => Next::Keep,
        Ok(sent) => {
            conn.pending.extend_from_slice(&buf[sent..n]);
            Next::WantWrite
        }
        Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
            conn.pending.extend_from_slice(&buf[..n]);
            Next::WantWrite
        }
        Err(_) => Next::Close,
    }
}

fn on_writable(conn: &mut Conn) -> Next {
    match conn.stream.write(&conn.pending) {
        Ok(sent) => {
            conn.pending.drain(..sent);
            if conn.pending.is_empty() {
                Next::WantRead
            } else {
                Next::Keep
            }
        }
        Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
            Next::Keep
        }
        Err(_) => Next::Close,
    }
}

fn serve(cfg: &Config) -> io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", cfg.port))?;
    listener.set_nonblocking(true)?;
    let epoll = Epoll::new()?;
    let readable = libc::EPOLLIN as u32;
    let writable = libc::EPOLLOUT as u32;
    epoll.ctl(
        libc::EPOLL_CTL_ADD,
        listener.as_raw_fd(),
        readable,
        LISTENER,
    )?;
    println!(
        "{{\"port\":{},\"loop\":\"ceiling\",\"style\":\"echo\"}}",
        listener.local_addr()?.port()
    );
    io::stdout().flush()?;

    // Connections indexed by file descriptor (small, dense integers).
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; MAX_EVENTS];
    let mut buf = vec![0u8; READ_SIZE];
    let deadline = Instant::now() + cfg.lifetime;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        let timeout_ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        let n = epoll.wait(&mut events, timeout_ms)?;
        for ev in &events[..n] {
            let (token, flags) = (ev.u64, ev.events);
            if token == LISTENER {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(true)?;
                        stream.set_nodelay(true)?;
                        let fd = stream.as_raw_fd();
                        epoll.ctl(libc::EPOLL_CTL_ADD, fd, readable, fd as u64)?;
                        let slot = fd as usize;
                        if conns.len() <= slot {
                            conns.resize_with(slot + 1, || None);
                        }
                        conns[slot] = Some(Conn {
                            stream,
                            pending: Vec::new(),
                        });
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == ErrorKind::ConnectionAborted => {}
                    Err(e) => return Err(e),
                }
                continue;
            }
            let slot = token as usize;
            let Some(conn) = conns.get_mut(slot).and_then(Option::as_mut) else {
                continue; // closed earlier in this batch
            };
            let next = if conn.pending.is_empty() {
                on_readable(conn, &mut buf)
            } else if flags & (writable | (libc::EPOLLERR | libc::EPOLLHUP) as u32) != 0 {
                on_writable(conn)
            } else {
                Next::Keep
            };
            let fd = conn.stream.as_raw_fd();
            match next {
                Next::Keep => {}
                Next::WantWrite => epoll.ctl(libc::EPOLL_CTL_MOD, fd, writable, token)?,
                Next::WantRead => epoll.ctl(libc::EPOLL_CTL_MOD, fd, readable, token)?,
                Next::Close => {
                    // Dropping the stream closes the fd, which also removes it
                    // from the epoll set.
                    conns[slot] = None;
                }
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = parse_args(&args).unwrap_or_else(|e| {
        eprintln!("ceiling: error: {e}");
        std::process::exit(1);
    });
    if let Err(e) = serve(&cfg) {
        eprintln!("ceiling: error: {e}");
        std::process::exit(1);
    }
}
