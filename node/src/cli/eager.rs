//! Federation commands: `bver node id`, `bver peer add|list|remove`, `bver grant issue`,
//! `bver subscriptions`.
//!
//! They work on the data directory. Peers added here go to `DATA/peers.json`, which
//! `bver serve` merges with the `[[peers]]` of its configuration at start. The live state
//! comes from `DATA/federation.json`, which a running node rewrites twice a second.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use bver_auth::ScopeSet;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::token::{fail, sign_and_print};
use crate::datadir::DataDir;
use crate::federation::config::{parse_fingerprint, read_peers_file, write_peers_file};
use crate::federation::{PeerEntry, fingerprint_hex, status_path};

/// `bver node ...`.
#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    #[command(subcommand)]
    command: NodeCommand,
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// Print this platform's id, key fingerprint and EAGER address (what a peer configures).
    Id(IdArgs),
}

#[derive(Debug, Args)]
struct IdArgs {
    /// The platform's data directory.
    #[arg(long, env = "BVER_DATA")]
    data: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// Initialise the data directory for this platform id (key and identity) if the node
    /// has never started there, so that peers can be configured before the first start.
    #[arg(long)]
    platform: Option<String>,
}

/// `bver peer ...`.
#[derive(Debug, Args)]
pub(crate) struct PeerArgs {
    #[command(subcommand)]
    command: PeerCommand,
}

#[derive(Debug, Subcommand)]
enum PeerCommand {
    /// Add (or replace) a peer platform: its id, EAGER address, pinned key fingerprints,
    /// the namespaces it owns, and the grant it issued to this platform.
    Add(PeerAddArgs),
    /// List the peers of the data directory.
    List(DataArg),
    /// Remove a peer.
    Remove(PeerRemoveArgs),
}

#[derive(Debug, Args)]
struct DataArg {
    /// The platform's data directory.
    #[arg(long, env = "BVER_DATA")]
    data: PathBuf,
}

#[derive(Debug, Args)]
struct PeerAddArgs {
    /// The platform's data directory.
    #[arg(long, env = "BVER_DATA")]
    data: PathBuf,
    /// The peer's platform id.
    #[arg(long)]
    id: String,
    /// Its EAGER address (host:port, UDP).
    #[arg(long)]
    addr: Option<SocketAddr>,
    /// A pinned key fingerprint (hex; repeatable).
    #[arg(long = "fingerprint", required = true)]
    fingerprints: Vec<String>,
    /// A namespace it owns (repeatable): its pointers resolve at this peer.
    #[arg(long = "namespace")]
    namespaces: Vec<String>,
    /// The grant it issued to this platform (`bver grant issue` there).
    #[arg(long)]
    grant: Option<String>,
}

#[derive(Debug, Args)]
struct PeerRemoveArgs {
    /// The platform's data directory.
    #[arg(long, env = "BVER_DATA")]
    data: PathBuf,
    /// The peer's platform id.
    #[arg(long)]
    id: String,
}

/// `bver grant ...`.
#[derive(Debug, Args)]
pub(crate) struct GrantArgs {
    #[command(subcommand)]
    command: GrantCommand,
}

#[derive(Debug, Subcommand)]
enum GrantCommand {
    /// Print a grant for a subscriber platform: a JWT signed by this platform, audience this
    /// platform, subject the subscriber, with `eager:subscribe:CHANNEL` and
    /// `eager:resolve:NAMESPACE` scopes. Revoke it with `bver token revoke`.
    Issue(GrantIssueArgs),
}

#[derive(Debug, Args)]
struct GrantIssueArgs {
    /// This (the publishing) platform's data directory.
    #[arg(long, env = "BVER_DATA")]
    data: PathBuf,
    /// The subscriber's platform id.
    #[arg(long)]
    sub: String,
    /// A channel it may subscribe to (repeatable).
    #[arg(long = "channel")]
    channels: Vec<String>,
    /// A namespace it may resolve (repeatable).
    #[arg(long = "namespace")]
    namespaces: Vec<String>,
    /// Lifetime, e.g. 30d.
    #[arg(long, default_value = "30d")]
    ttl: String,
    /// Print the grant with its claims as JSON.
    #[arg(long)]
    json: bool,
}

/// `bver subscriptions`.
#[derive(Debug, Args)]
pub(crate) struct SubscriptionsArgs {
    /// The platform's data directory.
    #[arg(long, env = "BVER_DATA")]
    data: PathBuf,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run_node(args: NodeArgs) -> ExitCode {
    match args.command {
        NodeCommand::Id(a) => node_id(a),
    }
}

pub(crate) fn run_peer(args: PeerArgs) -> ExitCode {
    match args.command {
        PeerCommand::Add(a) => peer_add(a),
        PeerCommand::List(a) => peer_list(a),
        PeerCommand::Remove(a) => peer_remove(a),
    }
}

pub(crate) fn run_grant(args: GrantArgs) -> ExitCode {
    match args.command {
        GrantCommand::Issue(a) => grant_issue(a),
    }
}

fn status(data: &DataDir) -> Option<Value> {
    let bytes = std::fs::read(status_path(data)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Whether the status file was written recently (the node is running).
fn is_live(status: &Value) -> bool {
    status["updated_at"]
        .as_u64()
        .is_some_and(|t| bver_auth::unix_now().saturating_sub(t) <= 5)
}

fn node_id(a: IdArgs) -> ExitCode {
    let data = match &a.platform {
        Some(_) => DataDir::create(&a.data),
        None => DataDir::open(&a.data),
    };
    let data = match data {
        Ok(d) => d,
        Err(e) => return fail(e.message),
    };
    let identity = match (data.identity(), &a.platform) {
        (Ok(Some(i)), Some(p)) if &i.platform_id != p => {
            return fail(format!(
                "this data directory belongs to platform `{}`, not `{p}`",
                i.platform_id
            ));
        }
        (Ok(Some(i)), _) => i,
        (Ok(None), Some(p)) => {
            let id = crate::datadir::Identity {
                platform_id: p.clone(),
                audience: p.clone(),
            };
            if let Err(e) = data.write_identity(&id) {
                return fail(e.message);
            }
            id
        }
        (Ok(None), None) => {
            return fail(format!(
                "{} has no node identity yet: start `bver serve` there once, or pass --platform ID",
                a.data.display()
            ));
        }
        (Err(e), _) => return fail(e.message),
    };
    let keys = match data.key_set(bver_auth::unix_now()) {
        Ok((k, _)) => k,
        Err(e) => return fail(e.message),
    };
    let fp = fingerprint_hex(&keys.current().public_key().fingerprint());
    let st = status(&data);
    let eager = st
        .as_ref()
        .and_then(|s| s["eager"].as_str().map(str::to_owned));
    let live = st.as_ref().is_some_and(is_live);
    if a.json {
        println!(
            "{}",
            json!({
                "platform": identity.platform_id,
                "fingerprint": fp,
                "eager": eager,
                "alpn": crate::federation::Federation::alpn(),
                "running": live,
            })
        );
    } else {
        println!("platform     {}", identity.platform_id);
        println!("fingerprint  {fp}");
        match eager {
            Some(addr) => println!(
                "eager        {addr}{}",
                if live {
                    ""
                } else {
                    " (last run; not running now)"
                }
            ),
            None => println!("eager        unknown (the node has not served EAGER yet)"),
        }
        println!(
            "\na peer adds it with:\n  bver peer add --data PEER_DATA --id {} --fingerprint {fp}{}",
            identity.platform_id,
            st.as_ref()
                .and_then(|s| s["eager"].as_str())
                .map(|a| format!(" --addr {a}"))
                .unwrap_or_default()
        );
    }
    ExitCode::SUCCESS
}

fn peer_add(a: PeerAddArgs) -> ExitCode {
    let data = match DataDir::create(&a.data) {
        Ok(d) => d,
        Err(e) => return fail(e.message),
    };
    for f in &a.fingerprints {
        if let Err(e) = parse_fingerprint(f) {
            return fail(e.message);
        }
    }
    if let Ok(Some(id)) = data.identity()
        && id.platform_id == a.id
    {
        return fail(format!("`{}` is this platform itself", a.id));
    }
    let mut peers = match read_peers_file(data.root()) {
        Ok(p) => p,
        Err(e) => return fail(e.message),
    };
    let entry = PeerEntry {
        id: a.id.clone(),
        addr: a.addr,
        fingerprints: a.fingerprints,
        namespaces: a.namespaces,
        grant: a.grant,
    };
    match peers.iter_mut().find(|p| p.id == a.id) {
        Some(p) => *p = entry,
        None => peers.push(entry),
    }
    match write_peers_file(data.root(), &peers) {
        Ok(()) => {
            println!(
                "peer `{}` saved in {}/peers.json; restart `bver serve` to use it",
                a.id,
                data.root().display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e.message),
    }
}

fn peer_list(a: DataArg) -> ExitCode {
    match read_peers_file(&a.data) {
        Ok(peers) => {
            let redacted: Vec<Value> = peers
                .iter()
                .map(|p| {
                    json!({
                        "id": p.id,
                        "addr": p.addr,
                        "fingerprints": p.fingerprints,
                        "namespaces": p.namespaces,
                        "grant": p.grant.as_ref().map(|_| "(set)"),
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&redacted).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e.message),
    }
}

fn peer_remove(a: PeerRemoveArgs) -> ExitCode {
    let mut peers = match read_peers_file(&a.data) {
        Ok(p) => p,
        Err(e) => return fail(e.message),
    };
    let before = peers.len();
    peers.retain(|p| p.id != a.id);
    if peers.len() == before {
        return fail(format!("no peer `{}`", a.id));
    }
    match write_peers_file(&a.data, &peers) {
        Ok(()) => {
            println!("peer `{}` removed; restart `bver serve` to apply", a.id);
            ExitCode::SUCCESS
        }
        Err(e) => fail(e.message),
    }
}

fn grant_issue(a: GrantIssueArgs) -> ExitCode {
    if a.channels.is_empty() && a.namespaces.is_empty() {
        return fail("give at least one --channel or --namespace");
    }
    let data = match DataDir::open(&a.data) {
        Ok(d) => d,
        Err(e) => return fail(e.message),
    };
    let platform = match data.identity() {
        Ok(Some(i)) => i.platform_id,
        Ok(None) => {
            return fail(format!(
                "{} has no node identity yet: start `bver serve` there once",
                a.data.display()
            ));
        }
        Err(e) => return fail(e.message),
    };
    let scopes: Vec<String> = a
        .channels
        .iter()
        .map(|c| format!("eager:subscribe:{c}"))
        .chain(a.namespaces.iter().map(|n| format!("eager:resolve:{n}")))
        .collect();
    let scopes = match ScopeSet::parse(&scopes.join(" ")) {
        Ok(s) => s,
        Err(e) => return fail(format!("scopes: {e}")),
    };
    // A grant: issuer and audience are this platform, the subject the subscriber platform.
    let json_field = a.json.then_some("grant");
    sign_and_print(
        &data,
        (platform.clone(), platform),
        &a.sub,
        &scopes,
        &a.ttl,
        json_field,
    )
}

pub(crate) fn run_subscriptions(a: SubscriptionsArgs) -> ExitCode {
    let data = match DataDir::open(&a.data) {
        Ok(d) => d,
        Err(e) => return fail(e.message),
    };
    let Some(st) = status(&data) else {
        return fail(format!(
            "no federation status in {}: is `bver serve` running there?",
            a.data.display()
        ));
    };
    let live = is_live(&st);
    if a.json {
        let mut st = st;
        st["running"] = json!(live);
        println!("{st}");
        return ExitCode::SUCCESS;
    }
    if !live {
        println!("(the node is not running: last known state)");
    }
    let subs = st["subscriptions"].as_array().cloned().unwrap_or_default();
    if subs.is_empty() {
        println!("no subscriptions");
        return ExitCode::SUCCESS;
    }
    let lease = &st["lease"];
    if lease["runner"].as_bool() == Some(true) {
        println!(
            "this process runs the subscriptions (lease generation {})",
            lease["generation"].as_u64().unwrap_or(0)
        );
    } else if let Some(holder) = lease["current_holder"].as_str() {
        println!(
            "standby: {holder} runs the subscriptions (lease generation {}); cursors as persisted",
            lease["generation"].as_u64().unwrap_or(0)
        );
    }
    println!(
        "{:<28} {:<10} {:<16} {:>10} {:>8} {:>8}  last error",
        "NAME", "STATE", "PEER/CHANNEL", "CURSOR", "LAG", "LAG_S"
    );
    for s in subs {
        let state = if s["runner"].as_bool() == Some(false) {
            "standby"
        } else if s["stopped"].as_bool() == Some(true) {
            "stopped"
        } else if s["connected"].as_bool() == Some(true) {
            "connected"
        } else {
            "connecting"
        };
        println!(
            "{:<28} {:<10} {:<16} {:>10} {:>8} {:>8.3}  {}",
            s["name"].as_str().unwrap_or(""),
            state,
            format!(
                "{}/{}",
                s["peer"].as_str().unwrap_or(""),
                s["channel"].as_str().unwrap_or("")
            ),
            s["seq"].as_u64().unwrap_or(0),
            s["lag_events"].as_u64().unwrap_or(0),
            s["lag_seconds"].as_f64().unwrap_or(0.0),
            s["last_error"].as_str().unwrap_or("-"),
        );
    }
    ExitCode::SUCCESS
}
