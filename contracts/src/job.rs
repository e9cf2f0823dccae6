//! Job handles: the caller's receipt for long-running work.
//!
//! A task operation (and an asynchronous primitive invocation) answers with a [`JobHandle`]
//! at once; the work runs as a job with persisted [`JobStatus`], attempts, retries with
//! backoff and cancellation. The same handle type is returned by the job status operation,
//! so a caller polls with the `id` it was given. Times are unix milliseconds, taken by the
//! node (this crate reads no clock).

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::BverError;
use crate::pointer::RefPtr;

/// Where a job is in its life.
///
/// ```text
/// queued → running → succeeded
///            │  ↘ retrying → running ...   (a failed attempt with attempts left)
///            ↘ failed                       (no attempt left, or not retryable)
/// queued | running | retrying → cancelled
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum JobStatus {
    /// Accepted and waiting for a worker.
    Queued,
    /// A worker holds it and is running an attempt.
    Running,
    /// An attempt failed and the job waits for its backoff before the next one.
    Retrying,
    /// Finished; the handle carries the output.
    Succeeded,
    /// Finished without success; the handle carries the error.
    Failed,
    /// Cancelled by a caller or by the runtime (for example on lease loss).
    Cancelled,
}

impl JobStatus {
    /// Every status, in life order.
    pub const ALL: [JobStatus; 6] = [
        Self::Queued,
        Self::Running,
        Self::Retrying,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
    ];

    /// The serialized, stable name (`succeeded`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Whether the job is finished (succeeded, failed or cancelled) and will not change.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How far a running job has come, as the handler reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Progress {
    /// Units done.
    pub done: u64,
    /// Units in all, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// What is being done now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A job's receipt and status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct JobHandle {
    /// The job's id, unique within the platform (opaque to callers).
    pub id: String,
    /// The job's name: the job definition or task operation it runs (`jobs.reindex`).
    pub job: String,
    /// Where the job is.
    pub status: JobStatus,
    /// Attempts started so far (0 while first queued).
    #[serde(default)]
    pub attempts: u32,
    /// Attempts allowed in all, when bounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// When the job was accepted, unix milliseconds.
    pub created_at: i64,
    /// When its status last changed, unix milliseconds.
    pub updated_at: i64,
    /// When a queued or retrying job may next run, unix milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_after: Option<i64>,
    /// The request that started it, for tracing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The idempotency key it was started with: starting again with the same key returns
    /// this handle instead of a new job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// The references the job works on (and may hold write leases on).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_refs: Vec<RefPtr>,
    /// Progress reported by the handler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// The job's output once `succeeded` (valid against the operation's output schema);
    /// `null` before.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub output: Value,
    /// Why the last attempt failed, or why the job was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<BverError>,
}

impl JobHandle {
    /// A freshly queued job: no attempt yet, created and updated at `now` (unix ms).
    pub fn queued(id: impl Into<String>, job: impl Into<String>, now: i64) -> Self {
        Self {
            id: id.into(),
            job: job.into(),
            status: JobStatus::Queued,
            attempts: 0,
            max_attempts: None,
            created_at: now,
            updated_at: now,
            run_after: None,
            request_id: None,
            idempotency_key: None,
            subject_refs: Vec::new(),
            progress: None,
            output: Value::Null,
            error: None,
        }
    }

    /// Whether the job is finished.
    pub fn is_terminal(&self) -> bool {
        self.status.is_terminal()
    }
}
