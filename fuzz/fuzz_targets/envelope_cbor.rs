//! Fuzz target `envelope_cbor`: arbitrary bytes through both event envelope decoders (the
//! subscriber's one-pass decoder and the general ciborium one); the one-pass decoder must
//! never accept what the general one refuses nor decode anything differently, and neither
//! may panic. The checks live in `contracts/tests/support/envelope_cbor.rs`, shared with the
//! corpus replay test.
//!
//! Run: `cd fuzz && cargo fuzz run -s none envelope_cbor -- -max_total_time=600`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../contracts/tests/support/envelope_cbor.rs"]
mod envelope_cbor;

fuzz_target!(|data: &[u8]| {
    envelope_cbor::check_bytes(data);
});
