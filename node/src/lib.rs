//! `bver-node`: the BVER platform node and the `bver` command.
//!
//! Owns everything with I/O on a platform: the command line, storage (sqlx: SQLite and
//! PostgreSQL), the operation broker, REST and MCP surfaces, and wiring EAGER to the store.
//!
//! **Architecture Invariant:** every surface goes through the one operation broker; no
//! surface re-implements auth, validation or storage.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod broker;
pub mod cli;
pub mod datadir;
pub mod domain;
pub mod federation;
pub mod mcp;
pub mod serve;
pub mod store;
