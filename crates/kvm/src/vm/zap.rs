//! Removing NPT leaves: the zaps and in-place demotions a fault resolution does, with the
//! bookkeeping of which of them were needless ([`crate::demotions`]), and the MMU notifier that
//! zaps where the host changed the VMA's mappings.

use snpsim_defs::{Gfn, PageSize};
use snpsim_host::Invalidation;
use snpsim_hw::{GuestAccess, GuestOutcome, Mutant, RmpModel};

use super::Kvm;

impl Kvm {
    /// Zap `pages` GFNs from `start` to resolve a fault at `fault`, after which the faulting page
    /// refaults at `target`: every zapped leaf larger than `target` is a demotion, needless while a
    /// 2M part of it that it unmapped is required by no fault ([`crate::demotions`]): the
    /// faulting GFN's part is, another part only once a later access would have faulted through the
    /// old leaf ([`Kvm::note_guest_access`]). Returns the number of leaves zapped.
    pub fn zap_for_fault(&mut self, start: Gfn, pages: u64, fault: Gfn, target: PageSize) -> usize {
        let removed = self.npt.zap(start, pages);
        for r in &removed {
            if r.leaf.size > target {
                let needless = self.demotions.zapped(self.geometry, r.gfn, r.leaf.pfn, r.leaf.size, fault);
                self.stats.demotion(r.leaf.size, target, needless);
            }
        }
        removed.len()
    }

    /// A guest access completed (`access` as the NPT translated it): if it falls in a 2M part a
    /// still-needless zap unmapped, and it would have taken an #NPF through the zapped leaf, the
    /// zap was required there; once every part is, the demotion is needed.
    pub fn note_guest_access(&mut self, rmp: &dyn RmpModel, access: &GuestAccess) {
        let gfn = access.gpa.gfn();
        for (start, pfn, size) in self.demotions.old_leaves(self.geometry, gfn) {
            let Some(old_pfn) = pfn.checked_add(gfn.raw() - start.raw()) else { continue };
            let through_old = GuestAccess { pfn: old_pfn, npt_size: size, ..*access };
            if matches!(rmp.check_guest_access(&through_old), GuestOutcome::Npf(_))
                && self.demotions.required(self.geometry, start, size, gfn)
            {
                // Each record added one when it was made, and is removed here once.
                debug_assert!(self.stats.npt_demotions_needless > 0);
                self.stats.npt_demotions_needless = self.stats.npt_demotions_needless.saturating_sub(1);
            }
        }
    }

    /// Demote the leaf holding `gfn` in place down to `target` (minimal demotion). Returns the
    /// number of leaves split.
    pub fn demote_for_fault(&mut self, gfn: Gfn, target: PageSize) -> usize {
        let split = self.npt.demote(gfn, target);
        for r in &split {
            let to = r.leaf.size.smaller().unwrap_or(PageSize::Size4K);
            self.stats.demotion(r.leaf.size, to, false);
        }
        split.len()
    }

    /// The MMU notifier: the host changed the VMA's mappings over `inv`; zap the NPT there (in the
    /// gmem era only shared GFNs map the VMA).
    pub fn mmu_invalidate(&mut self, inv: Invalidation) {
        if Mutant::MmuNotifierIgnored.planted(self.mutant) {
            return;
        }
        let (policy, attrs) = (self.policy, &self.attrs);
        self.npt.zap_where(Gfn(inv.offset), inv.pages, |g| !policy.in_gmem(attrs, g));
        self.demotions.zapped_elsewhere(self.geometry, Gfn(inv.offset), inv.pages);
    }
}
