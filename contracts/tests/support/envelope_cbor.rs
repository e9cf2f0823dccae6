//! The differential check of the one-pass envelope decoder, shared by the fuzz target
//! (`fuzz/fuzz_targets/envelope_cbor.rs`), the fuzz-corpus replay test and
//! `contracts/tests/envelope_cbor.rs`: on any bytes, [`EventEnvelope::from_cbor_fast`]
//! either defers (`None`) or decodes exactly what the general decoder
//! ([`bver_contracts::cbor::from_slice`]) decodes, and [`EventEnvelope::from_cbor`] always
//! answers as the general decoder does.

use bver_contracts::EventEnvelope;
use bver_contracts::cbor::{self, MAX_JSON_DEPTH};

/// What one input did, for the tests' coverage checks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// The one-pass decoder answered.
    pub(crate) fast: bool,
    /// The general decoder decoded an envelope.
    pub(crate) general: bool,
}

/// Check `data` with the depth bound `depth`.
pub(crate) fn check_at(data: &[u8], depth: usize) -> Outcome {
    let general = cbor::from_slice::<EventEnvelope>(data, depth);
    let fast = EventEnvelope::from_cbor_fast(data, depth);
    if let Some(f) = &fast {
        match &general {
            Ok(g) => assert_eq!(f, g, "the decoders disagree on {data:02x?}"),
            Err(e) => panic!(
                "the one-pass decoder accepted what the general decoder refuses ({e}): {data:02x?}"
            ),
        }
    }
    match (EventEnvelope::from_cbor(data, depth), &general) {
        (Ok(a), Ok(b)) => assert_eq!(&a, b, "from_cbor differs on {data:02x?}"),
        (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
        (a, b) => panic!("from_cbor {a:?} where the general decoder gives {b:?}"),
    }
    Outcome {
        fast: fast.is_some(),
        general: general.is_ok(),
    }
}

/// Check `data` with the subscriber's depth bound and with a small one (which puts the
/// bound within reach of short inputs).
pub(crate) fn check_bytes(data: &[u8]) -> Outcome {
    check_at(data, 4);
    check_at(data, MAX_JSON_DEPTH + 1)
}
