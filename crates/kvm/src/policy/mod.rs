//! The hypervisor policies compared by snpsim (`docs/semantics.md` K1–K10): one file each, behind
//! [`Policy`].
//!
//! A policy makes every decision that differs between the designs KVM has had: memslot
//! registration, where private memory lives and what a page's state is (the 2021 series' one
//! VMA or upstream's guest_memfd), the NPT fill level and its RMP cap, the resolution of an RMP
//! size mismatch, PSMASH failure handling, page-state changes and conversions with the exits they
//! cost, zaps after a conversion, and the host's RMP fault handling. KVM's handlers ([`crate::vm`])
//! hold the mechanisms — the hardware checks, PSMASH, RMPUPDATE, zaps, the protocols — and ask
//! the policy; a policy acts on the VM only through [`VmOps`].

use std::fmt;

use snpsim_defs::{Gfn, PageSize};
use snpsim_host::{UnsplittableRmpFault, VmaBacking};
use snpsim_hw::Geometry;

use crate::attributes::MemoryAttributes;
use crate::error::KvmError;
use crate::psc::PscRange;

/// Declares each policy's module, re-exports its type and lists it in [`ALL`], from one line
/// `module::Type` per policy. A line under `#[cfg(test)]` is a policy of kvm's own unit tests:
/// compiled into them only, never into the product's list (`snpsim list`, the default run).
macro_rules! registry {
    ($($(#[$attr:meta])* $module:ident::$policy:ident,)+) => {
        $($(#[$attr])* mod $module;)+
        $($(#[$attr])* pub use $module::$policy;)+

        /// How many policies the registry lists.
        const COUNT: usize = [$($(#[$attr])* stringify!($policy),)+].len();

        /// Every policy, in report order. A policy's name is its own [`Policy::name`].
        pub const ALL: [&dyn Policy; COUNT] = [$($(#[$attr])* &$policy,)+];
    };
}

// The registry: adding a policy is its file plus one line here.
registry! {
    rfc_host_split::RfcHostSplit,
    rfc_v4::RfcV4,
    refuse_hugetlbfs::RefuseHugetlbfs,
    fail_psc_hugetlbfs::FailPscHugetlbfs,
    npt_demote::NptDemote,
    gmem::Gmem,
    gmem_inplace::GmemInplace,
    #[cfg(test)]
    test_only::TestOnly,
}

/// Which memory design a policy belongs to: the 2021 RFC's one VMA, or upstream guest_memfd.
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
#[strum(serialize_all = "lowercase")]
pub enum Era {
    /// The 2021 RFC series: private and shared pages are the same VMA pages.
    Legacy,
    /// Upstream since 6.11: private memory in guest_memfd.
    Gmem,
}

/// Two policies are the same when they have the same name: the registry names each once
/// (`names_are_unique_and_found`), so a scenario can hold and compare `&dyn Policy` values.
impl PartialEq for dyn Policy {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for dyn Policy {}

/// A policy displays as its name, as scenarios and reports write it.
impl fmt::Display for dyn Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A hypervisor policy.
pub trait Policy: fmt::Debug + Sync {
    /// The name used in scenarios and reports (`[vm] policy`; `snpsim list` prints them).
    fn name(&self) -> &'static str;

    /// The memory era it runs in.
    fn era(&self) -> Era;

    /// One line saying what the policy does and where it comes from.
    fn summary(&self) -> &'static str;

    /// Whether this row models code as posted or an author's description of it (shown beside the
    /// name in `snpsim list`, tables and reports).
    fn reading(&self) -> Reading {
        Reading::Code
    }

    /// Whether KVM caps the NPT level at the RMP level unless the scenario says otherwise
    /// (`npt_level_follows_rmp`): upstream's `sev_gmem_max_mapping_level`, RFC v4 27/40's
    /// `sev_get_tdp_max_page_level`; the other 2021 readings do not.
    fn npt_level_follows_rmp(&self) -> bool {
        false
    }

    /// Whether `gfn`'s memory is guest_memfd's rather than the VMA's: KVM then maps its
    /// guest_memfd frame, at most at the folio's size, prepares it on first use, and a change of
    /// the VMA's mappings (the MMU notifier) does not concern it. The 2021 series: never, one VMA
    /// holds private and shared pages. Upstream: a GFN whose memory attribute is private
    /// (`kvm_mem_is_private` → `kvm_gmem_get_pfn`).
    fn in_gmem(&self, attrs: &MemoryAttributes, gfn: Gfn) -> bool {
        let _ = (attrs, gfn);
        false
    }

    /// Whether one guest_memfd holds the VM's shared and private memory and converts in place
    /// (the in-place conversion series, v6 of 7 May 2026): KVM then needs the host's in-place file
    /// ([`snpsim_host::GmemHugetlb`]) and maps shared GFNs from it too. Everyone else: no.
    fn in_place_conversion(&self) -> bool {
        false
    }

    /// Whether a conversion rewrites the RMP entries of guest_memfd frames (upstream: the VMM's
    /// hole punch runs `sev_gmem_invalidate`, first use runs `sev_gmem_prepare`) rather than those
    /// of the VMA's frames (the 2021 series' RMPUPDATEs on the memslot's pages).
    fn converts_gmem_frames(&self) -> bool {
        false
    }

    /// Whether a shared GFN maps the frames a private one would: then a shared access through a
    /// leaf ≥ 2M over an assigned page faults (the hardware checks it like a host write), so the
    /// RMP-level cap applies to shared faults, and a 2M range is huge-capable only as the RMP of
    /// a private one allows. The 2021 series: yes, one VMA. Upstream: no, shared memory is the
    /// VMA's and private memory guest_memfd's.
    fn shared_maps_private_frames(&self) -> bool {
        true
    }

    /// Whether KVM may map the `pages` GFNs from `start` with one leaf as far as their memory
    /// attributes go: upstream never maps a range of mixed attributes huge
    /// (`KVM_LPAGE_MIXED_FLAG`); the 2021 series has no attributes.
    fn leaf_allowed(&self, attrs: &MemoryAttributes, start: Gfn, pages: u64) -> bool {
        let _ = (attrs, start, pages);
        true
    }

    /// The state an access's C-bit is compared with to find an implicit conversion on an RMP
    /// #NPF: the 2021 series, the page's RMP assignment (`rmp_assigned`); upstream, its memory
    /// attribute.
    fn page_is_private(&self, attrs: &MemoryAttributes, gfn: Gfn, rmp_assigned: bool) -> bool {
        let _ = (attrs, gfn);
        rmp_assigned
    }

    /// Whether a non-RMP #NPF (or a pre-fault) of a `private` access at `gfn` must convert the
    /// page before mapping it: upstream, an access whose C-bit disagrees with the memory
    /// attribute exits to the VMM (KVM_EXIT_MEMORY_FAULT), which converts the page, and the access
    /// is retried. The 2021 series: never, the page's state is its RMP entry, which the RMP check
    /// of the retried access sees.
    fn fault_needs_conversion(&self, attrs: &MemoryAttributes, gfn: Gfn, private: bool) -> bool {
        let _ = (attrs, gfn, private);
        false
    }

    /// The exit to the VMM an implicit conversion costs ([`crate::stats::exit`]): upstream,
    /// KVM_EXIT_MEMORY_FAULT; the 2021 series converts inside KVM's #NPF handler.
    fn implicit_conversion_exit(&self) -> Option<&'static str> {
        None
    }

    /// The exit to the VMM each page-state-change range costs beyond its VMGEXIT: upstream
    /// forwards it as KVM_HC_MAP_GPA_RANGE (KVM_EXIT_HYPERCALL, `snp_begin_psc`); the 2021 series
    /// converts inside KVM.
    fn psc_range_exit(&self) -> Option<&'static str> {
        None
    }

    /// Change the state of a GFN range, for a page-state change or an implicit conversion: the
    /// 2021 series, KVM's own RMPUPDATEs ([`VmOps::convert_rmp`]); upstream, the VMM's
    /// KVM_HC_MAP_GPA_RANGE handling ([`VmOps::map_gpa_range`]).
    fn convert(&self, vm: &mut dyn VmOps, range: PscRange) -> Result<(), KvmError> {
        vm.convert_rmp(range)
    }

    /// Which faults the RMP-level cap applies to, when it is on.
    fn rmp_cap(&self) -> RmpCap {
        RmpCap::PrivateAssigned
    }

    /// The level of the RMPUPDATEs a legacy page-state change does.
    fn psc_level(&self) -> PscLevel {
        PscLevel::HostMapping
    }

    /// What KVM does when the PSMASH it issued for an RMP #NPF fails.
    fn psmash_failure(&self) -> PsmashFailure {
        PsmashFailure::Fatal
    }

    /// Whether KVM PSMASHes a 2M RMP entry on any RMP #NPF of a private GFN, SIZEM or not
    /// (upstream `sev_handle_rmp_fault`), or only on a size mismatch.
    fn psmash_on_any_rmp_fault(&self) -> bool {
        false
    }

    /// After a PSMASH that resolved an #NPF, demote minimally instead of zapping 512 GFNs: split a
    /// 1G leaf holding the fault into 2M leaves in place and leave the 2M part mapped (a later
    /// private access through it over the smashed entries is a SIZEM fault, demoted then).
    fn demote_after_psmash(&self) -> bool {
        false
    }

    /// Whether KVM zaps the 2M-aligned 512 GFNs after an implicit conversion (RFC v4 38/40 ends
    /// every case of `snp_handle_rmp_page_fault` with that zap).
    fn zap_after_implicit_conversion(&self) -> bool {
        false
    }

    /// What the host's RMP #PF handler for user addresses does with a mapping it cannot split.
    fn unsplittable_rmp_fault(&self) -> UnsplittableRmpFault {
        UnsplittableRmpFault::Sigbus
    }

    /// Memory registration of the VMA backing (the RFC's KVM_MEMORY_ENCRYPT_REG_REGION).
    fn register_memslot(&self, backing: VmaBacking) -> Result<(), KvmError> {
        let _ = backing;
        Ok(())
    }

    /// Whether KVM accepts a page-state change to private on `backing`.
    fn psc_private_allowed(&self, backing: VmaBacking) -> bool {
        let _ = backing;
        true
    }

    /// Resolve an RMP #NPF at `gfn` whose NPT leaf is larger than the RMP entry (a private
    /// access through a 2M/1G leaf over 4K entries, or a shared access through a ≥2M leaf whose 2M
    /// part holds assigned pages).
    fn resolve_npt_larger(&self, vm: &mut dyn VmOps, gfn: Gfn) -> Result<(), KvmError>;

    /// First GFN of the 512-GFN range zapped after a PSMASH that resolved an #NPF at `gfn`.
    fn psmash_zap_start(&self, geometry: Geometry, gfn: Gfn) -> Gfn {
        geometry.gfn_align_down(gfn, PageSize::Size2M)
    }
}

/// What a policy row models: code as it was posted, or an author's description of a design.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reading {
    /// The code as posted (a patch or upstream function, named in the policy's doc comment).
    Code,
    /// A design as someone described it (the seed mail's reading of the RFC, a reviewer's
    /// proposal), not a particular patch.
    Description,
}

impl Reading {
    /// The label shown beside the policy's name.
    pub const fn label(self) -> &'static str {
        match self {
            Reading::Code => "code as posted",
            Reading::Description => "as described",
        }
    }
}

/// Which faults the RMP-level cap on the NPT (`npt_level_follows_rmp`) applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RmpCap {
    /// Private faults only, at the level of an assigned entry and 4K for an unassigned one
    /// (upstream `sev_gmem_max_mapping_level`).
    PrivateAssigned,
    /// Every fault, private or shared, at the page size of the 2M-aligned RMP entry whether or
    /// not it is assigned: RFC v4 27/40 `sev_get_tdp_max_page_level` returns
    /// `min(level, max_level)` with `level` from `snp_lookup_page_in_rmptable`, which reads the
    /// 2M-aligned entry's page-size bit. Hypervisor-owned memory whose entries were never 2M is
    /// therefore mapped at 4K.
    EveryFault,
}

/// The level of a legacy page-state change's RMPUPDATEs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PscLevel {
    /// 2M when the request is 2M and the host mapping is ≥ 2M, else 4K.
    HostMapping,
    /// RFC v4's `__snp_handle_page_state_change`: map the GPA in the NPT first if it is not
    /// (`snp_check_and_build_npt` → `kvm_mmu_map_tdp_page`, at most the request's level and the
    /// host level), then `level = min(level, NPT leaf level)`; the lowered level sticks for the
    /// rest of the entry.
    NptLeaf,
}

/// What KVM does when the PSMASH it issued for an RMP #NPF fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PsmashFailure {
    /// Stop the VM (`vm_error`, an instruction KVM issued failed) unless the re-lookup finds the
    /// entry already 4K (another vCPU smashed it), then zap as usual.
    Fatal,
    /// RFC v4 38/40 `snp_handle_rmp_page_fault`: the return code is not acted on; zap anyway.
    Ignored,
    /// Upstream `sev_handle_rmp_fault`: a re-lookup that finds the entry assigned at 4K ends the
    /// handler (no zap); otherwise WARN (`kvm_warnings`) and zap.
    WarnAndZap,
}

/// The policy named `name`.
pub fn by_name(name: &str) -> Option<&'static dyn Policy> {
    ALL.into_iter().find(|p| p.name() == name)
}

/// KVM's common mechanisms a policy acts through, on the VM being handled. A policy sees this
/// narrow interface and never KVM's state, so that it stays one file and KVM's handlers
/// ([`crate::vm`], which implements it) depend on no particular policy.
pub trait VmOps {
    /// The RFC's resolution: split the host mapping of `gfn` to 4K; the MMU notifier then zaps
    /// the NPT over the split range and the refault maps it at the new host level. Whether the
    /// split was needed is measured by the host ([`snpsim_host::SplitLedger`]): only if a host
    /// access would have faulted through the old mapping. hugetlbfs cannot split: the fault stays
    /// unresolved ([`crate::error::Unresolved::HostSplitImpossible`]).
    fn split_host_mapping(&mut self, gfn: Gfn) -> Result<(), KvmError>;

    /// The seed's resolution: demote the NPT leaf holding `gfn` in place, minimally, down to
    /// `target`, without touching the host page tables
    /// ([`crate::error::Unresolved::NptAtRmpLevel`] when it is already there).
    fn demote_npt(&mut self, gfn: Gfn, target: PageSize) -> Result<(), KvmError>;

    /// RFC v4 38/40 `snp_handle_rmp_page_fault`: PSMASH the 2M region of the frame `gfn` is
    /// mapped to, its return code not acted on, then zap the 2M-aligned 512 GFNs.
    fn psmash_and_zap_2m(&mut self, gfn: Gfn);

    /// The 2021 series' conversion by KVM: RMPUPDATEs of the memslot's frames at the level the
    /// policy's [`Policy::psc_level`] picks, PSMASH first for a 4K change inside a 2M entry; the
    /// policy may refuse private pages on the backing ([`Policy::psc_private_allowed`]).
    fn convert_rmp(&mut self, range: PscRange) -> Result<(), KvmError>;

    /// Upstream's conversion by the VMM after KVM_HC_MAP_GPA_RANGE or KVM_EXIT_MEMORY_FAULT: set
    /// the memory attributes (KVM zaps the NPT where they change), then punch the guest_memfd
    /// pages a range made shared (`sev_gmem_invalidate`) or, with `prefault_on_psc`, pre-fault a
    /// range made private.
    fn map_gpa_range(&mut self, range: PscRange) -> Result<(), KvmError>;

    /// The in-place conversion (`KVM_SET_MEMORY_ATTRIBUTES2` on the guest_memfd): refused with
    /// [`snpsim_host::HostError::ExtraReference`] (nothing changed) while a page of the range holds
    /// an extra reference; else the file's shareability and KVM's attributes change together, KVM
    /// unmaps the folios a conversion to shared splits *before* splitting them, the pages made
    /// shared go back to the hypervisor in the RMP, and folios whose pages are all private again
    /// merge ([`crate::Kvm::begin_convert_in_place`]).
    fn convert_in_place(&mut self, range: PscRange) -> Result<(), KvmError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every registered policy is found by its name, and no two share one (scenarios and reports
    /// name policies by it).
    #[test]
    fn names_are_unique_and_found() {
        let mut seen = std::collections::BTreeSet::new();
        for p in ALL {
            assert!(seen.insert(p.name()), "two policies are named {}", p.name());
            assert!(std::ptr::addr_eq(by_name(p.name()).unwrap(), p), "{}", p.name());
            assert!(!p.summary().is_empty(), "{}", p.name());
        }
        assert!(by_name("no-such-policy").is_none());
    }

    /// The test-only policy is registered in kvm's unit tests, as the last line.
    #[test]
    fn the_test_policy_is_registered() {
        assert_eq!(ALL.last().map(|p| p.name()), Some(TestOnly.name()));
    }
}
