//! The snpsim engine: the machine, its vCPUs and their scheduler, the invariants, the metrics, the
//! cost model and the adversary, emitting typed events to a sink.
//!
//! [`engine::Simulation`] builds the machine ([`machine`]: the RMP of `snpsim-hw`, the host of
//! `snpsim-host`, KVM of `snpsim-kvm`) and the guest of `snpsim-guest` from a [`SimConfig`], runs
//! [`Action`]s, checks the invariants (`docs/semantics.md` E8; [`invariants`]) and reports the
//! metrics ([`metrics`]) priced by [`cost`]. Every architectural event goes to the run's
//! [`events::EventSink`], if it has one (the JSONL trace of `snpsim-trace` is one); the
//! [`state`] digest of the final state lets a sink prove a re-execution ended the same. Scenario files
//! become configurations in `snpsim-scenario`.

pub mod action;
pub mod adversary;
pub mod backing;
pub mod cost;
pub mod digest;
pub mod engine;
pub mod events;
pub mod footprint;
pub mod invariants;
pub mod kernels;
pub mod machine;
pub mod measure;
pub mod metrics;
pub mod names;
pub mod observed;
pub mod outcome;
pub mod prelude;
pub mod rng;
pub mod schedule;
mod series;
pub mod state;
pub mod vcpu;

pub use engine::{Action, CheckMode, MemoryBacking, RunResult, SimConfig, Simulation};
pub use metrics::Metrics;
pub use outcome::Outcome;
