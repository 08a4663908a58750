//! snpsim traces (`docs/semantics.md` E6; `docs/trace-format.md` documents every field): one JSON
//! object per line per architectural event, with the simulated time and the vCPU or host actor,
//! between a `run` header line that carries everything replay needs (the normalized configuration
//! and the seed) and a final `{"state_hash": "<hex>"}` line over the engine's canonical digest of
//! the whole machine state ([`snpsim_engine::digest`]).
//!
//! The [`Recorder`] is an [`snpsim_engine::events::EventSink`]: it turns the engine's typed events
//! into trace lines; [`codec`] maps the engine's configuration and actions to JSON and back (its errors are
//! [`CodecError`]s), [`names`] spells the engine's values;
//! [`replay`] re-executes a trace and checks it line by line; [`chrome`] exports a trace for
//! Perfetto.
//!
//! [`TraceExt::enable_trace`] makes a run record its trace, which [`replay::replay`] re-executes:
//!
//! ```
//! use snpsim_engine::prelude::*;
//! use snpsim_trace::{TraceExt, TraceMeta};
//!
//! let config = SimConfig::new(policy("gmem").unwrap(), MemoryBacking::Gmem { folio: PageSize::Size2M, shared: VmaBacking::Thp }, 4096, 16384);
//! let mut sim = Simulation::new(config).unwrap();
//! sim.enable_trace(&TraceMeta { scenario: "from code".into(), source: "<library>".into(), ..TraceMeta::default() });
//! sim.step(&Action::Accept { vcpu: 0, gpa: Gpa::new(0), pages: 1024, granularity: None });
//! let trace = String::from_utf8(sim.finish().trace.unwrap()).unwrap();
//! assert!(trace.starts_with("{\"ev\":\"run\""));
//! assert_eq!(snpsim_trace::replay::replay(&trace).unwrap().steps, 1);
//! ```

pub mod chrome;
pub mod codec;
mod error;
mod fields;
pub mod names;
pub mod recorder;
pub mod replay;

pub use codec::{action_from_json, action_json, config_from_json, config_json, costs_from_json, header_json};
pub use error::CodecError;
pub use names::{npf_bits, outcome_name, size_name};
pub use recorder::Recorder;
use snpsim_engine::Simulation;

/// The trace format version written in every `run` header.
pub const FORMAT_VERSION: u64 = 3;

/// Every value of `ev` a trace line can carry (the last line of a run has `state_hash` instead).
pub const EVENTS: &[&str] = &[
    "run",
    "step",
    "step_end",
    "rmpupdate",
    "psmash",
    "pvalidate",
    "rmpadjust",
    "npf",
    "exit",
    "psc",
    "access",
    "host_write",
    "host_pf",
    "host_collapse",
    "implicit_conversion",
    "npt_demotion",
    "npt_demotion_needless",
    "npt_demotion_needed",
    "host_split",
    "host_split_needed",
    "direct_map_split",
    "violation",
    "end",
];

/// What a trace says about the run besides its configuration: shown by tools, checked by replay.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceMeta {
    /// Index of the run in its trace file (0 for the first).
    pub run: u64,
    /// The scenario's name.
    pub scenario: String,
    /// Where the scenario came from (a file, `<embedded ...>`, `<library>`).
    pub source: String,
    /// The scenario's seed.
    pub seed: u64,
    /// A planted bug the run carries (`snpsim check --mutant`), so that replay plants it too.
    pub mutant: Option<snpsim_hw::Mutant>,
}

/// Tracing for a [`Simulation`]: installs a [`Recorder`] as its event sink.
pub trait TraceExt {
    /// Record a trace of this run (`docs/trace-format.md`): the `run` header line now, then every
    /// event of every step. Call it before the first step and after
    /// [`Simulation::set_costs`]. Read the lines with [`Simulation::take_trace`] as the run goes,
    /// and the rest from [`snpsim_engine::RunResult::trace`].
    fn enable_trace(&mut self, meta: &TraceMeta);
}

impl TraceExt for Simulation {
    fn enable_trace(&mut self, meta: &TraceMeta) {
        let rec = Recorder::new(self.config().geometry, meta, self.config(), self.costs());
        self.set_sink(Box::new(rec));
    }
}
