//! `bver-auth`: identity and access for BVER.
//!
//! Owns the scope grammar and its matching rules, the authenticated [`Principal`] that
//! every operation runs as, and (as the node grows) platform keys, JWT issue/verify and
//! signatures over EAGER batches.
//!
//! **Architecture Invariant:** deny by default. A principal holds exactly the scopes it was
//! given; nothing in this crate grants access implicitly. This crate does no network or
//! storage I/O: keys and revocation lists are handed to it.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
