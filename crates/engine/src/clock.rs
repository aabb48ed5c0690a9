//! The loop clock: `CLOCK_MONOTONIC` in seconds, the clock behind
//! Python's `time.monotonic()`, which asyncio's `loop.time()` returns.

/// Seconds on the monotonic clock, as a float (the value `time.monotonic()` gives).
pub fn monotonic() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call,
    // and CLOCK_MONOTONIC is always supported on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    debug_assert_eq!(rc, 0);
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Resolution of [`monotonic`] in seconds (asyncio's `_clock_resolution`).
pub fn resolution() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: as in `monotonic`: a valid out-pointer and a supported clock.
    let rc = unsafe { libc::clock_getres(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 1e-9;
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_never_goes_back() {
        let a = monotonic();
        let b = monotonic();
        assert!(b >= a);
    }

    #[test]
    fn resolution_is_small_and_positive() {
        let r = resolution();
        assert!(r > 0.0 && r < 0.01, "resolution {r}");
    }
}
