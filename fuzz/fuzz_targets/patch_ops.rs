//! Fuzz target `patch_ops`: arbitrary bytes through the RFC 6902 operation decoder, as JSON
//! and as CBOR; it must never panic, and every decoded diff must round-trip in both. The
//! checks live in `contracts/tests/support/patch_ops.rs`, shared with the corpus replay
//! test.
//!
//! Run: `cd fuzz && cargo fuzz run -s none patch_ops -- -max_total_time=600`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../contracts/tests/support/patch_ops.rs"]
mod patch_ops;

fuzz_target!(|data: &[u8]| {
    patch_ops::check_bytes(data);
});
