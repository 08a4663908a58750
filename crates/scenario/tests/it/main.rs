//! The scenario crate's integration tests, one binary.

mod budget;
mod common;
mod examples;
mod ranges;
mod scenario;
mod workload;
