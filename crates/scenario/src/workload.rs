//! Generated workloads (`docs/semantics.md` G8): a boot, steady phases of guest work with
//! conversions and host writes, and ballooning, each turned into the same [`Action`]s scripted
//! steps use, so a workload's actions can be written out as steps ([`steps_toml`]) and replayed
//! with identical metrics.
//!
//! **Every row performs the same guest actions.** A workload's guest actions are a fixed sequence
//! derived from its phases' parameters and the scenario's `seed` alone, never from the policy, the
//! backing or simulated time, so the runs of one workload under different policies and backings
//! compare like with like (a slower configuration takes more simulated time for the same work; it
//! does not do less work). A steady phase's `duration` sizes its sequence, it does not cut it:
//! [`steady_plan`] gives `duration × TOUCHES_PER_S` touches, `duration × conversions_per_s`
//! conversions and `duration × host_writes_per_s` host writes (each rounded down), and each kind
//! falls due at fixed points of the phase's *nominal* time, the k-th at `k × 1 s / rate`; they run
//! in order of those points (ties: conversion, host write, touch). What the generator decides from
//! — which pages are unaccepted, shared, live buffers, ballooned, or hold data the guest wrote —
//! is its own model of the guest, not the simulated machine's state.
//!
//! **Nothing is dropped silently.** The [`WorkloadReport`] counts, per kind, the actions planned,
//! performed and not performed: an action is performed when it is issued to a running machine; it
//! is not performed when the run stopped first (the VM was rejected, the guest terminated, ...)
//! or when it had no target (`no_target`: no free place for a driver buffer, no shared page for a
//! host write, an empty working set). Phases that never started are counted as well.
//!
//! Randomness: the guest actions draw from their own ChaCha8 generator ([`plan_rng`]:
//! `rand_chacha::ChaCha8Rng::seed_from_u64(seed)` on stream 1; its output is specified by the
//! ChaCha algorithm and stable across platforms and versions of the crate); the scheduler of an
//! interleaved run draws from the run's generator ([`rng`], stream 0), so however many scheduling
//! draws a configuration needs, its guest actions stay the same. Nothing depends on wall-clock
//! time or hash order.
//!
//! What each phase does (Linux guest behaviour; the choices are `docs/semantics.md` G5–G8):
//! - **boot**: with `accept = "lazy"`, the EFI stub accepts the non-2M-aligned edges of guest
//!   memory, memblock accepts the firmware/kernel footprint (the first 64 MiB), the memmap (1/64 of
//!   memory, at the top) and the SWIOTLB buffer (below the memmap), and the rest stays in the
//!   unaccepted bitmap; with `accept = "eager"` all memory is accepted in one go (a guest that
//!   makes its first page-state change over MSR before it has a GHCB, `linux-2021`, accepts the
//!   footprint first, then the rest). Then the SWIOTLB buffer (6 % of memory clamped to
//!   [64 MiB, 1 GiB]) is made shared. The simulated time from VM start (the host's preallocation
//!   of a legacy VMA included) to the end of the first boot phase,
//!   plus the cost model's boot work outside the memory model (`boot_fixed`, `boot_per_gib`), is
//!   the workload's time-to-ready.
//! - **steady**: the guest touches its working set (the first `working_set` bytes of memory, minus
//!   ballooned pages) in the `touch` order, one access per touch: a page it has not written since
//!   it last became private is written, others are read (2/3) or written (1/3); a page in an
//!   unaccepted 2M unit first makes the guest accept the 4 MiB chunk holding it; a shared page
//!   (SWIOTLB, a live driver buffer) is accessed as shared. Each conversion makes a driver buffer
//!   (4 KiB, or 64 KiB one time in eight) at a random place of the working set's accepted memory
//!   shared (the page allocator hands out accepted memory first); the sixteen most recent stay
//!   shared and the oldest is converted back to private, after which a guest with `recoalesce`
//!   other than `none` re-coalesces its 2M region(s). Each host write writes a page picked
//!   uniformly among the guest's shared pages, alternately through the VMM (`vmm`) and vhost's
//!   get/put_user (`uaccess`).
//! - **balloon**: the guest gives `size` bytes below the SWIOTLB buffer back to the host: it
//!   converts the accepted part to shared (unaccepted units are simply never accepted) and, in the
//!   gmem era, the VMM punches a hole over it (a host action only that era has); the guest never
//!   touches those pages again.
//!
//! Why one long file: the workload generator is one plan (boot, phases, balloon) drawn from one
//! seeded stream; its parts share the plan's cursor and the order of draws, which fixes every
//! generated action, so they stay together.

use std::collections::VecDeque;
use std::fmt::Write as _;

use snpsim_defs::{Gfn, PAGE_SIZE_4K, RmpPageSize};
use snpsim_guest::{BootLayout, Granularity, Recoalesce, UnacceptedMemory};
use snpsim_host::HostVia;
use snpsim_hw::{AccessKind, Geometry};
use snpsim_stores::RangeSet;

use crate::{AcceptMode, BalloonPhase, Era, Phase, Scenario, SteadyPhase, TouchPattern};
use snpsim_engine::engine::{Action, Simulation};
use snpsim_engine::names::Named;

pub use snpsim_engine::rng::{Rng, below, plan_rng, rng};

/// Driver buffers kept shared at once; converting one more returns the oldest to private.
pub const LIVE_BUFFERS: usize = 16;

/// Pages of the larger driver buffer (64 KiB), used one conversion in eight.
pub const BIG_BUFFER_PAGES: u64 = 16;

/// Touches per second of a steady phase's `duration`: one per 125 ns, about the rate of a guest
/// whose every access misses the TLB (the measured 129–169 ns latencies of `guest_access_2m` and
/// `guest_access_4k`). It sizes the phase's action sequence; it is not a cost.
pub const TOUCHES_PER_S: u64 = 8_000_000;

/// Counts of a workload's guest actions, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ActionCounts {
    /// Guest accesses to the working set (one per touch; an acceptance it needs is part of it).
    pub touches: u64,
    /// Driver buffers made shared (the return of the oldest to private is part of it).
    pub conversions: u64,
    /// Host writes to the guest's shared pages.
    pub host_writes: u64,
}

impl ActionCounts {
    /// All kinds together.
    pub fn total(&self) -> u64 {
        self.touches + self.conversions + self.host_writes
    }

    fn add(&mut self, o: ActionCounts) {
        self.touches += o.touches;
        self.conversions += o.conversions;
        self.host_writes += o.host_writes;
    }

    fn minus(&self, o: ActionCounts) -> ActionCounts {
        ActionCounts {
            touches: self.touches.saturating_sub(o.touches),
            conversions: self.conversions.saturating_sub(o.conversions),
            host_writes: self.host_writes.saturating_sub(o.host_writes),
        }
    }
}

/// `rate` events per second over `duration_ns`, rounded down.
fn per_duration(rate: u64, duration_ns: u64) -> u64 {
    u64::try_from(u128::from(rate) * u128::from(duration_ns) / 1_000_000_000).unwrap_or(u64::MAX)
}

/// The guest actions of a steady phase, from its parameters alone: `duration` × the rate of each
/// kind ([`TOUCHES_PER_S`], `conversions_per_s`, `host_writes_per_s`), rounded down.
pub fn steady_plan(p: &SteadyPhase) -> ActionCounts {
    ActionCounts {
        touches: per_duration(TOUCHES_PER_S, p.duration_ns),
        conversions: per_duration(p.conversions_per_s, p.duration_ns),
        host_writes: per_duration(p.host_writes_per_s, p.duration_ns),
    }
}

/// The guest actions a workload's steady phases plan ([`steady_plan`] summed).
pub fn workload_plan(phases: &[Phase]) -> ActionCounts {
    let mut c = ActionCounts::default();
    for phase in phases {
        if let Phase::Steady(p) = phase {
            c.add(steady_plan(p));
        }
    }
    c
}

/// How one phase went.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PhaseReport {
    /// `boot`, `steady` or `balloon`.
    pub kind: &'static str,
    /// `sim_time_ns` when it started.
    pub start_ns: u64,
    /// `sim_time_ns` when it ended.
    pub end_ns: u64,
    /// Steps it issued to the machine (accesses, acceptances, page-state changes, host writes,
    /// re-coalesces, hole punches).
    pub steps: u64,
    /// The guest actions it performed.
    pub actions: ActionCounts,
}

/// How a workload went.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct WorkloadReport {
    /// One report per phase run (a run that stops early has fewer).
    pub phases: Vec<PhaseReport>,
    /// Phases that never started because the run had stopped.
    pub phases_not_run: u64,
    /// The simulated time from VM start (a legacy VMA's preallocation included) to the end of the
    /// first boot phase, plus the boot work outside the memory model (`boot_fixed` +
    /// `boot_per_gib` × memory); `None` without a boot phase or when the run stopped before its
    /// end.
    pub time_to_ready_ns: Option<u64>,
    /// The guest actions of the steady phases, from their parameters alone: the same for every
    /// policy and backing.
    pub planned: ActionCounts,
    /// The guest actions performed (issued to a running machine).
    pub actions: ActionCounts,
    /// `planned − actions`: not performed because the run stopped first or there was no target.
    pub not_performed: ActionCounts,
    /// The part of `not_performed` that had no target (no free place for a buffer, no shared page
    /// to write, an empty working set); the rest was cut off by the end of the run.
    pub no_target: ActionCounts,
}

/// The generator's view of the guest's memory.
struct Gen<'a> {
    sim: &'a mut Simulation,
    /// The guest actions' generator ([`plan_rng`]).
    plan: Rng,
    /// The run's generator, for the scheduler of an interleaved run.
    sched: &'a mut Rng,
    record: Option<&'a mut Vec<Action>>,
    geometry: Geometry,
    pages: u64,
    unaccepted: UnacceptedMemory,
    layout: Option<BootLayout>,
    /// Pages the guest has made shared for I/O: the SWIOTLB buffer and live driver buffers.
    shared: RangeSet,
    live: VecDeque<(u64, u64)>,
    ballooned: RangeSet,
    /// One bit per page: the guest wrote it since it last became private (the generator's own
    /// record, so that data lost to a policy does not change what the guest does next).
    written: Vec<u64>,
    recoalesce: Recoalesce,
    gmem: bool,
    accept: AcceptMode,
    /// The guest makes its first page-state change over MSR, before it has a GHCB.
    early_msr: bool,
    host_writes: u64,
    steps: u64,
    performed: ActionCounts,
    no_target: ActionCounts,
    /// The working set's accepted pages, where driver buffers come from (recomputed after an
    /// acceptance or a balloon).
    buffer_pool: Option<RangeSet>,
}

impl Gen<'_> {
    /// Issue `action` to the machine; `false` (and nothing issued) once the run has stopped.
    fn emit(&mut self, mut action: Action) -> bool {
        if self.stopped() {
            return false;
        }
        if self.sim.config().interleave {
            action = self.interleave(action);
            if self.stopped() {
                return false;
            }
        }
        self.sim.step(&action);
        self.steps += 1;
        if let Some(r) = self.record.as_deref_mut() {
            r.push(action);
        }
        true
    }

    /// In an interleaved run, a guest action goes to the vCPUs in turn, and a random busy vCPU
    /// ticks until that one is idle; a host action waits until no in-flight window is open. The
    /// actions of the vCPUs thus overlap, drawn from the run's scheduling generator.
    fn interleave(&mut self, action: Action) -> Action {
        let vcpus = self.sim.config().vcpus;
        let action = match action {
            Action::Psc { vcpu: _, gpa, pages, private, granularity } => {
                Action::Psc { vcpu: self.next_vcpu(vcpus), gpa, pages, private, granularity }
            }
            Action::Accept { vcpu: _, gpa, pages, granularity } => {
                Action::Accept { vcpu: self.next_vcpu(vcpus), gpa, pages, granularity }
            }
            Action::Access { vcpu: _, gpa, kind, private } => {
                Action::Access { vcpu: self.next_vcpu(vcpus), gpa, kind, private }
            }
            Action::Recoalesce { vcpu: _, gpa, mode } => {
                Action::Recoalesce { vcpu: self.next_vcpu(vcpus), gpa, mode }
            }
            other => other,
        };
        let geometry = self.geometry;
        let overlaps = |a: &Action, b: &Action| match (a.pages(geometry), b.pages(geometry)) {
            (Some((s1, n1)), Some((s2, n2))) => s1 < s2 + n2 && s2 < s1 + n1,
            _ => false,
        };
        while self.sim.outcome().is_none() {
            // The guest orders what depends on what: an access waits for the acceptance or
            // conversion of its own page on another vCPU (Linux accepts on the faulting thread).
            let conflict = self.sim.running().iter().flatten().any(|r| overlaps(&r.action, &action));
            let waiting = conflict
                || match action.vcpu() {
                    Some(v) => self.sim.is_busy(v),
                    None => self.sim.windows_open(),
                };
            if !waiting {
                break;
            }
            self.tick_any(vcpus);
        }
        action
    }

    fn next_vcpu(&self, vcpus: u32) -> u32 {
        (self.steps % u64::from(vcpus)) as u32
    }

    /// Tick one busy vCPU, drawn uniformly.
    fn tick_any(&mut self, vcpus: u32) {
        let busy: Vec<u32> = (0..vcpus).filter(|&v| self.sim.is_busy(v)).collect();
        if let Some(&v) = busy.get(below(self.sched, busy.len().max(1) as u64) as usize) {
            self.sim.step(&Action::Tick { vcpu: v });
        }
    }

    /// Let every vCPU finish what it is running.
    fn drain(&mut self) {
        let vcpus = self.sim.config().vcpus;
        while self.sim.outcome().is_none() && (0..vcpus).any(|v| self.sim.is_busy(v)) {
            self.tick_any(vcpus);
        }
    }

    fn stopped(&self) -> bool {
        self.sim.outcome().is_some()
    }

    fn is_written(&self, gfn: u64) -> bool {
        self.written.get((gfn / 64) as usize).is_some_and(|w| w & (1 << (gfn % 64)) != 0)
    }

    fn set_written(&mut self, gfn: u64) {
        if let Some(w) = self.written.get_mut((gfn / 64) as usize) {
            *w |= 1 << (gfn % 64);
        }
    }

    fn clear_written(&mut self, start: u64, pages: u64) {
        for gfn in start..start + pages {
            if let Some(w) = self.written.get_mut((gfn / 64) as usize) {
                *w &= !(1 << (gfn % 64));
            }
        }
    }

    fn accept_ranges(&mut self, ranges: Vec<(u64, u64)>) {
        if !ranges.is_empty() {
            self.buffer_pool = None;
        }
        for (start, pages) in ranges {
            self.emit(Action::Accept { vcpu: 0, gpa: Gfn::new(start).gpa(), pages, granularity: None });
        }
    }

    /// memblock or the page allocator needs `start..start + pages`: accept what is unaccepted.
    fn need(&mut self, start: u64, pages: u64, by_chunk: bool) {
        let unit = self.unaccepted.unit_pages();
        let mut g = start / unit * unit;
        while g < start + pages {
            if self.unaccepted.is_unaccepted(g) {
                let r = if by_chunk {
                    self.unaccepted.take_chunk(g)
                } else {
                    self.unaccepted.take_range(g, unit)
                };
                self.accept_ranges(r);
            }
            g += unit;
        }
    }

    fn boot(&mut self) {
        let layout = BootLayout::new(self.geometry, self.pages);
        match self.accept {
            AcceptMode::Eager => {
                // A guest without a GHCB yet accepts the firmware/kernel footprint first, over
                // MSR, and the rest once it has registered its GHCB.
                let first = if self.early_msr { layout.footprint.min(self.pages) } else { 0 };
                let ranges = [(0, first), (first, self.pages - first)];
                self.accept_ranges(ranges.into_iter().filter(|&(_, n)| n > 0).collect());
                self.unaccepted = UnacceptedMemory::none(self.geometry);
            }
            AcceptMode::Lazy => {
                let (bitmap, up_front) = UnacceptedMemory::lazy(self.geometry, self.pages);
                self.unaccepted = bitmap;
                self.accept_ranges(up_front);
                let footprint = self.unaccepted.take_range(0, layout.footprint);
                self.accept_ranges(footprint);
                let memmap = self.unaccepted.take_range(layout.memmap, self.pages - layout.memmap);
                self.accept_ranges(memmap);
                let swiotlb = self.unaccepted.take_range(layout.swiotlb, layout.swiotlb_pages);
                self.accept_ranges(swiotlb);
            }
        }
        if layout.swiotlb_pages > 0 {
            self.emit(Action::Psc {
                vcpu: 0,
                gpa: Gfn::new(layout.swiotlb).gpa(),
                pages: layout.swiotlb_pages,
                private: false,
                granularity: None,
            });
            self.shared.insert(layout.swiotlb, layout.swiotlb + layout.swiotlb_pages);
        }
        self.layout = Some(layout);
    }

    /// The pages a steady phase may touch: the working set minus ballooned pages.
    fn touchable(&self, working_set_pages: u64) -> RangeSet {
        let mut t = RangeSet::new();
        t.insert(0, working_set_pages.min(self.pages));
        for (s, e) in self.ballooned.runs() {
            t.remove(s, e);
        }
        t
    }

    /// The phase's [`steady_plan`], in order of the kinds' nominal due points (module doc). Stops
    /// issuing when the run stops; what is left is counted as not performed by the caller.
    fn steady(&mut self, p: &SteadyPhase) {
        let plan = steady_plan(p);
        let touchable = self.touchable(p.working_set / PAGE_SIZE_4K);
        self.buffer_pool = None;
        let n = touchable.len();
        let hot = (n / 10).max(1);
        // Per kind (conversion, host write, touch): how many, at what rate, the next one's index.
        let counts = [plan.conversions, plan.host_writes, plan.touches];
        let rates = [p.conversions_per_s, p.host_writes_per_s, TOUCHES_PER_S];
        let mut next = [1u64; 3];
        // The k-th event of a kind falls due at k × 1 s / rate of nominal time (a kind with a
        // non-zero count has a non-zero rate).
        let due = |k: u64, rate: u64| u128::from(k) * 1_000_000_000 / u128::from(rate.max(1));
        let mut cursor = 0u64;
        while !self.stopped() {
            let Some(kind) =
                (0..3).filter(|&i| next[i] <= counts[i]).min_by_key(|&i| (due(next[i], rates[i]), i))
            else {
                break;
            };
            next[kind] += 1;
            match kind {
                0 => self.convert(&touchable),
                1 => self.host_write(),
                _ if n == 0 => self.no_target.touches += 1,
                _ => {
                    let k = match p.touch {
                        TouchPattern::Sequential => {
                            cursor += 1;
                            (cursor - 1) % n
                        }
                        TouchPattern::Random => below(&mut self.plan, n),
                        TouchPattern::Hotset => {
                            if below(&mut self.plan, 10) < 9 {
                                below(&mut self.plan, hot)
                            } else {
                                below(&mut self.plan, n)
                            }
                        }
                    };
                    let gfn = touchable.nth(k).unwrap_or(0);
                    self.touch(gfn);
                }
            }
        }
    }

    fn touch(&mut self, gfn: u64) {
        if self.unaccepted.is_unaccepted(gfn) {
            self.need(gfn, 1, true);
        }
        let shared = self.shared.contains(gfn);
        let fresh = !shared && !self.is_written(gfn);
        let kind = if fresh || below(&mut self.plan, 3) == 0 { AccessKind::Write } else { AccessKind::Read };
        if self.emit(Action::Access { vcpu: 0, gpa: Gfn::new(gfn).gpa(), kind, private: !shared }) {
            self.performed.touches += 1;
        }
        if kind == AccessKind::Write && !shared {
            self.set_written(gfn);
        }
    }

    fn convert(&mut self, touchable: &RangeSet) {
        if touchable.is_empty() {
            self.no_target.conversions += 1;
            return;
        }
        let pages = if below(&mut self.plan, 8) == 0 { BIG_BUFFER_PAGES } else { 1 };
        // Drivers allocate buffers from memory the guest already accepted (the page allocator
        // accepts another chunk only when it runs dry): the working set minus unaccepted units.
        let from = self.buffer_pool.get_or_insert_with(|| {
            let mut from = touchable.clone();
            for (s, e) in self.unaccepted.unaccepted_runs() {
                from.remove(s, e);
            }
            if from.is_empty() { touchable.clone() } else { from }
        });
        let n = from.len();
        let mut found = None;
        for _ in 0..8 {
            let at = from.nth(below(&mut self.plan, n)).unwrap_or(0) / pages * pages;
            if touchable.covers(at, at + pages) && self.shared.count_in(at, at + pages) == 0 {
                found = Some(at);
                break;
            }
        }
        let Some(at) = found else {
            self.no_target.conversions += 1;
            return;
        };
        self.need(at, pages, true);
        if !self.emit(Action::Psc {
            vcpu: 0,
            gpa: Gfn::new(at).gpa(),
            pages,
            private: false,
            granularity: None,
        }) {
            return;
        }
        self.performed.conversions += 1;
        // The guest's own conversion to shared ends its data there.
        self.clear_written(at, pages);
        self.shared.insert(at, at + pages);
        self.live.push_back((at, pages));
        if self.live.len() > LIVE_BUFFERS
            && let Some((old, old_pages)) = self.live.pop_front()
        {
            self.emit(Action::Psc {
                vcpu: 0,
                gpa: Gfn::new(old).gpa(),
                pages: old_pages,
                private: true,
                granularity: None,
            });
            self.shared.remove(old, old + old_pages);
            self.recoalesce_around(old, old_pages);
        }
    }

    /// After a small buffer went back to private, a guest that re-coalesces regains the 2M entry of
    /// each region the buffer touched, when the whole region is accepted, private and its own.
    fn recoalesce_around(&mut self, start: u64, pages: u64) {
        if self.recoalesce == Recoalesce::None {
            return;
        }
        let unit = self.geometry.pages_per_2m();
        let mut region = start / unit * unit;
        while region < start + pages {
            let whole = region + unit <= self.pages
                && !self.unaccepted.is_unaccepted(region)
                && self.shared.count_in(region, region + unit) == 0
                && self.ballooned.count_in(region, region + unit) == 0;
            if whole {
                self.emit(Action::Recoalesce { vcpu: 0, gpa: Gfn::new(region).gpa(), mode: self.recoalesce });
            }
            region += unit;
        }
    }

    fn host_write(&mut self) {
        let n = self.shared.len();
        if n == 0 {
            self.no_target.host_writes += 1;
            return;
        }
        let gfn = self.shared.nth(below(&mut self.plan, n)).unwrap_or(0);
        let via = if self.host_writes.is_multiple_of(2) { HostVia::Vmm } else { HostVia::Uaccess };
        self.host_writes += 1;
        if self.emit(Action::HostWrite { gpa: Gfn::new(gfn).gpa(), via }) {
            self.performed.host_writes += 1;
        }
    }

    fn balloon(&mut self, p: BalloonPhase) {
        let unit = self.geometry.pages_per_2m();
        let top = self.layout.map_or(self.pages, |l| l.swiotlb);
        let pages = (p.size / PAGE_SIZE_4K).min(top);
        let start = (top - pages) / unit * unit;
        let mut give = RangeSet::new();
        give.insert(start, top);
        for (s, e) in self.shared.runs().chain(self.ballooned.runs()).collect::<Vec<_>>() {
            give.remove(s, e);
        }
        // Unaccepted units were never handed to the guest's allocator: nothing to give back.
        let mut g = start;
        while g < top {
            if self.unaccepted.is_unaccepted(g) {
                give.remove(g, g + unit);
            }
            g += unit;
        }
        for (s, e) in give.runs().collect::<Vec<_>>() {
            self.emit(Action::Psc {
                vcpu: 0,
                gpa: Gfn::new(s).gpa(),
                pages: e - s,
                private: false,
                granularity: None,
            });
            if self.gmem {
                self.emit(Action::PunchHole { gpa: Gfn::new(s).gpa(), pages: e - s });
            }
        }
        self.clear_written(start, top - start);
        self.ballooned.insert(start, top);
        self.buffer_pool = None;
    }
}

/// Run the `[workload]` of `scenario` on `sim` (after its steps): its guest actions come from
/// [`plan_rng`] of the scenario's seed, an interleaved run's scheduling from `sched`; with
/// `record`, every issued action is appended to it as well.
pub fn run_workload(
    sim: &mut Simulation,
    scenario: &Scenario,
    sched: &mut Rng,
    record: Option<&mut Vec<Action>>,
) -> WorkloadReport {
    let mut report = WorkloadReport::default();
    let Some(workload) = &scenario.workload else { return report };
    report.planned = workload_plan(&workload.phases);
    let params = scenario.guest.resolved();
    let geometry = scenario.machine.geometry;
    let pages = scenario.vm.pages();
    let mut g = Gen {
        sim,
        plan: plan_rng(scenario.seed),
        sched,
        record,
        geometry,
        pages,
        unaccepted: UnacceptedMemory::none(geometry),
        layout: None,
        shared: RangeSet::new(),
        live: VecDeque::new(),
        ballooned: RangeSet::new(),
        written: vec![0; usize::try_from(pages.div_ceil(64)).unwrap_or(0)],
        recoalesce: match params.recoalesce {
            crate::Recoalesce::None => Recoalesce::None,
            crate::Recoalesce::SaveRestore => Recoalesce::SaveRestore,
            crate::Recoalesce::Naive => Recoalesce::Naive,
        },
        gmem: scenario.vm.era() == Era::Gmem,
        accept: params.accept,
        early_msr: params.msr_until_ghcb && params.psc_protocol == crate::PscProtocol::Ghcb,
        host_writes: 0,
        steps: 0,
        performed: ActionCounts::default(),
        no_target: ActionCounts::default(),
        buffer_pool: None,
    };
    let mut booted = false;
    for (i, phase) in workload.phases.iter().enumerate() {
        if g.stopped() {
            report.phases_not_run = (workload.phases.len() - i) as u64;
            break;
        }
        let (start, steps, performed) = (g.sim.sim_time_ns(), g.steps, g.performed);
        let kind = match phase {
            Phase::Boot => {
                g.boot();
                "boot"
            }
            Phase::Steady(p) => {
                g.steady(p);
                "steady"
            }
            Phase::Balloon(p) => {
                g.balloon(*p);
                "balloon"
            }
        };
        g.drain();
        let end = g.sim.sim_time_ns();
        if kind == "boot" && !booted {
            booted = true;
            if !g.stopped() {
                let boot = g.sim.costs().boot_compute_ns(scenario.vm.memory);
                report.time_to_ready_ns = Some(end.saturating_add(boot));
            }
        }
        report.phases.push(PhaseReport {
            kind,
            start_ns: start,
            end_ns: end,
            steps: g.steps - steps,
            actions: g.performed.minus(performed),
        });
    }
    report.actions = g.performed;
    report.no_target = g.no_target;
    report.not_performed = report.planned.minus(g.performed);
    report
}

/// `actions` written as scenario `[[step]]` tables, one step per action, so that a
/// generated workload can be saved and replayed as a scripted scenario.
pub fn steps_toml(actions: &[Action]) -> String {
    let mut out = String::new();
    for a in actions {
        let (vcpu, fields) = step_fields(a);
        out.push_str("\n[[step]]\n");
        for (k, v) in fields {
            let _ = writeln!(out, "{k} = {v}");
        }
        if vcpu != 0 {
            let _ = writeln!(out, "vcpu = {vcpu}");
        }
    }
    out
}

fn q(s: &str) -> String {
    format!("{s:?}")
}

fn hex(gpa: snpsim_defs::Gpa) -> String {
    q(&format!("{:#x}", gpa.raw()))
}

fn size(pages: u64) -> String {
    q(&format!("{}KiB", pages * PAGE_SIZE_4K / 1024))
}

fn insn_size(sz: RmpPageSize) -> String {
    q(if sz == RmpPageSize::Size2M { "2MiB" } else { "4KiB" })
}

/// The vCPU and the `key = value` fields of the step that is `a`.
fn step_fields(a: &Action) -> (u32, Vec<(&'static str, String)>) {
    let mut f: Vec<(&'static str, String)> = Vec::new();
    let op = a.op().name();
    let gran = |f: &mut Vec<(&'static str, String)>, g: Option<Granularity>| {
        if let Some(g) = g {
            f.push(("granularity", q(g.name())));
        }
    };
    let vcpu = match *a {
        // Generated workloads never schedule ticks; the interleaving is the scheduler's.
        Action::Tick { vcpu } => {
            f.push(("op", q(op)));
            vcpu
        }
        Action::Psc { vcpu, gpa, pages, private, granularity } => {
            f.extend([("op", q(op)), ("gpa", hex(gpa)), ("size", size(pages))]);
            f.push(("to", q(if private { "private" } else { "shared" })));
            gran(&mut f, granularity);
            vcpu
        }
        Action::Accept { vcpu, gpa, pages, granularity } => {
            f.extend([("op", q(op)), ("gpa", hex(gpa)), ("size", size(pages))]);
            gran(&mut f, granularity);
            vcpu
        }
        Action::Pvalidate { vcpu, gpa, size: sz, validate } => {
            f.extend([("op", q(op)), ("gpa", hex(gpa)), ("size", insn_size(sz))]);
            f.push(("validate", validate.to_string()));
            vcpu
        }
        Action::PscRequest { vcpu, gpa, size: sz, private, cur_page } => {
            f.extend([("op", q(op)), ("gpa", hex(gpa)), ("size", insn_size(sz))]);
            f.push(("to", q(if private { "private" } else { "shared" })));
            if cur_page != 0 {
                f.push(("cur_page", cur_page.to_string()));
            }
            vcpu
        }
        Action::Rmpadjust { vcpu, gpa, size: sz, vmpl, perms, vmsa } => {
            let p: String = [
                (perms.read(), 'r'),
                (perms.write(), 'w'),
                (perms.exec_user(), 'x'),
                (perms.exec_supervisor(), 's'),
            ]
            .iter()
            .filter(|(b, _)| *b)
            .map(|(_, c)| *c)
            .collect();
            f.extend([("op", q(op)), ("gpa", hex(gpa)), ("size", insn_size(sz))]);
            f.extend([("vmpl", vmpl.to_string()), ("perms", q(&p)), ("vmsa", vmsa.to_string())]);
            vcpu
        }
        Action::Access { vcpu, gpa, kind, private } => {
            f.extend([("op", q(op)), ("gpa", hex(gpa)), ("kind", q(kind.name()))]);
            if !private {
                f.push(("private", "false".into()));
            }
            vcpu
        }
        Action::Recoalesce { vcpu, gpa, mode } => {
            f.extend([("op", q(op)), ("gpa", hex(gpa)), ("mode", q(mode.name()))]);
            vcpu
        }
        Action::HostWrite { gpa, via } | Action::HostRead { gpa, via } => {
            f.extend([("op", q(op)), ("gpa", hex(gpa)), ("via", q(via.name()))]);
            0
        }
        Action::HostPin { gpa, .. } | Action::HostSplit { gpa } | Action::HostCollapse { gpa } => {
            f.extend([("op", q(op)), ("gpa", hex(gpa))]);
            0
        }
        Action::PunchHole { gpa, pages } => {
            f.extend([("op", q(op)), ("gpa", hex(gpa)), ("size", size(pages))]);
            0
        }
        Action::Teardown => {
            f.push(("op", q(op)));
            0
        }
    };
    (vcpu, f)
}
