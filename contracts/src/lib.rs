//! `bver-contracts`: the shared contract package of BVER.
//!
//! This crate owns the types that cross a boundary: between crates, between surfaces (REST,
//! MCP, EAGER, CLI) and between platforms. Every other BVER crate, and every SDK generated
//! from the published JSON Schemas in `contracts/schemas/`, speaks in these types.
//!
//! - [`pointer`](mod@pointer): `bver://{namespace}/{repo}/{id}@{attribute_path}` pointers
//!   and attribute paths, with a strict parser whose errors name the byte offset of the fault.
//! - [`error`]: the one structured error ([`BverError`]) that every surface returns: a
//!   stable [`ErrorCode`], the [`Phase`] that failed, whether a retry is safe, and details.
//! - [`ops`]: [`OperationSpec`], what every surface (REST, MCP, EAGER, CLI) exposes, and the
//!   name grammar shared with primitives.
//! - [`primitive`]: the six primitives' contracts: [`PrimitiveSpec`] (definition),
//!   [`PrimitiveRequest`] (invocation), [`PrimitiveResult`] (result) with [`Diagnostic`]s.
//! - [`job`]: [`JobHandle`] and [`JobStatus`], the receipt for long-running work.
//! - [`version`]: [`VersionRecord`], [`ChangeType`], [`Provenance`] and [`Diff`] (an RFC 6902
//!   JSON Patch of [`PatchOp`]s).
//! - [`event`]: [`EventEnvelope`] and its [`EventId`], and the signed-batch proof
//!   ([`BatchHeader`], [`BatchProof`]); the canonical CBOR bytes that are hashed and signed.
//! - [`manifest`]: [`Manifest`], the `bver.manifest.json` capability contract of a bundle.
//!
//! Every contract type derives serde and [`schemars::JsonSchema`]; the published schemas in
//! `contracts/schemas/` are generated from them and checked by `tests/schemas.rs`. The page
//! `docs/contracts.md` describes each type.
//!
//! **Architecture Invariant:** this crate does no I/O and knows no runtime: no tokio, no
//! sqlx, no sockets, no clock reads, no files. It depends on serde, serde_json, ciborium and
//! derive-only helpers (thiserror, schemars). Anything that needs a clock or a socket takes
//! the value as an argument.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod cbor;
pub mod error;
pub mod event;
pub mod job;
pub mod manifest;
pub mod ops;
pub mod pointer;
pub mod primitive;
pub mod version;

pub use error::{BverError, ErrorCode, Phase, PrimitiveError};
// Re-exports of the pointer types.
pub use pointer::{AttributePath, AttributePointer, PointerError, RefPtr, Segment};
// Re-exports of the other contract types.
pub use event::{BatchHeader, BatchProof, EventEnvelope, EventId, Hash256, SignatureBytes};
pub use job::{JobHandle, JobStatus, Progress};
pub use manifest::Manifest;
pub use ops::{OperationKind, OperationSpec};
pub use primitive::{
    Budget, Confidence, Determinism, Diagnostic, EffectMode, ExecutionMode, Followup, Metrics,
    PrimitiveKind, PrimitiveRequest, PrimitiveResult, PrimitiveSpec, PrimitiveStatus, Severity,
    StateEffect,
};
pub use version::{ChangeType, Diff, PatchOp, Provenance, VersionRecord};
