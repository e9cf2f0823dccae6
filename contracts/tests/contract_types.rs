//! The contract types (operations, primitives, jobs, versions, events, manifests): JSON and
//! CBOR round trips of a sample of each, pinned serialized names, the fixed hex vectors of
//! the canonical CBOR encoding of events and batch headers, property tests, the invocation
//! and result checks, and a manifest as `bver manifest` writes it today.

use std::fmt::Debug;

use bver_contracts::event::{BatchHeader, EventEnvelope, Hash256, SignatureBytes};
use bver_contracts::job::{JobHandle, JobStatus};
use bver_contracts::manifest::{BundleRole, Manifest};
use bver_contracts::ops::{OperationKind, OperationSpec};
use bver_contracts::primitive::{
    Determinism, EffectMode, ExecutionMode, PrimitiveKind, PrimitiveRequest, PrimitiveResult,
    PrimitiveSpec, PrimitiveStatus, Severity,
};
use bver_contracts::version::{ChangeType, Diff, PatchOp};
use bver_contracts::{BverError, ErrorCode, Phase};
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

#[path = "support/samples.rs"]
mod samples;
#[path = "support/strategies.rs"]
mod strategies;

use strategies::{envelope, json_value, patch_op};

fn to_cbor<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("CBOR encode");
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Serializes `value` to JSON and to CBOR and checks that both read back equal.
fn roundtrip<T>(value: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let json = serde_json::to_string(value).expect("JSON encode");
    let back: T = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(&back, value, "JSON: {json}");
    let cbor = to_cbor(value);
    let back: T = ciborium::from_reader(&cbor[..]).unwrap_or_else(|e| panic!("{e}: {json}"));
    assert_eq!(&back, value, "CBOR of {json}");
}

#[test]
fn every_sample_round_trips_in_json_and_cbor() {
    roundtrip(&samples::bver_error());
    roundtrip(&samples::operation_spec());
    roundtrip(&samples::primitive_spec());
    roundtrip(&samples::primitive_request());
    roundtrip(&PrimitiveRequest::new("r", "a.b", Value::Null));
    roundtrip(&samples::primitive_result());
    roundtrip(&samples::diagnostic());
    roundtrip(&samples::job_handle());
    roundtrip(&JobHandle::queued("j", "jobs.x", 0));
    roundtrip(&samples::provenance());
    roundtrip(&samples::version_record());
    roundtrip(&samples::diff());
    roundtrip(&samples::envelope_minimal());
    roundtrip(&samples::envelope_full());
    roundtrip(&samples::envelope_named());
    roundtrip(&samples::event_id());
    roundtrip(&samples::batch_header());
    roundtrip(&samples::batch_proof());
    roundtrip(&samples::manifest());
}

fn names<T: Serialize>(values: &[T]) -> Vec<String> {
    values
        .iter()
        .map(|v| match serde_json::to_value(v).expect("JSON") {
            Value::String(s) => s,
            other => panic!("not a string: {other}"),
        })
        .collect()
}

#[test]
fn enum_names_are_pinned() {
    use OperationKind as O;
    assert_eq!(
        names(&[O::Query, O::Command, O::Task]),
        ["query", "command", "task"]
    );
    assert_eq!(
        names(&PrimitiveKind::ALL),
        [
            "interpreter",
            "resolver",
            "generator",
            "validator",
            "simulator",
            "evaluator"
        ]
    );
    for k in PrimitiveKind::ALL {
        assert_eq!(names(&[k]), [k.as_str()]);
    }
    use ExecutionMode as M;
    assert_eq!(
        names(&[M::Sync, M::Async, M::Either]),
        ["sync", "async", "either"]
    );
    use Determinism as D;
    assert_eq!(
        names(&[D::Deterministic, D::BoundedNondeterministic, D::AgentGuided]),
        ["deterministic", "bounded_nondeterministic", "agent_guided"]
    );
    use PrimitiveStatus as S;
    assert_eq!(
        names(&[S::Success, S::Partial, S::Rejected, S::Failed]),
        ["success", "partial", "rejected", "failed"]
    );
    assert_eq!(
        names(&[Severity::Error, Severity::Warning, Severity::Info]),
        ["error", "warning", "info"]
    );
    assert_eq!(
        names(&[EffectMode::Proposed, EffectMode::Applied]),
        ["proposed", "applied"]
    );
    assert_eq!(
        names(&JobStatus::ALL),
        [
            "queued",
            "running",
            "retrying",
            "succeeded",
            "failed",
            "cancelled"
        ]
    );
    for s in JobStatus::ALL {
        assert_eq!(names(&[s]), [s.as_str()]);
        assert_eq!(
            s.is_terminal(),
            matches!(
                s,
                JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
            )
        );
    }
    assert_eq!(
        names(&ChangeType::ALL),
        ["created", "updated", "deleted", "kind_changed", "restored"]
    );
    assert_eq!(
        names(&[BundleRole::Core, BundleRole::Plugin]),
        ["core", "plugin"]
    );
}

#[test]
fn json_shapes_are_pinned() {
    assert_eq!(
        serde_json::to_string(&samples::diff()).expect("JSON"),
        r#"[{"op":"replace","path":"/voltage_kv","value":110},{"op":"add","path":"/tags/-","value":"hv"},{"op":"remove","path":"/legacy"},{"op":"move","from":"/old_name","path":"/name"},{"op":"copy","from":"/name","path":"/label"},{"op":"test","path":"/id","value":"7"}]"#
    );
    let op = OperationSpec::new("bver.get", OperationKind::Query, "Get.").expect("name");
    assert_eq!(
        serde_json::to_string(&op).expect("JSON"),
        r#"{"name":"bver.get","kind":"query","description":"Get.","input_schema":{},"output_schema":{},"required_scopes":[],"mutates_state":false,"idempotency_key_required":false}"#
    );
    assert_eq!(
        serde_json::to_string(&samples::envelope_minimal()).expect("JSON"),
        r#"{"origin":"sites","epoch":"e1","seq":1,"trigger":"refs.site.deleted","pointer":"bver://sites/site/7","version":2,"diff":[],"time":1700000000000}"#
    );
    // Hashes and signatures: hex in JSON, byte strings in CBOR.
    let proof = samples::batch_proof();
    let json = serde_json::to_value(&proof).expect("JSON");
    assert_eq!(json["header"]["event_hashes"][0], "11".repeat(32));
    assert_eq!(json["signature"], hex(&(0u8..64).collect::<Vec<_>>()));
    let cbor = to_cbor(&Hash256([0xab; 32]));
    assert_eq!(hex(&cbor), format!("5820{}", "ab".repeat(32)));
    let cbor = to_cbor(&SignatureBytes(vec![1, 2]));
    assert_eq!(hex(&cbor), "420102");
    // Uppercase hex is accepted on input.
    let h: Hash256 = serde_json::from_value(json!("AB".repeat(32))).expect("hex");
    assert_eq!(h, Hash256([0xab; 32]));
    assert!(serde_json::from_value::<Hash256>(json!("ab")).is_err());
    assert!(serde_json::from_value::<Hash256>(json!("zz".repeat(32))).is_err());
}

#[test]
fn absent_value_and_null_value_are_the_same() {
    let mut with_null = samples::envelope_minimal();
    with_null.value = Some(Value::Null);
    assert_eq!(
        with_null.to_canonical_cbor(),
        samples::envelope_minimal().to_canonical_cbor()
    );
    let json = serde_json::to_string(&with_null).expect("JSON");
    assert!(!json.contains("value"), "{json}");
    let back: EventEnvelope = serde_json::from_str(&json).expect("JSON");
    assert_eq!(back, samples::envelope_minimal());
}

// ---------------------------------------------------------------------------------------
// Canonical CBOR (RFC 8949 §4.2.1)

/// Sorts every map of a CBOR value by the bytes of its encoded keys, recursively: an
/// implementation of the canonical order independent of `to_canonical_cbor`'s.
fn canonicalize(v: &mut ciborium::Value) {
    match v {
        ciborium::Value::Array(items) => items.iter_mut().for_each(canonicalize),
        ciborium::Value::Map(entries) => {
            for (k, v) in entries.iter_mut() {
                canonicalize(k);
                canonicalize(v);
            }
            entries.sort_by_cached_key(|(k, _)| to_cbor(k));
        }
        _ => {}
    }
}

/// The envelope (without signature) through serde into a CBOR value, sorted, then encoded
/// by ciborium: what `to_canonical_cbor` must equal.
fn via_ciborium(e: &EventEnvelope) -> Vec<u8> {
    let mut e = e.clone();
    e.signature = None;
    let mut v = ciborium::Value::serialized(&e).expect("to CBOR value");
    canonicalize(&mut v);
    to_cbor(&v)
}

fn unsigned(e: &EventEnvelope) -> EventEnvelope {
    let mut e = e.clone();
    e.signature = None;
    if e.value.as_ref().is_some_and(Value::is_null) {
        e.value = None;
    }
    e
}

/// Checks what every canonical encoding must satisfy, then returns it.
fn check_canonical(e: &EventEnvelope) -> Vec<u8> {
    let bytes = e.to_canonical_cbor();
    assert_eq!(hex(&bytes), hex(&via_ciborium(e)), "against ciborium");
    let back: EventEnvelope = ciborium::from_reader(&bytes[..]).expect("decode canonical");
    assert_eq!(back, unsigned(e));
    assert_eq!(back.to_canonical_cbor(), bytes, "re-encoding is stable");
    bytes
}

/// The fixed vectors. A change to any of them changes every event hash: it breaks the
/// verification of stored and relayed events, so it needs a new protocol version.
#[test]
fn canonical_cbor_vectors() {
    // a8                                   map(8)
    //   63 736571 01                       "seq": 1
    //   64 64696666 80                     "diff": []
    //   64 74696d65 1b0000018bcfe56800     "time": 1700000000000
    //   65 65706f6368 62 6531              "epoch": "e1"
    //   66 6f726967696e 65 7369746573      "origin": "sites"
    //   67 706f696e746572 73 627665...37   "pointer": "bver://sites/site/7"
    //   67 74726967676572 71 726566...64   "trigger": "refs.site.deleted"
    //   67 76657273696f6e 02               "version": 2
    let cases = [
        (
            samples::envelope_minimal(),
            "a863736571016464696666806474696d651b0000018bcfe568006565706f636862653166\
             6f726967696e65736974657367706f696e74657273627665723a2f2f73697465732f7369\
             74652f37677472696767657271726566732e736974652e64656c65746564677665727369\
             6f6e02",
        ),
        (
            samples::envelope_full(),
            "ab637365711903e8646469666682a3626f70677265706c61636564706174686b2f766f6c\
             746167655f6b766576616c7565186ea3626f70646d6f76656466726f6d642f6f6c646470\
             617468642f6e6577646b696e6470706f7765722e73756273746174696f6e6474696d651b\
             0000018bcfe5687b6565706f63686830314846385a36516576616c7565a5646e616d6565\
             4e6f727468647461677383626876f5f665726174696ffb3fb999999999999a686c6f6361\
             74696f6ea3636c6174f95268636c6f6ef9b8006b656c65766174696f6e5f6d226a766f6c\
             746167655f6b76186e666368616e67656775706461746564666f726967696e6573697465\
             7367706f696e74657277627665723a2f2f73697465732f736974652f6125323062677472\
             696767657271726566732e736974652e757064617465646776657273696f6e03",
        ),
        (
            samples::envelope_named(),
            "ab637365711b0000000100000000646469666681a3626f70636164646470617468692f72\
             65766973696f6e6576616c75656142646b696e6469736368656d617469636474696d6520\
             6565706f63686265326576616c7565a36001657363616c65fa47c3504068726576697369\
             6f6e6142666368616e676568726573746f726564666f726967696e646772696467706f69\
             6e746572781b627665723a2f2f64726177696e67732f64726177696e672f343536677472\
             696767657274726566732e64726177696e672e726576697365646776657273696f6e1818",
        ),
    ];
    let mut failures = Vec::new();
    for (i, (envelope, expected)) in cases.iter().enumerate() {
        let bytes = check_canonical(envelope);
        if hex(&bytes) != *expected {
            failures.push(format!("case {i}: {}", hex(&bytes)));
        }
    }
    assert!(
        failures.is_empty(),
        "vectors changed:\n{}",
        failures.join("\n")
    );
}

#[test]
fn batch_header_vector() {
    let header = samples::batch_header();
    let bytes = header.to_canonical_cbor();
    let mut v = ciborium::Value::serialized(&header).expect("to CBOR value");
    canonicalize(&mut v);
    assert_eq!(hex(&bytes), hex(&to_cbor(&v)), "against ciborium");
    let back: BatchHeader = ciborium::from_reader(&bytes[..]).expect("decode");
    assert_eq!(back, header);
    let expected = format!(
        "a6\
         6565706f6368683031484638\
         5a3651\
         666b65795f69646c656432353531393a33663261\
         666f726967696e657369746573\
         686c6173745f7365711903e9\
         6966697273745f7365711903e7\
         6c6576656e745f686173686573\
         83\
         5820{}5820{}5820{}",
        "11".repeat(32),
        "22".repeat(32),
        "33".repeat(32)
    );
    assert_eq!(hex(&bytes), expected);
}

#[test]
fn canonical_bytes_ignore_key_order_and_signature() {
    let a = samples::envelope_full();
    let mut b = a.clone();
    b.signature = None;
    // The same value with every object's keys inserted in reverse order.
    b.value = b.value.map(|v| reversed(&v));
    assert_eq!(a.to_canonical_cbor(), b.to_canonical_cbor());
}

fn reversed(v: &Value) -> Value {
    match v {
        Value::Object(o) => Value::Object(
            o.iter()
                .rev()
                .map(|(k, v)| (k.clone(), reversed(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(reversed).collect()),
        other => other.clone(),
    }
}

#[test]
fn proof_shape_checks() {
    let e = samples::envelope_full();
    assert_eq!(e.expected_hash().expect("proof"), &Hash256([0x22; 32]));
    let reason = |e: &EventEnvelope| {
        let err = e.expected_hash().expect_err("bad proof");
        assert_eq!(err.code, ErrorCode::BadSignature);
        err.details["reason"].as_str().expect("reason").to_owned()
    };
    let with = |f: &dyn Fn(&mut EventEnvelope)| {
        let mut e = samples::envelope_full();
        f(&mut e);
        reason(&e)
    };
    assert_eq!(with(&|e| e.signature = None), "unsigned");
    assert_eq!(with(&|e| e.origin = "other".into()), "origin_mismatch");
    assert_eq!(with(&|e| e.epoch = "other".into()), "epoch_mismatch");
    assert_eq!(with(&|e| e.seq = 1001), "seq_mismatch");
    let proof = |e: &mut EventEnvelope| e.signature.as_mut().expect("signed").index = 3;
    assert_eq!(with(&proof), "index_out_of_range");
    let header = |e: &mut EventEnvelope| {
        e.signature.as_mut().expect("signed").header.last_seq = 1002;
    };
    assert_eq!(with(&header), "range_mismatch");
    let header = |e: &mut EventEnvelope| {
        e.signature
            .as_mut()
            .expect("signed")
            .header
            .event_hashes
            .clear();
    };
    assert_eq!(with(&header), "empty_batch");
    let header = |e: &mut EventEnvelope| {
        e.signature.as_mut().expect("signed").header.key_id.clear();
    };
    assert_eq!(with(&header), "empty_field");
}

// ---------------------------------------------------------------------------------------
// Invocation and result checks

fn spec(mode: ExecutionMode, mutates: bool) -> PrimitiveSpec {
    let mut s = PrimitiveSpec::new(
        "site.routing.evaluate",
        PrimitiveKind::Evaluator,
        "1.0.0",
        "generic",
        mode,
        Determinism::Deterministic,
    )
    .expect("spec");
    s.mutates_state = mutates;
    s
}

fn request_reason(req: &PrimitiveRequest, spec: &PrimitiveSpec, run_async: bool) -> Option<String> {
    req.validate_for(spec, run_async).err().map(|e| {
        assert_eq!(e.code, ErrorCode::MalformedRequest);
        assert_eq!(e.phase, Phase::InputValidation);
        e.details["reason"].as_str().expect("reason").to_owned()
    })
}

#[test]
fn mutating_or_async_invocations_need_an_idempotency_key() {
    use ExecutionMode::*;
    let bare = PrimitiveRequest::new("r1", "site.routing.evaluate", json!({}));
    let keyed = bare.clone().with_idempotency_key("k");
    let blank = bare.clone().with_idempotency_key("  ");
    let need = Some("idempotency_key_required".to_owned());
    assert_eq!(request_reason(&bare, &spec(Sync, false), false), None);
    assert_eq!(request_reason(&bare, &spec(Either, false), false), None);
    assert_eq!(request_reason(&bare, &spec(Sync, true), false), need);
    assert_eq!(request_reason(&blank, &spec(Sync, true), false), need);
    assert_eq!(request_reason(&bare, &spec(Async, false), true), need);
    assert_eq!(request_reason(&bare, &spec(Either, false), true), need);
    for (mode, mutates, run_async) in [
        (Sync, true, false),
        (Async, false, true),
        (Either, false, true),
        (Either, true, false),
    ] {
        assert_eq!(
            request_reason(&keyed, &spec(mode, mutates), run_async),
            None
        );
    }
    assert!(spec(Sync, true).requires_idempotency_key(false));
    assert!(!spec(Either, false).requires_idempotency_key(false));
}

#[test]
fn other_invocation_checks() {
    use ExecutionMode::*;
    let req = PrimitiveRequest::new("r1", "site.routing.evaluate", json!({}));
    let reason = |r: &PrimitiveRequest, s: &PrimitiveSpec, run_async| {
        request_reason(r, s, run_async).unwrap_or_default()
    };
    assert_eq!(
        reason(&req, &spec(Async, false).clone(), false),
        "async_only"
    );
    assert_eq!(reason(&req, &spec(Sync, false), true), "sync_only");
    let mut other = req.clone();
    other.primitive_name = "site.routing.other".into();
    assert_eq!(reason(&other, &spec(Sync, false), false), "wrong_primitive");
    let mut anon = req.clone();
    anon.request_id = String::new();
    assert_eq!(reason(&anon, &spec(Sync, false), false), "empty_request_id");
    let mut needs_evidence = spec(Sync, false);
    needs_evidence.requires_evidence = true;
    assert_eq!(reason(&req, &needs_evidence, false), "evidence_required");
    let mut with_evidence = req.clone();
    with_evidence.evidence_refs = vec![samples::ptr("bver://sites/site/7")];
    assert_eq!(reason(&with_evidence, &needs_evidence, false), "");
    // The sample request is valid for the sample spec, synchronously and as a job.
    let (req, spec) = (samples::primitive_request(), samples::primitive_spec());
    req.validate_for(&spec, false).expect("valid");
    req.validate_for(&spec, true).expect("valid");
}

#[test]
fn result_checks() {
    let (req, spec) = (samples::primitive_request(), samples::primitive_spec());
    samples::primitive_result()
        .validate_for(&spec)
        .expect("sample result keeps the contract");
    let reason = |r: &PrimitiveResult, s: &PrimitiveSpec| {
        r.validate_for(s).expect_err("breach").details["reason"]
            .as_str()
            .expect("reason")
            .to_owned()
    };
    let mut no_partial = spec.clone();
    no_partial.supports_partial = false;
    assert_eq!(
        reason(&samples::primitive_result(), &no_partial),
        "partial_not_supported"
    );
    let mut applied = samples::primitive_result();
    applied.state_effects[0].mode = EffectMode::Applied;
    let err = applied
        .validate_for(&spec)
        .expect_err("undeclared mutation");
    assert_eq!(err.code, ErrorCode::MutationForbidden);
    let mut mutating = spec.clone();
    mutating.mutates_state = true;
    applied.validate_for(&mutating).expect("declared mutation");
    let mut other = spec.clone();
    other.primitive_kind = PrimitiveKind::Resolver;
    assert_eq!(
        reason(&samples::primitive_result(), &other),
        "wrong_primitive"
    );
    let mut failed = samples::primitive_result();
    failed.status = PrimitiveStatus::Failed;
    assert_eq!(reason(&failed, &spec), "error_status_mismatch");
    let failure = PrimitiveResult::failure(&req, &spec, BverError::internal("solver crashed"));
    assert_eq!(failure.status, PrimitiveStatus::Failed);
    failure
        .validate_for(&spec)
        .expect("failure keeps the contract");
    let rejected = PrimitiveResult::failure(
        &req,
        &spec,
        BverError::new(
            ErrorCode::SchemaViolation,
            Phase::InputValidation,
            "bad page",
        ),
    );
    assert_eq!(rejected.status, PrimitiveStatus::Rejected);
    roundtrip(&failure);
}

#[test]
fn spec_validation() {
    let reason = |s: &PrimitiveSpec| {
        s.validate().expect_err("invalid").details["reason"]
            .as_str()
            .expect("reason")
            .to_owned()
    };
    let good = samples::primitive_spec();
    good.validate().expect("valid");
    let mut s = good.clone();
    s.version = "1.2".into();
    assert_eq!(reason(&s), "bad_version");
    let mut s = good.clone();
    s.domain_scope = " ".into();
    assert_eq!(reason(&s), "empty_domain_scope");
    let mut s = good.clone();
    s.output_schema = json!("object");
    assert_eq!(reason(&s), "bad_schema");
    let mut s = good.clone();
    s.name = "Electrical.symbols".into();
    assert_eq!(reason(&s), "bad_segment_start");
    samples::operation_spec().validate().expect("valid op");
}

#[test]
fn diff_helpers() {
    let d = samples::diff();
    assert_eq!(d.len(), 6);
    let ops: Vec<&str> = d.ops().iter().map(PatchOp::op).collect();
    assert_eq!(ops, ["replace", "add", "remove", "move", "copy", "test"]);
    assert_eq!(d.ops()[3].from(), Some("/old_name"));
    assert_eq!(d.ops()[2].value(), None);
    d.validate().expect("valid pointers");
    // RFC 6902 requires `value` for add/replace/test and `from` for move/copy.
    assert!(serde_json::from_value::<Diff>(json!([{"op": "add", "path": "/a"}])).is_err());
    assert!(serde_json::from_value::<Diff>(json!([{"op": "move", "path": "/a"}])).is_err());
    assert!(serde_json::from_value::<Diff>(json!([{"op": "frobnicate", "path": "/a"}])).is_err());
    // A null value is a value.
    let d: Diff = serde_json::from_value(json!([{"op": "add", "path": "/a", "value": null}]))
        .expect("null value");
    assert_eq!(d.ops()[0].value(), Some(&Value::Null));
    // Members in any order (`op` last), unknown members skipped, in JSON and in CBOR.
    let shuffled = json!([
        {"value": {"a": [1, "x"]}, "comment": {"nested": true}, "path": "/a", "op": "replace"},
        {"path": "/b", "from": "/a", "op": "move"},
    ]);
    let expected = Diff::new(vec![
        PatchOp::Replace {
            path: "/a".into(),
            value: json!({"a": [1, "x"]}),
        },
        PatchOp::Move {
            from: "/a".into(),
            path: "/b".into(),
        },
    ]);
    assert_eq!(
        serde_json::from_value::<Diff>(shuffled.clone()).unwrap(),
        expected
    );
    let mut cbor = Vec::new();
    ciborium::into_writer(&shuffled, &mut cbor).unwrap();
    assert_eq!(
        ciborium::from_reader::<Diff, _>(&cbor[..]).unwrap(),
        expected
    );
    // A repeated member, a missing `path` or `op`, or not a map at all: errors that say so.
    let err = |v: Value| serde_json::from_value::<Diff>(v).unwrap_err().to_string();
    // (Through text: `json!` would keep only the last of two equal keys.)
    let e = serde_json::from_str::<Diff>(r#"[{"op": "remove", "path": "/a", "path": "/b"}]"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("duplicate field `path`"), "{e}");
    assert!(err(json!([{"op": "remove"}])).contains("missing field `path`"));
    assert!(err(json!([{"path": "/a"}])).contains("missing field `op`"));
    assert!(err(json!([{"op": "copy", "path": "/a"}])).contains("missing field `from`"));
    assert!(err(json!([{"op": "test", "path": "/a"}])).contains("missing field `value`"));
    assert!(err(json!([{"op": "frobnicate", "path": "/a"}])).contains("unknown variant"));
    assert!(err(json!(["add"])).contains("invalid type"));
}

/// `depth` arrays, one inside the other.
fn nested(depth: usize) -> Value {
    (1..depth).fold(json!([]), |v, _| json!([v]))
}

#[test]
fn cbor_from_peers_decodes_no_deeper_than_json_reads_back() {
    use bver_contracts::cbor::{self, MAX_JSON_DEPTH};
    // serde_json reads MAX_JSON_DEPTH levels and refuses one more: the bound is its own.
    let deepest = nested(MAX_JSON_DEPTH);
    serde_json::from_str::<Value>(&deepest.to_string()).expect("the deepest JSON reads");
    let e = serde_json::from_str::<Value>(&nested(MAX_JSON_DEPTH + 1).to_string()).unwrap_err();
    assert!(e.to_string().contains("recursion limit"), "{e}");
    // The bounded CBOR decoder takes exactly as much and says why it stops.
    let cbor_of = |v: &Value| {
        let mut out = Vec::new();
        ciborium::into_writer(v, &mut out).unwrap();
        out
    };
    let back: Value = cbor::from_slice(&cbor_of(&deepest), MAX_JSON_DEPTH).unwrap();
    assert_eq!(back, deepest);
    let e = cbor::from_slice::<Value>(&cbor_of(&nested(MAX_JSON_DEPTH + 1)), MAX_JSON_DEPTH)
        .unwrap_err();
    assert!(e.to_string().to_lowercase().contains("recursion"), "{e}");
    // A diff: its operation's value nests two levels inside the diff's own array and map.
    let op = |depth| json!([{ "op": "add", "path": "/a", "value": nested(depth) }]);
    let d: Diff = cbor::from_slice(&cbor_of(&op(MAX_JSON_DEPTH - 2)), MAX_JSON_DEPTH).unwrap();
    serde_json::from_str::<Diff>(&serde_json::to_string(&d).unwrap()).expect("reads back");
    assert!(cbor::from_slice::<Diff>(&cbor_of(&op(MAX_JSON_DEPTH - 1)), MAX_JSON_DEPTH).is_err());
}

// ---------------------------------------------------------------------------------------
// The manifest as the node writes it

/// `tests/vectors/manifest_tiny.json` is `bver manifest` output (node at commit 335ce8f),
/// minified, for a one-bundle domain: a core bundle `tiny` (namespace `tiny`, resolves
/// `sites`, uses `grid-types@1.0.0`) with one repo `note` that includes an inline figment
/// `stamped`, declares a trigger `touched` and has kinds `urgent` and `urgent.today`.
/// The contract types must read it; regenerate it when the node's format changes on purpose.
#[test]
fn reads_the_manifest_the_node_writes() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/manifest_tiny.json"
    );
    let text = std::fs::read_to_string(path).expect("fixture");
    let m: Manifest = serde_json::from_str(&text).expect("the node's manifest parses");
    assert_eq!(m.format, bver_contracts::manifest::MANIFEST_FORMAT);
    assert_eq!(
        (
            m.bundle.name.as_str(),
            m.bundle.version.as_str(),
            m.bundle.role
        ),
        ("tiny", "1.2.0", BundleRole::Core)
    );
    assert_eq!(m.references.len(), 1);
    let note = m.reference("note").expect("repo note");
    assert_eq!(note.namespace, "tiny");
    assert!(note.closed);
    assert_eq!(note.policy.read, ["refs:note:read"]);
    let kinds: Vec<(&str, Option<&str>)> = note
        .kinds
        .iter()
        .map(|k| (k.name.as_str(), k.parent.as_deref()))
        .collect();
    assert_eq!(kinds, [("urgent", None), ("urgent.today", Some("urgent"))]);
    assert_eq!(note.kinds[1].lineage, ["urgent", "urgent.today"]);
    assert_eq!(m.operations.len(), 10);
    let create = m.operation("refs.note.create").expect("create");
    assert_eq!(create.kind, OperationKind::Command);
    assert!(create.mutates_state);
    assert!(!create.idempotency_key_required);
    assert_eq!(create.required_scopes, ["refs:note:create"]);
    assert_eq!(create.input_schema["type"], "object");
    assert_eq!(create.output_schema["type"], "object");
    let get = m.operation("refs.note.get").expect("get");
    assert_eq!((get.kind, get.mutates_state), (OperationKind::Query, false));
    for op in &m.operations {
        op.validate().unwrap_or_else(|e| panic!("{}: {e}", op.name));
    }
    let touched = m
        .triggers
        .iter()
        .find(|t| t.name == "refs.note.touched")
        .expect("declared trigger");
    assert_eq!(touched.on, [ChangeType::Updated, ChangeType::Restored]);
    assert_eq!(touched.source, "declared");
    assert_eq!(m.triggers.len(), 6);
    assert_eq!(m.pointers.serves[0].namespace, "tiny");
    assert_eq!(m.pointers.serves[0].repos, ["note"]);
    assert_eq!(m.pointers.resolves, ["sites"]);
    assert_eq!(m.figments[0].name, "stamped");
    assert!(!m.figments[0].shared);
    assert_eq!(m.contracts[0].name, "grid-types");
    assert_eq!(m.content_hash.len(), 64);
    assert!(m.jobs.is_empty() && m.primitives.is_empty());
    roundtrip(&m);
}

#[test]
fn manifests_are_read_leniently() {
    let m: Manifest = serde_json::from_value(json!({
        "bundle": {"name": "x", "version": "0.1.0", "role": "plugin"},
        "operations": [{"name": "refs.x.get", "kind": "query", "future_field": 1}],
        "something_new": {"a": 1}
    }))
    .expect("minimal manifest");
    assert_eq!(m.bundle.role, BundleRole::Plugin);
    assert!(m.references.is_empty() && m.content_hash.is_empty());
    assert_eq!(m.operations[0].input_schema, json!({}));
}

// ---------------------------------------------------------------------------------------
// Property tests

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn envelopes_round_trip(e in envelope(json_value())) {
        roundtrip(&e);
    }

    #[test]
    fn canonical_cbor_is_canonical(e in envelope(json_value())) {
        let bytes = check_canonical(&e);
        let mut shuffled = e.clone();
        shuffled.value = shuffled.value.as_ref().map(reversed);
        shuffled.diff = Diff::new(
            e.diff
                .ops()
                .iter()
                .map(|op| match op {
                    PatchOp::Add { path, value } => PatchOp::Add {
                        path: path.clone(),
                        value: reversed(value),
                    },
                    other => other.clone(),
                })
                .collect(),
        );
        prop_assert_eq!(shuffled.to_canonical_cbor(), bytes);
    }

    #[test]
    fn diffs_round_trip(ops in proptest::collection::vec(patch_op(json_value()), 0..6)) {
        let d = Diff::new(ops);
        d.validate().expect("generated pointers are valid");
        roundtrip(&d);
    }
}
