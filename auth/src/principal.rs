//! The [`Principal`]: who an operation runs as, and the scope check the broker performs
//! ([`Principal::require`]).

use bver_contracts::{BverError, ErrorCode, Phase};

use crate::scope::{Scope, ScopeSet};

/// An authenticated caller: the verified claims of its token.
///
/// A principal holds exactly the scopes its token carried; nothing grants more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The token's subject (`sub`).
    pub subject: String,
    /// The scopes it holds.
    pub scopes: ScopeSet,
    /// The token's id (`jti`).
    pub token_id: String,
    /// When the token was issued (`iat`, unix seconds).
    pub issued_at: u64,
    /// When the token expires (`exp`, unix seconds).
    pub expires_at: u64,
    /// Who issued the token (`iss`).
    pub issuer: String,
}

impl Principal {
    /// Whether the principal holds a scope granting `required`.
    pub fn allows(&self, required: &Scope) -> bool {
        self.scopes.allows(required)
    }

    /// `Ok` when the principal holds a scope granting `required`; otherwise
    /// [`ErrorCode::Forbidden`] in [`Phase::Authorization`], not retryable, with details
    /// `{"missing_scope": ..., "subject": ...}`.
    pub fn require(&self, required: &Scope) -> Result<(), BverError> {
        if self.scopes.allows(required) {
            Ok(())
        } else {
            Err(self.forbidden(required))
        }
    }

    /// `Ok` when every scope of `required` is granted; otherwise the error of
    /// [`Principal::require`] for the first one missing.
    pub fn require_all<'a>(
        &self,
        required: impl IntoIterator<Item = &'a Scope>,
    ) -> Result<(), BverError> {
        match self.scopes.first_missing(required) {
            None => Ok(()),
            Some(missing) => Err(self.forbidden(missing)),
        }
    }

    fn forbidden(&self, missing: &Scope) -> BverError {
        BverError::new(
            ErrorCode::Forbidden,
            Phase::Authorization,
            format!("`{}` lacks the scope `{missing}`", self.subject),
        )
        .retryable(false)
        .with_details(serde_json::json!({
            "missing_scope": missing.as_str(),
            "subject": self.subject,
        }))
    }
}
