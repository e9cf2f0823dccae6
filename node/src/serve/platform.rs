//! Opening a platform: what `bver serve` and `bver mcp` share before they serve anything.
//!
//! [`open`] loads and compiles the domain, opens the data directory (fixing the platform's
//! identity on the first start), builds the token verifier from the data directory's keys
//! and revocations, opens the store (each caller builds the one broker over it). The HTTP node
//! (`serve::start`) and the stdio MCP server (`cli/mcp.rs`) both start here, so a token that
//! `bver serve` accepts is accepted by `bver mcp` against the same data directory, and
//! nothing else is.

use std::path::PathBuf;
use std::sync::Arc;

use bver_auth::{HmacSecret, KeySet, Revocations, Verifier, VerifierConfig};
use bver_contracts::BverError;

use super::config::{ServeConfig, config_error};
use crate::datadir::{DataDir, Identity};
use crate::domain::{self, Domain};
use crate::store::{Store, StoreOptions};

/// An opened platform, ready to serve.
pub struct Platform {
    /// The compiled domain.
    pub domain: Arc<Domain>,
    /// The data directory.
    pub data: DataDir,
    /// The platform's identity (fixed on the first start).
    pub identity: Identity,
    /// The audience tokens must carry.
    pub audience: String,
    /// The key set (current key and retired ones still verifying).
    pub keys: KeySet,
    /// Whether the platform key was made by this start.
    pub key_created: bool,
    /// Revoked tokens, shared with every verifier built from `vconfig`.
    pub revocations: Arc<Revocations>,
    /// How verifiers are configured (issuer, audience, leeway, HS256).
    pub vconfig: VerifierConfig,
    /// The verifier built from `keys`.
    pub verifier: Verifier,
    /// The store; the caller builds the one broker over it (`Broker::new`, or
    /// `Broker::with_resolver` once federation has routed peers' namespaces).
    pub store: Store,
    /// Where the SQLite store is, when it is SQLite.
    pub sqlite_path: Option<PathBuf>,
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform")
            .field("identity", &self.identity)
            .field("backend", &self.store.backend_name())
            .finish_non_exhaustive()
    }
}

/// Open the platform `config` describes; see the module docs.
pub async fn open(config: &ServeConfig) -> Result<Platform, BverError> {
    let domain = domain::load(&config.domain).map_err(|errors| {
        config_error(format!(
            "the domain does not compile ({} error{}):\n{errors}",
            errors.len(),
            if errors.len() == 1 { "" } else { "s" }
        ))
    })?;
    let domain = Arc::new(domain);
    let data = DataDir::create(&config.data)?;
    let now = bver_auth::unix_now();

    // Identity: fixed on the first start; a later start with another id is refused, since
    // peers and tokens name the platform id.
    let wanted = config
        .platform_id
        .clone()
        .unwrap_or_else(|| domain.core().name.clone());
    let identity = match data.identity()? {
        Some(id) if config.platform_id.is_some() && id.platform_id != wanted => {
            return Err(config_error(format!(
                "this data directory belongs to platform `{}`, not `{wanted}`",
                id.platform_id
            )));
        }
        Some(id) => id,
        None => {
            let id = Identity {
                audience: config.audience.clone().unwrap_or_else(|| wanted.clone()),
                platform_id: wanted,
            };
            data.write_identity(&id)?;
            id
        }
    };
    let audience = config
        .audience
        .clone()
        .unwrap_or_else(|| identity.audience.clone());

    let (keys, key_created) = data.key_set(now)?;
    let revocations = Arc::new(Revocations::new());
    revocations.restore(data.revocations()?);
    let mut vconfig = VerifierConfig::new(identity.platform_id.clone(), audience.clone())
        .leeway_secs(config.token_leeway_secs);
    if let Some(path) = &config.hs256_secret_file {
        let secret = std::fs::read(path).map_err(|e| {
            config_error(format!(
                "cannot read the HS256 secret {}: {e}",
                path.display()
            ))
        })?;
        let secret = HmacSecret::new("hs256", trim_newline(secret))
            .map_err(|e| config_error(format!("HS256 secret: {e}")))?;
        vconfig = vconfig.with_hs256(secret);
    }
    let verifier = Verifier::new(vconfig.clone(), &keys, revocations.clone());

    let options = StoreOptions {
        pool_size: config.pool_size,
        ..StoreOptions::default()
    };
    let (store, sqlite_path) = match &config.postgres {
        Some(url) => (Store::open_postgres(url, options).await?, None),
        None => {
            let path = data.sqlite_path();
            (Store::open_sqlite(&path, options).await?, Some(path))
        }
    };
    Ok(Platform {
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
    })
}

fn trim_newline(mut v: Vec<u8>) -> Vec<u8> {
    while v.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        v.pop();
    }
    v
}
