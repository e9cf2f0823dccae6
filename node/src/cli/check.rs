//! `bver check DIR...`: compile a domain definition and report every error, or a summary.
//!
//! Exit status 0 when the definition compiles, 1 when it has errors. Text output puts the
//! summary on stdout and the errors (`file:line:col: error[code]: message` with a hint) on
//! stderr; `--format json` writes one JSON document to stdout in both cases.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use serde_json::{Value, json};

use crate::domain::{self, Domain};

/// Arguments of `bver check`.
#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    /// Bundle or figment directories, or directories that contain them (for example
    /// `packs/example`).
    #[arg(required = true, value_name = "DIR")]
    dirs: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

/// How a command prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// For people: a summary line, or the errors with hints.
    Text,
    /// For programs: one JSON document on stdout.
    Json,
}

pub(crate) fn run(args: CheckArgs) -> ExitCode {
    match domain::load(&args.dirs) {
        Ok(d) => {
            match args.format {
                Format::Text => println!("{}", summary(&d)),
                Format::Json => println!("{}", summary_json(&d)),
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            report_errors(&errors, args.format);
            ExitCode::FAILURE
        }
    }
}

/// Print definition errors: text on stderr, or `{"ok": false, "errors": [...]}` on stdout.
pub(crate) fn report_errors(errors: &domain::DefinitionErrors, format: Format) {
    match format {
        Format::Text => eprintln!("{errors}"),
        Format::Json => println!("{}", json!({"ok": false, "errors": errors.to_json()})),
    }
}

/// `ok: 2 bundles (grid core, drawings plugin), 3 repos, 6 kinds, 2 figments, 35 operations`.
fn summary(d: &Domain) -> String {
    let bundles: Vec<String> = d
        .bundles()
        .iter()
        .map(|b| format!("{} {}", b.name, b.role))
        .collect();
    let kinds: usize = d.ref_types().map(|r| r.kinds.len()).sum();
    format!(
        "ok: {} ({}), {}, {}, {}, {}",
        plural(d.bundles().len(), "bundle"),
        bundles.join(", "),
        plural(d.ref_types().len(), "repo"),
        plural(kinds, "kind"),
        plural(d.figments().len(), "figment"),
        plural(d.operations().len(), "operation"),
    )
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn summary_json(d: &Domain) -> Value {
    let bundles: Vec<Value> = d
        .bundles()
        .iter()
        .map(|b| {
            json!({
                "name": b.name,
                "version": b.version,
                "role": b.role.as_str(),
                "namespaces": b.namespaces,
                "repos": b.repos,
            })
        })
        .collect();
    let repos: Vec<Value> = d
        .ref_types()
        .map(|r| {
            json!({
                "repo": r.repo,
                "namespace": r.namespace,
                "bundle": r.bundle,
                "kinds": r.kinds.keys().collect::<Vec<_>>(),
            })
        })
        .collect();
    let operations: Vec<&str> = d.operations().iter().map(|o| o.name.as_str()).collect();
    json!({
        "ok": true,
        "bundles": bundles,
        "repos": repos,
        "figments": d.figments().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        "operations": operations,
    })
}
