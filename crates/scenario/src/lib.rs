//! Scenario files: TOML in, typed and validated [`Scenario`] out, translated into engine
//! configurations and run.
//!
//! The modules beside the format: [`budget`] refuses a scenario whose estimated memory exceeds a
//! budget before anything is allocated, [`workload`] generates a `[workload]`'s guest and host
//! actions, and [`run`] turns a scenario into a `snpsim_engine::SimConfig` and actions and drives
//! one run (traced or not) to a [`run::ScenarioRun`].
//!
//! Everything a run needs is checked here, before anything runs: TOML syntax, unknown fields and
//! values, types, ranges, alignment of every `gpa` and `size`, ranges inside guest memory, guest
//! memory within host memory, vCPU indices, the policy/backing era, and `[expect]` metric names.
//! Each failure is one [`ScenarioError`] naming file, line, column and field and listing the
//! accepted values (the CLI exits 2 on it). Nothing here panics on any input.
//!
//! ```
//! use snpsim_scenario::{parse_scenario, Policy};
//!
//! let s = parse_scenario("demo.toml", r#"
//!     name = "demo"
//!     [machine]
//!     host_memory = "16GiB"
//!     [vm]
//!     memory = "4GiB"
//!     policy = "npt-demote"
//!     backing = "thp"
//!     [[step]]
//!     op = "psc"
//!     gpa = "0x200000"
//!     size = "2MiB"
//!     to = "private"
//! "#).unwrap();
//! assert_eq!(s.vm.policy.name(), "npt-demote");
//!
//! let bad = "name = \"x\"\n[machine]\nhost_memory = \"16GiB\"\n\
//!            [vm]\nmemory = \"4GiB\"\npolicy = \"foo\"\nbacking = \"thp\"\n";
//! let err = parse_scenario("bad.toml", bad).unwrap_err();
//! assert!(err.to_string().starts_with("bad.toml:6:10: field `vm.policy`: unknown value \"foo\""));
//! ```
//!
//! Choices the design leaves open, made here:
//! - Required: `name`, `machine.host_memory`, `vm.memory`, `vm.policy`, `vm.backing`, and per
//!   step `op`, `gpa`, plus `to` (psc), `kind` (access), `vmpl` and `perms` (rmpadjust), `mode`
//!   (recoalesce, unless `guest.recoalesce` is not `none`); per steady phase `duration`.
//! - Sizes are integers with a unit (`B`, `KiB`..`TiB`) or plain integers (bytes); addresses are
//!   `0x` hex strings or integers. `vm.memory` and `machine.host_memory` are non-zero multiples of
//!   4 KiB; with a hugetlbfs or a `gmem-2m`/`gmem-1g` backing `vm.memory` is a multiple of that
//!   page (hugetlbfs and huge-folio guest_memfd files are whole pages).
//! - `vm.vcpus` is 1–4096 (KVM_MAX_VCPUS); `guest.ghcb_entries` 1–253; `vm.step_budget` ≥ 1.
//! - `vm.shared_backing` must be a VMA backing; in the gmem era it defaults to `thp`. In the
//!   legacy era it is kept as written but has no effect (the VMA is `vm.backing` itself; see
//!   [`Vm::vma_backing`]), so one file can be compared across both eras.
//! - A scenario may have both `[[step]]`s and a `[workload]` (the design's own example does): the
//!   steps run first, from the post-launch state, then the workload's phases. With neither, only
//!   the VM's launch runs. `punch_hole` steps need the `gmem` policy; a `teardown` step needs a
//!   guest_memfd policy and must come last, with no `[workload]` (the VM is gone after it).
//! - `pvalidate`/`rmpadjust` `size` is the geometry's 4K or 2M page; a 2M one at a gpa that is not
//!   2M-aligned is left to the hardware (FAIL_INPUT). `access` takes a range (`size`, default
//!   4 KiB): one access per 4 KiB page. `pvalidate.validate` defaults to true, `host_*.via` to
//!   `vmm`. A `recoalesce` step's `mode` defaults to `guest.recoalesce`.
//! - Field paths in messages index steps from 0 (`step[0].gpa`).

pub mod budget;
pub mod document;
mod error;
mod expect;
mod names;
pub(crate) mod parse;
pub mod run;
mod step;
pub mod tree;
mod units;
pub mod workload;

use std::path::Path;

use snpsim_defs::PAGE_SIZE_4K;
use snpsim_hw::Geometry;

use snpsim_engine::cost::CostTable;
use snpsim_trace::TraceMeta;

pub use error::{ErrorKind, ScenarioError, Sources, Span};
pub use expect::{
    CmpOp, Expect, ExpectError, Expectations, METRIC_FAMILIES, METRICS, NPT_COVERAGE_LEVELS,
    check_expect_value, check_metric_name, family_members,
};
pub use names::{
    AcceptMode, AccessKind, Allocation, Backing, Cause, Era, Granularity, GuestParams, HostVia, Named,
    Outcome, PageState, Policy, Preset, PscOrder, PscProtocol, Reason, Recoalesce, TouchPattern, UnknownName,
    accepted_policies, policies,
};
pub use step::{Step, StepKind, StepOp, parse_perms};
pub use units::{Size, UnitError, parse_duration, parse_gpa, parse_size};

/// The trace metadata of a scenario's runs (here rather than in `snpsim-trace`, which knows no
/// scenarios).
pub trait TraceMetaExt {
    /// The metadata of run `run` of a trace file for scenario `s` read from `source`.
    fn for_scenario(s: &Scenario, source: &str, run: u64) -> Self;
}

impl TraceMetaExt for TraceMeta {
    fn for_scenario(s: &Scenario, source: &str, run: u64) -> Self {
        TraceMeta { run, scenario: s.name.clone(), source: source.to_string(), seed: s.seed, mutant: None }
    }
}

/// A validated scenario.
#[derive(Clone, Debug, PartialEq)]
pub struct Scenario {
    /// `name`.
    pub name: String,
    /// `seed` (default 0): the only source of randomness of a run.
    pub seed: u64,
    /// `[machine]`.
    pub machine: Machine,
    /// `[vm]`.
    pub vm: Vm,
    /// `[guest]`.
    pub guest: GuestConfig,
    /// `[[step]]`s in file order; they run before the workload, if there is one.
    pub steps: Vec<Step>,
    /// `[workload]`, if any.
    pub workload: Option<Workload>,
    /// `[expect]` (empty if absent).
    pub expect: Expectations,
    /// `[cost]`: the cost parameters in force (the defaults of [`snpsim_engine::cost`] with the table's
    /// overrides applied).
    pub cost: CostTable,
    /// Where the fields that checks after parsing blame were written.
    pub sites: Sites,
}

/// Where a field was written (the file, or `--set` and the override's index as the line), for
/// errors found after parsing, such as the memory budget's.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Site {
    /// The file as named by the caller, or `--set`.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// The dotted path of the field.
    pub field: String,
}

impl Site {
    /// An error at this site.
    pub fn error(&self, kind: ErrorKind, message: impl Into<String>) -> ScenarioError {
        ScenarioError {
            file: self.file.clone(),
            line: self.line,
            column: self.column,
            field: Some(self.field.clone()),
            kind,
            message: message.into(),
        }
    }
}

/// The sites of `machine.host_memory` and `vm.memory`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Sites {
    /// `machine.host_memory`.
    pub host_memory: Site,
    /// `vm.memory`.
    pub memory: Site,
}

/// `[machine]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Machine {
    /// `geometry`: `x86` (default) or `tiny` (4 pages per level, for model checking).
    pub geometry: Geometry,
    /// `host_memory` in bytes.
    pub host_memory: u64,
    /// `rmpopt`: RMPOPT enabled (default `false`; `docs/semantics.md` O1–O8, S8).
    pub rmpopt: bool,
    /// `allocation`: where the host's single 4K blocks come from, `contiguous` (default) or
    /// `scattered` over every 1 GiB region (`docs/semantics.md` S7).
    pub allocation: Allocation,
}

/// `[vm]`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools, reason = "independent switches of a scenario file")]
pub struct Vm {
    /// `memory`: guest memory in bytes, from GPA 0.
    pub memory: u64,
    /// `vcpus` (default 1).
    pub vcpus: u32,
    /// `policy`.
    pub policy: Policy,
    /// `backing`: in the gmem era, the private side.
    pub backing: Backing,
    /// `shared_backing`: the VMA of the gmem era (always `Some` there, default `thp`); in the
    /// legacy era as written, and without effect.
    pub shared_backing: Option<Backing>,
    /// `prefault_on_psc` (default true, as QEMU since 2024).
    pub prefault_on_psc: bool,
    /// `npt_level_follows_rmp` as written; see [`Vm::npt_level_follows_rmp`] for the value in
    /// force.
    pub npt_level_follows_rmp: Option<bool>,
    /// `smaller_npt_faults` (default true).
    pub smaller_npt_faults: bool,
    /// `khugepaged` (default false).
    pub khugepaged: bool,
    /// `adversary`: the attacks named (a string or an array of strings; empty for an honest host).
    pub adversary: Vec<snpsim_engine::adversary::Attack>,
    /// `step_budget`, if any.
    pub step_budget: Option<u64>,
    /// `interleave` (default false): vCPUs and the host run their steps interleaved by the
    /// seeded scheduler, one architectural operation at a time.
    pub interleave: bool,
}

impl Vm {
    /// Whether the NPT level follows the RMP level: the scenario's value, else the policy's
    /// default (true for `gmem`, false for the legacy policies).
    pub fn npt_level_follows_rmp(&self) -> bool {
        self.npt_level_follows_rmp.unwrap_or(self.policy.npt_level_follows_rmp())
    }

    /// The backing of the VMM's VMA: `backing` in the legacy era (private and shared pages are
    /// the same host pages), `shared_backing` in the gmem era.
    pub fn vma_backing(&self) -> Backing {
        match self.era() {
            Era::Legacy => self.backing,
            Era::Gmem => self.shared_backing.unwrap_or(Backing::Thp),
        }
    }

    /// The memory era of the policy.
    pub fn era(&self) -> Era {
        self.policy.era()
    }

    /// Guest memory in 4 KiB pages.
    pub fn pages(&self) -> u64 {
        self.memory / PAGE_SIZE_4K
    }
}

/// `[guest]`: a preset and the fields that override it, as written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct GuestConfig {
    /// `preset` (default `linux`).
    pub preset: Preset,
    /// `psc_granularity`.
    pub psc_granularity: Option<Granularity>,
    /// `psc_protocol`.
    pub psc_protocol: Option<PscProtocol>,
    /// `ghcb_entries` (1–253).
    pub ghcb_entries: Option<u16>,
    /// `accept`.
    pub accept: Option<AcceptMode>,
    /// `validation_tracking`.
    pub validation_tracking: Option<bool>,
    /// `recoalesce`.
    pub recoalesce: Option<Recoalesce>,
}

impl GuestConfig {
    /// The parameters in force: the preset's, with each explicit field overriding it.
    pub fn resolved(&self) -> GuestParams {
        let p = self.preset.params();
        GuestParams {
            psc_granularity: self.psc_granularity.unwrap_or(p.psc_granularity),
            psc_protocol: self.psc_protocol.unwrap_or(p.psc_protocol),
            ghcb_entries: self.ghcb_entries.unwrap_or(p.ghcb_entries),
            accept: self.accept.unwrap_or(p.accept),
            validation_tracking: self.validation_tracking.unwrap_or(p.validation_tracking),
            recoalesce: self.recoalesce.unwrap_or(p.recoalesce),
            psc_order: p.psc_order,
            msr_until_ghcb: p.msr_until_ghcb,
        }
    }
}

/// `[workload]`: a generated workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    /// `phases`, in order (at least one).
    pub phases: Vec<Phase>,
}

/// One workload phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// `{ kind = "boot" }`: the guest boots and accepts memory per `guest.accept`.
    Boot,
    /// `{ kind = "steady", ... }`.
    Steady(SteadyPhase),
    /// `{ kind = "balloon", size = "1GiB" }`: the guest returns memory to the host.
    Balloon(BalloonPhase),
}

/// A steady phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SteadyPhase {
    /// `duration` in simulated nanoseconds (required; `"10s"`, `"500ms"`).
    pub duration_ns: u64,
    /// `working_set` in bytes (default: all guest memory; at most guest memory).
    pub working_set: u64,
    /// `conversions_per_s` (default 0).
    pub conversions_per_s: u64,
    /// `host_writes_per_s` (default 0).
    pub host_writes_per_s: u64,
    /// `touch`: the order in which the guest touches its working set (default `random`).
    pub touch: TouchPattern,
}

/// A balloon phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BalloonPhase {
    /// `size` in bytes (required; a non-zero multiple of 4 KiB, at most guest memory).
    pub size: u64,
}

/// Parse a scenario from `text`; `path_for_messages` names it in errors.
pub fn parse_scenario(path_for_messages: &str, text: &str) -> Result<Scenario, ScenarioError> {
    parse_scenario_with_overrides(path_for_messages, text, &[])
}

/// Parse a scenario and apply `--set KEY=VALUE` overrides, given as `(KEY, VALUE)`, before
/// validation: an overridden value is checked like one in the file, and an error in it is
/// reported as `--set:N:COLUMN` (N the 1-based index of the override, COLUMN in `KEY=VALUE`).
///
/// KEY is a dotted path (`vm.backing`, `guest.preset`, `expect.exits.npf`; a number indexes an
/// existing array: `step.0.gpa`); missing tables are created. VALUE is read as a TOML value
/// (`4`, `true`, `"text"`, `[1, 2]`) and, failing that, as a string (`thp`, `4GiB`, `>0`).
pub fn parse_scenario_with_overrides(
    path_for_messages: &str,
    text: &str,
    overrides: &[(&str, &str)],
) -> Result<Scenario, ScenarioError> {
    let sources = error::Sources::new(
        path_for_messages,
        text,
        overrides.iter().map(|(k, v)| format!("{k}={v}")).collect(),
    );
    let mut root = document::parse_document(&sources)?;
    for (i, (key, value)) in overrides.iter().enumerate() {
        tree::apply_override(&sources, &mut root, i + 1, key, value)?;
    }
    parse::scenario(&sources, &root)
}

/// Split a `--set` argument `KEY=VALUE` at its first `=`; `None` if there is none.
pub fn split_override(arg: &str) -> Option<(&str, &str)> {
    arg.split_once('=')
}

/// Read and parse a scenario file.
pub fn load_scenario(path: &Path) -> Result<Scenario, ScenarioError> {
    load_scenario_with_overrides(path, &[])
}

/// Read a scenario file and parse it with overrides (see [`parse_scenario_with_overrides`]).
pub fn load_scenario_with_overrides(
    path: &Path,
    overrides: &[(&str, &str)],
) -> Result<Scenario, ScenarioError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| ScenarioError {
        file: name.clone(),
        line: 1,
        column: 1,
        field: None,
        kind: ErrorKind::Io,
        message: format!("cannot read the scenario: {e}"),
    })?;
    parse_scenario_bytes(&name, &bytes, overrides)
}

/// Parse a scenario read as raw bytes (a file or standard input the caller read, within its own
/// limits), with overrides (see [`parse_scenario_with_overrides`]); bytes that are not UTF-8 are
/// an error at the line and column of the first bad byte.
pub fn parse_scenario_bytes(
    name: &str,
    bytes: &[u8],
    overrides: &[(&str, &str)],
) -> Result<Scenario, ScenarioError> {
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let valid = &bytes[..e.valid_up_to()];
            // The prefix is valid UTF-8 by construction.
            let prefix = std::str::from_utf8(valid).unwrap_or_default();
            let (line, column) = error::line_column(prefix, prefix.len());
            return Err(ScenarioError {
                file: name.to_owned(),
                line,
                column,
                field: None,
                kind: ErrorKind::NotUtf8,
                message: format!(
                    "the file is not UTF-8 text (byte {:#04x} at offset {})",
                    bytes.get(e.valid_up_to()).copied().unwrap_or(0),
                    e.valid_up_to()
                ),
            });
        }
    };
    parse_scenario_with_overrides(name, text, overrides)
}
