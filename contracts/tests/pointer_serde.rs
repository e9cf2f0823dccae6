//! serde (JSON and CBOR) and JSON Schema for the pointer types: canonical strings out,
//! strict parsing in, parse errors as serde errors, schemas that describe strings.

use bver_contracts::pointer::{AttributePath, AttributePointer, RefPtr};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

fn cbor<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).expect("CBOR encode");
    out
}

fn from_cbor<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, String> {
    ciborium::from_reader(bytes).map_err(|e| e.to_string())
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Doc {
    target: RefPtr,
    field: AttributePointer,
    path: AttributePath,
    many: Vec<RefPtr>,
}

fn doc() -> Doc {
    Doc {
        target: "bver://sites/site/a%20b".parse().expect("pointer"),
        field: "bver://drawings/drawing/456@meta.sheet_number"
            .parse()
            .expect("pointer"),
        path: "terminals[0].label".parse().expect("path"),
        many: vec!["bver://sites/site/1".parse().expect("pointer")],
    }
}

#[test]
fn json_is_the_canonical_string() {
    let json = serde_json::to_string(&doc()).expect("JSON");
    assert_eq!(
        json,
        r#"{"target":"bver://sites/site/a%20b","field":"bver://drawings/drawing/456@meta.sheet_number","path":"terminals[0].label","many":["bver://sites/site/1"]}"#
    );
    assert_eq!(
        serde_json::from_str::<Doc>(&json).expect("parse back"),
        doc()
    );
}

#[test]
fn json_input_is_normalised() {
    let p: RefPtr =
        serde_json::from_str(r#""BVER://sites/site/%41@[\"name\"]""#).expect("accepted");
    assert_eq!(
        serde_json::to_string(&p).expect("JSON"),
        r#""bver://sites/site/A@name""#
    );
    let path: AttributePath = serde_json::from_str(r#""[\"x\"][0]""#).expect("accepted");
    assert_eq!(path.to_string(), "x[0]");
}

#[test]
fn json_errors_name_the_code_and_offset() {
    let e = serde_json::from_str::<RefPtr>(r#""bver://sites/Site/1""#).expect_err("uppercase repo");
    let msg = e.to_string();
    assert!(
        msg.contains("uppercase_identifier") && msg.contains("at byte 13"),
        "{msg}"
    );
    let e =
        serde_json::from_str::<AttributePointer>(r#""bver://sites/site/1""#).expect_err("no path");
    assert!(e.to_string().contains("missing_path"), "{e}");
    let e = serde_json::from_str::<RefPtr>("42").expect_err("not a string");
    assert!(e.to_string().contains("a bver:// pointer string"), "{e}");
    let e = serde_json::from_str::<AttributePath>(r#""a..b""#).expect_err("empty segment");
    assert!(e.to_string().contains("empty_segment"), "{e}");
}

#[test]
fn cbor_is_a_text_string() {
    let p: RefPtr = "bver://a/b/c".parse().expect("pointer");
    // Major type 3 (text string), length 12, then the canonical bytes.
    let mut expected = vec![0x6c];
    expected.extend_from_slice(b"bver://a/b/c");
    assert_eq!(cbor(&p), expected);
    assert_eq!(from_cbor::<RefPtr>(&expected).expect("decode"), p);
    let d = doc();
    assert_eq!(from_cbor::<Doc>(&cbor(&d)).expect("decode"), d);
}

#[test]
fn cbor_errors_surface() {
    let bad = cbor(&"bver://sites/site/1@a.");
    let e = from_cbor::<RefPtr>(&bad).expect_err("trailing dot");
    assert!(e.contains("trailing_dot"), "{e}");
    let e = from_cbor::<RefPtr>(&cbor(&7u8)).expect_err("not a string");
    assert!(!e.is_empty());
}

fn schema_of<T: schemars::JsonSchema>() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(T)).expect("schema JSON")
}

#[test]
fn schemas_describe_strings() {
    for (schema, format) in [
        (schema_of::<RefPtr>(), "bver-pointer"),
        (schema_of::<AttributePointer>(), "bver-attribute-pointer"),
        (schema_of::<AttributePath>(), "bver-attribute-path"),
    ] {
        assert_eq!(schema["type"], "string", "{schema}");
        assert_eq!(schema["format"], format);
        assert!(
            schema["description"]
                .as_str()
                .is_some_and(|d| d.contains("docs/pointers.md"))
        );
        let pattern = schema["pattern"].as_str().expect("pattern");
        assert!(
            pattern.starts_with('^') && pattern.ends_with('$'),
            "{pattern}"
        );
        assert!(schema["maxLength"].as_u64().is_some());
        for example in schema["examples"].as_array().expect("examples") {
            let text = example.as_str().expect("example string");
            let ok = match format {
                "bver-pointer" => RefPtr::parse(text).is_ok(),
                "bver-attribute-pointer" => AttributePointer::parse(text).is_ok(),
                _ => AttributePath::parse(text).is_ok(),
            };
            assert!(ok, "schema example {text:?} does not parse");
        }
    }
}

/// Strings generated from the schema's own pattern (proptest reads the regex) parse, unless
/// they break a rule the pattern cannot express (lengths, UTF-8, dot segments, controls).
fn check_pattern_generates_parseable(pattern: &str, parse: fn(&str) -> Result<String, String>) {
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let config = Config {
        cases: 1024,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let strategy =
        proptest::string::string_regex(pattern).expect("the schema pattern is a valid regex");
    runner
        .run(&strategy, |s| {
            if let Err(code) = parse(&s) {
                prop_assert!(
                    matches!(
                        code.as_str(),
                        "bad_utf8_escape"
                            | "control_char"
                            | "whitespace"
                            | "dot_segment"
                            | "identifier_too_long"
                            | "id_too_long"
                            | "key_too_long"
                            | "path_too_long"
                            | "path_too_deep"
                            | "index_too_large"
                            | "too_long"
                    ),
                    "{s:?} matches the schema pattern but fails with {code}"
                );
            }
            Ok(())
        })
        .expect("pattern and parser agree");
}

#[test]
fn schema_patterns_agree_with_the_parser() {
    // proptest's regex syntax has no anchors; strip them.
    let strip = |v: serde_json::Value| {
        let p = v["pattern"].as_str().expect("pattern");
        p[1..p.len() - 1].to_owned()
    };
    check_pattern_generates_parseable(&strip(schema_of::<RefPtr>()), |s| {
        RefPtr::parse(s)
            .map(|p| p.to_string())
            .map_err(|e| e.code().to_owned())
    });
    check_pattern_generates_parseable(&strip(schema_of::<AttributePointer>()), |s| {
        AttributePointer::parse(s)
            .map(|p| p.to_string())
            .map_err(|e| e.code().to_owned())
    });
    check_pattern_generates_parseable(&strip(schema_of::<AttributePath>()), |s| {
        AttributePath::parse(s)
            .map(|p| p.to_string())
            .map_err(|e| e.code().to_owned())
    });
}

proptest! {
    #[test]
    fn serde_round_trips_normalise(s in "(bver|BVER)://[a-z]{1,4}/[a-z]{1,4}/([a-z0-9]|%[2-7][0-9a-fA-F]){1,8}(@[a-z]{1,3}(\\.[a-z]{1,3}|\\[[0-9]\\]|\\[\"[a-z .]{1,3}\"\\]){0,3})?") {
        if let Ok(p) = RefPtr::parse(&s) {
            let json = serde_json::to_string(&p).expect("JSON");
            prop_assert_eq!(&json, &format!("\"{}\"", p.to_string().replace('\\', "\\\\").replace('"', "\\\"")));
            prop_assert_eq!(serde_json::from_str::<RefPtr>(&json).expect("JSON back"), p.clone());
            prop_assert_eq!(from_cbor::<RefPtr>(&cbor(&p)).expect("CBOR back"), p.clone());
            let from_raw: RefPtr = serde_json::from_value(serde_json::Value::String(s.clone())).expect("raw");
            prop_assert_eq!(from_raw, p);
        }
    }
}
