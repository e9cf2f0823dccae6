//! `bver-contracts`: the shared contract package of BVER.
//!
//! This crate owns the types that cross a boundary: between crates, between surfaces (REST,
//! MCP, EAGER, CLI) and between platforms. Every other BVER crate, and every SDK generated
//! from the published JSON Schemas in `contracts/schemas/`, speaks in these types.
//!
//! - [`pointer`]: `bver://{namespace}/{repo}/{id}@{attribute_path}` pointers and attribute
//!   paths, with a strict parser whose errors name the byte offset of the fault.
//! - [`error`]: the one structured error ([`BverError`]) that every surface returns: a
//!   stable [`ErrorCode`], the [`Phase`] that failed, whether a retry is safe, and details.
//!
//! **Architecture Invariant:** this crate does no I/O and knows no runtime: no tokio, no
//! sqlx, no sockets, no clock reads, no files. It depends on serde, serde_json, ciborium and
//! derive-only helpers (thiserror, schemars). Anything that needs a clock or a socket takes
//! the value as an argument.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

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
