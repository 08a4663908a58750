//! The simulation engine: builds a machine and a guest from a configuration, runs actions (the
//! steps of a scenario) one at a time, checks the invariants after each, and reports metrics.

use std::collections::BTreeSet;

use snpsim_defs::{PageSize, RmpAdjustOperand};
use snpsim_guest::{Guest, GuestConfig, GuestError, GuestTask, Recoalesce, TaskResult, TaskStep};
use snpsim_host::{Host, HostWriteOutcome, HugetlbFolio, VmaBacking};
use snpsim_hw::rmp::Rmp;
use snpsim_hw::{Geometry, RmpConfig, RmpModel};
use snpsim_kvm::{Era, Kvm, KvmConfig, Policy};

pub use crate::action::Action;
use crate::cost::CostTable;
use crate::events::{Actor, EventSink, RunEnd};
use crate::invariants;
use crate::machine::Machine;
use crate::measure::{self, collect_with};
use crate::metrics::Metrics;
use crate::outcome::{Cause, Ending, Outcome, Reason};
use crate::series::CoverageSeries;
use crate::state::RunState;
use crate::vcpu::Exec;

/// Where guest memory comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemoryBacking {
    /// Legacy era: one VMA holds private and shared pages.
    Vma(VmaBacking),
    /// gmem era: private pages in guest_memfd folios of `folio` size, shared pages in the VMA.
    /// Under a policy that converts in place (`gmem-inplace`) shared pages are the file's too: the
    /// in-place guest_memfd with folios of `folio` size, and `shared` is unused.
    Gmem {
        /// guest_memfd folio size.
        folio: PageSize,
        /// The VMA's backing.
        shared: VmaBacking,
    },
    /// The in-place guest_memfd on HugeTLB folios (`gmem-hugetlb-2m`, `gmem-hugetlb-1g`): shared
    /// and private memory in one file (`docs/semantics.md` S9); only a policy that converts in
    /// place registers it.
    GmemHugetlb(HugetlbFolio),
}

/// How much invariant checking to do after each step.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::Display,
)]
#[strum(serialize_all = "lowercase")]
pub enum CheckMode {
    /// Check the whole state after every step.
    Full,
    /// Check what each step touched (the 2M regions of the NPT leaves, memory attributes, VMA and
    /// guest_memfd pages, RMP entries and host frames it changed) and the per-access checks: the
    /// cost follows the work, not the state size.
    Incremental,
    /// Only the per-access checks.
    Off,
}

/// Everything needed to build a simulation. [`SimConfig::new`] fills in the defaults of a
/// scenario file; every field is public.
#[derive(Clone, Copy, Debug)]
#[allow(clippy::struct_excessive_bools, reason = "independent switches of a scenario file")]
pub struct SimConfig {
    /// Page geometry.
    pub geometry: Geometry,
    /// Host RAM in pages.
    pub host_pages: u64,
    /// Guest memory in pages.
    pub guest_pages: u64,
    /// vCPUs.
    pub vcpus: u32,
    /// The hypervisor policy.
    pub policy: &'static dyn Policy,
    /// Guest memory backing.
    pub backing: MemoryBacking,
    /// The VMM pre-faults ranges converted to private (gmem era).
    pub prefault_on_psc: bool,
    /// Override of the policy's `npt_level_follows_rmp` default.
    pub npt_level_follows_rmp: Option<bool>,
    /// RMP check of private accesses through leaves smaller than the entry.
    pub smaller_npt_faults: bool,
    /// khugepaged collapses split THP ranges after every step.
    pub khugepaged: bool,
    /// The guest's behaviour.
    pub guest: GuestConfig,
    /// Stop after this many steps.
    pub step_budget: Option<u64>,
    /// Invariant checking.
    pub check: CheckMode,
    /// The adversarial hypervisor's attacks (empty for an honest host; `[vm] adversary`).
    pub adversary: crate::adversary::Attacks,
    /// vCPUs interleave (`[vm] interleave`): a guest action only starts on its vCPU and
    /// [`Action::Tick`] advances it one architectural operation at a time; otherwise every
    /// action runs to completion in turn.
    pub interleave: bool,
    /// RMPOPT is enabled (`[machine] rmpopt`, `docs/semantics.md` O1–O8 and S8): the host verifies
    /// all memory at SNP initialisation, host writes to marked 1 GiB regions skip the RMP check,
    /// and the cost model charges the RMP check of unmarked writes and RMPUPDATE's global TLB
    /// flush.
    pub rmpopt: bool,
}

impl SimConfig {
    /// A configuration with the defaults a scenario file gets for fields it leaves out: `x86`
    /// geometry, one vCPU, `prefault_on_psc`, the policy's own `npt_level_follows_rmp`,
    /// `smaller_npt_faults`, no khugepaged, a current Linux guest (2M page-state changes over the
    /// GHCB, 64 entries, validation tracking), no step budget, incremental checking.
    pub fn new(
        policy: &'static dyn Policy,
        backing: MemoryBacking,
        guest_pages: u64,
        host_pages: u64,
    ) -> Self {
        SimConfig {
            geometry: Geometry::X86,
            host_pages,
            guest_pages,
            vcpus: 1,
            policy,
            backing,
            prefault_on_psc: true,
            npt_level_follows_rmp: None,
            smaller_npt_faults: true,
            khugepaged: false,
            guest: GuestConfig {
                granularity: snpsim_guest::Granularity::M2,
                protocol: snpsim_guest::Protocol::Ghcb,
                ghcb_entries: 64,
                validation_tracking: true,
                order: snpsim_guest::PscOrder::PerRequest,
                msr_until_ghcb: false,
            },
            step_budget: None,
            check: CheckMode::Incremental,
            adversary: crate::adversary::Attacks::NONE,
            interleave: false,
            rmpopt: false,
        }
    }
}

/// What one step did, for traces and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepReport {
    /// A one-line description of the result.
    pub result: String,
}

/// Errors building a simulation (bad configuration that passed parsing).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// The host cannot hold the guest.
    #[error("host setup failed: {0}")]
    Host(#[from] snpsim_host::HostError),
    /// The policy and the backing belong to different eras.
    #[error("policy {policy} cannot run on backing {backing}")]
    EraMismatch {
        /// Policy name.
        policy: &'static str,
        /// Backing description.
        backing: String,
    },
    /// A mutant was asked for in a build without the hooks (`snpsim-hw`'s `mutants` feature).
    #[error("mutant {0} cannot be planted: this build has no mutant hooks (snpsim-hw feature `mutants`)")]
    MutantsNotCompiled(&'static str),
}

/// One run: a machine and a guest built from a [`SimConfig`], driven one [`Action`] at a time.
///
/// [`crate::prelude`] has everything needed to build a configuration in code; a scenario file
/// becomes one with `snpsim_scenario::run::sim_config` and `snpsim_scenario::run::actions`.
///
/// ```
/// use snpsim_engine::prelude::*;
///
/// // npt-demote on THP, a 16 MiB guest on a 64 MiB host, a guest that converts at 4K.
/// let mut config = SimConfig::new(policy("npt-demote").unwrap(), MemoryBacking::Vma(VmaBacking::Thp), 4096, 16384);
/// config.guest.granularity = Granularity::K4;
/// let mut sim = Simulation::new(config).unwrap();
///
/// // The guest makes one 4K page private and writes it: the 2M NPT leaf over a 4K RMP entry faults
/// // (RMP|SIZEM) and npt-demote splits the leaf.
/// sim.step(&Action::Psc { vcpu: 0, gpa: Gpa(0x200000), pages: 1, private: true, granularity: None });
/// let write = Action::Access { vcpu: 0, gpa: Gpa(0x200000), kind: AccessKind::Write, private: true };
/// assert_eq!(sim.step(&write).result, "done");
/// assert!(sim.outcome().is_none(), "the run goes on");
/// assert!(sim.sim_time_ns() > 0);
///
/// // The VMM writes the shared page next to it through its 2M THP mapping: the host's RMP #PF
/// // handler splits the THP to 4K (a needed split) and the write completes.
/// assert_eq!(sim.step(&Action::HostWrite { gpa: Gpa(0x201000), via: HostVia::Vmm }).result, "ok");
///
/// let result = sim.finish();
/// assert_eq!(result.outcome, Outcome::Completed);
/// assert_eq!(result.metrics.rmp_npf_sizem, 1);
/// assert_eq!(result.metrics.npt_demotions["2m_4k"], 1);
/// assert_eq!((result.metrics.host_splits, result.metrics.host_splits_needless), (1, 0));
/// assert_eq!(result.metrics.false_negatives, 0);
/// assert!(result.violations.is_empty());
/// ```
///
/// With `interleave` set, a guest action only starts on its vCPU, and [`Action::Tick`] advances
/// a vCPU by one architectural operation, in whatever order the caller (a test, a scheduler, the
/// model checker) chooses:
///
/// ```
/// use snpsim_engine::prelude::*;
///
/// let gmem = MemoryBacking::Gmem { folio: PageSize::Size2M, shared: VmaBacking::Thp };
/// let mut config = SimConfig::new(policy("gmem").unwrap(), gmem, 4096, 16384);
/// config.vcpus = 2;
/// config.interleave = true;
/// let mut sim = Simulation::new(config).unwrap();
/// let finish = |sim: &mut Simulation, vcpu| while sim.is_busy(vcpu) { sim.step(&Action::Tick { vcpu }); };
/// sim.step(&Action::Accept { vcpu: 0, gpa: Gpa(0x200000), pages: 512, granularity: None });
/// finish(&mut sim, 0);
///
/// // Both vCPUs rescind a 4K page of the 2M private region: each takes an RMP|SIZEM #NPF and KVM
/// // looks up a 2M entry on both before either PSMASHes.
/// let rescind = |vcpu, gpa| Action::Pvalidate { vcpu, gpa: Gpa(gpa), size: RmpPageSize::Size4K, validate: false };
/// sim.step(&rescind(0, 0x200000));
/// sim.step(&rescind(1, 0x201000));
/// finish(&mut sim, 0);
/// finish(&mut sim, 1);
/// let m = sim.finish().metrics;
/// assert_eq!(m.psmash, 2, "both vCPUs PSMASHed");
/// assert_eq!(m.races["psmash_already_4k"], 1, "the second found the entry already 4K");
/// ```
///
/// With [`Simulation::set_sink`] every event of the run goes to an [`EventSink`]: the JSONL trace
/// of `snpsim-trace` (`docs/trace-format.md`), which its `replay` re-executes.
#[derive(Clone, Debug)]
pub struct Simulation {
    config: SimConfig,
    machine: Option<Machine>,
    guest: Guest,
    outcome: Option<Ending>,
    steps: u64,
    lossy_recoalesce: bool,
    violations: BTreeSet<String>,
    /// NPT coverage over simulated time.
    coverage: CoverageSeries,
    /// RMPOPT's marked host pages over simulated time (first member; runs with RMPOPT only).
    rmpopt_series: CoverageSeries,
    /// The event sink while the VM does not exist (a refused registration); otherwise it lives in
    /// the machine's RMP wrapper, where every RMP instruction passes.
    sink: Option<Box<dyn EventSink>>,
    /// Attacks already carried out, and what each did.
    adversary_done: crate::adversary::Attacks,
    attack_log: Vec<String>,
    /// The cost parameters pricing `sim_time_ns` (defaults unless [`Simulation::set_costs`]).
    costs: CostTable,
    /// Interleaved runs: the operation each vCPU is running (`None` when idle).
    running: Vec<Option<Running>>,
}

/// A guest operation in progress on one vCPU of an interleaved run.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Running {
    /// The action it started from.
    pub action: Action,
    /// The guest's side.
    pub task: GuestTask,
    /// The platform request in progress, if any.
    pub exec: Option<Exec>,
}

/// The guest's ASID (one VM per run).
pub const ASID: u16 = 1;

impl Simulation {
    /// Build the machine and the guest. A refused memory registration is not an error: the run's
    /// outcome is `vm_rejected`.
    pub fn new(config: SimConfig) -> Result<Self, SimError> {
        Self::with_mutant(config, None)
    }

    /// [`Simulation::new`] with a planted bug in every layer that has the site for it (checker
    /// tests only; see [`snpsim_hw::Mutant`]).
    pub fn with_mutant(config: SimConfig, mutant: Option<snpsim_hw::Mutant>) -> Result<Self, SimError> {
        if let Some(m) = mutant
            && !snpsim_hw::mutant::HOOKS
        {
            return Err(SimError::MutantsNotCompiled(m.name()));
        }
        let (vma_backing, folio) = match config.backing {
            MemoryBacking::Vma(b) => (b, None),
            MemoryBacking::Gmem { folio, shared } => (shared, Some(folio)),
            MemoryBacking::GmemHugetlb(f) => (VmaBacking::Anon4k, Some(f.page_size())),
        };
        let gmem_era = config.policy.era() == Era::Gmem;
        if gmem_era != folio.is_some() {
            return Err(SimError::EraMismatch {
                policy: config.policy.name(),
                backing: format!("{:?}", config.backing),
            });
        }
        // The in-place file: for a `gmem-hugetlb-*` backing (a policy that does not convert in
        // place refuses it at registration), and for any gmem folio size under one that does.
        let in_place = matches!(config.backing, MemoryBacking::GmemHugetlb(_))
            || (gmem_era && config.policy.in_place_conversion());
        let mut host = match folio {
            Some(folio) if in_place => {
                Host::new_in_place(config.geometry, config.host_pages, config.guest_pages, folio)?
            }
            _ => Host::new(config.geometry, config.host_pages, config.guest_pages, vma_backing, folio)?,
        };
        host.mutant = mutant;
        host.unsplittable_rmp_fault = config.policy.unsplittable_rmp_fault();
        let mut rmp = Rmp::new(RmpConfig {
            geometry: config.geometry,
            pages: config.host_pages,
            smaller_npt_faults: config.smaller_npt_faults,
        });
        rmp.set_mutant(mutant);
        if config.rmpopt {
            // O8 and O7: RMPOPT enabled, and Linux's whole-memory verify once SNP is initialised
            // (v2 3/7 `rmpopt_kthread`): every region is marked before the guest's first RMPUPDATE.
            rmp.set_rmpopt(true);
            rmp.rmpopt_verify_all();
        }
        let kvm_config = KvmConfig {
            asid: ASID,
            prefault_on_psc: config.prefault_on_psc,
            npt_level_follows_rmp: config
                .npt_level_follows_rmp
                .unwrap_or(config.policy.npt_level_follows_rmp()),
        };
        let mut guest = Guest::new(config.guest, config.geometry, config.guest_pages);
        guest.set_mutant(mutant);
        let mut sim = Simulation {
            config,
            machine: None,
            guest,
            outcome: None,
            steps: 0,
            lossy_recoalesce: false,
            violations: BTreeSet::new(),
            coverage: CoverageSeries::new(),
            rmpopt_series: CoverageSeries::new(),
            sink: None,
            adversary_done: crate::adversary::Attacks::NONE,
            attack_log: Vec::new(),
            costs: CostTable::default(),
            running: vec![None; config.vcpus as usize],
        };
        match Kvm::new(kvm_config, config.policy, &host) {
            Ok(mut kvm) => {
                kvm.set_mutant(mutant);
                if gmem_era && let Some(gm) = &host.gmem {
                    debug_assert_eq!(gm.folio_size(), folio.unwrap_or(PageSize::Size4K));
                }
                sim.machine = Some(Machine::new(rmp, host, kvm, ASID));
            }
            Err(e) => sim.outcome = Some(Ending::of_kvm(&e)),
        }
        Ok(sim)
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// Bytes of memory the simulated state takes (machine and guest; `snpsim bench` and the
    /// memory-accounting test read it).
    pub fn state_bytes(&self) -> usize {
        self.machine.as_ref().map_or(0, Machine::state_bytes) + self.guest.state_bytes()
    }

    /// The machine, unless registration was refused.
    pub fn machine(&self) -> Option<&Machine> {
        self.machine.as_ref()
    }

    /// The guest.
    pub fn guest(&self) -> &Guest {
        &self.guest
    }

    /// The outcome so far and its detail in words: `None` while the run can go on.
    pub fn outcome(&self) -> Option<(Outcome, &str)> {
        self.outcome.as_ref().map(|e| (e.outcome(), e.detail.as_str()))
    }

    /// How the run ended so far (reason, cause, detail): `None` while it can go on.
    pub fn ending(&self) -> Option<&Ending> {
        self.outcome.as_ref()
    }

    /// Invariant violations found so far by the whole-state checks (each once, sorted); the
    /// machine's own findings are in [`Machine::findings`].
    pub fn violations(&self) -> impl Iterator<Item = &str> {
        self.violations.iter().map(String::as_str)
    }

    /// Send every event of this run to `sink` (`snpsim_trace::Recorder` writes the trace of
    /// `docs/trace-format.md`). Install it before the first step. Read its output with
    /// [`Simulation::take_trace`] as the run goes, and the rest from [`RunResult::trace`].
    pub fn set_sink(&mut self, sink: Box<dyn EventSink>) {
        match self.machine.as_mut() {
            Some(m) => m.rmp.sink = Some(sink),
            None => self.sink = Some(sink),
        }
    }

    /// Whether the run has an event sink (is traced).
    pub fn is_traced(&self) -> bool {
        self.sink.is_some() || self.machine.as_ref().is_some_and(|m| m.rmp.sink.is_some())
    }

    /// The sink's output written since the last call (empty when the run has no sink).
    pub fn take_trace(&mut self) -> Vec<u8> {
        self.sink_mut().map(EventSink::take).unwrap_or_default()
    }

    fn sink_mut(&mut self) -> Option<&mut (dyn EventSink + 'static)> {
        match self.machine.as_mut() {
            Some(m) => m.rmp.sink.as_deref_mut(),
            None => self.sink.as_deref_mut(),
        }
    }

    /// Price the run with `costs` (a scenario's `[cost]` table) instead of the defaults. Call it
    /// before [`Simulation::set_sink`] (a trace recorder prices its events with them): the trace's header records the parameters that differ.
    pub fn set_costs(&mut self, costs: CostTable) {
        debug_assert!(
            !self.is_traced(),
            "set_costs after set_sink: the trace would price with the old table"
        );
        self.costs = costs;
    }

    /// The cost parameters in force.
    pub fn costs(&self) -> &CostTable {
        &self.costs
    }

    /// Take a point of the NPT coverage series at most every `every` steps; 1, the default, takes
    /// one after every step that changed the coverage. The series stays bounded either way (it
    /// thins itself past 1024 points), and always ends with the state the run ended in.
    pub fn set_coverage_sampling(&mut self, every: u64) {
        self.coverage.set_every(every);
    }

    /// Whether `vcpu` is running an operation (interleaved runs).
    pub fn is_busy(&self, vcpu: u32) -> bool {
        self.running.get(vcpu as usize).is_some_and(Option::is_some)
    }

    /// The operation each vCPU is running (interleaved runs; `None` when idle).
    pub fn running(&self) -> &[Option<Running>] {
        &self.running
    }

    /// Whether some vCPU holds an in-flight window open (interleaved runs).
    pub fn windows_open(&self) -> bool {
        self.machine.as_ref().is_some_and(|m| !m.windows.is_empty())
    }

    /// Steps executed so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The simulated time so far (the `sim_time_ns` the metrics would report now), in O(1).
    pub fn sim_time_ns(&self) -> u64 {
        measure::sim_time_ns(self.machine.as_ref(), &self.guest, &self.costs)
    }

    /// Run one action. Does nothing once the run has an outcome.
    pub fn step(&mut self, action: &Action) -> StepReport {
        if !self.is_traced() {
            return self.step_untraced(action);
        }
        if let Some(r) = self.sink_mut() {
            r.begin_step(action);
        }
        let findings_before = self.machine.as_ref().map_or(0, |m| m.findings.violations.len());
        let checks_before = self.violations.clone();
        let report = self.step_untraced(action);
        let mut new: Vec<String> = self
            .machine
            .as_ref()
            .map(|m| m.findings.violations.iter().skip(findings_before).cloned().collect())
            .unwrap_or_default();
        new.extend(self.violations.difference(&checks_before).cloned());
        let outcome = self.outcome.clone();
        let t_end = self.sim_time_ns();
        if let Some(r) = self.sink_mut() {
            r.end_step(&report.result, outcome.as_ref(), &new, t_end);
        }
        report
    }

    fn step_untraced(&mut self, action: &Action) -> StepReport {
        if let Some(e) = &self.outcome {
            return StepReport { result: format!("skipped: run already {}", e.outcome()) };
        }
        if let Some(budget) = self.config.step_budget
            && self.steps >= budget
        {
            self.outcome =
                Some(Ending::new(Reason::StepBudget, format!("step budget of {budget} steps exhausted")));
            return StepReport { result: "step budget exceeded".into() };
        }
        self.steps += 1;
        let Some(m) = self.machine.as_mut() else { return StepReport { result: "no VM".into() } };
        let result = if self.config.interleave && action.vcpu().is_some() {
            match interleaved(m, &mut self.guest, &mut self.running, action, &mut self.lossy_recoalesce) {
                Ok(Some(r)) => Ok(r),
                Ok(None) => return StepReport { result: "pending".into() },
                Err(e) => Err(e),
            }
        } else {
            run_action(m, &mut self.guest, action, &mut self.lossy_recoalesce)
        };
        let result = match result {
            Ok(r) => r,
            Err(e @ GuestError::Terminated { reason, .. }) => {
                let ending = terminated(m, e, reason);
                let why = ending.detail.clone();
                self.outcome = Some(ending);
                why
            }
            Err(GuestError::Stopped) => {
                let ending = stopped(m);
                let why = ending.detail.clone();
                self.outcome = Some(ending);
                why
            }
        };
        if !self.config.adversary.is_empty() && self.outcome.is_none() {
            let (log, ended) = crate::adversary::after_step(
                self.config.adversary,
                &mut self.adversary_done,
                m,
                &mut self.guest,
            );
            self.attack_log.extend(log);
            match ended {
                Some(e @ GuestError::Terminated { reason, .. }) => {
                    self.outcome = Some(terminated(m, e, reason));
                }
                Some(GuestError::Stopped) => self.outcome = Some(stopped(m)),
                None => {}
            }
        }
        if self.config.khugepaged && m.windows.is_empty() {
            collapse_all(m);
        }
        let (guest, costs) = (&self.guest, &self.costs);
        self.coverage
            .observe(self.steps, m.kvm.npt.coverage(), || measure::sim_time_ns(Some(&*m), guest, costs));
        if self.config.rmpopt {
            self.rmpopt_series.observe(self.steps, [m.rmp.rmpopt_marked_pages(), 0, 0], || {
                measure::sim_time_ns(Some(&*m), guest, costs)
            });
        }
        self.note_instruction_failure();
        self.check_step();
        StepReport { result }
    }

    /// Run every action in order, then finish.
    pub fn run(mut self, actions: &[Action]) -> RunResult {
        for a in actions {
            if self.outcome.is_some() {
                break;
            }
            self.step(a);
        }
        self.finish()
    }

    /// Invariant 10: a run that stopped because an RMP instruction KVM issued failed (where KVM's
    /// code does not tolerate it) reports it as a violation, in every check mode: it is a bug in
    /// KVM's model or a planted one, not a property of the policy.
    fn note_instruction_failure(&mut self) {
        if let Some(e) = &self.outcome
            && e.cause() == Some(Cause::InstructionFailed)
        {
            self.violations
                .insert(format!("invariant 10: an RMP instruction KVM issued failed: {}", e.detail));
        }
    }

    /// The invariant check after a step: the whole state (`Full`) or what the step touched
    /// (`Incremental`). The stores' dirty logs are drained whatever the mode.
    fn check_step(&mut self) {
        let Some(m) = &mut self.machine else { return };
        let touched = invariants::take_touched(m);
        match self.config.check {
            CheckMode::Full => self.check_now(),
            CheckMode::Incremental => {
                let found = invariants::check_touched(m, &self.guest, self.lossy_recoalesce, &touched);
                self.violations.extend(found);
            }
            CheckMode::Off => {}
        }
    }

    fn check_now(&mut self) {
        if let Some(m) = &self.machine {
            let found = invariants::check(m, &self.guest, self.lossy_recoalesce);
            self.violations.extend(found);
        }
    }

    /// End the run: the final invariant check (of what changed since the last step, incrementally),
    /// the outcome and the metrics.
    pub fn finish(mut self) -> RunResult {
        match self.config.check {
            CheckMode::Full => self.check_now(),
            CheckMode::Incremental => self.check_step(),
            CheckMode::Off => {}
        }
        if let Some(m) = &self.machine {
            self.violations.extend(m.findings.violations.iter().cloned());
        }
        self.note_instruction_failure();
        let ending = self.outcome.clone();
        let outcome = ending.as_ref().map_or(Outcome::Completed, Ending::outcome);
        let metrics =
            collect_with(self.machine.as_ref(), &self.guest, self.violations.len() as u64, &self.costs);
        let violations: Vec<String> = self.violations.iter().cloned().collect();
        let trace = self.finish_trace(ending.as_ref(), &metrics, &violations);
        if let Some(m) = &self.machine {
            self.coverage.finish(m.kvm.npt.coverage(), metrics.sim_time_ns);
            if self.config.rmpopt {
                self.rmpopt_series.finish([m.rmp.rmpopt_marked_pages(), 0, 0], metrics.sim_time_ns);
            }
        }
        let (coverage_series, coverage_time_ns) = self.coverage.into_parts();
        let (rmpopt_points, rmpopt_time_ns) = self.rmpopt_series.into_parts();
        let host_pages = self.config.host_pages;
        let private_access = self.machine.as_ref().and_then(|m| {
            let file = m.host.gmem_hugetlb.as_ref()?;
            let first = file.first_private_access?;
            let gpa = snpsim_defs::Gfn::new(first.offset).gpa();
            let (via, answer) = match first.via {
                snpsim_host::HostVia::Vmm => ("the VMM", "SIGBUS"),
                snpsim_host::HostVia::Uaccess => ("a get/put_user (vhost)", "-EFAULT"),
                snpsim_host::HostVia::Kernel => ("the kernel", "an oops"),
            };
            Some(format!(
                "{} host access(es) to private guest_memfd pages, answered at the file's fault handler \
                 (no RMP #PF); the first by {via} at GPA {gpa} (file offset {:#x}): {answer}",
                file.stats.private_access_faults, first.offset
            ))
        });
        RunResult {
            outcome,
            reason: ending.as_ref().map(|e| e.reason),
            detail: ending.map(|e| e.detail).unwrap_or_default(),
            metrics,
            violations,
            coverage_series,
            coverage_time_ns,
            rmpopt_series: rmpopt_points.iter().map(|p| p[0]).collect(),
            rmpopt_time_ns,
            host_pages,
            private_access,
            guest_pages: self.config.guest_pages,
            trace,
            attacks: self.attack_log,
        }
    }

    /// The trace's last lines: `end` (outcome, metrics, violations) and `state_hash`.
    fn finish_trace(
        &mut self,
        ending: Option<&Ending>,
        metrics: &Metrics,
        violations: &[String],
    ) -> Option<Vec<u8>> {
        let mut sink = match self.machine.as_mut() {
            Some(m) => m.rmp.sink.take()?,
            None => self.sink.take()?,
        };
        sink.finish(&RunEnd {
            sim_time_ns: metrics.sim_time_ns,
            ending,
            violations,
            metrics,
            state: &RunState {
                machine: self.machine.as_ref(),
                guest: &self.guest,
                outcome: ending.map_or(Outcome::Completed, Ending::outcome),
                metrics,
            },
        });
        Some(sink.take())
    }
}

/// The ending of a guest that terminated itself; after a failed page-state change, the detail
/// adds why KVM refused it when it did (the guest only sees the error code).
fn terminated(m: &Machine, e: GuestError, reason: snpsim_guest::TermReason) -> Ending {
    let refusal = m.kvm.psc_refusal().filter(|_| reason == snpsim_guest::TermReason::Psc);
    let detail = match refusal {
        Some(r) => format!("{e}: KVM refused the page-state change: {r}"),
        None => e.to_string(),
    };
    Ending::new(Reason::of_termination(reason), detail)
}

/// The ending of a VM the machine stopped: the failure it recorded. A stop without one would be
/// a bug in snpsim; it is reported as such rather than given a plausible reason.
fn stopped(m: &Machine) -> Ending {
    debug_assert!(m.fatal.is_some(), "the machine stopped the VM without recording why");
    m.fatal.clone().unwrap_or_else(|| {
        Ending::new(Reason::UnhandledNpf, "the VM stopped without a recorded reason (a bug in snpsim)")
    })
}

/// The result of a finished run.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// How it ended.
    pub outcome: Outcome,
    /// Why, for anything but `completed` (which also fixes the outcome and, for `vm_error`, the
    /// cause: [`Reason::outcome`], [`Reason::cause`]).
    pub reason: Option<Reason>,
    /// The reason in words, with the values involved (GFN or frame, the rule); empty for
    /// `completed`.
    pub detail: String,
    /// The run's metrics (see [`Metrics`]).
    pub metrics: Metrics,
    /// Invariant violations (each once).
    pub violations: Vec<String>,
    /// NPT pages mapped at 4K/2M/1G over the run: after the steps that changed them (at most one
    /// point every `Simulation::set_coverage_sampling` steps, thinned past 1024
    /// points), and at the end of the run; empty when the VM was never created.
    pub coverage_series: Vec<[u64; 3]>,
    /// The simulated time (`sim_time_ns`) at each point of `coverage_series`.
    pub coverage_time_ns: Vec<u64>,
    /// Guest memory in pages (what `coverage_series` does not map is unmapped).
    pub guest_pages: u64,
    /// Host pages in 1 GiB regions RMPOPT marked over the run (`rmpopt_coverage` over time), with
    /// the points taken as `coverage_series`'s; empty without RMPOPT (`[machine] rmpopt`).
    pub rmpopt_series: Vec<u64>,
    /// The simulated time at each point of `rmpopt_series`.
    pub rmpopt_time_ns: Vec<u64>,
    /// Host memory in pages (`rmpopt_series` is a share of it).
    pub host_pages: u64,
    /// Host accesses to private pages of an in-place guest_memfd, counted, with the first named
    /// (`docs/semantics.md` S9); `None` when there were none.
    pub private_access: Option<String>,
    /// The trace lines not yet taken with [`Simulation::take_trace`], ending with the `end` and
    /// `state_hash` lines (`None` when the run was not traced).
    pub trace: Option<Vec<u8>>,
    /// What the adversarial hypervisor did, one line per attack (empty for an honest host).
    pub attacks: Vec<String>,
}

impl RunResult {
    /// The cause of a `vm_error` (`None` for every other outcome).
    pub fn cause(&self) -> Option<Cause> {
        self.reason.and_then(Reason::cause)
    }
}

/// The guest task of a guest action.
fn guest_task(guest: &mut Guest, action: &Action, lossy: &mut bool) -> GuestTask {
    match *action {
        Action::Psc { gpa, pages, private, granularity, .. } => {
            GuestTask::psc(guest, gpa.gfn(), pages, private, granularity)
        }
        Action::Accept { gpa, pages, granularity, .. } => {
            GuestTask::psc(guest, gpa.gfn(), pages, true, granularity)
        }
        Action::Pvalidate { gpa, size, validate, .. } => GuestTask::pvalidate(gpa.gfn(), size, validate),
        Action::PscRequest { gpa, size, private, cur_page, .. } => {
            GuestTask::psc_request(gpa.gfn(), size, private, cur_page)
        }
        Action::Rmpadjust { gpa, size, vmpl, perms, vmsa, .. } => {
            let op = RmpAdjustOperand::new().with_target_vmpl(vmpl).with_perms(perms).with_vmsa(vmsa);
            GuestTask::rmpadjust(gpa.gfn(), size, op)
        }
        Action::Access { gpa, kind, private, .. } => GuestTask::access(gpa, kind, private),
        Action::Recoalesce { gpa, mode, .. } => {
            if mode == Recoalesce::Naive {
                *lossy = true;
            }
            GuestTask::recoalesce(guest, gpa.gfn(), mode)
        }
        _ => unreachable!("{action:?} is not a guest action"),
    }
}

/// A guest action or a tick in an interleaved run: start the action on its idle vCPU and run its
/// first request's first tick, or advance the running one. `Ok(None)` while it goes on.
fn interleaved(
    m: &mut Machine,
    guest: &mut Guest,
    running: &mut [Option<Running>],
    action: &Action,
    lossy: &mut bool,
) -> Result<Option<String>, GuestError> {
    let vcpu = action.vcpu().unwrap_or(0);
    let slot = &mut running[vcpu as usize];
    let mut reply = None;
    match (action, slot.as_mut()) {
        (Action::Tick { .. }, None) => return Ok(Some("idle".into())),
        (Action::Tick { .. }, Some(run)) => {
            if let Some(exec) = &mut run.exec {
                match m.tick(vcpu, exec)? {
                    None => return Ok(None),
                    Some(r) => {
                        run.exec = None;
                        reply = Some(r);
                    }
                }
            }
        }
        (_, Some(_)) => return Ok(Some(format!("vcpu {vcpu} is busy"))),
        (_, None) => {
            *slot = Some(Running { action: *action, task: guest_task(guest, action, lossy), exec: None });
        }
    }
    // Resume the guest with the reply; the request it issues on starting runs its first tick now.
    let mut first = reply.is_none();
    loop {
        let Some(run) = slot.as_mut() else { return Ok(None) };
        match run.task.resume(guest, reply.take()) {
            Ok(TaskStep::Issue(req)) => {
                let mut exec = Exec::new(req);
                if std::mem::take(&mut first)
                    && let Some(r) = m.tick(vcpu, &mut exec)?
                {
                    reply = Some(r);
                    continue;
                }
                run.exec = Some(exec);
                return Ok(None);
            }
            Ok(TaskStep::Done(r)) => {
                *slot = None;
                return Ok(Some(r.describe()));
            }
            Err(e) => {
                *slot = None;
                return Err(e);
            }
        }
    }
}

fn collapse_all(m: &mut Machine) {
    // Only split regions can collapse: visiting them alone keeps a step O(split regions).
    for offset in m.host.vma.split_offsets() {
        if let Ok(Some(inv)) = m.host.collapse_vma(offset) {
            if let Some(r) = &mut m.rmp.sink {
                r.set_actor(None, Actor::Khugepaged);
                r.host_collapse(inv.offset, inv.pages);
            }
            m.kvm.mmu_invalidate(inv);
        }
    }
}

fn run_action(
    m: &mut Machine,
    guest: &mut Guest,
    action: &Action,
    lossy: &mut bool,
) -> Result<String, GuestError> {
    Ok(match *action {
        Action::Psc { vcpu, gpa, pages, private, granularity } => {
            guest.psc(m, vcpu, gpa.gfn(), pages, private, granularity)?;
            "ok".into()
        }
        Action::Accept { vcpu, gpa, pages, granularity } => {
            guest.accept(m, vcpu, gpa.gfn(), pages, granularity)?;
            "ok".into()
        }
        Action::Pvalidate { vcpu, gpa, size, validate } => {
            TaskResult::Pvalidate(guest.pvalidate(m, vcpu, gpa.gfn(), size, validate)?).describe()
        }
        Action::Rmpadjust { vcpu, gpa, size, vmpl, perms, vmsa } => {
            let op = RmpAdjustOperand::new().with_target_vmpl(vmpl).with_perms(perms).with_vmsa(vmsa);
            TaskResult::Plain(guest.rmpadjust(m, vcpu, gpa.gfn(), size, op)?).describe()
        }
        Action::PscRequest { vcpu, gpa, size, private, cur_page } => {
            let info2 = guest.psc_request(m, vcpu, gpa.gfn(), size, private, cur_page)?;
            TaskResult::PscRequest(info2).describe()
        }
        Action::Access { vcpu, gpa, kind, private } => {
            TaskResult::Plain(guest.access(m, vcpu, gpa, kind, private)?).describe()
        }
        Action::Recoalesce { vcpu, gpa, mode } => {
            if mode == Recoalesce::Naive {
                *lossy = true;
            }
            guest.recoalesce(m, vcpu, gpa.gfn(), mode)?;
            "ok".into()
        }
        Action::HostWrite { gpa, via } => match m.host_write(gpa, via) {
            HostWriteOutcome::Done => "ok".into(),
            HostWriteOutcome::Hang => return Err(GuestError::Stopped),
            other => other.name().to_owned(),
        },
        Action::HostRead { gpa, via } => match m.host_read(gpa, via) {
            HostWriteOutcome::Done => "ok".into(),
            other => other.name().to_owned(),
        },
        Action::HostPin { gpa, pin } => match m.host_pin(gpa, pin) {
            Ok(()) => "ok".into(),
            Err(e) => e.to_string(),
        },
        Action::HostSplit { gpa } => match m.traced(None, |m| {
            let split = m.host.split_vma(gpa.gfn().raw());
            if let Ok(Some(inv)) = &split {
                m.kvm.mmu_invalidate(*inv);
            }
            split
        }) {
            Ok(Some(_)) => "split".into(),
            Ok(None) => "already 4K".into(),
            Err(e) => e.to_string(),
        },
        Action::HostCollapse { gpa } => match m.host.collapse_vma(gpa.gfn().raw()) {
            Ok(Some(inv)) => {
                if let Some(r) = &mut m.rmp.sink {
                    r.host_collapse(inv.offset, inv.pages);
                }
                m.kvm.mmu_invalidate(inv);
                "collapsed".into()
            }
            Ok(None) => "nothing to collapse".into(),
            Err(e) => e.to_string(),
        },
        Action::Tick { .. } => "idle".into(),
        Action::PunchHole { gpa, pages } => {
            // The VMM's fallocate runs KVM's `sev_gmem_invalidate`: its RMP instructions are KVM's.
            let punched = m.traced_as(None, Actor::Kvm, |m| {
                let Machine { kvm, host, rmp, .. } = m;
                kvm.punch_hole(host, rmp, gpa.gfn(), pages)
            });
            match punched {
                Ok(()) => "ok".into(),
                Err(e) => {
                    m.stop(&e);
                    return Err(GuestError::Stopped);
                }
            }
        }
    })
}
