//! Version records and RFC 6902 diffs of references.
//!
//! Every mutation of a reference writes a new version: the full snapshot of the value, the
//! [`Diff`] from the previous version (an RFC 6902 JSON Patch), the [`ChangeType`] and the
//! [`Provenance`] (who, through which operation, under which request and idempotency key,
//! when). A [`VersionRecord`] is that version as the contract exposes it.
//!
//! The patch types are plain serde types written here (this crate adds no dependency for
//! them); their JSON form is the RFC's, the same as the `json-patch` crate's, so the node
//! converts between the two through `serde_json::Value`.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{BverError, ErrorCode, Phase};
use crate::pointer::RefPtr;

/// What kind of change a version records. The name is also the suffix of the built-in
/// trigger `refs.{repo}.{name}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeType {
    /// The reference was created (version 1).
    Created,
    /// Its value changed (patch or replace).
    Updated,
    /// Its kind changed (and possibly its value).
    KindChanged,
    /// It was deleted (a tombstone version; history stays readable).
    Deleted,
    /// An earlier version was restored as a new version (also undeletes).
    Restored,
}

impl ChangeType {
    /// Every change type, in the order of the built-in triggers.
    pub const ALL: [ChangeType; 5] = [
        Self::Created,
        Self::Updated,
        Self::Deleted,
        Self::KindChanged,
        Self::Restored,
    ];

    /// The serialized, stable name (`kind_changed`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::KindChanged => "kind_changed",
            Self::Deleted => "deleted",
            Self::Restored => "restored",
        }
    }

    /// The built-in trigger this change emits for `repo`: `refs.{repo}.{name}`.
    pub fn trigger(self, repo: &str) -> String {
        format!("refs.{repo}.{}", self.as_str())
    }
}

impl fmt::Display for ChangeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ChangeType {
    type Err = BverError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                BverError::new(
                    ErrorCode::MalformedRequest,
                    Phase::InputValidation,
                    format!("unknown change type `{s}`"),
                )
            })
    }
}

/// One operation of an RFC 6902 JSON Patch. Paths are RFC 6901 JSON Pointers into the
/// value (`""` is the whole value, `/meta/owner`, `/terminals/0`).
///
/// Serialized as the RFC writes it: `{"op": "add", "path": "/a", "value": 1}`. Members
/// other than `op`, `path`, `from` and `value` are ignored; a member the operation needs and
/// does not have, a repeated member or an unknown `op` is an error.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum PatchOp {
    /// Adds `value` at `path` (inserting into an array, or setting a member).
    Add {
        /// Where to add.
        path: String,
        /// What to add.
        value: Value,
    },
    /// Removes the value at `path`.
    Remove {
        /// What to remove.
        path: String,
    },
    /// Replaces the value at `path` (which must exist) with `value`.
    Replace {
        /// What to replace.
        path: String,
        /// The new value.
        value: Value,
    },
    /// Removes the value at `from` and adds it at `path`.
    Move {
        /// Where the value comes from.
        from: String,
        /// Where it goes.
        path: String,
    },
    /// Copies the value at `from` to `path`.
    Copy {
        /// Where the value comes from.
        from: String,
        /// Where the copy goes.
        path: String,
    },
    /// Fails the whole patch unless the value at `path` equals `value`.
    Test {
        /// What to test.
        path: String,
        /// The expected value.
        value: Value,
    },
}

impl PatchOp {
    /// The operation's name as serialized (`add`, `remove`, ...).
    pub fn op(&self) -> &'static str {
        match self {
            Self::Add { .. } => "add",
            Self::Remove { .. } => "remove",
            Self::Replace { .. } => "replace",
            Self::Move { .. } => "move",
            Self::Copy { .. } => "copy",
            Self::Test { .. } => "test",
        }
    }

    /// The target path.
    pub fn path(&self) -> &str {
        match self {
            Self::Add { path, .. }
            | Self::Remove { path }
            | Self::Replace { path, .. }
            | Self::Move { path, .. }
            | Self::Copy { path, .. }
            | Self::Test { path, .. } => path,
        }
    }

    /// The source path of a `move` or `copy`.
    pub fn from(&self) -> Option<&str> {
        match self {
            Self::Move { from, .. } | Self::Copy { from, .. } => Some(from),
            _ => None,
        }
    }

    /// The value of an `add`, `replace` or `test`.
    pub fn value(&self) -> Option<&Value> {
        match self {
            Self::Add { value, .. } | Self::Replace { value, .. } | Self::Test { value, .. } => {
                Some(value)
            }
            _ => None,
        }
    }
}

/// Decoded in one pass, whatever the order of the members (`op` may come last). Serde's
/// derive for an internally tagged enum buffers each operation, its `value` included, into
/// an intermediate tree and decodes that a second time; diffs are on every event's path
/// (outbox reads, EAGER envelopes), so the operation is read directly.
impl<'de> Deserialize<'de> for PatchOp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(PatchOpVisitor)
    }
}

/// The `op` member's values.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum OpName {
    Add,
    Remove,
    Replace,
    Move,
    Copy,
    Test,
}

impl OpName {
    /// The operation `name` (`add`, ...), as the `op` member spells it.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        Self::deserialize(serde::de::value::StrDeserializer::<serde::de::value::Error>::new(name))
            .ok()
    }

    /// This operation with its members: `Err` names the member it needs and does not have.
    /// Members it does not use are ignored.
    pub(crate) fn with(
        self,
        path: String,
        from: Option<String>,
        value: Option<Value>,
    ) -> Result<PatchOp, &'static str> {
        let value = || value.ok_or("value");
        let from = || from.ok_or("from");
        Ok(match self {
            Self::Add => PatchOp::Add {
                path,
                value: value()?,
            },
            Self::Remove => PatchOp::Remove { path },
            Self::Replace => PatchOp::Replace {
                path,
                value: value()?,
            },
            Self::Move => PatchOp::Move {
                from: from()?,
                path,
            },
            Self::Copy => PatchOp::Copy {
                from: from()?,
                path,
            },
            Self::Test => PatchOp::Test {
                path,
                value: value()?,
            },
        })
    }
}

/// The members an operation may have; any other is skipped.
enum Member {
    Op,
    Path,
    From,
    Value,
    Other,
}

impl<'de> Deserialize<'de> for Member {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Member;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member name")
            }

            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Member, E> {
                Ok(match s {
                    "op" => Member::Op,
                    "path" => Member::Path,
                    "from" => Member::From,
                    "value" => Member::Value,
                    _ => Member::Other,
                })
            }

            fn visit_bytes<E: serde::de::Error>(self, b: &[u8]) -> Result<Member, E> {
                match std::str::from_utf8(b) {
                    Ok(s) => self.visit_str(s),
                    Err(_) => Ok(Member::Other),
                }
            }
        }
        d.deserialize_identifier(V)
    }
}

struct PatchOpVisitor;

impl<'de> serde::de::Visitor<'de> for PatchOpVisitor {
    type Value = PatchOp;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an RFC 6902 operation: a map with `op`, `path` and `value` or `from`")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<PatchOp, A::Error> {
        use serde::de::Error;
        fn once<'de, A: serde::de::MapAccess<'de>, T: Deserialize<'de>>(
            map: &mut A,
            slot: &mut Option<T>,
            name: &'static str,
        ) -> Result<(), A::Error> {
            if slot.is_some() {
                return Err(A::Error::duplicate_field(name));
            }
            *slot = Some(map.next_value()?);
            Ok(())
        }
        let (mut op, mut path, mut from, mut value) = (
            None::<OpName>,
            None::<String>,
            None::<String>,
            None::<Value>,
        );
        while let Some(member) = map.next_key::<Member>()? {
            match member {
                Member::Op => once(&mut map, &mut op, "op")?,
                Member::Path => once(&mut map, &mut path, "path")?,
                Member::From => once(&mut map, &mut from, "from")?,
                Member::Value => once(&mut map, &mut value, "value")?,
                Member::Other => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        let op = op.ok_or_else(|| A::Error::missing_field("op"))?;
        let path = path.ok_or_else(|| A::Error::missing_field("path"))?;
        op.with(path, from, value).map_err(A::Error::missing_field)
    }
}

/// An RFC 6902 JSON Patch: operations applied in order. The diff from one version of a
/// reference to the next; empty when nothing changed in the value (a kind change may keep
/// the value).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Diff(pub Vec<PatchOp>);

impl Diff {
    /// A patch of these operations.
    pub fn new(ops: Vec<PatchOp>) -> Self {
        Self(ops)
    }

    /// The operations, in order.
    pub fn ops(&self) -> &[PatchOp] {
        &self.0
    }

    /// Whether the patch has no operation.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The number of operations.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Checks that every `path` and `from` is an RFC 6901 JSON Pointer: empty, or `/`
    /// followed by reference tokens in which `~` is only used as `~0` or `~1`.
    ///
    /// # Errors
    ///
    /// A `malformed_request` error (phase `input_validation`) whose details name the
    /// operation's `index`, the `field` and the offending `pointer`.
    pub fn validate(&self) -> Result<(), BverError> {
        for (index, op) in self.0.iter().enumerate() {
            let fields = [("path", Some(op.path())), ("from", op.from())];
            for (field, pointer) in fields {
                if let Some(pointer) = pointer
                    && !is_json_pointer(pointer)
                {
                    return Err(BverError::new(
                        ErrorCode::MalformedRequest,
                        Phase::InputValidation,
                        format!(
                            "JSON Patch operation {index}: `{field}` is not a JSON Pointer \
                             (RFC 6901): {pointer:?}"
                        ),
                    )
                    .with_details(serde_json::json!({
                        "index": index,
                        "field": field,
                        "pointer": pointer,
                    })));
                }
            }
        }
        Ok(())
    }
}

impl From<Vec<PatchOp>> for Diff {
    fn from(ops: Vec<PatchOp>) -> Self {
        Self(ops)
    }
}

impl IntoIterator for Diff {
    type Item = PatchOp;
    type IntoIter = std::vec::IntoIter<PatchOp>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Diff {
    type Item = &'a PatchOp;
    type IntoIter = std::slice::Iter<'a, PatchOp>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Whether `s` is an RFC 6901 JSON Pointer.
fn is_json_pointer(s: &str) -> bool {
    if s.is_empty() {
        return true;
    }
    if !s.starts_with('/') {
        return false;
    }
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'~' && !matches!(bytes.next(), Some(b'0' | b'1')) {
            return false;
        }
    }
    true
}

/// Who made a change, through what, and how it can be traced and replayed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Provenance {
    /// The authenticated principal: a token's subject, a peer platform id, or `system`.
    pub principal: String,
    /// The operation that made the change (`refs.site.patch`).
    pub operation: String,
    /// The request id, for correlating logs, traces and replays.
    pub request_id: String,
    /// The idempotency key the change was made with, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Commit time, unix milliseconds.
    pub at: i64,
}

/// One stored version of a reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct VersionRecord {
    /// The reference (a whole-reference pointer, no attribute path).
    pub pointer: RefPtr,
    /// The version number, from 1, one per mutation.
    pub version: u64,
    /// The kind at this version (`power.substation`), if any.
    #[serde(default)]
    pub kind: Option<String>,
    /// The change that made this version.
    pub change: ChangeType,
    /// The full value at this version; `null` for a tombstone.
    pub value: Value,
    /// RFC 6902 diff from the previous version's value (from `null` for version 1).
    #[serde(default)]
    pub diff: Diff,
    /// Whether this version is a tombstone.
    #[serde(default)]
    pub deleted: bool,
    /// Who made it, through what, and when.
    pub provenance: Provenance,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_pointers() {
        for ok in ["", "/", "/a", "/a/0", "/a~0b", "/a~1b", "/~01"] {
            assert!(is_json_pointer(ok), "{ok}");
        }
        for bad in ["a", "a/b", "/a~", "/a~2", "/~x"] {
            assert!(!is_json_pointer(bad), "{bad}");
        }
    }

    #[test]
    fn diff_validation_names_the_op() {
        let d = Diff::new(vec![
            PatchOp::Remove { path: "/a".into() },
            PatchOp::Move {
                from: "b".into(),
                path: "/c".into(),
            },
        ]);
        let e = d.validate().unwrap_err();
        assert_eq!(e.details["index"], 1);
        assert_eq!(e.details["field"], "from");
        assert!(Diff::default().validate().is_ok());
    }

    #[test]
    fn change_type_names() {
        for c in ChangeType::ALL {
            assert_eq!(c.as_str().parse::<ChangeType>().unwrap(), c);
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
        assert_eq!(
            ChangeType::KindChanged.trigger("site"),
            "refs.site.kind_changed"
        );
        assert!("changed".parse::<ChangeType>().is_err());
    }
}
