//! `bver serve`: a running platform node.
//!
//! [`start`] loads the domain, opens the data directory (platform key, identity, revocations)
//! and the store, builds the one [`Broker`](crate::broker::Broker), and serves HTTP: REST and OpenAPI
//! ([`rest`]), JWKS, health, readiness and metrics, secured by bearer JWTs ([`http`]). It
//! returns a [`Running`] node that a test (or the CLI) can stop gracefully: new requests get
//! 503 while in-flight ones finish and commit.
//!
//! **Architecture Invariant:** handlers translate HTTP to broker calls and back; nothing in
//! this module reads or writes the store except `readyz`'s ping.

pub mod config;
pub mod http;
pub mod metrics;
pub mod openapi;
pub mod platform;
pub mod problem;
pub mod rest;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bver_auth::{Verifier, VerifierConfig};
use bver_contracts::BverError;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use config::{FileConfig, LogFormat, ServeConfig};

use self::config::config_error;
use self::http::{AppState, AuthState, StateParts};
use self::metrics::Metrics;
use crate::domain::{self, Domain};

/// A node that is serving.
#[derive(Debug)]
pub struct Running {
    /// Where the HTTP API listens.
    pub http_addr: SocketAddr,
    /// The platform id.
    pub platform_id: String,
    /// The token audience.
    pub audience: String,
    /// Whether the platform key was made by this start.
    pub key_created: bool,
    /// The store's backend (`sqlite`, `postgres`).
    pub backend: &'static str,
    /// Where the SQLite store is, when it is SQLite.
    pub sqlite_path: Option<std::path::PathBuf>,
    /// Scopes a full administrator token should carry for this domain.
    pub admin_scopes: String,
    /// Where EAGER listens (`None`: not served).
    pub eager_addr: Option<SocketAddr>,
    /// Hex SHA-256 fingerprint of the platform's current public key.
    pub key_fingerprint: String,
    federation: crate::federation::Federation,
    state: Arc<AppState>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    reloader: JoinHandle<()>,
    grace: Duration,
}

impl Running {
    /// The federation (EAGER endpoint, subscriptions).
    pub fn federation(&self) -> &crate::federation::Federation {
        &self.federation
    }

    /// The shared state (for tests and embedding).
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Stop: refuse new requests (503), let in-flight ones finish (at most the grace period),
    /// then return.
    pub async fn shutdown(mut self) -> Result<(), BverError> {
        self.state.draining.store(true, Ordering::SeqCst);
        self.federation.close().await;
        let _ = self.shutdown.send(true);
        self.reloader.abort();
        match tokio::time::timeout(self.grace, self.server).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(BverError::internal(format!("the HTTP server failed: {e}"))),
            Ok(Err(e)) => Err(BverError::internal(format!(
                "the HTTP server panicked: {e}"
            ))),
            Err(_) => {
                tracing::warn!(grace = ?self.grace, "in-flight requests did not finish in time");
                Ok(())
            }
        }
    }

    /// Wait until the server stops on its own (it does not, unless it fails).
    pub async fn wait(&mut self) -> Result<(), BverError> {
        match (&mut self.server).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(BverError::internal(format!("the HTTP server failed: {e}"))),
            Err(e) => Err(BverError::internal(format!(
                "the HTTP server panicked: {e}"
            ))),
        }
    }
}

/// Every scope the domain's operations declare, plus admin, metrics and the ops family:
/// what `bver token issue` should grant a full administrator.
pub fn admin_scopes(domain: &Domain) -> String {
    let mut set = std::collections::BTreeSet::new();
    for op in domain.operations() {
        for s in &op.scopes {
            set.insert(s.clone());
        }
    }
    for s in ["refs:*:*", "admin", "admin:*", "metrics:read"] {
        set.insert(s.to_owned());
    }
    set.into_iter().collect::<Vec<_>>().join(" ")
}

fn manifests(domain: &Domain, platform_id: &str) -> Value {
    let list: Vec<Value> = domain
        .bundles()
        .iter()
        .map(|b| domain::manifest::manifest(domain, b))
        .collect();
    json!({ "platform": platform_id, "manifests": list })
}

/// Start a node with `config`: see the module docs.
pub async fn start(config: ServeConfig) -> Result<Running, BverError> {
    let platform::Platform {
        domain,
        data,
        identity,
        audience,
        keys,
        key_created,
        revocations,
        vconfig,
        verifier,
        store,
        sqlite_path,
    } = platform::open(&config).await?;
    let now = bver_auth::unix_now();
    let auth = AuthState::new(verifier, keys.jwks(now), revocations.clone());
    // Federation needs the store (its outbox and values) and gives the resolver that routes
    // peers' namespaces; the one broker is built around that resolver.
    let backend = store.backend_name();
    let (federation, resolver) = crate::federation::start(crate::federation::Parts {
        platform: &identity.platform_id,
        keys,
        revocations: revocations.clone(),
        store: store.clone(),
        domain: &domain,
        config: &config.federation,
        data: &data,
    })
    .await?;
    let broker = crate::broker::Broker::with_resolver(domain.clone(), store, resolver)?;
    let openapi = openapi::document(&domain, &identity.platform_id);
    let state = Arc::new(AppState::new(StateParts {
        broker,
        auth,
        metrics: Metrics::new(&identity.platform_id, backend)
            .with_subscriptions(federation.state_map()),
        rate_limit: config.rate_limit,
        manifests: manifests(&domain, &identity.platform_id),
        openapi,
        insecure: config.insecure_dev,
        platform_id: identity.platform_id.clone(),
        data: data.clone(),
        mcp: mcp_settings(&config),
    }));
    let observer_state = state.clone();
    let mcp = crate::mcp::McpServer::new(
        state.broker.clone(),
        identity.platform_id.clone(),
        crate::mcp::Caller::Http,
        Some(Arc::new(
            move |op: &str, mutation, outcome: &str, elapsed| {
                observer_state
                    .metrics
                    .operation(op, mutation, outcome, elapsed);
            },
        )),
    )?;

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| config_error(format!("cannot listen on {}: {e}", config.listen)))?;
    let http_addr = listener
        .local_addr()
        .map_err(|e| config_error(format!("listener address: {e}")))?;
    let app = http::router(state.clone(), config.max_body_bytes, mcp);
    let (shutdown, mut stop) = watch::channel(false);
    let mcp_streams = state.mcp.cancel.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
                // Open MCP streams (SSE) would hold the shutdown until the grace period ends.
                mcp_streams.cancel();
            })
            .await
    });
    let reloader = tokio::spawn(reload_loop(state.clone(), vconfig, federation.key_reload()));
    if config.insecure_dev {
        tracing::warn!("{}", http::INSECURE_WARNING);
    }
    Ok(Running {
        http_addr,
        platform_id: identity.platform_id,
        audience,
        key_created,
        backend,
        sqlite_path,
        admin_scopes: admin_scopes(&domain),
        eager_addr: federation.addr,
        key_fingerprint: federation.fingerprint.clone(),
        federation,
        state,
        shutdown,
        server,
        reloader,
        grace: config.shutdown_grace,
    })
}

/// `/mcp`'s DNS-rebinding allow-lists: the configured ones, or the defaults for the listen
/// address. `*` alone allows any value.
fn mcp_settings(config: &ServeConfig) -> crate::mcp::HttpSettings {
    let mut s = crate::mcp::HttpSettings::for_listen(config.listen);
    let any = |v: &[String]| v.len() == 1 && v[0] == "*";
    if any(&config.mcp_allowed_hosts) {
        s.allowed_hosts.clear();
    } else if !config.mcp_allowed_hosts.is_empty() {
        s.allowed_hosts = config.mcp_allowed_hosts.clone();
    }
    if any(&config.mcp_allowed_origins) {
        s.allowed_origins.clear();
        s.any_origin = true;
    } else if !config.mcp_allowed_origins.is_empty() {
        s.allowed_origins = config.mcp_allowed_origins.clone();
    }
    s
}

/// Poll the data directory once a second: a key rotation or a revocation made with the CLI
/// takes effect without a restart, on HTTP and on EAGER (its certificate, signatures and
/// grant verifier).
async fn reload_loop(
    state: Arc<AppState>,
    vconfig: VerifierConfig,
    federation: Option<crate::federation::KeyReload>,
) {
    let mut seen = state.data.watched_stamp();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let stamp = state.data.watched_stamp();
        if stamp == seen {
            continue;
        }
        seen = stamp;
        let now = bver_auth::unix_now();
        match state.data.revocations() {
            Ok(list) => state.auth.revocations.restore(list),
            Err(e) => tracing::warn!(error = %e, "revocations not reloaded"),
        }
        match state.data.key_set(now) {
            Ok((keys, _)) => {
                let verifier =
                    Verifier::new(vconfig.clone(), &keys, state.auth.revocations.clone());
                state.auth.replace(verifier, keys.jwks(now));
                tracing::info!(kid = %keys.current().key_id(), "keys and revocations reloaded");
                if let Some(f) = &federation
                    && let Err(e) = f.apply(keys).await
                {
                    tracing::warn!("EAGER keys not reloaded: {}", e.message);
                }
            }
            Err(e) => tracing::warn!(error = %e, "keys not reloaded"),
        }
    }
}
