//! The HTTP surface: shared state, the router, and the middleware every request passes.
//!
//! Layers, outermost first:
//! 1. [`observe`]: request id (taken from `x-request-id` when sane, minted otherwise, and
//!    returned on every response), a `tracing` span per request, metrics by route template,
//!    the insecure-mode warning header, and 503 for everything but health while draining;
//! 2. the body limit (`413 payload_too_large` as problem+json), and a panic guard (a
//!    handler that panics answers `500 internal`; the cause is logged, not returned);
//! 3. on every route but health and the JWKS (`/mcp` included): [`authenticate`] (bearer JWT, deny by default),
//!    then the per-principal rate limit (`429` with `Retry-After`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bver_auth::{Principal, Revocations, Scope, ScopeSet, Verifier};
use bver_contracts::{BverError, ErrorCode, Phase};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde_json::Value;
use tracing::Instrument;

use super::metrics::Metrics;
use super::problem::Problem;
use super::rest;
use crate::broker::Broker;
use crate::datadir::DataDir;

/// The header that carries the request id, in and out.
pub const REQUEST_ID: &str = "x-request-id";
/// The header every response carries in insecure dev mode.
pub const INSECURE_HEADER: &str = "x-bver-insecure";
/// Its value.
pub const INSECURE_WARNING: &str =
    "dev mode: authentication is DISABLED on this node (started with --insecure-dev)";

/// The request id of the current request (a request extension).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Authentication state: the verifier (rebuilt when the key set changes), the JWKS it
/// publishes, and the revocation list it consults.
pub struct AuthState {
    verifier: RwLock<Arc<Verifier>>,
    jwks: RwLock<Arc<Value>>,
    /// Shared with every verifier built.
    pub revocations: Arc<Revocations>,
}

impl std::fmt::Debug for AuthState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthState").finish_non_exhaustive()
    }
}

impl AuthState {
    /// State around `verifier`, publishing `jwks`.
    pub fn new(verifier: Verifier, jwks: Value, revocations: Arc<Revocations>) -> Self {
        Self {
            verifier: RwLock::new(Arc::new(verifier)),
            jwks: RwLock::new(Arc::new(jwks)),
            revocations,
        }
    }

    /// The current verifier.
    pub fn verifier(&self) -> Arc<Verifier> {
        self.verifier
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replace the verifier and the JWKS (after a key rotation).
    pub fn replace(&self, verifier: Verifier, jwks: Value) {
        *self
            .verifier
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(verifier);
        *self.jwks.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(jwks);
    }

    fn jwks(&self) -> Arc<Value> {
        self.jwks
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Everything a request handler can reach.
pub struct AppState {
    /// The one broker.
    pub broker: Broker,
    /// Token verification.
    pub auth: AuthState,
    /// Metrics.
    pub metrics: Metrics,
    /// Set when shutdown begins: every route but health answers 503.
    pub draining: AtomicBool,
    /// Per-principal limiter, when configured.
    pub limiter: Option<DefaultKeyedRateLimiter<String>>,
    /// `GET /v1/manifest`.
    pub manifests: Value,
    /// `GET /openapi.json`, rendered once.
    pub openapi: axum::body::Bytes,
    /// Authentication disabled (dev mode).
    pub insecure: bool,
    /// The platform id.
    pub platform_id: String,
    /// Where revocations are persisted.
    pub data: DataDir,
    /// `/mcp`: Host/Origin allow-lists and the shutdown signal of open streams.
    pub mcp: crate::mcp::HttpSettings,
    request_ids: RequestIds,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("platform_id", &self.platform_id)
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

/// Parts of [`AppState`] its constructor takes.
#[derive(Debug)]
pub struct StateParts {
    /// See [`AppState::broker`].
    pub broker: Broker,
    /// See [`AppState::auth`].
    pub auth: AuthState,
    /// See [`AppState::metrics`].
    pub metrics: Metrics,
    /// Requests per second per principal.
    pub rate_limit: Option<u32>,
    /// See [`AppState::manifests`].
    pub manifests: Value,
    /// See [`AppState::openapi`].
    pub openapi: Value,
    /// See [`AppState::insecure`].
    pub insecure: bool,
    /// See [`AppState::platform_id`].
    pub platform_id: String,
    /// See [`AppState::data`].
    pub data: DataDir,
    /// See [`AppState::mcp`].
    pub mcp: crate::mcp::HttpSettings,
}

impl AppState {
    /// Assemble the state.
    pub fn new(parts: StateParts) -> Self {
        let limiter = parts
            .rate_limit
            .and_then(std::num::NonZeroU32::new)
            .map(|n| RateLimiter::keyed(Quota::per_second(n)));
        Self {
            broker: parts.broker,
            auth: parts.auth,
            metrics: parts.metrics,
            draining: AtomicBool::new(false),
            limiter,
            manifests: parts.manifests,
            openapi: serde_json::to_vec(&parts.openapi)
                .unwrap_or_default()
                .into(),
            insecure: parts.insecure,
            platform_id: parts.platform_id,
            data: parts.data,
            mcp: parts.mcp,
            request_ids: RequestIds::new(),
        }
    }
}

/// Request ids: a random per-process prefix and a counter (unique, cheap, sortable per node).
struct RequestIds {
    prefix: u32,
    next: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        Self {
            prefix: rand::random(),
            next: AtomicU64::new(1),
        }
    }

    fn mint(&self) -> String {
        format!(
            "{:08x}-{:x}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// A client-supplied request id is kept when it is 1..=128 visible ASCII characters.
fn sane_request_id(v: &HeaderValue) -> Option<String> {
    let b = v.as_bytes();
    (!b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic()))
        .then(|| String::from_utf8_lossy(b).into_owned())
}

/// The router of a node; `mcp` serves Streamable HTTP at `/mcp` (`docs/mcp.md`).
pub fn router(state: Arc<AppState>, max_body_bytes: usize, mcp: crate::mcp::McpServer) -> Router {
    let mcp = crate::mcp::http_service(mcp, &state.mcp, max_body_bytes);
    let protected = Router::new()
        .route_service("/mcp", mcp)
        .route("/v1/ops/{operation}", post(rest::invoke_op))
        .route(
            "/v1/refs/{namespace}/{repo}",
            get(rest::list_refs).post(rest::create_ref),
        )
        .route(
            "/v1/refs/{namespace}/{repo}/{id}",
            get(rest::get_ref)
                .put(rest::replace_ref)
                .patch(rest::patch_ref)
                .delete(rest::delete_ref),
        )
        .route(
            "/v1/refs/{namespace}/{repo}/{id}/history",
            get(rest::history),
        )
        .route(
            "/v1/refs/{namespace}/{repo}/{id}/versions/{version}",
            get(rest::get_version),
        )
        .route("/v1/refs/{namespace}/{repo}/{id}/diff", get(rest::diff))
        .route(
            "/v1/refs/{namespace}/{repo}/{id}/restore",
            post(rest::restore),
        )
        .route(
            "/v1/refs/{namespace}/{repo}/{id}/kind",
            axum::routing::put(rest::change_kind),
        )
        .route("/v1/resolve", get(rest::resolve))
        .route("/v1/manifest", get(rest::manifest))
        .route(
            "/v1/admin/revocations",
            get(rest::list_revocations).post(rest::revoke),
        )
        .route("/openapi.json", get(rest::openapi))
        .route("/metrics", get(rest::metrics))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate));
    Router::new()
        .route("/healthz", get(rest::healthz))
        .route("/readyz", get(rest::readyz))
        .route("/.well-known/jwks.json", get(jwks))
        .merge(protected)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panicked))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

async fn jwks(State(st): State<Arc<AppState>>) -> Response {
    let mut res = axum::Json(st.auth.jwks().as_ref().clone()).into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    res
}

/// A handler that panicked: a 500 problem (the cause is logged, never returned).
fn panicked(cause: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = cause
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| cause.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(cause = %what, "a request handler panicked");
    Problem::new(BverError::internal(
        "the node failed while handling this request",
    ))
    .into_response()
}

async fn not_found(req: Request) -> Problem {
    Problem::new(
        BverError::new(
            ErrorCode::NotFound,
            Phase::InputValidation,
            format!("no route {} {}", req.method(), req.uri().path()),
        )
        .with_details(serde_json::json!({ "see": "/openapi.json" })),
    )
}

async fn method_not_allowed(req: Request) -> Problem {
    Problem::new(BverError::new(
        ErrorCode::MalformedRequest,
        Phase::InputValidation,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    ))
    .status(StatusCode::METHOD_NOT_ALLOWED)
}

fn is_health(route: &str) -> bool {
    matches!(route, "/healthz" | "/readyz" | "/.well-known/jwks.json")
}

/// The outermost middleware; see the module docs.
async fn observe(State(st): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(sane_request_id)
        .unwrap_or_else(|| st.request_ids.mint());
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |m| m.as_str())
        .to_owned();
    let method = req.method().clone();
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let span = tracing::info_span!("request", %method, route, request_id);
    let mut res = if st.draining.load(Ordering::Relaxed) && !is_health(&route) {
        Problem::new(BverError::new(
            ErrorCode::Unavailable,
            Phase::Transport,
            "the node is shutting down",
        ))
        .into_response()
    } else {
        next.run(req).instrument(span.clone()).await
    };
    let status = res.status();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert(REQUEST_ID, v);
    }
    if st.insecure {
        res.headers_mut()
            .insert(INSECURE_HEADER, HeaderValue::from_static(INSECURE_WARNING));
    }
    let elapsed = start.elapsed();
    st.metrics
        .http(method.as_str(), &route, status.as_u16(), elapsed);
    span.in_scope(|| {
        if status.is_server_error() {
            tracing::warn!(
                status = status.as_u16(),
                elapsed_us = elapsed.as_micros() as u64,
                "response"
            );
        } else {
            tracing::debug!(
                status = status.as_u16(),
                elapsed_us = elapsed.as_micros() as u64,
                "response"
            );
        }
    });
    res
}

/// Scopes of the principal of insecure dev mode: every family, wildcarded.
pub const INSECURE_SCOPES: &str =
    "refs:*:* ops:* jobs:*:* orch:*:* primitives:*:invoke admin admin:* metrics:read eager:*:*";

fn dev_principal(platform: &str) -> Principal {
    Principal {
        subject: "insecure-dev".into(),
        scopes: ScopeSet::parse(INSECURE_SCOPES).unwrap_or_default(),
        token_id: "insecure-dev".into(),
        issued_at: 0,
        expires_at: u64::MAX,
        issuer: platform.to_owned(),
    }
}

fn unauthenticated(reason: &str, message: &str) -> Problem {
    Problem::new(
        BverError::new(ErrorCode::Unauthenticated, Phase::Authentication, message)
            .with_details(serde_json::json!({ "reason": reason })),
    )
}

/// Bearer-token authentication and the rate limit; see the module docs.
async fn authenticate(State(st): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let principal = match req.headers().get(header::AUTHORIZATION) {
        None if st.insecure => dev_principal(&st.platform_id),
        None => {
            st.metrics.auth_rejected("missing_token");
            return unauthenticated(
                "missing_token",
                "this endpoint needs `Authorization: Bearer <token>` (get one with `bver token issue`)",
            )
            .into_response();
        }
        Some(value) => {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| {
                    let (scheme, rest) = v.split_once(' ')?;
                    scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
                })
                .filter(|t| !t.is_empty());
            let Some(token) = token else {
                st.metrics.auth_rejected("malformed_token");
                return unauthenticated(
                    "malformed_token",
                    "the Authorization header is not `Bearer <token>`",
                )
                .into_response();
            };
            match st.auth.verifier().verify_now(token) {
                Ok(p) => p,
                Err(e) => {
                    st.metrics.auth_rejected(e.code());
                    tracing::info!(reason = e.code(), "token refused");
                    return Problem::new(BverError::from(e)).into_response();
                }
            }
        }
    };
    if let Some(limiter) = &st.limiter
        && let Err(not_until) = limiter.check_key(&principal.subject)
    {
        let wait = not_until.wait_time_from(governor::clock::Clock::now(
            &governor::clock::DefaultClock::default(),
        ));
        return Problem::new(
            BverError::new(
                ErrorCode::RateLimited,
                Phase::Authorization,
                format!("`{}` is over its rate limit", principal.subject),
            )
            .with_details(serde_json::json!({ "retry_after_ms": wait.as_millis() as u64 })),
        )
        .retry_after(wait.as_secs().max(1))
        .into_response();
    }
    req.extensions_mut().insert(principal);
    next.run(req).await
}

/// The scope `GET /metrics` needs.
pub fn metrics_scope() -> Scope {
    Scope::parse("metrics:read").unwrap_or_else(|_| unreachable_scope())
}

/// The scope revocation management needs.
pub fn tokens_scope() -> Scope {
    Scope::parse("admin:tokens").unwrap_or_else(|_| unreachable_scope())
}

fn unreachable_scope() -> Scope {
    // Both literals above are in the grammar; a test checks it.
    #[allow(clippy::unwrap_used)]
    Scope::parse("admin").unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_scopes_parse() {
        assert_eq!(metrics_scope().as_str(), "metrics:read");
        assert_eq!(tokens_scope().as_str(), "admin:tokens");
        assert!(ScopeSet::parse(INSECURE_SCOPES).is_ok());
    }

    #[test]
    fn request_ids_are_kept_only_when_sane() {
        assert_eq!(
            sane_request_id(&HeaderValue::from_static("abc-123")).as_deref(),
            Some("abc-123")
        );
        assert!(sane_request_id(&HeaderValue::from_static("a b")).is_none());
        assert!(sane_request_id(&HeaderValue::from_str(&"x".repeat(129)).unwrap()).is_none());
    }
}
