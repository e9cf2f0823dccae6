//! Verifying bearer tokens: [`VerifierConfig`] and [`Verifier`], with the verified-claims
//! cache and the revocation check.
//!
//! Order of checks for a token (the first failure is the one reported):
//!
//! 1. length of the whole token, then of the encoded header, before any decoding;
//! 2. cache: a token seen before skips steps 3-5 but not 6-7;
//! 3. header: three parts, JSON header, `alg` not `none`, `alg` accepted, `crit` absent;
//! 4. key: `kid` names a key of that algorithm that may verify now;
//! 5. signature (jsonwebtoken), then claims: `iss`, `aud`, required claims, scope grammar;
//! 6. time: `exp`, `nbf`, `iat` against `now` with the leeway, and the key's window;
//! 7. revocation by `jti` and by issued-before for the subject.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::error::{AuthError, clip};
use crate::keys::KeySet;
use crate::principal::Principal;
use crate::revocation::Revocations;
use crate::scope::ScopeSet;
use crate::token::HmacSecret;

/// Default for [`VerifierConfig::max_token_len`]: 8 KiB.
pub const DEFAULT_MAX_TOKEN_LEN: usize = 8 * 1024;
/// Default for [`VerifierConfig::max_header_len`]: 1 KiB of encoded header.
pub const DEFAULT_MAX_HEADER_LEN: usize = 1024;
/// Default for [`VerifierConfig::leeway_secs`].
pub const DEFAULT_LEEWAY_SECS: u64 = 30;
/// Default for [`VerifierConfig::cache_capacity`].
pub const DEFAULT_CACHE_CAPACITY: u64 = 10_000;

/// What a [`Verifier`] accepts.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct VerifierConfig {
    /// The only accepted `iss`.
    pub issuer: String,
    /// The audience that `aud` must contain (it is mandatory).
    pub audience: String,
    /// Clock-skew tolerance for `exp`, `nbf` and `iat`, in seconds.
    pub leeway_secs: u64,
    /// The longest token accepted, in bytes, checked before any decoding.
    pub max_token_len: usize,
    /// The longest encoded header accepted, in bytes, checked before decoding it.
    pub max_header_len: usize,
    /// How many verified tokens to cache; 0 disables the cache.
    pub cache_capacity: u64,
    /// When set, HS256 tokens naming this secret's `kid` are accepted too. Without it, HS256
    /// is refused outright.
    pub hs256: Option<HmacSecret>,
}

impl VerifierConfig {
    /// Accept EdDSA tokens from `issuer` for `audience`, with the defaults: leeway
    /// [`DEFAULT_LEEWAY_SECS`], limits [`DEFAULT_MAX_TOKEN_LEN`] and [`DEFAULT_MAX_HEADER_LEN`],
    /// cache [`DEFAULT_CACHE_CAPACITY`], no HS256.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            leeway_secs: DEFAULT_LEEWAY_SECS,
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
            max_header_len: DEFAULT_MAX_HEADER_LEN,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            hs256: None,
        }
    }

    /// Set the clock-skew leeway.
    pub fn leeway_secs(mut self, secs: u64) -> Self {
        self.leeway_secs = secs;
        self
    }

    /// Set the cache capacity (0 disables the cache).
    pub fn cache_capacity(mut self, entries: u64) -> Self {
        self.cache_capacity = entries;
        self
    }

    /// Also accept HS256 tokens signed with `secret`.
    pub fn with_hs256(mut self, secret: HmacSecret) -> Self {
        self.hs256 = Some(secret);
        self
    }
}

/// Counters of a [`Verifier`], for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerifierStats {
    /// Signatures checked (cache misses that reached the signature step).
    pub signature_checks: u64,
    /// Tokens answered from the cache (before time and revocation checks).
    pub cache_hits: u64,
}

/// The EdDSA keys a verifier accepts: kid -> key and window end (`None` for the current key).
struct EdKey {
    decoding: DecodingKey,
    valid_until: Option<u64>,
}

/// A verified token, as cached.
struct Verified {
    principal: Principal,
    nbf: Option<u64>,
    key_valid_until: Option<u64>,
    kid: String,
    /// How long moka keeps the entry (housekeeping only: every hit re-checks `exp`).
    keep_for: Duration,
}

struct KeepUntilExpiry;

impl moka::Expiry<[u8; 32], Arc<Verified>> for KeepUntilExpiry {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Arc<Verified>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.keep_for)
    }
}

/// The header fields this verifier reads; anything else is ignored.
#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
    crit: Option<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
struct RawClaims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<OneOrMany>,
    exp: Option<u64>,
    nbf: Option<u64>,
    iat: Option<u64>,
    jti: Option<String>,
    scope: Option<String>,
}

/// Verifies bearer tokens for one platform: its keys, its issuer and audience, its revocation
/// list, with a cache of verified tokens.
///
/// Key rotation builds a new `Verifier` from the updated [`KeySet`] (sharing the same
/// [`Revocations`]); revocations apply at once, also to cached tokens.
pub struct Verifier {
    config: VerifierConfig,
    ed_keys: HashMap<String, EdKey>,
    hmac: Option<(String, DecodingKey)>,
    ed_validation: Validation,
    hs_validation: Validation,
    revocations: Arc<Revocations>,
    cache: Option<moka::sync::Cache<[u8; 32], Arc<Verified>>>,
    signature_checks: AtomicU64,
    cache_hits: AtomicU64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut kids: Vec<&String> = self.ed_keys.keys().collect();
        kids.sort();
        f.debug_struct("Verifier")
            .field("config", &self.config)
            .field("ed25519_kids", &kids)
            .finish_non_exhaustive()
    }
}

/// A validation for `alg` that checks only the signature: claims and times are checked by
/// this module against the caller's `now`.
fn signature_only(alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.required_spec_claims = HashSet::new();
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.leeway = 0;
    v
}

impl Verifier {
    /// A verifier accepting the keys of `keys` (current and retired), per `config`, consulting
    /// `revocations`.
    pub fn new(config: VerifierConfig, keys: &KeySet, revocations: Arc<Revocations>) -> Self {
        let mut ed_keys = HashMap::new();
        ed_keys.insert(
            keys.current().key_id().to_string(),
            EdKey {
                decoding: DecodingKey::from_ed_der(keys.current().public_key().as_bytes()),
                valid_until: None,
            },
        );
        for r in keys.retired() {
            ed_keys.insert(
                r.public.key_id().to_string(),
                EdKey {
                    decoding: DecodingKey::from_ed_der(r.public.as_bytes()),
                    valid_until: Some(r.valid_until),
                },
            );
        }
        let hmac = config
            .hs256
            .as_ref()
            .map(|s| (s.kid().to_owned(), DecodingKey::from_secret(s.secret())));
        let cache = (config.cache_capacity > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(config.cache_capacity)
                .expire_after(KeepUntilExpiry)
                .build()
        });
        Self {
            config,
            ed_keys,
            hmac,
            ed_validation: signature_only(Algorithm::EdDSA),
            hs_validation: signature_only(Algorithm::HS256),
            revocations,
            cache,
            signature_checks: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &VerifierConfig {
        &self.config
    }

    /// The revocation list consulted on every verification.
    pub fn revocations(&self) -> &Arc<Revocations> {
        &self.revocations
    }

    /// Counters since creation.
    pub fn stats(&self) -> VerifierStats {
        VerifierStats {
            signature_checks: self.signature_checks.load(Ordering::Relaxed),
            cache_hits: self.cache_hits.load(Ordering::Relaxed),
        }
    }

    /// Verify `token` at the system clock's current time.
    pub fn verify_now(&self, token: &str) -> Result<Principal, AuthError> {
        self.verify(token, crate::unix_now())
    }

    /// Verify `token` at `now` (unix seconds) and return its principal.
    pub fn verify(&self, token: &str, now: u64) -> Result<Principal, AuthError> {
        if token.is_empty() {
            return Err(AuthError::MissingToken);
        }
        if token.len() > self.config.max_token_len {
            return Err(AuthError::TokenTooLarge {
                len: token.len(),
                max: self.config.max_token_len,
            });
        }
        let header_len = token.find('.').unwrap_or(token.len());
        if header_len > self.config.max_header_len {
            return Err(AuthError::HeaderTooLarge {
                len: header_len,
                max: self.config.max_header_len,
            });
        }

        let hash = self.cache.as_ref().map(|_| token_hash(token));
        if let (Some(cache), Some(hash)) = (&self.cache, &hash)
            && let Some(hit) = cache.get(hash)
        {
            self.cache_hits.fetch_add(1, Ordering::Relaxed);
            self.check_live(&hit, now)?;
            return Ok(hit.principal.clone());
        }

        let verified = self.verify_uncached(token, now)?;
        self.check_live(&verified, now)?;
        let principal = verified.principal.clone();
        if let (Some(cache), Some(hash)) = (&self.cache, hash) {
            cache.insert(hash, Arc::new(verified));
        }
        Ok(principal)
    }

    /// Steps 3-5: header, key, signature and claims (no time or revocation checks).
    fn verify_uncached(&self, token: &str, now: u64) -> Result<Verified, AuthError> {
        let mut parts = token.split('.');
        let (Some(header_b64), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthError::Malformed {
                reason: "expected three `.`-separated parts",
            });
        };
        let header_json = URL_SAFE_NO_PAD
            .decode(header_b64)
            .map_err(|_| AuthError::Malformed {
                reason: "the header is not base64url",
            })?;
        let header: RawHeader =
            serde_json::from_slice(&header_json).map_err(|_| AuthError::Malformed {
                reason: "the header is not a JSON object",
            })?;
        let alg = header.alg.ok_or(AuthError::Malformed {
            reason: "the header has no `alg`",
        })?;
        if alg.eq_ignore_ascii_case("none") {
            return Err(AuthError::AlgNone);
        }
        if header.crit.is_some() {
            return Err(AuthError::Malformed {
                reason: "critical header extensions (`crit`)",
            });
        }
        let kid = header.kid;

        let (decoding, validation, key_valid_until) = match alg.as_str() {
            "EdDSA" => {
                let kid_str = kid.as_deref().ok_or(AuthError::UnknownKid { kid: None })?;
                match self.ed_keys.get(kid_str) {
                    Some(key) => (&key.decoding, &self.ed_validation, key.valid_until),
                    None if self.hmac.as_ref().is_some_and(|(k, _)| k == kid_str) => {
                        return Err(AuthError::KeyAlgorithmMismatch {
                            alg,
                            kid: clip(kid_str),
                        });
                    }
                    None => {
                        return Err(AuthError::UnknownKid {
                            kid: Some(clip(kid_str)),
                        });
                    }
                }
            }
            "HS256" if self.hmac.is_some() => {
                let kid_str = kid.as_deref().ok_or(AuthError::UnknownKid { kid: None })?;
                match &self.hmac {
                    Some((hmac_kid, key)) if hmac_kid == kid_str => {
                        (key, &self.hs_validation, None)
                    }
                    _ if self.ed_keys.contains_key(kid_str) => {
                        return Err(AuthError::KeyAlgorithmMismatch {
                            alg,
                            kid: clip(kid_str),
                        });
                    }
                    _ => {
                        return Err(AuthError::UnknownKid {
                            kid: Some(clip(kid_str)),
                        });
                    }
                }
            }
            _ => return Err(AuthError::AlgorithmNotAllowed { alg: clip(&alg) }),
        };
        // The window of a retired key is checked before spending a signature check on it.
        if let Some(until) = key_valid_until
            && now >= until
        {
            return Err(AuthError::KeyRetired {
                kid: kid.map(|k| clip(&k)).unwrap_or_default(),
                valid_until: until,
            });
        }

        self.signature_checks.fetch_add(1, Ordering::Relaxed);
        let claims = jsonwebtoken::decode::<RawClaims>(token, decoding, validation)
            .map_err(|e| match e.kind() {
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidKeyFormat => {
                    AuthError::AlgorithmNotAllowed { alg: clip(&alg) }
                }
                ErrorKind::Base64(_) => AuthError::Malformed {
                    reason: "a part is not base64url",
                },
                ErrorKind::Json(_) | ErrorKind::Utf8(_) => AuthError::Malformed {
                    reason: "the header or claims do not have the expected JSON shape",
                },
                _ => AuthError::Malformed {
                    reason: "the token could not be decoded",
                },
            })?
            .claims;
        self.check_claims(claims, kid.unwrap_or_default(), key_valid_until, now)
    }

    /// `iss`, `aud`, the required claims and the scope grammar.
    fn check_claims(
        &self,
        c: RawClaims,
        kid: String,
        key_valid_until: Option<u64>,
        now: u64,
    ) -> Result<Verified, AuthError> {
        let iss = c.iss.ok_or(AuthError::MissingClaim { claim: "iss" })?;
        if iss != self.config.issuer {
            return Err(AuthError::WrongIssuer {
                expected: self.config.issuer.clone(),
                found: clip(&iss),
            });
        }
        let aud_ok = match c.aud.ok_or(AuthError::MissingClaim { claim: "aud" })? {
            OneOrMany::One(a) => a == self.config.audience,
            OneOrMany::Many(all) => all.contains(&self.config.audience),
        };
        if !aud_ok {
            return Err(AuthError::WrongAudience {
                expected: self.config.audience.clone(),
            });
        }
        let sub = c.sub.ok_or(AuthError::MissingClaim { claim: "sub" })?;
        if sub.is_empty() {
            return Err(AuthError::InvalidClaim {
                claim: "sub",
                reason: "it is empty".into(),
            });
        }
        let exp = c.exp.ok_or(AuthError::MissingClaim { claim: "exp" })?;
        let iat = c.iat.ok_or(AuthError::MissingClaim { claim: "iat" })?;
        let jti = c.jti.ok_or(AuthError::MissingClaim { claim: "jti" })?;
        if jti.is_empty() {
            return Err(AuthError::InvalidClaim {
                claim: "jti",
                reason: "it is empty".into(),
            });
        }
        let scopes = ScopeSet::parse(c.scope.as_deref().unwrap_or_default()).map_err(|e| {
            AuthError::InvalidClaim {
                claim: "scope",
                reason: e.to_string(),
            }
        })?;
        let keep_for = Duration::from_secs(
            exp.saturating_add(self.config.leeway_secs)
                .saturating_sub(now),
        );
        Ok(Verified {
            principal: Principal {
                subject: sub,
                scopes,
                token_id: jti,
                issued_at: iat,
                expires_at: exp,
                issuer: iss,
            },
            nbf: c.nbf,
            key_valid_until,
            kid,
            keep_for,
        })
    }

    /// Steps 6-7, on every verification, cached or not: times, key window, revocation.
    fn check_live(&self, v: &Verified, now: u64) -> Result<(), AuthError> {
        let leeway = self.config.leeway_secs;
        let p = &v.principal;
        if now >= p.expires_at.saturating_add(leeway) {
            return Err(AuthError::Expired {
                exp: p.expires_at,
                now,
                leeway,
            });
        }
        if let Some(nbf) = v.nbf
            && nbf > now.saturating_add(leeway)
        {
            return Err(AuthError::NotYetValid {
                claim: "nbf",
                at: nbf,
                now,
                leeway,
            });
        }
        if p.issued_at > now.saturating_add(leeway) {
            return Err(AuthError::NotYetValid {
                claim: "iat",
                at: p.issued_at,
                now,
                leeway,
            });
        }
        if let Some(until) = v.key_valid_until
            && now >= until
        {
            return Err(AuthError::KeyRetired {
                kid: clip(&v.kid),
                valid_until: until,
            });
        }
        match self.revocations.check(&p.subject, &p.token_id, p.issued_at) {
            Some(by) => Err(AuthError::Revoked { by }),
            None => Ok(()),
        }
    }
}

fn token_hash(token: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref());
    out
}
