//! Which NPT demotions were needless, decided by counterfactual.
//!
//! KVM resolves an RMP #NPF by taking a leaf larger than the faulting page's RMP entry out of the
//! NPT: in place (`npt-demote`: the other parts of the leaf stay mapped) or by zapping a range
//! (`kvm_zap_gfn_range` after PSMASH in `sev_handle_rmp_fault`, or the MMU notifier after a host
//! split). A zapped leaf unmaps every GFN under it. The zap is *required* for a 2M part of the
//! leaf (the whole leaf, if it is 2M or smaller) when an access there faulted — the triggering
//! fault, or a later guest access that completed but would have taken an #NPF through the old
//! leaf (`RmpModel::check_guest_access` with the old leaf's frame and size). A demotion is
//! *needless* while any 2M part it unmapped was required by no fault: e.g. a whole 1G leaf zapped
//! for a fault in one 2M part, the other parts never touched in a way the 1G leaf could not
//! serve. A record closes when a leaf at least as large maps its first GFN again
//! (`docs/semantics.md` K3).

use std::collections::{BTreeMap, BTreeSet};

use snpsim_defs::{Gfn, PageSize, Pfn};
use snpsim_hw::Geometry;

/// A zapped leaf some of whose 2M parts no fault has required yet.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Pending {
    pfn: Pfn,
    size: PageSize,
    /// Indices of the 2M parts (0 for a leaf of 2M or smaller) not yet required.
    parts: BTreeSet<u64>,
}

/// The zaps still needless so far, by the zapped leaf's first GFN.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct DemotionLedger {
    pending: BTreeMap<Gfn, Pending>,
}

fn part_pages(geometry: Geometry, size: PageSize) -> u64 {
    geometry.pages(size.min(PageSize::Size2M))
}

impl DemotionLedger {
    /// A leaf of `size` at `gfn` → `pfn` was zapped to resolve a fault at `fault`. Returns whether
    /// the zap is needless so far (some 2M part it unmapped is not the fault's); if so it is
    /// recorded until later accesses require the rest.
    pub fn zapped(&mut self, geometry: Geometry, gfn: Gfn, pfn: Pfn, size: PageSize, fault: Gfn) -> bool {
        let per_part = part_pages(geometry, size);
        let n = geometry.pages(size) / per_part;
        let mut parts: BTreeSet<u64> = (0..n).collect();
        if fault >= gfn && fault.raw() < gfn.raw() + geometry.pages(size) {
            parts.remove(&((fault.raw() - gfn.raw()) / per_part));
        }
        if parts.is_empty() {
            return false;
        }
        self.pending.insert(gfn, Pending { pfn, size, parts });
        true
    }

    /// The old leaf over `gfn` of a still-needless zap: (its first GFN, frame, size).
    pub fn old_leaf(&self, geometry: Geometry, gfn: Gfn) -> Option<(Gfn, Pfn, PageSize)> {
        let (&start, p) = self.pending.range(..=gfn).next_back()?;
        let part = (gfn.raw() - start.raw()) / part_pages(geometry, p.size);
        (gfn.raw() < start.raw() + geometry.pages(p.size) && p.parts.contains(&part))
            .then_some((start, p.pfn, p.size))
    }

    /// An access at `gfn` required the zap of the leaf at `start`: returns true when that was
    /// the leaf's last unrequired part (the demotion turns needed).
    pub fn required(&mut self, geometry: Geometry, start: Gfn, gfn: Gfn) -> bool {
        let Some(p) = self.pending.get_mut(&start) else { return false };
        p.parts.remove(&((gfn.raw() - start.raw()) / part_pages(geometry, p.size)));
        if p.parts.is_empty() {
            self.pending.remove(&start);
            return true;
        }
        false
    }

    /// A leaf of `size` was mapped at `gfn`: zaps of leaves no larger starting there close (the
    /// old mapping is back; what it unmapped stays needless).
    pub fn remapped(&mut self, gfn: Gfn, size: PageSize) {
        if self.pending.get(&gfn).is_some_and(|p| p.size <= size) {
            self.pending.remove(&gfn);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_2m_zap_holding_the_fault_is_needed_at_once_and_one_beside_it_waits() {
        let g = Geometry::X86;
        let mut l = DemotionLedger::default();
        assert!(!l.zapped(g, Gfn(0x200), Pfn(0x200), PageSize::Size2M, Gfn(0x205)));
        assert!(l.zapped(g, Gfn(0x400), Pfn(0x400), PageSize::Size2M, Gfn(0x205)));
        assert_eq!(l.old_leaf(g, Gfn(0x3ff)), None);
        assert_eq!(l.old_leaf(g, Gfn(0x5ff)), Some((Gfn(0x400), Pfn(0x400), PageSize::Size2M)));
        assert!(l.required(g, Gfn(0x400), Gfn(0x5ff)));
        assert_eq!(l.old_leaf(g, Gfn(0x5ff)), None);
    }

    #[test]
    fn a_1g_zap_is_needed_only_once_every_2m_part_was_required() {
        let g = Geometry::X86;
        let mut l = DemotionLedger::default();
        let per_2m = g.pages_per_2m();
        assert!(l.zapped(g, Gfn(0), Pfn(0), PageSize::Size1G, Gfn(3)));
        // The fault's own part is required already.
        assert_eq!(l.old_leaf(g, Gfn(1)), None);
        let parts = g.pages(PageSize::Size1G) / per_2m;
        for part in 1..parts {
            assert_eq!(l.required(g, Gfn(0), Gfn(part * per_2m)), part == parts - 1);
        }
    }

    #[test]
    fn a_remap_at_the_old_size_closes_the_record() {
        let g = Geometry::X86;
        let mut l = DemotionLedger::default();
        assert!(l.zapped(g, Gfn(0x400), Pfn(0x400), PageSize::Size2M, Gfn(0x205)));
        l.remapped(Gfn(0x400), PageSize::Size4K);
        assert!(l.old_leaf(g, Gfn(0x400)).is_some());
        l.remapped(Gfn(0x400), PageSize::Size2M);
        assert_eq!(l.old_leaf(g, Gfn(0x400)), None);
    }
}
