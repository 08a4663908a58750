//! The hypervisor policies compared by snpsim (design §4): one file each, behind [`Policy`].
//!
//! A policy decides three things: whether a memslot is accepted, whether a page-state change to
//! private is allowed, and how to resolve an RMP #NPF whose NPT leaf is larger than the RMP entry
//! (the size mismatch the 2021 debate was about). Everything else — the hardware checks, PSMASH
//! for a 2M RMP entry, implicit conversions, the protocols — is common KVM code in [`crate::vm`].

mod fail_psc_hugetlbfs;
mod gmem;
mod npt_demote;
mod refuse_hugetlbfs;
mod rfc_host_split;

use std::fmt;

use snpsim_defs::{Gfn, PageSize};
use snpsim_host::{Host, HostError, VmaBacking};
use snpsim_hw::{Geometry, RmpModel};

use crate::{Kvm, KvmError};

pub use fail_psc_hugetlbfs::FailPscHugetlbfs;
pub use gmem::Gmem;
pub use npt_demote::NptDemote;
pub use refuse_hugetlbfs::RefuseHugetlbfs;
pub use rfc_host_split::RfcHostSplit;

/// Which memory design a policy belongs to (design §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Era {
    /// The 2021 RFC series: private and shared pages are the same VMA pages.
    Legacy,
    /// Upstream since 6.11: private memory in guest_memfd.
    Gmem,
}

/// A hypervisor policy.
pub trait Policy: fmt::Debug + Sync {
    /// The name used in scenarios and reports (design §4).
    fn name(&self) -> &'static str;

    /// The memory era it runs in.
    fn era(&self) -> Era;

    /// One line saying what the policy does and where it comes from.
    fn summary(&self) -> &'static str;

    /// Whether KVM caps the NPT level of a private page at its RMP level unless the scenario says
    /// otherwise (`npt_level_follows_rmp`, design §4): upstream's rule, so true in the gmem era.
    fn npt_level_follows_rmp(&self) -> bool {
        self.era() == Era::Gmem
    }

    /// Memory registration of the VMA backing (the RFC's KVM_MEMORY_ENCRYPT_REG_REGION).
    fn register_memslot(&self, backing: VmaBacking) -> Result<(), String> {
        let _ = backing;
        Ok(())
    }

    /// Whether KVM accepts a page-state change to private on `backing`.
    fn psc_private_allowed(&self, backing: VmaBacking) -> bool {
        let _ = backing;
        true
    }

    /// Resolve an RMP #NPF at `cx.gfn` whose NPT leaf is larger than the RMP entry (a private
    /// access through a 2M/1G leaf over 4K entries, or a shared access through a ≥2M leaf whose 2M
    /// part holds assigned pages).
    fn resolve_npt_larger(&self, cx: &mut FaultCx<'_>) -> Result<(), KvmError>;

    /// First GFN of the 512-GFN range zapped after a PSMASH that resolved an #NPF at `gfn`.
    fn psmash_zap_start(&self, geometry: Geometry, gfn: Gfn) -> Gfn {
        geometry.gfn_align_down(gfn, PageSize::Size2M)
    }
}

/// Every policy, in report order.
pub const ALL: [&dyn Policy; 5] = [&RfcHostSplit, &RefuseHugetlbfs, &FailPscHugetlbfs, &NptDemote, &Gmem];

/// The policy named `name`.
pub fn by_name(name: &str) -> Option<&'static dyn Policy> {
    ALL.into_iter().find(|p| p.name() == name)
}

/// What a policy may act on while resolving a fault.
#[derive(Debug)]
pub struct FaultCx<'a> {
    /// KVM.
    pub kvm: &'a mut Kvm,
    /// The host.
    pub host: &'a mut Host,
    /// The RMP.
    pub rmp: &'a mut dyn RmpModel,
    /// The faulting GFN.
    pub gfn: Gfn,
}

impl FaultCx<'_> {
    /// The RFC's resolution: split the host mapping of the faulting page to 4K; the MMU notifier
    /// then zaps the NPT over the split range and the refault maps it at the new host level. The
    /// split is needless (KVM could have demoted its own NPT). hugetlbfs cannot split: the fault
    /// stays unresolved.
    pub fn split_host_mapping(&mut self) -> Result<(), KvmError> {
        let offset = self.gfn.raw();
        match self.host.split_for_kvm(offset) {
            Ok(Some(inv)) => {
                self.kvm.zap_for_fault(snpsim_defs::Gfn(inv.offset), inv.pages, self.gfn, PageSize::Size4K);
                Ok(())
            }
            Ok(None) => Err(KvmError::Unresolvable {
                gfn: self.gfn,
                reason: "the host mapping is already 4K; splitting it cannot shrink the NPT leaf".into(),
            }),
            Err(HostError::Unsplittable { backing }) => Err(KvmError::Unresolvable {
                gfn: self.gfn,
                reason: format!("the host walk found a {backing:?} page, which cannot be split"),
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// The seed's resolution: demote the NPT leaf holding the faulting GFN in place, minimally,
    /// down to `target`, without touching the host page tables.
    pub fn demote_npt(&mut self, target: PageSize) -> Result<(), KvmError> {
        if self.kvm.demote_for_fault(self.gfn, target) == 0 {
            return Err(KvmError::Unresolvable {
                gfn: self.gfn,
                reason: "the NPT leaf is already at the RMP level".into(),
            });
        }
        Ok(())
    }
}
