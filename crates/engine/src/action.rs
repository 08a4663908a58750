//! The actions a run is made of: guest operations on a vCPU and host operations (a scenario's
//! `[[step]]`s, a workload's generated operations, a trace's `step` lines).

use snpsim_defs::{Gpa, RmpPageSize, VmplPerms};
use snpsim_guest::Recoalesce;
use snpsim_host::HostVia;
use snpsim_hw::{AccessKind, Geometry};

/// One thing that happens in a run: a guest operation or a host operation (a scenario `[[step]]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// The guest's page-state change of a range.
    Psc {
        /// vCPU.
        vcpu: u32,
        /// First GPA.
        gpa: Gpa,
        /// Pages.
        pages: u64,
        /// To private (else shared).
        private: bool,
        /// Granularity override.
        granularity: Option<snpsim_guest::Granularity>,
    },
    /// The guest accepts a range.
    Accept {
        /// vCPU.
        vcpu: u32,
        /// First GPA.
        gpa: Gpa,
        /// Pages.
        pages: u64,
        /// Granularity override.
        granularity: Option<snpsim_guest::Granularity>,
    },
    /// One PVALIDATE.
    Pvalidate {
        /// vCPU.
        vcpu: u32,
        /// GPA.
        gpa: Gpa,
        /// Operand size.
        size: RmpPageSize,
        /// Validate (else rescind).
        validate: bool,
    },
    /// One bare NAE page-state-change request of one entry (the `psc_request` step).
    PscRequest {
        /// vCPU.
        vcpu: u32,
        /// The entry's first GPA (a 2M entry's need not be 2M-aligned).
        gpa: Gpa,
        /// The entry's page size.
        size: RmpPageSize,
        /// To private (else shared).
        private: bool,
        /// The entry's `cur_page` (pages already processed).
        cur_page: u16,
    },
    /// One RMPADJUST.
    Rmpadjust {
        /// vCPU.
        vcpu: u32,
        /// GPA.
        gpa: Gpa,
        /// Operand size.
        size: RmpPageSize,
        /// Target VMPL.
        vmpl: u8,
        /// Permissions.
        perms: VmplPerms,
        /// VMSA flag.
        vmsa: bool,
    },
    /// A guest memory access.
    Access {
        /// vCPU.
        vcpu: u32,
        /// GPA.
        gpa: Gpa,
        /// Kind.
        kind: AccessKind,
        /// C-bit.
        private: bool,
    },
    /// Re-coalesce a 2M region.
    Recoalesce {
        /// vCPU.
        vcpu: u32,
        /// 2M-aligned GPA.
        gpa: Gpa,
        /// Mode.
        mode: Recoalesce,
    },
    /// A host write to a guest page.
    HostWrite {
        /// GPA of the page.
        gpa: Gpa,
        /// Path.
        via: HostVia,
    },
    /// The host takes (`pin`) or drops an extra reference on the in-place guest_memfd's page at
    /// `gpa` (get_user_pages on the file's mapping, an in-flight I/O): while one is held a
    /// conversion of the page is refused (`docs/semantics.md` S9). Only with an in-place file.
    HostPin {
        /// GPA of the page.
        gpa: Gpa,
        /// Take (`true`, `host_pin`) or drop (`false`, `host_unpin`).
        pin: bool,
    },
    /// A host read of a guest page (never RMP-checked).
    HostRead {
        /// GPA of the page.
        gpa: Gpa,
        /// Path.
        via: HostVia,
    },
    /// The host splits the huge mapping holding a guest page.
    HostSplit {
        /// GPA of the page.
        gpa: Gpa,
    },
    /// The host collapses the THP range holding a guest page.
    HostCollapse {
        /// GPA of the page.
        gpa: Gpa,
    },
    /// The VMM punches a hole into guest_memfd.
    PunchHole {
        /// First GPA.
        gpa: Gpa,
        /// Pages.
        pages: u64,
    },
    /// The VMM destroys the VM and closes its guest_memfd ([`snpsim_kvm::Kvm::destroy`]); with
    /// RMPOPT the guest_memfd teardown hook then re-verifies all memory
    /// ([`snpsim_host::Host::rmpopt_gmem_teardown`]). The guest is gone afterwards.
    Teardown,
    /// Advance the operation running on `vcpu` by one architectural operation (interleaved runs;
    /// the scheduler's choice, recorded so that a trace replays the same interleaving).
    Tick {
        /// vCPU.
        vcpu: u32,
    },
}

/// What an action does, by the name a scenario step's `op` and a trace's `action.op` give it:
/// the one spelling of every operation (`host_pin` and `host_unpin` are one action with a flag).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, strum::IntoStaticStr, strum::VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum Op {
    /// [`Action::Psc`].
    Psc,
    /// [`Action::Accept`].
    Accept,
    /// [`Action::Pvalidate`].
    Pvalidate,
    /// [`Action::PscRequest`].
    PscRequest,
    /// [`Action::Rmpadjust`].
    Rmpadjust,
    /// [`Action::Access`].
    Access,
    /// [`Action::Recoalesce`].
    Recoalesce,
    /// [`Action::HostWrite`].
    HostWrite,
    /// [`Action::HostRead`].
    HostRead,
    /// [`Action::HostPin`] taking a reference.
    HostPin,
    /// [`Action::HostPin`] dropping one.
    HostUnpin,
    /// [`Action::HostSplit`].
    HostSplit,
    /// [`Action::HostCollapse`].
    HostCollapse,
    /// [`Action::PunchHole`].
    PunchHole,
    /// [`Action::Teardown`].
    Teardown,
    /// [`Action::Tick`].
    Tick,
}

impl Action {
    /// Its operation's name-giving kind.
    pub fn op(&self) -> Op {
        match *self {
            Action::Psc { .. } => Op::Psc,
            Action::Accept { .. } => Op::Accept,
            Action::Pvalidate { .. } => Op::Pvalidate,
            Action::PscRequest { .. } => Op::PscRequest,
            Action::Rmpadjust { .. } => Op::Rmpadjust,
            Action::Access { .. } => Op::Access,
            Action::Recoalesce { .. } => Op::Recoalesce,
            Action::HostWrite { .. } => Op::HostWrite,
            Action::HostRead { .. } => Op::HostRead,
            Action::HostPin { pin: true, .. } => Op::HostPin,
            Action::HostPin { pin: false, .. } => Op::HostUnpin,
            Action::HostSplit { .. } => Op::HostSplit,
            Action::HostCollapse { .. } => Op::HostCollapse,
            Action::PunchHole { .. } => Op::PunchHole,
            Action::Teardown => Op::Teardown,
            Action::Tick { .. } => Op::Tick,
        }
    }

    /// The guest pages a guest action works on (first page and count; `None` for host actions
    /// and ticks).
    pub fn pages(&self, geometry: Geometry) -> Option<(u64, u64)> {
        let insn = |size: RmpPageSize| geometry.pages(size.page_size());
        match *self {
            Action::Psc { gpa, pages, .. } | Action::Accept { gpa, pages, .. } => {
                Some((gpa.gfn().raw(), pages))
            }
            Action::Pvalidate { gpa, size, .. }
            | Action::Rmpadjust { gpa, size, .. }
            | Action::PscRequest { gpa, size, .. } => Some((gpa.gfn().raw(), insn(size))),
            Action::Access { gpa, .. } => Some((gpa.gfn().raw(), 1)),
            Action::Recoalesce { gpa, .. } => Some((gpa.gfn().raw(), geometry.pages_per_2m())),
            _ => None,
        }
    }

    /// The vCPU a guest action runs on (`None` for host actions).
    pub fn vcpu(&self) -> Option<u32> {
        match *self {
            Action::Psc { vcpu, .. }
            | Action::Accept { vcpu, .. }
            | Action::Pvalidate { vcpu, .. }
            | Action::Rmpadjust { vcpu, .. }
            | Action::PscRequest { vcpu, .. }
            | Action::Access { vcpu, .. }
            | Action::Recoalesce { vcpu, .. }
            | Action::Tick { vcpu } => Some(vcpu),
            Action::HostWrite { .. }
            | Action::HostRead { .. }
            | Action::HostPin { .. }
            | Action::HostSplit { .. }
            | Action::HostCollapse { .. }
            | Action::PunchHole { .. }
            | Action::Teardown => None,
        }
    }
}
