//! The integration tests of this crate, one module per concern, in one test binary: linking one
//! binary instead of one per file is most of what a fresh `cargo test --workspace` costs on a
//! small machine. Run one module with `cargo test -p CRATE --test it MODULE::`.

mod bad_input;
mod budget;
mod check;
mod cli;
mod commands;
mod common;
mod docs_commands;
mod jobs;
mod report;
mod sweep;
