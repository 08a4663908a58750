//! Fault-ins as range operations (docs/semantics.md, "Ranges"): where a pre-fault
//! (KVM_PRE_FAULT_MEMORY, `Kvm::prefault`) meets consecutive unmapped private GFNs whose
//! fault-in is the same for each — guest_memfd pages already allocated and bound, their RMP entries
//! assigned 4K (a smashed region), so that `npt_level_follows_rmp` caps every leaf at 4K and
//! `sev_gmem_prepare` has nothing to do — the 4K leaves are installed in one pass with the checks
//! that decide them, not through the whole of [`Kvm::fault_in`] page by page. The first GFN that
//! differs ends the run and takes the one-page path, which stays the oracle (`Kvm::ranges` off).

use snpsim_defs::{Gfn, PageSize};
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
}
