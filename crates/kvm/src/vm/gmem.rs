//! guest_memfd (upstream since 6.11): the VMM's KVM_HC_MAP_GPA_RANGE handling, first-use
//! preparation (`sev_gmem_prepare`), pre-faulting, and the hole punch that returns pages to the
//! host (`sev_gmem_invalidate`).

use snpsim_defs::{Gfn, PageSize, Pfn, ReturnCode, RmpPageSize};
use snpsim_host::Host;
use snpsim_hw::{Mutant, RmpModel};

use super::Kvm;
use crate::error::KvmError;
use crate::psc::PscRange;

impl Kvm {
    /// `sev_gmem_prepare`: make a gmem page private on first use — one 2M RMPUPDATE when its folio
    /// is ≥ 2M and the whole 2M range is unassigned (and, a snpsim choice, private by attribute),
    /// else 4K.
    pub(super) fn gmem_prepare(
        &mut self,
        host: &mut Host,
        rmp: &mut dyn RmpModel,
        gfn: Gfn,
        pfn: Pfn,
        folio: PageSize,
    ) -> Result<(), KvmError> {
        if rmp.lookup(pfn).is_some_and(|(a, _)| a) {
            return Ok(());
        }
        let region = self.geometry.region_of(pfn);
        let gfn_region = self.geometry.gfn_align_down(gfn, PageSize::Size2M);
        let per_2m = self.geometry.pages_per_2m();
        let whole = folio >= PageSize::Size2M
            && !rmp.region_has_assigned(region)
            && self.attrs.uniform(gfn_region, per_2m) == Some(true);
        if whole {
            self.make_private(host, rmp, region, gfn_region.gpa(), RmpPageSize::Size2M)
        } else {
            self.make_private(host, rmp, pfn, gfn.gpa(), RmpPageSize::Size4K)
        }
    }

    /// gmem-era conversion, as the VMM does it after KVM_EXIT_HYPERCALL(KVM_HC_MAP_GPA_RANGE) or
    /// KVM_EXIT_MEMORY_FAULT: set the memory attributes (KVM zaps the NPT range when they change),
    /// then discard the copy no longer needed — punch a hole in gmem on private→shared (which runs
    /// `sev_gmem_invalidate`), MADV_DONTNEED on the VMA on shared→private — and, with
    /// `prefault_on_psc`, pre-fault a range made private (KVM_PRE_FAULT_MEMORY).
    pub(super) fn map_gpa_range(
        &mut self,
        host: &mut Host,
        rmp: &mut dyn RmpModel,
        range: PscRange,
    ) -> Result<(), KvmError> {
        if self.attrs.set(range.gfn, range.pages, range.private) > 0
            && !Mutant::NoZapOnAttributeChange.planted(self.mutant)
        {
            self.npt.zap(range.gfn, range.pages);
            self.demotions.zapped_elsewhere(self.geometry, range.gfn, range.pages);
        }
        if range.private {
            if self.config.prefault_on_psc {
                self.prefault(host, rmp, range.gfn, range.pages)?;
            }
        } else {
            self.punch_hole(host, rmp, range.gfn, range.pages)?;
        }
        Ok(())
    }

    /// VM teardown (the `teardown` step): KVM_DESTROY_VM zaps every NPT leaf, and closing the
    /// VM's guest_memfd frees every page, each through `sev_gmem_invalidate` (`kvm_gmem_free_folio`
    /// calls it as a folio goes): assigned frames back to the hypervisor, a whole 2M entry by one
    /// RMPUPDATE. For the separate file the hole covers the whole file ([`Kvm::punch_hole`]); for
    /// the in-place file every folio is invalidated, then released to the host. A VM without
    /// guest_memfd only loses its NPT here (the legacy reclaim is not modelled; the scenario format
    /// refuses `teardown` there).
    pub fn destroy(&mut self, host: &mut Host, rmp: &mut dyn RmpModel) -> Result<(), KvmError> {
        let (start, pages) = (Gfn::new(0), self.pages);
        self.npt.zap(start, pages);
        self.demotions.zapped_elsewhere(self.geometry, start, pages);
        if host.gmem.is_some() {
            self.punch_hole(host, rmp, start, pages)?;
        }
        if let Some(file) = host.gmem_hugetlb.as_ref() {
            let (folios, n): (Vec<Pfn>, u64) =
                (file.folios().map(|(_, pfn)| pfn).collect(), file.folio_pages());
            for pfn in folios {
                self.gmem_invalidate(host, rmp, pfn, n)?;
            }
            if let Some(file) = host.gmem_hugetlb.as_mut() {
                file.release(&mut host.memory)?;
            }
        }
        Ok(())
    }

    /// KVM_PRE_FAULT_MEMORY over a private range: map every unmapped GFN, with no exit.
    pub fn prefault(
        &mut self,
        host: &mut Host,
        rmp: &mut dyn RmpModel,
        start: Gfn,
        pages: u64,
    ) -> Result<(), KvmError> {
        let mut g = start.raw();
        while g < start.raw() + pages {
            if self.npt.translate(Gfn::new(g)).is_none() {
                let rest = start.raw() + pages - g;
                let run = self.prefault_run_4k(host, rmp, Gfn::new(g), rest);
                if run > 0 {
                    g += run;
                    continue;
                }
                let run = self.prefault_fresh_run_4k(host, rmp, Gfn::new(g), rest);
                if run > 0 {
                    g += run;
                    continue;
                }
                self.fault_in(host, rmp, Gfn::new(g), true)?;
            }
            g = match self.npt.leaf(Gfn::new(g)) {
                Some((s, leaf)) => s.raw() + self.geometry.pages(leaf.size),
                None => g + 1,
            };
        }
        Ok(())
    }

    /// fallocate(PUNCH_HOLE) on guest_memfd over a GFN range: KVM zaps the NPT over it, then every
    /// freed folio page goes through `sev_gmem_invalidate` — one 2M RMPUPDATE to shared where a
    /// whole 2M entry goes, else PSMASH (if inside a 2M entry) and 4K RMPUPDATE. A failed PSMASH or
    /// RMPUPDATE there is only a WARN upstream: counted in `kvm_warnings`, and the invalidation
    /// goes on.
    pub fn punch_hole(
        &mut self,
        host: &mut Host,
        rmp: &mut dyn RmpModel,
        start: Gfn,
        pages: u64,
    ) -> Result<(), KvmError> {
        let Some(gmem) = host.gmem.as_mut() else { return Ok(()) };
        // A shared leaf in the range maps the VMA, not gmem: it stays.
        let attrs = &self.attrs;
        self.npt.zap_where(start, pages, |g| attrs.is_private(g));
        self.demotions.zapped_elsewhere(self.geometry, start, pages);
        let mut freed = Vec::new();
        gmem.punch_hole(&mut host.memory, start.raw(), pages, |pfn, n| freed.push((pfn, n)))?;
        if Mutant::PunchHoleSkipsInvalidate.planted(self.mutant) {
            freed.clear();
        }
        for (pfn, n) in freed {
            self.gmem_invalidate(host, rmp, pfn, n)?;
        }
        Ok(())
    }

    /// `sev_gmem_invalidate` over `n` frames from `pfn`: one 2M RMPUPDATE to shared where a whole
    /// 2M entry goes, else PSMASH (if inside a 2M entry) and 4K RMPUPDATE; unassigned frames are
    /// skipped. A failed PSMASH or RMPUPDATE is only a WARN upstream: counted in `kvm_warnings`.
    pub(super) fn gmem_invalidate(
        &mut self,
        host: &mut Host,
        rmp: &mut dyn RmpModel,
        pfn: Pfn,
        n: u64,
    ) -> Result<(), KvmError> {
        let per_2m = self.geometry.pages_per_2m();
        let end = pfn.raw() + n;
        let mut p = pfn.raw();
        while p < end {
            let (assigned, level) = rmp.lookup(Pfn::new(p)).unwrap_or((false, RmpPageSize::Size4K));
            if !assigned {
                p += 1;
                continue;
            }
            let whole = level == RmpPageSize::Size2M && Pfn::new(p).is_aligned(per_2m) && p + per_2m <= end;
            if !whole && level == RmpPageSize::Size2M {
                // "This shouldn't fail, but if it does, report it, but still try to update
                // RMP entry to shared": a WARN_ONCE, and on.
                if self.psmash_unchecked(rmp, Pfn::new(p)) != ReturnCode::Success {
                    self.stats.kvm_warnings += 1;
                }
            }
            let size = if whole { RmpPageSize::Size2M } else { RmpPageSize::Size4K };
            match self.make_shared(host, rmp, Pfn::new(p), size) {
                Ok(()) => {}
                // A failed RMPUPDATE is a WARN_ONCE; the page is skipped (left assigned).
                Err(KvmError::Instruction { .. }) => self.stats.kvm_warnings += 1,
                Err(e) => return Err(e),
            }
            p += if whole { per_2m } else { 1 };
        }
        Ok(())
    }
}
