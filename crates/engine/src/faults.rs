//! Fault injection for the syscall layer (cargo feature `faults`).
//!
//! Every socket, epoll and pidfd call site asks [`inject`] first; when it
//! returns an error the call is not made and that error is returned as if the
//! kernel had refused it. This shows how the loop reports each errno without
//! having to provoke it for real.
//!
//! Without the feature, [`inject`] is an inline `None` the compiler removes:
//! release wheels and `make build` carry no trace of it.
//!
//! With the feature the injector is configured from the environment at first
//! use, and may be reconfigured at run time through [`configure`]:
//! * `FERROLOOP_FAULTS_RATE` — probability per call, 0.0 (default) to 1.0;
//! * `FERROLOOP_FAULTS_SEED` — seed of the generator (default 1);
//! * `FERROLOOP_FAULTS_CALLS` — comma-separated calls to hit (default all):
//!   `recv,send,accept,connect,epoll_ctl,pidfd`.

use std::io;

/// The syscall families that can fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    Recv = 0,
    Send = 1,
    Accept = 2,
    Connect = 3,
    EpollCtl = 4,
    Pidfd = 5,
}

impl Call {
    pub const ALL: [Call; 6] = [
        Call::Recv,
        Call::Send,
        Call::Accept,
        Call::Connect,
        Call::EpollCtl,
        Call::Pidfd,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Call::Recv => "recv",
            Call::Send => "send",
            Call::Accept => "accept",
            Call::Connect => "connect",
            Call::EpollCtl => "epoll_ctl",
            Call::Pidfd => "pidfd",
        }
    }

    pub fn from_name(name: &str) -> Option<Call> {
        Call::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The errnos the kernel can really return for this call on a
    /// non-blocking fd (and that the loop must cope with).
    pub fn errnos(self) -> &'static [i32] {
        match self {
            Call::Recv => &[
                libc::EINTR,
                libc::EAGAIN,
                libc::ECONNRESET,
                libc::ENOBUFS,
                libc::ENOMEM,
            ],
            Call::Send => &[
                libc::EINTR,
                libc::EAGAIN,
                libc::ECONNRESET,
                libc::EPIPE,
                libc::ENOBUFS,
                libc::ENOMEM,
            ],
            Call::Accept => &[
                libc::EINTR,
                libc::EAGAIN,
                libc::EMFILE,
                libc::ENFILE,
                libc::ENOBUFS,
                libc::ENOMEM,
            ],
            // The outcome of a background connect (SO_ERROR).
            Call::Connect => &[libc::ECONNRESET, libc::ENOBUFS, libc::ENOMEM],
            Call::EpollCtl => &[libc::ENOMEM, libc::ENOSPC],
            Call::Pidfd => &[libc::EMFILE, libc::ENFILE, libc::ENOMEM],
        }
    }
}

/// The error to return instead of making `call`, if one is due.
#[cfg(not(feature = "faults"))]
#[inline(always)]
pub fn inject(_call: Call) -> Option<io::Error> {
    None
}

/// The error to return instead of making `call`, if one is due.
#[cfg(feature = "faults")]
#[inline]
pub fn inject(call: Call) -> Option<io::Error> {
    imp::inject(call).map(io::Error::from_raw_os_error)
}

/// True when this build can inject faults.
pub const ENABLED: bool = cfg!(feature = "faults");

#[cfg(feature = "faults")]
pub use imp::{configure, stats};

#[cfg(feature = "faults")]
mod imp {
    use super::Call;
    use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
    use std::sync::Once;

    static INIT: Once = Once::new();
    static CONFIGURED: AtomicBool = AtomicBool::new(false);
    /// Threshold out of 2^64: a draw below it injects.
    static THRESHOLD: AtomicU64 = AtomicU64::new(0);
    static STATE: AtomicU64 = AtomicU64::new(1);
    static MASK: AtomicU32 = AtomicU32::new(u32::MAX);
    static CALLS: [AtomicU64; 6] = [const { AtomicU64::new(0) }; 6];
    static INJECTED: [AtomicU64; 6] = [const { AtomicU64::new(0) }; 6];

    fn threshold(rate: f64) -> u64 {
        let rate = rate.clamp(0.0, 1.0);
        if rate >= 1.0 {
            u64::MAX
        } else {
            (rate * 18_446_744_073_709_551_616.0) as u64
        }
    }

    fn mask_of(names: &str) -> Result<u32, String> {
        let mut mask = 0;
        for name in names.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match Call::from_name(name) {
                Some(call) => mask |= 1 << call as u32,
                None => return Err(format!("unknown call {name:?}")),
            }
        }
        Ok(mask)
    }

    fn from_env() {
        INIT.call_once(|| {
            if CONFIGURED.load(Relaxed) {
                return;
            }
            let rate = std::env::var("FERROLOOP_FAULTS_RATE")
                .ok()
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0);
            let seed = std::env::var("FERROLOOP_FAULTS_SEED")
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1);
            let mask = std::env::var("FERROLOOP_FAULTS_CALLS")
                .ok()
                .and_then(|v| mask_of(&v).ok())
                .unwrap_or(u32::MAX);
            STATE.store(seed, Relaxed);
            MASK.store(mask, Relaxed);
            THRESHOLD.store(threshold(rate), Relaxed);
        });
    }

    /// Replaces the configuration (rate 0 turns injection off) and resets
    /// the counters.
    pub fn configure(rate: f64, seed: u64, calls: Option<&str>) -> Result<(), String> {
        let mask = match calls {
            Some(names) => mask_of(names)?,
            None => u32::MAX,
        };
        CONFIGURED.store(true, Relaxed);
        from_env();
        STATE.store(seed, Relaxed);
        MASK.store(mask, Relaxed);
        THRESHOLD.store(threshold(rate), Relaxed);
        for i in 0..CALLS.len() {
            CALLS[i].store(0, Relaxed);
            INJECTED[i].store(0, Relaxed);
        }
        Ok(())
    }

    /// Per call: (name, calls seen, faults injected).
    pub fn stats() -> Vec<(&'static str, u64, u64)> {
        Call::ALL
            .iter()
            .map(|&c| {
                (
                    c.name(),
                    CALLS[c as usize].load(Relaxed),
                    INJECTED[c as usize].load(Relaxed),
                )
            })
            .collect()
    }

    /// splitmix64: one draw per call, so a seed replays the same faults for
    /// the same sequence of calls.
    fn draw() -> u64 {
        let mut z = STATE
            .fetch_add(0x9E37_79B9_7F4A_7C15, Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn inject(call: Call) -> Option<i32> {
        from_env();
        CALLS[call as usize].fetch_add(1, Relaxed);
        let threshold = THRESHOLD.load(Relaxed);
        if threshold == 0 || MASK.load(Relaxed) & (1 << call as u32) == 0 {
            return None;
        }
        let r = draw();
        if r >= threshold {
            return None;
        }
        INJECTED[call as usize].fetch_add(1, Relaxed);
        let errnos = call.errnos();
        Some(errnos[(draw() % errnos.len() as u64) as usize])
    }
}

#[cfg(all(test, feature = "faults"))]
mod tests {
    use super::*;

    #[test]
    fn rate_one_always_fails_with_a_listed_errno_and_rate_zero_never() {
        configure(1.0, 7, Some("recv")).unwrap();
        for _ in 0..100 {
            let e = inject(Call::Recv).unwrap();
            assert!(Call::Recv.errnos().contains(&e.raw_os_error().unwrap()));
            assert!(inject(Call::Send).is_none());
        }
        configure(0.0, 7, None).unwrap();
        assert!((0..100).all(|_| inject(Call::Recv).is_none()));
        assert!(configure(0.5, 1, Some("bogus")).is_err());
    }
}
