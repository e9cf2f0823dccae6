//! Federation: the node's side of EAGER.
//!
//! [`start`] binds the EAGER endpoint (QUIC, ALPN `bver-eager/1`) with the platform key,
//! serving the outbox by channel ([`sources::StoreEvents`]: the channels the domain declares),
//! the store for remote resolution ([`sources::StorePointers`]) and grants checked by the
//! platform's verifier (issuer = audience = the platform id, revocations shared with the HTTP
//! API). It runs the configured subscriptions ([`subscriptions`]) while this process holds the
//! platform's subscription lease ([`lease`]) and builds the resolver:
//! the domain's namespaces locally, each peer's namespaces over EAGER (through the remote
//! resolution cache when a subscription keeps it fresh, [`cache`]).
//!
//! A key rotation (`bver key rotate`) reaches a running node through [`KeyReload`], which the
//! serve reload loop calls: the grant verifier takes the new key set, and the endpoint
//! presents the new key (endorsed by the previous one) and signs with it.
//!
//! **Architecture Invariant:** `eager` does not know the node; this module is the only place
//! that adapts the store and the verifier to its traits.

pub mod cache;
pub mod config;
pub mod lease;
pub mod sources;
pub mod subscriptions;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bver_auth::{KeySet, Principal, Revocations, Verifier, VerifierConfig};
use bver_contracts::BverError;
use bver_eager::GrantVerifier;
use bver_eager::transport::{EagerConfig, EagerEndpoint, PeerConfig, Services};
use bver_eager::wire::ALPN;
use bver_resolver::{Adapter, Resolver};
use serde_json::json;

pub use config::{AdapterEntry, FederationConfig, PeerEntry, SubscriptionEntry};
pub use lease::{LeaseState, LeaseView};
pub use subscriptions::{States, SubscriptionState};

use self::cache::CacheAdapter;
use self::config::{DEFAULT_EAGER_LISTEN, config_error, merged_peers, parse_fingerprint};
use self::sources::{StoreEvents, StorePointers};
use crate::broker::LocalAdapter;
use crate::datadir::DataDir;
use crate::domain::Domain;
use crate::store::Store;

/// What [`start`] needs.
pub struct Parts<'a> {
    /// This platform's id.
    pub platform: &'a str,
    /// Its keys.
    pub keys: KeySet,
    /// The revocations the HTTP API uses too (reloaded from the data directory).
    pub revocations: Arc<Revocations>,
    /// The store.
    pub store: Store,
    /// The compiled domain (owned namespaces, channels).
    pub domain: &'a Domain,
    /// The configuration.
    pub config: &'a FederationConfig,
    /// The data directory (`peers.json`, the status file).
    pub data: &'a DataDir,
}

/// The grant verifier EAGER uses: the platform's verifier, replaced when its keys change.
struct Grants(std::sync::RwLock<Arc<Verifier>>);

impl GrantVerifier for Grants {
    fn verify(&self, grant: &str, now: u64) -> Result<Principal, BverError> {
        let verifier = match self.0.read() {
            Ok(v) => Arc::clone(&v),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        };
        verifier.verify(grant, now).map_err(BverError::from)
    }
}

/// Hands a reloaded key set to a running federation (see the module docs). Cheap to clone.
#[derive(Clone)]
pub struct KeyReload {
    endpoint: EagerEndpoint,
    grants: Arc<Grants>,
    config: VerifierConfig,
    revocations: Arc<Revocations>,
    data: DataDir,
    fingerprint: Arc<std::sync::Mutex<String>>,
}

impl std::fmt::Debug for KeyReload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyReload").finish_non_exhaustive()
    }
}

impl KeyReload {
    /// Take `keys`: grants are verified with them from now on, and the EAGER endpoint
    /// presents and signs with the current key (with its rotation endorsement from the data
    /// directory, if any). Returns whether the current key changed.
    pub async fn apply(&self, keys: KeySet) -> Result<bool, BverError> {
        let verifier = Verifier::new(self.config.clone(), &keys, self.revocations.clone());
        if let Ok(mut g) = self.grants.0.write() {
            *g = Arc::new(verifier);
        }
        let endorsement = self
            .data
            .endorsement(keys.current().public_key(), bver_auth::unix_now())
            .unwrap_or_else(|e| {
                tracing::warn!("EAGER rotation endorsement not read: {}", e.message);
                None
            });
        let fingerprint = fingerprint_hex(&keys.current().public_key().fingerprint());
        let rotated = self.endpoint.set_keys(Arc::new(keys), endorsement).await?;
        if let Ok(mut f) = self.fingerprint.lock() {
            *f = fingerprint;
        }
        Ok(rotated)
    }
}

/// The running federation of a node.
pub struct Federation {
    endpoint: Option<EagerEndpoint>,
    /// Where EAGER listens (`None` when disabled).
    pub addr: Option<SocketAddr>,
    /// Hex SHA-256 fingerprint of the platform's current public key (what peers pin).
    pub fingerprint: String,
    states: States,
    lease: LeaseView,
    runner: Option<(
        tokio::task::JoinHandle<()>,
        tokio::sync::watch::Sender<bool>,
    )>,
    status: Option<tokio::task::JoinHandle<()>>,
    head_poll: Option<tokio::task::JoinHandle<()>>,
    key_reload: Option<KeyReload>,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation")
            .field("addr", &self.addr)
            .field("subscriptions", &self.states().len())
            .finish_non_exhaustive()
    }
}

impl Federation {
    /// The live state of every subscription.
    pub fn states(&self) -> Vec<SubscriptionState> {
        self.states
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default()
    }

    /// This process's view of the subscription lease.
    pub fn lease(&self) -> LeaseState {
        self.lease.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// What the serve reload loop hands reloaded keys to (`None` when EAGER is not served).
    pub fn key_reload(&self) -> Option<KeyReload> {
        self.key_reload.clone()
    }

    /// The shared lease view (for the HTTP surface).
    pub fn lease_view(&self) -> LeaseView {
        self.lease.clone()
    }

    /// The shared state map (for the HTTP surface).
    pub fn state_map(&self) -> States {
        self.states.clone()
    }

    /// The EAGER endpoint, when served.
    pub fn endpoint(&self) -> Option<&EagerEndpoint> {
        self.endpoint.as_ref()
    }

    /// The ALPN EAGER is served with.
    pub fn alpn() -> &'static str {
        std::str::from_utf8(ALPN).unwrap_or("bver-eager/1")
    }

    /// Stop the subscriptions (releasing the subscription lease) and close the endpoint.
    pub async fn close(&mut self) {
        if let Some((task, stop)) = self.runner.take() {
            let _ = stop.send(true);
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        for t in [self.status.take(), self.head_poll.take()]
            .into_iter()
            .flatten()
        {
            t.abort();
        }
        if let Some(e) = &self.endpoint {
            let _ = tokio::time::timeout(Duration::from_secs(2), e.close()).await;
        }
    }
}

/// Hex of a key fingerprint.
pub fn fingerprint_hex(fp: &[u8; 32]) -> String {
    hex::encode(fp)
}

/// Start federation (see the module docs) and return it with the routed resolver.
pub async fn start(parts: Parts<'_>) -> Result<(Federation, Resolver), BverError> {
    let Parts {
        platform,
        keys,
        revocations,
        store,
        domain,
        config,
        data,
    } = parts;
    let fingerprint = fingerprint_hex(&keys.current().public_key().fingerprint());
    let owned: Vec<String> = domain.namespaces().map(|(ns, _)| ns.to_owned()).collect();
    let mut resolver = Resolver::new();
    let local = Arc::new(LocalAdapter::new(store.clone()));
    for ns in &owned {
        resolver.route(ns.clone(), local.clone());
    }
    for a in &config.adapters {
        if owned.contains(&a.namespace) {
            return Err(config_error(format!(
                "adapter for `{}`: this platform owns that namespace",
                a.namespace
            )));
        }
        resolver.route(a.namespace.clone(), config::build_adapter(a)?);
    }
    let states: States = Arc::default();
    let lease: LeaseView = Arc::default();
    if config.disabled {
        return Ok((
            Federation {
                endpoint: None,
                addr: None,
                fingerprint,
                states,
                lease,
                runner: None,
                status: None,
                head_poll: None,
                key_reload: None,
            },
            resolver,
        ));
    }

    let peers = merged_peers(&config.peers, data.root())?;
    let mut peer_configs = Vec::new();
    for p in &peers {
        if p.id == platform {
            return Err(config_error(format!(
                "peer `{}` is this platform itself",
                p.id
            )));
        }
        let fingerprints = p
            .fingerprints
            .iter()
            .map(|f| parse_fingerprint(f))
            .collect::<Result<Vec<_>, _>>()?;
        if fingerprints.is_empty() {
            return Err(config_error(format!(
                "peer `{}` has no key fingerprint to pin (`bver node id` on that platform prints it)",
                p.id
            )));
        }
        peer_configs.push(PeerConfig {
            platform: p.id.clone(),
            addr: p.addr,
            fingerprints,
        });
    }

    let channels: Vec<crate::domain::Channel> = domain
        .bundles()
        .iter()
        .flat_map(|b| b.channels.iter().cloned())
        .collect();
    let vconfig = VerifierConfig::new(platform.to_owned(), platform.to_owned());
    let grants = Arc::new(Grants(std::sync::RwLock::new(Arc::new(Verifier::new(
        vconfig.clone(),
        &keys,
        revocations.clone(),
    )))));
    let endorsement = data.endorsement(keys.current().public_key(), bver_auth::unix_now())?;
    let services = Services {
        events: Arc::new(StoreEvents::new(
            store.clone(),
            platform.to_owned(),
            channels,
        )),
        pointers: Arc::new(StorePointers::new(store.clone(), owned.clone())),
        grants: grants.clone(),
    };
    let keys = Arc::new(keys);
    let make = |listen: SocketAddr| {
        let mut c = EagerConfig::new(platform.to_owned(), Arc::clone(&keys), listen);
        c.peers = peer_configs.clone();
        c.reconnect_base = config.reconnect_base;
        c.reconnect_max = Duration::from_secs(5);
        c.grant_recheck = Duration::from_secs(1);
        c.endorsement = endorsement.clone();
        c.idle_timeout = config.idle_timeout;
        c
    };
    let endpoint = match config.listen {
        Some(listen) => EagerEndpoint::start(make(listen), services)?,
        None => {
            let default: SocketAddr = DEFAULT_EAGER_LISTEN
                .parse()
                .map_err(|_| config_error("bad default EAGER address".into()))?;
            match EagerEndpoint::start(make(default), services.clone()) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(
                        "EAGER: {} ({}); listening on another loopback port instead",
                        e.message,
                        DEFAULT_EAGER_LISTEN
                    );
                    EagerEndpoint::start(make(SocketAddr::from(([127, 0, 0, 1], 0))), services)?
                }
            }
        }
    };
    let addr = endpoint.local_addr()?;

    // Peers' namespaces: resolved over EAGER, through the cache when a subscription keeps it.
    for p in &peers {
        let grant = p.grant.clone().unwrap_or_default();
        let peer: Arc<dyn Adapter> = Arc::new(endpoint.adapter(p.id.clone(), grant));
        let cached = config
            .subscriptions
            .iter()
            .any(|s| s.peer == p.id && s.cache);
        let adapter: Arc<dyn Adapter> = if cached {
            Arc::new(CacheAdapter::new(store.clone(), peer, config.cache_max_age))
        } else {
            peer
        };
        for ns in &p.namespaces {
            if config.adapters.iter().any(|a| &a.namespace == ns) {
                return Err(config_error(format!(
                    "namespace `{ns}` is routed both to peer `{}` and to an adapter",
                    p.id
                )));
            }
            if owned.contains(ns) {
                return Err(config_error(format!(
                    "peer `{}` is configured to own namespace `{ns}`, which this platform owns",
                    p.id
                )));
            }
            resolver.route(ns.clone(), adapter.clone());
        }
    }

    let mut prepared = Vec::new();
    for s in &config.subscriptions {
        let Some(peer) = peers.iter().find(|p| p.id == s.peer) else {
            return Err(config_error(format!(
                "subscription `{}`: `{}` is not a configured peer",
                s.name(),
                s.peer
            )));
        };
        let grant = peer.grant.clone().ok_or_else(|| {
            config_error(format!(
                "subscription `{}`: no grant from `{}` (run `bver grant issue` there and give it with `bver peer add --grant` or `grant` in [[peers]])",
                s.name(),
                s.peer
            ))
        })?;
        let p = subscriptions::prepare(s, grant)?;
        if prepared
            .iter()
            .any(|q: &subscriptions::Prepared| q.name() == p.name())
        {
            return Err(config_error(format!(
                "two subscriptions are named `{}` (set `name` on one of them)",
                p.name()
            )));
        }
        prepared.push(p);
    }
    let stored = store.subscriptions().await?;
    for p in &prepared {
        subscriptions::show(&states, p, stored.iter().find(|r| r.name == p.name()));
    }
    // Only the holder of the subscription lease runs them (several processes of a platform
    // may share one PostgreSQL database).
    let runner = (!prepared.is_empty()).then(|| {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(lease::run(
            lease::LeaseRunner {
                endpoint: endpoint.clone(),
                store: store.clone(),
                subscriptions: prepared,
                states: states.clone(),
                view: lease.clone(),
                holder: lease::holder_id(),
                ttl: config.lease_ttl,
            },
            stopped,
        ));
        (task, stop)
    });
    // Other processes of this platform (PostgreSQL, or tools on the SQLite file) commit events
    // this process's writer never sees: poll the head so that live streams pick them up
    // within a quarter second.
    let head_poll = Some({
        let store = store.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                if let Err(e) = store.refresh_head().await {
                    tracing::debug!(error = %e.message, "outbox head not refreshed");
                }
            }
        })
    });
    let live_fingerprint = Arc::new(std::sync::Mutex::new(fingerprint.clone()));
    let key_reload = KeyReload {
        endpoint: endpoint.clone(),
        grants,
        config: vconfig,
        revocations,
        data: data.clone(),
        fingerprint: live_fingerprint.clone(),
    };
    let status = tokio::spawn(status_loop(
        data.clone(),
        platform.to_owned(),
        addr,
        live_fingerprint,
        states.clone(),
        lease.clone(),
    ));
    Ok((
        Federation {
            endpoint: Some(endpoint),
            addr: Some(addr),
            fingerprint,
            states,
            lease,
            runner,
            status: Some(status),
            head_poll,
            key_reload: Some(key_reload),
        },
        resolver,
    ))
}

/// The status file `DATA/federation.json`: where EAGER listens and the live state of each
/// subscription, rewritten every second (what `bver node id` and `bver subscriptions` read).
pub fn status_path(data: &DataDir) -> std::path::PathBuf {
    data.root().join("federation.json")
}

async fn status_loop(
    data: DataDir,
    platform: String,
    addr: SocketAddr,
    fingerprint: Arc<std::sync::Mutex<String>>,
    states: States,
    lease: LeaseView,
) {
    let path = status_path(&data);
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let subs: Vec<SubscriptionState> = states
            .lock()
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default();
        let lease = lease.lock().map(|l| l.clone()).unwrap_or_default();
        let fingerprint = fingerprint.lock().map(|f| f.clone()).unwrap_or_default();
        let doc = json!({
            "platform": platform,
            "eager": addr.to_string(),
            "alpn": Federation::alpn(),
            "fingerprint": fingerprint,
            "pid": std::process::id(),
            "updated_at": bver_auth::unix_now(),
            "subscriptions": subs,
            "lease": lease,
        });
        let tmp = path.with_extension("json.tmp");
        let ok = std::fs::write(&tmp, doc.to_string()).and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = ok {
            tracing::debug!(error = %e, "federation status not written");
        }
    }
}
