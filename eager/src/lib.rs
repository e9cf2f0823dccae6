//! `bver-eager`: EAGER, the federation mesh between BVER platforms.
//!
//! Owns the wire format (length-prefixed CBOR frames, [`wire`]), batch signing ([`sign`]),
//! the sans-IO protocol state machines (subscribe, replay, live delivery, remote resolve,
//! [`proto`]) and a thin quinn/rustls driver ([`transport`]). The protocol is specified in
//! `docs/eager-protocol.md`.
//!
//! The flow, in bullets:
//!
//! - each platform listens on a UDP port with a certificate made from its Ed25519 platform
//!   key; both sides pin the other's key fingerprint (mutual TLS 1.3, ALPN `bver-eager/1`);
//! - the dialer opens a control stream and both sides exchange `hello` (protocol version,
//!   keys announced under the current key's signature, which is how rotation reaches peers);
//! - each subscription is one bidirectional stream: `subscribe` (channel, cursor, filters,
//!   grant, contract) → `subscribed` → signed `batch`es, replay then live, forever;
//! - each remote resolution is one stream: `resolve` → signed `resolved` or `error`; each
//!   remote listing too: `list` → `listed` or `error`;
//! - subscribers verify every batch with the pinned keys, drop forged or altered events,
//!   drop duplicates by `(platform, epoch, seq)`, and reconnect with backoff from their
//!   cursor.
//!
//! **Architecture Invariant:** `eager` does not know `node`. It takes traits (an
//! [`EventSource`], a [`PointerSource`], a [`GrantVerifier`]) that `node` implements.
//!
//! **Architecture Invariant:** the protocol core ([`proto`], [`wire`], [`sign`]) reads no
//! clock and opens no socket: time and bytes are passed in. Only [`transport`] imports
//! quinn, rustls and tokio's networking.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod proto;
pub mod sign;
pub mod source;
pub mod transport;
pub mod wire;

pub use source::{
    ChannelInfo, EventSource, GrantVerifier, OutboxPosition, PointerSource, ReadBatch,
};
