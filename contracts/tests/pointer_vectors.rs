//! Runs the pointer vectors in `tests/vectors/` (valid and invalid) and checks that they,
//! and `docs/pointers.md`, cover every error code.

use std::collections::BTreeSet;
use std::path::PathBuf;

use bver_contracts::pointer::{
    AttributePath, AttributePointer, PointerError, PointerErrorKind, RefPtr, Segment,
};
use serde_json::Value;

#[path = "support/roundtrip.rs"]
mod roundtrip;

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn load(name: &str) -> Vec<Value> {
    let path = manifest_dir().join("tests/vectors").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    doc["cases"].as_array().expect("cases").clone()
}

/// Builds an input: a string, or pieces (string, `[string, n]`, `{"hex": ".."}`).
fn bytes_of(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Array(pieces) => {
            let mut out = Vec::new();
            for piece in pieces {
                match piece {
                    Value::String(s) => out.extend_from_slice(s.as_bytes()),
                    Value::Array(rep) => {
                        let s = rep[0].as_str().expect("repeat string");
                        let n = rep[1].as_u64().expect("repeat count");
                        for _ in 0..n {
                            out.extend_from_slice(s.as_bytes());
                        }
                    }
                    Value::Object(o) => {
                        let hex = o["hex"].as_str().expect("hex");
                        for pair in hex.as_bytes().chunks(2) {
                            let digits = std::str::from_utf8(pair).expect("hex digits");
                            out.push(u8::from_str_radix(digits, 16).expect("hex byte"));
                        }
                    }
                    other => panic!("bad piece {other}"),
                }
            }
            out
        }
        other => panic!("bad input {other}"),
    }
}

fn string_of(v: &Value) -> String {
    String::from_utf8(bytes_of(v)).expect("UTF-8 expectation")
}

fn segments_json(path: Option<&AttributePath>) -> Value {
    match path {
        None => Value::Null,
        Some(p) => p
            .iter()
            .map(|seg| match seg {
                Segment::Key(k) => Value::from(k.as_str()),
                Segment::Index(i) => Value::from(*i),
            })
            .collect(),
    }
}

fn mode(case: &Value) -> &str {
    case.get("as").and_then(Value::as_str).unwrap_or("ref")
}

#[test]
fn valid_vectors() {
    let cases = load("pointers_valid.json");
    assert!(cases.len() >= 60, "only {} valid vectors", cases.len());
    for case in &cases {
        let rule = case["rule"].as_str().expect("rule");
        let input = string_of(&case["input"]);
        let canonical = case
            .get("canonical")
            .map_or_else(|| input.clone(), string_of);
        let (text, path) = match mode(case) {
            "path" => {
                let p = AttributePath::parse(&input)
                    .unwrap_or_else(|e| panic!("{rule}: {input:?} rejected: {e}"));
                (p.to_string(), segments_json(Some(&p)))
            }
            m => {
                let p = if m == "attribute" {
                    AttributePointer::parse(&input).map(RefPtr::from)
                } else {
                    RefPtr::parse_bytes(input.as_bytes())
                }
                .unwrap_or_else(|e| panic!("{rule}: {input:?} rejected: {e}"));
                assert_eq!(p.namespace(), case["namespace"], "{rule}: namespace");
                assert_eq!(p.repo(), case["repo"], "{rule}: repo");
                assert_eq!(p.id(), case["id"], "{rule}: id");
                (p.to_string(), segments_json(p.path()))
            }
        };
        assert_eq!(text, canonical, "{rule}: canonical form");
        assert_eq!(path, case["path"], "{rule}: path");
        roundtrip::check_str(&input);
        roundtrip::check_str(&canonical);
    }
}

#[test]
fn invalid_vectors() {
    let cases = load("pointers_invalid.json");
    assert!(cases.len() >= 60, "only {} invalid vectors", cases.len());
    for case in &cases {
        let rule = case["rule"].as_str().expect("rule");
        let input = bytes_of(&case["input"]);
        let shown = String::from_utf8_lossy(&input).into_owned();
        let result: Result<(), PointerError> = match mode(case) {
            "path" => AttributePath::parse(&shown).map(drop),
            "attribute" => AttributePointer::parse(&shown).map(drop),
            _ => RefPtr::parse_bytes(&input).map(drop),
        };
        let e = result.expect_err(&format!("{rule}: {shown:?} was accepted"));
        assert_eq!(
            (e.code(), e.offset() as u64),
            (
                case["code"].as_str().expect("code"),
                case["offset"].as_u64().expect("offset")
            ),
            "{rule}: {shown:?}: {e}"
        );
        roundtrip::check_bytes(&input);
    }
}

fn invalid_codes() -> BTreeSet<String> {
    load("pointers_invalid.json")
        .iter()
        .map(|c| c["code"].as_str().expect("code").to_owned())
        .collect()
}

#[test]
fn invalid_vectors_cover_every_code() {
    let covered = invalid_codes();
    for kind in PointerErrorKind::ALL {
        assert!(
            covered.contains(kind.code()),
            "no invalid vector for `{}`",
            kind.code()
        );
    }
    let known: BTreeSet<&str> = PointerErrorKind::ALL.iter().map(|k| k.code()).collect();
    for code in &covered {
        assert!(
            known.contains(code.as_str()),
            "vector names unknown code `{code}`"
        );
    }
}

#[test]
fn docs_list_every_code() {
    let path = manifest_dir().join("../docs/pointers.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    for kind in PointerErrorKind::ALL {
        let cell = format!("| `{}` |", kind.code());
        assert!(
            doc.contains(&cell),
            "docs/pointers.md has no table row for `{}`",
            kind.code()
        );
    }
}
