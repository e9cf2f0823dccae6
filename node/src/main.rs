//! The `bver` command: see `bver --help`.

use std::process::ExitCode;

fn main() -> ExitCode {
    bver_node::cli::main()
}
