//! Running subscriptions: each one an EAGER subscription whose verified events are applied
//! effectively once (`Store::apply_remote`: the local trigger events, the cache and the
//! cursor in one transaction), resuming after a restart from the persisted cursor. The
//! endpoint reconnects with backoff and jitter; this module keeps each subscription's live
//! state for `bver subscriptions`, `/metrics` and the status file.
//!
//! [`prepare`] checks a configured subscription once, at start; [`start`] runs it from its
//! persisted cursor, and [`Running::stop`] ends it. Only the process that holds the platform's
//! subscription lease runs them ([`super::lease`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bver_contracts::BverError;
use bver_eager::proto::subscriber::{Start, SubEvent, SubscriptionSpec};
use bver_eager::transport::{EagerEndpoint, SubscriptionHandle};
use bver_eager::wire::{ContractVersion, Cursor, Filter};
use serde::Serialize;
use tokio::sync::mpsc;

use super::config::{SubscriptionEntry, config_error};
use super::sources::store_change;
use crate::store::{RefKey, RemoteEffect, Store, SubscriptionRow};

/// The live state of one subscription.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SubscriptionState {
    /// Its name.
    pub name: String,
    /// The publishing peer.
    pub peer: String,
    /// The channel.
    pub channel: String,
    /// Whether the publisher accepted the current stream (and no failure came since).
    pub connected: bool,
    /// The publisher's epoch.
    pub epoch: Option<String>,
    /// The last applied sequence number (persisted).
    pub seq: u64,
    /// The publisher's head as last reported (at subscribe time, or by a later event).
    pub head: u64,
    /// Events behind the head, as far as this platform knows.
    pub lag_events: u64,
    /// Seconds between the origin's commit of the last applied event and its apply here.
    pub lag_seconds: f64,
    /// Events applied since this process started.
    pub applied: u64,
    /// Duplicates dropped.
    pub duplicates: u64,
    /// Events rejected (forged or altered).
    pub rejected: u64,
    /// Gaps reported by the publisher (`outdated_cursor`).
    pub gaps: u64,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// Whether it stopped for good (a non-retryable error such as a refused grant).
    pub stopped: bool,
    /// Whether this process runs it (holds the platform's subscription lease); a standby
    /// process shows the persisted cursor.
    pub runner: bool,
}

/// The state of every subscription, shared with the HTTP surface.
pub type States = Arc<Mutex<BTreeMap<String, SubscriptionState>>>;

/// A running subscription: the endpoint's handle and its applier task.
pub(crate) struct Running {
    name: String,
    states: States,
    handle: SubscriptionHandle,
    applier: tokio::task::JoinHandle<()>,
    watcher: tokio::task::JoinHandle<()>,
}

fn update(states: &States, name: &str, f: impl FnOnce(&mut SubscriptionState)) {
    if let Ok(mut s) = states.lock()
        && let Some(st) = s.get_mut(name)
    {
        f(st);
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A configured subscription, checked: what [`start`] runs.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    name: String,
    entry: SubscriptionEntry,
    spec: SubscriptionSpec,
}

impl Prepared {
    /// The subscription's name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
}

/// Check `entry` (to be run with `grant`): its starting point and contract.
pub(crate) fn prepare(entry: &SubscriptionEntry, grant: String) -> Result<Prepared, BverError> {
    let name = entry.name();
    let mut spec = SubscriptionSpec::new(entry.peer.clone(), entry.channel.clone(), grant);
    spec.start = match entry.start.as_deref() {
        None | Some("live") => Start::Live,
        Some("oldest") => Start::Oldest,
        Some(other) => {
            return Err(config_error(format!(
                "subscription `{name}`: start `{other}` is not `live` or `oldest`"
            )));
        }
    };
    if let Some(c) = &entry.contract {
        let (package, major) = c
            .split_once('@')
            .and_then(|(p, m)| m.split('.').next()?.parse::<u64>().ok().map(|m| (p, m)))
            .ok_or_else(|| {
                config_error(format!(
                    "subscription `{name}`: contract `{c}` is not `package@major`"
                ))
            })?;
        spec.contract = Some(ContractVersion {
            package: package.to_owned(),
            major,
        });
    }
    spec.filter = Filter {
        repos: entry.repos.clone(),
        kinds: entry.kinds.clone(),
        prefixes: entry.prefixes.clone(),
    };
    Ok(Prepared {
        name,
        entry: entry.clone(),
        spec,
    })
}

/// Show `prepared` in `states` (not running), with its persisted cursor if `stored`.
pub(crate) fn show(states: &States, prepared: &Prepared, stored: Option<&SubscriptionRow>) {
    if let Ok(mut s) = states.lock() {
        let st = s
            .entry(prepared.name.clone())
            .or_insert_with(|| SubscriptionState {
                name: prepared.name.clone(),
                peer: prepared.entry.peer.clone(),
                channel: prepared.entry.channel.clone(),
                ..SubscriptionState::default()
            });
        if let Some(row) = stored {
            st.epoch = Some(row.epoch.clone());
            st.seq = row.seq;
            st.lag_events = st.head.saturating_sub(st.seq);
        }
    }
}

/// Run `prepared` on `endpoint` from its persisted cursor, applying to `store`.
pub(crate) async fn start(
    endpoint: &EagerEndpoint,
    store: Store,
    prepared: &Prepared,
    states: States,
) -> Result<Running, BverError> {
    let Prepared { name, entry, spec } = prepared.clone();
    let stored = store.subscription(&name).await?;
    let cursor = stored.as_ref().map(|s| Cursor {
        epoch: s.epoch.clone(),
        seq: s.seq,
    });
    show(&states, prepared, stored.as_ref());
    update(&states, &name, |s| {
        s.runner = true;
        s.connected = false;
        s.stopped = false;
    });
    let (tx, rx) = mpsc::channel(16);
    let handle = endpoint.subscribe(spec, cursor, tx);
    let mut interruptions = handle.interruptions();
    let watcher = {
        let states = states.clone();
        let name = name.clone();
        tokio::spawn(async move {
            while interruptions.changed().await.is_ok() {
                let msg = interruptions.borrow_and_update().clone();
                if let Some(msg) = msg {
                    update(&states, &name, |s| {
                        s.connected = false;
                        s.last_error = Some(msg);
                    });
                }
            }
        })
    };
    let applier = tokio::spawn(apply_loop(
        store,
        name.clone(),
        entry.peer.clone(),
        entry.channel.clone(),
        entry.emit.clone(),
        entry.cache,
        rx,
        states.clone(),
    ));
    Ok(Running {
        name,
        states,
        handle,
        applier,
        watcher,
    })
}

impl Running {
    /// Stop the stream, let the applier finish the batches already received (at most 2 s:
    /// an apply that cannot commit is abandoned, and its transaction rolls back), and mark
    /// the subscription as not running here.
    pub(crate) async fn stop(self) {
        self.handle.stop();
        self.watcher.abort();
        let mut applier = self.applier;
        if tokio::time::timeout(Duration::from_secs(2), &mut applier)
            .await
            .is_err()
        {
            applier.abort();
        }
        update(&self.states, &self.name, |s| {
            s.runner = false;
            s.connected = false;
        });
    }
}

/// The most remote events one apply transaction takes: frames that queued up while the
/// previous transaction committed are applied together, up to this many events.
const MAX_APPLY: usize = 4096;

#[allow(clippy::too_many_arguments)]
async fn apply_loop(
    store: Store,
    name: String,
    peer: String,
    channel: String,
    emit: Option<String>,
    cache: bool,
    mut rx: mpsc::Receiver<Vec<SubEvent>>,
    states: States,
) {
    let mut effects: Vec<RemoteEffect> = Vec::new();
    let mut epoch: Option<String> = None;
    while let Some(first) = rx.recv().await {
        // Take every frame already waiting too (up to MAX_APPLY events): under load, one
        // durable transaction (one fsync) covers many frames instead of one each.
        let mut frames = vec![first];
        let mut queued = frames[0].len();
        while queued < MAX_APPLY {
            match rx.try_recv() {
                Ok(f) => {
                    queued += f.len();
                    frames.push(f);
                }
                Err(_) => break,
            }
        }
        for ev in frames.into_iter().flatten() {
            match ev {
                SubEvent::Subscribed { epoch: e, head, .. } => {
                    tracing::info!(%peer, %channel, epoch = %e, head, "subscribed");
                    update(&states, &name, |s| {
                        s.connected = true;
                        s.head = head;
                        s.last_error = None;
                    });
                }
                SubEvent::Gap { requested, oldest } => {
                    tracing::warn!(%peer, %channel, requested, oldest, "events no longer retained by the publisher: a gap");
                    update(&states, &name, |s| s.gaps += 1);
                }
                SubEvent::Event(d) => {
                    let e = d.event;
                    // One transaction is one epoch (the cursor is per epoch).
                    if epoch.as_ref().is_some_and(|p| *p != e.epoch) {
                        apply(
                            &store,
                            &name,
                            &peer,
                            &channel,
                            &epoch,
                            &mut effects,
                            &states,
                        )
                        .await;
                    }
                    epoch = Some(e.epoch.clone());
                    effects.push(RemoteEffect {
                        origin_seq: e.seq,
                        trigger: emit.clone(),
                        cache,
                        key: RefKey::new(e.pointer.namespace(), e.pointer.repo(), e.pointer.id()),
                        version: e.version,
                        kind: e.kind,
                        change: e
                            .change
                            .map_or(crate::store::ChangeType::Updated, store_change),
                        diff: e.diff,
                        value: e.value,
                        at: e.time,
                    });
                }
                SubEvent::Rejected { seq, error } => {
                    tracing::warn!(%peer, %channel, ?seq, code = %error.code, "event rejected (audit): {}", error.message);
                    update(&states, &name, |s| s.rejected += 1);
                }
                SubEvent::Failed(e) => {
                    tracing::warn!(%peer, %channel, code = %e.code, "subscription failed: {}", e.message);
                    update(&states, &name, |s| {
                        s.connected = false;
                        s.stopped = !e.retryable;
                        s.last_error = Some(format!("{}: {}", e.code, e.message));
                    });
                }
            }
        }
        apply(
            &store,
            &name,
            &peer,
            &channel,
            &epoch,
            &mut effects,
            &states,
        )
        .await;
    }
}

/// Apply `effects` (of `epoch`) in one transaction with the cursor, retrying until it
/// commits, and empty the list.
async fn apply(
    store: &Store,
    name: &str,
    peer: &str,
    channel: &str,
    epoch: &Option<String>,
    effects: &mut Vec<RemoteEffect>,
    states: &States,
) {
    let Some(epoch) = epoch else { return };
    if effects.is_empty() {
        return;
    }
    let last_time = effects.last().map_or(0, |e| e.at);
    let last_seq = effects.last().map_or(0, |e| e.origin_seq);
    // Never skip: a failed apply is retried until it commits (the stream waits, and
    // QUIC flow control holds the publisher back meanwhile).
    let mut delay = Duration::from_millis(50);
    let applied = loop {
        match store
            .apply_remote(name, peer, channel, epoch, effects)
            .await
        {
            Ok(a) => break a,
            Err(e) => {
                tracing::warn!(%peer, %channel, "applying remote events failed, retrying: {}", e.message);
                update(states, name, |s| s.last_error = Some(e.message.clone()));
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    };
    effects.clear();
    let lag_ms = now_ms().saturating_sub(last_time).max(0);
    update(states, name, |s| {
        s.epoch = Some(epoch.clone());
        s.seq = s.seq.max(last_seq);
        s.head = s.head.max(last_seq);
        s.lag_events = s.head.saturating_sub(s.seq);
        s.lag_seconds = lag_ms as f64 / 1000.0;
        s.applied += applied.applied;
        s.duplicates += applied.duplicates;
    });
}
