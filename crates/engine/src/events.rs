//! The engine's typed events and the sink that consumes them.
//!
//! The engine calls an [`EventSink`] at every architectural event of a run: each step's start and
//! end, every RMP instruction that passes the machine's RMP wrapper (RMPUPDATE, PSMASH, PVALIDATE,
//! RMPADJUST), each #NPF and other exit to KVM and its result, guest accesses, host writes and the
//! host #PFs they take, khugepaged collapses, and the KVM-internal effects read from counter
//! differences around each KVM or host call ([`Counters`]). Who executes each event is an
//! [`Actor`] on an optional vCPU. The engine knows nothing of how events are stored: the JSONL
//! trace of `snpsim-trace` is one sink. Without a sink the hooks test an `Option` and do nothing
//! else.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use snpsim_defs::{
    Gpa, NpfErrorCode, PageSize, PfErrorCode, Pfn, ReturnCode, RmpAdjustOperand, RmpArchEntry, RmpPageSize,
};
use snpsim_host::{HostVia, HostWriteOutcome};
use snpsim_hw::{AccessKind, GuestOutcome, PvalidateStatus};

use crate::action::Action;
use crate::metrics::Metrics;
use crate::outcome::Ending;

/// Who executes an event: guest code on a vCPU, KVM, or a host actor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Actor {
    /// Guest code on its vCPU.
    Guest,
    /// KVM, handling an exit or working on a vCPU's behalf.
    Kvm,
    /// The VMM process (its own accesses to guest memory, `fallocate`).
    Vmm,
    /// vhost: a kernel thread using get/put_user on the VMM's mapping.
    Vhost,
    /// The kernel through its direct map.
    Kernel,
    /// Host memory management (splitting or collapsing the VMA's huge pages on request).
    HostMm,
    /// khugepaged collapsing THP ranges between steps.
    Khugepaged,
    /// The adversarial hypervisor carrying out an attack.
    Adversary,
}

impl Actor {
    /// The actor's name in traces.
    pub const fn name(self) -> &'static str {
        match self {
            Actor::Guest => "guest",
            Actor::Kvm => "kvm",
            Actor::Vmm => "vmm",
            Actor::Vhost => "vhost",
            Actor::Kernel => "kernel",
            Actor::HostMm => "host-mm",
            Actor::Khugepaged => "khugepaged",
            Actor::Adversary => "adversary",
        }
    }

    /// The host actor performing a host access: the VMM process, vhost (a kernel thread using
    /// get/put_user on the VMM's mapping) or the kernel through its direct map.
    pub const fn of_via(v: HostVia) -> Actor {
        match v {
            HostVia::Vmm => Actor::Vmm,
            HostVia::Uaccess => Actor::Vhost,
            HostVia::Kernel => Actor::Kernel,
        }
    }

    /// The vCPU and actor an action runs on: guest operations on their vCPU, host operations on
    /// the host actor that performs them.
    pub const fn of_action(a: &Action) -> (Option<u32>, Actor) {
        match *a {
            Action::Psc { vcpu, .. }
            | Action::Accept { vcpu, .. }
            | Action::Pvalidate { vcpu, .. }
            | Action::Rmpadjust { vcpu, .. }
            | Action::PscRequest { vcpu, .. }
            | Action::Access { vcpu, .. }
            | Action::Recoalesce { vcpu, .. }
            | Action::Tick { vcpu } => (Some(vcpu), Actor::Guest),
            Action::HostWrite { via, .. } | Action::HostRead { via, .. } => (None, Actor::of_via(via)),
            Action::HostPin { .. } => (None, Actor::of_via(HostVia::Vmm)),
            Action::HostSplit { .. } | Action::HostCollapse { .. } => (None, Actor::HostMm),
            Action::PunchHole { .. } | Action::Teardown => (None, Actor::Vmm),
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An exit a sink recorded, to be given its result and closed when KVM returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExitId(pub usize);

/// What KVM answered an exit with, when the guest sees an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitResult {
    /// An MSR-protocol page-state change: the response's error code (0 = success).
    PscMsr {
        /// `GHCB_MSR_PSC_RESP`'s error field.
        error: u32,
    },
    /// A GHCB page-state change: `SW_EXITINFO2` and the buffer's `cur_entry` after KVM's work.
    PscGhcb {
        /// `SW_EXITINFO2` (0 = success).
        info2: u64,
        /// The PSC buffer header's `cur_entry` KVM left.
        cur_entry: u16,
    },
}

/// Which GHCB page-state-change protocol carried an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PscProtocol {
    /// The GHCB MSR protocol: one 4K page per exit.
    Msr,
    /// The NAE event with a PSC buffer in the GHCB's shared area.
    Ghcb,
}

impl PscProtocol {
    /// The protocol's name in traces.
    pub const fn name(self) -> &'static str {
        match self {
            PscProtocol::Msr => "msr",
            PscProtocol::Ghcb => "ghcb",
        }
    }
}

/// One page-state-change entry as the guest sent it (GHCB spec, "Page State Change").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PscEntry {
    /// The protocol that carried it.
    pub protocol: PscProtocol,
    /// Its index in the PSC buffer (GHCB protocol only).
    pub entry: Option<usize>,
    /// The guest physical address it names.
    pub gpa: Gpa,
    /// The raw operation code (`ghcb::PscOp`; an invalid code is kept as sent).
    pub op: u8,
    /// Whether the entry names a 2M page.
    pub size_2m: bool,
    /// The entry's `cur_page` field.
    pub cur_page: u16,
}

/// Counters whose differences around a KVM or host call become derived events: exits KVM hands
/// to the VMM, NPT demotions by (from, to) level, needless ones, host and direct-map splits and
/// implicit conversions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// `KVM_EXIT_HYPERCALL` exits (page-state changes handed to the VMM).
    pub hypercall: u64,
    /// `KVM_EXIT_MEMORY_FAULT` exits.
    pub memory_fault: u64,
    /// NPT demotions by `FROM_TO` level key.
    pub demotions: BTreeMap<String, u64>,
    /// NPT demotions that turned out needless.
    pub demotions_needless: u64,
    /// Host page-table splits.
    pub host_splits: u64,
    /// Host splits that were needed.
    pub host_splits_needed: u64,
    /// Direct-map splits.
    pub direct_map_splits: u64,
    /// Implicit conversions.
    pub implicit_conversions: u64,
}

/// The canonical digest of the state a run ended in (`crate::state`), computed for a sink that
/// supplies its own header bytes and the RMP regions its instructions named.
pub trait StateDigest {
    /// The digest, as 32 hex digits.
    fn state_hash(&self, header: &[u8], regions: &BTreeSet<u64>) -> String;
}

/// How a run ended, for [`EventSink::finish`].
#[derive(Clone, Copy)]
pub struct RunEnd<'a> {
    /// The simulated time at the end (the metrics' `sim_time_ns`).
    pub sim_time_ns: u64,
    /// How the run ended (`None`: completed).
    pub ending: Option<&'a Ending>,
    /// Every invariant violation found.
    pub violations: &'a [String],
    /// The run's metrics.
    pub metrics: &'a Metrics,
    /// The final state, to digest.
    pub state: &'a dyn StateDigest,
}

impl fmt::Debug for RunEnd<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunEnd")
            .field("sim_time_ns", &self.sim_time_ns)
            .field("ending", &self.ending)
            .field("violations", &self.violations)
            .finish_non_exhaustive()
    }
}

/// A consumer of the engine's events. Events of a step arrive between
/// [`EventSink::begin_step`] and [`EventSink::end_step`]; events outside any step (a refused
/// registration) before the first. [`Simulation::set_sink`](crate::Simulation::set_sink)
/// installs one.
pub trait EventSink: fmt::Debug + Send + Sync {
    /// A copy of the sink in its current state (a cloned simulation records on its own).
    fn clone_box(&self) -> Box<dyn EventSink>;

    /// Take the output written so far.
    fn take(&mut self) -> Vec<u8>;

    // ---- Steps and actors ----

    /// A step begins.
    fn begin_step(&mut self, action: &Action);
    /// The step ends with `result` (the step's result line), the run's `ending` if it has one,
    /// the invariant `violations` the step found, at simulated time `t_end`.
    fn end_step(&mut self, result: &str, ending: Option<&Ending>, violations: &[String], t_end: u64);
    /// The run ends in the state `end` describes.
    fn finish(&mut self, end: &RunEnd<'_>);
    /// What follows until [`EventSink::leave`] is executed by `actor` on `vcpu` (work that no
    /// exit of this step opened).
    fn enter(&mut self, vcpu: Option<u32>, actor: Actor);
    /// Return to the vCPU and actor before the last [`EventSink::enter`] or exit.
    fn leave(&mut self);
    /// Run what follows on `actor` (host work outside a guest step, such as khugepaged).
    fn set_actor(&mut self, vcpu: Option<u32>, actor: Actor);

    // ---- RMP instructions ----

    /// An RMPUPDATE of `pfn` to `new` returned `rc`.
    fn rmpupdate(&mut self, pfn: Pfn, new: RmpArchEntry, rc: ReturnCode);
    /// A PSMASH of the 2M region at `pfn` returned `rc`.
    fn psmash(&mut self, pfn: Pfn, rc: ReturnCode);
    /// A PVALIDATE of `gpa` (frame `pfn`) at `size`.
    fn pvalidate(
        &mut self,
        gpa: Gpa,
        pfn: Pfn,
        size: RmpPageSize,
        validate: bool,
        r: &GuestOutcome<PvalidateStatus>,
    );
    /// An RMPADJUST of `gpa` (frame `pfn`) at `size` with operand `op`.
    fn rmpadjust(
        &mut self,
        gpa: Gpa,
        pfn: Pfn,
        size: RmpPageSize,
        op: RmpAdjustOperand,
        r: &GuestOutcome<()>,
    );

    // ---- Exits ----

    /// An #NPF (the fault as the CPU reports it, with the NPT leaf it met) and the exit it
    /// causes; close the exit when KVM returns.
    fn npf(&mut self, gpa: Gpa, code: NpfErrorCode, leaf: Option<PageSize>) -> ExitId;
    /// An exit of `reason` (an `exits` metric key, `snpsim_kvm::stats::exit`).
    fn exit(&mut self, reason: &'static str) -> ExitId;
    /// The answer KVM gave to `exit`.
    fn exit_result(&mut self, exit: ExitId, result: ExitResult);
    /// KVM's handling of `exit` ends here.
    fn close(&mut self, exit: ExitId);
    /// One page-state-change entry as the guest sent it.
    fn psc_entry(&mut self, entry: &PscEntry);

    // ---- Accesses and host work ----

    /// A guest access's final result (after every #NPF it took), through a `leaf` NPT mapping.
    fn access(
        &mut self,
        gpa: Gpa,
        kind: AccessKind,
        private: bool,
        pfn: Pfn,
        leaf: PageSize,
        r: &GuestOutcome<()>,
    );
    /// A host write's result, with the frame and mapping size it went through, if any.
    fn host_write(&mut self, gpa: Gpa, via: HostVia, target: Option<(Pfn, PageSize)>, r: HostWriteOutcome);
    /// A host #PF taken by a host write (before the RMP #PF handler runs).
    fn host_pf(&mut self, gpa: Gpa, pfn: Pfn, mapping: PageSize, code: PfErrorCode);
    /// khugepaged (or a `host_collapse` step) collapsed the THP range of `pages` from VMA page
    /// `offset`.
    fn host_collapse(&mut self, offset: u64, pages: u64);
    /// A guest access at `gpa` required the last unrequired part of a zapped leaf: that demotion
    /// is needed after all.
    fn demotion_needed(&mut self, gpa: Gpa);
    /// The effects a KVM or host call had, read from its counters `before` and `after`.
    fn derived(&mut self, before: &Counters, after: &Counters);
}

impl Clone for Box<dyn EventSink> {
    fn clone(&self) -> Self {
        self.clone_box()
    }
}
