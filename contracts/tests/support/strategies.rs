//! proptest strategies for contract values, shared by `contract_types.rs` (round trips and
//! canonical bytes) and `envelope_cbor.rs` (the one-pass decoder against the general one).
//! Needs the `samples` support module beside it.

#![allow(dead_code)]

use bver_contracts::RefPtr;
use bver_contracts::event::EventEnvelope;
use bver_contracts::version::{ChangeType, Diff, PatchOp};
use proptest::prelude::*;
use serde_json::{Number, Value, json};

/// JSON values whose floats JSON text carries exactly.
pub(crate) fn json_value() -> BoxedStrategy<Value> {
    json_tree(
        (-100_000i32..100_000)
            .prop_map(|n| json!(f64::from(n) / 64.0))
            .boxed(),
        "[a-zé ]{0,8}",
    )
}

/// JSON values with every float (those that are not finite as `null`, which is what
/// serde_json makes of them) and any printable text: for CBOR, whose floats come in three
/// widths.
pub(crate) fn any_json_value() -> BoxedStrategy<Value> {
    json_tree(
        any::<f64>()
            .prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number))
            .boxed(),
        "\\PC{0,12}",
    )
}

fn json_tree(float: BoxedStrategy<Value>, text: &'static str) -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        float,
        text.prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 32, 5, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::vec(("[a-z_]{0,5}", inner), 0..5)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
    .boxed()
}

pub(crate) fn ref_ptr() -> impl Strategy<Value = RefPtr> {
    (
        "[a-z][a-z0-9_]{0,6}",
        "[a-z][a-z0-9_]{0,6}",
        "[A-Za-z0-9 é/._~-]{1,8}",
    )
        .prop_filter_map("valid pointer", |(ns, repo, id)| {
            RefPtr::new(&ns, &repo, &id).ok()
        })
}

pub(crate) fn json_pointer() -> impl Strategy<Value = String> {
    proptest::collection::vec("[a-z0-9~]{0,3}", 0..3).prop_map(|tokens| {
        tokens
            .iter()
            .map(|t| format!("/{}", t.replace('~', "~0")))
            .collect()
    })
}

/// RFC 6902 operations carrying `values`.
pub(crate) fn patch_op(values: BoxedStrategy<Value>) -> impl Strategy<Value = PatchOp> {
    prop_oneof![
        (json_pointer(), values.clone()).prop_map(|(path, value)| PatchOp::Add { path, value }),
        json_pointer().prop_map(|path| PatchOp::Remove { path }),
        (json_pointer(), values.clone()).prop_map(|(path, value)| PatchOp::Replace { path, value }),
        (json_pointer(), json_pointer()).prop_map(|(from, path)| PatchOp::Move { from, path }),
        (json_pointer(), json_pointer()).prop_map(|(from, path)| PatchOp::Copy { from, path }),
        (json_pointer(), values).prop_map(|(path, value)| PatchOp::Test { path, value }),
    ]
}

pub(crate) fn change() -> impl Strategy<Value = ChangeType> {
    proptest::sample::select(ChangeType::ALL.to_vec())
}

/// Envelopes whose value and diff carry `values`; about half of them signed.
pub(crate) fn envelope(values: BoxedStrategy<Value>) -> impl Strategy<Value = EventEnvelope> {
    (
        ("[a-z]{1,6}", "[0-9A-Z]{1,10}", any::<u64>(), "[a-z.]{1,20}"),
        (
            ref_ptr(),
            any::<u64>(),
            proptest::option::of("[a-z.]{1,10}"),
        ),
        (
            proptest::option::of(change()),
            proptest::collection::vec(patch_op(values.clone()), 0..3),
            proptest::option::of(values.prop_filter("not null", |v| !v.is_null())),
            any::<i64>(),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (origin, epoch, seq, trigger),
                (pointer, version, kind),
                (change, diff, value, time, signed),
            )| {
                let signature = signed.then(|| {
                    let mut proof = crate::samples::batch_proof();
                    proof.header.origin.clone_from(&origin);
                    proof
                });
                EventEnvelope {
                    origin,
                    epoch,
                    seq,
                    trigger,
                    pointer,
                    version,
                    kind,
                    change,
                    diff: Diff::new(diff),
                    value,
                    time,
                    signature,
                }
            },
        )
}
