//! `bver mcp`: the domain over MCP on stdin/stdout, for desktop MCP clients.
//!
//! Opens the platform exactly as `bver serve` does (`serve::platform::open`: domain, data
//! directory, keys, store, broker), verifies the token given in `BVER_TOKEN` or `--token`
//! against the data directory's keys, and serves [`crate::mcp::McpServer`] on stdio as that
//! token's principal. There is no implicit superuser: without a valid token it exits 2.
//! stdout carries only MCP messages; logs go to stderr (`BVER_LOG`, default `warn`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;

use crate::mcp::{Caller, McpServer};
use crate::serve::{LogFormat, ServeConfig, platform};

/// Arguments of `bver mcp`.
#[derive(Debug, Args)]
pub(crate) struct McpArgs {
    /// Domain directories: the core app, then any plugins.
    #[arg(long, env = "BVER_DOMAIN", value_delimiter = ',', num_args = 1.., required = true)]
    domain: Vec<PathBuf>,
    /// Data directory of the platform (keys, identity, the SQLite store).
    #[arg(long, env = "BVER_DATA")]
    data: PathBuf,
    /// Store in PostgreSQL at this URL instead of SQLite in the data directory.
    #[arg(long, env = "BVER_POSTGRES")]
    postgres: Option<String>,
    /// The bearer token whose principal every request runs as (prefer BVER_TOKEN: a flag is
    /// visible in the process list).
    #[arg(long, env = "BVER_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

pub(crate) fn run(args: McpArgs) -> ExitCode {
    super::serve::init_logging_default(LogFormat::Text, "warn");
    let Some(token) = args.token.filter(|t| !t.trim().is_empty()) else {
        eprintln!(
            "bver mcp: give a token in BVER_TOKEN (or --token); get one with `bver token issue`"
        );
        return ExitCode::from(2);
    };
    let mut config = ServeConfig::new(args.domain, args.data);
    config.postgres = args.postgres;
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bver mcp: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    rt.block_on(async move {
        let platform = match platform::open(&config).await {
            Ok(p) => p,
            Err(e) => {
                eprintln!("bver mcp: {}", e.message);
                return ExitCode::from(2);
            }
        };
        let verifier = Arc::new(platform.verifier);
        if let Err(e) = verifier.verify_now(token.trim()) {
            eprintln!("bver mcp: the token is not accepted: {e}");
            return ExitCode::from(2);
        }
        let caller = Caller::Token {
            token: token.trim().to_owned(),
            verifier,
        };
        let broker = match crate::broker::Broker::new(platform.domain.clone(), platform.store) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("bver mcp: {}", e.message);
                return ExitCode::from(2);
            }
        };
        let server = match McpServer::new(broker, platform.identity.platform_id, caller, None) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("bver mcp: {}", e.message);
                return ExitCode::from(2);
            }
        };
        match crate::mcp::serve_stdio(server).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bver mcp: {}", e.message);
                ExitCode::FAILURE
            }
        }
    })
}
