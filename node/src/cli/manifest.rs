//! `bver manifest DIR... [--out OUT]`: compile a domain definition and write one
//! `bver.manifest.json` per bundle.
//!
//! Without `--out` each manifest goes into its bundle's directory, beside `bundle.toml`;
//! with `--out OUT` to `OUT/<bundle>/bver.manifest.json`. Exit status 0 when every manifest
//! was written, 1 on definition errors (reported as by `bver check`) or a write failure.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use super::check::{Format, report_errors};
use crate::domain;

/// Arguments of `bver manifest`.
#[derive(Debug, Args)]
pub(crate) struct ManifestArgs {
    /// Bundle or figment directories, or directories that contain them.
    #[arg(required = true, value_name = "DIR")]
    dirs: Vec<PathBuf>,
    /// Write `OUT/<bundle>/bver.manifest.json` instead of into each bundle's directory.
    #[arg(long, value_name = "OUT")]
    out: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
}

pub(crate) fn run(args: ManifestArgs) -> ExitCode {
    let domain = match domain::load(&args.dirs) {
        Ok(d) => d,
        Err(errors) => {
            report_errors(&errors, args.format);
            return ExitCode::FAILURE;
        }
    };
    match domain::manifest::write_all(&domain, args.out.as_deref()) {
        Ok(paths) => {
            match args.format {
                Format::Text => {
                    for p in &paths {
                        println!("wrote {}", p.display());
                    }
                }
                Format::Json => {
                    let written: Vec<String> =
                        paths.iter().map(|p| p.display().to_string()).collect();
                    println!("{}", json!({"ok": true, "written": written}));
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bver manifest: cannot write the manifests: {e}");
            ExitCode::FAILURE
        }
    }
}
