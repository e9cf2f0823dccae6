//! The traits the node implements for EAGER: where events come from ([`EventSource`]),
//! where pointers resolve ([`PointerSource`]) and who checks grants ([`GrantVerifier`]).
//!
//! The protocol core never calls them: it asks for reads and fetches through its actions,
//! and the driver ([`crate::transport`]) calls these traits and feeds the answers back.

use bver_auth::{Principal, Verifier};
use bver_contracts::{BverError, EventEnvelope, RefPtr};
use bver_resolver::{BoxFuture, Fetched, Listed, Page};

use crate::wire::ContractVersion;

/// Where the outbox stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxPosition {
    /// The current epoch.
    pub epoch: String,
    /// The highest committed sequence number (0 when the outbox is empty).
    pub head: u64,
    /// The oldest retained sequence number (`head + 1` when nothing is retained).
    pub oldest: u64,
}

/// What the publisher knows about one of its channels.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChannelInfo {
    /// The payload contract, checked against the subscriber's at subscribe time.
    pub contract: Option<ContractVersion>,
}

/// The answer to [`EventSource::read`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReadBatch {
    /// The channel's events with `from_seq <= seq <= scanned_to`, in increasing `seq`
    /// order, each from this platform and the current epoch (unsigned or signed: the
    /// publisher signs each wire batch itself).
    pub events: Vec<EventEnvelope>,
    /// The highest sequence number the read covered: the channel has no other event in
    /// `from_seq..=scanned_to`. At least `from_seq - 1`; at most the head.
    pub scanned_to: u64,
}

/// The publishing side's outbox, by channel. Implemented by the node over its store.
pub trait EventSource: Send + Sync + 'static {
    /// The channel's metadata, or `None` if the platform has no such channel.
    fn channel(&self, channel: &str) -> Option<ChannelInfo>;

    /// The outbox position now.
    fn position(&self) -> BoxFuture<'_, Result<OutboxPosition, BverError>>;

    /// Up to `limit` events of `channel` from `from_seq` on (see [`ReadBatch`]). Reading
    /// past the head returns no events and `scanned_to = head`. The source must never
    /// skip a committed event below `scanned_to` (the store's "no gap" guarantee).
    fn read<'a>(
        &'a self,
        channel: &'a str,
        from_seq: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<ReadBatch, BverError>>;

    /// A watch of the head sequence number (the node's `Store::subscribe_seq`): live
    /// delivery reads again when it moves.
    fn watch_head(&self) -> tokio::sync::watch::Receiver<u64>;
}

/// The publishing side's references, for remote resolution. Implemented by the node over
/// its store (through the local resolver adapter).
pub trait PointerSource: Send + Sync + 'static {
    /// The whole reference `pointer` names (its attribute path is ignored), or `None`.
    /// `peer` is the asking platform, already authorised for the namespace.
    fn fetch<'a>(
        &'a self,
        peer: &'a str,
        pointer: &'a RefPtr,
    ) -> BoxFuture<'a, Result<Option<Fetched>, BverError>>;

    /// One page of the references of `repo` in `namespace` (optionally of `kind` or a kind
    /// below it), or of every repo of `namespace` when `repo` is `None` (the resolver's
    /// `list` and `listrefs`).
    fn list<'a>(
        &'a self,
        peer: &'a str,
        namespace: &'a str,
        repo: Option<&'a str>,
        kind: Option<&'a str>,
        cursor: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Page<Listed>, BverError>>;
}

/// Checks the grants peers present. The core then checks that the grant's subject is the
/// peer's (TLS-authenticated) platform id and that it holds the needed scope.
pub trait GrantVerifier: Send + Sync + 'static {
    /// The verified principal of `grant` at `now` (unix seconds): signed by this platform,
    /// audience this platform, not expired, not revoked.
    fn verify(&self, grant: &str, now: u64) -> Result<Principal, BverError>;
}

/// The platform's own token verifier checks grants: configure it with issuer and audience
/// both equal to this platform's id.
impl GrantVerifier for Verifier {
    fn verify(&self, grant: &str, now: u64) -> Result<Principal, BverError> {
        Verifier::verify(self, grant, now).map_err(BverError::from)
    }
}
