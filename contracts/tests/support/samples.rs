//! One realistic sample value per contract type, shared by `contract_types.rs` (round trips)
//! and `schemas.rs` (each sample must validate against its published schema).

#![allow(dead_code)]

use bver_contracts::event::{
    BatchHeader, BatchProof, EventEnvelope, EventId, Hash256, SignatureBytes,
};
use bver_contracts::job::{JobHandle, JobStatus, Progress};
use bver_contracts::manifest::{
    BundleInfo, BundleRole, ContractPackage, FigmentUse, KindSpec, Manifest, PointerScope,
    RefPolicy, ReferenceSpec, ServedNamespace, TriggerSpec,
};
use bver_contracts::ops::{OperationKind, OperationSpec};
use bver_contracts::primitive::{
    Budget, Confidence, Determinism, Diagnostic, EffectMode, ExecutionMode, Followup, Metrics,
    PrimitiveKind, PrimitiveRequest, PrimitiveResult, PrimitiveSpec, PrimitiveStatus, Severity,
    StateEffect,
};
use bver_contracts::version::{ChangeType, Diff, PatchOp, Provenance, VersionRecord};
use bver_contracts::{BverError, ErrorCode, Phase, RefPtr};
use serde_json::json;

pub(crate) fn ptr(s: &str) -> RefPtr {
    s.parse().expect("sample pointer")
}

pub(crate) fn bver_error() -> BverError {
    BverError::new(
        ErrorCode::SchemaViolation,
        Phase::InputValidation,
        "value does not match the schema of kind power.substation",
    )
    .with_details(json!({"violations": [{"path": "/voltage_kv", "message": "must be >= 0"}]}))
    .with_ref("bver://sites/site/7")
}

pub(crate) fn operation_spec() -> OperationSpec {
    OperationSpec::new(
        "refs.site.create",
        OperationKind::Command,
        "Create a `site` reference (version 1), optionally of a kind.",
    )
    .expect("valid name")
    .with_schemas(
        json!({"type": "object", "required": ["value"], "properties": {"value": {"type": "object"}}}),
        json!({"type": "object"}),
    )
    .mutating()
    .with_scopes(["refs:site:create"])
    .with_tags(["refs", "site"])
    .with_repo("site")
    .with_action("create")
}

pub(crate) fn primitive_spec() -> PrimitiveSpec {
    let mut spec = PrimitiveSpec::new(
        "electrical.symbols.interpret",
        PrimitiveKind::Interpreter,
        "1.2.0",
        "electrical",
        ExecutionMode::Either,
        Determinism::BoundedNondeterministic,
    )
    .expect("valid spec");
    spec.description = "Extract electrical symbols from a drawing sheet.".into();
    spec.input_schema = json!({"type": "object", "properties": {"page": {"type": "integer"}}});
    spec.output_schema = json!({"type": "object", "required": ["symbols"]});
    spec.requires_evidence = true;
    spec.supports_partial = true;
    spec.tags = vec!["drawings".into(), "symbols".into()];
    spec.action = Some("interpret".into());
    spec.resource = Some("drawings".into());
    spec
}

pub(crate) fn primitive_request() -> PrimitiveRequest {
    let mut req = PrimitiveRequest::new(
        "req-0001",
        "electrical.symbols.interpret",
        json!({"page": 2, "layers": ["E-POWR"]}),
    )
    .with_idempotency_key("idem-42");
    req.subject_refs = vec![ptr("bver://drawings/drawing/456")];
    req.evidence_refs = vec![ptr("bver://drawings/drawing/456@meta.sheet_number")];
    req.state_ref = Some(ptr("bver://graphs/graph/g1"));
    req.constraints.insert("max_symbols".into(), json!(500));
    req.budget = Budget {
        max_duration_ms: Some(30_000),
        max_tokens: Some(8_000),
        max_cost: Some(0.25),
        max_items: None,
    };
    req.metadata.insert("origin".into(), json!("mcp"));
    req
}

pub(crate) fn diagnostic() -> Diagnostic {
    let mut d = Diagnostic::new(
        Severity::Warning,
        "symbol_ambiguous",
        "Symbol at (120, 48) is a breaker or a disconnector.",
    );
    d.pointer = Some(ptr("bver://drawings/drawing/456@terminals[0].label"));
    d.location = Some("/symbols/3".into());
    d.rule = Some("IEC 60617-7".into());
    d.hint = Some("Check the legend on sheet 1.".into());
    d
}

pub(crate) fn diff() -> Diff {
    Diff::new(vec![
        PatchOp::Replace {
            path: "/voltage_kv".into(),
            value: json!(110),
        },
        PatchOp::Add {
            path: "/tags/-".into(),
            value: json!("hv"),
        },
        PatchOp::Remove {
            path: "/legacy".into(),
        },
        PatchOp::Move {
            from: "/old_name".into(),
            path: "/name".into(),
        },
        PatchOp::Copy {
            from: "/name".into(),
            path: "/label".into(),
        },
        PatchOp::Test {
            path: "/id".into(),
            value: json!("7"),
        },
    ])
}

pub(crate) fn primitive_result() -> PrimitiveResult {
    let mut r = PrimitiveResult::success(
        &primitive_request(),
        &primitive_spec(),
        "Found 12 symbols, 1 ambiguous.",
        json!({"symbols": [{"type": "breaker", "at": [120, 48]}]}),
    );
    r.status = PrimitiveStatus::Partial;
    r.confidence = Some(Confidence {
        score: Some(0.875),
        ambiguous: true,
        rationale: Some("one symbol has two readings".into()),
    });
    r.evidence_refs = vec![ptr("bver://drawings/drawing/456")];
    r.artifact_refs = vec![ptr("bver://drawings/observation/o-1")];
    r.state_effects = vec![StateEffect {
        pointer: ptr("bver://graphs/graph/g1"),
        mode: EffectMode::Proposed,
        change: ChangeType::Updated,
        diff: diff(),
        version: None,
    }];
    r.diagnostics = vec![diagnostic()];
    r.followups = vec![Followup {
        name: "electrical.symbols.resolve".into(),
        reason: "bind the symbols to catalogue parts".into(),
        input: json!({"observation": "bver://drawings/observation/o-1"}),
    }];
    r.metrics = Metrics {
        duration_ms: Some(1234),
        tokens: Some(900),
        cost: Some(0.5),
        items: Some(12),
        extra: serde_json::Map::from_iter([("pages".to_owned(), json!(1))]),
    };
    r
}

pub(crate) fn job_handle() -> JobHandle {
    let mut j = JobHandle::queued("job-7f3a", "jobs.reindex", 1_700_000_000_000);
    j.status = JobStatus::Retrying;
    j.attempts = 2;
    j.max_attempts = Some(5);
    j.updated_at = 1_700_000_005_000;
    j.run_after = Some(1_700_000_009_000);
    j.request_id = Some("req-0002".into());
    j.idempotency_key = Some("reindex-2024-01".into());
    j.subject_refs = vec![ptr("bver://sites/site/7")];
    j.progress = Some(Progress {
        done: 40,
        total: Some(100),
        message: Some("sites".into()),
    });
    j.error = Some(BverError::new(
        ErrorCode::LeaseConflict,
        Phase::Execution,
        "bver://sites/site/7 is leased by job-1",
    ));
    j
}

pub(crate) fn provenance() -> Provenance {
    Provenance {
        principal: "user:ada".into(),
        operation: "refs.site.patch".into(),
        request_id: "req-0003".into(),
        idempotency_key: Some("k-1".into()),
        at: 1_700_000_000_123,
    }
}

pub(crate) fn version_record() -> VersionRecord {
    VersionRecord {
        pointer: ptr("bver://sites/site/7"),
        version: 3,
        kind: Some("power.substation".into()),
        change: ChangeType::Updated,
        value: json!({"name": "North", "voltage_kv": 110, "tags": ["hv"]}),
        diff: diff(),
        deleted: false,
        provenance: provenance(),
    }
}

/// The smallest envelope: no kind, no change, no value, an empty diff, no signature.
pub(crate) fn envelope_minimal() -> EventEnvelope {
    EventEnvelope {
        origin: "sites".into(),
        epoch: "e1".into(),
        seq: 1,
        trigger: "refs.site.deleted".into(),
        pointer: ptr("bver://sites/site/7"),
        version: 2,
        kind: None,
        change: None,
        diff: Diff::default(),
        value: None,
        time: 1_700_000_000_000,
        signature: None,
    }
}

/// An update with every field: kind, change, a diff, a value with nested objects whose keys
/// are out of canonical order, negative and float numbers, and a signature.
pub(crate) fn envelope_full() -> EventEnvelope {
    EventEnvelope {
        origin: "sites".into(),
        epoch: "01HF8Z6Q".into(),
        seq: 1000,
        trigger: "refs.site.updated".into(),
        pointer: ptr("bver://sites/site/a%20b"),
        version: 3,
        kind: Some("power.substation".into()),
        change: Some(ChangeType::Updated),
        diff: Diff::new(vec![
            PatchOp::Replace {
                path: "/voltage_kv".into(),
                value: json!(110),
            },
            PatchOp::Move {
                from: "/old".into(),
                path: "/new".into(),
            },
        ]),
        value: Some(json!({
            "voltage_kv": 110,
            "name": "North",
            "location": {"lon": -0.5, "lat": 51.25, "elevation_m": -3},
            "ratio": 0.1,
            "tags": ["hv", true, null]
        })),
        time: 1_700_000_000_123,
        signature: Some(batch_proof()),
    }
}

/// A named trigger with a large sequence number (a 5-byte head) and a float that needs
/// single precision.
pub(crate) fn envelope_named() -> EventEnvelope {
    EventEnvelope {
        origin: "grid".into(),
        epoch: "e2".into(),
        seq: 4_294_967_296,
        trigger: "refs.drawing.revised".into(),
        pointer: ptr("bver://drawings/drawing/456"),
        version: 24,
        kind: Some("schematic".into()),
        change: Some(ChangeType::Restored),
        diff: Diff::new(vec![PatchOp::Add {
            path: "/revision".into(),
            value: json!("B"),
        }]),
        value: Some(json!({"revision": "B", "scale": 100000.5, "": 1})),
        time: -1,
        signature: None,
    }
}

pub(crate) fn event_id() -> EventId {
    envelope_full().id()
}

pub(crate) fn batch_header() -> BatchHeader {
    BatchHeader {
        origin: "sites".into(),
        epoch: "01HF8Z6Q".into(),
        first_seq: 999,
        last_seq: 1001,
        event_hashes: vec![
            Hash256([0x11; 32]),
            Hash256([0x22; 32]),
            Hash256([0x33; 32]),
        ],
        key_id: "ed25519:3f2a".into(),
    }
}

pub(crate) fn batch_proof() -> BatchProof {
    BatchProof {
        header: batch_header(),
        signature: SignatureBytes((0u8..64).collect()),
        index: 1,
    }
}

pub(crate) fn manifest() -> Manifest {
    Manifest {
        format: "bver.manifest/1".into(),
        bundle: BundleInfo {
            name: "grid".into(),
            version: "1.0.0".into(),
            role: BundleRole::Core,
            description: "Sites and feeders.".into(),
        },
        references: vec![ReferenceSpec {
            repo: "site".into(),
            namespace: "sites".into(),
            description: "A site.".into(),
            closed: true,
            figments: vec!["geo".into()],
            defs: serde_json::Map::from_iter([(
                "site".to_owned(),
                json!({"$id": "urn:bver:grid:site", "type": "object"}),
            )]),
            schema: json!({"allOf": [{"$ref": "urn:bver:grid:site"}]}),
            kinds: vec![KindSpec {
                name: "power.substation".into(),
                parent: Some("power".into()),
                description: "A substation.".into(),
                lineage: vec!["power".into(), "power.substation".into()],
                figments: vec![],
                schema: json!({"type": "object"}),
            }],
            policy: RefPolicy {
                read: vec!["refs:site:read".into()],
                create: vec!["refs:site:create".into()],
                update: vec!["refs:site:update".into()],
                delete: vec!["refs:site:delete".into()],
            },
        }],
        operations: vec![operation_spec()],
        triggers: vec![TriggerSpec {
            name: "refs.site.updated".into(),
            description: "A `site` reference was updated.".into(),
            on: vec![ChangeType::Updated],
            source: "built_in".into(),
        }],
        jobs: vec![json!({"name": "jobs.reindex"})],
        orchestrators: vec![],
        channels: vec![],
        primitives: vec![primitive_spec()],
        pointers: PointerScope {
            serves: vec![ServedNamespace {
                namespace: "sites".into(),
                repos: vec!["feeder".into(), "site".into()],
            }],
            resolves: vec!["drawings".into()],
        },
        figments: vec![FigmentUse {
            name: "geo".into(),
            version: "1.0.0".into(),
            description: "A WGS 84 position.".into(),
            shared: true,
        }],
        contracts: vec![ContractPackage {
            name: "grid-types".into(),
            version: "1.0.0".into(),
        }],
        content_hash: "b837c857b5318bf17ecf9d8571ff1ba555173cc2e5959751498da8070d7d614a".into(),
    }
}
