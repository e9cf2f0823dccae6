//! JSON Schema handling for definitions: TOML to JSON, fragment checks, composition, and
//! mapping a JSON pointer inside a schema back to a line and column of the file it came from.
//!
//! Every schema in a definition is a *fragment* of JSON Schema 2020-12 that describes the
//! reference value (a JSON object). A reference type's schema for one kind is the `allOf` of
//! its fragments: the base schema, the figments it includes, then each kind on the parent
//! chain with the figments that kind includes. Each fragment sits once in the reference
//! type's `$defs` under its own `$id` (`urn:bver:...`), so its local `$ref`s (`#/$defs/...`)
//! still resolve, and a composed schema refers to it by that id.

use std::ops::Range;

use serde::Deserialize;
use serde_json::{Map, Value, json};
use toml::Spanned;
use toml::de::{DeValue, ValueDeserializer};

/// The `$schema` URI of JSON Schema 2020-12, the only draft BVER compiles.
pub(crate) const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// A fault in a schema: JSON pointer into the schema and a message.
pub(crate) type SchemaFault = (String, String);

/// Convert an inline TOML schema to JSON. TOML dates have no JSON form: the error is the span
/// of the first one.
pub(crate) fn toml_to_json(value: &Spanned<DeValue<'_>>) -> Result<Value, Range<usize>> {
    if let Some(span) = first_datetime(value) {
        return Err(span);
    }
    Value::deserialize(ValueDeserializer::from(value.clone())).map_err(|_| value.span())
}

fn first_datetime(value: &Spanned<DeValue<'_>>) -> Option<Range<usize>> {
    match value.get_ref() {
        DeValue::Datetime(_) => Some(value.span()),
        DeValue::Array(items) => items.iter().find_map(first_datetime),
        DeValue::Table(table) => table.values().find_map(first_datetime),
        _ => None,
    }
}

/// The span of the deepest TOML value on the way to `pointer` (a JSON pointer).
pub(crate) fn toml_span_at(value: &Spanned<DeValue<'_>>, pointer: &str) -> Range<usize> {
    let mut cur = value;
    for seg in pointer_segments(pointer) {
        let next = match cur.get_ref() {
            DeValue::Table(t) => t.get(seg.as_str()),
            DeValue::Array(items) => seg.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => break,
        }
    }
    cur.span()
}

/// The unescaped segments of a JSON pointer (`/a~1b/0` gives `a/b`, `0`).
pub(crate) fn pointer_segments(pointer: &str) -> impl Iterator<Item = String> + '_ {
    pointer
        .split('/')
        .skip(1)
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
}

/// The byte offset in `text` (a valid JSON document) of the value at `pointer`, or of the
/// deepest value on the way to it.
pub(crate) fn json_offset_at(text: &str, pointer: &str) -> usize {
    let b = text.as_bytes();
    let mut pos = skip_ws(b, 0);
    for seg in pointer_segments(pointer) {
        match descend(text, pos, &seg) {
            Some(p) => pos = p,
            None => break,
        }
    }
    pos
}

/// From the value at `pos`, the offset of its member or item named `seg`.
fn descend(text: &str, pos: usize, seg: &str) -> Option<usize> {
    let b = text.as_bytes();
    match b.get(pos)? {
        b'{' => {
            let mut p = skip_ws(b, pos + 1);
            loop {
                if *b.get(p)? != b'"' {
                    return None;
                }
                let end = string_end(b, p)?;
                let key: String = serde_json::from_str(&text[p..end]).ok()?;
                p = skip_ws(b, end);
                if *b.get(p)? != b':' {
                    return None;
                }
                p = skip_ws(b, p + 1);
                if key == seg {
                    return Some(p);
                }
                p = skip_ws(b, value_end(b, p)?);
                if *b.get(p)? != b',' {
                    return None;
                }
                p = skip_ws(b, p + 1);
            }
        }
        b'[' => {
            let index: usize = seg.parse().ok()?;
            let mut p = skip_ws(b, pos + 1);
            for _ in 0..index {
                p = skip_ws(b, value_end(b, p)?);
                if *b.get(p)? != b',' {
                    return None;
                }
                p = skip_ws(b, p + 1);
            }
            Some(p)
        }
        _ => None,
    }
}

fn skip_ws(b: &[u8], mut p: usize) -> usize {
    while matches!(b.get(p), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        p += 1;
    }
    p
}

/// The offset just after the string that starts (with `"`) at `p`.
fn string_end(b: &[u8], p: usize) -> Option<usize> {
    let mut i = p + 1;
    loop {
        match b.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

/// The offset just after the value that starts at `p`.
fn value_end(b: &[u8], p: usize) -> Option<usize> {
    match b.get(p)? {
        b'"' => string_end(b, p),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = p;
            loop {
                match b.get(i)? {
                    b'"' => {
                        i = string_end(b, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let mut i = p;
            while !matches!(
                b.get(i),
                None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            ) {
                i += 1;
            }
            Some(i)
        }
    }
}

/// Check one fragment on its own: an object, JSON Schema 2020-12, describing an object, not
/// closing itself, valid against the meta-schema, and compilable (patterns, local `$ref`s).
pub(crate) fn check_fragment(schema: &Value) -> Vec<SchemaFault> {
    let Some(obj) = schema.as_object() else {
        return vec![(
            String::new(),
            "a schema must be a JSON object (a table in TOML)".into(),
        )];
    };
    let mut faults = Vec::new();
    if let Some(declared) = obj.get("$schema")
        && declared.as_str() != Some(DRAFT_2020_12)
    {
        faults.push((
            "/$schema".into(),
            format!("BVER compiles JSON Schema 2020-12 ({DRAFT_2020_12}), not {declared}"),
        ));
    }
    if obj.contains_key("$id") {
        faults.push((
            "/$id".into(),
            "BVER gives every fragment its own `$id` (urn:bver:...); remove this one".into(),
        ));
    }
    match obj.get("type") {
        None => {}
        Some(Value::String(t)) if t == "object" => {}
        Some(other) => faults.push((
            "/type".into(),
            format!(
                "a reference value is a JSON object, so `type` must be \"object\", not {other}"
            ),
        )),
    }
    for key in ["additionalProperties", "unevaluatedProperties"] {
        if obj.get(key) == Some(&Value::Bool(false)) {
            faults.push((
                format!("/{key}"),
                format!(
                    "`{key}: false` at the top would reject the fields that figments and kinds \
                     add; set `closed = true` on the reference type instead"
                ),
            ));
        }
    }
    meta_and_compile(schema, &mut faults);
    faults
}

/// Check a DTO schema (a contract type, a figment operation's input or output) on its own:
/// JSON Schema 2020-12, valid against the meta-schema, without `$id`, compilable. It may
/// describe any JSON value.
pub(crate) fn check_dto(schema: &Value) -> Vec<SchemaFault> {
    let mut faults = Vec::new();
    if let Some(obj) = schema.as_object() {
        if let Some(declared) = obj.get("$schema")
            && declared.as_str() != Some(DRAFT_2020_12)
        {
            faults.push((
                "/$schema".into(),
                format!("BVER compiles JSON Schema 2020-12 ({DRAFT_2020_12}), not {declared}"),
            ));
        }
        if obj.contains_key("$id") {
            faults.push((
                "/$id".into(),
                "BVER gives every schema its own `$id`; remove this one".into(),
            ));
        }
    } else if !schema.is_boolean() {
        faults.push((
            String::new(),
            "a schema is a JSON object or a boolean".into(),
        ));
        return faults;
    }
    meta_and_compile(schema, &mut faults);
    faults
}

/// Answers every retrieval with an empty schema, so that a fragment that refers to a contract
/// type or another fragment compiles on its own; what a `$ref` names is checked when the
/// fragments are put together.
struct Deferred;

impl jsonschema::Retrieve for Deferred {
    fn retrieve(
        &self,
        _uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        Ok(json!({}))
    }
}

fn meta_and_compile(schema: &Value, faults: &mut Vec<SchemaFault>) {
    let meta = jsonschema::draft202012::meta::validator();
    let before = faults.len();
    for e in meta.iter_errors(schema) {
        let pointer = e.instance_path().as_str().to_owned();
        let message = explain_type(schema, &pointer).unwrap_or_else(|| e.to_string());
        faults.push((pointer, message));
    }
    if faults.len() == before
        && let Err(e) = jsonschema::draft202012::options()
            .with_retriever(Deferred)
            .build(schema)
    {
        faults.push((e.instance_path().as_str().to_owned(), e.to_string()));
    }
}

/// Every `$ref` in a schema that does not point inside it (`#...`): the JSON pointer of the
/// `$ref` keyword and its value.
pub(crate) fn external_refs(schema: &Value) -> Vec<(String, String)> {
    fn walk(v: &Value, at: &str, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(o) => {
                for (k, x) in o {
                    let here = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                    match (k.as_str(), x) {
                        ("$ref", Value::String(r)) if !r.starts_with('#') => {
                            out.push((here, r.clone()));
                        }
                        // `const`, `enum`, `default` and `examples` hold data, not schemas.
                        ("const" | "enum" | "default" | "examples", _) => {}
                        _ => walk(x, &here, out),
                    }
                }
            }
            Value::Array(items) => {
                for (i, x) in items.iter().enumerate() {
                    walk(x, &format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(schema, "", &mut out);
    out
}

/// A copy of `schema` with each external `$ref` replaced by `rename(value)` (when it
/// returns one).
pub(crate) fn rewrite_refs(schema: &Value, rename: &dyn Fn(&str) -> Option<String>) -> Value {
    match schema {
        Value::Object(o) => Value::Object(
            o.iter()
                .map(|(k, v)| {
                    let v = match (k.as_str(), v) {
                        ("$ref", Value::String(r)) if !r.starts_with('#') => {
                            rename(r).map_or_else(|| v.clone(), Value::String)
                        }
                        ("const" | "enum" | "default" | "examples", _) => v.clone(),
                        _ => rewrite_refs(v, rename),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => {
            Value::Array(items.iter().map(|x| rewrite_refs(x, rename)).collect())
        }
        other => other.clone(),
    }
}

/// A clearer message than the meta-schema's `anyOf` failure for a misspelt `type`.
fn explain_type(schema: &Value, pointer: &str) -> Option<String> {
    const TYPES: [&str; 7] = [
        "array", "boolean", "integer", "null", "number", "object", "string",
    ];
    if !pointer.ends_with("/type") {
        return None;
    }
    let bad = match schema.pointer(pointer)? {
        Value::String(t) if !TYPES.contains(&t.as_str()) => t.clone(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .find(|t| !TYPES.contains(t))?
            .to_owned(),
        _ => return None,
    };
    Some(format!(
        "unknown type \"{bad}\"; the JSON Schema types are {}",
        TYPES.join(", ")
    ))
}

/// One fragment of a composed schema: the `$id` it has in the `$defs` and its JSON Schema.
pub(crate) struct Part<'a> {
    /// `urn:bver:...` identifier of the fragment.
    pub(crate) id: String,
    /// The fragment as written.
    pub(crate) schema: &'a Value,
}

/// A fragment as it sits in a `$defs`: its `$id` first, without `$schema`.
pub(crate) fn fragment_def(id: &str, schema: &Value) -> Value {
    let mut def = Map::new();
    def.insert("$id".into(), Value::String(id.to_owned()));
    if let Some(obj) = schema.as_object() {
        def.extend(
            obj.iter()
                .filter(|(k, _)| k.as_str() != "$schema")
                .map(|(k, v)| (k.clone(), v.clone())),
        );
    }
    Value::Object(def)
}

/// Compose fragments into the schema of a reference value: `type: object` plus the `allOf`
/// of `$ref`s to the fragments (which live in the `$defs` beside it). `closed` rejects
/// top-level properties that no fragment declares.
pub(crate) fn compose(parts: &[Part<'_>], closed: bool) -> Value {
    let mut root = Map::new();
    root.insert("type".into(), json!("object"));
    let all: Vec<Value> = parts.iter().map(|p| json!({ "$ref": p.id })).collect();
    if closed {
        let mut props = std::collections::BTreeSet::new();
        let mut patterns = std::collections::BTreeSet::new();
        let exact = parts
            .iter()
            .all(|p| declared(p.schema, &mut props, &mut patterns));
        if exact {
            let props: Map<String, Value> =
                props.into_iter().map(|p| (p, Value::Bool(true))).collect();
            root.insert("properties".into(), Value::Object(props));
            if !patterns.is_empty() {
                let pats: Map<String, Value> = patterns
                    .into_iter()
                    .map(|p| (p, Value::Bool(true)))
                    .collect();
                root.insert("patternProperties".into(), Value::Object(pats));
            }
        }
        if !all.is_empty() {
            root.insert("allOf".into(), Value::Array(all));
        }
        let key = if exact {
            "additionalProperties"
        } else {
            "unevaluatedProperties"
        };
        root.insert(key.into(), Value::Bool(false));
    } else if !all.is_empty() {
        root.insert("allOf".into(), Value::Array(all));
    }
    Value::Object(root)
}

/// A standalone schema document: `$schema`, the fragments in `$defs`, then `body`'s keywords.
pub(crate) fn document(defs: &Map<String, Value>, body: &Value) -> Value {
    let mut doc = Map::new();
    doc.insert("$schema".into(), json!(DRAFT_2020_12));
    if !defs.is_empty() {
        doc.insert("$defs".into(), Value::Object(defs.clone()));
    }
    if let Some(obj) = body.as_object() {
        doc.extend(obj.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    Value::Object(doc)
}

/// Collect the top-level property names and patterns a fragment declares. False when the
/// fragment can admit properties in ways that cannot be listed (`$ref`, `anyOf`, `if`, ...).
fn declared(
    schema: &Value,
    props: &mut std::collections::BTreeSet<String>,
    patterns: &mut std::collections::BTreeSet<String>,
) -> bool {
    let Some(obj) = schema.as_object() else {
        return false;
    };
    const OPAQUE: [&str; 9] = [
        "$ref",
        "$dynamicRef",
        "anyOf",
        "oneOf",
        "if",
        "then",
        "else",
        "dependentSchemas",
        "additionalProperties",
    ];
    if OPAQUE.iter().any(|k| obj.contains_key(*k)) || obj.contains_key("unevaluatedProperties") {
        return false;
    }
    if let Some(Value::Object(p)) = obj.get("properties") {
        props.extend(p.keys().cloned());
    }
    if let Some(Value::Object(p)) = obj.get("patternProperties") {
        patterns.extend(p.keys().cloned());
    }
    match obj.get("allOf") {
        None => true,
        Some(Value::Array(items)) => items.iter().all(|s| declared(s, props, patterns)),
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_offsets_follow_pointers() {
        let text = r#"{
  "type": "object",
  "properties": {
    "a\"b": {"type": "string"},
    "list": [1, {"x": [2, 3]}, "s,]"],
    "n": {"minimum": "x"}
  }
}"#;
        let at = |p: &str| &text[json_offset_at(text, p)..][..8];
        assert_eq!(at("/type"), "\"object\"");
        assert_eq!(at("/properties/n/minimum"), "\"x\"}\n  }");
        assert_eq!(at("/properties/a\"b/type"), "\"string\"");
        assert_eq!(
            &text[json_offset_at(text, "/properties/list/1/x/1")..][..1],
            "3"
        );
        // A pointer that goes nowhere stops at the deepest value found.
        assert_eq!(at("/properties/zzz"), "{\n    \"a");
    }

    #[test]
    fn fragments_are_checked() {
        assert!(check_fragment(&json!({"properties": {"a": {"type": "string"}}})).is_empty());
        let faults = check_fragment(&json!({"type": "objet", "required": "a"}));
        let pointers: Vec<&str> = faults.iter().map(|f| f.0.as_str()).collect();
        assert!(pointers.contains(&"/type"), "{faults:?}");
        assert!(pointers.contains(&"/required"), "{faults:?}");
        let faults = check_fragment(&json!({"properties": {"a": {"type": "strng"}}}));
        assert_eq!(faults[0].0, "/properties/a/type");
        assert!(
            faults[0].1.starts_with("unknown type \"strng\""),
            "{faults:?}"
        );
        let faults = check_fragment(&json!({"properties": {"a": {"pattern": "(("}}}));
        assert_eq!(faults[0].0, "/properties/a/pattern");
        let faults = check_fragment(&json!({"$ref": "#/$defs/missing"}));
        assert_eq!(faults.len(), 1);
        assert_eq!(check_fragment(&json!(true)).len(), 1);
        assert_eq!(
            check_fragment(&json!({"additionalProperties": false})).len(),
            1
        );
        let draft7 = json!({"$schema": "http://json-schema.org/draft-07/schema#"});
        assert_eq!(check_fragment(&draft7)[0].0, "/$schema");
    }

    #[test]
    fn composition_keeps_local_refs_and_closes_exactly() {
        let base = json!({
            "$defs": {"kv": {"type": "number", "minimum": 0}},
            "properties": {"v": {"$ref": "#/$defs/kv"}},
            "required": ["v"]
        });
        let fig = json!({
            "$schema": DRAFT_2020_12,
            "$defs": {"kv": {"type": "string"}},
            "properties": {"w": {"$ref": "#/$defs/kv"}}
        });
        let parts = [
            Part {
                id: "urn:bver:t:base".into(),
                schema: &base,
            },
            Part {
                id: "urn:bver:t:fig".into(),
                schema: &fig,
            },
        ];
        let mut defs = Map::new();
        for (key, p) in ["base", "fig"].iter().zip(&parts) {
            defs.insert((*key).into(), fragment_def(&p.id, p.schema));
        }
        assert_eq!(defs["fig"].get("$schema"), None);
        assert_eq!(defs["fig"]["$id"], "urn:bver:t:fig");
        let body = compose(&parts, true);
        assert_eq!(body["additionalProperties"], json!(false));
        assert_eq!(body["properties"], json!({"v": true, "w": true}));
        assert_eq!(
            body["allOf"],
            json!([{"$ref": "urn:bver:t:base"}, {"$ref": "urn:bver:t:fig"}])
        );
        let doc = document(&defs, &body);
        let v = jsonschema::draft202012::new(&doc).expect("composed schema compiles");
        assert!(v.is_valid(&json!({"v": 1, "w": "a"})));
        assert!(!v.is_valid(&json!({"v": -1, "w": "a"})));
        assert!(!v.is_valid(&json!({"v": 1, "w": 2})));
        assert!(!v.is_valid(&json!({"v": 1, "extra": true})));
        assert!(!v.is_valid(&json!([1])));
        let open = document(&defs, &compose(&parts, false));
        let v = jsonschema::draft202012::new(&open).expect("compiles");
        assert!(v.is_valid(&json!({"v": 1, "extra": true})));
        let opaque = json!({"anyOf": [{"properties": {"x": {}}}]});
        let closed = compose(
            &[Part {
                id: "urn:x".into(),
                schema: &opaque,
            }],
            true,
        );
        assert_eq!(closed["unevaluatedProperties"], json!(false));
    }

    #[test]
    fn toml_values_map_to_json_and_spans() {
        let src = "[s]\ntype = \"object\"\nproperties.n.maximum = 3\nwhen = 1979-05-27\n";
        let doc = toml::de::DeTable::parse(src).expect("parses");
        let s = doc.get_ref().get("s").expect("s").clone();
        let span = toml_span_at(&s, "/properties/n/maximum");
        assert_eq!(&src[span], "3");
        let span = toml_to_json(&s).expect_err("dates are refused");
        assert_eq!(&src[span], "1979-05-27");
    }
}
