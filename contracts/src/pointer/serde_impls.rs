//! serde and JSON Schema for the pointer types: serialized as their canonical string,
//! deserialized by the strict parser (errors surface as serde errors).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::{Serialize, Serializer};

use super::error::PointerError;
use super::{AttributePath, AttributePointer, MAX_PATH_LEN, MAX_POINTER_LEN, RefPtr};

/// A plain key: `[A-Za-z_][A-Za-z0-9_]*`.
const KEY: &str = "[A-Za-z_][A-Za-z0-9_]*";
/// `[n]` or `["quoted"]` (no control characters; `\"` and `\\` escapes).
const BRACKET: &str =
    r#"\[(?:0|[1-9][0-9]{0,9}|"(?:[^"\\\u0000-\u001F\u007F-\u009F]|\\["\\])+")\]"#;
/// Scheme, namespace, repo and id, as accepted on input.
const REF: &str =
    "[Bb][Vv][Ee][Rr]://[a-z][a-z0-9_]*/[a-z][a-z0-9_]*/(?:[A-Za-z0-9._~-]|%[0-9A-Fa-f]{2})+";

fn path_pattern() -> String {
    format!("(?:{KEY}|{BRACKET})(?:\\.{KEY}|{BRACKET})*")
}

/// Deserializes any `T: FromStr<Err = PointerError>` from a string.
struct ParseVisitor<T>(PhantomData<T>, &'static str);

impl<T: FromStr<Err = PointerError>> Visitor<'_> for ParseVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.1)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        v.parse().map_err(E::custom)
    }
}

macro_rules! string_serde {
    ($ty:ty, $expecting:literal) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_str(ParseVisitor(PhantomData, $expecting))
            }
        }
    };
}

string_serde!(RefPtr, "a bver:// pointer string");
string_serde!(
    AttributePointer,
    "a bver:// pointer string with an @attribute path"
);
string_serde!(AttributePath, "an attribute path string");

impl JsonSchema for RefPtr {
    fn schema_name() -> Cow<'static, str> {
        "RefPtr".into()
    }

    fn schema_id() -> Cow<'static, str> {
        "bver_contracts::pointer::RefPtr".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "format": "bver-pointer",
            "description": "A BVER pointer `bver://{namespace}/{repo}/{id}[@{attribute_path}]` \
                (grammar: docs/pointers.md). Serialized in canonical form.",
            "pattern": format!("^{REF}(?:@{})?$", path_pattern()),
            "minLength": 13,
            "maxLength": MAX_POINTER_LEN,
            "examples": ["bver://sites/site/123", "bver://drawings/drawing/456@meta.sheet_number"]
        })
    }
}

impl JsonSchema for AttributePointer {
    fn schema_name() -> Cow<'static, str> {
        "AttributePointer".into()
    }

    fn schema_id() -> Cow<'static, str> {
        "bver_contracts::pointer::AttributePointer".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "format": "bver-attribute-pointer",
            "description": "A BVER pointer with a required attribute path: \
                `bver://{namespace}/{repo}/{id}@{attribute_path}` (grammar: docs/pointers.md). \
                Serialized in canonical form.",
            "pattern": format!("^{REF}@{}$", path_pattern()),
            "minLength": 15,
            "maxLength": MAX_POINTER_LEN,
            "examples": ["bver://sites/site/7@terminals[0].label"]
        })
    }
}

impl JsonSchema for AttributePath {
    fn schema_name() -> Cow<'static, str> {
        "AttributePath".into()
    }

    fn schema_id() -> Cow<'static, str> {
        "bver_contracts::pointer::AttributePath".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "format": "bver-attribute-path",
            "description": "A BVER attribute path: dotted keys, `[n]` indexes and `[\"quoted\"]` \
                keys, as in `meta.sheet_number` or `terminals[0].label` (grammar: \
                docs/pointers.md). Serialized in canonical form.",
            "pattern": format!("^{}$", path_pattern()),
            "minLength": 1,
            "maxLength": MAX_PATH_LEN,
            "examples": ["meta.sheet_number", "terminals[0].label", "meta[\"key.with dots\"]"]
        })
    }
}
