//! Errors on HTTP: RFC 9457 `application/problem+json` carrying the shared [`BverError`].
//!
//! Every error the node answers with, from any route or middleware (including body-size,
//! routing and method errors that would otherwise be plain text), goes through [`Problem`].
//! The body has the RFC's members (`type`, `title`, `status`, `detail`) and the
//! shared error's fields as extension members (`code`, `phase`, `retryable`, `details`,
//! `related_refs`). The request id is in the `x-request-id` header of every response.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bver_contracts::{BverError, ErrorCode, Phase};
use serde_json::{Value, json};

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// An error response. Build it from a [`BverError`]; the status comes from the error code
/// unless set explicitly.
#[derive(Debug)]
pub struct Problem {
    /// The shared error.
    pub error: BverError,
    /// The HTTP status (by default [`ErrorCode::http_status`]).
    pub status: StatusCode,
    /// Seconds after which a retry makes sense (`Retry-After`).
    pub retry_after: Option<u64>,
    /// Extra headers (for example `WWW-Authenticate`).
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Problem {
    /// A problem with the status of the error's code.
    pub fn new(error: BverError) -> Self {
        let status = StatusCode::from_u16(error.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut p = Self {
            error,
            status,
            retry_after: None,
            headers: Vec::new(),
        };
        match p.error.code {
            ErrorCode::Unauthenticated | ErrorCode::BadSignature => {
                p.headers.push((
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"bver\", error=\"invalid_token\""),
                ));
            }
            ErrorCode::Unavailable | ErrorCode::StorageError => p.retry_after = Some(1),
            _ => {}
        }
        p
    }

    /// Override the status.
    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Set `Retry-After`.
    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// A `malformed_request` in the input phase.
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new(BverError::new(
            ErrorCode::MalformedRequest,
            Phase::InputValidation,
            message,
        ))
    }
}

impl From<BverError> for Problem {
    fn from(error: BverError) -> Self {
        Self::new(error)
    }
}

fn title(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::InvalidPointer => "Invalid pointer",
        ErrorCode::MalformedRequest => "Malformed request",
        ErrorCode::SchemaViolation => "Schema violation",
        ErrorCode::RuleViolation => "Rule violation",
        ErrorCode::Unauthenticated => "Unauthenticated",
        ErrorCode::Forbidden => "Forbidden",
        ErrorCode::NotFound => "Not found",
        ErrorCode::AlreadyExists => "Already exists",
        ErrorCode::VersionConflict => "Version conflict",
        ErrorCode::IdempotencyMismatch => "Idempotency key reused with another request",
        ErrorCode::LeaseConflict => "Lease conflict",
        ErrorCode::MutationForbidden => "Mutation forbidden",
        ErrorCode::PayloadTooLarge => "Payload too large",
        ErrorCode::RateLimited => "Rate limited",
        ErrorCode::Unavailable => "Unavailable",
        ErrorCode::Timeout => "Timeout",
        ErrorCode::PeerUnreachable => "Peer unreachable",
        ErrorCode::UnknownPeer => "Unknown peer",
        ErrorCode::BadSignature => "Bad signature",
        ErrorCode::OutdatedCursor => "Outdated cursor",
        ErrorCode::InvalidCursor => "Invalid cursor",
        ErrorCode::IncompatibleContract => "Incompatible contract",
        ErrorCode::InvalidDefinition => "Invalid definition",
        ErrorCode::StorageError => "Storage error",
        _ => "Internal error",
    }
}

/// The problem document of `error` with `status`.
pub fn body(error: &BverError, status: StatusCode) -> Value {
    let mut doc = json!({
        "type": format!("urn:bver:error:{}", error.code.as_str()),
        "title": title(error.code),
        "status": status.as_u16(),
        "detail": error.message,
        "code": error.code,
        "phase": error.phase,
        "retryable": error.retryable,
    });
    if !error.details.is_null() {
        doc["details"] = error.details.clone();
    }
    if !error.related_refs.is_empty() {
        doc["related_refs"] = json!(error.related_refs);
    }
    doc
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let bytes = serde_json::to_vec(&body(&self.error, self.status)).unwrap_or_default();
        let mut res = (self.status, bytes).into_response();
        let h = res.headers_mut();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(secs) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        for (name, value) in self.headers {
            h.insert(name, value);
        }
        res
    }
}
