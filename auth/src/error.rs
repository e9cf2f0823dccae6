//! The errors of this crate and their one mapping into the shared [`BverError`]:
//! [`AuthError`] (why a token or signature was refused) and [`KeyError`] (key files, secrets,
//! signing and issuing).
//!
//! Messages never contain a token, a secret or private key material. Values copied from a
//! refused token (its `alg`, `kid`, `iss`) are clipped to [`MAX_ECHO`] characters.

use std::path::PathBuf;

use bver_contracts::{BverError, ErrorCode, Phase};

use crate::revocation::RevocationReason;

/// The most characters of a value taken from a refused token that an error repeats.
pub const MAX_ECHO: usize = 64;

/// Clip a value taken from an untrusted token for use in an error message.
pub(crate) fn clip(value: &str) -> String {
    match value.char_indices().nth(MAX_ECHO) {
        Some((at, _)) => format!("{}...", &value[..at]),
        None => value.to_owned(),
    }
}

/// Why a bearer token (or a signature checked against a [`KeySet`](crate::KeySet)) was refused.
///
/// Each variant has a stable reason [`code`](AuthError::code), carried in the shared error's
/// details as `reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No token was presented.
    #[error("no bearer token was presented")]
    MissingToken,
    /// The token is not three base64url parts with JSON header and claims of the right shape.
    #[error("malformed token: {reason}")]
    Malformed {
        /// What is wrong (a fixed text, never a piece of the token).
        reason: &'static str,
    },
    /// The token is longer than the verifier accepts (checked before any decoding).
    #[error("token is {len} bytes, more than the {max} accepted")]
    TokenTooLarge {
        /// The token's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The encoded header is longer than the verifier accepts (checked before decoding it).
    #[error("token header is {len} bytes, more than the {max} accepted")]
    HeaderTooLarge {
        /// The encoded header's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The header says `alg: none` (an unsigned token).
    #[error("unsigned tokens (`alg: none`) are refused")]
    AlgNone,
    /// The header names an algorithm this verifier does not accept.
    #[error("algorithm {alg:?} is not accepted")]
    AlgorithmNotAllowed {
        /// The algorithm named by the token (clipped).
        alg: String,
    },
    /// The header's `kid` names a key of another algorithm than its `alg` (for example an
    /// HS256 token naming an Ed25519 key: the algorithm-confusion attack).
    #[error("key {kid:?} cannot verify {alg} tokens")]
    KeyAlgorithmMismatch {
        /// The algorithm named by the token.
        alg: String,
        /// The key id named by the token (clipped).
        kid: String,
    },
    /// The `kid` is missing or names no key of this platform.
    #[error("unknown key id {}", kid.as_deref().map_or("(none)".to_owned(), |k| format!("{k:?}")))]
    UnknownKid {
        /// The key id named by the token (clipped), if any.
        kid: Option<String>,
    },
    /// The `kid` names a retired key whose verification window has closed.
    #[error("key {kid:?} was retired; it verified tokens until {valid_until}")]
    KeyRetired {
        /// The key id.
        kid: String,
        /// The end of the key's verification window (unix seconds).
        valid_until: u64,
    },
    /// The signature does not verify with the named key.
    #[error("the signature does not verify")]
    BadSignature,
    /// A required claim is absent.
    #[error("the token has no `{claim}` claim")]
    MissingClaim {
        /// The claim's name.
        claim: &'static str,
    },
    /// A claim is present but unusable (an empty subject, a scope outside the grammar).
    #[error("the `{claim}` claim is invalid: {reason}")]
    InvalidClaim {
        /// The claim's name.
        claim: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The `iss` claim is not this platform.
    #[error("issuer {found:?} is not the expected {expected:?}")]
    WrongIssuer {
        /// The issuer this verifier accepts.
        expected: String,
        /// The token's issuer (clipped).
        found: String,
    },
    /// The `aud` claim does not name this platform.
    #[error("the token's audience does not include {expected:?}")]
    WrongAudience {
        /// The audience this verifier accepts.
        expected: String,
    },
    /// `exp` has passed (leeway included).
    #[error("the token expired at {exp} (now {now}, leeway {leeway}s)")]
    Expired {
        /// The token's `exp`.
        exp: u64,
        /// The verification time.
        now: u64,
        /// The configured clock-skew leeway in seconds.
        leeway: u64,
    },
    /// `nbf` or `iat` is in the future (leeway included).
    #[error("the token is not valid before {at} (`{claim}`; now {now}, leeway {leeway}s)")]
    NotYetValid {
        /// `nbf` or `iat`.
        claim: &'static str,
        /// The claim's value.
        at: u64,
        /// The verification time.
        now: u64,
        /// The configured clock-skew leeway in seconds.
        leeway: u64,
    },
    /// The token was revoked.
    #[error("the token was revoked ({by})")]
    Revoked {
        /// Which revocation matched.
        by: RevocationReason,
    },
}

impl AuthError {
    /// The stable machine-readable reason (`expired`, `alg_none`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::Malformed { .. } => "malformed_token",
            Self::TokenTooLarge { .. } => "token_too_large",
            Self::HeaderTooLarge { .. } => "header_too_large",
            Self::AlgNone => "alg_none",
            Self::AlgorithmNotAllowed { .. } => "algorithm_not_allowed",
            Self::KeyAlgorithmMismatch { .. } => "key_algorithm_mismatch",
            Self::UnknownKid { .. } => "unknown_kid",
            Self::KeyRetired { .. } => "key_retired",
            Self::BadSignature => "bad_signature",
            Self::MissingClaim { .. } => "missing_claim",
            Self::InvalidClaim { .. } => "invalid_claim",
            Self::WrongIssuer { .. } => "wrong_issuer",
            Self::WrongAudience { .. } => "wrong_audience",
            Self::Expired { .. } => "expired",
            Self::NotYetValid { .. } => "not_yet_valid",
            Self::Revoked { .. } => "revoked",
        }
    }

    /// The shared error code: [`ErrorCode::BadSignature`] for a signature that does not
    /// verify, [`ErrorCode::PayloadTooLarge`] for an oversized token or header, and
    /// [`ErrorCode::Unauthenticated`] for everything else.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            Self::BadSignature => ErrorCode::BadSignature,
            Self::TokenTooLarge { .. } | Self::HeaderTooLarge { .. } => ErrorCode::PayloadTooLarge,
            _ => ErrorCode::Unauthenticated,
        }
    }
}

impl From<AuthError> for BverError {
    /// Phase [`Phase::Authentication`], never retryable, details `{"reason": code}` plus the
    /// claim name where one is involved.
    fn from(e: AuthError) -> Self {
        let mut details = serde_json::json!({ "reason": e.code() });
        match &e {
            AuthError::MissingClaim { claim }
            | AuthError::InvalidClaim { claim, .. }
            | AuthError::NotYetValid { claim, .. } => details["claim"] = (*claim).into(),
            AuthError::Revoked { by } => details["revoked_by"] = by.as_str().into(),
            _ => {}
        }
        BverError::new(e.error_code(), Phase::Authentication, e.to_string())
            .retryable(false)
            .with_details(details)
    }
}

/// A failure handling keys or secrets, or issuing a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Reading or writing the key file failed.
    #[error("cannot {op} key file {}: {source}", path.display())]
    Io {
        /// What was being done (`read`, `create`, ...).
        op: &'static str,
        /// The key file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The key file can be read or written by group or others.
    #[error(
        "refusing to load key file {}: its mode is {mode:04o}, but a private key must not be \
         accessible to group or others (run `chmod 600 {}`)",
        path.display(),
        path.display()
    )]
    InsecurePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Saving would overwrite an existing key file.
    #[error("key file {} already exists; refusing to overwrite a platform key", path.display())]
    AlreadyExists {
        /// The key file.
        path: PathBuf,
    },
    /// The bytes are not an Ed25519 key in the expected encoding.
    #[error("invalid key: {reason}")]
    InvalidKey {
        /// What is wrong (a fixed text, never key material).
        reason: &'static str,
    },
    /// An HMAC secret is too short to be safe.
    #[error("the HS256 secret is {len} bytes; at least {min} are required")]
    WeakSecret {
        /// The secret's length in bytes.
        len: usize,
        /// The minimum.
        min: usize,
    },
    /// The system random number generator failed.
    #[error("the system random number generator failed")]
    Rng,
    /// A token could not be issued as requested (empty subject, zero ttl, ...).
    #[error("cannot issue token: {reason}")]
    InvalidRequest {
        /// What is wrong.
        reason: &'static str,
    },
    /// Signing failed inside the JWT library.
    #[error("signing failed: {reason}")]
    Signing {
        /// A fixed description of the failure.
        reason: &'static str,
    },
}

impl KeyError {
    /// The stable machine-readable reason (`insecure_permissions`, ...).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Io { .. } => "key_io",
            Self::InsecurePermissions { .. } => "insecure_permissions",
            Self::AlreadyExists { .. } => "key_exists",
            Self::InvalidKey { .. } => "invalid_key",
            Self::WeakSecret { .. } => "weak_secret",
            Self::Rng => "rng_failure",
            Self::InvalidRequest { .. } => "invalid_token_request",
            Self::Signing { .. } => "signing_failed",
        }
    }
}

impl From<KeyError> for BverError {
    /// Key files and secrets are configuration ([`Phase::Configuration`],
    /// [`ErrorCode::Internal`]); a bad issue request is [`ErrorCode::MalformedRequest`] in
    /// [`Phase::InputValidation`]. Never retryable.
    fn from(e: KeyError) -> Self {
        let (code, phase) = match &e {
            KeyError::InvalidRequest { .. } => {
                (ErrorCode::MalformedRequest, Phase::InputValidation)
            }
            KeyError::Signing { .. } | KeyError::Rng => (ErrorCode::Internal, Phase::Execution),
            _ => (ErrorCode::Internal, Phase::Configuration),
        };
        BverError::new(code, phase, e.to_string())
            .retryable(false)
            .with_details(serde_json::json!({ "reason": e.code() }))
    }
}
