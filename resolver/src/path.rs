//! Applying an [`AttributePath`] to a JSON value.
//!
//! Keys select object members, `[n]` indexes select array elements. The first segment that
//! does not match is reported with its position, so "`meta.owner.name`: `owner` is missing"
//! is an answer, not a guess.

use bver_contracts::{AttributePath, BverError, ErrorCode, Phase, Segment};
use serde_json::Value;

/// Why a path did not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Missing {
    /// An object has no member with this key.
    #[error("no attribute `{key}` at segment {depth} of `{path}`")]
    NoKey {
        /// The full path, canonical.
        path: String,
        /// 0-based index of the failing segment.
        depth: usize,
        /// The missing key.
        key: String,
    },
    /// An array is shorter than the index.
    #[error("index [{index}] is out of range (length {len}) at segment {depth} of `{path}`")]
    OutOfRange {
        /// The full path, canonical.
        path: String,
        /// 0-based index of the failing segment.
        depth: usize,
        /// The index asked for.
        index: u32,
        /// The array's length.
        len: usize,
    },
    /// The value at this point is not an object (for a key) or not an array (for an index).
    #[error("segment {depth} of `{path}` expects {expected}, found {found}")]
    WrongType {
        /// The full path, canonical.
        path: String,
        /// 0-based index of the failing segment.
        depth: usize,
        /// `an object` or `an array`.
        expected: &'static str,
        /// The JSON type found.
        found: &'static str,
    },
}

impl Missing {
    /// The shared error: `not_found` in the resolution phase, naming the first missing segment.
    pub fn into_error(self, pointer: &str) -> BverError {
        let details = match &self {
            Missing::NoKey { depth, key, .. } => {
                serde_json::json!({ "missing_segment": depth, "key": key })
            }
            Missing::OutOfRange {
                depth, index, len, ..
            } => serde_json::json!({ "missing_segment": depth, "index": index, "len": len }),
            Missing::WrongType {
                depth,
                expected,
                found,
                ..
            } => {
                serde_json::json!({ "missing_segment": depth, "expected": expected, "found": found })
            }
        };
        BverError::new(
            ErrorCode::NotFound,
            Phase::Resolution,
            format!("{pointer}: {self}"),
        )
        .with_details(details)
        .with_ref(pointer)
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The value at `path` inside `value`.
pub fn select<'v>(value: &'v Value, path: &AttributePath) -> Result<&'v Value, Missing> {
    let mut at = value;
    for (depth, seg) in path.iter().enumerate() {
        at = match (seg, at) {
            (Segment::Key(k), Value::Object(o)) => o.get(k).ok_or_else(|| Missing::NoKey {
                path: path.to_string(),
                depth,
                key: k.clone(),
            })?,
            (Segment::Index(i), Value::Array(a)) => {
                a.get(*i as usize).ok_or_else(|| Missing::OutOfRange {
                    path: path.to_string(),
                    depth,
                    index: *i,
                    len: a.len(),
                })?
            }
            (Segment::Key(_), other) => {
                return Err(Missing::WrongType {
                    path: path.to_string(),
                    depth,
                    expected: "an object",
                    found: type_name(other),
                });
            }
            (Segment::Index(_), other) => {
                return Err(Missing::WrongType {
                    path: path.to_string(),
                    depth,
                    expected: "an array",
                    found: type_name(other),
                });
            }
        };
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn p(s: &str) -> AttributePath {
        AttributePath::parse(s).expect("valid path")
    }

    #[test]
    fn selects_keys_and_indexes() {
        let v =
            json!({"meta": {"owner": {"name": "Ada"}}, "terminals": [{"label": "T1"}], "a.b": 1});
        assert_eq!(select(&v, &p("meta.owner.name")), Ok(&json!("Ada")));
        assert_eq!(select(&v, &p("terminals[0].label")), Ok(&json!("T1")));
        assert_eq!(select(&v, &p(r#"["a.b"]"#)).ok(), Some(&json!(1)));
    }

    #[test]
    fn names_the_first_missing_segment() {
        let v = json!({"meta": {"owner": null}, "terminals": []});
        assert!(matches!(
            select(&v, &p("meta.nobody.name")),
            Err(Missing::NoKey { depth: 1, ref key, .. }) if key == "nobody"
        ));
        assert!(matches!(
            select(&v, &p("terminals[2]")),
            Err(Missing::OutOfRange {
                depth: 1,
                index: 2,
                len: 0,
                ..
            })
        ));
        assert!(matches!(
            select(&v, &p("meta.owner.name")),
            Err(Missing::WrongType {
                depth: 2,
                found: "null",
                ..
            })
        ));
        let e = select(&v, &p("meta.x"))
            .expect_err("missing")
            .into_error("bver://a/b/c@meta.x");
        assert_eq!(e.code, ErrorCode::NotFound);
        assert_eq!(e.details["missing_segment"], 1);
    }
}
