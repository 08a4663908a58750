//! The named values of a scenario: policies, backings, guest presets and the small enumerations of
//! guest, step and result fields. Each has `ALL`, `name()` (the spelling in scenario files and
//! reports), `FromStr`, `Display` and `Serialize` (as the name).

use snpsim_defs::PageSize;

use snpsim_engine::named_enum;
pub use snpsim_engine::names::{Named, UnknownName, accepted_list};
pub use snpsim_engine::outcome::{Cause, Reason};

named_enum! {
    /// The memory era a policy belongs to: the 2021 RFC's one VMA, or upstream guest_memfd.
    "era",
    pub enum Era {
        /// The 2021 RFC series: private and shared pages are the same host pages in one VMA.
        Legacy = "legacy",
        /// Upstream since 6.11: private memory in `guest_memfd`, shared memory in the VMA.
        Gmem = "gmem",
    }
}

named_enum! {
    /// How KVM resolves an RMP size-mismatch #NPF, and what it does with hugetlbfs
    /// (`docs/semantics.md` K1–K9): the rows of every comparison.
    "policy",
    pub enum Policy {
        /// The RFC v4 patch as the seed mail characterises it: split the host mapping (THP) to 4K;
        /// every such split is needless; a hugetlbfs split fails (`vm_error`). (The RFC's own v3
        /// #NPF handler already PSMASHed and zapped; its host split lived in the host fault handler
        /// for user addresses.)
        RfcHostSplit = "rfc-host-split",
        /// The RFC v4 code as posted (27/40, 38/40, 10/40): NPT capped at the RMP level, PSMASH and
        /// zap of the 2M-aligned range on an RMP #NPF, never a host split from KVM; a host write
        /// into a hugetlbfs page over a private 4K page re-faults forever (`host_hang`).
        RfcV4 = "rfc-v4",
        /// As `rfc-host-split`, but a hugetlbfs memslot is refused (`vm_rejected`).
        RefuseHugetlbfs = "refuse-hugetlbfs",
        /// As `rfc-host-split`, but a page-state change to private on hugetlbfs fails
        /// (`guest_terminated` for a Linux guest).
        FailPscHugetlbfs = "fail-psc-hugetlbfs",
        /// The seed (Sean Christopherson): demote or zap the NPT and refault at ≤ the RMP level;
        /// never touch the host page tables.
        NptDemote = "npt-demote",
        /// Upstream Linux (`sev_handle_rmp_fault`): PSMASH a 2M RMP entry, zap 512 GFNs, refault.
        Gmem = "gmem",
    }
}

impl Policy {
    /// The memory era the policy runs in.
    pub const fn era(self) -> Era {
        match self {
            Policy::Gmem => Era::Gmem,
            _ => Era::Legacy,
        }
    }

    /// The default of `vm.npt_level_follows_rmp`: true for `gmem` (KVM's later
    /// `private_max_mapping_level`) and for `rfc-v4` (27/40 `sev_get_tdp_max_page_level`), false
    /// for the policies that model a description (the NPT follows the host level and size
    /// mismatches surface as faults).
    pub const fn default_npt_level_follows_rmp(self) -> bool {
        matches!(self, Policy::Gmem | Policy::RfcV4)
    }
}

named_enum! {
    /// The host side of guest memory (`docs/semantics.md` S1–S6). In the gmem era `backing` is the
    /// private side (a `gmem-*` folio size) and `shared_backing` the VMA.
    "backing",
    pub enum Backing {
        /// Anonymous memory mapped at 4K.
        Anon4k = "anon-4k",
        /// Transparent huge pages: 2M for every 2M-aligned range, else 4K; the host can split.
        Thp = "thp",
        /// hugetlbfs with 2M pages; never split.
        Hugetlbfs2m = "hugetlbfs-2m",
        /// hugetlbfs with 1G pages; never split.
        Hugetlbfs1g = "hugetlbfs-1g",
        /// guest_memfd with 4K folios (upstream).
        Gmem4k = "gmem-4k",
        /// guest_memfd with 2M folios (the THP RFC).
        Gmem2m = "gmem-2m",
        /// guest_memfd with 1G folios (the HugeTLB RFC).
        Gmem1g = "gmem-1g",
    }
}

impl Backing {
    /// The era whose policies can use this backing as `vm.backing`.
    pub const fn era(self) -> Era {
        if self.is_gmem() { Era::Gmem } else { Era::Legacy }
    }

    /// A `gmem-*` backing.
    pub const fn is_gmem(self) -> bool {
        matches!(self, Backing::Gmem4k | Backing::Gmem2m | Backing::Gmem1g)
    }

    /// A `hugetlbfs-*` backing.
    pub const fn is_hugetlbfs(self) -> bool {
        matches!(self, Backing::Hugetlbfs2m | Backing::Hugetlbfs1g)
    }

    /// The largest page the backing maps (host mapping level, or gmem folio size).
    pub const fn page_size(self) -> PageSize {
        match self {
            Backing::Anon4k | Backing::Gmem4k => PageSize::Size4K,
            Backing::Thp | Backing::Hugetlbfs2m | Backing::Gmem2m => PageSize::Size2M,
            Backing::Hugetlbfs1g | Backing::Gmem1g => PageSize::Size1G,
        }
    }

    /// The backings of an era.
    pub fn of_era(era: Era) -> impl Iterator<Item = Backing> {
        Backing::ALL.iter().copied().filter(move |b| b.era() == era)
    }
}

named_enum! {
    /// A whole set of guest parameters named after a real guest (`docs/semantics.md` G7); explicit `[guest]`
    /// fields override it. The values of each are in [`Preset::params`].
    "preset",
    pub enum Preset {
        /// A current Linux guest (≥ 6.5 with unaccepted memory): `psc_granularity = "2m"`,
        /// `psc_protocol = "ghcb"`, `ghcb_entries = 64` (`VMGEXIT_PSC_MAX_ENTRY`),
        /// `accept = "lazy"` (`accept_memory=lazy`, the default), `validation_tracking = true`,
        /// `recoalesce = "none"`; per-request order (`__set_pages_state` rescinds, sends and
        /// validates one batch of ≤ 64 entries at a time; `__page_state_change` one page at a time
        /// over MSR, since upstream 15d9088779b8).
        Linux = "linux",
        /// The Linux guest of the 2021 SNP guest series: `psc_granularity = "4k"` (its
        /// `__set_pages_state` "doesn't keep track of the RMP page size"), `psc_protocol = "ghcb"` with
        /// `ghcb_entries = 253` (that series' `VMGEXIT_PSC_MAX_ENTRY`), but the MSR protocol
        /// for the page-state change made before its GHCB is registered (`early_set_pages_state`),
        /// whole-range order (`snp_set_memory_{shared,private}` called `pvalidate_pages` on the
        /// whole range around `set_pages_state`: the code 15d9088779b8 removed),
        /// `accept = "eager"` (no unaccepted-memory support yet), `validation_tracking = true`,
        /// `recoalesce = "none"`.
        Linux2021 = "linux-2021",
        /// COCONUT-SVSM: `psc_granularity = "2m"` (2M entries and 2M PVALIDATE when aligned, 4K
        /// fallback), `psc_protocol = "ghcb"` with `ghcb_entries = 253` (it fills the whole 2 KiB
        /// shared buffer, `VMGEXIT_PSC_MAX_COUNT`), `accept = "eager"` (it validates memory when it
        /// takes it), `validation_tracking = true` (its valid bitmap), `recoalesce = "none"`.
        CoconutSvsm = "coconut-svsm",
        /// Project Oak's stage0 firmware: `psc_granularity = "2m"` (explicit 2M PSC, then 2M
        /// PVALIDATE with 4K fallback: oak PR 4967/4972), `psc_protocol = "ghcb"` with
        /// `ghcb_entries = 253` (PR 4972), `accept = "eager"` (it validates all memory before the
        /// kernel), `validation_tracking = false` (it keeps no record of validated pages: it
        /// validates each page once at boot and hands over), `recoalesce = "none"`.
        OakStage0 = "oak-stage0",
    }
}

// The default preset is a current Linux guest (`docs/semantics.md` G7).
#[allow(clippy::derivable_impls)] // the enum is generated by `named_enum!`
impl Default for Preset {
    fn default() -> Self {
        Preset::Linux
    }
}

impl Preset {
    /// The guest parameters of the preset.
    pub const fn params(self) -> GuestParams {
        let linux = GuestParams {
            psc_granularity: Granularity::Size2M,
            psc_protocol: PscProtocol::Ghcb,
            ghcb_entries: 64,
            accept: AcceptMode::Lazy,
            validation_tracking: true,
            recoalesce: Recoalesce::None,
            psc_order: PscOrder::PerRequest,
            msr_until_ghcb: false,
        };
        match self {
            Preset::Linux => linux,
            Preset::Linux2021 => GuestParams {
                psc_granularity: Granularity::Size4K,
                ghcb_entries: 253,
                accept: AcceptMode::Eager,
                psc_order: PscOrder::WholeRange,
                msr_until_ghcb: true,
                ..linux
            },
            Preset::CoconutSvsm => GuestParams {
                ghcb_entries: 253,
                accept: AcceptMode::Eager,
                psc_order: PscOrder::WholeRange,
                ..linux
            },
            Preset::OakStage0 => GuestParams {
                ghcb_entries: 253,
                accept: AcceptMode::Eager,
                validation_tracking: false,
                psc_order: PscOrder::WholeRange,
                ..linux
            },
        }
    }
}

/// The concrete guest parameters a run uses: a preset with the explicit `[guest]` fields applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct GuestParams {
    /// PSC entry and PVALIDATE size for aligned runs.
    pub psc_granularity: Granularity,
    /// How page-state changes reach the hypervisor.
    pub psc_protocol: PscProtocol,
    /// Entries per GHCB PSC request (1–253).
    pub ghcb_entries: u16,
    /// When the guest accepts its memory.
    pub accept: AcceptMode,
    /// The guest refuses to validate a page it already validated.
    pub validation_tracking: bool,
    /// What the guest does to regain a 2M RMP entry after PSMASH.
    pub recoalesce: Recoalesce,
    /// The order of rescind, PSC and PVALIDATE over a range (the preset's; no `[guest]` field).
    pub psc_order: PscOrder,
    /// The guest's first page-state change, made before it registers its GHCB, uses the MSR
    /// protocol (the preset's; no `[guest]` field).
    pub msr_until_ghcb: bool,
}

named_enum! {
    /// How a guest orders rescinding, the page-state change and validation over a range.
    "psc order",
    pub enum PscOrder {
        /// Request by request: one 4K page at a time over MSR (Linux `__page_state_change`), one
        /// batch of ≤ `ghcb_entries` entries at a time over the GHCB (`__set_pages_state`).
        PerRequest = "per-request",
        /// Rescind the whole range, send all of it, validate all of it (Linux before upstream
        /// 15d9088779b8).
        WholeRange = "whole-range",
    }
}

named_enum! {
    /// The page size a guest uses for PSC entries and PVALIDATE (`psc_granularity`, and a step's
    /// `granularity`).
    "granularity",
    pub enum Granularity {
        /// Every change and PVALIDATE at 4K.
        Size4K = "4k",
        /// 2M entries and 2M PVALIDATE for aligned 2M runs, 4K fallback on FAIL_SIZEMISMATCH.
        Size2M = "2m",
    }
}

impl Granularity {
    /// The RMP page size of the granularity.
    pub const fn rmp_size(self) -> snpsim_defs::RmpPageSize {
        match self {
            Granularity::Size4K => snpsim_defs::RmpPageSize::Size4K,
            Granularity::Size2M => snpsim_defs::RmpPageSize::Size2M,
        }
    }
}

named_enum! {
    /// How the guest requests page-state changes.
    "protocol",
    pub enum PscProtocol {
        /// The GHCB MSR protocol: one 4K page per exit.
        Msr = "msr",
        /// The GHCB PSC NAE event: up to `ghcb_entries` entries per exit, 2M entries allowed.
        Ghcb = "ghcb",
    }
}

named_enum! {
    /// When the guest accepts (PSC to private and PVALIDATE) its memory.
    "accept mode",
    pub enum AcceptMode {
        /// All memory at boot.
        Eager = "eager",
        /// On demand, in 4 MiB chunks (unaccepted bitmap at 2M units).
        Lazy = "lazy",
    }
}

named_enum! {
    /// What the guest does to regain a 2M RMP entry after PSMASH (`docs/semantics.md` G3).
    "recoalesce mode",
    pub enum Recoalesce {
        /// Nothing.
        None = "none",
        /// Copy the region out and back around the re-coalesce (costed; no data loss).
        SaveRestore = "save-restore",
        /// Re-coalesce without saving: the region's contents are lost.
        Naive = "naive",
    }
}

named_enum! {
    /// How a steady workload phase picks the next page of its working set to touch.
    "touch pattern",
    pub enum TouchPattern {
        /// Page after page through the working set, wrapping around.
        Sequential = "sequential",
        /// Uniformly at random over the working set.
        Random = "random",
        /// 90 % of touches uniformly over the first 10 % of the working set, the rest over all of it.
        Hotset = "hotset",
    }
}

#[allow(clippy::derivable_impls)] // the enum is generated by `named_enum!`
impl Default for TouchPattern {
    fn default() -> Self {
        TouchPattern::Random
    }
}

named_enum! {
    /// The target state of a `psc` step.
    "page state",
    pub enum PageState {
        /// Assigned to the guest.
        Private = "private",
        /// Hypervisor-owned, shared with the host.
        Shared = "shared",
    }
}

named_enum! {
    /// What a host access goes through (`host_write`, `host_read`).
    "host access path",
    pub enum HostVia {
        /// The VMM process, a user access through its VMA.
        Vmm = "vmm",
        /// A kernel uaccess (get/put_user, copy_to/from_user) on the VMM's address.
        Uaccess = "uaccess",
        /// The kernel direct map.
        Kernel = "kernel",
    }
}

named_enum! {
    /// The kind of a guest `access` step.
    "access kind",
    pub enum AccessKind {
        /// A data read.
        Read = "read",
        /// A data write (marks the page as holding guest data).
        Write = "write",
        /// An instruction fetch.
        Exec = "exec",
    }
}

impl AccessKind {
    /// The hardware model's access kind.
    pub const fn hw(self) -> snpsim_hw::AccessKind {
        match self {
            AccessKind::Read => snpsim_hw::AccessKind::Read,
            AccessKind::Write => snpsim_hw::AccessKind::Write,
            AccessKind::Exec => snpsim_hw::AccessKind::Exec,
        }
    }
}

named_enum! {
    /// How a run ended. An outcome is a result, not an error.
    "outcome",
    pub enum Outcome {
        /// Every step or phase ran.
        Completed = "completed",
        /// Memslot registration was refused.
        VmRejected = "vm_rejected",
        /// KVM could not resolve a fault; the VM exited with an error.
        VmError = "vm_error",
        /// The guest terminated itself (a failed page-state change).
        GuestTerminated = "guest_terminated",
        /// A host access re-faulted without progress (the VMM or vhost thread hangs).
        HostHang = "host_hang",
        /// The run hit `vm.step_budget`.
        StepBudgetExceeded = "step_budget_exceeded",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in Policy::ALL {
            assert_eq!(p.name().parse::<Policy>(), Ok(*p));
        }
        for b in Backing::ALL {
            assert_eq!(b.name().parse::<Backing>(), Ok(*b));
        }
        // The scenario names are KVM's policies, in the same order, with the same defaults.
        let kvm: Vec<&str> = snpsim_kvm::policy::ALL.iter().map(|p| p.name()).collect();
        assert_eq!(Policy::ALL.iter().map(|p| p.name()).collect::<Vec<_>>(), kvm);
        for p in Policy::ALL {
            let k = snpsim_kvm::policy::by_name(p.name()).unwrap();
            assert_eq!(p.default_npt_level_follows_rmp(), k.npt_level_follows_rmp(), "{}", p.name());
        }
        assert_eq!(Backing::ALL.len(), 7);
        let e = "foo".parse::<Policy>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown policy \"foo\"; accepted: rfc-host-split, rfc-v4, refuse-hugetlbfs, \
             fail-psc-hugetlbfs, npt-demote, gmem"
        );
    }

    #[test]
    fn eras() {
        assert_eq!(Policy::Gmem.era(), Era::Gmem);
        assert_eq!(Policy::NptDemote.era(), Era::Legacy);
        assert_eq!(Backing::of_era(Era::Gmem).count(), 3);
        assert!(Policy::Gmem.default_npt_level_follows_rmp());
        assert!(!Policy::RfcHostSplit.default_npt_level_follows_rmp());
        assert_eq!(Backing::Hugetlbfs1g.page_size(), PageSize::Size1G);
    }

    #[test]
    fn presets() {
        let l = Preset::Linux.params();
        assert_eq!(l.psc_granularity, Granularity::Size2M);
        assert_eq!(l.ghcb_entries, 64);
        assert_eq!(l.accept, AcceptMode::Lazy);
        assert_eq!((l.psc_order, l.msr_until_ghcb), (PscOrder::PerRequest, false));
        let o = Preset::Linux2021.params();
        assert_eq!((o.psc_granularity, o.psc_protocol), (Granularity::Size4K, PscProtocol::Ghcb));
        assert_eq!((o.ghcb_entries, o.psc_order, o.msr_until_ghcb), (253, PscOrder::WholeRange, true));
        assert_eq!(Preset::CoconutSvsm.params().ghcb_entries, 253);
        assert!(!Preset::OakStage0.params().validation_tracking);
    }
}
