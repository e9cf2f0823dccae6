//! Fuzz target `eager_frames`: arbitrary bytes through the EAGER frame decoder in chunks;
//! it must never panic or buffer past its limit, and every decoded message must round-trip.
//! The checks live in `eager/tests/support/frames.rs`, shared with the corpus replay test.
//!
//! Run: `cd fuzz && cargo fuzz run -s none eager_frames -- -max_total_time=600`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../eager/tests/support/frames.rs"]
mod frames;

fuzz_target!(|data: &[u8]| {
    frames::check_bytes(data);
});
