//! The RFC 6902 decoding invariants checked on arbitrary input, shared by the fuzz target
//! (`fuzz/fuzz_targets/patch_ops.rs`) and the fuzz-corpus replay test: the bytes are read
//! as a JSON diff and as a CBOR diff (through the bounded decoder BVER reads peers' CBOR
//! with); each read either fails with an error that says something, or yields a [`Diff`]
//! that re-encodes (JSON and CBOR) to the same diff.

use bver_contracts::cbor::{self, MAX_JSON_DEPTH};
use bver_contracts::version::Diff;

/// What one input did, for the corpus test's coverage checks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// The bytes were a JSON diff.
    pub(crate) json: bool,
    /// The bytes were a CBOR diff.
    pub(crate) cbor: bool,
}

fn roundtrip(d: &Diff) {
    let text = serde_json::to_string(d).expect("a decoded diff serializes to JSON");
    let again: Diff = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("re-encoded JSON {text} does not decode: {e}"));
    assert_eq!(&again, d, "JSON round trip of {text}");
    let mut cbor = Vec::new();
    ciborium::into_writer(d, &mut cbor).expect("a decoded diff serializes to CBOR");
    let again: Diff = cbor::from_slice(&cbor, MAX_JSON_DEPTH)
        .unwrap_or_else(|e| panic!("re-encoded CBOR of {text} does not decode: {e}"));
    assert_eq!(&again, d, "CBOR round trip of {text}");
}

/// Check `data` as a JSON diff and as a CBOR diff.
pub(crate) fn check_bytes(data: &[u8]) -> Outcome {
    let mut out = Outcome::default();
    match serde_json::from_slice::<Diff>(data) {
        Ok(d) => {
            out.json = true;
            roundtrip(&d);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    match cbor::from_slice::<Diff>(data, MAX_JSON_DEPTH) {
        Ok(d) => {
            out.cbor = true;
            roundtrip(&d);
        }
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    out
}
