//! `bver-resolver`: pointer resolution.
//!
//! Owns the resolver adapter trait, the routing of a pointer's namespace to the adapter
//! that serves it (local store, another platform over EAGER, files, external HTTP), and the
//! application of attribute paths to JSON values, the same way whatever the source.
//!
//! The flow of one `resolve(pointer)` (spec: "Pointer Resolution"):
//! - the caller parses the pointer ([`bver_contracts::RefPtr`]);
//! - [`Resolver`] looks up the adapter that serves the pointer's namespace (ownership
//!   routing); an unrouted namespace is a `not_found` naming the namespace;
//! - the adapter fetches the whole reference ([`Adapter::fetch`]) as a [`Fetched`] value
//!   with its version, kind and [`Source`];
//! - [`path::select`] applies the attribute path; a missing attribute is a `not_found`
//!   naming the first missing segment.
//!
//! **Architecture Invariant:** this crate never depends on `bver-node` or `bver-eager`: the
//! local-store adapter is implemented in `node`, the EAGER adapter in `eager`. It does no
//! I/O of its own except inside adapters that are explicitly about I/O.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod adapter;
pub mod files;
pub mod http;
pub mod path;

pub use adapter::{Adapter, BoxFuture, Fetched, Listed, Page, Resolved, Resolver, Source};
pub use files::FilesAdapter;
pub use http::{HttpAdapter, HttpConfig};
