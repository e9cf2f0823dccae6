//! The subscription lease: only one process of a platform runs its EAGER subscriptions at a
//! time (several `bver serve` may share one PostgreSQL database), through the lease
//! [`SUBSCRIPTIONS_LEASE`] in the store (`Store::lease_acquire`).
//!
//! Every process runs [`run`]: every `ttl / 5` it takes or renews the lease. The holder runs
//! the subscriptions; the others stand by, showing the persisted cursors, and take over once
//! the lease expires (its holder was killed or lost the database), at most `ttl + ttl / 5`
//! after the holder's last renewal. A taken-over subscription starts from the persisted
//! cursor. A holder that cannot renew stops its streams before its lease can have expired
//! (it counts from before its last successful renewal was sent), and one that finds the lease
//! taken (a higher generation) stops at once. A graceful stop releases the lease, so a standby
//! takes over at its next attempt.
//!
//! The lease is about not doing the work twice, not about correctness: the cursor row is
//! locked while a batch applies, so even two runners would apply each event once. On SQLite
//! (one process per file) the lease is simply always held, through the same code.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bver_eager::transport::EagerEndpoint;
use serde::Serialize;
use tokio::sync::watch;

use super::subscriptions::{self, Prepared, Running, States};
use crate::store::Store;

/// The lease's name in `bver_leases`.
pub const SUBSCRIPTIONS_LEASE: &str = "eager.subscriptions";

/// What this process knows of the subscription lease (in the status file and `/metrics`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct LeaseState {
    /// This process's holder id (new at every start).
    pub holder: String,
    /// Whether this process holds the lease and runs the subscriptions.
    pub runner: bool,
    /// Who holds it, as last seen (this process when `runner`).
    pub current_holder: Option<String>,
    /// The lease's generation (fencing token) as last seen.
    pub generation: u64,
    /// The lease's time to live, milliseconds.
    pub ttl_ms: u64,
    /// The last failure to take or renew it, if the last attempt failed.
    pub last_error: Option<String>,
}

/// The shared view of the lease.
pub type LeaseView = Arc<Mutex<LeaseState>>;

/// A holder id for this process: host, process id and a random part.
pub fn holder_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    format!(
        "{host}/{}/{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

fn set(view: &LeaseView, f: impl FnOnce(&mut LeaseState)) {
    if let Ok(mut v) = view.lock() {
        f(&mut v);
    }
}

/// How often the lease is taken or renewed.
pub fn tick_of(ttl: Duration) -> Duration {
    (ttl / 5).max(Duration::from_millis(50))
}

/// What [`run`] works with.
pub(crate) struct LeaseRunner {
    pub(crate) endpoint: EagerEndpoint,
    pub(crate) store: Store,
    pub(crate) subscriptions: Vec<Prepared>,
    pub(crate) states: States,
    pub(crate) view: LeaseView,
    pub(crate) holder: String,
    pub(crate) ttl: Duration,
}

async fn stop_all(running: &mut Vec<Running>) {
    for r in running.drain(..) {
        r.stop().await;
    }
}

impl LeaseRunner {
    async fn start_all(&self) -> Result<Vec<Running>, bver_contracts::BverError> {
        let mut running = Vec::new();
        for p in &self.subscriptions {
            match subscriptions::start(&self.endpoint, self.store.clone(), p, self.states.clone())
                .await
            {
                Ok(r) => running.push(r),
                Err(e) => {
                    stop_all(&mut running).await;
                    return Err(e);
                }
            }
        }
        Ok(running)
    }

    /// A standby shows the persisted cursors (another process moves them).
    async fn show_persisted(&self) {
        if let Ok(rows) = self.store.subscriptions().await {
            for p in &self.subscriptions {
                let row = rows.iter().find(|r| r.name == p.name());
                subscriptions::show(&self.states, p, row);
            }
        }
    }
}

/// Take, hold and renew the lease, running the subscriptions while it is held, until `stop`
/// turns true; then stop them and release the lease.
pub(crate) async fn run(this: LeaseRunner, mut stop: watch::Receiver<bool>) {
    let tick = tick_of(this.ttl);
    let mut running: Vec<Running> = Vec::new();
    let mut held: Option<u64> = None;
    let mut valid_until = Instant::now();
    set(&this.view, |v| {
        v.holder = this.holder.clone();
        v.ttl_ms = u64::try_from(this.ttl.as_millis()).unwrap_or(u64::MAX);
    });
    loop {
        let sent = Instant::now();
        let attempt = tokio::time::timeout(
            tick,
            this.store
                .lease_acquire(SUBSCRIPTIONS_LEASE, &this.holder, this.ttl),
        )
        .await;
        match attempt {
            Ok(Ok(lease)) if lease.held => {
                valid_until = sent + this.ttl;
                if held != Some(lease.generation) {
                    // Newly taken (or taken back after someone else held it): the persisted
                    // cursors are the truth.
                    stop_all(&mut running).await;
                    match this.start_all().await {
                        Ok(r) => {
                            running = r;
                            held = Some(lease.generation);
                            tracing::info!(
                                generation = lease.generation,
                                subscriptions = running.len(),
                                "this process holds the subscription lease: running the subscriptions"
                            );
                        }
                        Err(e) => {
                            held = None;
                            tracing::warn!(
                                "subscription lease held, but the subscriptions did not start: {}",
                                e.message
                            );
                        }
                    }
                }
                set(&this.view, |v| {
                    v.runner = held.is_some();
                    v.current_holder = Some(this.holder.clone());
                    v.generation = lease.generation;
                    v.last_error = None;
                });
            }
            Ok(Ok(lease)) => {
                if held.take().is_some() {
                    tracing::warn!(holder = %lease.holder, generation = lease.generation, "subscription lease lost to another process: subscriptions stopped here");
                    stop_all(&mut running).await;
                }
                set(&this.view, |v| {
                    v.runner = false;
                    v.current_holder = Some(lease.holder.clone());
                    v.generation = lease.generation;
                    v.last_error = None;
                });
                this.show_persisted().await;
            }
            failed => {
                let message = match failed {
                    Ok(Err(e)) => e.message,
                    _ => format!("no answer from the store within {tick:?}"),
                };
                // Stop before the lease can have expired for the others.
                if held.is_some() && Instant::now() + tick >= valid_until {
                    held = None;
                    tracing::warn!(
                        "subscription lease not renewed ({message}): subscriptions stopped here"
                    );
                    stop_all(&mut running).await;
                } else {
                    tracing::debug!("subscription lease not renewed yet: {message}");
                }
                set(&this.view, |v| {
                    v.runner = held.is_some();
                    v.last_error = Some(message);
                });
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(tick.saturating_sub(sent.elapsed())) => {}
            _ = stop.changed() => break,
        }
    }
    stop_all(&mut running).await;
    if held.is_some() {
        match this
            .store
            .lease_release(SUBSCRIPTIONS_LEASE, &this.holder)
            .await
        {
            Ok(_) => tracing::info!("subscription lease released"),
            Err(e) => tracing::warn!("subscription lease not released: {}", e.message),
        }
    }
    set(&this.view, |v| v.runner = false);
}
