//! `bver token` and `bver key`: issue and revoke tokens, rotate the platform key.
//!
//! They work on the data directory, as the operator who can read it; a running node picks
//! up revocations and rotations within a second (it polls the files).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bver_auth::{Issuer, Revocations, ScopeSet};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::datadir::DataDir;

/// `bver token ...`.
#[derive(Debug, Args)]
pub(crate) struct TokenArgs {
    #[command(subcommand)]
    command: TokenCommand,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Print a new token signed with the platform key.
    Issue(IssueArgs),
    /// Revoke a token by its id, or every token of a subject issued until now.
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
struct IssueArgs {
    /// The platform's data directory.
    #[arg(long, env = "BVER_DATA")]
    data: PathBuf,
    /// Subject: who the token is for.
    #[arg(long)]
    sub: String,
    /// Scopes, space-separated (repeatable), e.g. 'refs:site:read refs:site:update'.
    #[arg(long = "scope", required = true)]
    scopes: Vec<String>,
    /// Lifetime, e.g. 15m, 1h, 7d.
    #[arg(long, default_value = "1h")]
    ttl: String,
    /// Print the token with its claims as JSON instead of the bare token.
    #[arg(long)]
    json: bool,
    /// Platform id, when the node has never started in this data directory.
    #[arg(long)]
    platform: Option<String>,
    /// Audience [default: the node's].
    #[arg(long)]
    audience: Option<String>,
}

#[derive(Debug, Args)]
struct RevokeArgs {
    /// The platform's data directory.
    #[arg(long, env = "BVER_DATA")]
    data: PathBuf,
    /// The token id (`jti`) to revoke.
    #[arg(long, conflicts_with = "sub", required_unless_present = "sub")]
    jti: Option<String>,
    /// Revoke every token of this subject issued until now.
    #[arg(long)]
    sub: Option<String>,
}

/// `bver key ...`.
#[derive(Debug, Args)]
pub(crate) struct KeyArgs {
    #[command(subcommand)]
    command: KeyCommand,
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Make a new platform key; the old one keeps verifying for `--keep`.
    Rotate(RotateArgs),
}

#[derive(Debug, Args)]
struct RotateArgs {
    /// The platform's data directory.
    #[arg(long, env = "BVER_DATA")]
    data: PathBuf,
    /// How long tokens signed with the old key stay valid (at least the longest token ttl).
    #[arg(long, default_value = "24h")]
    keep: String,
}

pub(super) fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("bver: {message}");
    ExitCode::from(2)
}

pub(crate) fn run_token(args: TokenArgs) -> ExitCode {
    match args.command {
        TokenCommand::Issue(a) => issue(a),
        TokenCommand::Revoke(a) => revoke(a),
    }
}

pub(crate) fn run_key(args: KeyArgs) -> ExitCode {
    match args.command {
        KeyCommand::Rotate(a) => rotate(a),
    }
}

fn issue(a: IssueArgs) -> ExitCode {
    let data = match DataDir::create(&a.data) {
        Ok(d) => d,
        Err(e) => return fail(e.message),
    };
    let identity = match data.identity() {
        Ok(i) => i,
        Err(e) => return fail(e.message),
    };
    let (platform, default_audience) = match (&identity, &a.platform) {
        (Some(id), Some(p)) if &id.platform_id != p => {
            return fail(format!(
                "this data directory belongs to platform `{}`, not `{p}`",
                id.platform_id
            ));
        }
        (Some(id), _) => (id.platform_id.clone(), id.audience.clone()),
        (None, Some(p)) => (p.clone(), p.clone()),
        (None, None) => {
            return fail(format!(
                "{} has no node identity yet: start `bver serve` there once, or pass --platform ID",
                a.data.display()
            ));
        }
    };
    let scopes = match ScopeSet::parse(&a.scopes.join(" ")) {
        Ok(s) => s,
        Err(e) => return fail(format!("--scope: {e}")),
    };
    let audience = a.audience.unwrap_or(default_audience);
    let json_field = a.json.then_some("token");
    sign_and_print(
        &data,
        (platform, audience),
        &a.sub,
        &scopes,
        &a.ttl,
        json_field,
    )
}

/// Sign a token for `sub` with the data directory's current platform key, valid for `ttl`,
/// and print it; with `json_field`, print `{field: token, "claims": ...}` instead. Shared by
/// `bver token issue` and `bver grant issue` (a grant is a token whose audience is this
/// platform and whose subject is the subscriber platform).
pub(super) fn sign_and_print(
    data: &DataDir,
    (issuer, audience): (String, String),
    sub: &str,
    scopes: &ScopeSet,
    ttl: &str,
    json_field: Option<&str>,
) -> ExitCode {
    let ttl: Duration = match humantime::parse_duration(ttl) {
        Ok(t) => t,
        Err(e) => return fail(format!("--ttl `{ttl}`: {e}")),
    };
    let now = bver_auth::unix_now();
    let keys = match data.key_set(now) {
        Ok((k, _)) => k,
        Err(e) => return fail(e.message),
    };
    match Issuer::ed25519(issuer, audience, keys.current()).issue(sub, scopes, ttl, now) {
        Ok(t) => {
            match json_field {
                Some(field) => println!("{}", json!({ field: t.token, "claims": t.claims })),
                None => println!("{}", t.token),
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

fn revoke(a: RevokeArgs) -> ExitCode {
    let data = match DataDir::open(&a.data) {
        Ok(d) => d,
        Err(e) => return fail(e.message),
    };
    let r = Revocations::new();
    match data.revocations() {
        Ok(list) => r.restore(list),
        Err(e) => return fail(e.message),
    }
    let now = bver_auth::unix_now();
    match (&a.jti, &a.sub) {
        (Some(jti), _) => r.revoke_token(jti.clone(), u64::MAX),
        (None, Some(sub)) => r.revoke_issued_before(sub.clone(), now + 1),
        (None, None) => return fail("give --jti or --sub"),
    }
    match data.write_revocations(&r) {
        Ok(()) => {
            println!(
                "revoked; a running node applies it within a second ({} entries)",
                r.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e.message),
    }
}

fn rotate(a: RotateArgs) -> ExitCode {
    let data = match DataDir::open(&a.data) {
        Ok(d) => d,
        Err(e) => return fail(e.message),
    };
    let keep = match humantime::parse_duration(&a.keep) {
        Ok(k) => k,
        Err(e) => return fail(format!("--keep `{}`: {e}", a.keep)),
    };
    let now = bver_auth::unix_now();
    match data.rotate_key(now + keep.as_secs(), now) {
        Ok(kid) => {
            println!(
                "new platform key {kid}; the previous key verifies for {}",
                humantime::format_duration(keep)
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e.message),
    }
}
