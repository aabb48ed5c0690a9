#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ferroloop_engine_fuzz::models::check_timers(data));
