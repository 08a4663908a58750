//! `gmem-inplace`: upstream's 2026 design — one guest_memfd, converted in place, on HugeTLB
//! folios (`docs/semantics.md` K10).

use snpsim_defs::Gfn;
use snpsim_hw::Geometry;

use super::gmem::Gmem;
use super::{Era, Policy, PsmashFailure, VmOps};
use crate::attributes::MemoryAttributes;
use crate::error::KvmError;
use crate::psc::PscRange;

/// In-place conversion (Ackerley Tng, Sean Christopherson, v6 of 7 May 2026,
/// `20260507-gmem-inplace-conversion-v6-0-…`; v13 of 10 Sep 2026) on guestmem_hugetlb folios
/// (RFC v2, May 2025, `cover.1747264138`). Shared and private memory are the same guest_memfd,
/// shareability is per file (`KVM_SET_MEMORY_ATTRIBUTES2`) and every GFN maps the file's frame,
/// never larger than its folio (a split folio's pages at 4K). A conversion to shared unmaps the
/// folios it splits, then splits them (the order reviewers found reversed: the mutant
/// `split-before-unmap`), and returns the pages to the hypervisor in the RMP without freeing them;
/// folios whose pages are all private again merge. A host access to a private page is SIGBUS at
/// the file's fault handler (no RMP #PF, no split). Preparation tracking is gone (Michael Roth,
/// v3 of 8 Jan 2026): a private page is made guest-owned when KVM maps it and its RMP entry is
/// not assigned, whatever happened to it before. Fault handling is `gmem`'s
/// (`sev_handle_rmp_fault`).
///
/// A conversion refused for an extra reference on a page (a host pin) is the VMM's to handle; this
/// VMM reports it to the guest as a failed page-state change (the guest sees an error code) and
/// does not retry: it cannot know whether the reference is transient. On an implicit conversion
/// (KVM_EXIT_MEMORY_FAULT) there is no request to fail, and the VM stops.
#[derive(Clone, Copy, Debug)]
pub struct GmemInplace;

/// Decisions that are `gmem`'s, stated once there: each method named here calls [`Gmem`]'s.
macro_rules! as_gmem {
    ($(fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        $(fn $name(&self, $($arg: $ty),*) -> $ret { Gmem.$name($($arg),*) })*
    };
}

impl Policy for GmemInplace {
    fn name(&self) -> &'static str {
        "gmem-inplace"
    }

    fn summary(&self) -> &'static str {
        "upstream (2026): one guest_memfd converted in place on HugeTLB folios; host access to private = SIGBUS"
    }

    fn in_place_conversion(&self) -> bool {
        true
    }

    /// Every GFN, shared or private, is the guest_memfd's.
    fn in_gmem(&self, _attrs: &MemoryAttributes, _gfn: Gfn) -> bool {
        true
    }

    /// One file: a shared GFN maps the frame its private state would.
    fn shared_maps_private_frames(&self) -> bool {
        true
    }

    fn convert(&self, vm: &mut dyn VmOps, range: PscRange) -> Result<(), KvmError> {
        vm.convert_in_place(range)
    }

    // The era, the NPT cap at the RMP level, leaf sizes, what is private, the exits, and fault
    // handling (`sev_handle_rmp_fault`: PSMASH and zap from the faulting GFN; an RMP #NPF on a 4K
    // entry repeats) are gmem's.
    as_gmem! {
        fn era() -> Era;
        fn npt_level_follows_rmp() -> bool;
        fn converts_gmem_frames() -> bool;
        fn leaf_allowed(attrs: &MemoryAttributes, start: Gfn, pages: u64) -> bool;
        fn page_is_private(attrs: &MemoryAttributes, gfn: Gfn, rmp_assigned: bool) -> bool;
        fn fault_needs_conversion(attrs: &MemoryAttributes, gfn: Gfn, private: bool) -> bool;
        fn implicit_conversion_exit() -> Option<&'static str>;
        fn psc_range_exit() -> Option<&'static str>;
        fn psmash_failure() -> PsmashFailure;
        fn psmash_on_any_rmp_fault() -> bool;
        fn resolve_npt_larger(vm: &mut dyn VmOps, gfn: Gfn) -> Result<(), KvmError>;
        fn psmash_zap_start(geometry: Geometry, gfn: Gfn) -> Gfn;
    }
}
