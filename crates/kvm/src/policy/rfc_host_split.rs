//! `rfc-host-split`: the SNP RFC v4 series (B. Singh, July 2021) as the seed mail characterises it.

use snpsim_defs::Gfn;

use super::{Era, Policy, Reading, VmOps};
use crate::error::KvmError;

/// Resolve an RMP size-mismatch #NPF by walking the *host* page table of the faulting HVA and
/// splitting the host mapping to 4K (`FAULT_FLAG_PAGE_SPLIT` → `__split_huge_pmd`, RFC v4 10/40);
/// the MMU notifier zaps the NPT and the refault maps at most the host level. Never a false
/// negative, but every split is needless, and hugetlbfs, which cannot split, leaves the fault
/// unresolved (`vm_error`).
///
/// Nuance: the RFC's own KVM #NPF handler (v3 34/37) already PSMASHed and zapped;
/// the host-split path lived in the host fault handler for user addresses. This policy models the
/// design the seed mail argues against: resolving KVM's faults through the host mapping.
#[derive(Clone, Copy, Debug)]
pub struct RfcHostSplit;

impl Policy for RfcHostSplit {
    fn name(&self) -> &'static str {
        "rfc-host-split"
    }

    fn era(&self) -> Era {
        Era::Legacy
    }

    fn reading(&self) -> Reading {
        Reading::Description
    }

    fn summary(&self) -> &'static str {
        "the seed mail's reading of RFC v4 (2021): resolve RMP size mismatches by splitting the host mapping; hugetlbfs cannot split"
    }

    fn resolve_npt_larger(&self, vm: &mut dyn VmOps, gfn: Gfn) -> Result<(), KvmError> {
        vm.split_host_mapping(gfn)
    }
}
