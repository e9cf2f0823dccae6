//! `bver-tests`: cross-crate, multi-node and fault-injection tests, and benchmarks.
//!
//! The library part holds shared harness helpers; the tests live in `tests/tests/`.
//!
//! **Architecture Invariant:** tests use real parts (SQLite files, PostgreSQL, QUIC over
//! loopback), never mocks of them.
