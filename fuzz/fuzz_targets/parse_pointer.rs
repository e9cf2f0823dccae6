//! Fuzz target `parse_pointer`: arbitrary bytes through the pointer parser; on success the
//! canonical form must re-parse to the same pointer and normalisation must be idempotent;
//! on failure the error must be well-formed. The checks live in
//! `contracts/tests/support/roundtrip.rs`, shared with the corpus replay test.
//!
//! Run: `cd fuzz && cargo fuzz run -s none parse_pointer -- -max_total_time=600`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../contracts/tests/support/roundtrip.rs"]
mod roundtrip;

fuzz_target!(|data: &[u8]| {
    roundtrip::check_bytes(data);
});
