//! Reference-model checks of ferroloop-engine's timer heap, ready queue and
//! write queue, for `cargo fuzz` (see `fuzz_targets/`).
pub mod models;
