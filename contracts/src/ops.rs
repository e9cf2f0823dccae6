//! Operation specs: what every surface (REST, MCP, EAGER, CLI) exposes.
//!
//! An [`OperationSpec`] is the transport-facing description of one operation: its dotted
//! name (`refs.site.create`), whether it is a query, a command or a task, the JSON Schemas of
//! its input and output, the scopes a caller needs, whether it mutates state and whether it
//! requires an idempotency key. The node generates ten per repo and five resolver operations
//! (`docs/domain.md`, "Generated operations"); primitives project into more
//! (`spec/primitive-contracts.md`, "Mapping To The Current Runtime Substrate").
//!
//! Names follow one grammar, checked by [`validate_name`]: two or more dot-separated
//! segments, each `[a-z][a-z0-9_]*` (at most [`MAX_NAME_SEGMENT_LEN`] bytes), at most
//! [`MAX_NAME_LEN`] bytes in all. Primitive names use the same grammar.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{BverError, ErrorCode, Phase};

/// Maximum length in bytes of an operation or primitive name.
pub const MAX_NAME_LEN: usize = 255;
/// Maximum length in bytes of one segment of a name.
pub const MAX_NAME_SEGMENT_LEN: usize = 63;

/// How an operation behaves towards its caller and towards state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    /// Reads state and answers synchronously; never mutates.
    Query,
    /// Answers synchronously; may mutate state (then it is mutation-gated).
    Command,
    /// Long-running: the call returns a job handle and the work runs as a job.
    Task,
}

impl OperationKind {
    /// The serialized, stable name (`query`, `command`, `task`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Query => "query",
            Self::Command => "command",
            Self::Task => "task",
        }
    }
}

impl fmt::Display for OperationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The transport-facing description of one operation.
///
/// Deserialization is lenient towards the manifests the node writes today: `mutation`,
/// `scopes`, `input` and `output` are accepted as aliases of `mutates_state`,
/// `required_scopes`, `input_schema` and `output_schema`, unknown fields are ignored, and
/// every field but `name` and `kind` has a default.
///
/// ```
/// use bver_contracts::ops::{OperationKind, OperationSpec};
///
/// let op = OperationSpec::new("refs.site.create", OperationKind::Command, "Create a site.")?
///     .mutating()
///     .with_scopes(["refs:site:create"])
///     .with_repo("site");
/// assert!(op.mutates_state && !op.idempotency_key_required);
/// op.validate()?;
/// # Ok::<(), bver_contracts::BverError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OperationSpec {
    /// Dotted lowercase name, unique within a platform (`refs.site.create`, `bver.get`).
    pub name: String,
    /// Query, command or task.
    pub kind: OperationKind,
    /// One sentence: what the operation does.
    #[serde(default)]
    pub description: String,
    /// JSON Schema (2020-12) of the input.
    #[serde(default = "any_schema", alias = "input")]
    pub input_schema: Value,
    /// JSON Schema (2020-12) of the output (for a task: of the job's result).
    #[serde(default = "any_schema", alias = "output")]
    pub output_schema: Value,
    /// Scopes the caller needs, all of them. Empty when the scopes depend on the call (the
    /// resolver operations need the read scopes of the repo each pointer addresses).
    #[serde(default, alias = "scopes")]
    pub required_scopes: Vec<String>,
    /// Whether the operation can change persistent state (then the broker gates it).
    #[serde(default, alias = "mutation")]
    pub mutates_state: bool,
    /// Whether a call must carry an idempotency key. When false, a mutating operation still
    /// accepts one (a retry with the same key and payload returns the first answer); a
    /// non-mutating one ignores it.
    #[serde(default)]
    pub idempotency_key_required: bool,
    /// Discoverability tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The repo the operation acts on (`site`), for the generated reference operations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    /// The policy action whose scopes it needs (`read`, `create`, `update`, `delete`), when
    /// the operation acts on a repo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The primitive this operation projects, when it is the projection of one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primitive: Option<String>,
}

/// The schema that accepts anything (`true` would be shorter, but an object is friendlier to
/// tools that expect one).
fn any_schema() -> Value {
    Value::Object(serde_json::Map::new())
}

impl OperationSpec {
    /// A new operation with a checked name, schemas that accept anything, no scopes, no
    /// tags, not mutating and no idempotency key required.
    pub fn new(
        name: impl Into<String>,
        kind: OperationKind,
        description: impl Into<String>,
    ) -> Result<Self, BverError> {
        let name = name.into();
        validate_name(&name)?;
        Ok(Self {
            name,
            kind,
            description: description.into(),
            input_schema: any_schema(),
            output_schema: any_schema(),
            required_scopes: Vec::new(),
            mutates_state: false,
            idempotency_key_required: false,
            tags: Vec::new(),
            repo: None,
            action: None,
            primitive: None,
        })
    }

    /// Sets the input and output schemas.
    pub fn with_schemas(mut self, input: Value, output: Value) -> Self {
        self.input_schema = input;
        self.output_schema = output;
        self
    }

    /// Declares that the operation mutates state.
    pub fn mutating(mut self) -> Self {
        self.mutates_state = true;
        self
    }

    /// Declares that every call must carry an idempotency key.
    pub fn requiring_idempotency_key(mut self) -> Self {
        self.idempotency_key_required = true;
        self
    }

    /// Sets the scopes a caller needs (all of them).
    pub fn with_scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.required_scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the discoverability tags.
    pub fn with_tags<S: Into<String>>(mut self, tags: impl IntoIterator<Item = S>) -> Self {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the repo the operation acts on.
    pub fn with_repo(mut self, repo: impl Into<String>) -> Self {
        self.repo = Some(repo.into());
        self
    }

    /// Sets the policy action whose scopes the operation needs.
    pub fn with_action(mut self, action: impl Into<String>) -> Self {
        self.action = Some(action.into());
        self
    }

    /// Marks the operation as the projection of a primitive.
    pub fn with_primitive(mut self, primitive: impl Into<String>) -> Self {
        self.primitive = Some(primitive.into());
        self
    }

    /// Checks the spec's invariants: the name grammar, a query that does not mutate, schemas
    /// that are JSON Schemas (an object or a boolean), non-empty scopes and tags.
    ///
    /// # Errors
    ///
    /// An `invalid_definition` error (phase `configuration`) naming the first broken rule
    /// in its details (`reason`).
    pub fn validate(&self) -> Result<(), BverError> {
        validate_name(&self.name)?;
        let fail = |reason: &str, message: String| Err(invalid(&self.name, reason, message));
        if self.kind == OperationKind::Query && self.mutates_state {
            return fail(
                "query_mutates",
                format!("operation `{}` is a query but mutates state", self.name),
            );
        }
        for (which, schema) in [
            ("input", &self.input_schema),
            ("output", &self.output_schema),
        ] {
            if !(schema.is_object() || schema.is_boolean()) {
                return fail(
                    "bad_schema",
                    format!(
                        "the {which} schema of `{}` is neither an object nor a boolean",
                        self.name
                    ),
                );
            }
        }
        if self.required_scopes.iter().any(|s| s.trim().is_empty()) {
            return fail(
                "empty_scope",
                format!("operation `{}` lists an empty scope", self.name),
            );
        }
        if self.tags.iter().any(|t| t.trim().is_empty()) {
            return fail(
                "empty_tag",
                format!("operation `{}` lists an empty tag", self.name),
            );
        }
        Ok(())
    }
}

fn invalid(name: &str, reason: &str, message: String) -> BverError {
    BverError::new(ErrorCode::InvalidDefinition, Phase::Configuration, message)
        .with_details(serde_json::json!({ "name": name, "reason": reason }))
}

/// Checks the name grammar shared by operations and primitives: two or more dot-separated
/// segments, each `[a-z][a-z0-9_]*` and at most [`MAX_NAME_SEGMENT_LEN`] bytes, the whole at
/// most [`MAX_NAME_LEN`] bytes (`refs.site.create`, `electrical.symbols.interpret`).
///
/// # Errors
///
/// An `invalid_definition` error (phase `configuration`) whose details carry the `name`, a
/// `reason` (`empty`, `too_long`, `single_segment`, `empty_segment`, `segment_too_long`,
/// `bad_segment_start`, `invalid_char`) and, for a bad character, its byte `offset`.
pub fn validate_name(name: &str) -> Result<(), BverError> {
    let fail = |reason: &str, what: String| {
        Err(invalid(
            name,
            reason,
            format!(
                "invalid name `{name}`: {what} (expected dotted lowercase identifiers such as `refs.site.create`)"
            ),
        ))
    };
    if name.is_empty() {
        return fail("empty", "it is empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return fail(
            "too_long",
            format!("it is longer than {MAX_NAME_LEN} bytes"),
        );
    }
    let mut segments = 0;
    let mut offset = 0;
    for segment in name.split('.') {
        segments += 1;
        let bytes = segment.as_bytes();
        match bytes.first() {
            None => return fail("empty_segment", "it has an empty segment".into()),
            Some(b) if !b.is_ascii_lowercase() => {
                return fail(
                    "bad_segment_start",
                    "a segment does not start with a lowercase letter".into(),
                );
            }
            Some(_) => {}
        }
        if bytes.len() > MAX_NAME_SEGMENT_LEN {
            return fail(
                "segment_too_long",
                format!("a segment is longer than {MAX_NAME_SEGMENT_LEN} bytes"),
            );
        }
        if let Some(i) = bytes
            .iter()
            .position(|b| !(b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_'))
        {
            let at = offset + i;
            return Err(invalid(
                name,
                "invalid_char",
                format!("invalid name `{name}`: character not allowed at byte {at}"),
            )
            .with_details(
                serde_json::json!({ "name": name, "reason": "invalid_char", "offset": at }),
            ));
        }
        offset += bytes.len() + 1;
    }
    if segments < 2 {
        return fail("single_segment", "it needs at least two segments".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(name: &str) -> String {
        validate_name(name).unwrap_err().details["reason"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn names() {
        for ok in ["refs.site.create", "bver.get", "a.b", "x1.y_2.z"] {
            validate_name(ok).unwrap();
        }
        assert_eq!(reason(""), "empty");
        assert_eq!(reason("refs"), "single_segment");
        assert_eq!(reason("refs..create"), "empty_segment");
        assert_eq!(reason("refs.site."), "empty_segment");
        assert_eq!(reason("Refs.site"), "bad_segment_start");
        assert_eq!(reason("refs.1site"), "bad_segment_start");
        assert_eq!(reason("refs._site"), "bad_segment_start");
        assert_eq!(reason("refs.si-te"), "invalid_char");
        assert_eq!(
            validate_name("refs.si-te").unwrap_err().details["offset"],
            7
        );
        assert_eq!(reason(&format!("a.{}", "b".repeat(64))), "segment_too_long");
        assert_eq!(reason(&["abc"; 65].join(".")), "too_long");
        let e = validate_name("refs").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidDefinition);
        assert_eq!(e.phase, Phase::Configuration);
    }

    #[test]
    fn validate_rules() {
        let q = OperationSpec::new("refs.site.get", OperationKind::Query, "Read.").unwrap();
        q.validate().unwrap();
        let bad = q.clone().mutating().validate().unwrap_err();
        assert_eq!(bad.details["reason"], "query_mutates");
        let bad = q
            .clone()
            .with_schemas(Value::from(3), Value::Bool(true))
            .validate()
            .unwrap_err();
        assert_eq!(bad.details["reason"], "bad_schema");
        let bad = q.clone().with_scopes([" "]).validate().unwrap_err();
        assert_eq!(bad.details["reason"], "empty_scope");
        let bad = q.with_tags([""]).validate().unwrap_err();
        assert_eq!(bad.details["reason"], "empty_tag");
        assert!(OperationSpec::new("get", OperationKind::Query, "").is_err());
    }
}
