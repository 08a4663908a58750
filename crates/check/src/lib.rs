//! Exhaustive model checking of snpsim on the `tiny` geometry.
//!
//! The state is a whole [`Simulation`](snpsim_engine::engine::Simulation) (RMP, host, KVM, guest) on a machine with 4 pages per
//! paging level; the actions are the scripted steps a guest and a host can take
//! ([`Action`](snpsim_engine::engine::Action)), bounded in depth. Each action runs through the *same* engine as a simulation —
//! there is no second model of the rules — with the whole-state invariant check after every step.
//! The model is a [stateright](https://docs.rs/stateright) `Model`, explored breadth first by
//! [`explore`], which identifies states by a 128-bit digest of their canonical form (never a
//! 64-bit hash);
//! properties are the invariants of `docs/semantics.md` E8 (`always`) and reachability goals
//! (`sometimes`).
//!
//! With two vCPUs the run is interleaved (`[vm] interleave`) and every action is one tick of one
//! vCPU or one host operation, so the checker explores every interleaving of the vCPUs' #NPF
//! handlers, PSMASHes, in-flight windows and page-state-change ranges ([`race_menu`]).

mod explore;
mod fingerprint;
mod model;
pub mod mutants;
pub mod run;

pub use explore::{Discovery, Exploration, explore};
pub use fingerprint::{canonical, digest, write_canonical};
pub use model::{CheckSetup, Key, SnpModel, State, initial_simulation, menu, race_menu, tiny_config};
