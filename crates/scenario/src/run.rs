//! Running a scenario: from the parsed file to a [`SimConfig`] and actions, then checking the
//! run against its `[expect]`.

use snpsim_defs::PAGE_SIZE_4K;
use snpsim_engine::names::Named;
use snpsim_guest::{GuestConfig, Protocol};
use snpsim_host::VmaBacking;

use crate::workload::{self, WorkloadReport};
use crate::{self as scenario, Cause, Expect, Reason, Scenario, StepOp};
use snpsim_engine::engine::{Action, CheckMode, RunResult, SimConfig, SimError, Simulation};
use snpsim_engine::metrics::Metrics;
use snpsim_trace::TraceExt;

/// A finished scenario run.
#[derive(Clone, Debug)]
pub struct ScenarioRun {
    /// The scenario's name.
    pub name: String,
    /// The policy name.
    pub policy: &'static str,
    /// The backing name.
    pub backing: &'static str,
    /// The guest granularity name.
    pub granularity: &'static str,
    /// The guest preset name.
    pub preset: &'static str,
    /// `vm.npt_level_follows_rmp` in force (the scenario's, or the policy's default).
    pub npt_level_follows_rmp: bool,
    /// Whether the guest tracks the pages it validated (`guest.validation_tracking` in force).
    pub validation_tracking: bool,
    /// The adversary's attack names (`[vm] adversary`; empty for an honest host).
    pub adversary: Vec<String>,
    /// The result.
    pub result: RunResult,
    /// Every expectation that did not hold, described; and every invariant violation.
    pub failures: Vec<String>,
    /// How the `[workload]` phases went (`None` without a workload).
    pub workload: Option<WorkloadReport>,
    /// The seed the run used (the scenario's, after overrides).
    pub seed: u64,
    /// Where the scenario came from (a file path, `<embedded …>`; empty when the caller did not
    /// say).
    pub source: String,
    /// The run's index among the runs of one command (its trace's `run`; 0 alone).
    pub run_index: u64,
}

impl ScenarioRun {
    /// Whether the run met its expectations and broke no invariant.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// The engine configuration a scenario describes.
pub fn sim_config(s: &Scenario, check: CheckMode) -> SimConfig {
    let vm = &s.vm;
    // The shared side's VMA (parsing refuses a `gmem-*` one).
    let backing = vm.backing.memory(vm.vma_backing().vma().unwrap_or(VmaBacking::Thp));
    let g = s.guest.resolved();
    SimConfig {
        geometry: s.machine.geometry,
        host_pages: s.machine.host_memory / PAGE_SIZE_4K,
        guest_pages: vm.pages(),
        vcpus: vm.vcpus,
        policy: vm.policy,
        backing,
        prefault_on_psc: vm.prefault_on_psc,
        npt_level_follows_rmp: vm.npt_level_follows_rmp,
        smaller_npt_faults: vm.smaller_npt_faults,
        khugepaged: vm.khugepaged,
        guest: GuestConfig {
            granularity: g.psc_granularity,
            protocol: match g.psc_protocol {
                scenario::PscProtocol::Msr => Protocol::Msr,
                scenario::PscProtocol::Ghcb => Protocol::Ghcb,
            },
            ghcb_entries: g.ghcb_entries,
            validation_tracking: g.validation_tracking,
            order: match g.psc_order {
                scenario::PscOrder::PerRequest => snpsim_guest::PscOrder::PerRequest,
                scenario::PscOrder::WholeRange => snpsim_guest::PscOrder::WholeRange,
            },
            msr_until_ghcb: g.msr_until_ghcb,
        },
        step_budget: vm.step_budget,
        check,
        adversary: snpsim_engine::adversary::Attacks::of(&vm.adversary),
        interleave: vm.interleave,
        rmpopt: s.machine.rmpopt,
        allocation: s.machine.allocation,
    }
}

/// The actions a scenario's steps describe (an `access` over a range is one access per page;
/// barriers are left out).
pub fn actions(s: &Scenario) -> Vec<Action> {
    action_phases(s).concat()
}

/// The actions of a scenario's steps in phases separated by its `barrier` steps.
pub fn action_phases(s: &Scenario) -> Vec<Vec<Action>> {
    let pages = |bytes: u64| bytes / PAGE_SIZE_4K;
    let mut phases = Vec::new();
    let mut out = Vec::new();
    for step in &s.steps {
        let vcpu = step.vcpu;
        match &step.op {
            StepOp::Barrier => phases.push(std::mem::take(&mut out)),
            StepOp::Psc { gpa, size, to, granularity: g } => out.push(Action::Psc {
                vcpu,
                gpa: *gpa,
                pages: pages(*size),
                private: *to == scenario::PageState::Private,
                granularity: *g,
            }),
            StepOp::Accept { gpa, size, granularity: g } => {
                out.push(Action::Accept { vcpu, gpa: *gpa, pages: pages(*size), granularity: *g });
            }
            StepOp::Pvalidate { gpa, size, validate } => {
                out.push(Action::Pvalidate { vcpu, gpa: *gpa, size: *size, validate: *validate });
            }
            StepOp::PscRequest { gpa, size, to, cur_page } => out.push(Action::PscRequest {
                vcpu,
                gpa: *gpa,
                size: *size,
                private: *to == scenario::PageState::Private,
                cur_page: *cur_page,
            }),
            StepOp::Rmpadjust { gpa, size, vmpl, perms, vmsa } => out.push(Action::Rmpadjust {
                vcpu,
                gpa: *gpa,
                size: *size,
                vmpl: *vmpl,
                perms: *perms,
                vmsa: *vmsa,
            }),
            StepOp::Access { gpa, size, kind, private } => {
                for i in 0..pages(*size) {
                    let gpa = *gpa + i * PAGE_SIZE_4K;
                    out.push(Action::Access { vcpu, gpa, kind: *kind, private: *private });
                }
            }
            StepOp::Recoalesce { gpa, mode } => {
                out.push(Action::Recoalesce { vcpu, gpa: *gpa, mode: *mode });
            }
            StepOp::HostWrite { gpa, via } => out.push(Action::HostWrite { gpa: *gpa, via: *via }),
            StepOp::HostRead { gpa, via } => out.push(Action::HostRead { gpa: *gpa, via: *via }),
            StepOp::HostPin { gpa, pin } => out.push(Action::HostPin { gpa: *gpa, pin: *pin }),
            StepOp::HostSplit { gpa } => out.push(Action::HostSplit { gpa: *gpa }),
            StepOp::HostCollapse { gpa } => out.push(Action::HostCollapse { gpa: *gpa }),
            StepOp::PunchHole { gpa, size } => out.push(Action::PunchHole { gpa: *gpa, pages: pages(*size) }),
            StepOp::Teardown => out.push(Action::Teardown),
        }
    }
    phases.push(out);
    phases
}

/// Look up a metric by its expectation name: a top-level key, `FAMILY.MEMBER`, or a family name
/// alone for its total (`sim_time_ns.ITEM` reads `sim_time_by_item`).
///
/// `None` for a name `[expect]` would refuse (an unknown metric or member,
/// [`scenario::check_metric_name`]), so that a misspelt name is never read as 0; a known member
/// absent from its family (an `npt_demotions` pair that never happened) is 0. A typed lookup
/// ([`Metrics::get`]), no serialization.
pub fn metric_value(m: &Metrics, name: &str) -> Option<f64> {
    if name != "npt_coverage" && scenario::check_metric_name(name).is_err() {
        return None;
    }
    m.get(name)
}

/// Run a scenario and check its expectations.
pub fn run_scenario(s: &Scenario, check: CheckMode) -> Result<ScenarioRun, SimError> {
    run_scenario_with(s, check, None, None)
}

/// [`run_scenario_traced`] with every PVALIDATE executed page by page
/// ([`Simulation::set_ranges`]`(false)`): the oracle the range operations are compared with
/// (docs/semantics.md, "Ranges"). The results, metrics and traces are the same.
pub fn run_scenario_per_page(
    s: &Scenario,
    check: CheckMode,
    meta: Option<&snpsim_trace::TraceMeta>,
) -> Result<ScenarioRun, SimError> {
    run_scenario_opts(s, check, meta, None, false)
}

/// [`run_scenario`] with a planted bug (`docs/mutants.md`): the run `snpsim run` makes, so a test
/// can show that the checks every run performs catch it. Fails with
/// [`SimError::MutantsNotCompiled`] in a build without `snpsim-hw`'s `mutants` feature.
pub fn run_scenario_with_mutant(
    s: &Scenario,
    check: CheckMode,
    mutant: snpsim_hw::Mutant,
) -> Result<ScenarioRun, SimError> {
    run_scenario_with(s, check, None, Some(mutant))
}

fn run_scenario_with(
    s: &Scenario,
    check: CheckMode,
    meta: Option<&snpsim_trace::TraceMeta>,
    mutant: Option<snpsim_hw::Mutant>,
) -> Result<ScenarioRun, SimError> {
    run_scenario_opts(s, check, meta, mutant, true)
}

fn run_scenario_opts(
    s: &Scenario,
    check: CheckMode,
    meta: Option<&snpsim_trace::TraceMeta>,
    mutant: Option<snpsim_hw::Mutant>,
    ranges: bool,
) -> Result<ScenarioRun, SimError> {
    let config = sim_config(s, check);
    let mut sim = Simulation::with_mutant(config, mutant)?;
    sim.set_ranges(ranges);
    sim.set_costs(s.cost);
    if let Some(meta) = meta {
        sim.enable_trace(meta);
    }
    let (result, workload) = run_steps_and_workload(sim, s, None);
    let mut failures = Vec::new();
    for (name, expect) in s.expect.iter() {
        let ended = || match result.reason {
            Some(r) => format!(" ({}: {})", r.name(), result.detail),
            None => String::new(),
        };
        match expect {
            Expect::Outcome(o) => {
                if o.name() != result.outcome.name() {
                    failures.push(format!(
                        "expected outcome {}, got {}{}",
                        o.name(),
                        result.outcome,
                        ended()
                    ));
                }
                continue;
            }
            Expect::Cause(c) => {
                if result.cause() != Some(*c) {
                    let got = result.cause().map_or("none", Cause::name);
                    failures.push(format!("expected cause {c}, got {got} ({}){}", result.outcome, ended()));
                }
                continue;
            }
            Expect::Reason(r) => {
                if result.reason != Some(*r) {
                    let got = result.reason.map_or("none", Reason::name);
                    failures.push(format!("expected reason {r}, got {got} ({}){}", result.outcome, ended()));
                }
                continue;
            }
            Expect::Compare { .. } | Expect::Range { .. } => {}
        }
        match metric_value(&result.metrics, name) {
            Some(actual) if expect.matches(actual) => {}
            Some(actual) => failures.push(format!("expected {name} {expect}, got {actual}")),
            None => failures.push(format!("metric {name} is not reported")),
        }
    }
    // With an adversary the honest-hypervisor invariants are expected to break: they are the
    // attack's effects. The hardware guarantees (no false negative) must hold in every run.
    let adversarial = !config.adversary.is_empty();
    for v in &result.violations {
        if !adversarial || v.starts_with("false negative") {
            failures.push(format!("invariant violated: {v}"));
        }
    }
    Ok(ScenarioRun {
        name: s.name.clone(),
        policy: s.vm.policy.name(),
        backing: s.vm.backing.name(),
        granularity: s.guest.resolved().psc_granularity.name(),
        preset: s.guest.preset.name(),
        npt_level_follows_rmp: s.vm.npt_level_follows_rmp(),
        validation_tracking: s.guest.resolved().validation_tracking,
        adversary: s.vm.adversary.iter().map(|a| a.name().to_owned()).collect(),
        result,
        failures,
        workload,
        seed: s.seed,
        source: String::new(),
        run_index: 0,
    })
}

/// Run a scenario as [`run_scenario`] does, recording a trace (`docs/trace-format.md`) described by `meta`
/// into [`RunResult::trace`] when it is given.
pub fn run_scenario_traced(
    s: &Scenario,
    check: CheckMode,
    meta: Option<&snpsim_trace::TraceMeta>,
) -> Result<ScenarioRun, SimError> {
    run_scenario_with(s, check, meta, None)
}

/// Run the scenario's steps on `sim`, then its `[workload]` (`docs/semantics.md` E1). The run's random
/// generator, seeded from the scenario's `seed`, drives the scheduling of an interleaved run; the
/// workload's guest actions draw from their own stream of the same seed
/// ([`workload::plan_rng`]), so they are the same whatever the policy and backing. With
/// `record`, the workload's issued actions are appended to it. Returns the finished run and the
/// workload's report.
pub fn run_steps_and_workload(
    mut sim: Simulation,
    s: &Scenario,
    record: Option<&mut Vec<Action>>,
) -> (RunResult, Option<WorkloadReport>) {
    let mut rng = workload::rng(s.seed);
    if sim.config().interleave {
        for phase in action_phases(s) {
            snpsim_engine::schedule::run_interleaved(&mut sim, &phase, &mut rng);
        }
    } else {
        for a in &actions(s) {
            if sim.outcome().is_some() {
                break;
            }
            sim.step(a);
        }
    }
    let report = s.workload.as_ref().map(|_| workload::run_workload(&mut sim, s, &mut rng, record));
    (sim.finish(), report)
}
