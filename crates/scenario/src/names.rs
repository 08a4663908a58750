//! The named values of a scenario: the scenario format's own (policies, backings, guest presets,
//! acceptance modes, touch patterns, page states) and, re-exported, those of the crates that own
//! the concept (granularity, protocol, order and re-coalescing from the guest, host access paths
//! from the host, access kinds from the hardware, eras from KVM, outcomes from the engine), each
//! named once by its own type ([`Named`]).

pub use snpsim_engine::backing::Backing;
pub use snpsim_engine::names::{Named, UnknownName, accepted_list};
pub use snpsim_engine::outcome::{Cause, Outcome, Reason};
pub use snpsim_guest::{Granularity, Protocol as PscProtocol, PscOrder, Recoalesce};
pub use snpsim_host::{Allocation, HostVia};
pub use snpsim_hw::AccessKind;
pub use snpsim_kvm::Era;

/// How KVM resolves an RMP size-mismatch #NPF, and what it does with hugetlbfs (`vm.policy`): one
/// of KVM's registry (`snpsim_kvm::policy::ALL`), named by its own `name()`, with its era and its
/// default of `vm.npt_level_follows_rmp`.
pub type Policy = &'static dyn snpsim_kvm::Policy;

/// Every policy, in report order: KVM's registry.
pub fn policies() -> &'static [Policy] {
    &snpsim_kvm::policy::ALL
}

/// The names of every policy, comma-separated, for messages.
pub fn accepted_policies() -> String {
    accepted_list(policies(), snpsim_kvm::Policy::name)
}

/// A whole set of guest parameters named after a real guest (`docs/semantics.md` G7); explicit `[guest]`
/// fields override it; the default is a current Linux guest. The values of each are in [`Preset::params`].
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::Display,
)]
pub enum Preset {
    /// A current Linux guest (≥ 6.5 with unaccepted memory): `psc_granularity = "2m"`,
    /// `psc_protocol = "ghcb"`, `ghcb_entries = 64` (`VMGEXIT_PSC_MAX_ENTRY`),
    /// `accept = "lazy"` (`accept_memory=lazy`, the default), `validation_tracking = true`,
    /// `recoalesce = "none"`; per-request order (`__set_pages_state` rescinds, sends and
    /// validates one batch of ≤ 64 entries at a time; `__page_state_change` one page at a time
    /// over MSR, since upstream 15d9088779b8).
    #[strum(serialize = "linux")]
    #[default]
    Linux,
    /// The Linux guest of the 2021 SNP guest series: `psc_granularity = "4k"` (its
    /// `__set_pages_state` "doesn't keep track of the RMP page size"), `psc_protocol = "ghcb"` with
    /// `ghcb_entries = 253` (that series' `VMGEXIT_PSC_MAX_ENTRY`), but the MSR protocol
    /// for the page-state change made before its GHCB is registered (`early_set_pages_state`),
    /// whole-range order (`snp_set_memory_{shared,private}` called `pvalidate_pages` on the
    /// whole range around `set_pages_state`: the code 15d9088779b8 removed),
    /// `accept = "eager"` (no unaccepted-memory support yet), `validation_tracking = true`,
    /// `recoalesce = "none"`.
    #[strum(serialize = "linux-2021")]
    Linux2021,
    /// COCONUT-SVSM: `psc_granularity = "2m"` (2M entries and 2M PVALIDATE when aligned, 4K
    /// fallback), `psc_protocol = "ghcb"` with `ghcb_entries = 253` (it fills the whole 2 KiB
    /// shared buffer, `VMGEXIT_PSC_MAX_COUNT`), `accept = "eager"` (it validates memory when it
    /// takes it), `validation_tracking = true` (its valid bitmap), `recoalesce = "none"`.
    #[strum(serialize = "coconut-svsm")]
    CoconutSvsm,
    /// Project Oak's stage0 firmware: `psc_granularity = "2m"` (explicit 2M PSC, then 2M
    /// PVALIDATE with 4K fallback: oak PR 4967/4972), `psc_protocol = "ghcb"` with
    /// `ghcb_entries = 253` (PR 4972), `accept = "eager"` (it validates all memory before the
    /// kernel), `validation_tracking = false` (it keeps no record of validated pages: it
    /// validates each page once at boot and hands over), `recoalesce = "none"`.
    #[strum(serialize = "oak-stage0")]
    OakStage0,
}

impl Preset {
    /// The guest parameters of the preset.
    pub const fn params(self) -> GuestParams {
        let linux = GuestParams {
            psc_granularity: Granularity::M2,
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
                psc_granularity: Granularity::K4,
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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

/// When the guest accepts (PSC to private and PVALIDATE) its memory.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::Display,
)]
pub enum AcceptMode {
    /// All memory at boot.
    #[strum(serialize = "eager")]
    Eager,
    /// On demand, in 4 MiB chunks (unaccepted bitmap at 2M units).
    #[strum(serialize = "lazy")]
    Lazy,
}

/// How a steady workload phase picks the next page of its working set to touch.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::Display,
)]
pub enum TouchPattern {
    /// Page after page through the working set, wrapping around.
    #[strum(serialize = "sequential")]
    Sequential,
    /// Uniformly at random over the working set.
    #[strum(serialize = "random")]
    #[default]
    Random,
    /// 90 % of touches uniformly over the first 10 % of the working set, the rest over all of it.
    #[strum(serialize = "hotset")]
    Hotset,
}

/// The target state of a `psc` step.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::Display,
)]
pub enum PageState {
    /// Assigned to the guest.
    #[strum(serialize = "private")]
    Private,
    /// Hypervisor-owned, shared with the host.
    #[strum(serialize = "shared")]
    Shared,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(
            accepted_policies(),
            "rfc-host-split, rfc-v4, refuse-hugetlbfs, fail-psc-hugetlbfs, npt-demote, gmem, gmem-inplace"
        );
    }

    #[test]
    fn eras() {
        // gmem-4k, gmem-2m, gmem-1g, and the in-place HugeTLB backings gmem-hugetlb-2m/1g.
        assert_eq!(Backing::of_era(Era::Gmem).count(), 5);
    }

    #[test]
    fn presets() {
        let l = Preset::Linux.params();
        assert_eq!(l.psc_granularity, Granularity::M2);
        assert_eq!(l.ghcb_entries, 64);
        assert_eq!(l.accept, AcceptMode::Lazy);
        assert_eq!((l.psc_order, l.msr_until_ghcb), (PscOrder::PerRequest, false));
        let o = Preset::Linux2021.params();
        assert_eq!((o.psc_granularity, o.psc_protocol), (Granularity::K4, PscProtocol::Ghcb));
        assert_eq!((o.ghcb_entries, o.psc_order, o.msr_until_ghcb), (253, PscOrder::WholeRange, true));
        assert_eq!(Preset::CoconutSvsm.params().ghcb_entries, 253);
        assert!(!Preset::OakStage0.params().validation_tracking);
    }
}
