//! Issuing JWTs: the [`Claims`] this platform writes, the optional [`HmacSecret`] for HS256,
//! and the [`Issuer`] that signs (EdDSA with the platform key by default).
//!
//! Tokens are signed with `jsonwebtoken` (RustCrypto backend) and always carry `kid` in the
//! header. Verification lives in [`crate::verify`].

use std::fmt;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::error::KeyError;
use crate::keys::PlatformKey;
use crate::scope::ScopeSet;

/// The shortest HS256 secret accepted, in bytes (the hash output size, RFC 7518 §3.2).
pub const MIN_HMAC_SECRET: usize = 32;

/// The claims of a BVER token, in the order they are serialized.
///
/// `scope` is the RFC 8693 / RFC 9068 form: one string of space-separated scopes (see
/// [`ScopeSet`]); it is omitted when empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer: the platform id.
    pub iss: String,
    /// Subject: who the token speaks for (a user, a service, a peer platform id).
    pub sub: String,
    /// Audience: who must accept the token (mandatory, checked).
    pub aud: String,
    /// Expiry (unix seconds).
    pub exp: u64,
    /// Not before (unix seconds).
    pub nbf: u64,
    /// Issued at (unix seconds); per-subject revocation compares it.
    pub iat: u64,
    /// Token id; revocation by id names it.
    pub jti: String,
    /// Space-separated scopes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
}

/// A shared secret for HS256, with the key id its tokens carry. Only for deployments that
/// explicitly configure one; EdDSA with the platform key is the default.
///
/// `Debug` never shows the secret.
#[derive(Clone)]
pub struct HmacSecret {
    kid: String,
    secret: Vec<u8>,
}

impl fmt::Debug for HmacSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HmacSecret")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl HmacSecret {
    /// A secret of at least [`MIN_HMAC_SECRET`] bytes, named `kid` in token headers.
    pub fn new(kid: impl Into<String>, secret: impl Into<Vec<u8>>) -> Result<Self, KeyError> {
        let secret = secret.into();
        if secret.len() < MIN_HMAC_SECRET {
            return Err(KeyError::WeakSecret {
                len: secret.len(),
                min: MIN_HMAC_SECRET,
            });
        }
        let kid = kid.into();
        if kid.is_empty() {
            return Err(KeyError::InvalidKey {
                reason: "the HS256 key id is empty",
            });
        }
        Ok(Self { kid, secret })
    }

    /// The key id HS256 tokens carry.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub(crate) fn secret(&self) -> &[u8] {
        &self.secret
    }
}

/// A freshly issued token and its claims.
///
/// `Debug` shows the claims but not the token, so logging it leaks no credential.
#[derive(Clone)]
pub struct IssuedToken {
    /// The compact JWT (secret: it is a bearer credential).
    pub token: String,
    /// What it says.
    pub claims: Claims,
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("token", &"[redacted]")
            .field("claims", &self.claims)
            .finish()
    }
}

/// Signs tokens for one issuer and audience.
pub struct Issuer {
    issuer: String,
    audience: String,
    algorithm: Algorithm,
    kid: String,
    key: EncodingKey,
    rng: SystemRandom,
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("algorithm", &self.algorithm)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// EdDSA tokens signed by `key` (the default; `kid` is the key's [`KeyId`](crate::KeyId)).
    pub fn ed25519(
        issuer: impl Into<String>,
        audience: impl Into<String>,
        key: &PlatformKey,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            algorithm: Algorithm::EdDSA,
            kid: key.key_id().to_string(),
            key: EncodingKey::from_ed_der(key.pkcs8_der()),
            rng: SystemRandom::new(),
        }
    }

    /// HS256 tokens signed with a configured shared secret.
    pub fn hs256(
        issuer: impl Into<String>,
        audience: impl Into<String>,
        secret: &HmacSecret,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            algorithm: Algorithm::HS256,
            kid: secret.kid.clone(),
            key: EncodingKey::from_secret(secret.secret()),
            rng: SystemRandom::new(),
        }
    }

    /// The `iss` this issuer writes.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The `aud` this issuer writes.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The header `alg` (`EdDSA` or `HS256`).
    pub fn algorithm(&self) -> &'static str {
        match self.algorithm {
            Algorithm::HS256 => "HS256",
            _ => "EdDSA",
        }
    }

    /// The header `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Issue a token for `subject` with `scopes`, valid from `now` (unix seconds) for `ttl`
    /// (whole seconds, at least one), with a random 128-bit `jti`.
    pub fn issue(
        &self,
        subject: &str,
        scopes: &ScopeSet,
        ttl: Duration,
        now: u64,
    ) -> Result<IssuedToken, KeyError> {
        if subject.is_empty() {
            return Err(KeyError::InvalidRequest {
                reason: "the subject is empty",
            });
        }
        if ttl.as_secs() == 0 {
            return Err(KeyError::InvalidRequest {
                reason: "the ttl is shorter than a second",
            });
        }
        let mut id = [0u8; 16];
        self.rng.fill(&mut id).map_err(|_| KeyError::Rng)?;
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: subject.to_owned(),
            aud: self.audience.clone(),
            exp: now.saturating_add(ttl.as_secs()),
            nbf: now,
            iat: now,
            jti: URL_SAFE_NO_PAD.encode(id),
            scope: scopes.to_string(),
        };
        let token = self.sign_claims(&claims)?;
        Ok(IssuedToken { token, claims })
    }

    /// Sign exactly `claims` (for fixed test vectors, or claims built by the caller). The
    /// header is `{"typ":"JWT","alg":...,"kid":...}`.
    pub fn sign_claims(&self, claims: &Claims) -> Result<String, KeyError> {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key).map_err(|_| KeyError::Signing {
            reason: "the JWT library could not sign the claims",
        })
    }
}
