//! `bver-resolver`: pointer resolution.
//!
//! Owns the resolver adapter trait, the routing of a pointer's namespace to the adapter
//! that serves it (local store, another platform over EAGER, files, external HTTP), and the
//! application of attribute paths to JSON values, the same way whatever the source.
//!
//! **Architecture Invariant:** this crate never depends on `bver-node` or `bver-eager`: the
//! local-store adapter is implemented in `node`, the EAGER adapter in `eager`.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
