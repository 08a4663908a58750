//! The snpsim simulation layer: scenario files, the engine that runs them, invariants, metrics and
//! the cost model.
//!
//! [`scenario`] turns a scenario TOML file into a typed, validated
//! [`scenario::Scenario`], rejecting bad input with a `FILE:LINE:COLUMN: field ...` message
//! before anything runs. [`engine::Simulation`] builds the machine ([`machine`]: the RMP of
//! `snpsim-hw`, the host of `snpsim-host`, KVM of `snpsim-kvm`) and the guest of `snpsim-guest`,
//! runs actions, checks the invariants (`docs/semantics.md` E8; [`invariants`]) and reports the
//! metrics ([`metrics`]) priced by [`cost`].

pub mod adversary;
pub mod budget;
pub mod chrome;
pub mod cost;
pub mod debate;
pub mod engine;
pub mod invariants;
pub mod kernels;
pub mod machine;
pub mod metrics;
pub mod observed;
pub mod outcome;
pub mod prelude;
pub mod replay;
pub mod run;
pub mod scenario;
pub mod schedule;
mod series;
pub mod trace;
pub mod vcpu;
pub mod verdict;
pub mod workload;

pub use engine::{Action, CheckMode, MemoryBacking, RunResult, SimConfig, Simulation};
pub use metrics::Metrics;
pub use outcome::Outcome;
