//! Fault-ins as range operations (docs/semantics.md, "Ranges"): where a pre-fault
//! (KVM_PRE_FAULT_MEMORY, `Kvm::prefault`) meets consecutive unmapped private GFNs whose
//! fault-in is the same for each — guest_memfd pages already allocated and bound, their RMP entries
//! assigned 4K (a smashed region), so that `npt_level_follows_rmp` caps every leaf at 4K and
//! `sev_gmem_prepare` has nothing to do — the 4K leaves are installed in one pass with the checks
//! that decide them, not through the whole of [`Kvm::fault_in`] page by page. The first GFN that
//! differs ends the run and takes the one-page path, which stays the oracle (`Kvm::ranges` off).
//!
//! The first fault-in of fresh 4K guest_memfd pages (a 4K-folio file, pages not yet allocated)
//! is a run too ([`Kvm::prefault_fresh_run_4k`]): each page's folio is allocated as
//! `kvm_gmem_get_pfn` does, and the pages whose frames follow each other are made private by one
//! run of 4K RMPUPDATEs (`sev_gmem_prepare`'s `rmp_make_private`,
//! [`RmpModel::rmpupdate_4k_run`]) and mapped with 4K leaves.
//!
//! A legacy page-state change to private over consecutive host frames whose RMP entries are
//! unassigned is one such run of 4K RMPUPDATEs as well ([`Kvm::make_private_legacy_run`]).

use snpsim_defs::{Gfn, PageSize, Pfn, RmpPageSize};
use snpsim_host::Host;
use snpsim_hw::RmpModel;

use super::Kvm;

impl Kvm {
    /// Map GFNs from `gfn` (at most `pages`) with 4K leaves as [`Kvm::fault_in`] of each, in
    /// order, would for a private fault: returns how many. A GFN is in the run when it is inside
    /// the memslot, private by attribute and in guest_memfd (no conversion), its guest_memfd page
    /// is allocated (`kvm_gmem_get_pfn` allocates nothing) and bound at that frame (no rebinding in
    /// its folio), the frame's RMP entry is assigned and governed by a 4K entry
    /// ([`RmpModel::assigned_4k_run`]: `sev_gmem_prepare` returns at once and the RMP-level cap
    /// leaves 4K), nothing maps its folio's remaining pages, and the policy allows a 4K leaf there.
    /// Off with a planted bug or without the RMP-level cap.
    pub(super) fn prefault_run_4k(&mut self, host: &Host, rmp: &dyn RmpModel, gfn: Gfn, pages: u64) -> u64 {
        if !self.ranges || self.mutant.is_some() || !self.config.npt_level_follows_rmp {
            return 0;
        }
        let Some(gmem) = host.gmem.as_ref() else { return 0 };
        let pages = pages.min(self.pages.saturating_sub(gfn.raw()));
        let mut n = 0;
        while n < pages {
            let g = gfn + n;
            // A guest_memfd folio at a time: its pages are bound to consecutive frames (when no
            // GFN of it is rebound), and nothing may map any of them.
            let Some((pfn, folio)) = gmem.pfn(g.raw()) else { break };
            let per = self.geometry.pages(folio);
            let chunk = (per - g.raw() % per).min(pages - n);
            if self.rebound.range(g..g + chunk).next().is_some() || self.npt.any_mapped(g, chunk) {
                break;
            }
            // Assigned 4K entries: `sev_gmem_prepare` returns at once, the cap leaves 4K.
            let assigned = rmp.assigned_4k_run(pfn, chunk);
            let mut k = 0;
            while k < assigned {
                let p = g + k;
                if self.policy.fault_needs_conversion(&self.attrs, p, true)
                    || !self.policy.in_gmem(&self.attrs, p)
                    || !self.policy.leaf_allowed(&self.attrs, p, 1)
                {
                    break;
                }
                self.npt.map(p, PageSize::Size4K, pfn + k);
                self.demotions.remapped(p, PageSize::Size4K);
                k += 1;
            }
            n += k;
            if k < chunk {
                break;
            }
        }
        self.range_mapped += n;
        n
    }

    /// Map GFNs from `gfn` (at most `pages`) as [`Kvm::fault_in`] of each, in order, would for a
    /// private fault on fresh guest_memfd pages: returns how many. A GFN is in the run when it is
    /// inside the memslot, private by attribute and in guest_memfd, unmapped and not rebound, the
    /// policy allows a 4K leaf there, and its page is not yet allocated in a file of 4K folios.
    /// Its folio is then allocated (`kvm_gmem_get_pfn`: the allocation is the first thing the
    /// one-page path does too, and nothing in between depends on it), and the run goes on while
    /// the frame's RMP entry is unassigned 4K, its region not in flight and the RMPUPDATE's
    /// operand valid, as the RMP answers: then that RMPUPDATE succeeds (an unassigned entry is
    /// all zero, so never immutable), so no page is allocated ahead of a refused one.
    /// Each stretch of consecutive frames is made private by one run of 4K RMPUPDATEs (the
    /// direct map split first, `rmp_make_private`) and mapped 4K (the RMP-level cap). A GFN that
    /// fails a condition after its allocation ends the run and takes the one-page path with its
    /// page allocated, as that path would have left it. Off with a planted bug, without the
    /// RMP-level cap, or for the in-place file.
    pub(super) fn prefault_fresh_run_4k(
        &mut self,
        host: &mut Host,
        rmp: &mut dyn RmpModel,
        gfn: Gfn,
        pages: u64,
    ) -> u64 {
        if !self.ranges
            || self.mutant.is_some()
            || !self.config.npt_level_follows_rmp
            || host.gmem_hugetlb.is_some()
            || host.gmem.as_ref().is_none_or(|g| g.folio_size() != PageSize::Size4K)
        {
            return 0;
        }
        let pages = pages.min(self.pages.saturating_sub(gfn.raw()));
        let mut done = 0;
        // Frames allocated for the GFNs from `gfn + done`, consecutive from the first.
        let mut pending: Option<(Pfn, u64)> = None;
        loop {
            let queued = pending.map_or(0, |(_, c)| c);
            let next =
                if done + queued < pages { self.fresh_frame(host, rmp, gfn + (done + queued)) } else { None };
            match (pending, next) {
                (None, Some(f)) => {
                    pending = Some((f, 1));
                    continue;
                }
                (Some((first, c)), Some(f)) if f == first + c => {
                    pending = Some((first, c + 1));
                    continue;
                }
                _ => {}
            }
            if let Some((first, c)) = pending.take() {
                let made = self.make_private_run(host, rmp, gfn + done, first, c);
                done += made;
                if made < c {
                    // The RMP refused a page the checks let through: the rest go one by one.
                    return done;
                }
            }
            match next {
                Some(f) => pending = Some((f, 1)),
                None => return done,
            }
        }
    }

    /// The frame of fresh page `gfn` for [`Kvm::prefault_fresh_run_4k`], allocated, or `None`
    /// when `gfn` is not in the run (allocated or not).
    fn fresh_frame(&mut self, host: &mut Host, rmp: &dyn RmpModel, gfn: Gfn) -> Option<Pfn> {
        if self.policy.fault_needs_conversion(&self.attrs, gfn, true)
            || !self.policy.in_gmem(&self.attrs, gfn)
            || !self.policy.leaf_allowed(&self.attrs, gfn, 1)
            || self.rebound.contains_key(&gfn)
            || self.npt.any_mapped(gfn, 1)
        {
            return None;
        }
        // The RMPUPDATE's operand is valid (its frame is checked below): the run never allocates
        // a page whose RMPUPDATE, or an earlier one's, would then be refused.
        if !rmp.rmpupdate_operand_valid(self.private_entry(gfn.gpa(), RmpPageSize::Size4K)) {
            return None;
        }
        let gmem = host.gmem.as_mut()?;
        // `kvm_gmem_get_pfn`: allocates the 4K folio (an error leaves everything as it was); a
        // page already allocated is not in the run.
        let (pfn, _, allocated) = gmem.get_pfn(&mut host.memory, gfn.raw()).ok()?;
        if !allocated {
            return None;
        }
        let fresh = rmp.lookup(pfn) == Some((false, RmpPageSize::Size4K)) && !rmp.in_flight(pfn);
        fresh.then_some(pfn)
    }

    /// `sev_gmem_prepare` of `count` fresh pages from `gfn`, bound to the frames from `pfn`, as one
    /// run of 4K RMPUPDATEs, then their 4K leaves; returns how many pages the RMP took.
    fn make_private_run(
        &mut self,
        host: &mut Host,
        rmp: &mut dyn RmpModel,
        gfn: Gfn,
        pfn: Pfn,
        count: u64,
    ) -> u64 {
        let made = rmp.rmpupdate_4k_run(pfn, gfn.gpa(), self.config.asid, count);
        self.stats.rmpupdate += made;
        for k in 0..made {
            host.adjust_direct_map(pfn + k);
            self.npt.map(gfn + k, PageSize::Size4K, pfn + k);
            self.demotions.remapped(gfn + k, PageSize::Size4K);
        }
        self.range_mapped += made;
        self.range_prepared += made;
        made
    }

    /// The 4K conversions to private of a legacy page-state change ([`Kvm::convert_legacy`]) from
    /// `gfn` (before `end`) as runs: returns how many GFNs were converted, each as the one-page
    /// path would (`rmp_make_private`: the direct map split, then RMPUPDATE to an assigned 4K
    /// entry). A 2M region at a time, the GFNs whose VMA frames follow each other go to the RMP as
    /// one run ([`RmpModel::rmpupdate_4k_run`], which lasts while each entry is unassigned); the
    /// runs stop before a 2M-aligned GFN the 2M path would take (a 2M request over a huge host
    /// page), at an NPT leaf larger than 4K (the RMP-level cap's bookkeeping goes page by page),
    /// at a GFN outside the VMA, and where the RMP stops; that GFN takes the one-page path. The
    /// work is proportional to the pages converted plus one region. Off with a planted bug.
    pub(super) fn make_private_legacy_run(
        &mut self,
        host: &mut Host,
        rmp: &mut dyn RmpModel,
        gfn: Gfn,
        end: u64,
        size_2m: bool,
    ) -> u64 {
        if !self.ranges || self.mutant.is_some() {
            return 0;
        }
        let per_2m = self.geometry.pages_per_2m();
        let mut at = gfn.raw();
        while at < end {
            let whole_2m = size_2m
                && at.is_multiple_of(per_2m)
                && at + per_2m <= end
                && host.vma.level(at) >= PageSize::Size2M;
            if (at != gfn.raw() && whole_2m)
                || self.npt.leaf(Gfn::new(at)).is_some_and(|(_, leaf)| leaf.size > PageSize::Size4K)
            {
                break;
            }
            let region_end = ((at / per_2m + 1) * per_2m).min(end);
            let Some(&(offset, pfn, frames)) = host.vma.runs_in(at, region_end).first() else { break };
            if offset != at {
                break;
            }
            let made = rmp.rmpupdate_4k_run(pfn, Gfn::new(at).gpa(), self.config.asid, frames);
            self.stats.rmpupdate += made;
            for k in 0..made {
                host.adjust_direct_map(pfn + k);
            }
            self.range_converted += made;
            at += made;
            if made < frames {
                break;
            }
        }
        at - gfn.raw()
    }
}
