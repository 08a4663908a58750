//! The simulation engine: builds a machine and a guest from a configuration, runs actions (the
//! steps of a scenario) one at a time, checks the invariants after each, and reports metrics.

use std::collections::BTreeSet;

use snpsim_defs::PageSize;
use snpsim_guest::{Guest, GuestError};
use snpsim_host::{Host, VmaBacking};
use snpsim_hw::rmp::Rmp;
use snpsim_hw::{RmpConfig, RmpModel};
use snpsim_kvm::{Era, Kvm, KvmConfig};

pub use crate::action::{Action, Op};
pub use crate::config::{CheckMode, MemoryBacking, SimConfig, SimError, StepReport};
use crate::cost::CostTable;
pub use crate::dispatch::Running;
use crate::dispatch::{collapse_all, interleaved, run_action};
use crate::events::{EventSink, RunEnd};
use crate::invariants;
use crate::machine::Machine;
use crate::measure::{self, collect_with};
use crate::metrics::Metrics;
use crate::outcome::{Cause, Ending, Outcome, Reason};
pub use crate::result::RunResult;
use crate::result::{stopped, terminated};
use crate::series::CoverageSeries;
use crate::state::RunState;

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
/// sim.step(&Action::Psc { vcpu: 0, gpa: Gpa::new(0x200000), pages: 1, private: true, granularity: None });
/// let write = Action::Access { vcpu: 0, gpa: Gpa::new(0x200000), kind: AccessKind::Write, private: true };
/// assert_eq!(sim.step(&write).result, "done");
/// assert!(sim.outcome().is_none(), "the run goes on");
/// assert!(sim.sim_time_ns() > 0);
///
/// // The VMM writes the shared page next to it through its 2M THP mapping: the host's RMP #PF
/// // handler splits the THP to 4K (a needed split) and the write completes.
/// assert_eq!(sim.step(&Action::HostWrite { gpa: Gpa::new(0x201000), via: HostVia::Vmm }).result, "ok");
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
/// sim.step(&Action::Accept { vcpu: 0, gpa: Gpa::new(0x200000), pages: 512, granularity: None });
/// finish(&mut sim, 0);
///
/// // Both vCPUs rescind a 4K page of the 2M private region: each takes an RMP|SIZEM #NPF and KVM
/// // looks up a 2M entry on both before either PSMASHes.
/// let rescind = |vcpu, gpa| Action::Pvalidate { vcpu, gpa: Gpa::new(gpa), size: RmpPageSize::Size4K, validate: false };
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
        host.memory.set_allocation(config.allocation);
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
                sim.set_ranges(true);
            }
            Err(e) => sim.outcome = Some(Ending::of_kvm(&e)),
        }
        Ok(sim)
    }

    /// Execute runs of 4K PVALIDATEs as range operations (`on`, the default) or page by page
    /// (the oracle; docs/semantics.md, "Ranges"). Ranges are used only where they cannot change
    /// what happens: never in an interleaved run (instruction by instruction), with an adversary
    /// or with a planted bug.
    pub fn set_ranges(&mut self, on: bool) {
        let (interleave, adversary) = (self.config.interleave, !self.config.adversary.is_empty());
        if let Some(m) = &mut self.machine {
            m.ranges = on && !interleave && !adversary && m.kvm.mutant().is_none();
            m.kvm.ranges = m.ranges;
        }
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
        if self.outcome.is_some() {
            return StepReport { result: "skipped".into() };
        }
        if let Some(budget) = self.config.step_budget
            && self.steps >= budget
        {
            self.outcome =
                Some(Ending::new(Reason::StepBudget, format!("step budget of {budget} steps exhausted")));
            return StepReport { result: Outcome::StepBudgetExceeded.name().into() };
        }
        self.steps += 1;
        let Some(m) = self.machine.as_mut() else { return StepReport { result: "no_vm".into() } };
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
            // The step that ends the run: its result is the outcome's name (the reason and the
            // detail in words are the ending's own, on the same trace line).
            Err(e @ GuestError::Terminated { reason, .. }) => {
                let ending = terminated(m, e, reason);
                let name = ending.outcome().name().to_string();
                self.outcome = Some(ending);
                name
            }
            Err(GuestError::Stopped) => {
                let ending = stopped(m);
                let name = ending.outcome().name().to_string();
                self.outcome = Some(ending);
                name
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
