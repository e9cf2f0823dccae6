//! `bver-auth`: identity and access for BVER.
//!
//! Owns:
//!
//! - the **scope grammar** and its matching rules ([`Scope`], [`ScopeSet`]), documented for
//!   users in `docs/auth.md`;
//! - the authenticated [`Principal`] every operation runs as, and its scope check
//!   ([`Principal::require`], which yields the shared `forbidden` error);
//! - **platform keys**: the Ed25519 [`PlatformKey`] (generated with ring, stored as a 0600
//!   PKCS#8 PEM file), its [`KeyId`] fingerprint, and the [`KeySet`] that keeps retired
//!   public keys verifying until their `valid_until` after a rotation;
//! - **JWTs**: the [`Issuer`] (EdDSA with the platform key by default, HS256 only with a
//!   configured [`HmacSecret`]) and the [`Verifier`], which refuses each bad token with a
//!   distinct [`AuthError`] and caches verified tokens until expiry;
//! - **revocation** by `jti` and by "issued before" per subject ([`Revocations`]), consulted
//!   on every verification, cached or not, and updatable at runtime.
//!
//! A request's flow: the node extracts the bearer token and calls [`Verifier::verify`] with the
//! current time; the [`Principal`] it returns goes to the broker, which calls
//! [`Principal::require`] for each scope the operation declares. Every error maps into the
//! shared [`BverError`](bver_contracts::BverError) through `From`.
//!
//! **Architecture Invariant:** deny by default. A principal holds exactly the scopes it was
//! given; an empty scope set allows nothing, and no scope (not even `admin`) grants anything
//! beyond what the matching rules say.
//!
//! **Architecture Invariant:** no I/O but the key file. This crate never touches the network
//! or the database and depends on no async runtime; time is a parameter (`now`, unix seconds)
//! everywhere it matters, with [`unix_now`] and [`Verifier::verify_now`] as the only readers of
//! the system clock. Persisting revocations and serving the JWKS are the node's job.
//!
//! **Architecture Invariant:** errors and `Debug` output never contain a token, a secret or
//! private key material.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod error;
mod keys;
mod principal;
mod revocation;
mod scope;
mod token;
mod verify;

pub use error::{AuthError, KeyError, MAX_ECHO};
pub use keys::{
    KEY_ID_BYTES, KeyId, KeySet, PUBLIC_KEY_LEN, PlatformKey, PublicKey, RetiredKey, SIGNATURE_LEN,
};
pub use principal::Principal;
pub use revocation::{RevocationList, RevocationReason, Revocations, RevokedToken, SubjectCutoff};
pub use scope::{MAX_SCOPE_LEN, Scope, ScopeError, ScopeSet};
pub use token::{Claims, HmacSecret, IssuedToken, Issuer, MIN_HMAC_SECRET};
pub use verify::{
    DEFAULT_CACHE_CAPACITY, DEFAULT_LEEWAY_SECS, DEFAULT_MAX_HEADER_LEN, DEFAULT_MAX_TOKEN_LEN,
    Verifier, VerifierConfig, VerifierStats,
};

/// The system clock as unix seconds (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
