//! The one structured error of BVER (the spec's failure contract).
//!
//! Every surface (REST, MCP, EAGER, CLI, orchestrator steps, primitives) reports failures as
//! a [`BverError`]: a stable machine-readable [`ErrorCode`], a human message, the [`Phase`]
//! where the failure happened, whether the caller may safely retry, structured details and
//! the pointers involved. Modules keep their own `thiserror` enums with rich context and map
//! them into this type once, at their edge.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A stable, machine-readable error identifier.
///
/// The serialized form (`snake_case`, for example `schema_violation`) is part of the public
/// contract: codes are added, never renamed or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// A `bver://` pointer or attribute path does not follow the grammar.
    InvalidPointer,
    /// A request body or field is malformed (not JSON, wrong shape) before schema validation.
    MalformedRequest,
    /// A value does not validate against its JSON Schema.
    SchemaViolation,
    /// A cross-field rule (CEL) rejected a value.
    RuleViolation,
    /// No credentials were presented, or they could not be verified.
    Unauthenticated,
    /// The principal is known but lacks a required scope.
    Forbidden,
    /// The addressed reference, version, attribute or operation does not exist.
    NotFound,
    /// The reference already exists.
    AlreadyExists,
    /// The write stated an expected version that is not the current one.
    VersionConflict,
    /// An idempotency key was reused with a different payload.
    IdempotencyMismatch,
    /// A write lease held by someone else blocks the mutation.
    LeaseConflict,
    /// A mutation was attempted through a path that may not mutate state.
    MutationForbidden,
    /// The caller sent too much (body, frame, header, page size).
    PayloadTooLarge,
    /// The caller is over its rate limit.
    RateLimited,
    /// The node is starting, draining or cannot reach its storage.
    Unavailable,
    /// A deadline passed before the work finished.
    Timeout,
    /// A peer platform could not be reached.
    PeerUnreachable,
    /// A peer platform is not configured, or its key does not match the pin.
    UnknownPeer,
    /// A signature did not verify.
    BadSignature,
    /// A subscription cursor is older than the retained events.
    OutdatedCursor,
    /// A subscription cursor names another epoch or a future sequence.
    InvalidCursor,
    /// Incompatible contract package versions.
    IncompatibleContract,
    /// A domain definition is invalid (load-time error).
    InvalidDefinition,
    /// The storage backend failed.
    StorageError,
    /// An unexpected internal failure; the cause is logged, not returned.
    Internal,
}

impl ErrorCode {
    /// The serialized, stable name of the code (`schema_violation`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidPointer => "invalid_pointer",
            Self::MalformedRequest => "malformed_request",
            Self::SchemaViolation => "schema_violation",
            Self::RuleViolation => "rule_violation",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::AlreadyExists => "already_exists",
            Self::VersionConflict => "version_conflict",
            Self::IdempotencyMismatch => "idempotency_mismatch",
            Self::LeaseConflict => "lease_conflict",
            Self::MutationForbidden => "mutation_forbidden",
            Self::PayloadTooLarge => "payload_too_large",
            Self::RateLimited => "rate_limited",
            Self::Unavailable => "unavailable",
            Self::Timeout => "timeout",
            Self::PeerUnreachable => "peer_unreachable",
            Self::UnknownPeer => "unknown_peer",
            Self::BadSignature => "bad_signature",
            Self::OutdatedCursor => "outdated_cursor",
            Self::InvalidCursor => "invalid_cursor",
            Self::IncompatibleContract => "incompatible_contract",
            Self::InvalidDefinition => "invalid_definition",
            Self::StorageError => "storage_error",
            Self::Internal => "internal",
        }
    }

    /// Whether a caller may, by default, safely retry a request that failed with this code.
    pub fn default_retryable(self) -> bool {
        matches!(
            self,
            Self::LeaseConflict
                | Self::RateLimited
                | Self::Unavailable
                | Self::Timeout
                | Self::PeerUnreachable
                | Self::StorageError
        )
    }

    /// The HTTP status that represents this code (RFC 9110 semantics).
    pub fn http_status(self) -> u16 {
        match self {
            Self::InvalidPointer | Self::MalformedRequest | Self::InvalidCursor => 400,
            Self::Unauthenticated | Self::BadSignature => 401,
            Self::Forbidden | Self::MutationForbidden | Self::UnknownPeer => 403,
            Self::NotFound => 404,
            Self::AlreadyExists
            | Self::IdempotencyMismatch
            | Self::LeaseConflict
            | Self::IncompatibleContract => 409,
            Self::VersionConflict => 412,
            Self::OutdatedCursor => 410,
            Self::PayloadTooLarge => 413,
            Self::SchemaViolation | Self::RuleViolation | Self::InvalidDefinition => 422,
            Self::RateLimited => 429,
            Self::Unavailable | Self::StorageError => 503,
            Self::Timeout | Self::PeerUnreachable => 504,
            Self::Internal => 500,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Phase {
    /// Parsing and validating the caller's input.
    InputValidation,
    /// Establishing who the caller is.
    Authentication,
    /// Checking what the caller may do.
    Authorization,
    /// Resolving pointers to values.
    Resolution,
    /// Running the operation's logic.
    Execution,
    /// Reading or committing storage.
    Storage,
    /// Shaping the result for the surface (projection to REST, MCP, EAGER).
    Projection,
    /// Moving bytes between platforms or processes.
    Transport,
    /// Loading configuration or domain definitions.
    Configuration,
}

impl Phase {
    /// The serialized, stable name of the phase.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InputValidation => "input_validation",
            Self::Authentication => "authentication",
            Self::Authorization => "authorization",
            Self::Resolution => "resolution",
            Self::Execution => "execution",
            Self::Storage => "storage",
            Self::Projection => "projection",
            Self::Transport => "transport",
            Self::Configuration => "configuration",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The structured error every BVER surface returns (the spec's `PrimitiveError`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, thiserror::Error)]
#[error("{code} ({phase}): {message}")]
pub struct BverError {
    /// Stable machine-readable identifier.
    pub code: ErrorCode,
    /// Human-readable description. Never contains secrets.
    pub message: String,
    /// Where the failure occurred.
    pub phase: Phase,
    /// Whether the caller may safely retry the same request.
    pub retryable: bool,
    /// Structured details for debugging or recovery (for example the violations of a schema).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
    /// Pointers (in canonical `bver://` form) relevant to the failure.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related_refs: Vec<String>,
}

/// The failure contract of the primitive spec is this same type.
pub type PrimitiveError = BverError;

impl BverError {
    /// A new error with the code's default retryability, no details and no related refs.
    pub fn new(code: ErrorCode, phase: Phase, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            phase,
            retryable: code.default_retryable(),
            details: serde_json::Value::Null,
            related_refs: Vec::new(),
        }
    }

    /// Attach structured details.
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }

    /// Attach a related pointer (canonical string form).
    pub fn with_ref(mut self, pointer: impl Into<String>) -> Self {
        self.related_refs.push(pointer.into());
        self
    }

    /// Override whether a retry is safe.
    pub fn retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// Shorthand for a [`ErrorCode::NotFound`] in the resolution phase.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, Phase::Resolution, message)
    }

    /// Shorthand for an [`ErrorCode::Internal`] error in the execution phase.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Internal, Phase::Execution, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_names_match_serde() {
        for code in [
            ErrorCode::InvalidPointer,
            ErrorCode::SchemaViolation,
            ErrorCode::VersionConflict,
            ErrorCode::OutdatedCursor,
            ErrorCode::Internal,
        ] {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, serde_json::Value::String(code.as_str().into()));
        }
    }

    #[test]
    fn error_json_shape_is_stable() {
        let e = BverError::new(ErrorCode::NotFound, Phase::Resolution, "no site 7")
            .with_ref("bver://sites/site/7");
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            r#"{"code":"not_found","message":"no site 7","phase":"resolution","retryable":false,"related_refs":["bver://sites/site/7"]}"#
        );
        assert_eq!(serde_json::from_str::<BverError>(&json).unwrap(), e);
    }
}
