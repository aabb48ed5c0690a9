//! Loopback load generator for ferroloop's network benchmarks.
//!
//! ```text
//! loadgen echo --port P [--size 1k] [--connections 32] [--duration 2] [--warmup 0.5]
//! loadgen http --port P [--path /] [--expect-body TEXT] [--connections 32] ...
//! ```
//!
//! * `echo`: every connection sends one message of `--size` bytes, waits until
//!   the whole message has come back (verifying every byte), and repeats.
//!   Writing and reading overlap, so messages larger than the socket buffers
//!   cannot deadlock against a server that echoes while it receives.
//! * `http`: every connection sends `GET PATH HTTP/1.1` on a keep-alive
//!   connection, one request at a time (no pipelining), reads the full
//!   response framed by `Content-Length`, requires status 200 and, with
//!   `--expect-body`, that exact body.
//!
//! The connections are driven by mio (epoll) from `--threads` threads
//! (default 1: on a 2-core machine the other core belongs to the server).
//! Requests completed during the warm-up are not counted. After the
//! measurement window no new request starts; the ones in flight must finish
//! (and verify) within `--drain-timeout` seconds, or the run fails.
//!
//! Prints one JSON line on stdout. Any protocol error, content mismatch,
//! closed connection or missing answer exits with status 2 and a reason on
//! stderr. Only loopback addresses are accepted as targets.

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::process::exit;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

const SCRATCH: usize = 256 * 1024;
const MAX_HTTP_HEAD: usize = 64 * 1024;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    Echo,
    Http,
}

#[derive(Clone, Debug)]
struct Config {
    mode: Mode,
    addr: SocketAddr,
    connections: usize,
    threads: usize,
    size: usize,
    warmup: Duration,
    duration: Duration,
    drain_timeout: Duration,
    path: String,
    expect_body: Option<Vec<u8>>,
    watch_pid: Option<u32>,
    spin: bool,
}

const USAGE: &str = "usage: loadgen (echo|http) --port PORT [--host 127.0.0.1] \
[--connections 32] [--threads 1] [--duration 2] [--warmup 0.5] [--drain-timeout 10] \
[--size 1k] (echo) [--path /] [--expect-body TEXT] (http) [--watch-pid PID]";

fn fail(msg: impl AsRef<str>) -> ! {
    eprintln!("loadgen: error: {}", msg.as_ref());
    exit(2)
}

fn parse_size(s: &str) -> Result<usize, String> {
    let lower = s.to_ascii_lowercase();
    let (num, mult) = if let Some(n) = lower.strip_suffix("kib").or(lower.strip_suffix('k')) {
        (n, 1024)
    } else if let Some(n) = lower.strip_suffix("mib").or(lower.strip_suffix('m')) {
        (n, 1024 * 1024)
    } else {
        (lower.as_str(), 1)
    };
    num.parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("bad size {s:?} (e.g. 1024, 10k, 1m)"))
}

fn parse_secs(s: &str, what: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=3600.0).contains(&v) => Ok(Duration::from_secs_f64(v)),
        _ => Err(format!("bad {what} {s:?} (seconds, 0..3600)")),
    }
}

fn parse_args(args: &[String]) -> Result<Config, String> {
    let mut it = args.iter();
    let mode = match it.next().map(String::as_str) {
        Some("echo") => Mode::Echo,
        Some("http") => Mode::Http,
        Some("-h") | Some("--help") => {
            println!("{USAGE}");
            exit(0)
        }
        other => return Err(format!("unknown mode {other:?}\n{USAGE}")),
    };
    let mut host = "127.0.0.1".to_string();
    let mut port: Option<u16> = None;
    let mut cfg = Config {
        mode,
        addr: "127.0.0.1:0".parse().unwrap(),
        connections: 32,
        threads: 1,
        size: 1024,
        warmup: Duration::from_millis(500),
        duration: Duration::from_secs(2),
        drain_timeout: Duration::from_secs(10),
        path: "/".to_string(),
        expect_body: None,
        watch_pid: None,
        spin: false,
    };
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--host" => host = value()?,
            "--port" => port = Some(value()?.parse().map_err(|_| "bad --port".to_string())?),
            "--connections" | "-c" => {
                cfg.connections = value()?
                    .parse()
                    .map_err(|_| "bad --connections".to_string())?
            }
            "--threads" | "-t" => {
                cfg.threads = value()?.parse().map_err(|_| "bad --threads".to_string())?
            }
            "--size" | "-s" => cfg.size = parse_size(&value()?)?,
            "--duration" | "-d" => cfg.duration = parse_secs(&value()?, "--duration")?,
            "--warmup" | "-w" => cfg.warmup = parse_secs(&value()?, "--warmup")?,
            "--drain-timeout" => cfg.drain_timeout = parse_secs(&value()?, "--drain-timeout")?,
            "--path" => cfg.path = value()?,
            "--expect-body" => cfg.expect_body = Some(value()?.into_bytes()),
            "--spin" => cfg.spin = true,
            "--watch-pid" => {
                cfg.watch_pid = Some(
                    value()?
                        .parse()
                        .map_err(|_| "bad --watch-pid".to_string())?,
                )
            }
            other => return Err(format!("unknown option {other:?}\n{USAGE}")),
        }
    }
    let port = port.ok_or_else(|| format!("--port is required\n{USAGE}"))?;
    let ip: IpAddr = host
        .parse()
        .map_err(|_| format!("--host must be a numeric loopback address, not {host:?}"))?;
    if !ip.is_loopback() {
        return Err(format!(
            "refusing to load {ip}: only loopback targets are allowed"
        ));
    }
    cfg.addr = SocketAddr::new(ip, port);
    if cfg.connections == 0 || cfg.connections > 10_000 {
        return Err("--connections must be in 1..=10000".into());
    }
    if cfg.threads == 0 || cfg.threads > cfg.connections {
        return Err("--threads must be in 1..=connections".into());
    }
    if cfg.duration.is_zero() {
        return Err("--duration must be > 0".into());
    }
    if !cfg.path.starts_with('/') || cfg.path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(format!("bad --path {:?}", cfg.path));
    }
    Ok(cfg)
}

/// Deterministic, non-periodic bytes (xorshift64*), different per connection.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

const PATTERN_SLACK: usize = 251;

struct Conn {
    id: usize,
    stream: TcpStream,
    busy: bool,
    started: Instant,
    out_off: usize,
    seq: u64,
    // echo: a sliding window over `pattern`, shifted for every message, so
    // that a stale or misrouted echo cannot match.
    pattern: Vec<u8>,
    msg_off: usize,
    recv_off: usize,
    // http
    resp: Vec<u8>,
    need: Option<(usize, usize)>,
}

#[derive(Default)]
struct Counts {
    measured: u64,
    total: u64,
    latencies_ns: Vec<u64>,
}

struct Ctx<'a> {
    cfg: &'a Config,
    request: &'a [u8],
    scratch: Vec<u8>,
}

fn out_bytes<'c>(conn: &'c Conn, ctx: &'c Ctx) -> &'c [u8] {
    match ctx.cfg.mode {
        Mode::Echo => &conn.pattern[conn.msg_off..conn.msg_off + ctx.cfg.size],
        Mode::Http => ctx.request,
    }
}

fn start_request(conn: &mut Conn) {
    conn.busy = true;
    conn.started = Instant::now();
    conn.out_off = 0;
    conn.seq += 1;
    conn.msg_off = ((conn.seq.wrapping_mul(97)) % PATTERN_SLACK as u64) as usize;
    conn.recv_off = 0;
    conn.resp.clear();
    conn.need = None;
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parse a response head; return (head length, head length + Content-Length).
fn parse_http_head(resp: &[u8], conn_id: usize) -> Result<Option<(usize, usize)>, String> {
    let Some(end) = find(resp, b"\r\n\r\n") else {
        if resp.len() > MAX_HTTP_HEAD {
            return Err(format!(
                "connection {conn_id}: response head larger than 64 KiB"
            ));
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&resp[..end])
        .map_err(|_| format!("connection {conn_id}: response head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    let mut parts = status.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if version != "HTTP/1.1" {
        return Err(format!(
            "connection {conn_id}: status line {status:?} is not HTTP/1.1"
        ));
    }
    if code != "200" {
        return Err(format!(
            "connection {conn_id}: expected status 200, got {status:?}"
        ));
    }
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!(
                "connection {conn_id}: malformed header line {line:?}"
            ));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| format!("connection {conn_id}: bad Content-Length {value:?}"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(format!(
                "connection {conn_id}: Transfer-Encoding {value:?} is not supported (need Content-Length)"
            ));
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            return Err(format!(
                "connection {conn_id}: server sent Connection: close (keep-alive expected)"
            ));
        }
    }
    let length =
        length.ok_or_else(|| format!("connection {conn_id}: response has no Content-Length"))?;
    Ok(Some((end + 4, end + 4 + length)))
}

/// Feed received bytes to the connection's current request.
/// Returns true when the response/echo is complete (and verified).
fn consume(conn: &mut Conn, data: &[u8], cfg: &Config) -> Result<bool, String> {
    if !conn.busy {
        return Err(format!(
            "connection {}: {} unexpected bytes while no request was in flight",
            conn.id,
            data.len()
        ));
    }
    match cfg.mode {
        Mode::Echo => {
            let size = cfg.size;
            if conn.recv_off + data.len() > size {
                return Err(format!(
                    "connection {}: echo of message {} has more bytes than the {} sent",
                    conn.id, conn.seq, size
                ));
            }
            let expected = &conn.pattern
                [conn.msg_off + conn.recv_off..conn.msg_off + conn.recv_off + data.len()];
            if data != expected {
                let at = data
                    .iter()
                    .zip(expected)
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                return Err(format!(
                    "connection {}: echo of message {} differs at byte {}",
                    conn.id,
                    conn.seq,
                    conn.recv_off + at
                ));
            }
            conn.recv_off += data.len();
            Ok(conn.recv_off == size)
        }
        Mode::Http => {
            conn.resp.extend_from_slice(data);
            if conn.need.is_none() {
                conn.need = parse_http_head(&conn.resp, conn.id)?;
            }
            let Some((body_start, need)) = conn.need else {
                return Ok(false);
            };
            if conn.resp.len() > need {
                return Err(format!(
                    "connection {}: {} bytes after the end of the response (pipelining is off)",
                    conn.id,
                    conn.resp.len() - need
                ));
            }
            if conn.resp.len() < need {
                return Ok(false);
            }
            if let Some(body) = &cfg.expect_body {
                let got = &conn.resp[body_start..];
                if got != body.as_slice() {
                    return Err(format!(
                        "connection {}: unexpected body {:?}",
                        conn.id,
                        String::from_utf8_lossy(&got[..got.len().min(200)])
                    ));
                }
            }
            Ok(true)
        }
    }
}

enum Phase {
    Warmup,
    Measure,
    Drain,
}

/// Make all possible progress on one connection, completing and restarting
/// requests as needed. Writes go until done or WouldBlock. `readable` says the
/// socket may hold unread bytes (epoll reported it; epoll is edge-triggered,
/// so then we read until WouldBlock). Two syscalls a request are saved, so
/// the generator stays ahead of fast servers on a 2-core machine:
/// * after a request is written we do not try a read (it would nearly always
///   fail with EAGAIN): we wait for the readable event;
/// * after a complete answer we stop reading: nothing more is expected. A
///   stray byte would still be read with the next answer and fail its
///   check, and `final_check` reads every socket once after the run.
fn pump(
    conn: &mut Conn,
    ctx: &mut Ctx,
    counts: &mut Counts,
    measure_start: Instant,
    end: Instant,
    mut readable: bool,
) -> Result<(), String> {
    loop {
        if conn.busy {
            let out_len = out_bytes(conn, ctx).len();
            while conn.out_off < out_len {
                let res = {
                    let buf = &out_bytes(conn, ctx)[conn.out_off..];
                    (&conn.stream).write(buf)
                };
                match res {
                    Ok(0) => return Err(format!("connection {}: write returned 0", conn.id)),
                    Ok(n) => conn.out_off += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(format!("connection {}: write: {e}", conn.id)),
                }
            }
        }
        if !readable {
            return Ok(());
        }
        let mut complete = false;
        loop {
            match (&conn.stream).read(&mut ctx.scratch) {
                Ok(0) => {
                    if conn.busy {
                        return Err(format!(
                            "connection {}: server closed the connection during request {}",
                            conn.id, conn.seq
                        ));
                    }
                    return Ok(()); // idle after the run: harmless
                }
                Ok(n) => {
                    complete = consume(conn, &ctx.scratch[..n], ctx.cfg)?;
                    if complete {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("connection {}: read: {e}", conn.id)),
            }
        }
        if !complete {
            return Ok(());
        }
        let now = Instant::now();
        conn.busy = false;
        counts.total += 1;
        if now >= measure_start && now < end {
            counts.measured += 1;
            counts
                .latencies_ns
                .push((now - conn.started).as_nanos() as u64);
        }
        if now >= end {
            return Ok(());
        }
        start_request(conn);
        readable = false;
    }
}

/// After the run: no connection may hold bytes beyond its last answer.
fn final_check(conns: &[Conn], scratch: &mut [u8]) -> Result<(), String> {
    for conn in conns {
        loop {
            match (&conn.stream).read(scratch) {
                Ok(0) => break,
                Ok(n) => {
                    return Err(format!(
                        "connection {}: {n} unexpected bytes after its last answer",
                        conn.id
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(format!("connection {}: read: {e}", conn.id)),
            }
        }
    }
    Ok(())
}

#[derive(Clone, Copy, Default)]
struct CpuSnap {
    at: Option<Instant>,
    self_us: u64,
    watched_secs: Option<f64>,
    /// (user, system) clock ticks of the watched process from /proc/PID/stat.
    watched_ticks: Option<(u64, u64)>,
}

fn self_cpu_us() -> u64 {
    // SAFETY: getrusage only writes into the struct we pass.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut ru) != 0 {
            return 0;
        }
        let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    }
}

/// CPU time of every thread of `pid`, in seconds: nanosecond-precise sums of
/// /proc/PID/task/*/schedstat, or clock ticks of /proc/PID/stat as a fallback.
fn pid_cpu_secs(pid: u32) -> Option<f64> {
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        let mut ns: u64 = 0;
        let mut any = false;
        for task in tasks.flatten() {
            let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else {
                continue; // the thread exited meanwhile
            };
            if let Some(v) = text
                .split_whitespace()
                .next()
                .and_then(|f| f.parse::<u64>().ok())
            {
                ns += v;
                any = true;
            }
        }
        if any {
            return Some(ns as f64 / 1e9);
        }
    }
    let (utime, stime) = pid_cpu_ticks(pid)?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some((utime + stime) as f64 / hz)
}

/// (utime, stime) of the whole process `pid` (all its threads) in clock
/// ticks, from /proc/PID/stat. Coarser than schedstat, so it only serves to
/// split the precise total into user-space and kernel time.
fn pid_cpu_ticks(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime, stime))
}

fn snap(cfg: &Config) -> CpuSnap {
    CpuSnap {
        at: Some(Instant::now()),
        self_us: self_cpu_us(),
        watched_secs: cfg.watch_pid.and_then(pid_cpu_secs),
        watched_ticks: cfg.watch_pid.and_then(pid_cpu_ticks),
    }
}

struct ThreadResult {
    counts: Counts,
    cpu: Option<(CpuSnap, CpuSnap)>,
}

fn run_thread(
    cfg: Arc<Config>,
    first_id: usize,
    n_conns: usize,
    barrier: Arc<Barrier>,
    take_snaps: bool,
) -> Result<ThreadResult, String> {
    let mut poll = Poll::new().map_err(|e| format!("epoll: {e}"))?;
    let mut conns = Vec::with_capacity(n_conns);
    let connect_result = (|| {
        for i in 0..n_conns {
            let id = first_id + i;
            let std_stream =
                std::net::TcpStream::connect_timeout(&cfg.addr, Duration::from_secs(5))
                    .map_err(|e| format!("connect {} (connection {id}): {e}", cfg.addr))?;
            std_stream
                .set_nodelay(true)
                .map_err(|e| format!("TCP_NODELAY: {e}"))?;
            std_stream
                .set_nonblocking(true)
                .map_err(|e| format!("O_NONBLOCK: {e}"))?;
            let mut stream = TcpStream::from_std(std_stream);
            poll.registry()
                .register(
                    &mut stream,
                    Token(i),
                    Interest::READABLE | Interest::WRITABLE,
                )
                .map_err(|e| format!("register: {e}"))?;
            let pattern = match cfg.mode {
                Mode::Echo => pattern(cfg.size + PATTERN_SLACK, id as u64 + 1),
                Mode::Http => Vec::new(),
            };
            conns.push(Conn {
                id,
                stream,
                busy: false,
                started: Instant::now(),
                out_off: 0,
                seq: 0,
                pattern,
                msg_off: 0,
                recv_off: 0,
                resp: Vec::new(),
                need: None,
            });
        }
        Ok::<(), String>(())
    })();
    // Always meet the barrier, even after a failure, so no thread waits forever.
    barrier.wait();
    connect_result?;

    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ferroloop-loadgen\r\nAccept: */*\r\n\r\n",
        cfg.path, cfg.addr
    )
    .into_bytes();
    let mut ctx = Ctx {
        cfg: &cfg,
        request: &request,
        scratch: vec![0u8; SCRATCH],
    };
    let mut counts = Counts {
        latencies_ns: Vec::with_capacity(1 << 16),
        ..Default::default()
    };
    let t0 = Instant::now();
    let measure_start = t0 + cfg.warmup;
    let end = measure_start + cfg.duration;
    let drain_deadline = end + cfg.drain_timeout;
    let mut snaps = (CpuSnap::default(), CpuSnap::default());
    let mut phase = Phase::Warmup;
    if cfg.warmup.is_zero() && take_snaps {
        snaps.0 = snap(&cfg);
        phase = Phase::Measure;
    }

    for conn in conns.iter_mut() {
        start_request(conn);
        pump(conn, &mut ctx, &mut counts, measure_start, end, false)?;
    }
    let mut events = Events::with_capacity(1024);
    loop {
        let now = Instant::now();
        match phase {
            Phase::Warmup if now >= measure_start => {
                if take_snaps {
                    snaps.0 = snap(&cfg);
                }
                phase = Phase::Measure;
                continue;
            }
            Phase::Measure if now >= end => {
                if take_snaps {
                    snaps.1 = snap(&cfg);
                }
                phase = Phase::Drain;
                continue;
            }
            Phase::Drain => {
                let busy = conns.iter().filter(|c| c.busy).count();
                if busy == 0 {
                    break;
                }
                if now >= drain_deadline {
                    return Err(format!(
                        "{busy} request(s) still unanswered {:.1}s after the end of the run",
                        cfg.drain_timeout.as_secs_f64()
                    ));
                }
            }
            _ => {}
        }
        let boundary = match phase {
            Phase::Warmup => measure_start,
            Phase::Measure => end,
            Phase::Drain => drain_deadline,
        };
        let timeout = if cfg.spin {
            Duration::ZERO
        } else {
            boundary
                .saturating_duration_since(now)
                .min(Duration::from_millis(100))
        };
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("epoll_wait: {e}")),
        }
        for event in events.iter() {
            let conn = &mut conns[event.token().0];
            let readable = event.is_readable() || event.is_read_closed() || event.is_error();
            pump(conn, &mut ctx, &mut counts, measure_start, end, readable)?;
        }
    }
    final_check(&conns, &mut ctx.scratch)?;
    Ok(ThreadResult {
        counts,
        cpu: if take_snaps { Some(snaps) } else { None },
    })
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    // nearest-rank
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1] as f64 / 1000.0
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = Arc::new(parse_args(&args).unwrap_or_else(|e| fail(e)));

    let barrier = Arc::new(Barrier::new(cfg.threads));
    let mut handles = Vec::new();
    let mut first = 0;
    for t in 0..cfg.threads {
        let n = cfg.connections / cfg.threads + usize::from(t < cfg.connections % cfg.threads);
        let (cfg, barrier) = (cfg.clone(), barrier.clone());
        let first_id = first;
        handles.push(
            thread::Builder::new()
                .name(format!("loadgen-{t}"))
                .spawn(move || run_thread(cfg, first_id, n, barrier, t == 0))
                .unwrap_or_else(|e| fail(format!("spawn: {e}"))),
        );
        first += n;
    }
    let mut latencies = Vec::new();
    let (mut measured, mut total) = (0u64, 0u64);
    let mut cpu = None;
    let mut errors = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok(r)) => {
                measured += r.counts.measured;
                total += r.counts.total;
                latencies.extend_from_slice(&r.counts.latencies_ns);
                if r.cpu.is_some() {
                    cpu = r.cpu;
                }
            }
            Ok(Err(e)) => errors.push(e),
            Err(_) => errors.push("a load thread panicked".to_string()),
        }
    }
    if !errors.is_empty() {
        fail(errors.join("; "));
    }
    if measured == 0 {
        fail("no request completed during the measurement window");
    }
    latencies.sort_unstable();
    let secs = cfg.duration.as_secs_f64();
    let rps = measured as f64 / secs;
    let mean_us = latencies.iter().sum::<u64>() as f64 / latencies.len() as f64 / 1000.0;

    let mut fields = vec![
        format!(
            "\"mode\":\"{}\"",
            if cfg.mode == Mode::Echo {
                "echo"
            } else {
                "http"
            }
        ),
        format!("\"addr\":\"{}\"", cfg.addr),
        format!("\"connections\":{}", cfg.connections),
        format!("\"threads\":{}", cfg.threads),
    ];
    if cfg.mode == Mode::Echo {
        fields.push(format!("\"size\":{}", cfg.size));
    } else {
        fields.push(format!(
            "\"path\":\"{}\"",
            cfg.path.replace('\\', "\\\\").replace('"', "\\\"")
        ));
    }
    fields.extend([
        format!("\"warmup_s\":{}", cfg.warmup.as_secs_f64()),
        format!("\"duration_s\":{secs}"),
        format!("\"requests\":{measured}"),
        format!("\"requests_total\":{total}"),
        format!("\"rps\":{rps:.1}"),
    ]);
    if cfg.mode == Mode::Echo {
        let mib = rps * cfg.size as f64 / (1024.0 * 1024.0);
        fields.push(format!("\"mib_per_s\":{mib:.2}"));
    }
    fields.extend([
        format!("\"mean_us\":{mean_us:.1}"),
        format!("\"p50_us\":{:.1}", percentile(&latencies, 0.50)),
        format!("\"p90_us\":{:.1}", percentile(&latencies, 0.90)),
        format!("\"p99_us\":{:.1}", percentile(&latencies, 0.99)),
        format!("\"max_us\":{:.1}", percentile(&latencies, 1.0)),
        format!(
            "\"verified\":\"{}\"",
            match (cfg.mode, &cfg.expect_body) {
                (Mode::Echo, _) => "every echoed byte",
                (Mode::Http, Some(_)) => "status 200, Content-Length framing, exact body",
                (Mode::Http, None) => "status 200, Content-Length framing",
            }
        ),
    ]);
    if let Some((a, b)) = cpu {
        if let (Some(ta), Some(tb)) = (a.at, b.at) {
            let wall = (tb - ta).as_secs_f64();
            if wall > 0.0 {
                let own = (b.self_us.saturating_sub(a.self_us)) as f64 / 1e6 / wall;
                fields.push(format!("\"loadgen_cpu\":{own:.3}"));
                if let (Some(wa), Some(wb)) = (a.watched_secs, b.watched_secs) {
                    // Rounded to what is printed, so that the printed split
                    // below adds up to exactly the printed total.
                    let server = ((wb - wa).max(0.0) / wall * 1e4).round() / 1e4;
                    fields.push(format!("\"server_cpu\":{server:.4}"));
                    // The user/kernel split of that total: the tick counts'
                    // proportions applied to the precise total, so the two
                    // parts always add up to server_cpu.
                    if let (Some((ua, sa)), Some((ub, sb))) = (a.watched_ticks, b.watched_ticks) {
                        let (du, ds) = (ub.saturating_sub(ua), sb.saturating_sub(sa));
                        if du + ds > 0 {
                            let user = (server * du as f64 / (du + ds) as f64 * 1e4).round() / 1e4;
                            fields.push(format!("\"server_user_cpu\":{user:.4}"));
                            fields.push(format!("\"server_sys_cpu\":{:.4}", server - user));
                            fields.push(format!("\"server_ticks\":{}", du + ds));
                        }
                    }
                }
            }
        }
    }
    println!("{{{}}}", fields.join(","));
}
