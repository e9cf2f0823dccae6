//! Tools: one MCP tool per operation of the registry, generated once when the server is built.
//!
//! - **Names.** An operation's dotted name with every `.` replaced by `_`
//!   (`refs.site.create` → `refs_site_create`, `bver.get` → `bver_get`). Repo names are
//!   `[a-z][a-z0-9_]*` (at most 63 characters) and no operation suffix is `_` plus another
//!   suffix, so the mapping is one-to-one; [`ToolIndex::new`] still checks it and refuses a
//!   domain where two operations would share a tool name.
//! - **Schemas.** `inputSchema` and `outputSchema` are the operation's own JSON Schemas
//!   (2020-12), unchanged.
//! - **Annotations.** `readOnlyHint` for queries; `destructiveHint` only for `delete`;
//!   `idempotentHint` for queries (a mutation always writes a new version; retries are made
//!   safe with an idempotency key instead, see [`IDEMPOTENCY_META`]); `openWorldHint: false`.
//! - **Calls** run [`Broker::invoke`] and nothing else: the same schema check, scopes,
//!   mutation gate, idempotency and errors as REST. A failure is a tool result with
//!   `isError: true` whose `structuredContent` is the shared error.

use std::collections::HashMap;
use std::sync::Arc;

use bver_contracts::{BverError, ErrorCode, Phase};
use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool, ToolAnnotations};
use serde_json::{Value, json};

use crate::broker::Broker;
use crate::domain::ops::OperationSpec;

/// The `_meta` key of `tools/call` that carries an idempotency key for a mutation.
pub const IDEMPOTENCY_META: &str = "io.bver/idempotency-key";

/// The MCP tool name of an operation.
pub fn tool_name(operation: &str) -> String {
    operation.replace('.', "_")
}

/// Every tool of a domain, by tool name.
#[derive(Debug)]
pub struct ToolIndex {
    /// Tool name → (operation name, tool definition).
    by_tool: HashMap<String, (String, Tool)>,
    /// Operation name → tool name.
    by_op: HashMap<String, String>,
}

impl ToolIndex {
    /// The tools of every operation `broker` knows.
    pub fn new(broker: &Broker) -> Result<Self, BverError> {
        let mut by_tool = HashMap::new();
        let mut by_op = HashMap::new();
        for spec in broker.domain().operations() {
            let name = tool_name(&spec.name);
            if let Some((other, _)) = by_tool.get(&name) {
                return Err(BverError::new(
                    ErrorCode::InvalidDefinition,
                    Phase::Configuration,
                    format!(
                        "operations `{other}` and `{}` would both be the MCP tool `{name}`",
                        spec.name
                    ),
                ));
            }
            by_op.insert(spec.name.clone(), name.clone());
            by_tool.insert(name, (spec.name.clone(), tool_of(spec)));
        }
        Ok(Self { by_tool, by_op })
    }

    /// The operation a tool runs.
    pub fn operation(&self, tool: &str) -> Option<&str> {
        self.by_tool.get(tool).map(|(op, _)| op.as_str())
    }

    /// The tool of an operation.
    pub fn tool(&self, operation: &str) -> Option<&Tool> {
        self.by_op
            .get(operation)
            .and_then(|t| self.by_tool.get(t))
            .map(|(_, tool)| tool)
    }
}

fn object(schema: &Value) -> Arc<JsonObject> {
    Arc::new(match schema {
        Value::Object(o) => o.clone(),
        _ => JsonObject::new(),
    })
}

fn verb(operation: &str) -> &str {
    operation.rsplit('.').next().unwrap_or(operation)
}

/// The tool definition of one operation.
pub fn tool_of(spec: &OperationSpec) -> Tool {
    let read_only = !spec.mutation;
    let annotations = ToolAnnotations::with_title(spec.name.clone())
        .read_only(read_only)
        .destructive(spec.mutation && verb(&spec.name) == "delete")
        .idempotent(read_only)
        .open_world(false);
    Tool::new_with_raw(
        tool_name(&spec.name),
        Some(spec.description.clone().into()),
        object(&spec.input),
    )
    .with_title(spec.name.clone())
    .with_raw_output_schema(object(&spec.output))
    .with_annotations(annotations)
}

/// The JSON form of the shared error, as a tool's `structuredContent`.
pub fn error_json(error: &BverError) -> Value {
    serde_json::to_value(error).unwrap_or_else(|_| {
        json!({
            "code": error.code,
            "phase": error.phase,
            "message": error.message,
            "retryable": error.retryable,
        })
    })
}

/// A failed call: `isError: true`, the shared error as `structuredContent`, and a text
/// block a person can read.
pub fn error_result(error: &BverError) -> CallToolResult {
    let structured = error_json(error);
    let mut result = CallToolResult::structured_error(structured.clone());
    result.content = vec![ContentBlock::text(format!(
        "{} ({}): {}\n{structured}",
        error.code.as_str(),
        serde_json::to_value(error.phase)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        error.message
    ))];
    result
}

/// A successful call: the output as `structuredContent` (it validates against the tool's
/// `outputSchema`) and as JSON text for clients that only read `content`.
pub fn ok_result(output: Value) -> CallToolResult {
    CallToolResult::structured(output)
}

/// An unknown tool: the broker's own `not_found` (with the closest names), as a tool error.
pub fn unknown_tool(name: &str, index: &ToolIndex) -> BverError {
    let mut close: Vec<&str> = index
        .by_tool
        .keys()
        .map(String::as_str)
        .filter(|t| {
            let stem = name.rsplit('_').next().unwrap_or(name);
            t.ends_with(stem) || t.split('_').take(2).eq(name.split('_').take(2))
        })
        .collect();
    close.sort_unstable();
    close.truncate(5);
    BverError::new(
        ErrorCode::NotFound,
        Phase::InputValidation,
        format!("no tool `{name}`"),
    )
    .with_details(json!({ "tool": name, "did_you_mean": close }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_dots_to_underscores() {
        assert_eq!(tool_name("refs.site.create"), "refs_site_create");
        assert_eq!(tool_name("refs.site.change_kind"), "refs_site_change_kind");
        assert_eq!(tool_name("bver.get"), "bver_get");
    }
}
