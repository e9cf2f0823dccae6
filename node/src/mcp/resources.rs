//! Resources: every reference is a resource whose URI is its `bver://` pointer.
//!
//! - `resources/list`: the references of every repo the caller may read, repo by repo in
//!   domain order, each repo in id order (`bver.list`), at most [`PAGE`] per page. The
//!   cursor is opaque (`{repo index}:{the repo's own cursor}`).
//! - `resources/templates/list`: `bver://{namespace}/{repo}/{id}` and, per readable repo,
//!   `bver://{ns}/{repo}/{id}` with the namespace and repo filled in.
//! - `resources/read`: `bver.get` on the URI: the current JSON value (`application/json`), or
//!   with an attribute path (`bver://ns/repo/id@status`) the value at that path.
//!
//! Errors are JSON-RPC errors carrying the shared error in `data`: `not_found` is
//! `-32002` (resource not found), bad pointers and cursors are `-32602`, `forbidden` and
//! `unauthenticated` are `-32600`, anything else `-32603`.

use bver_auth::Principal;
use bver_contracts::{BverError, ErrorCode as Code};
use rmcp::ErrorData;
use rmcp::model::{
    ErrorCode, ListResourceTemplatesResult, ListResourcesResult, ReadResourceResult, Resource,
    ResourceContents, ResourceTemplate,
};
use serde_json::{Value, json};

use super::tools::error_json;
use crate::broker::{Broker, Call};

/// References per `resources/list` page.
pub const PAGE: u64 = 100;
/// The media type of every resource.
pub const JSON: &str = "application/json";
/// The generic resource template.
pub const TEMPLATE: &str = "bver://{namespace}/{repo}/{id}";

/// The shared error as a JSON-RPC error.
pub fn rpc_error(e: &BverError) -> ErrorData {
    let data = Some(error_json(e));
    let message = e.message.clone();
    match e.code {
        Code::NotFound => ErrorData::resource_not_found(message, data),
        Code::InvalidPointer
        | Code::MalformedRequest
        | Code::SchemaViolation
        | Code::InvalidCursor => ErrorData::invalid_params(message, data),
        Code::Forbidden | Code::Unauthenticated | Code::BadSignature => {
            ErrorData::new(ErrorCode::INVALID_REQUEST, message, data)
        }
        _ => ErrorData::internal_error(message, data),
    }
}

/// Repos `principal` may read, in domain order.
fn readable_repos(broker: &Broker, principal: &Principal) -> Vec<(String, String)> {
    broker
        .visible_operations(principal)
        .filter(|op| op.name.ends_with(".get") && op.repo.is_some())
        .filter_map(|op| {
            let repo = op.repo.as_deref()?;
            let rt = broker.domain().ref_type(repo)?;
            Some((rt.namespace.clone(), repo.to_owned()))
        })
        .collect()
}

fn bad_cursor(cursor: &str) -> BverError {
    BverError::new(
        Code::InvalidCursor,
        bver_contracts::Phase::InputValidation,
        format!("`{cursor}` is not a cursor of resources/list"),
    )
}

/// One page of `resources/list`.
pub async fn list(
    broker: &Broker,
    principal: &Principal,
    cursor: Option<&str>,
    request_id: &str,
) -> Result<ListResourcesResult, BverError> {
    let repos = readable_repos(broker, principal);
    let (mut index, mut inner) = match cursor {
        None => (0usize, None),
        Some(c) => {
            let (i, rest) = c.split_once(':').ok_or_else(|| bad_cursor(c))?;
            let i: usize = i.parse().map_err(|_| bad_cursor(c))?;
            (i, (!rest.is_empty()).then(|| rest.to_owned()))
        }
    };
    let mut resources = Vec::new();
    while index < repos.len() && resources.is_empty() {
        let (namespace, repo) = &repos[index];
        let mut input = json!({ "repo": repo, "limit": PAGE });
        if let Some(c) = &inner {
            input["cursor"] = Value::String(c.clone());
        }
        let page = broker
            .invoke(
                principal,
                Call::new("bver.list", input).request_id(request_id),
            )
            .await?;
        for item in page["items"].as_array().into_iter().flatten() {
            let Some(pointer) = item["pointer"].as_str() else {
                continue;
            };
            let id = pointer.rsplit('/').next().unwrap_or(pointer);
            let mut description = format!("`{repo}` reference in namespace `{namespace}`");
            if let Some(v) = item["version"].as_u64() {
                description.push_str(&format!(", version {v}"));
            }
            if let Some(k) = item["kind"].as_str() {
                description.push_str(&format!(", kind `{k}`"));
            }
            resources.push(
                Resource::new(pointer, format!("{repo}/{id}"))
                    .with_description(description)
                    .with_mime_type(JSON),
            );
        }
        match page["next_cursor"].as_str() {
            Some(next) => inner = Some(next.to_owned()),
            None => {
                index += 1;
                inner = None;
            }
        }
    }
    let mut result = ListResourcesResult::with_all_items(resources);
    if index < repos.len() {
        result.next_cursor = Some(format!("{index}:{}", inner.unwrap_or_default()));
    }
    Ok(result)
}

/// `resources/templates/list`.
pub fn templates(broker: &Broker, principal: &Principal) -> ListResourceTemplatesResult {
    let mut list = vec![
        ResourceTemplate::new(TEMPLATE, "reference")
            .with_title("A BVER reference")
            .with_description(
                "Any reference of this platform by its pointer; append `@a/b` for the value at \
                 an attribute path.",
            )
            .with_mime_type(JSON),
    ];
    for (namespace, repo) in readable_repos(broker, principal) {
        let mut t =
            ResourceTemplate::new(format!("bver://{namespace}/{repo}/{{id}}"), repo.clone())
                .with_mime_type(JSON);
        if let Some(rt) = broker.domain().ref_type(&repo)
            && !rt.description.is_empty()
        {
            t = t.with_description(rt.description.clone());
        }
        list.push(t);
    }
    ListResourceTemplatesResult::with_all_items(list)
}

/// `resources/read`: the current value at `uri`.
pub async fn read(
    broker: &Broker,
    principal: &Principal,
    uri: &str,
    request_id: &str,
) -> Result<ReadResourceResult, BverError> {
    let out = broker
        .invoke(
            principal,
            Call::new("bver.get", json!({ "pointer": uri })).request_id(request_id),
        )
        .await?;
    let text = serde_json::to_string(&out["value"]).unwrap_or_else(|_| "null".into());
    Ok(ReadResourceResult::new(vec![
        ResourceContents::text(text, uri).with_mime_type(JSON),
    ]))
}

/// Whether `principal` may read `uri` (for subscriptions): `bver.exists` answers it with the
/// same scope rule as a read.
pub async fn check_readable(
    broker: &Broker,
    principal: &Principal,
    uri: &str,
    request_id: &str,
) -> Result<(), BverError> {
    let base = uri.split_once('@').map_or(uri, |(b, _)| b);
    broker
        .invoke(
            principal,
            Call::new("bver.exists", json!({ "pointer": base })).request_id(request_id),
        )
        .await
        .map(|_| ())
}
