//! The [`VmOps`] a policy acts through: KVM's mechanisms on one VM (its state, the host and the
//! RMP), each delegating to the handler that owns it.

use snpsim_defs::{Gfn, PageSize};
use snpsim_host::{Host, HostError};
use snpsim_hw::RmpModel;

use super::Kvm;
use crate::error::{KvmError, Unresolved};
use crate::policy::VmOps;
use crate::psc::PscRange;

/// KVM's mechanisms as a policy acts through them ([`VmOps`]), on one VM.
pub(super) struct Ops<'a> {
    pub(super) kvm: &'a mut Kvm,
    pub(super) host: &'a mut Host,
    pub(super) rmp: &'a mut dyn RmpModel,
}

impl VmOps for Ops<'_> {
    fn split_host_mapping(&mut self, gfn: Gfn) -> Result<(), KvmError> {
        match self.host.split_vma(gfn.raw()) {
            Ok(Some(inv)) => {
                self.kvm.zap_for_fault(Gfn::new(inv.offset), inv.pages, gfn, PageSize::Size4K);
                Ok(())
            }
            Ok(None) => Err(KvmError::Unresolvable {
                gfn,
                why: Unresolved::HostSplitImpossible,
                detail: "the host mapping is already 4K; splitting it cannot shrink the NPT leaf".into(),
            }),
            Err(HostError::Unsplittable { backing }) => Err(KvmError::Unresolvable {
                gfn,
                why: Unresolved::HostSplitImpossible,
                detail: format!("the host walk found a {} page, which cannot be split", backing.name()),
            }),
            Err(e) => Err(e.into()),
        }
    }

    fn demote_npt(&mut self, gfn: Gfn, target: PageSize) -> Result<(), KvmError> {
        if self.kvm.demote_for_fault(gfn, target) == 0 {
            return Err(KvmError::Unresolvable {
                gfn,
                why: Unresolved::NptAtRmpLevel,
                detail: "the NPT leaf is already at the RMP level".into(),
            });
        }
        Ok(())
    }

    fn psmash_and_zap_2m(&mut self, gfn: Gfn) {
        if let Some((pfn, _)) = self.kvm.npt.translate(gfn) {
            self.kvm.psmash_unchecked(self.rmp, pfn);
        }
        let g = self.kvm.geometry;
        let start = g.gfn_align_down(gfn, PageSize::Size2M);
        self.kvm.zap_for_fault(start, g.pages_per_2m(), gfn, PageSize::Size4K);
    }

    fn convert_rmp(&mut self, range: PscRange) -> Result<(), KvmError> {
        self.kvm.convert_legacy(self.host, self.rmp, range)
    }

    fn map_gpa_range(&mut self, range: PscRange) -> Result<(), KvmError> {
        self.kvm.map_gpa_range(self.host, self.rmp, range)
    }

    fn convert_in_place(&mut self, range: PscRange) -> Result<(), KvmError> {
        self.kvm.convert_in_place(self.host, self.rmp, range)
    }
}
