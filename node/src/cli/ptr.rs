//! `bver ptr`: parse pointers and print their parts or structured errors as JSON.

use std::process::ExitCode;

use clap::{Args, Subcommand};

/// Arguments of `bver ptr`.
#[derive(Debug, Args)]
pub(crate) struct PtrArgs {
    #[command(subcommand)]
    command: PtrCommand,
}

#[derive(Debug, Subcommand)]
enum PtrCommand {
    /// Parse a pointer (or `-` to read one per line from stdin) and print it as JSON.
    Parse {
        /// The pointer, or `-` for stdin.
        pointer: String,
    },
}

pub(crate) fn run(args: PtrArgs) -> ExitCode {
    match args.command {
        PtrCommand::Parse { pointer } => {
            eprintln!("bver ptr parse {pointer}: the pointer parser is being built");
            ExitCode::FAILURE
        }
    }
}
