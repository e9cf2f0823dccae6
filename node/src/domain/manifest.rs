//! `bver.manifest.json`: the capability contract of one bundle, rendered deterministically.
//!
//! A manifest lists what a bundle brings to its platform: its reference types (schemas,
//! kinds, policies), the operations generated for them with their schemas and scopes, the
//! triggers they emit, the namespaces whose pointers it serves and those it resolves
//! elsewhere, the figments and contract packages it uses, and (empty until the bundle format
//! declares them) jobs, orchestrators, channels and primitives.
//!
//! **Determinism:** the same definitions give byte-identical files: every list is sorted or
//! in definition order fixed by the registry, no clock, no absolute path, no map with random
//! order. `content_hash` is the SHA-256 (lowercase hex) of the canonical JSON of the manifest
//! without `content_hash`: object keys sorted by their UTF-16 code units, no whitespace (the
//! key order of RFC 8785; numbers as serde_json writes them).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::ops;
use super::registry::{Bundle, Domain, RefType, TriggerSource};

/// The file name of a manifest.
pub const MANIFEST_FILE: &str = "bver.manifest.json";
/// The manifest format identifier written in every manifest.
pub const FORMAT: &str = "bver.manifest/1";

/// The manifest of `bundle` (which must belong to `domain`), with its `content_hash`.
pub fn manifest(domain: &Domain, bundle: &Bundle) -> Value {
    let repos: Vec<&RefType> = bundle
        .repos
        .iter()
        .filter_map(|r| domain.ref_type(r))
        .collect();
    let references: Vec<Value> = repos.iter().map(|rt| reference(rt)).collect();
    let operations: Vec<Value> = repos
        .iter()
        .flat_map(|rt| ops::ref_operations(rt))
        .map(|op| {
            let mut v = json!({
                "name": op.name,
                "description": op.description,
                "kind": if op.mutation { "command" } else { "query" },
                "mutation": op.mutation,
                "idempotency": if op.mutation { "optional" } else { "none" },
                "scopes": op.scopes,
                "input": op.input,
                "output": op.output,
            });
            if let (Some(h), Some(o)) = (&op.handler, v.as_object_mut()) {
                o.insert("handler".into(), json!(h));
            }
            v
        })
        .collect();
    let triggers: Vec<Value> = repos
        .iter()
        .flat_map(|rt| rt.triggers.iter())
        .map(|t| {
            json!({
                "name": t.name,
                "description": t.description,
                "on": t.on.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
                "when": t.when.as_ref().map(|w| w.source.clone()),
                "source": match &t.source {
                    TriggerSource::BuiltIn => "built_in".to_owned(),
                    TriggerSource::RefType => "declared".to_owned(),
                    TriggerSource::Figment(f) => format!("figment:{f}"),
                },
            })
        })
        .collect();
    let figments: Vec<Value> = bundle
        .figments
        .iter()
        .filter_map(|f| domain.figment(f))
        .map(|f| {
            json!({
                "name": f.name,
                "version": f.version.clone().unwrap_or_else(|| bundle.version.clone()),
                "description": f.description,
                "shared": f.bundle.is_none(),
                "rules": f.rules.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
                "operations": f.operations.iter().map(|o| o.name.as_str()).collect::<Vec<_>>(),
            })
        })
        .collect();
    let serves: Vec<Value> = bundle
        .namespaces
        .iter()
        .map(|ns| {
            json!({
                "namespace": ns,
                "repos": domain.repos_in(ns).map(|r| r.repo.as_str()).collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut m = Map::new();
    m.insert("format".into(), json!(FORMAT));
    m.insert(
        "bundle".into(),
        json!({
            "name": bundle.name,
            "version": bundle.version,
            "role": bundle.role.as_str(),
            "description": bundle.description,
        }),
    );
    m.insert("references".into(), Value::Array(references));
    m.insert("operations".into(), Value::Array(operations));
    m.insert("triggers".into(), Value::Array(triggers));
    m.insert("jobs".into(), json!([]));
    m.insert("orchestrators".into(), json!([]));
    let channels: Vec<Value> = bundle
        .channels
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "description": c.description,
                "triggers": c.triggers,
                "scope": c.scope,
                "contract": c.contract.as_ref().map(|(p, m, t)| format!("{p}@{m}/{t}")),
            })
        })
        .collect();
    m.insert("channels".into(), Value::Array(channels));
    m.insert("primitives".into(), json!([]));
    m.insert(
        "pointers".into(),
        json!({ "serves": serves, "resolves": bundle.resolves }),
    );
    m.insert("figments".into(), Value::Array(figments));
    m.insert(
        "contracts".into(),
        Value::Array(
            bundle
                .contracts
                .iter()
                .map(|c| {
                    json!({
                        "name": c.name,
                        "version": c.version,
                        "loaded": domain.contract(&c.name).map(|p| p.version.clone()),
                    })
                })
                .collect(),
        ),
    );
    let hash = content_hash(&Value::Object(m.clone()));
    m.insert("content_hash".into(), json!(hash));
    Value::Object(m)
}

fn reference(rt: &RefType) -> Value {
    let kinds: Vec<Value> = rt
        .kinds
        .values()
        .map(|k| {
            json!({
                "name": k.name,
                "parent": k.parent,
                "description": k.description,
                "lineage": k.lineage,
                "figments": k.figments,
                "schema": k.schema,
                "rules": rules_json(&k.rules),
            })
        })
        .collect();
    json!({
        "repo": rt.repo,
        "namespace": rt.namespace,
        "description": rt.description,
        "closed": rt.closed,
        "figments": rt.figments,
        "defs": rt.defs,
        "schema": rt.schema,
        "rules": rules_json(&rt.rules),
        "kinds": kinds,
        "policy": {
            "read": rt.policy.read,
            "create": rt.policy.create,
            "update": rt.policy.update,
            "delete": rt.policy.delete,
        },
    })
}

fn rules_json(rules: &[std::sync::Arc<super::expr::Rule>]) -> Vec<Value> {
    rules
        .iter()
        .map(|r| {
            json!({
                "name": r.name,
                "expr": r.expr.source,
                "message": r.message,
                "fields": r.fields,
                "source": r.source,
            })
        })
        .collect()
}

/// SHA-256 (lowercase hex) of the canonical JSON of `manifest` without `content_hash`.
pub fn content_hash(manifest: &Value) -> String {
    let mut copy = manifest.clone();
    if let Some(o) = copy.as_object_mut() {
        o.remove("content_hash");
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, canonical(&copy).as_bytes());
    hex::encode(digest.as_ref())
}

/// Canonical JSON: object keys sorted by UTF-16 code units, no whitespace.
pub fn canonical(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                if let Some(v) = o.get(*k) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// The bytes of a manifest file: pretty JSON (two-space indent) and a final newline.
pub fn render(manifest: &Value) -> String {
    let mut s = serde_json::to_string_pretty(manifest).unwrap_or_default();
    s.push('\n');
    s
}

/// Write every bundle's manifest: to `<bundle dir>/bver.manifest.json`, or with `out` to
/// `<out>/<bundle>/bver.manifest.json`. Returns the files written, core bundle first.
///
/// # Errors
///
/// The first file or directory that cannot be written.
pub fn write_all(domain: &Domain, out: Option<&Path>) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for bundle in domain.bundles() {
        let dir = match out {
            Some(out) => out.join(&bundle.name),
            None => bundle.dir.clone(),
        };
        fs::create_dir_all(&dir)?;
        let path = dir.join(MANIFEST_FILE);
        fs::write(&path, render(&manifest(domain, bundle)))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_and_drops_whitespace() {
        let v = json!({"b": [1, {"z": null, "a": "x"}], "a": true, "é": 1, "Z": 2});
        assert_eq!(
            canonical(&v),
            r#"{"Z":2,"a":true,"b":[1,{"a":"x","z":null}],"é":1}"#
        );
    }

    #[test]
    fn the_hash_ignores_itself_and_key_order() {
        let a = json!({"x": 1, "y": [2, 3]});
        let b = json!({"y": [2, 3], "x": 1, "content_hash": "whatever"});
        assert_eq!(content_hash(&a), content_hash(&b));
        // `printf '{"x":1,"y":[2,3]}' | sha256sum`
        assert_eq!(
            content_hash(&a),
            "b837c857b5318bf17ecf9d8571ff1ba555173cc2e5959751498da8070d7d614a"
        );
        assert_ne!(
            content_hash(&a),
            content_hash(&json!({"x": 2, "y": [2, 3]}))
        );
    }
}
