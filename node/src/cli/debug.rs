//! `bver debug ...`: hidden commands that tests and benchmarks drive as separate processes.
//!
//! `bver debug write-burst` writes references as fast as it can from several tasks and prints
//! one `ack` line per write the store acknowledged (after its durable commit). The crash-safety
//! test kills it with SIGKILL mid-burst and checks that every acknowledged write survived and
//! that no half-written mutation is visible; the multi-process test runs two of them against
//! one PostgreSQL database.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use crate::store::{Change, Mutation, Provenance, RefKey, Store, StoreOptions};

/// Arguments of `bver debug`.
#[derive(Debug, Args)]
pub(crate) struct DebugArgs {
    #[command(subcommand)]
    command: DebugCommand,
}

#[derive(Debug, Subcommand)]
enum DebugCommand {
    /// Write references from several tasks, printing `ack ID VERSION SEQ` per durable write.
    WriteBurst(WriteBurstArgs),
}

#[derive(Debug, Args)]
struct WriteBurstArgs {
    /// Data directory of an SQLite store (`bver.db` inside it).
    #[arg(
        long,
        conflicts_with = "postgres",
        required_unless_present = "postgres"
    )]
    data: Option<PathBuf>,
    /// PostgreSQL URL instead of SQLite.
    #[arg(long)]
    postgres: Option<String>,
    /// Writes per task (0: until killed).
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// Concurrent writer tasks.
    #[arg(long, default_value_t = 8)]
    tasks: u64,
    /// Prefix of the ids this process writes (`{prefix}-{task}`), so processes do not collide.
    #[arg(long, default_value = "burst")]
    prefix: String,
    /// Instead of creating new references, every task increments the counter `n` of one
    /// shared reference `{prefix}-shared` with optimistic concurrency (retrying on conflict).
    #[arg(long)]
    shared_counter: Option<String>,
}

pub(crate) fn run(args: DebugArgs) -> ExitCode {
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
    match args.command {
        DebugCommand::WriteBurst(a) => rt.block_on(write_burst(a)),
    }
}

async fn write_burst(a: WriteBurstArgs) -> ExitCode {
    let opened = match (&a.data, &a.postgres) {
        (_, Some(url)) => Store::open_postgres(url, StoreOptions::default()).await,
        (Some(dir), None) => {
            if let Err(e) = std::fs::create_dir_all(dir) {
                eprintln!("cannot create {}: {e}", dir.display());
                return ExitCode::from(2);
            }
            Store::open_sqlite(&dir.join("bver.db"), StoreOptions::default()).await
        }
        (None, None) => unreachable!("clap requires --data or --postgres"),
    };
    let store = match opened {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{}", json!(e));
            return ExitCode::from(2);
        }
    };
    println!("ready");
    let mut tasks = Vec::new();
    for t in 0..a.tasks {
        let store = store.clone();
        let prefix = a.prefix.clone();
        let shared = a.shared_counter.clone();
        let count = a.count;
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while count == 0 || i < count {
                i += 1;
                let prov = Provenance {
                    principal: format!("{prefix}-{t}"),
                    operation: "debug.write_burst".into(),
                    request_id: format!("{prefix}-{t}-{i}"),
                };
                let result = match &shared {
                    Some(id) => increment(&store, id, prov).await,
                    None => {
                        let key = RefKey::new("burst", "item", format!("{prefix}-{t}-{i}"));
                        let change = Change::Create {
                            kind: None,
                            value: json!({ "task": t, "i": i, "pad": "x".repeat(64) }),
                        };
                        store.mutate(Mutation::new(key, change, prov)).await
                    }
                };
                match result {
                    Ok(c) => {
                        let mut out = std::io::stdout().lock();
                        let _ = writeln!(out, "ack {} {} {}", c.key.id, c.version, c.seq);
                        let _ = out.flush();
                    }
                    Err(e) => {
                        eprintln!("{}", json!(e));
                        return false;
                    }
                }
            }
            true
        }));
    }
    let mut ok = true;
    for t in tasks {
        ok &= t.await.unwrap_or(false);
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Read-modify-write of `{"n": ...}` with optimistic concurrency; retries on conflict.
async fn increment(
    store: &Store,
    id: &str,
    prov: Provenance,
) -> Result<crate::store::Committed, bver_contracts::BverError> {
    let key = RefKey::new("burst", "counter", id);
    loop {
        let (expected, n) = match store.get(&key).await? {
            Some(c) => (c.version, c.value["n"].as_u64().unwrap_or(0)),
            None => (0, 0),
        };
        let change = if expected == 0 {
            Change::Create {
                kind: None,
                value: json!({ "n": 1 }),
            }
        } else {
            Change::Replace {
                value: json!({ "n": n + 1 }),
            }
        };
        let mut m = Mutation::new(key.clone(), change, prov.clone());
        m.expected_version = Some(expected);
        match store.mutate(m).await {
            Err(e)
                if matches!(
                    e.code,
                    bver_contracts::ErrorCode::VersionConflict
                        | bver_contracts::ErrorCode::AlreadyExists
                ) =>
            {
                continue;
            }
            other => return other,
        }
    }
}
