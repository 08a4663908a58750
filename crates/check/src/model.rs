//! The stateright model.

use std::hash::{Hash, Hasher};

use snpsim_defs::{Gfn, PageSize};
use snpsim_guest::{Granularity, GuestConfig, Recoalesce};
use snpsim_host::HostVia;
use snpsim_hw::{AccessKind, Geometry, Mutant, RmpModel};
use snpsim_kvm::Policy;
use snpsim_sim::engine::{Action, CheckMode, MemoryBacking, SimConfig, Simulation};
use stateright::{Model, Property};

use crate::fingerprint;

/// Guest pages on the tiny machine: one "1G" page of 16 pages (four "2M" regions of 4).
pub const GUEST_PAGES: u64 = 16;
/// Host pages on the tiny machine.
pub const HOST_PAGES: u64 = 64;

/// A simulation configuration on the tiny geometry.
pub fn tiny_config(
    policy: &'static dyn Policy,
    backing: MemoryBacking,
    granularity: Granularity,
) -> SimConfig {
    let defaults = SimConfig::new(policy, backing, GUEST_PAGES, HOST_PAGES);
    SimConfig {
        geometry: Geometry::TINY,
        guest: GuestConfig { granularity, ..defaults.guest },
        check: CheckMode::Full,
        ..defaults
    }
}

/// The actions the checker may take in every state: conversions of the first two "2M" regions at
/// 2M and at 4K, private and shared accesses, host writes by the VMM and by the kernel through
/// the VMA, host split and collapse, and both kinds of re-coalescing.
pub fn menu(geometry: Geometry, gmem: bool) -> Vec<Action> {
    let g2m = geometry.pages(PageSize::Size2M);
    let gpa = |p: u64| Gfn(p).gpa();
    let mut m = Vec::new();
    for region in [0, g2m] {
        for private in [true, false] {
            m.push(Action::Psc {
                vcpu: 0,
                gpa: gpa(region),
                pages: g2m,
                private,
                granularity: Some(Granularity::M2),
            });
        }
    }
    for page in [1, g2m] {
        for private in [true, false] {
            m.push(Action::Psc {
                vcpu: 0,
                gpa: gpa(page),
                pages: 1,
                private,
                granularity: Some(Granularity::K4),
            });
        }
    }
    for page in [0, 1, g2m + 1] {
        m.push(Action::Access { vcpu: 0, gpa: gpa(page), kind: AccessKind::Write, private: true });
        m.push(Action::Access { vcpu: 0, gpa: gpa(page), kind: AccessKind::Read, private: true });
    }
    m.push(Action::Access { vcpu: 0, gpa: gpa(1), kind: AccessKind::Write, private: false });
    for page in [0, 1] {
        for via in [HostVia::Vmm, HostVia::Uaccess, HostVia::Kernel] {
            m.push(Action::HostWrite { gpa: gpa(page), via });
        }
    }
    if !gmem {
        m.push(Action::HostSplit { gpa: gpa(0) });
        m.push(Action::HostCollapse { gpa: gpa(0) });
    }
    m.push(Action::Recoalesce { vcpu: 0, gpa: gpa(0), mode: Recoalesce::SaveRestore });
    m.push(Action::Recoalesce { vcpu: 0, gpa: gpa(0), mode: Recoalesce::Naive });
    m
}

/// One state: a simulation and its canonical digest.
#[derive(Clone, Debug)]
pub struct State {
    /// The simulation.
    pub sim: Simulation,
    /// Actions taken so far.
    pub depth: u32,
    /// A kernel write to a page the guest had not made private took an RMP #PF.
    pub kernel_fault_on_shared: bool,
    digest: u64,
}

impl State {
    fn new(sim: Simulation, depth: u32, kernel_fault_on_shared: bool) -> Self {
        let mut s = State { sim, depth, kernel_fault_on_shared, digest: 0 };
        // What the `always` properties read must be part of the identity, or a violating state
        // would be merged with the clean state it otherwise equals and never be checked.
        let flags = u64::from(s.false_negatives() > 0)
            | u64::from(s.violations() > 0) << 1
            | u64::from(kernel_fault_on_shared) << 2;
        s.digest = fingerprint(&s.sim) ^ flags.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        s
    }

    /// Whether every page the guest believes validated is assigned and validated in the RMP.
    fn guest_view_consistent(&self) -> bool {
        let (Some(m), g) = (self.sim.machine(), self.sim.guest()) else { return true };
        (0..g.pages()).filter(|&p| g.is_validated(Gfn(p))).all(|p| {
            m.kvm
                .bound_pfn(&m.host, Gfn(p))
                .and_then(|pfn| m.rmp.raw_entry(pfn))
                .is_some_and(|e| e.lo.assigned() && e.lo.validated())
        })
    }

    fn kvm_instruction_failed(&self) -> bool {
        self.sim.outcome().is_some_and(|(_, why)| why.contains(" failed with "))
    }

    fn violations(&self) -> usize {
        self.sim.violations().count() + self.sim.machine().map_or(0, |m| m.findings.violations.len())
    }

    fn false_negatives(&self) -> u64 {
        self.sim.machine().map_or(0, |m| m.findings.false_negatives)
    }
}

impl Hash for State {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.digest.hash(h);
    }
}

impl PartialEq for State {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
    }
}

impl Eq for State {}

/// What to check: a policy, a backing, a guest granularity and a depth bound.
#[derive(Clone, Copy, Debug)]
pub struct CheckSetup {
    /// The policy.
    pub policy: &'static dyn Policy,
    /// The backing.
    pub backing: MemoryBacking,
    /// The guest's granularity.
    pub granularity: Granularity,
    /// Most actions on a path.
    pub depth: u32,
    /// A planted bug (`None` for the real model).
    pub mutant: Option<Mutant>,
}

/// The model: a setup and its action menu.
#[derive(Clone, Debug)]
pub struct SnpModel {
    setup: CheckSetup,
    menu: Vec<Action>,
}

impl SnpModel {
    /// The model of `setup`.
    pub fn new(setup: CheckSetup) -> Self {
        let gmem = matches!(setup.backing, MemoryBacking::Gmem { .. });
        SnpModel { setup, menu: menu(Geometry::TINY, gmem) }
    }

    /// The action menu.
    pub fn actions_menu(&self) -> &[Action] {
        &self.menu
    }
}

impl Model for SnpModel {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        let s = self.setup;
        Simulation::with_mutant(tiny_config(s.policy, s.backing, s.granularity), s.mutant)
            .map(|sim| vec![State::new(sim, 0, false)])
            .unwrap_or_default()
    }

    /// A well-behaved guest: private accesses only to pages it validated, shared accesses only to
    /// pages it did not; conversions, host writes and re-coalescing anywhere on the menu.
    fn actions(&self, state: &State, actions: &mut Vec<Action>) {
        if state.sim.outcome().is_some() || state.depth >= self.setup.depth {
            return;
        }
        let g = state.sim.guest();
        actions.extend(self.menu.iter().copied().filter(|a| match *a {
            Action::Access { gpa, private, .. } => g.is_validated(gpa.gfn()) == private,
            _ => true,
        }));
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut sim = last.sim.clone();
        let kernel_target_shared = match action {
            Action::HostWrite { gpa, via: HostVia::Kernel } => sim.machine().is_some_and(|m| {
                m.kvm
                    .bound_pfn(&m.host, gpa.gfn())
                    .and_then(|p| m.rmp.raw_entry(p))
                    .is_some_and(|e| !e.lo.assigned())
            }),
            _ => false,
        };
        let oops_before = sim.machine().map_or(0, |m| m.host.stats.kernel_oops);
        sim.step(&action);
        let oops_after = sim.machine().map_or(0, |m| m.host.stats.kernel_oops);
        Some(State::new(sim, last.depth + 1, kernel_target_shared && oops_after > oops_before))
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("no false negative", |_, s: &State| s.false_negatives() == 0),
            Property::always("invariants hold", |_, s: &State| s.violations() == 0),
            Property::always("the guest's validated pages are validated in the RMP", |_, s: &State| {
                s.guest_view_consistent()
            }),
            Property::always("KVM's RMP instructions never fail", |_, s: &State| !s.kvm_instruction_failed()),
            Property::always("kernel writes to shared pages complete", |_, s: &State| {
                !s.kernel_fault_on_shared
            }),
            Property::sometimes("an RMP #NPF is resolved and the guest goes on", |_, s: &State| {
                s.sim.outcome().is_none() && s.sim.machine().is_some_and(|m| m.kvm.stats.rmp_npf > 0)
            }),
            Property::sometimes("a PSMASHed region is re-coalesced", |_, s: &State| {
                s.sim.guest().stats.recoalesced > 0 && s.sim.machine().is_some_and(|m| m.kvm.stats.psmash > 0)
            }),
        ]
    }
}
