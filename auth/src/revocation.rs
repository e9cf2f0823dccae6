//! Token revocation: by token id (`jti`) and by "issued before T" per subject, in memory,
//! thread-safe and updated at runtime.
//!
//! The node owns persistence: it restores the list at start ([`Revocations::restore`]) and
//! saves [`Revocations::snapshot`] when it changes. This module only answers "is this token
//! revoked?", cheaply: an atomic counter skips the lock entirely while nothing is revoked, and
//! a check is otherwise one read lock and at most two hash lookups.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Which revocation refused a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RevocationReason {
    /// Its `jti` was revoked.
    TokenId,
    /// Its subject's tokens issued before a cut-off were revoked, and its `iat` is earlier.
    IssuedBefore,
}

impl RevocationReason {
    /// The stable name (`jti`, `issued_before`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TokenId => "jti",
            Self::IssuedBefore => "issued_before",
        }
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A revoked token id, kept until `forget_after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedToken {
    /// The token's `jti`.
    pub jti: String,
    /// After this time (unix seconds) the entry may be pruned: pass the token's `exp` plus the
    /// verifier's leeway, or `u64::MAX` when unknown.
    pub forget_after: u64,
}

/// A subject whose tokens issued before `issued_before` are revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectCutoff {
    /// The token subject (`sub`).
    pub subject: String,
    /// Tokens of this subject with `iat < issued_before` (unix seconds) are refused.
    pub issued_before: u64,
}

/// The whole revocation state, for persistence by the node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RevocationList {
    /// Revoked token ids.
    pub tokens: Vec<RevokedToken>,
    /// Per-subject cut-offs.
    pub subjects: Vec<SubjectCutoff>,
}

#[derive(Debug, Default)]
struct State {
    /// jti -> forget_after.
    tokens: HashMap<String, u64>,
    /// subject -> issued_before.
    subjects: HashMap<String, u64>,
}

/// The revocation list a [`Verifier`](crate::Verifier) consults on every token, cached or not.
///
/// Share it as `Arc<Revocations>` between the verifier and whatever updates it; updates take
/// effect for the next check, without a restart.
#[derive(Debug, Default)]
pub struct Revocations {
    state: RwLock<State>,
    /// Number of entries; zero lets [`Revocations::check`] skip the lock.
    entries: AtomicUsize,
}

impl Revocations {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Revoke one token by its `jti`. See [`RevokedToken::forget_after`].
    pub fn revoke_token(&self, jti: impl Into<String>, forget_after: u64) {
        let mut state = self.write();
        let slot = state.tokens.entry(jti.into()).or_insert(forget_after);
        *slot = (*slot).max(forget_after);
        self.publish(&state);
    }

    /// Revoke every token of `subject` issued strictly before `issued_before` (its `iat` is
    /// less). To cut off everything issued up to and including second `now`, pass `now + 1`.
    /// A later call with an earlier time does not move the cut-off back; use
    /// [`Revocations::lift_subject`] for that.
    pub fn revoke_issued_before(&self, subject: impl Into<String>, issued_before: u64) {
        let mut state = self.write();
        let slot = state
            .subjects
            .entry(subject.into())
            .or_insert(issued_before);
        *slot = (*slot).max(issued_before);
        self.publish(&state);
    }

    /// Remove the per-subject cut-off of `subject` (tokens revoked by `jti` stay revoked).
    pub fn lift_subject(&self, subject: &str) -> bool {
        let mut state = self.write();
        let removed = state.subjects.remove(subject).is_some();
        self.publish(&state);
        removed
    }

    /// Whether a token with this subject, id and issue time is revoked, and by what.
    pub fn check(&self, subject: &str, jti: &str, issued_at: u64) -> Option<RevocationReason> {
        if self.entries.load(Ordering::Acquire) == 0 {
            return None;
        }
        let state = self.read();
        if state.tokens.contains_key(jti) {
            return Some(RevocationReason::TokenId);
        }
        match state.subjects.get(subject) {
            Some(&before) if issued_at < before => Some(RevocationReason::IssuedBefore),
            _ => None,
        }
    }

    /// Drop token-id entries whose `forget_after` is before `now`; returns how many.
    /// Per-subject cut-offs are kept until lifted.
    pub fn prune(&self, now: u64) -> usize {
        let mut state = self.write();
        let before = state.tokens.len();
        state.tokens.retain(|_, forget_after| *forget_after >= now);
        let pruned = before - state.tokens.len();
        self.publish(&state);
        pruned
    }

    /// The number of entries (token ids plus subjects).
    pub fn len(&self) -> usize {
        self.entries.load(Ordering::Acquire)
    }

    /// Whether nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of the whole state, sorted, for persistence.
    pub fn snapshot(&self) -> RevocationList {
        let state = self.read();
        let mut tokens: Vec<RevokedToken> = state
            .tokens
            .iter()
            .map(|(jti, &forget_after)| RevokedToken {
                jti: jti.clone(),
                forget_after,
            })
            .collect();
        tokens.sort_by(|a, b| a.jti.cmp(&b.jti));
        let mut subjects: Vec<SubjectCutoff> = state
            .subjects
            .iter()
            .map(|(subject, &issued_before)| SubjectCutoff {
                subject: subject.clone(),
                issued_before,
            })
            .collect();
        subjects.sort_by(|a, b| a.subject.cmp(&b.subject));
        RevocationList { tokens, subjects }
    }

    /// Merge a saved list into this one (later or larger times win).
    pub fn restore(&self, list: RevocationList) {
        let mut state = self.write();
        for t in list.tokens {
            let slot = state.tokens.entry(t.jti).or_insert(t.forget_after);
            *slot = (*slot).max(t.forget_after);
        }
        for s in list.subjects {
            let slot = state.subjects.entry(s.subject).or_insert(s.issued_before);
            *slot = (*slot).max(s.issued_before);
        }
        self.publish(&state);
    }

    fn publish(&self, state: &State) {
        self.entries
            .store(state.tokens.len() + state.subjects.len(), Ordering::Release);
    }

    // A panic while holding the lock cannot leave the maps half-updated (each update is one
    // map operation), so a poisoned lock is still consistent.
    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}
