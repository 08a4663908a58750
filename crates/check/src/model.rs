//! The stateright model.

use snpsim_defs::{Gfn, PageSize};
use snpsim_engine::engine::{Action, CheckMode, MemoryBacking, SimConfig, Simulation};
use snpsim_guest::{Granularity, GuestConfig, Recoalesce};
use snpsim_host::HostVia;
use snpsim_hw::{AccessKind, Geometry, Mutant};
use snpsim_kvm::Policy;
use snpsim_trace::{TraceExt, TraceMeta};
use stateright::{Model, Property};

use crate::fingerprint::digest;

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
    let gpa = |p: u64| Gfn::new(p).gpa();
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

/// The race menu of a two-vCPU check: both vCPUs work on their own page of the same "2M" region
/// (pages 1 and 2 of region 0, which starts private and 2M-validated): each converts its page to
/// shared and back at 4K and reads and writes it; the host writes the pages through the VMMs
/// mapping and, on THP, splits and collapses the region. The races are between the vCPUs' #NPF
/// handlers, PSMASHes and page-state changes on the one 2M RMP entry and NPT leaf.
pub fn race_menu(geometry: Geometry, gmem: bool) -> Vec<Action> {
    let _ = geometry;
    let gpa = |p: u64| Gfn::new(p).gpa();
    let mut m = Vec::new();
    for vcpu in 0..2 {
        let page = gpa(1 + u64::from(vcpu));
        for private in [false, true] {
            m.push(Action::Psc { vcpu, gpa: page, pages: 1, private, granularity: Some(Granularity::K4) });
        }
        for kind in [AccessKind::Write, AccessKind::Read] {
            m.push(Action::Access { vcpu, gpa: page, kind, private: true });
        }
    }
    for page in [1, 2] {
        m.push(Action::HostWrite { gpa: gpa(page), via: HostVia::Vmm });
    }
    if !gmem {
        m.push(Action::HostSplit { gpa: gpa(0) });
        m.push(Action::HostCollapse { gpa: gpa(0) });
    }
    m
}

/// The simulation a check of `setup` starts from (traced with `trace` from its first event). With
/// two vCPUs the race starts from region 0 private and validated at 2M (vCPU 0, to completion).
pub fn initial_simulation(setup: &CheckSetup, trace: Option<&TraceMeta>) -> Option<Simulation> {
    let mut config = tiny_config(setup.policy, setup.backing, setup.granularity);
    config.npt_level_follows_rmp = setup.npt_level_follows_rmp;
    if setup.vcpus > 1 {
        config.vcpus = setup.vcpus;
        config.interleave = true;
    }
    let mut sim = Simulation::with_mutant(config, setup.mutant).ok()?;
    if let Some(meta) = trace {
        sim.enable_trace(meta);
    }
    if setup.vcpus > 1 {
        let g2m = Geometry::TINY.pages(PageSize::Size2M);
        sim.step(&Action::Accept {
            vcpu: 0,
            gpa: Gfn::new(0).gpa(),
            pages: g2m,
            granularity: Some(Granularity::M2),
        });
        while sim.outcome().is_none() && sim.is_busy(0) {
            sim.step(&Action::Tick { vcpu: 0 });
        }
        if setup.policy.in_place_conversion() {
            // And region 1 by vCPU 1: a second 2M leaf in the in-place file's folio.
            sim.step(&Action::Accept {
                vcpu: 1,
                gpa: Gfn::new(g2m).gpa(),
                pages: g2m,
                granularity: Some(Granularity::M2),
            });
            while sim.outcome().is_none() && sim.is_busy(1) {
                sim.step(&Action::Tick { vcpu: 1 });
            }
        }
    }
    Some(sim)
}

/// One state: a simulation and its identity.
#[derive(Clone, Debug)]
pub struct State {
    /// The simulation.
    pub sim: Simulation,
    /// Actions taken so far.
    pub depth: u32,
    /// The state's identity: the digest of its canonical form and the flags the properties read.
    key: Key,
}

/// A state's identity: the 128-bit XXH3 digest of its canonical form ([`crate::canonical`])
/// and the property flags ([`crate::fingerprint::digest`]). Never a 64-bit hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(u128);

impl Key {
    /// The digest.
    pub fn digest(self) -> u128 {
        self.0
    }
}

impl State {
    fn new(sim: Simulation, depth: u32) -> Self {
        let mut s = State { sim, depth, key: Key(0) };
        // What the `always` properties read must be part of the identity, or a violating state
        // would be merged with the clean state it otherwise equals and never be checked.
        // So must the counters the race goals read: a tick whose PSMASH meets FAIL_INUSE changes
        // nothing else (the vCPU retries later).
        let races = s.sim.machine().map(|m| m.kvm.stats.races).unwrap_or_default();
        let flags = u8::from(s.false_negatives() > 0)
            | u8::from(s.violations() > 0) << 1
            | u8::from(races.psmash_already_4k > 0) << 2
            | u8::from(races.psmash_fail_inuse > 0) << 3;
        s.key = Key(digest(&s.sim, flags));
        s
    }

    /// The state's identity: two states are the same state when their keys are equal.
    pub fn key(&self) -> &Key {
        &self.key
    }

    fn kvm_instruction_failed(&self) -> bool {
        self.sim.ending().is_some_and(|e| e.cause() == Some(snpsim_engine::outcome::Cause::InstructionFailed))
    }

    fn violations(&self) -> usize {
        self.sim.violations().count() + self.sim.machine().map_or(0, |m| m.findings.violations.len())
    }

    fn false_negatives(&self) -> u64 {
        self.sim.machine().map_or(0, |m| m.findings.false_negatives)
    }
}

impl std::hash::Hash for State {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.key.hash(h);
    }
}

impl PartialEq for State {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
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
    /// 1: one vCPU, every operation to completion ([`menu`]); 2: two interleaved vCPUs racing
    /// in one region ([`race_menu`]), each step one tick.
    pub vcpus: u32,
    /// `npt_level_follows_rmp` (`None`: the policy's default).
    pub npt_level_follows_rmp: Option<bool>,
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
        let gmem = matches!(setup.backing, MemoryBacking::Gmem { .. } | MemoryBacking::GmemHugetlb(_));
        let mut menu =
            if setup.vcpus > 1 { race_menu(Geometry::TINY, gmem) } else { menu(Geometry::TINY, gmem) };
        if setup.vcpus > 1 && setup.policy.in_place_conversion() {
            // In-place conversion: vCPU 1 also writes a page of the folio's second "2M" region
            // (accepted at the start), whose leaf a conversion of region 0 must unmap before the
            // folio splits (the split-before-unmap race).
            let page = Gfn::new(Geometry::TINY.pages(PageSize::Size2M) + 1).gpa();
            menu.push(Action::Access { vcpu: 1, gpa: page, kind: AccessKind::Write, private: true });
        }
        SnpModel { setup, menu }
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
        initial_simulation(&self.setup, None).map(|sim| vec![State::new(sim, 0)]).unwrap_or_default()
    }

    /// A well-behaved guest: private accesses only to pages it validated, shared accesses only to
    /// pages it did not; conversions, host writes and re-coalescing anywhere on the menu.
    fn actions(&self, state: &State, actions: &mut Vec<Action>) {
        if state.sim.outcome().is_some() || state.depth >= self.setup.depth {
            return;
        }
        let g = state.sim.guest();
        let sim = &state.sim;
        let idle = |a: &Action| a.vcpu().is_none_or(|v| !sim.is_busy(v));
        actions.extend(self.menu.iter().copied().filter(|a| match *a {
            Action::Access { gpa, private, .. } => idle(a) && g.is_validated(gpa.gfn()) == private,
            _ if a.vcpu().is_none() => !sim.windows_open(),
            _ => idle(a),
        }));
        for v in 0..self.setup.vcpus {
            if sim.is_busy(v) {
                actions.push(Action::Tick { vcpu: v });
            }
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut sim = last.sim.clone();
        sim.step(&action);
        Some(State::new(sim, last.depth + 1))
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("no false negative", |_, s: &State| s.false_negatives() == 0),
            Property::always("invariants hold", |_, s: &State| s.violations() == 0),
            Property::always("KVM's RMP instructions never fail", |_, s: &State| !s.kvm_instruction_failed()),
            Property::sometimes("an RMP #NPF is resolved and the guest goes on", |_, s: &State| {
                s.sim.outcome().is_none() && s.sim.machine().is_some_and(|m| m.kvm.stats.rmp_npf > 0)
            }),
            Property::sometimes("a PSMASHed region is re-coalesced", |_, s: &State| {
                s.sim.guest().stats.recoalesced > 0 && s.sim.machine().is_some_and(|m| m.kvm.stats.psmash > 0)
            }),
            Property::sometimes("two vCPUs PSMASH one entry (already 4K)", |_, s: &State| {
                s.sim.machine().is_some_and(|m| m.kvm.stats.races.psmash_already_4k > 0)
            }),
            Property::sometimes("a PSMASH meets another CPU's in-flight instruction", |_, s: &State| {
                s.sim.machine().is_some_and(|m| m.kvm.stats.races.psmash_fail_inuse > 0)
            }),
        ]
    }
}
