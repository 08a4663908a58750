//! `refuse-hugetlbfs`: refuse hugetlbfs memory at registration (D. Hansen's question, B. Singh's
//! answer on the RFC v4 10/40 thread; v6 scanned the registered HVA range for VM_HUGETLB).

use snpsim_host::VmaBacking;

use snpsim_defs::Gfn;

use super::{Era, Policy, Reading, VmOps};
use crate::error::KvmError;

/// As `rfc-host-split`, but memory registration fails when the VMA is hugetlbfs, so the split
/// that cannot happen is never needed — and a guest that would never have faulted (2M page-state
/// changes) cannot run either.
#[derive(Clone, Copy, Debug)]
pub struct RefuseHugetlbfs;

impl Policy for RefuseHugetlbfs {
    fn name(&self) -> &'static str {
        "refuse-hugetlbfs"
    }

    fn era(&self) -> Era {
        Era::Legacy
    }

    fn reading(&self) -> Reading {
        Reading::Description
    }

    fn summary(&self) -> &'static str {
        "host split as the RFC, and refuse to register hugetlbfs memory (RFC v6)"
    }

    fn register_memslot(&self, backing: VmaBacking) -> Result<(), KvmError> {
        if backing.is_hugetlbfs() { Err(KvmError::Rejected { policy: self.name(), backing }) } else { Ok(()) }
    }

    fn resolve_npt_larger(&self, vm: &mut dyn VmOps, gfn: Gfn) -> Result<(), KvmError> {
        vm.split_host_mapping(gfn)
    }
}
