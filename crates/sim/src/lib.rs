//! The snpsim simulation layer: scenario files today (the engine that runs them comes next).
//!
//! [`scenario`] turns a scenario TOML file (design §10) into a typed, validated
//! [`scenario::Scenario`], rejecting bad input with a `FILE:LINE:COLUMN: field ...` message
//! before anything runs.

pub mod scenario;
