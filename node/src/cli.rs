//! The `bver` command line: argument parsing and dispatch to subcommands.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod ptr;

/// BVER: define the domain, BVER builds the system.
#[derive(Debug, Parser)]
#[command(name = "bver", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with `bver://` pointers.
    Ptr(ptr::PtrArgs),
}

/// Parse the process arguments and run the chosen subcommand.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Ptr(args) => ptr::run(args),
    }
}
