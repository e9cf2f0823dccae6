//! `bver contracts check OLD NEW`: is a new version of a contract package a compatible
//! successor of the old one?
//!
//! Compatible means: the same package, a later version with the same major version, and only
//! additions (new types, new optional properties, new `$defs`, changed descriptions). Each
//! incompatibility is printed with the type and the JSON pointer of the change. Exit status
//! 0 when compatible, 1 when not, 2 when a package cannot be loaded.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;

use super::check::{Format, report_errors};
use crate::domain::{self, contract};

/// Arguments of `bver contracts`.
#[derive(Debug, Args)]
pub(crate) struct ContractsArgs {
    #[command(subcommand)]
    command: ContractsCommand,
}

#[derive(Debug, Subcommand)]
enum ContractsCommand {
    /// Say whether NEW is a compatible successor of OLD (only additions within a major
    /// version); exit 0 when it is, 1 when not, each incompatibility explained.
    Check {
        /// The old version's directory (with its `contract.toml`).
        old: PathBuf,
        /// The new version's directory.
        new: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

pub(crate) fn run(args: ContractsArgs) -> ExitCode {
    match args.command {
        ContractsCommand::Check { old, new, format } => check(&old, &new, format),
    }
}

fn check(old: &PathBuf, new: &PathBuf, format: Format) -> ExitCode {
    let (old, new) = match (domain::load_contract(old), domain::load_contract(new)) {
        (Ok(o), Ok(n)) => (o, n),
        (Err(e), _) | (_, Err(e)) => {
            report_errors(&e, format);
            return ExitCode::from(2);
        }
    };
    let report = contract::compare(&old, &new);
    match format {
        Format::Json => println!(
            "{}",
            json!({
                "package": new.name,
                "old": old.version,
                "new": new.version,
                "compatible": report.compatible(),
                "incompatible": report.incompatible,
                "additions": report.additions,
            })
        ),
        Format::Text => {
            let verdict = if report.compatible() {
                "compatible"
            } else {
                "INCOMPATIBLE"
            };
            println!("{} {} -> {}: {verdict}", new.name, old.version, new.version);
            for i in &report.incompatible {
                println!("  incompatible: {i}");
            }
            for a in &report.additions {
                println!("  added: {a}");
            }
            if !report.compatible() && new.major() == old.major() {
                println!(
                    "  hint: these changes need a new major version ({}.0.0), or make them \
                     additive (new optional properties, new types)",
                    old.major() + 1
                );
            }
        }
    }
    if report.compatible() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
