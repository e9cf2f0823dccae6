//! The subscriber's one-pass envelope decoder against the general (ciborium) decoder: on
//! what publishers send it answers, and it answers as the general decoder does; on
//! everything else it defers or agrees (`support/envelope_cbor.rs` is the check).

use bver_contracts::EventEnvelope;
use bver_contracts::cbor::MAX_JSON_DEPTH;
use proptest::prelude::*;
use serde_json::{Value, json};

#[path = "support/envelope_cbor.rs"]
mod envelope_cbor;
#[path = "support/samples.rs"]
mod samples;
#[path = "support/strategies.rs"]
mod strategies;

use envelope_cbor::{check_at, check_bytes};
use strategies::any_json_value;

const DEPTH: usize = MAX_JSON_DEPTH + 1;

/// Envelopes as the decoders meet them: without a signature (it is not part of an event's
/// bytes), with values carrying every float.
fn envelope() -> impl Strategy<Value = EventEnvelope> {
    strategies::envelope(any_json_value()).prop_map(|mut e| {
        e.signature = None;
        e
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// What a publisher sends takes the one-pass path and decodes to the envelope.
    #[test]
    fn canonical_bytes_decode_on_the_fast_path(e in envelope()) {
        let bytes = e.to_canonical_cbor();
        prop_assert_eq!(EventEnvelope::from_cbor_fast(&bytes, DEPTH), Some(e.clone()));
        let out = check_bytes(&bytes);
        prop_assert!(out.fast && out.general);
    }

    /// serde's encoding (members in declaration order, not canonical) decodes the same way.
    #[test]
    fn serde_encoded_bytes_decode_on_the_fast_path(e in envelope()) {
        let mut bytes = Vec::new();
        ciborium::into_writer(&e, &mut bytes).expect("encodes");
        prop_assert_eq!(EventEnvelope::from_cbor_fast(&bytes, DEPTH), Some(e.clone()));
        check_bytes(&bytes);
    }

    /// Altered bytes (a byte replaced, inserted or removed, or the input cut short) never
    /// make the decoders disagree.
    #[test]
    fn altered_bytes_never_make_the_decoders_disagree(
        e in envelope(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..4),
    ) {
        let mut bytes = e.to_canonical_cbor();
        for (at, byte, how) in edits {
            let i = at.index(bytes.len() + 1);
            match how {
                0 if i < bytes.len() => bytes[i] = byte,
                1 => bytes.insert(i, byte),
                2 if i < bytes.len() => {
                    bytes.remove(i);
                }
                _ => bytes.truncate(i),
            }
        }
        check_bytes(&bytes);
    }
}

/// `envelope_full` re-encoded by ciborium with extra members or shapes the one-pass decoder
/// leaves to the general one.
fn with_member(name: &str, value: ciborium::Value) -> Vec<u8> {
    let mut v: ciborium::Value =
        ciborium::from_reader(&samples::envelope_minimal().to_canonical_cbor()[..]).unwrap();
    v.as_map_mut()
        .unwrap()
        .push((ciborium::Value::Text(name.into()), value));
    let mut bytes = Vec::new();
    ciborium::into_writer(&v, &mut bytes).unwrap();
    bytes
}

#[test]
fn the_fast_path_defers_what_it_does_not_handle() {
    let canonical = samples::envelope_full().to_canonical_cbor();
    let mut trailing = canonical.clone();
    trailing.push(0x00);
    let mut signed = samples::envelope_full();
    signed.signature = Some(samples::batch_proof());
    let mut with_signature = Vec::new();
    ciborium::into_writer(&signed, &mut with_signature).unwrap();
    let tagged = {
        let mut e = samples::envelope_minimal();
        e.value = Some(json!({"a": 1}));
        let mut bytes = e.to_canonical_cbor();
        // Tag 1 (epoch time) before the value's map: {"a": 1} is a1 61 61 01.
        let at = bytes
            .windows(4)
            .position(|w| w == [0xa1, 0x61, 0x61, 0x01])
            .unwrap();
        bytes.insert(at, 0xc1);
        bytes
    };
    let indefinite = {
        let mut bytes = samples::envelope_minimal().to_canonical_cbor();
        bytes[0] = 0xbf; // a map of indefinite length, ended by `break`
        bytes.push(0xff);
        bytes
    };
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("an unknown member", with_member("extra", 1.into()), true),
        (
            "a duplicate member",
            with_member("seq", 9.into()),
            false, // the general decoder names the duplicate
        ),
        (
            "a byte string value",
            with_member("value", ciborium::Value::Bytes(vec![1])),
            false,
        ),
        ("trailing bytes", trailing, true),
        ("a signature member", with_signature, true),
        ("a tag in the value", tagged, false), // a JSON value has no tags
        ("an indefinite-length map", indefinite, true),
    ];
    for (what, bytes, general_decodes) in cases {
        let out = check_bytes(&bytes);
        assert!(!out.fast, "{what}: the one-pass decoder answered");
        assert_eq!(out.general, general_decodes, "{what}");
    }
}

/// A value nested `levels` arrays deep.
fn nested(levels: usize) -> Vec<u8> {
    let mut e = samples::envelope_minimal();
    let mut v = json!(1);
    for _ in 0..levels {
        v = Value::Array(vec![v]);
    }
    e.value = Some(v);
    e.to_canonical_cbor()
}

#[test]
fn near_the_depth_bound_the_fast_path_defers_and_the_answer_is_the_general_one() {
    // The envelope's map is one level: DEPTH - 1 levels of value are the most either takes.
    let most = nested(DEPTH - 1);
    assert_eq!(
        check_at(&most, DEPTH),
        envelope_cbor::Outcome {
            fast: false,
            general: true
        }
    );
    assert!(EventEnvelope::from_cbor(&most, DEPTH).is_ok());
    let under = nested(DEPTH - 2);
    assert!(check_at(&under, DEPTH).fast);
    let over = nested(DEPTH);
    assert_eq!(check_at(&over, DEPTH), envelope_cbor::Outcome::default());
    assert!(EventEnvelope::from_cbor(&over, DEPTH).is_err());
}

#[test]
fn the_samples_decode_on_the_fast_path() {
    for e in [
        samples::envelope_minimal(),
        samples::envelope_full(),
        samples::envelope_named(),
    ] {
        let mut e = e;
        e.signature = None;
        let bytes = e.to_canonical_cbor();
        assert_eq!(EventEnvelope::from_cbor_fast(&bytes, DEPTH), Some(e));
    }
}
