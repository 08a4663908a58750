//! `rfc-v4`: the SNP RFC v4 series (B. Singh, 7 July 2021) as its code was posted.

use snpsim_defs::Gfn;
use snpsim_host::UnsplittableRmpFault;

use super::{Era, Policy, PscLevel, PsmashFailure, RmpCap, VmOps};
use crate::error::KvmError;

/// The KVM and host fault handling of the RFC v4 patches, as posted:
/// - the NPT level of every fault is capped at the RMP page size of the 2M-aligned entry
///   (27/40, `sev_get_tdp_max_page_level` = `min(RMP level, max_level)`);
/// - an RMP #NPF with SIZEM (or a 4K NPT leaf over a 2M RMP entry on a private access) is
///   resolved by PSMASH of the 2M-aligned frame, its return code not acted on, then
///   `kvm_zap_gfn_range` of the 2M-aligned 512 GFNs (38/40, `snp_handle_rmp_page_fault`); the
///   refault is capped at the new RMP level. KVM never touches the host page tables;
/// - a page-state change maps the GPA in the NPT first and converts at
///   `min(entry level, NPT leaf level)` (the PSC handler, `__snp_handle_page_state_change`);
/// - the host's RMP #PF handler for user addresses (10/40) SIGBUSes an access to an assigned
///   page and otherwise asks for a split with `FAULT_FLAG_PAGE_SPLIT`, which hugetlb VMAs ignore:
///   a host write into a hugetlbfs page holding a private 4K page faults forever (`host_hang`).
#[derive(Clone, Copy, Debug)]
pub struct RfcV4;

impl Policy for RfcV4 {
    fn name(&self) -> &'static str {
        "rfc-v4"
    }

    fn era(&self) -> Era {
        Era::Legacy
    }

    fn summary(&self) -> &'static str {
        "RFC v4 as posted (27/40, 38/40, 10/40): NPT capped at the RMP level, PSMASH + zap on SIZEM, host split flag ignored by hugetlbfs"
    }

    fn npt_level_follows_rmp(&self) -> bool {
        true
    }

    fn rmp_cap(&self) -> RmpCap {
        RmpCap::EveryFault
    }

    fn psc_level(&self) -> PscLevel {
        PscLevel::NptLeaf
    }

    fn psmash_failure(&self) -> PsmashFailure {
        PsmashFailure::Ignored
    }

    fn zap_after_implicit_conversion(&self) -> bool {
        true
    }

    fn unsplittable_rmp_fault(&self) -> UnsplittableRmpFault {
        UnsplittableRmpFault::Refault
    }

    /// A SIZEM fault over a 4K RMP entry: `snp_handle_rmp_page_fault` still PSMASHes (the
    /// instruction fails, the code is ignored) and zaps the 2M-aligned range; the refault maps
    /// at the RMP level.
    fn resolve_npt_larger(&self, vm: &mut dyn VmOps, gfn: Gfn) -> Result<(), KvmError> {
        vm.psmash_and_zap_2m(gfn);
        Ok(())
    }
}
