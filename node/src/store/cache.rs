//! The in-process read cache of current references.
//!
//! Every write through the store updates the cache after its commit. A read that misses goes
//! to the database and fills the cache only if no write committed since the read started and
//! the cache holds nothing newer; both checks run atomically per key, so a slow reader can
//! never put an old value back over a newer one (not even after an eviction).
//!
//! The cache is a fixed number of shards, each a hash map behind its own read-write lock: a hit
//! is one uncontended read lock and an `Arc` clone, and the writer updates a key with one short
//! write lock (the per-key atomicity above is the shard's write lock). A full shard evicts an
//! arbitrary entry to make room: the cache is meant to hold the hot set, and a miss only costs
//! a database read.
//!
//! **Invariant:** the cache is authoritative only for writes made through this process. With
//! several processes on one PostgreSQL database it is disabled (see `docs/storage.md`).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use super::types::{Current, RefKey};

/// Shards: enough that the writer and a few reader threads rarely meet on one lock.
const SHARDS: usize = 64;

/// One shard, on its own cache line so that readers of neighbouring shards do not contend.
#[repr(align(128))]
struct Shard(RwLock<HashMap<RefKey, Arc<Current>>>);

pub(crate) struct ReadCache {
    shards: Box<[Shard]>,
    /// How many entries one shard holds at most.
    per_shard: usize,
    hasher: RandomState,
    /// Incremented by the writer after each commit, before it updates entries.
    commits: AtomicU64,
    /// Incremented by [`ReadCache::clear`] before it empties the shards.
    clears: AtomicU64,
}

impl ReadCache {
    pub(crate) fn new(capacity: u64) -> Self {
        let per_shard = usize::try_from(capacity)
            .unwrap_or(usize::MAX)
            .div_ceil(SHARDS)
            .max(1);
        Self {
            shards: (0..SHARDS)
                .map(|_| Shard(RwLock::new(HashMap::new())))
                .collect(),
            per_shard,
            hasher: RandomState::new(),
            commits: AtomicU64::new(0),
            clears: AtomicU64::new(0),
        }
    }

    fn shard(&self, key: &RefKey) -> &RwLock<HashMap<RefKey, Arc<Current>>> {
        let h = self.hasher.hash_one(key);
        // The high bits: the map inside the shard uses its own hasher, so any bits will do.
        &self.shards[(h >> 58) as usize % SHARDS].0
    }

    pub(crate) fn get(&self, key: &RefKey) -> Option<Arc<Current>> {
        self.shard(key)
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .cloned()
    }

    /// Taken by a reader before it reads the database.
    pub(crate) fn generation(&self) -> u64 {
        self.commits.load(Ordering::Acquire)
    }

    /// Fill after a database read that started at `generation`.
    pub(crate) fn fill(&self, generation: u64, current: Arc<Current>) {
        let mut map = self
            .shard(&current.key)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        // Checked under the shard's lock, which the writer takes to update this key.
        if self.commits.load(Ordering::Acquire) != generation {
            return;
        }
        self.put_newer(&mut map, current);
    }

    /// How many times the cache has been emptied: the writer takes it when a batch commits,
    /// and hands it to [`ReadCache::committed`] once the batch is durable.
    pub(crate) fn clears(&self) -> u64 {
        self.clears.load(Ordering::Acquire)
    }

    /// Called by the writer once a commit is durable, with the new state of every key it
    /// changed and [`ReadCache::clears`] as it was when the batch committed. If the cache was
    /// emptied since (another connection wrote after that commit), the states may be stale
    /// and are dropped: putting them back after the clear would undo it.
    pub(crate) fn committed(&self, clears: u64, states: impl IntoIterator<Item = Arc<Current>>) {
        self.commits.fetch_add(1, Ordering::AcqRel);
        for current in states {
            let mut map = self
                .shard(&current.key)
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            // Checked under the shard's lock, which `clear` takes after counting the clear.
            if self.clears.load(Ordering::Acquire) != clears {
                return;
            }
            self.put_newer(&mut map, current);
        }
    }

    /// Forget every entry: another connection (another process) wrote the database, and any
    /// entry may be stale. A read that started before fills nothing.
    pub(crate) fn clear(&self) {
        self.clears.fetch_add(1, Ordering::AcqRel);
        self.commits.fetch_add(1, Ordering::AcqRel);
        for shard in self.shards.iter() {
            shard
                .0
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
        }
    }

    /// Insert unless the cache holds the same or a newer version; evict if the shard is full.
    fn put_newer(&self, map: &mut HashMap<RefKey, Arc<Current>>, current: Arc<Current>) {
        match map.get_mut(&current.key) {
            Some(e) if e.version >= current.version => {}
            Some(e) => *e = current,
            None => {
                if map.len() >= self.per_shard
                    && let Some(victim) = map.keys().next().cloned()
                {
                    map.remove(&victim);
                }
                map.insert(current.key.clone(), current);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(id: &str, version: u64) -> Arc<Current> {
        Arc::new(Current {
            key: RefKey::new("n", "r", id),
            kind: None,
            value: serde_json::json!({ "v": version }),
            version,
            deleted: false,
            created_at: 0,
            updated_at: 0,
        })
    }

    #[test]
    fn a_fill_never_replaces_a_newer_version_or_follows_a_commit() {
        let cache = ReadCache::new(100);
        let key = RefKey::new("n", "r", "a");
        cache.committed(cache.clears(), [state("a", 2)]);
        cache.fill(cache.generation(), state("a", 1));
        assert_eq!(cache.get(&key).map(|c| c.version), Some(2));

        let before = cache.generation();
        cache.committed(cache.clears(), [state("a", 3)]);
        cache.fill(before, state("b", 1));
        assert!(cache.get(&RefKey::new("n", "r", "b")).is_none());
        cache.committed(cache.clears(), [state("a", 2)]);
        assert_eq!(cache.get(&key).map(|c| c.version), Some(3));
    }

    #[test]
    fn states_of_a_commit_made_before_a_clear_are_not_put_back() {
        let cache = ReadCache::new(100);
        let key = RefKey::new("n", "r", "a");
        // A batch commits (the writer notes the clears), then another connection's write is
        // detected and the cache emptied, then the batch becomes durable.
        let at_commit = cache.clears();
        cache.clear();
        cache.committed(at_commit, [state("a", 4)]);
        assert!(
            cache.get(&key).is_none(),
            "a stale state came back after the clear"
        );
        cache.committed(cache.clears(), [state("a", 5)]);
        assert_eq!(cache.get(&key).map(|c| c.version), Some(5));
    }

    #[test]
    fn clear_forgets_everything_and_refuses_a_fill_that_started_before() {
        let cache = ReadCache::new(100);
        cache.committed(cache.clears(), [state("a", 1), state("b", 1)]);
        let before = cache.generation();
        cache.clear();
        assert!(cache.get(&RefKey::new("n", "r", "a")).is_none());
        cache.fill(before, state("a", 1));
        assert!(cache.get(&RefKey::new("n", "r", "a")).is_none());
        cache.fill(cache.generation(), state("a", 2));
        assert_eq!(
            cache.get(&RefKey::new("n", "r", "a")).map(|c| c.version),
            Some(2)
        );
    }

    #[test]
    fn the_cache_stays_within_its_capacity() {
        let cache = ReadCache::new(SHARDS as u64 * 2);
        cache.committed(cache.clears(), (0..1000).map(|i| state(&i.to_string(), 1)));
        let held: usize = cache
            .shards
            .iter()
            .map(|s| s.0.read().unwrap_or_else(PoisonError::into_inner).len())
            .sum();
        assert!(held <= SHARDS * 2, "{held} entries held");
        assert!(
            cache.get(&RefKey::new("n", "r", "999")).is_some(),
            "the newest entry stays"
        );
    }
}
