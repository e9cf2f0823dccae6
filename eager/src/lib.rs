//! `bver-eager`: EAGER, the federation mesh between BVER platforms.
//!
//! Owns the wire format (length-prefixed CBOR frames), the sans-IO protocol state machines
//! (subscribe, replay, live delivery, remote resolve) and a thin quinn/rustls driver.
//!
//! **Architecture Invariant:** `eager` does not know `node`. It takes traits (an event source,
//! a pointer source, a grant verifier) that `node` implements. The protocol core reads no
//! clock and opens no socket: time and bytes are passed in.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
