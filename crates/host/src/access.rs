//! Host writes to guest memory and the host's RMP #PF handling.

use snpsim_defs::{Pfn, RmpPageSize};
use snpsim_hw::RmpModel;

use crate::{Host, Invalidation};

/// How the host reaches a guest page (a host step's `via`; `docs/semantics.md` S5).
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
pub enum HostVia {
    /// The VMM process, through its own mapping (a user-mode access).
    Vmm,
    /// The kernel through the VMM's mapping: get/put_user, copy_to/from_user (vhost, KVM emulation).
    Uaccess,
    /// The kernel through its direct map.
    Kernel,
}

/// What became of a host write.
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
#[strum(serialize_all = "snake_case")]
pub enum HostWriteOutcome {
    /// The write completed.
    Done,
    /// The VMM got SIGBUS: an RMP #PF the handler could not resolve on a user access.
    Sigbus,
    /// The uaccess returned -EFAULT: an RMP #PF it could not resolve on a kernel access to a user
    /// address (the exception-table fixup).
    Efault,
    /// A kernel write through the direct map took an RMP #PF: an oops in Linux.
    KernelOops,
    /// The handler asked for a split the mapping cannot do and retried: the write faults again
    /// with no progress, forever (RFC v4 10/40 on hugetlbfs, [`UnsplittableRmpFault::Refault`]).
    Hang,
}

impl HostWriteOutcome {
    /// The outcome as traces and step results write it.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// What the host's RMP #PF handler for user addresses does when the mapping is larger than the RMP
/// entry but cannot be split (hugetlbfs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum UnsplittableRmpFault {
    /// SIGBUS for a user access, -EFAULT for a kernel uaccess: how the seed mail and Dave Hansen's
    /// question read the RFC ("the split path can theoretically trigger on a hugetlbfs page").
    #[default]
    Sigbus,
    /// The code as posted (RFC v4 10/40): the handler sets `FAULT_FLAG_PAGE_SPLIT` and retries,
    /// but only `__handle_mm_fault` honours the flag; a hugetlb VMA is handled by `hugetlb_fault`,
    /// which ignores it, so the same write faults again without progress.
    Refault,
}

impl Host {
    /// A host write to VMA page `offset` through the VMM's mapping (`Vmm` or `Uaccess`).
    ///
    /// On an RMP #PF the handler of the RFC v4 patch 10/40 ("x86/fault: Add support to handle the
    /// RMP fault for user address") runs: the target page assigned ⇒ SIGBUS (user) or -EFAULT
    /// (uaccess fixup); a host mapping larger than the RMP entry ⇒ split the THP to 4K and retry
    /// (a needed split); a mapping that cannot split (hugetlbfs) ⇒ SIGBUS / -EFAULT, or a fault
    /// loop ([`HostWriteOutcome::Hang`], counted in `host_fault_loops`) when the handler is the
    /// posted code's ([`UnsplittableRmpFault::Refault`]). Returns the outcome and the ranges whose
    /// mappings changed (for the MMU notifier).
    pub fn write_via_vma(
        &mut self,
        rmp: &dyn RmpModel,
        offset: u64,
        via: HostVia,
    ) -> (HostWriteOutcome, Vec<Invalidation>) {
        let user = via == HostVia::Vmm;
        let fail = if user { HostWriteOutcome::Sigbus } else { HostWriteOutcome::Efault };
        let mut invalidated = Vec::new();
        // The user access faults the page in; with no memory for it, the access fails below.
        let _ = self.populate_vma(offset);
        // At most one split can help; a second fault is final.
        for _ in 0..2 {
            let Some((pfn, level)) = self.vma.translate(offset) else { return (fail, invalidated) };
            self.count_rmp_check(rmp, pfn);
            if rmp.check_host_write(pfn, level, user).is_ok() {
                self.note_split_use(rmp, offset, pfn, user);
                return (HostWriteOutcome::Done, invalidated);
            }
            let (assigned, rmp_level) = rmp.lookup(pfn).unwrap_or((false, RmpPageSize::Size4K));
            if assigned || level <= rmp_level.page_size() {
                break;
            }
            match self.split_vma(offset) {
                Ok(Some(inv)) => invalidated.push(inv),
                Err(crate::HostError::Unsplittable { .. })
                    if self.unsplittable_rmp_fault == UnsplittableRmpFault::Refault =>
                {
                    self.stats.host_fault_loops += 1;
                    return (HostWriteOutcome::Hang, invalidated);
                }
                Ok(None) | Err(_) => break,
            }
        }
        self.count_failure(fail);
        (fail, invalidated)
    }

    /// A kernel write to host frame `pfn` through the direct map: an RMP #PF there is an oops.
    pub fn write_via_direct_map(&mut self, rmp: &dyn RmpModel, pfn: Pfn) -> HostWriteOutcome {
        self.count_rmp_check(rmp, pfn);
        if rmp.check_host_write(pfn, self.direct_map.level(pfn), false).is_ok() {
            HostWriteOutcome::Done
        } else {
            self.count_failure(HostWriteOutcome::KernelOops);
            HostWriteOutcome::KernelOops
        }
    }

    /// Linux `adjust_direct_map`: before a 4K RMPUPDATE makes `pfn` private, split the direct map
    /// around it to 4K so kernel writes to its neighbours do not fault.
    pub fn adjust_direct_map(&mut self, pfn: Pfn) {
        if snpsim_hw::Mutant::SkipDirectMapSplit.planted(self.mutant) {
            return;
        }
        let split = self.direct_map.split_to_4k(pfn);
        if split > 0 {
            self.stats.direct_map_splits += split;
            self.stats.direct_map_flushes += 1;
        }
    }

    /// Split the huge VMA mapping holding `offset` to 4K — for KVM's host walk (the RFC's
    /// resolution of an #NPF), the host's RMP #PF handler or a scenario's `host_split` step — and
    /// record it as needless until an access needs it ([`crate::SplitLedger`]). `Ok(None)` if the
    /// mapping is already 4K.
    pub fn split_vma(&mut self, offset: u64) -> Result<Option<Invalidation>, crate::HostError> {
        let old = self.vma.level(offset);
        let inv = self.vma.split(offset)?;
        if let Some(inv) = inv {
            self.stats.host_splits += 1;
            self.stats.host_splits_needless += 1;
            self.splits.record(inv.offset, inv.pages, old);
        }
        Ok(inv)
    }

    /// Collapse a split THP range back to a huge mapping (khugepaged); the splits inside it stay
    /// needless for good, since later accesses go through the huge mapping again.
    pub fn collapse_vma(&mut self, offset: u64) -> Result<Option<Invalidation>, crate::HostError> {
        let inv = self.vma.collapse(offset)?;
        if let Some(inv) = inv {
            self.splits.close(inv.offset, inv.pages);
        }
        Ok(inv)
    }

    /// A host write to `offset` (frame `pfn`) completed through the VMA: if a still-needless split
    /// covers it and the write would have taken an RMP #PF through the mapping that split replaced,
    /// the split was needed.
    fn note_split_use(&mut self, rmp: &dyn RmpModel, offset: u64, pfn: Pfn, user: bool) {
        let Some(old) = self.splits.old_level(offset) else { return };
        if rmp.check_host_write(pfn, old, user).is_err() && self.splits.take(offset) {
            self.stats.host_splits_needed += 1;
            self.stats.host_splits_needless -= 1;
        }
    }

    fn count_failure(&mut self, outcome: HostWriteOutcome) {
        match outcome {
            HostWriteOutcome::Sigbus => self.stats.sigbus += 1,
            HostWriteOutcome::Efault => self.stats.efault += 1,
            HostWriteOutcome::KernelOops => self.stats.kernel_oops += 1,
            HostWriteOutcome::Done | HostWriteOutcome::Hang => {}
        }
    }
}
