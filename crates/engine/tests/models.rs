//! A short, seeded run of the `cargo fuzz` model checks
//! (`crates/engine/fuzz/src/models.rs`) on stable Rust: each structure gets
//! pseudo-random byte strings of varied lengths; `make fuzz-engine` is the
//! long, coverage-guided run.

#[path = "../fuzz/src/models.rs"]
mod models;

/// xorshift64*: deterministic bytes without a dependency.
fn inputs(seed: u64, count: usize) -> impl Iterator<Item = Vec<u8>> {
    let mut s = seed;
    let mut next = move || {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        s.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    (0..count).map(move |i| {
        let len = 1 + (i * 37) % 1500;
        (0..len).map(|_| (next() >> 56) as u8).collect()
    })
}

#[test]
fn timer_heap_matches_model() {
    for data in inputs(0x7157, 200) {
        models::check_timers(&data);
    }
}

#[test]
fn ready_queue_matches_model() {
    for data in inputs(0x4eadf, 200) {
        models::check_ready(&data);
    }
}

#[test]
fn write_queue_matches_model() {
    for data in inputs(0x3417e, 200) {
        models::check_write_queue(&data);
    }
}
