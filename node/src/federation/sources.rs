//! The node's implementations of the EAGER traits: the outbox as the [`EventSource`] (one
//! channel = the outbox events of its triggers), the store as the [`PointerSource`].
//! Grants are checked by the platform's own token verifier (issuer and audience = this
//! platform's id, revocations shared with the HTTP API, so a revocation cuts live streams).

use std::collections::HashMap;

use bver_contracts::{BverError, EventEnvelope, RefPtr};
use bver_eager::wire::ContractVersion;
use bver_eager::{ChannelInfo, EventSource, OutboxPosition, PointerSource, ReadBatch};
use bver_resolver::{Adapter, BoxFuture, Fetched, Listed, Page};
use tokio::sync::watch;

use crate::broker::LocalAdapter;
use crate::domain::Channel;
use crate::store::{ChangeType, ChannelEvent, Store};

/// The outbox, by channel.
pub struct StoreEvents {
    store: Store,
    platform: String,
    channels: HashMap<String, Channel>,
}

impl StoreEvents {
    /// The channels the domain declares, over `store`, for `platform`.
    pub fn new(
        store: Store,
        platform: String,
        channels: impl IntoIterator<Item = Channel>,
    ) -> Self {
        Self {
            store,
            platform,
            channels: channels.into_iter().map(|c| (c.name.clone(), c)).collect(),
        }
    }
}

fn change_of(c: ChangeType) -> bver_contracts::version::ChangeType {
    use bver_contracts::version::ChangeType as W;
    match c {
        ChangeType::Created => W::Created,
        ChangeType::Updated => W::Updated,
        ChangeType::KindChanged => W::KindChanged,
        ChangeType::Deleted => W::Deleted,
        ChangeType::Restored => W::Restored,
    }
}

/// The store's change type of a wire change type.
pub(crate) fn store_change(c: bver_contracts::version::ChangeType) -> ChangeType {
    use bver_contracts::version::ChangeType as W;
    match c {
        W::Created => ChangeType::Created,
        W::Updated => ChangeType::Updated,
        W::KindChanged => ChangeType::KindChanged,
        W::Deleted => ChangeType::Deleted,
        W::Restored => ChangeType::Restored,
    }
}

fn envelope(platform: &str, e: ChannelEvent) -> Result<EventEnvelope, BverError> {
    Ok(EventEnvelope {
        origin: platform.to_owned(),
        epoch: e.epoch,
        seq: e.seq,
        trigger: e.trigger,
        pointer: RefPtr::new(&e.key.namespace, &e.key.repo, &e.key.id)?,
        version: e.version,
        kind: e.kind,
        change: Some(change_of(e.change)),
        diff: e.diff,
        value: e.value,
        time: e.at,
        signature: None,
    })
}

impl EventSource for StoreEvents {
    fn channel(&self, channel: &str) -> Option<ChannelInfo> {
        let c = self.channels.get(channel)?;
        Some(ChannelInfo {
            contract: c
                .contract
                .as_ref()
                .map(|(package, major, _)| ContractVersion {
                    package: package.clone(),
                    major: *major,
                }),
        })
    }

    fn position(&self) -> BoxFuture<'_, Result<OutboxPosition, BverError>> {
        Box::pin(async move {
            let head = self.store.outbox_head().await?;
            Ok(OutboxPosition {
                epoch: self.store.epoch().to_owned(),
                head,
                // Nothing is pruned from the outbox yet: every event is retained.
                oldest: 1,
            })
        })
    }

    fn read<'a>(
        &'a self,
        channel: &'a str,
        from_seq: u64,
        limit: usize,
    ) -> BoxFuture<'a, Result<ReadBatch, BverError>> {
        Box::pin(async move {
            let from_seq = from_seq.max(1);
            // The head the stream was woken by, without a query; the database only when the
            // watch is behind the read (another process committed since the last head poll,
            // and `position` saw it).
            let mut head = self.store.known_head();
            if head < from_seq {
                head = self.store.outbox_head().await?;
            }
            let Some(c) = self.channels.get(channel) else {
                return Ok(ReadBatch {
                    events: Vec::new(),
                    scanned_to: head.max(from_seq - 1),
                });
            };
            let limit = u32::try_from(limit.max(1)).unwrap_or(u32::MAX);
            let rows = self
                .store
                .channel_events(&c.triggers, from_seq, head, limit)
                .await?;
            let full = rows.len() as u64 >= u64::from(limit);
            let scanned_to = match rows.last() {
                Some(e) if full => e.seq,
                _ => head,
            }
            .max(from_seq - 1);
            let events = rows
                .into_iter()
                .map(|e| envelope(&self.platform, e))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ReadBatch { events, scanned_to })
        })
    }

    fn watch_head(&self) -> watch::Receiver<u64> {
        self.store.subscribe_seq()
    }
}

/// References of this platform's own namespaces, for remote resolution (the core checked the
/// grant's `eager:resolve:NAMESPACE` scope already).
pub struct StorePointers {
    local: LocalAdapter,
    owned: Vec<String>,
}

impl StorePointers {
    /// Serve `owned` namespaces from `store`.
    pub fn new(store: Store, owned: Vec<String>) -> Self {
        Self {
            local: LocalAdapter::new(store),
            owned,
        }
    }
}

impl PointerSource for StorePointers {
    fn fetch<'a>(
        &'a self,
        _peer: &'a str,
        pointer: &'a RefPtr,
    ) -> BoxFuture<'a, Result<Option<Fetched>, BverError>> {
        Box::pin(async move {
            if !self.owned.iter().any(|n| n == pointer.namespace()) {
                // Only what this platform owns is served: no relaying of cached copies.
                return Ok(None);
            }
            self.local.fetch(pointer).await
        })
    }

    fn list<'a>(
        &'a self,
        _peer: &'a str,
        namespace: &'a str,
        repo: Option<&'a str>,
        kind: Option<&'a str>,
        cursor: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Page<Listed>, BverError>> {
        Box::pin(async move {
            if !self.owned.iter().any(|n| n == namespace) {
                return Ok(Page {
                    items: Vec::new(),
                    next: None,
                });
            }
            match repo {
                Some(repo) => self.local.list(namespace, repo, kind, cursor, limit).await,
                None => self.local.listrefs(namespace, cursor, limit).await,
            }
        })
    }
}
