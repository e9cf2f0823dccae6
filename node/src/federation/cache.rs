//! The remote resolution cache as a resolver adapter: a peer's namespace answered from the
//! local copy a subscription keeps fresh (`source: cache`), else from the peer over EAGER
//! (`source: peer`, and the answer refreshes the copy).
//!
//! **Invariant:** an entry is served only while it is younger than the configured bound
//! (`remote_cache_max_age`), counted from the last time this platform heard of it (an event
//! of the subscription or a fetch); an older entry goes to the peer, and if the peer cannot
//! answer, the error is returned, never the stale value.

use std::sync::Arc;
use std::time::Duration;

use bver_contracts::{BverError, RefPtr};
use bver_resolver::{Adapter, BoxFuture, Fetched, Listed, Page, Source};

use crate::store::{CachedRef, RefKey, Store};

/// A peer's namespaces, local copy first.
pub struct CacheAdapter {
    store: Store,
    peer: Arc<dyn Adapter>,
    max_age: Duration,
}

impl CacheAdapter {
    /// Serve from `store`'s cache while entries are younger than `max_age`, else from `peer`.
    pub fn new(store: Store, peer: Arc<dyn Adapter>, max_age: Duration) -> Self {
        Self {
            store,
            peer,
            max_age,
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Adapter for CacheAdapter {
    fn fetch<'a>(
        &'a self,
        pointer: &'a RefPtr,
    ) -> BoxFuture<'a, Result<Option<Fetched>, BverError>> {
        Box::pin(async move {
            let key = RefKey::new(pointer.namespace(), pointer.repo(), pointer.id());
            let now = now_ms();
            if let Some(c) = self.store.cached(&key).await? {
                let age = now.saturating_sub(c.fetched_at);
                if age >= 0 && (age as u128) <= self.max_age.as_millis() {
                    return Ok((!c.deleted).then(|| Fetched {
                        version: c.version,
                        kind: c.kind,
                        value: c.value,
                        updated_at: c.updated_at,
                        source: Source::Cache,
                    }));
                }
            }
            let fetched = self.peer.fetch(pointer).await?;
            if let Some(f) = &fetched {
                let entry = CachedRef {
                    key,
                    kind: f.kind.clone(),
                    value: f.value.clone(),
                    version: f.version,
                    deleted: false,
                    updated_at: f.updated_at,
                    fetched_at: now,
                };
                if let Err(e) = self.store.cache_put(&entry).await {
                    tracing::debug!(error = %e.message, "remote cache not refreshed");
                }
            }
            Ok(fetched)
        })
    }

    fn list<'a>(
        &'a self,
        namespace: &'a str,
        repo: &'a str,
        kind: Option<&'a str>,
        cursor: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Page<Listed>, BverError>> {
        self.peer.list(namespace, repo, kind, cursor, limit)
    }

    fn listrefs<'a>(
        &'a self,
        namespace: &'a str,
        cursor: Option<&'a str>,
        limit: u32,
    ) -> BoxFuture<'a, Result<Page<Listed>, BverError>> {
        self.peer.listrefs(namespace, cursor, limit)
    }
}
