//! The published JSON Schemas in `contracts/schemas/`, one file per contract type: each must
//! equal what schemars generates from the type today, and must accept the samples of that
//! type (and the manifest the node writes) while rejecting a few malformed instances.
//!
//! After a deliberate change to a contract type, regenerate the files with
//!
//! ```sh
//! BVER_UPDATE_SCHEMAS=1 cargo test -p bver-contracts --test schemas
//! ```
//!
//! and review the diff: it is the change SDK users will see. A new type is one line in
//! [`published_schemas`].

use std::collections::BTreeSet;
use std::path::PathBuf;

use bver_contracts::BverError;
use bver_contracts::event::BatchProof;
use bver_contracts::job::JobHandle;
use bver_contracts::manifest::Manifest;
use bver_contracts::pointer::{AttributePath, AttributePointer};
use bver_contracts::primitive::PrimitiveRequest;
use bver_contracts::version::{Diff, Provenance, VersionRecord};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Value, json};

#[path = "support/samples.rs"]
mod samples;

fn schema_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

const SUFFIX: &str = ".schema.json";

struct Check {
    update: bool,
    files: BTreeSet<String>,
    failures: Vec<String>,
}

impl Check {
    fn new() -> Self {
        Self {
            update: std::env::var("BVER_UPDATE_SCHEMAS").is_ok_and(|v| v == "1"),
            files: BTreeSet::new(),
            failures: Vec::new(),
        }
    }

    /// Checks (or, when updating, writes) `schemas/{name}.schema.json` for `T`, validates
    /// every sample against it and checks that every instance of `invalid` is rejected.
    fn schema<T: JsonSchema + Serialize>(&mut self, name: &str, samples: &[T], invalid: &[Value]) {
        let file = format!("{name}{SUFFIX}");
        assert!(self.files.insert(file.clone()), "{file} listed twice");
        let schema = serde_json::to_value(schemars::schema_for!(T)).expect("schema to JSON");
        let mut text = serde_json::to_string_pretty(&schema).expect("pretty JSON");
        text.push('\n');
        let path = schema_dir().join(&file);
        let committed = std::fs::read_to_string(&path).ok();
        if committed.as_deref() != Some(text.as_str()) {
            if self.update {
                std::fs::create_dir_all(schema_dir()).expect("create schemas/");
                std::fs::write(&path, &text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
            } else if committed.is_none() {
                self.failures.push(format!("{file}: missing"));
            } else {
                self.failures.push(format!("{file}: differs from the type"));
            }
        }
        let validator = match jsonschema::validator_for(&schema) {
            Ok(v) => v,
            Err(e) => {
                self.failures
                    .push(format!("{file}: not a valid JSON Schema: {e}"));
                return;
            }
        };
        for (i, sample) in samples.iter().enumerate() {
            let instance = serde_json::to_value(sample).expect("sample to JSON");
            self.accepts(&file, &validator, &format!("sample {i}"), &instance);
        }
        for (i, instance) in invalid.iter().enumerate() {
            if validator.is_valid(instance) {
                self.failures
                    .push(format!("{file}: accepts invalid instance {i}: {instance}"));
            }
        }
    }

    fn accepts(&mut self, file: &str, validator: &jsonschema::Validator, what: &str, v: &Value) {
        let errors: Vec<String> = validator
            .iter_errors(v)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if !errors.is_empty() {
            self.failures
                .push(format!("{file}: rejects {what}: {}", errors.join("; ")));
        }
    }

    /// Fails on schema files no type claims, and reports every failure at once.
    fn finish(mut self) {
        let on_disk: BTreeSet<String> = std::fs::read_dir(schema_dir())
            .map(|dir| {
                dir.filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(SUFFIX))
                    .collect()
            })
            .unwrap_or_default();
        for orphan in on_disk.difference(&self.files) {
            if self.update {
                let _ = std::fs::remove_file(schema_dir().join(orphan));
            } else {
                self.failures
                    .push(format!("{orphan}: no contract type publishes it"));
            }
        }
        assert!(
            self.failures.is_empty(),
            "published schemas are out of date (regenerate with BVER_UPDATE_SCHEMAS=1 and \
             review the diff):\n  {}",
            self.failures.join("\n  ")
        );
    }
}

#[test]
fn published_schemas() {
    let mut c = Check::new();
    c.schema(
        "ref_ptr",
        &[
            samples::ptr("bver://sites/site/7"),
            samples::ptr("bver://sites/site/a%20b@terminals[0].label"),
        ],
        &[json!("http://x"), json!("bver://Sites/site/1"), json!(7)],
    );
    c.schema(
        "attribute_pointer",
        &["bver://drawings/drawing/456@meta.sheet_number"
            .parse::<AttributePointer>()
            .expect("pointer")],
        &[json!("bver://sites/site/7")],
    );
    c.schema(
        "attribute_path",
        &["terminals[0].label".parse::<AttributePath>().expect("path")],
        &[json!("")],
    );
    c.schema(
        "bver_error",
        &[samples::bver_error(), BverError::not_found("no site 7")],
        &[json!({"code": "no_such_code", "message": "", "phase": "execution", "retryable": false})],
    );
    c.schema(
        "operation_spec",
        &[samples::operation_spec()],
        &[
            json!({"name": "a.b", "kind": "procedure"}),
            json!({"kind": "query"}),
        ],
    );
    c.schema(
        "primitive_spec",
        &[samples::primitive_spec()],
        &[
            json!({"name": "a.b", "primitive_kind": "oracle", "version": "1.0.0",
                 "domain_scope": "g", "execution_mode": "sync", "determinism": "deterministic"}),
        ],
    );
    c.schema(
        "primitive_request",
        &[
            samples::primitive_request(),
            PrimitiveRequest::new("r", "a.b", Value::Null),
        ],
        &[json!({"request_id": "r", "primitive_name": "a.b", "subject_refs": ["nope"]})],
    );
    c.schema(
        "primitive_result",
        &[samples::primitive_result()],
        &[
            json!({"request_id": "r", "primitive_name": "a.b", "primitive_kind": "resolver",
                 "status": "maybe"}),
        ],
    );
    c.schema(
        "diagnostic",
        &[samples::diagnostic()],
        &[json!({"severity": "fatal", "code": "x", "message": "y"})],
    );
    c.schema(
        "job_handle",
        &[samples::job_handle(), JobHandle::queued("j", "jobs.x", 0)],
        &[json!({"id": "j", "job": "x", "status": "paused", "created_at": 0, "updated_at": 0})],
    );
    c.schema(
        "event_envelope",
        &[
            samples::envelope_minimal(),
            samples::envelope_full(),
            samples::envelope_named(),
        ],
        &[
            json!({"origin": "s", "epoch": "e", "seq": -1, "trigger": "t",
                 "pointer": "bver://s/r/1", "version": 1, "time": 0}),
        ],
    );
    c.schema(
        "event_id",
        &[samples::event_id()],
        &[json!({"platform": "s"})],
    );
    c.schema::<BatchProof>(
        "batch_proof",
        &[samples::batch_proof()],
        &[
            json!({"header": {"origin": "s", "epoch": "e", "first_seq": 1, "last_seq": 1,
                            "event_hashes": ["00"], "key_id": "k"},
                 "signature": "", "index": 0}),
        ],
    );
    c.schema::<VersionRecord>(
        "version_record",
        &[samples::version_record()],
        &[
            json!({"pointer": "bver://s/r/1", "version": 1, "change": "renamed", "value": {},
                 "provenance": {"principal": "p", "operation": "o", "request_id": "r", "at": 0}}),
        ],
    );
    c.schema::<Diff>(
        "diff",
        &[samples::diff(), Diff::default()],
        &[
            json!([{"op": "add", "path": "/a"}]),
            json!([{"op": "move", "path": "/a"}]),
        ],
    );
    c.schema::<Provenance>("provenance", &[samples::provenance()], &[json!({})]);
    c.schema::<Manifest>("manifest", &[samples::manifest()], &[json!({"bundle": {}})]);
    // The manifest the node writes today validates against the published schema too.
    let fixture: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/vectors/manifest_tiny.json"
        ))
        .expect("fixture"),
    )
    .expect("fixture JSON");
    let schema = serde_json::to_value(schemars::schema_for!(Manifest)).expect("schema");
    let validator = jsonschema::validator_for(&schema).expect("manifest schema");
    c.accepts(
        "manifest.schema.json",
        &validator,
        "tests/vectors/manifest_tiny.json",
        &fixture,
    );
    c.finish();
}
