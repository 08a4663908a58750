//! `npt-demote`: the seed mail's answer (S. Christopherson, July 2021).

use snpsim_defs::{Gfn, PageSize};

use super::{Era, Policy, Reading, VmOps};
use crate::error::KvmError;

/// Resolve an RMP size-mismatch #NPF by demoting KVM's own NPT leaf to the RMP level, minimally
/// (a fault in one 2M part of a 1G leaf leaves the other parts at 2M), never consulting or
/// changing the host page tables. Works for THP and hugetlbfs alike; host writes through a huge
/// host mapping over a private 4K page still fault (a generic, non-KVM problem).
#[derive(Clone, Copy, Debug)]
pub struct NptDemote;

impl Policy for NptDemote {
    fn name(&self) -> &'static str {
        "npt-demote"
    }

    fn era(&self) -> Era {
        Era::Legacy
    }

    fn reading(&self) -> Reading {
        Reading::Description
    }

    fn summary(&self) -> &'static str {
        "seed mail (2021): demote the NPT leaf to the RMP level; never touch the host mapping"
    }

    /// Minimal on every path: a SIZEM fault from a 4K PVALIDATE/RMPADJUST inside a 2M entry is
    /// resolved by the PSMASH every policy does; a 1G leaf over it is split into 2M leaves in
    /// place and nothing is zapped, so no leaf goes that no fault required.
    fn demote_after_psmash(&self) -> bool {
        true
    }

    fn resolve_npt_larger(&self, vm: &mut dyn VmOps, gfn: Gfn) -> Result<(), KvmError> {
        vm.demote_npt(gfn, PageSize::Size4K)
    }
}
