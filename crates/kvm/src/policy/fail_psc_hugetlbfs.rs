//! `fail-psc-hugetlbfs`: fail the guest's page-state change to private on hugetlbfs (B. Singh on
//! the RFC v4 10/40 thread: detect it when adding pages to the RMP).

use snpsim_host::VmaBacking;

use snpsim_defs::Gfn;

use super::{Era, Policy, Reading, VmOps};
use crate::error::KvmError;

/// As `rfc-host-split`, but a page-state change to private on a hugetlbfs page is answered with
/// an error; a Linux guest then terminates (GHCB_TERM_PSC).
#[derive(Clone, Copy, Debug)]
pub struct FailPscHugetlbfs;

impl Policy for FailPscHugetlbfs {
    fn name(&self) -> &'static str {
        "fail-psc-hugetlbfs"
    }

    fn era(&self) -> Era {
        Era::Legacy
    }

    fn reading(&self) -> Reading {
        Reading::Description
    }

    fn summary(&self) -> &'static str {
        "host split as the RFC, and fail page-state changes to private on hugetlbfs"
    }

    fn psc_private_allowed(&self, backing: VmaBacking) -> bool {
        !backing.is_hugetlbfs()
    }

    fn resolve_npt_larger(&self, vm: &mut dyn VmOps, gfn: Gfn) -> Result<(), KvmError> {
        vm.split_host_mapping(gfn)
    }
}
