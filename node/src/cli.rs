//! The `bver` command line: argument parsing and dispatch to subcommands.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod check;
mod contracts;
mod debug;
mod eager;
mod get;
mod manifest;
mod mcp;
mod ptr;
mod serve;
mod token;

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
    /// Compile a domain definition and report every error (exit 1), or a summary (exit 0).
    Check(check::CheckArgs),
    /// Compile a domain definition and write one `bver.manifest.json` per bundle.
    Manifest(manifest::ManifestArgs),
    /// Resolve a pointer against a platform's store and print it as JSON.
    Get(get::GetArgs),
    /// Work with contract packages (`bver contracts check OLD NEW`).
    Contracts(contracts::ContractsArgs),
    /// Run a platform node: REST + OpenAPI, JWT-scoped, with health and metrics.
    Serve(Box<serve::ServeArgs>),
    /// Serve the domain over MCP on stdin/stdout (for desktop MCP clients), as one token's
    /// principal.
    Mcp(mcp::McpArgs),
    /// Issue and revoke the platform's tokens.
    Token(token::TokenArgs),
    /// Manage the platform key (rotation).
    Key(token::KeyArgs),
    /// This platform's identity on EAGER (`bver node id`).
    Node(eager::NodeArgs),
    /// Peer platforms: add, list, remove.
    Peer(eager::PeerArgs),
    /// Grants for subscriber platforms (`bver grant issue`).
    Grant(eager::GrantArgs),
    /// The live state of this platform's subscriptions.
    Subscriptions(eager::SubscriptionsArgs),
    /// Commands for tests and benchmarks (not a stable interface).
    #[command(hide = true)]
    Debug(debug::DebugArgs),
}

/// Parse the process arguments and run the chosen subcommand.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Ptr(args) => ptr::run(args),
        Command::Check(args) => check::run(args),
        Command::Manifest(args) => manifest::run(args),
        Command::Get(args) => get::run(args),
        Command::Contracts(args) => contracts::run(args),
        Command::Serve(args) => serve::run(*args),
        Command::Mcp(args) => mcp::run(args),
        Command::Token(args) => token::run_token(args),
        Command::Key(args) => token::run_key(args),
        Command::Node(args) => eager::run_node(args),
        Command::Peer(args) => eager::run_peer(args),
        Command::Grant(args) => eager::run_grant(args),
        Command::Subscriptions(args) => eager::run_subscriptions(args),
        Command::Debug(args) => debug::run(args),
    }
}
