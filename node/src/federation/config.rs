//! Federation configuration: where EAGER listens, the peers this platform knows (pinned by key
//! fingerprint), and the subscriptions it runs. Read from the serve configuration file
//! (`eager_listen`, `[[peers]]`, `[[subscriptions]]`, `remote_cache_max_age`) and from
//! `DATA/peers.json`, which `bver peer add` writes.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bver_contracts::{BverError, ErrorCode, Phase};
use serde::{Deserialize, Serialize};

/// Where EAGER listens when nothing says otherwise (UDP, loopback only).
pub const DEFAULT_EAGER_LISTEN: &str = "127.0.0.1:7701";

/// How long a cached remote reference may be served without news from its owner.
pub const DEFAULT_CACHE_MAX_AGE: Duration = Duration::from_secs(30);

/// How long the subscription lease lasts without renewal (`subscription_lease_ttl`).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(5);

/// A peer platform, as written in the configuration (`[[peers]]`) or in `DATA/peers.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerEntry {
    /// Its platform id.
    pub id: String,
    /// Its EAGER address (`host:port`, UDP); absent when it only dials this platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub addr: Option<SocketAddr>,
    /// Hex SHA-256 fingerprints of its Ed25519 public keys (`bver node id` prints them).
    pub fingerprints: Vec<String>,
    /// The namespaces it owns: pointers there resolve at this peer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// The grant it issued to this platform (`bver grant issue` on the peer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant: Option<String>,
}

/// A subscription to a peer's channel (`[[subscriptions]]`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionEntry {
    /// Its name, the key of its persisted cursor [default: `PEER.CHANNEL`].
    pub name: Option<String>,
    /// The publishing peer's platform id.
    pub peer: String,
    /// The channel.
    pub channel: String,
    /// Where to start the first time: `oldest` (every retained event) or `live` [default].
    pub start: Option<String>,
    /// The local named trigger each event appends to this platform's outbox.
    pub emit: Option<String>,
    /// Keep the remote resolution cache of the peer's namespaces fresh.
    #[serde(default)]
    pub cache: bool,
    /// The payload contract this platform expects, `package@major` (checked at subscribe).
    pub contract: Option<String>,
    /// Server-side filter: only these repos.
    #[serde(default)]
    pub repos: Vec<String>,
    /// Server-side filter: only these kinds (and their sub-kinds).
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Server-side filter: only pointers with one of these prefixes.
    #[serde(default)]
    pub prefixes: Vec<String>,
}

impl SubscriptionEntry {
    /// The subscription's name.
    pub fn name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("{}.{}", self.peer, self.channel))
    }
}

/// A namespace served by a resolver adapter other than the store or a peer (`[[adapters]]`):
/// exactly one of `files` and `http`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdapterEntry {
    /// The namespace it serves.
    pub namespace: String,
    /// A directory of JSON/TOML/CSV documents, served read-only.
    pub files: Option<std::path::PathBuf>,
    /// An external JSON API: the fetch URL template (`{namespace}`, `{repo}`, `{id}`).
    pub http: Option<String>,
    /// Its list URL template (`{namespace}`, `{repo}`).
    pub list: Option<String>,
    /// The authentication header's name [default: `Authorization`].
    pub auth_header: Option<String>,
    /// The authentication header's value.
    pub auth_value: Option<String>,
    /// An environment variable holding the header's value (keeps secrets out of the file).
    pub auth_env: Option<String>,
    /// How long one call may take [default: 2s].
    pub timeout: Option<String>,
    /// How long an answer is reused [default: 30s; `0s`: never].
    pub cache_ttl: Option<String>,
}

/// Everything federation needs from the configuration.
#[derive(Debug, Clone)]
pub struct FederationConfig {
    /// Where EAGER listens; `None`: [`DEFAULT_EAGER_LISTEN`], or any free loopback port if
    /// that one is taken.
    pub listen: Option<SocketAddr>,
    /// Do not serve EAGER at all.
    pub disabled: bool,
    /// Peers from the configuration file (merged with `DATA/peers.json`).
    pub peers: Vec<PeerEntry>,
    /// Subscriptions.
    pub subscriptions: Vec<SubscriptionEntry>,
    /// Namespaces served by the files or HTTP adapters.
    pub adapters: Vec<AdapterEntry>,
    /// The staleness bound of the remote resolution cache.
    pub cache_max_age: Duration,
    /// First reconnect delay (tests shorten it).
    pub reconnect_base: Duration,
    /// How long the subscription lease lasts without renewal: a standby process takes the
    /// subscriptions over at most `lease_ttl + lease_ttl / 5` after the holder's last renewal.
    pub lease_ttl: Duration,
    /// How long an EAGER (QUIC) connection may stay silent before it counts as dead.
    pub idle_timeout: Duration,
}

impl Default for FederationConfig {
    fn default() -> Self {
        Self {
            listen: None,
            disabled: false,
            peers: Vec::new(),
            subscriptions: Vec::new(),
            adapters: Vec::new(),
            cache_max_age: DEFAULT_CACHE_MAX_AGE,
            reconnect_base: Duration::from_millis(100),
            lease_ttl: DEFAULT_LEASE_TTL,
            idle_timeout: bver_eager::transport::DEFAULT_IDLE_TIMEOUT,
        }
    }
}

pub(crate) fn config_error(message: String) -> BverError {
    BverError::new(ErrorCode::InvalidDefinition, Phase::Configuration, message)
}

/// Parse a hex fingerprint (64 hex digits, `:` separators allowed).
pub fn parse_fingerprint(s: &str) -> Result<[u8; 32], BverError> {
    let clean: String = s.chars().filter(|c| *c != ':').collect();
    let bytes = hex::decode(&clean)
        .map_err(|e| config_error(format!("fingerprint `{s}` is not hex: {e}")))?;
    bytes
        .try_into()
        .map_err(|_| config_error(format!("fingerprint `{s}` is not 32 bytes (64 hex digits)")))
}

/// The peers stored in `DATA/peers.json` (empty if none).
pub fn read_peers_file(data: &Path) -> Result<Vec<PeerEntry>, BverError> {
    let path = data.join("peers.json");
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| config_error(format!("{} is not valid: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(config_error(format!("cannot read {}: {e}", path.display()))),
    }
}

/// Store `peers` in `DATA/peers.json` (written whole, then renamed into place; 0600 since
/// it holds grants).
pub fn write_peers_file(data: &Path, peers: &[PeerEntry]) -> Result<(), BverError> {
    let path = data.join("peers.json");
    let tmp = data.join(format!("peers.json.tmp{}", std::process::id()));
    let bytes = serde_json::to_vec_pretty(peers)
        .map_err(|e| config_error(format!("cannot encode peers: {e}")))?;
    let fail = |e: std::io::Error| config_error(format!("cannot write {}: {e}", path.display()));
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut f = options.open(&tmp).map_err(fail)?;
        f.write_all(&bytes).map_err(fail)?;
        f.sync_all().map_err(fail)?;
    }
    std::fs::rename(&tmp, &path).map_err(fail)
}

/// The configuration's peers and the data directory's, by id (the data directory's entry
/// wins: `bver peer add` is the later word).
pub fn merged_peers(config: &[PeerEntry], data: &Path) -> Result<Vec<PeerEntry>, BverError> {
    let mut out: Vec<PeerEntry> = config.to_vec();
    for p in read_peers_file(data)? {
        match out.iter_mut().find(|q| q.id == p.id) {
            Some(q) => *q = p,
            None => out.push(p),
        }
    }
    Ok(out)
}

/// The resolver adapter an `[[adapters]]` entry describes.
pub fn build_adapter(
    a: &AdapterEntry,
) -> Result<std::sync::Arc<dyn bver_resolver::Adapter>, BverError> {
    let dur = |v: &Option<String>, default: Duration, what: &str| match v {
        None => Ok(default),
        Some(s) => humantime::parse_duration(s)
            .map_err(|e| config_error(format!("adapter for `{}`: {what} `{s}`: {e}", a.namespace))),
    };
    match (&a.files, &a.http) {
        (Some(dir), None) => {
            if !dir.is_dir() {
                return Err(config_error(format!(
                    "adapter for `{}`: {} is not a directory",
                    a.namespace,
                    dir.display()
                )));
            }
            Ok(std::sync::Arc::new(bver_resolver::FilesAdapter::new(dir)))
        }
        (None, Some(url)) => {
            let value = match (&a.auth_value, &a.auth_env) {
                (Some(v), _) => Some(v.clone()),
                (None, Some(var)) => Some(std::env::var(var).map_err(|_| {
                    config_error(format!(
                        "adapter for `{}`: environment variable {var} is not set",
                        a.namespace
                    ))
                })?),
                (None, None) => None,
            };
            let auth = value.map(|v| {
                (
                    a.auth_header
                        .clone()
                        .unwrap_or_else(|| "Authorization".to_owned()),
                    v,
                )
            });
            Ok(std::sync::Arc::new(bver_resolver::HttpAdapter::new(
                bver_resolver::HttpConfig {
                    url: url.clone(),
                    list_url: a.list.clone(),
                    auth,
                    timeout: dur(&a.timeout, Duration::from_secs(2), "timeout")?,
                    cache_ttl: dur(&a.cache_ttl, Duration::from_secs(30), "cache_ttl")?,
                },
            )?))
        }
        _ => Err(config_error(format!(
            "adapter for `{}`: give exactly one of `files` and `http`",
            a.namespace
        ))),
    }
}
