//! Change notifications: a watcher of the store's outbox that tells every MCP subscription
//! which reference changed.
//!
//! One task per MCP server reads the outbox after the last sequence it has seen, whenever the
//! store's commit sequence moves ([`Store::subscribe_seq`]) and at least once a second (so a
//! `bver mcp` process sees commits made by another process on the same store, such as a
//! running `bver serve`). Each event becomes the pointer of the reference it announces
//! (`bver://ns/repo/id`) on a broadcast channel. Subscribers match it against the URIs they
//! subscribed to: a URI with an attribute path (`bver://ns/repo/id@status`) matches every
//! change of its reference.
//!
//! A subscriber that falls more than [`CAPACITY`] changes behind misses some; it is told
//! nothing more precise than the changes it still receives (MCP has no "lagged" signal for
//! resource updates), so the capacity is generous.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::store::Store;

/// Changes buffered per subscriber.
pub const CAPACITY: usize = 4096;
/// Outbox events read per query.
const BATCH: u32 = 500;
/// How often the outbox is read even when this process committed nothing.
const POLL: Duration = Duration::from_secs(1);

/// The watcher: a broadcast of changed references' pointers.
#[derive(Debug)]
pub struct Changes {
    tx: broadcast::Sender<Arc<str>>,
    task: JoinHandle<()>,
}

impl Drop for Changes {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Changes {
    /// Start watching `store` from its current end (earlier events are not replayed).
    pub fn start(store: Store) -> Self {
        let (tx, _) = broadcast::channel(CAPACITY);
        let task = tokio::spawn(watch(store, tx.clone()));
        Self { tx, task }
    }

    /// A new receiver of changed pointers.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.tx.subscribe()
    }
}

async fn watch(store: Store, tx: broadcast::Sender<Arc<str>>) {
    let mut seq = store.subscribe_seq();
    let mut last = *seq.borrow_and_update();
    loop {
        tokio::select! {
            changed = seq.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(POLL) => {}
        }
        loop {
            let events = match store.events_after(last, BATCH).await {
                Ok(events) => events,
                Err(e) => {
                    tracing::warn!(error = %e, "MCP change watcher: the outbox could not be read");
                    break;
                }
            };
            let n = events.len();
            for event in events {
                last = last.max(event.seq);
                let k = &event.key;
                let pointer: Arc<str> =
                    format!("bver://{}/{}/{}", k.namespace, k.repo, k.id).into();
                // No receiver is not an error: nobody subscribed yet.
                let _ = tx.send(pointer);
            }
            if n < BATCH as usize {
                break;
            }
        }
    }
}

/// Whether a change of `pointer` (no attribute path) concerns the subscribed `uri`.
pub fn concerns(uri: &str, pointer: &str) -> bool {
    let base = uri.split_once('@').map_or(uri, |(b, _)| b);
    base == pointer
}

#[cfg(test)]
mod tests {
    use super::concerns;

    #[test]
    fn attribute_paths_match_their_reference() {
        assert!(concerns("bver://sites/site/a", "bver://sites/site/a"));
        assert!(concerns(
            "bver://sites/site/a@status",
            "bver://sites/site/a"
        ));
        assert!(!concerns("bver://sites/site/ab", "bver://sites/site/a"));
    }
}
