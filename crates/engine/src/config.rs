//! A run's configuration: the memory backing, the check mode, the machine and guest settings, and
//! the errors of building a simulation from them.

use snpsim_defs::PageSize;
use snpsim_guest::GuestConfig;
use snpsim_host::{HugetlbFolio, VmaBacking};
use snpsim_hw::Geometry;
use snpsim_kvm::Policy;

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
    /// [`Action::Tick`](crate::action::Action::Tick) advances it one architectural operation at a time; otherwise every
    /// action runs to completion in turn.
    pub interleave: bool,
    /// RMPOPT is enabled (`[machine] rmpopt`, `docs/semantics.md` O1–O8 and S8): the host verifies
    /// all memory at SNP initialisation, host writes to marked 1 GiB regions skip the RMP check,
    /// and the cost model charges the RMP check of unmarked writes and RMPUPDATE's global TLB
    /// flush.
    pub rmpopt: bool,
    /// Where the host's single 4K blocks come from (`[machine] allocation`,
    /// `docs/semantics.md` S7): in order, or scattered over every 1 GiB region (a fragmented host).
    pub allocation: snpsim_host::Allocation,
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
            allocation: snpsim_host::Allocation::Contiguous,
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
