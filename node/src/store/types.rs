//! The store's vocabulary: reference keys, current rows, mutations and their outcomes.

use std::fmt;
use std::sync::Arc;

use bver_contracts::BverError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The identity of one reference: `bver://{namespace}/{repo}/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RefKey {
    /// The namespace the reference lives in.
    pub namespace: String,
    /// The repository (reference type) name, unique within a platform.
    pub repo: String,
    /// The reference's id within its repository.
    pub id: String,
}

impl RefKey {
    /// A key from its three parts.
    pub fn new(
        namespace: impl Into<String>,
        repo: impl Into<String>,
        id: impl Into<String>,
    ) -> Self {
        Self {
            namespace: namespace.into(),
            repo: repo.into(),
            id: id.into(),
        }
    }
}

impl fmt::Display for RefKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bver://{}/{}/{}", self.namespace, self.repo, self.id)
    }
}

/// The current state of a reference (its latest version).
#[derive(Debug, Clone, PartialEq)]
pub struct Current {
    /// Which reference.
    pub key: RefKey,
    /// Its kind, if it has one (`power.substation`).
    pub kind: Option<String>,
    /// The current value; `null` when deleted.
    pub value: Value,
    /// The latest version number (1 for a new reference).
    pub version: u64,
    /// Whether the latest version is a tombstone.
    pub deleted: bool,
    /// Creation time, unix milliseconds.
    pub created_at: i64,
    /// Time of the latest version, unix milliseconds.
    pub updated_at: i64,
}

/// What kind of change a version records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeType {
    /// The reference was created.
    Created,
    /// Its value changed (patch or replace).
    Updated,
    /// Its kind changed (and possibly its value).
    KindChanged,
    /// It was deleted (a tombstone version).
    Deleted,
    /// An earlier version was restored as a new version.
    Restored,
}

impl ChangeType {
    /// The stable name, also the suffix of the built-in trigger `refs.{repo}.{name}`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::KindChanged => "kind_changed",
            Self::Deleted => "deleted",
            Self::Restored => "restored",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "created" => Self::Created,
            "updated" => Self::Updated,
            "kind_changed" => Self::KindChanged,
            "deleted" => Self::Deleted,
            "restored" => Self::Restored,
            _ => return None,
        })
    }
}

/// The change a mutation asks for.
#[derive(Debug, Clone)]
pub enum Change {
    /// Create a new reference.
    Create {
        /// Its kind, if any.
        kind: Option<String>,
        /// Its value.
        value: Value,
    },
    /// Replace the whole value, keeping the kind.
    Replace {
        /// The new value.
        value: Value,
    },
    /// Apply an RFC 7386 JSON Merge Patch.
    MergePatch(Value),
    /// Apply an RFC 6902 JSON Patch.
    JsonPatch(json_patch::Patch),
    /// Change the kind, optionally replacing the value in the same version.
    ChangeKind {
        /// The new kind (`None` removes the kind).
        kind: Option<String>,
        /// A new value, or `None` to keep the current one.
        value: Option<Value>,
    },
    /// Delete (writes a tombstone version; history stays readable).
    Delete,
    /// Restore an earlier version's kind and value as a new version.
    Restore {
        /// The version to restore.
        version: u64,
    },
}

/// Who made a change, through what, and why it can be traced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The authenticated principal (a token's subject, a platform id, `system`).
    pub principal: String,
    /// The operation that made the change (`refs.site.patch`).
    pub operation: String,
    /// The request id, for correlating logs and traces.
    pub request_id: String,
}

/// Validates a candidate value for a kind; called inside the write path, after the change is
/// applied to the current value and before anything is written.
pub type Validator = Arc<dyn Fn(Option<&str>, &Value) -> Result<(), BverError> + Send + Sync>;

/// What a trigger hook sees of one mutation, planned inside the write transaction.
#[derive(Debug, Clone, Copy)]
pub struct TriggerEvent<'a> {
    /// Which reference.
    pub key: &'a RefKey,
    /// The built-in event (`updated`, ...).
    pub change: ChangeType,
    /// The kind before the change.
    pub old_kind: Option<&'a str>,
    /// The value before the change (`null` for a create).
    pub old: &'a Value,
    /// The kind after the change.
    pub kind: Option<&'a str>,
    /// The value after the change (`null` for a delete).
    pub new: &'a Value,
    /// RFC 6902 diff from `old` to `new`.
    pub diff: &'a Value,
    /// Who made the change.
    pub principal: &'a str,
}

/// Decides which named triggers a mutation fires (full names, `refs.site.voltage_raised`).
/// Called by the writer for each mutation it commits, inside the same transaction; each
/// name becomes an outbox event of its own, with its own sequence number.
pub type TriggerHook = Arc<dyn Fn(&TriggerEvent<'_>) -> Vec<String> + Send + Sync>;

/// An idempotency key and the fingerprint of the request it was first used with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    /// The caller's key (scoped to the principal).
    pub key: String,
    /// A digest of the operation and payload; reuse with another fingerprint is an error.
    pub fingerprint: String,
}

/// One mutation request to the store.
#[derive(Clone)]
pub struct Mutation {
    /// The reference to change.
    pub key: RefKey,
    /// What to do.
    pub change: Change,
    /// If set, the write fails with `version_conflict` unless this is the current version
    /// (0 means "must not exist yet").
    pub expected_version: Option<u64>,
    /// Who and through what.
    pub provenance: Provenance,
    /// Optional idempotency key.
    pub idempotency: Option<Idempotency>,
    /// Optional validation of the resulting value.
    pub validator: Option<Validator>,
    /// Optional named triggers to evaluate when the mutation commits.
    pub triggers: Option<TriggerHook>,
}

impl fmt::Debug for Mutation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mutation")
            .field("key", &self.key)
            .field("change", &self.change)
            .field("expected_version", &self.expected_version)
            .field("provenance", &self.provenance)
            .field("idempotency", &self.idempotency)
            .finish_non_exhaustive()
    }
}

impl Mutation {
    /// A mutation with no expected version, no idempotency key and no validator.
    pub fn new(key: RefKey, change: Change, provenance: Provenance) -> Self {
        Self {
            key,
            change,
            expected_version: None,
            provenance,
            idempotency: None,
            validator: None,
            triggers: None,
        }
    }
}

/// The outcome of a committed mutation: the new version and its outbox event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Committed {
    /// Which reference.
    pub key: RefKey,
    /// The new version number.
    pub version: u64,
    /// The kind after the change.
    pub kind: Option<String>,
    /// The value after the change (`null` for a delete).
    pub value: Value,
    /// Whether the reference is now deleted.
    pub deleted: bool,
    /// What kind of change this was.
    pub change: ChangeType,
    /// RFC 6902 diff from the previous version's value.
    pub diff: Value,
    /// The outbox sequence number of the mutation's event.
    pub seq: u64,
    /// Commit time, unix milliseconds.
    pub at: i64,
    /// True when this is the stored answer to a repeated idempotency key.
    #[serde(skip)]
    pub replayed: bool,
}

/// One stored version of a reference.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionRow {
    /// Which reference.
    pub key: RefKey,
    /// The version number.
    pub version: u64,
    /// The kind at this version.
    pub kind: Option<String>,
    /// The full snapshot (`null` for a tombstone).
    pub value: Value,
    /// Whether this version is a tombstone.
    pub deleted: bool,
    /// What kind of change made it.
    pub change: ChangeType,
    /// RFC 6902 diff from the previous version.
    pub diff: Value,
    /// Who made it and through what.
    pub provenance: Provenance,
    /// The idempotency key it was made with, if any.
    pub idempotency_key: Option<String>,
    /// Commit time, unix milliseconds.
    pub at: i64,
}

/// One event of the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEvent {
    /// The platform's outbox epoch.
    pub epoch: String,
    /// Position in the outbox (dense, starting at 1 in each epoch).
    pub seq: u64,
    /// The trigger name (`refs.site.updated`).
    pub trigger: String,
    /// Which reference.
    pub key: RefKey,
    /// The version the event announces.
    pub version: u64,
    /// The kind after the change.
    pub kind: Option<String>,
    /// What kind of change.
    pub change: ChangeType,
    /// RFC 6902 diff from the previous version.
    pub diff: Value,
    /// Who made the change and through what.
    pub provenance: Provenance,
    /// Commit time, unix milliseconds.
    pub at: i64,
}

/// An outbox event as an EAGER channel carries it ([`super::Store::channel_events`]): what an
/// envelope needs and no more (no provenance), the diff already in its wire form, and the
/// value of the version it announces.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelEvent {
    /// The platform's outbox epoch.
    pub epoch: String,
    /// Position in the outbox.
    pub seq: u64,
    /// The trigger name.
    pub trigger: String,
    /// Which reference.
    pub key: RefKey,
    /// The version the event announces.
    pub version: u64,
    /// The kind after the change.
    pub kind: Option<String>,
    /// What kind of change.
    pub change: ChangeType,
    /// RFC 6902 diff from the previous version.
    pub diff: bver_contracts::version::Diff,
    /// Commit time, unix milliseconds.
    pub at: i64,
    /// The announced version's value: JSON `null` if it is a deletion, `None` if that version
    /// is not stored here.
    pub value: Option<Value>,
}

/// A page of results with an opaque cursor for the next page.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Pass back to get the next page; `None` when this is the last page.
    pub next: Option<String>,
}
