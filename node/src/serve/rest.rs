//! REST handlers. Each one translates HTTP (path, query, headers, body) into one broker
//! [`Call`] and the broker's answer back into HTTP; none of them touches the store.
//!
//! - `POST /v1/ops/{operation}`: any operation of the registry, body = its input.
//! - `/v1/refs/{namespace}/{repo}[/{id}[/...]]`: resource routes over the generated
//!   `refs.{repo}.*` operations, with `ETag` = the version, `If-Match` = the expected version
//!   (412 on mismatch), `If-None-Match` on reads (304), `Idempotency-Key` on mutations.
//! - `GET /v1/resolve?pointer=...`: `bver.resolve`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bver_auth::Principal;
use bver_contracts::{BverError, ErrorCode, Phase};
use serde_json::{Map, Value, json};

use super::http::{AppState, RequestId, metrics_scope, tokens_scope};
use super::problem::Problem;
use crate::broker::Call;

/// Largest `Idempotency-Key` accepted.
pub const MAX_IDEMPOTENCY_KEY: usize = 255;

type St = State<Arc<AppState>>;
type Who = Extension<Principal>;
type Rid = Extension<RequestId>;
type Query_ = Result<Query<HashMap<String, String>>, QueryRejection>;

/// A JSON request body; a missing, oversized or non-JSON body is a problem+json error.
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        parse_json(&bytes).map(JsonBody)
    }
}

fn body_rejection(e: BytesRejection) -> Problem {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        Problem::new(BverError::new(
            ErrorCode::PayloadTooLarge,
            Phase::InputValidation,
            "the request body is larger than this node accepts (max_body_bytes)",
        ))
    } else {
        Problem::malformed(format!("the request body could not be read: {e}"))
    }
}

fn parse_json(bytes: &[u8]) -> Result<Value, Problem> {
    if bytes.is_empty() {
        return Err(Problem::malformed("the request needs a JSON body"));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        Problem::new(
            BverError::new(
                ErrorCode::MalformedRequest,
                Phase::InputValidation,
                format!("the request body is not valid JSON: {e}"),
            )
            .with_details(json!({ "line": e.line(), "column": e.column() })),
        )
    })
}

fn path_rejection(e: PathRejection) -> Problem {
    Problem::malformed(format!("the request path is not valid: {e}"))
}

/// The query parameters, refusing any not in `allowed`.
fn query(q: Query_, allowed: &[&str]) -> Result<HashMap<String, String>, Problem> {
    let Query(map) =
        q.map_err(|e| Problem::malformed(format!("the query string is not valid: {e}")))?;
    if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(Problem::new(
            BverError::new(
                ErrorCode::MalformedRequest,
                Phase::InputValidation,
                format!("unknown query parameter `{unknown}`"),
            )
            .with_details(json!({ "parameter": unknown, "allowed": allowed })),
        ));
    }
    Ok(map)
}

fn uint(name: &str, raw: &str) -> Result<u64, Problem> {
    raw.parse::<u64>().map_err(|_| {
        Problem::new(
            BverError::new(
                ErrorCode::MalformedRequest,
                Phase::InputValidation,
                format!("`{name}` must be a non-negative integer, not `{raw}`"),
            )
            .with_details(json!({ "parameter": name })),
        )
    })
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let b = v.as_bytes();
    if b.is_empty() || b.len() > MAX_IDEMPOTENCY_KEY || !b.iter().all(|c| c.is_ascii_graphic()) {
        return Err(Problem::malformed(format!(
            "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters"
        )));
    }
    Ok(Some(String::from_utf8_lossy(b).into_owned()))
}

/// `If-Match: "N"` → `Some(N)`; `*` or absent → `None`.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, Problem> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or("").trim();
    if s == "*" {
        return Ok(None);
    }
    parse_etag(s).map(Some).ok_or_else(|| {
        Problem::malformed(format!(
            "If-Match must be one strong entity tag such as \"3\" (the version), not `{s}`"
        ))
    })
}

fn parse_etag(s: &str) -> Option<u64> {
    s.strip_prefix('"')?.strip_suffix('"')?.parse().ok()
}

fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// Run one operation through the broker, with metrics.
async fn call(
    st: &AppState,
    principal: &Principal,
    request_id: &RequestId,
    operation: String,
    input: Value,
    idempotency_key: Option<String>,
) -> Result<Value, Problem> {
    let start = Instant::now();
    // Unknown operations are not counted: their names come from clients (unbounded labels).
    let known = st.broker.operation(&operation).map(|s| s.mutation);
    let name = operation.clone();
    let mut c = Call::new(operation, input).request_id(request_id.0.clone());
    c.idempotency_key = idempotency_key;
    let result = st.broker.invoke(principal, c).await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e) => e.code.as_str(),
    };
    if let Err(e) = &result
        && e.code == ErrorCode::Internal
    {
        tracing::error!(operation = %name, error = %e, "operation failed");
    }
    if let Some(mutation) = known {
        st.metrics
            .operation(&name, mutation, outcome, start.elapsed());
    }
    result.map_err(Problem::from)
}

/// A JSON response with `ETag` from the output's `version`.
fn with_etag(status: StatusCode, out: Value) -> Response {
    let version = out.get("version").and_then(Value::as_u64);
    let mut res = (status, Json(out)).into_response();
    if let Some(v) = version {
        res.headers_mut().insert(header::ETAG, etag(v));
    }
    res
}

/// The repo must exist and live in `namespace`.
fn check_repo(st: &AppState, namespace: &str, repo: &str) -> Result<(), Problem> {
    match st.broker.domain().ref_type(repo) {
        Some(rt) if rt.namespace == namespace => Ok(()),
        Some(rt) => Err(Problem::new(
            BverError::new(
                ErrorCode::NotFound,
                Phase::InputValidation,
                format!(
                    "repo `{repo}` lives in namespace `{}`, not `{namespace}`",
                    rt.namespace
                ),
            )
            .with_details(json!({ "repo": repo, "namespace": rt.namespace })),
        )),
        None => Err(Problem::new(
            BverError::new(
                ErrorCode::NotFound,
                Phase::InputValidation,
                format!("this platform has no repo `{repo}`"),
            )
            .with_details(json!({
                "repo": repo,
                "repos": st.broker.domain().ref_types().map(|r| r.repo.clone()).collect::<Vec<_>>(),
            })),
        )),
    }
}

fn obj(pairs: impl IntoIterator<Item = (&'static str, Value)>) -> Value {
    let mut m = Map::new();
    for (k, v) in pairs {
        if !v.is_null() {
            m.insert(k.to_owned(), v);
        }
    }
    Value::Object(m)
}

// ---------------------------------------------------------------------------------------
// Operations

/// `POST /v1/ops/{operation}`.
pub(super) async fn invoke_op(
    State(st): St,
    Extension(p): Who,
    Extension(rid): Rid,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    JsonBody(input): JsonBody,
) -> Result<Response, Problem> {
    let Path(operation) = path.map_err(path_rejection)?;
    let key = idempotency_key(&headers)?;
    let out = call(&st, &p, &rid, operation, input, key).await?;
    Ok(Json(out).into_response())
}

// ---------------------------------------------------------------------------------------
// Resource routes

/// `{namespace}/{repo}` of a resource route, the repo checked to exist in that namespace.
pub(super) struct RepoPath {
    repo: String,
    ns: String,
}

/// `{namespace}/{repo}/{id}` of a resource route, the repo checked as for [`RepoPath`].
pub(super) struct RefPath {
    repo: String,
    id: String,
}

impl FromRequestParts<Arc<AppState>> for RepoPath {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, st: &Arc<AppState>) -> Result<Self, Problem> {
        let Path((ns, repo)) = Path::<(String, String)>::from_request_parts(parts, st)
            .await
            .map_err(path_rejection)?;
        check_repo(st, &ns, &repo)?;
        Ok(Self { repo, ns })
    }
}

impl FromRequestParts<Arc<AppState>> for RefPath {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, st: &Arc<AppState>) -> Result<Self, Problem> {
        // The first three segments; routes with more (`versions/{version}`) read the rest.
        let Path(segments) = Path::<Vec<String>>::from_request_parts(parts, st)
            .await
            .map_err(path_rejection)?;
        let [ns, repo, id, ..] = segments.as_slice() else {
            return Err(Problem::malformed(
                "the path needs a namespace, a repo and an id",
            ));
        };
        check_repo(st, ns, repo)?;
        Ok(Self {
            repo: repo.clone(),
            id: id.clone(),
        })
    }
}

/// `GET /v1/refs/{namespace}/{repo}?kind=&limit=&cursor=`.
pub(super) async fn list_refs(
    State(st): St,
    Extension(p): Who,
    Extension(rid): Rid,
    path: RepoPath,
    q: Query_,
) -> Result<Response, Problem> {
    let RepoPath { repo, .. } = path;
    let q = query(q, &["kind", "limit", "cursor"])?;
    let limit = q.get("limit").map(|l| uint("limit", l)).transpose()?;
    let input = obj([
        ("kind", json!(q.get("kind"))),
        ("limit", json!(limit)),
        ("cursor", json!(q.get("cursor"))),
    ]);
    let out = call(&st, &p, &rid, format!("refs.{repo}.list"), input, None).await?;
    Ok(Json(out).into_response())
}

/// `POST /v1/refs/{namespace}/{repo}`: body `{"id"?, "kind"?, "value"}`; 201 with
/// `Location` and `ETag`.
pub(super) async fn create_ref(
    State(st): St,
    Extension(p): Who,
    Extension(rid): Rid,
    path: RepoPath,
    headers: HeaderMap,
    JsonBody(input): JsonBody,
) -> Result<Response, Problem> {
    let RepoPath { repo, ns } = path;
    let key = idempotency_key(&headers)?;
    let out = call(&st, &p, &rid, format!("refs.{repo}.create"), input, key).await?;
    let location = out
        .get("id")
        .and_then(Value::as_str)
        .map(|id| format!("/v1/refs/{ns}/{repo}/{id}"));
    let mut res = with_etag(StatusCode::CREATED, out);
    if let Some(loc) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        res.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(res)
}

/// `GET /v1/refs/{namespace}/{repo}/{id}`; `If-None-Match` answers 304 when current.
pub(super) async fn get_ref(
    State(st): St,
    Extension(p): Who,
    Extension(rid): Rid,
    path: RefPath,
    headers: HeaderMap,
    q: Query_,
) -> Result<Response, Problem> {
    let RefPath { repo, id } = path;
    query(q, &[])?;
    let out = call(
        &st,
        &p,
        &rid,
        format!("refs.{repo}.get"),
        json!({ "id": id }),
        None,
    )
    .await?;
    let version = out.get("version").and_then(Value::as_u64);
    if let (Some(v), Some(inm)) = (version, headers.get(header::IF_NONE_MATCH)) {
        let inm = inm.to_str().unwrap_or("");
        if inm.trim() == "*"
            || inm
                .split(',')
                .any(|t| parse_etag(t.trim().trim_start_matches("W/")) == Some(v))
        {
            let mut res = StatusCode::NOT_MODIFIED.into_response();
            res.headers_mut().insert(header::ETAG, etag(v));
            return Ok(res);
        }
    }
    Ok(with_etag(StatusCode::OK, out))
}

/// `GET /v1/refs/{namespace}/{repo}/{id}/versions/{version}`.
pub(super) async fn get_version(
    State(st): St,
    Extension(p): Who,
    Extension(rid): Rid,
    RefPath { repo, id }: RefPath,
    Path(segments): Path<Vec<String>>,
) -> Result<Response, Problem> {
    // RefPath has read the same path, so this extraction cannot fail.
    let version = uint("version", segments.last().map_or("", String::as_str))?;
    let input = json!({ "id": id, "version": version });
    let out = call(&st, &p, &rid, format!("refs.{repo}.get"), input, None).await?;
    Ok(with_etag(StatusCode::OK, out))
}

/// `PUT /v1/refs/{namespace}/{repo}/{id}`: the body is the new value (the kind is kept).
pub(super) async fn replace_ref(
    State(st): St,
    Extension(p): Who,
    Extension(rid): Rid,
    path: RefPath,
    headers: HeaderMap,
    JsonBody(value): JsonBody,
) -> Result<Response, Problem> {
    let RefPath { repo, id } = path;
    let key = idempotency_key(&headers)?;
    let input = obj([
        ("id", json!(id)),
        ("expected_version", json!(if_match(&headers)?)),
        ("value", value),
    ]);
    let out = call(&st, &p, &rid, format!("refs.{repo}.replace"), input, key).await?;
    Ok(with_etag(StatusCode::OK, out))
}

/// `PATCH /v1/refs/{namespace}/{repo}/{id}`: `application/merge-patch+json` (RFC 7396, also
/// for plain `application/json`) or `application/json-patch+json` (RFC 6902).
pub(super) async fn patch_ref(
    State(st): St,
    Extension(p): Who,
    Extension(rid): Rid,
    path: RefPath,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, Problem> {
    let RefPath { repo, id } = path;
    let body = body.map_err(body_rejection)?;
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let field = match media.as_str() {
        "application/merge-patch+json" | "application/json" => "merge",
        "application/json-patch+json" => "json_patch",
        other => {
            return Err(Problem::new(
                BverError::new(
                    ErrorCode::MalformedRequest,
                    Phase::InputValidation,
                    format!(
                        "PATCH takes application/merge-patch+json or application/json-patch+json, not `{other}`"
                    ),
                )
                .with_details(json!({ "content_type": other })),
            )
            .status(StatusCode::UNSUPPORTED_MEDIA_TYPE));
        }
    };
    let patch = parse_json(&body)?;
    let key = idempotency_key(&headers)?;
    let input = obj([
        ("id", json!(id)),
        ("expected_version", json!(if_match(&headers)?)),
        (field, patch),
    ]);
    let out = call(&st, &p, &rid, format!("refs.{repo}.patch"), input, key).await?;
    Ok(with_etag(StatusCode::OK, out))
}

/// `DELETE /v1/refs/{namespace}/{repo}/{id}`.
pub(super) async fn delete_ref(
    State(st): St,
    Extension(p): Who,
    Extension(rid): Rid,
    path: RefPath,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let RefPath { repo, id } = path;
    let key = idempotency_key(&headers)?;
    let input = obj([
        ("id", json!(id)),
        ("expected_version", json!(if_match(&headers)?)),
    ]);
    let out = call(&st, &p, &rid, format!("refs.{repo}.delete"), input, key).await?;
    Ok(with_etag(StatusCode::OK, out))
}

/// `GET /v1/refs/{namespace}/{repo}/{id}/history?limit=&cursor=`.
pub(super) async fn history(
    State(st): St,
    Extension(p): Who,
    Extension(rid): Rid,
    path: RefPath,
    q: Query_,
) -> Result<Response, Problem> {
    let RefPath { repo, id } = path;
    let q = query(q, &["limit", "cursor"])?;
    let limit = q.get("limit").map(|l| uint("limit", l)).transpose()?;
    let input = obj([
        ("id", json!(id)),
        ("limit", json!(limit)),
        ("cursor", json!(q.get("cursor"))),
    ]);
    let out = call(&st, &p, &rid, format!("refs.{repo}.history"), input, None).await?;
    Ok(Json(out).into_response())
}

/// `GET /v1/refs/{namespace}/{repo}/{id}/diff?from=&to=`.
pub(super) async fn diff(
    State(st): St,
    Extension(p): Who,
    Extension(rid): Rid,
    path: RefPath,
    q: Query_,
) -> Result<Response, Problem> {
    let RefPath { repo, id } = path;
    let q = query(q, &["from", "to"])?;
    let from = q
        .get("from")
        .map(|v| uint("from", v))
        .transpose()?
        .ok_or_else(|| Problem::malformed("`from` (a version) is required"))?;
    let to = q.get("to").map(|v| uint("to", v)).transpose()?;
    let input = obj([("id", json!(id)), ("from", json!(from)), ("to", json!(to))]);
    let out = call(&st, &p, &rid, format!("refs.{repo}.diff"), input, None).await?;
    Ok(Json(out).into_response())
}

/// `POST /v1/refs/{namespace}/{repo}/{id}/restore`: body `{"version": N}`.
pub(super) async fn restore(
    State(st): St,
    Extension(p): Who,
    Extension(rid): Rid,
    path: RefPath,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, Problem> {
    body_op(&st, &p, &rid, path, "restore", &headers, body).await
}

/// `PUT /v1/refs/{namespace}/{repo}/{id}/kind`: body `{"kind": K, "value"?: V}`.
pub(super) async fn change_kind(
    State(st): St,
    Extension(p): Who,
    Extension(rid): Rid,
    path: RefPath,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, Problem> {
    body_op(&st, &p, &rid, path, "change_kind", &headers, body).await
}

/// A mutation whose input is the request body plus the path's id and the `If-Match` version.
async fn body_op(
    st: &AppState,
    p: &Principal,
    rid: &RequestId,
    RefPath { repo, id }: RefPath,
    suffix: &str,
    headers: &HeaderMap,
    mut input: Value,
) -> Result<Response, Problem> {
    let key = idempotency_key(headers)?;
    merge_fields(&mut input, &id, if_match(headers)?)?;
    let out = call(st, p, rid, format!("refs.{repo}.{suffix}"), input, key).await?;
    Ok(with_etag(StatusCode::OK, out))
}

/// Put the path's id and the `If-Match` version into a body object.
fn merge_fields(input: &mut Value, id: &str, expected: Option<u64>) -> Result<(), Problem> {
    let Some(o) = input.as_object_mut() else {
        return Err(Problem::malformed("the request body must be a JSON object"));
    };
    if o.get("id").is_some_and(|v| v != id) {
        return Err(Problem::malformed(
            "the body's `id` differs from the path's; leave it out",
        ));
    }
    o.insert("id".into(), json!(id));
    if let Some(v) = expected {
        o.insert("expected_version".into(), json!(v));
    }
    Ok(())
}

/// `GET /v1/resolve?pointer=...`.
pub(super) async fn resolve(
    State(st): St,
    Extension(p): Who,
    Extension(rid): Rid,
    q: Query_,
) -> Result<Response, Problem> {
    let q = query(q, &["pointer"])?;
    let pointer = q
        .get("pointer")
        .ok_or_else(|| Problem::malformed("`pointer` is required"))?;
    let out = call(
        &st,
        &p,
        &rid,
        "bver.resolve".into(),
        json!({ "pointer": pointer }),
        None,
    )
    .await?;
    Ok(with_etag(StatusCode::OK, out))
}

// ---------------------------------------------------------------------------------------
// Platform routes

/// `GET /v1/manifest`: the manifest of every bundle the platform serves.
pub(super) async fn manifest(State(st): St) -> Response {
    Json(st.manifests.clone()).into_response()
}

/// `GET /openapi.json`.
pub(super) async fn openapi(State(st): St) -> Response {
    let mut res = st.openapi.clone().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// `GET /metrics` (scope `metrics:read`).
pub(super) async fn metrics(State(st): St, Extension(p): Who) -> Result<Response, Problem> {
    p.require(&metrics_scope())?;
    let mut res = st.metrics.render().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(res)
}

/// `GET /healthz`: the process answers.
pub(super) async fn healthz() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

/// `GET /readyz`: storage reachable (migrations ran at open) and not draining.
pub(super) async fn readyz(State(st): St) -> Result<Response, Problem> {
    if st.draining.load(Ordering::Relaxed) {
        return Err(Problem::new(BverError::new(
            ErrorCode::Unavailable,
            Phase::Transport,
            "the node is shutting down",
        )));
    }
    st.broker.store().ping().await.map_err(|e| {
        Problem::new(
            BverError::new(
                ErrorCode::Unavailable,
                Phase::Storage,
                "storage is not reachable",
            )
            .with_details(json!({ "cause": e.message })),
        )
    })?;
    Ok(Json(json!({
        "status": "ready",
        "storage": st.broker.store().backend_name(),
    }))
    .into_response())
}

/// `GET /v1/admin/revocations` (scope `admin:tokens`).
pub(super) async fn list_revocations(
    State(st): St,
    Extension(p): Who,
) -> Result<Response, Problem> {
    p.require(&tokens_scope())?;
    let list = st.auth.revocations.snapshot();
    Ok(Json(json!({
        "tokens": list.tokens.iter().map(|t| json!({"jti": t.jti, "forget_after": t.forget_after})).collect::<Vec<_>>(),
        "subjects": list.subjects.iter().map(|s| json!({"subject": s.subject, "issued_before": s.issued_before})).collect::<Vec<_>>(),
    }))
    .into_response())
}

/// `POST /v1/admin/revocations` (scope `admin:tokens`): body `{"jti": J, "forget_after"?: T}`
/// or `{"subject": S, "issued_before"?: T}` (default: now + 1, every token issued so far).
/// Effective at once, and persisted in the data directory.
pub(super) async fn revoke(
    State(st): St,
    Extension(p): Who,
    JsonBody(body): JsonBody,
) -> Result<Response, Problem> {
    p.require(&tokens_scope())?;
    let now = bver_auth::unix_now();
    let field = |k: &str| body.get(k).filter(|v| !v.is_null());
    match (field("jti"), field("subject")) {
        (Some(Value::String(jti)), None) if !jti.is_empty() => {
            let forget_after = match field("forget_after") {
                None => u64::MAX,
                Some(v) => v
                    .as_u64()
                    .ok_or_else(|| Problem::malformed("`forget_after` must be unix seconds"))?,
            };
            st.auth.revocations.revoke_token(jti.clone(), forget_after);
        }
        (None, Some(Value::String(subject))) if !subject.is_empty() => {
            let before = match field("issued_before") {
                None => now + 1,
                Some(v) => v
                    .as_u64()
                    .ok_or_else(|| Problem::malformed("`issued_before` must be unix seconds"))?,
            };
            st.auth
                .revocations
                .revoke_issued_before(subject.clone(), before);
        }
        _ => {
            return Err(Problem::malformed(
                "give exactly one of `jti` (a token id) or `subject` (a non-empty string)",
            ));
        }
    }
    st.data.write_revocations(&st.auth.revocations)?;
    tracing::info!(by = %p.subject, "revocation recorded");
    Ok(Json(json!({ "revoked": true, "entries": st.auth.revocations.len() })).into_response())
}
