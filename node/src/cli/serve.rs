//! `bver serve`: run a platform node until Ctrl-C or SIGTERM, then shut down gracefully.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::serve::{self, FileConfig, LogFormat, ServeConfig};

/// Arguments of `bver serve`. Each flag also reads `BVER_*` from the environment; a
/// configuration file (`--config`) fills in what neither sets.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Domain directories: the core app, then any plugins.
    #[arg(long, env = "BVER_DOMAIN", value_delimiter = ',', num_args = 1..)]
    domain: Vec<PathBuf>,
    /// Data directory: platform key, identity, revocations and the SQLite store.
    #[arg(long, env = "BVER_DATA")]
    data: Option<PathBuf>,
    /// Store in PostgreSQL at this URL instead of SQLite in the data directory.
    #[arg(long, env = "BVER_POSTGRES")]
    postgres: Option<String>,
    /// HTTP listen address [default: 127.0.0.1:7700].
    #[arg(long, env = "BVER_LISTEN")]
    listen: Option<SocketAddr>,
    /// Platform id [default: the core bundle's name].
    #[arg(long, env = "BVER_PLATFORM_ID")]
    platform_id: Option<String>,
    /// Audience tokens must carry [default: the platform id].
    #[arg(long, env = "BVER_AUDIENCE")]
    audience: Option<String>,
    /// DEVELOPMENT ONLY: answer requests without a token (they run with every scope).
    #[arg(long, env = "BVER_INSECURE_DEV")]
    insecure_dev: bool,
    /// Largest request body in bytes [default: 1048576].
    #[arg(long, env = "BVER_MAX_BODY_BYTES")]
    max_body_bytes: Option<usize>,
    /// Requests per second per principal [default: no limit].
    #[arg(long, env = "BVER_RATE_LIMIT")]
    rate_limit: Option<u32>,
    /// Clock skew tolerated on token times, seconds [default: 30].
    #[arg(long, env = "BVER_TOKEN_LEEWAY_SECS")]
    token_leeway_secs: Option<u64>,
    /// Also accept HS256 tokens signed with the secret in this file (at least 32 bytes).
    #[arg(long, env = "BVER_HS256_SECRET_FILE")]
    hs256_secret_file: Option<PathBuf>,
    /// Log format: text or json [default: text]. The level comes from BVER_LOG or RUST_LOG.
    #[arg(long, env = "BVER_LOG_FORMAT")]
    log_format: Option<String>,
    /// How long shutdown waits for in-flight requests [default: 30s].
    #[arg(long, env = "BVER_SHUTDOWN_GRACE")]
    shutdown_grace: Option<String>,
    /// `Host` values accepted at /mcp, comma-separated (`*`: any) [default: loopback names
    /// and the listen address].
    #[arg(long, env = "BVER_MCP_ALLOWED_HOSTS", value_delimiter = ',')]
    mcp_allowed_hosts: Vec<String>,
    /// `Origin` values accepted at /mcp, comma-separated (`*`: any) [default: http(s) on the
    /// allowed hosts, any port].
    #[arg(long, env = "BVER_MCP_ALLOWED_ORIGINS", value_delimiter = ',')]
    mcp_allowed_origins: Vec<String>,
    /// EAGER listen address (UDP, QUIC) [default: 127.0.0.1:7701, or a free loopback port
    /// if that one is taken].
    #[arg(long, env = "BVER_EAGER_LISTEN")]
    eager_listen: Option<SocketAddr>,
    /// Do not serve EAGER (no federation).
    #[arg(long, env = "BVER_NO_EAGER")]
    no_eager: bool,
    /// A TOML configuration file (keys as the flags, with `_`).
    #[arg(long, env = "BVER_CONFIG")]
    config: Option<PathBuf>,
}

fn resolve(args: ServeArgs) -> Result<ServeConfig, String> {
    let file = match &args.config {
        Some(path) => FileConfig::load(path).map_err(|e| e.message)?,
        None => FileConfig::default(),
    };
    let domain = if args.domain.is_empty() {
        file.domain.unwrap_or_default()
    } else {
        args.domain
    };
    if domain.is_empty() {
        return Err(
            "give the domain: --domain DIR (or BVER_DOMAIN, or `domain` in the config)".into(),
        );
    }
    let data = args
        .data
        .or(file.data)
        .ok_or("give the data directory: --data DIR (or BVER_DATA, or `data` in the config)")?;
    let mut c = ServeConfig::new(domain, data);
    c.postgres = args.postgres.or(file.postgres);
    if let Some(l) = args.listen.or(file.listen) {
        c.listen = l;
    }
    c.platform_id = args.platform_id.or(file.platform_id);
    c.audience = args.audience.or(file.audience);
    c.insecure_dev = args.insecure_dev || file.insecure_dev.unwrap_or(false);
    if let Some(n) = args.max_body_bytes.or(file.max_body_bytes) {
        c.max_body_bytes = n;
    }
    c.rate_limit = args.rate_limit.or(file.rate_limit).filter(|n| *n > 0);
    if let Some(n) = args.token_leeway_secs.or(file.token_leeway_secs) {
        c.token_leeway_secs = n;
    }
    c.hs256_secret_file = args.hs256_secret_file.or(file.hs256_secret_file);
    if let Some(f) = args.log_format.or(file.log_format) {
        c.log_format = LogFormat::parse(&f).map_err(|e| e.message)?;
    }
    if let Some(g) = args.shutdown_grace.or(file.shutdown_grace) {
        c.shutdown_grace =
            humantime::parse_duration(&g).map_err(|e| format!("shutdown_grace `{g}`: {e}"))?;
    }
    if let Some(n) = file.pool_size {
        c.pool_size = n;
    }
    c.mcp_allowed_hosts = if args.mcp_allowed_hosts.is_empty() {
        file.mcp_allowed_hosts.unwrap_or_default()
    } else {
        args.mcp_allowed_hosts
    };
    c.mcp_allowed_origins = if args.mcp_allowed_origins.is_empty() {
        file.mcp_allowed_origins.unwrap_or_default()
    } else {
        args.mcp_allowed_origins
    };
    c.federation.listen = args.eager_listen.or(file.eager_listen);
    c.federation.disabled = args.no_eager || file.eager_disabled.unwrap_or(false);
    c.federation.peers = file.peers.unwrap_or_default();
    c.federation.subscriptions = file.subscriptions.unwrap_or_default();
    c.federation.adapters = file.adapters.unwrap_or_default();
    if let Some(a) = file.remote_cache_max_age {
        c.federation.cache_max_age = humantime::parse_duration(&a)
            .map_err(|e| format!("remote_cache_max_age `{a}`: {e}"))?;
    }
    if let Some(t) = file.eager_idle_timeout {
        let idle =
            humantime::parse_duration(&t).map_err(|e| format!("eager_idle_timeout `{t}`: {e}"))?;
        if idle.is_zero() {
            return Err(format!("eager_idle_timeout `{t}`: must be above zero"));
        }
        c.federation.idle_timeout = idle;
    }
    if let Some(t) = file.subscription_lease_ttl {
        let ttl = humantime::parse_duration(&t)
            .map_err(|e| format!("subscription_lease_ttl `{t}`: {e}"))?;
        if ttl < std::time::Duration::from_millis(250) {
            return Err(format!(
                "subscription_lease_ttl `{t}`: at least 250ms (it is renewed every fifth of it)"
            ));
        }
        c.federation.lease_ttl = ttl;
    }
    Ok(c)
}

/// Install the log subscriber: level from `BVER_LOG` (or `RUST_LOG`), default `info`.
pub(crate) fn init_logging(format: LogFormat) {
    init_logging_default(format, "info");
}

/// [`init_logging`] with another default level.
pub(crate) fn init_logging_default(format: LogFormat, default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("BVER_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

pub(crate) fn run(args: ServeArgs) -> ExitCode {
    let config = match resolve(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bver serve: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    rt.block_on(serve_until_signal(config))
}

async fn serve_until_signal(config: ServeConfig) -> ExitCode {
    let data = config.data.clone();
    let domains: Vec<String> = config
        .domain
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    let insecure = config.insecure_dev;
    let running = match serve::start(config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("bver serve: {}", e.message);
            return ExitCode::from(2);
        }
    };
    let addr = running.http_addr;
    let base = format!("http://{addr}");
    println!(
        "bver: platform `{}` is serving {}",
        running.platform_id,
        domains.join(", ")
    );
    match &running.sqlite_path {
        Some(p) => println!("  store    sqlite  {}", p.display()),
        None => println!("  store    postgres"),
    }
    println!("  REST     {base}/v1   (OpenAPI {base}/openapi.json)");
    println!("  MCP      {base}/mcp   (Streamable HTTP; stdio: bver mcp)");
    match running.eager_addr {
        Some(a) => println!(
            "  EAGER    quic://{a}   (UDP, ALPN {}, key fingerprint {})",
            crate::federation::Federation::alpn(),
            running.key_fingerprint
        ),
        None => println!("  EAGER    not served (--no-eager)"),
    }
    let subs = running.federation().states();
    if !subs.is_empty() {
        println!(
            "           subscriptions: {}",
            subs.iter()
                .map(|s| format!("{} ({} / {})", s.name, s.peer, s.channel))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!("  health   {base}/healthz  {base}/readyz  keys {base}/.well-known/jwks.json");
    if insecure {
        println!();
        println!(
            "  !!! INSECURE DEV MODE: authentication is DISABLED. Every request runs with every"
        );
        println!(
            "  !!! scope. Never expose this node; restart without --insecure-dev for real use."
        );
    }
    if running.key_created {
        println!();
        println!(
            "  first start: a platform key was made in {}/keys (mode 0600).",
            data.display()
        );
    }
    println!();
    println!("  An administrator token for this node:");
    println!(
        "    bver token issue --data {} --sub admin --ttl 1h --scope '{}'",
        data.display(),
        running.admin_scopes
    );
    println!("  then: curl -H \"Authorization: Bearer $TOKEN\" {base}/v1/refs/...");
    let mut running = running;
    let failed = tokio::select! {
        () = shutdown_signal() => None,
        r = running.wait() => Some(r),
    };
    match failed {
        None => {
            eprintln!("bver: shutting down: finishing in-flight requests");
            match running.shutdown().await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("bver serve: {}", e.message);
                    ExitCode::FAILURE
                }
            }
        }
        Some(r) => {
            if let Err(e) = r {
                eprintln!("bver serve: {}", e.message);
            }
            ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        serve: ServeArgs,
    }

    fn resolved(file: &str) -> Result<ServeConfig, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bver.toml");
        std::fs::write(&path, file).unwrap();
        let cli = Cli::try_parse_from([
            "bver",
            "--domain",
            "d",
            "--data",
            dir.path().to_str().unwrap(),
            "--config",
            path.to_str().unwrap(),
        ])
        .unwrap();
        resolve(cli.serve)
    }

    #[test]
    fn federation_timings_come_from_the_configuration_file() {
        let c = resolved("").unwrap();
        assert_eq!(
            c.federation.idle_timeout,
            bver_eager::transport::DEFAULT_IDLE_TIMEOUT
        );
        assert_eq!(
            c.federation.lease_ttl,
            crate::federation::config::DEFAULT_LEASE_TTL
        );
        let c =
            resolved("eager_idle_timeout = \"2s\"\nsubscription_lease_ttl = \"1500ms\"\n").unwrap();
        assert_eq!(c.federation.idle_timeout, std::time::Duration::from_secs(2));
        assert_eq!(
            c.federation.lease_ttl,
            std::time::Duration::from_millis(1500)
        );
        assert!(
            resolved("eager_idle_timeout = \"0s\"")
                .unwrap_err()
                .contains("above zero")
        );
        assert!(
            resolved("subscription_lease_ttl = \"100ms\"")
                .unwrap_err()
                .contains("at least 250ms")
        );
    }
}
