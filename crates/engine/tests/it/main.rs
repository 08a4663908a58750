//! The engine's integration tests, one binary (linking dominates `cargo test` on few cores).

mod attacks;
mod calibration;
mod common;
mod coverage;
mod events;
mod interleave;
mod invariants;
mod memory;
mod outcomes;
