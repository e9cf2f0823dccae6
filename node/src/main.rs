//! The `bver` command: see `bver --help`.

use std::process::ExitCode;

/// mimalloc instead of the system allocator, for Rust and (through its `override` feature) for
/// SQLite's C code: glibc's malloc was about a quarter of a durable patch's CPU, most of it
/// consolidating free lists. docs/PERFORMANCE.md has the before and after.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    bver_node::cli::main()
}
