//! Configuration of `bver serve`: a TOML file, environment variables and flags.
//!
//! Precedence, highest first: command-line flag, environment variable (`BVER_*`), the file
//! given with `--config` (or `BVER_CONFIG`), built-in default. The keys are documented in
//! `docs/serve.md`; the file uses the same names as the flags, with `_` for `-`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bver_contracts::{BverError, ErrorCode, Phase};
use serde::Deserialize;

/// Where the HTTP API listens when nothing says otherwise: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7700";
/// Largest request body accepted by default (1 MiB).
pub const DEFAULT_MAX_BODY: usize = 1 << 20;

/// The configuration file (`bver.toml`). Every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Domain directories (bundles, plugins).
    pub domain: Option<Vec<PathBuf>>,
    /// Data directory.
    pub data: Option<PathBuf>,
    /// PostgreSQL URL (the SQLite file in the data directory otherwise).
    pub postgres: Option<String>,
    /// HTTP listen address.
    pub listen: Option<SocketAddr>,
    /// Platform id (default: the core bundle's name).
    pub platform_id: Option<String>,
    /// Audience tokens must carry (default: the platform id).
    pub audience: Option<String>,
    /// Serve without authentication (development only).
    pub insecure_dev: Option<bool>,
    /// Largest request body in bytes.
    pub max_body_bytes: Option<usize>,
    /// Requests per second per principal (0 or absent: no limit).
    pub rate_limit: Option<u32>,
    /// Clock skew tolerated on token times, in seconds.
    pub token_leeway_secs: Option<u64>,
    /// A file holding an HS256 secret (at least 32 bytes) to accept HS256 tokens too.
    pub hs256_secret_file: Option<PathBuf>,
    /// `text` or `json`.
    pub log_format: Option<String>,
    /// How long a graceful shutdown waits for in-flight requests, e.g. `30s`.
    pub shutdown_grace: Option<String>,
    /// Database connections for reads.
    pub pool_size: Option<u32>,
    /// `Host` values `/mcp` accepts (`["*"]`: any).
    pub mcp_allowed_hosts: Option<Vec<String>>,
    /// `Origin` values `/mcp` accepts (`["*"]`: any).
    pub mcp_allowed_origins: Option<Vec<String>>,
    /// EAGER listen address (UDP) [default: 127.0.0.1:7701].
    pub eager_listen: Option<SocketAddr>,
    /// Do not serve EAGER.
    pub eager_disabled: Option<bool>,
    /// How long a cached remote reference may be served, e.g. `30s`.
    pub remote_cache_max_age: Option<String>,
    /// How long an EAGER connection may stay silent before it counts as dead, e.g. `30s`.
    pub eager_idle_timeout: Option<String>,
    /// How long the subscription lease lasts without renewal, e.g. `5s`.
    pub subscription_lease_ttl: Option<String>,
    /// Peer platforms (`[[peers]]`).
    pub peers: Option<Vec<crate::federation::PeerEntry>>,
    /// Subscriptions to peers' channels (`[[subscriptions]]`).
    pub subscriptions: Option<Vec<crate::federation::SubscriptionEntry>>,
    /// Namespaces served by the files or HTTP resolver adapters (`[[adapters]]`).
    pub adapters: Option<Vec<crate::federation::AdapterEntry>>,
}

impl FileConfig {
    /// Read and parse `path`.
    pub fn load(path: &Path) -> Result<Self, BverError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            config_error(format!(
                "cannot read the configuration {}: {e}",
                path.display()
            ))
        })?;
        toml::from_str(&text).map_err(|e| config_error(format!("{}: {e}", path.display())))
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// Parse `text` or `json`.
    pub fn parse(s: &str) -> Result<Self, BverError> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(config_error(format!(
                "log format `{other}` is not `text` or `json`"
            ))),
        }
    }
}

/// The resolved configuration of one node.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Domain directories: one core app and any plugins.
    pub domain: Vec<PathBuf>,
    /// Data directory (key, identity, revocations, and the SQLite store).
    pub data: PathBuf,
    /// PostgreSQL URL; SQLite in the data directory when `None`.
    pub postgres: Option<String>,
    /// HTTP listen address (port 0 picks a free port).
    pub listen: SocketAddr,
    /// Platform id; the core bundle's name when `None`.
    pub platform_id: Option<String>,
    /// Token audience; the platform id when `None`.
    pub audience: Option<String>,
    /// Serve without authentication. Loud, and never the default.
    pub insecure_dev: bool,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Requests per second per principal; `None`: unlimited.
    pub rate_limit: Option<u32>,
    /// Token time leeway.
    pub token_leeway_secs: u64,
    /// HS256 secret file.
    pub hs256_secret_file: Option<PathBuf>,
    /// Log format.
    pub log_format: LogFormat,
    /// Graceful shutdown bound.
    pub shutdown_grace: Duration,
    /// Read connections.
    pub pool_size: u32,
    /// `Host` values `/mcp` accepts; empty: loopback names and the listen address.
    pub mcp_allowed_hosts: Vec<String>,
    /// `Origin` values `/mcp` accepts; empty: http(s) origins on the allowed hosts.
    pub mcp_allowed_origins: Vec<String>,
    /// Federation: EAGER listener, peers, subscriptions.
    pub federation: crate::federation::FederationConfig,
}

impl ServeConfig {
    /// A configuration with defaults for everything but the domain and the data directory.
    pub fn new(domain: Vec<PathBuf>, data: PathBuf) -> Self {
        Self {
            domain,
            data,
            postgres: None,
            listen: DEFAULT_LISTEN
                .parse()
                .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 7700))),
            platform_id: None,
            audience: None,
            insecure_dev: false,
            max_body_bytes: DEFAULT_MAX_BODY,
            rate_limit: None,
            token_leeway_secs: bver_auth::DEFAULT_LEEWAY_SECS,
            hs256_secret_file: None,
            log_format: LogFormat::Text,
            shutdown_grace: Duration::from_secs(30),
            pool_size: 8,
            mcp_allowed_hosts: Vec::new(),
            mcp_allowed_origins: Vec::new(),
            federation: crate::federation::FederationConfig::default(),
        }
    }
}

pub(crate) fn config_error(message: String) -> BverError {
    BverError::new(ErrorCode::InvalidDefinition, Phase::Configuration, message)
}
