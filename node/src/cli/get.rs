//! `bver get POINTER --data DIR`: resolve a pointer against a platform's store.
//!
//! Reads the store directly, as the operator who has the data directory (no token: whoever
//! can read the directory can read the database). Prints the resolution as one JSON object
//! (`pointer`, `reference`, `version`, `kind`, `value`, `updated_at`, `source`) and exits 0,
//! or prints the structured error as JSON and exits 1 (2 when the store cannot be opened).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use bver_contracts::{BverError, RefPtr};
use bver_resolver::Resolver;
use clap::Args;
use serde_json::json;

use crate::broker::LocalAdapter;
use crate::store::{Store, StoreOptions};

/// Arguments of `bver get`.
#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// The pointer: `bver://{namespace}/{repo}/{id}[@attribute.path]`.
    pointer: String,
    /// The platform's data directory (its SQLite store is `bver.db` inside it).
    #[arg(
        long,
        env = "BVER_DATA",
        conflicts_with = "postgres",
        required_unless_present = "postgres"
    )]
    data: Option<PathBuf>,
    /// A PostgreSQL URL instead of the data directory's SQLite store.
    #[arg(long, env = "BVER_POSTGRES")]
    postgres: Option<String>,
}

pub(crate) fn run(args: GetArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    rt.block_on(get(args))
}

fn print_error(e: &BverError) {
    println!("{}", json!({ "ok": false, "error": e }));
}

async fn get(args: GetArgs) -> ExitCode {
    let pointer = match RefPtr::parse(&args.pointer) {
        Ok(p) => p,
        Err(e) => {
            print_error(&e.into());
            return ExitCode::FAILURE;
        }
    };
    let opened = match (&args.data, &args.postgres) {
        (_, Some(url)) => Store::open_postgres(url, StoreOptions::default()).await,
        (Some(dir), None) => {
            let file = dir.join("bver.db");
            if !file.exists() {
                eprintln!(
                    "{} has no store (bver.db); is it a BVER data directory?",
                    dir.display()
                );
                return ExitCode::from(2);
            }
            Store::open_sqlite(&file, StoreOptions::default()).await
        }
        (None, None) => {
            eprintln!("give --data DIR or --postgres URL");
            return ExitCode::from(2);
        }
    };
    let store = match opened {
        Ok(s) => s,
        Err(e) => {
            print_error(&e);
            return ExitCode::from(2);
        }
    };
    let mut resolver = Resolver::new();
    resolver.route(pointer.namespace(), Arc::new(LocalAdapter::new(store)));
    match resolver.resolve(&pointer).await {
        Ok(r) => {
            println!(
                "{}",
                json!({
                    "pointer": r.pointer.to_string(),
                    "reference": r.pointer.reference_str(),
                    "version": r.version,
                    "kind": r.kind,
                    "value": r.value,
                    "updated_at": crate::broker::rfc3339(r.updated_at),
                    "source": r.source.as_str(),
                })
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            print_error(&e);
            ExitCode::FAILURE
        }
    }
}
