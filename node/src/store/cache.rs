//! The in-process read cache of current references.
//!
//! Every write through the store updates the cache after its commit. A read that misses goes
//! to the database and fills the cache only if no write committed since the read started and
//! the cache holds nothing newer; both checks run atomically per key, so a slow reader can
//! never put an old value back over a newer one (not even after an eviction).
//!
//! **Invariant:** the cache is authoritative only for writes made through this process. With
//! several processes on one PostgreSQL database it is disabled (see `docs/storage.md`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use moka::ops::compute::Op;

use super::types::{Current, RefKey};

pub(crate) struct ReadCache {
    entries: moka::sync::Cache<RefKey, Arc<Current>>,
    /// Incremented by the writer after each commit, before it updates entries.
    commits: AtomicU64,
}

impl ReadCache {
    pub(crate) fn new(capacity: u64) -> Self {
        Self {
            entries: moka::sync::Cache::new(capacity),
            commits: AtomicU64::new(0),
        }
    }

    pub(crate) fn get(&self, key: &RefKey) -> Option<Arc<Current>> {
        self.entries.get(key)
    }

    /// Taken by a reader before it reads the database.
    pub(crate) fn generation(&self) -> u64 {
        self.commits.load(Ordering::Acquire)
    }

    /// Fill after a database read that started at `generation`.
    pub(crate) fn fill(&self, generation: u64, current: Arc<Current>) {
        self.entries
            .entry(current.key.clone())
            .and_compute_with(|existing| {
                if self.commits.load(Ordering::Acquire) != generation {
                    return Op::Nop;
                }
                match existing {
                    Some(e) if e.value().version >= current.version => Op::Nop,
                    _ => Op::Put(current),
                }
            });
    }

    /// Called by the writer after a commit, with the new state of every key it changed.
    pub(crate) fn committed(&self, states: impl IntoIterator<Item = Arc<Current>>) {
        self.commits.fetch_add(1, Ordering::AcqRel);
        for current in states {
            self.entries
                .entry(current.key.clone())
                .and_compute_with(|existing| match existing {
                    Some(e) if e.value().version >= current.version => Op::Nop,
                    _ => Op::Put(current),
                });
        }
    }
}
