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

/// The zaps still needless so far, by the zapped leaf's first GFN and size (a smaller leaf mapped
/// and zapped again at the same GFN is a record of its own).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct DemotionLedger {
    pending: BTreeMap<(Gfn, PageSize), Pending>,
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
        // A leaf of the same size mapped at `gfn` again closed any earlier record there.
        let old = self.pending.insert((gfn, size), Pending { pfn, size, parts });
        debug_assert!(old.is_none(), "a zapped leaf's record survived its remap");
        true
    }

    /// The old leaves over `gfn` of still-needless zaps whose 2M part holding `gfn` no fault has
    /// required yet: (first GFN, frame, size) of each.
    pub fn old_leaves(&self, geometry: Geometry, gfn: Gfn) -> Vec<(Gfn, Pfn, PageSize)> {
        // No leaf is larger than 1G, so no record starting further below can hold `gfn`.
        let lowest = Gfn::new(gfn.raw().saturating_sub(geometry.pages(PageSize::Size1G) - 1));
        self.pending
            .range((lowest, PageSize::Size4K)..=(gfn, PageSize::Size1G))
            .filter(|((start, _), p)| {
                gfn.raw() < start.raw() + geometry.pages(p.size)
                    && p.parts.contains(&((gfn.raw() - start.raw()) / part_pages(geometry, p.size)))
            })
            .map(|(&(start, _), p)| (start, p.pfn, p.size))
            .collect()
    }

    /// An access at `gfn` required the zap of the leaf of `size` at `start`: returns true when that
    /// was the leaf's last unrequired part (the demotion turns needed).
    pub fn required(&mut self, geometry: Geometry, start: Gfn, size: PageSize, gfn: Gfn) -> bool {
        let Some(p) = self.pending.get_mut(&(start, size)) else { return false };
        p.parts.remove(&((gfn.raw() - start.raw()) / part_pages(geometry, p.size)));
        if p.parts.is_empty() {
            self.pending.remove(&(start, size));
            return true;
        }
        false
    }

    /// A leaf of `size` was mapped at `gfn`: zaps of leaves no larger starting there close (the
    /// old mapping is back; what it unmapped stays needless).
    pub fn remapped(&mut self, gfn: Gfn, size: PageSize) {
        let closed: Vec<_> =
            self.pending.range((gfn, PageSize::Size4K)..=(gfn, size)).map(|(&k, _)| k).collect();
        for k in closed {
            self.pending.remove(&k);
        }
    }

    /// The NPT over `pages` GFNs from `start` was zapped for another reason (a memory-attribute
    /// change, the MMU notifier, a hole punched in guest_memfd, a rebound GFN): every record whose
    /// old leaf overlaps it closes, needless for good, since that zap would have removed the old
    /// leaf too and no later access could then have gone through it.
    pub fn zapped_elsewhere(&mut self, geometry: Geometry, start: Gfn, pages: u64) {
        let end = start.raw().saturating_add(pages);
        if end == start.raw() {
            return;
        }
        // No leaf is larger than 1G, so no record starting further below can reach `start`.
        let lowest = Gfn::new(start.raw().saturating_sub(geometry.pages(PageSize::Size1G) - 1));
        let closed: Vec<_> = self
            .pending
            .range((lowest, PageSize::Size4K)..=(Gfn::new(end - 1), PageSize::Size1G))
            .filter(|((gfn, size), _)| gfn.raw() + geometry.pages(*size) > start.raw())
            .map(|(&k, _)| k)
            .collect();
        for k in closed {
            self.pending.remove(&k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(l: &DemotionLedger, g: Geometry, gfn: u64) -> Option<(Gfn, Pfn, PageSize)> {
        let v = l.old_leaves(g, Gfn::new(gfn));
        assert!(v.len() <= 1, "{v:?}");
        v.first().copied()
    }

    #[test]
    fn a_2m_zap_holding_the_fault_is_needed_at_once_and_one_beside_it_waits() {
        let g = Geometry::X86;
        let mut l = DemotionLedger::default();
        assert!(!l.zapped(g, Gfn::new(0x200), Pfn::new(0x200), PageSize::Size2M, Gfn::new(0x205)));
        assert!(l.zapped(g, Gfn::new(0x400), Pfn::new(0x400), PageSize::Size2M, Gfn::new(0x205)));
        assert_eq!(one(&l, g, 0x3ff), None);
        assert_eq!(one(&l, g, 0x5ff), Some((Gfn::new(0x400), Pfn::new(0x400), PageSize::Size2M)));
        assert!(l.required(g, Gfn::new(0x400), PageSize::Size2M, Gfn::new(0x5ff)));
        assert_eq!(one(&l, g, 0x5ff), None);
    }

    #[test]
    fn a_1g_zap_is_needed_only_once_every_2m_part_was_required() {
        let g = Geometry::X86;
        let mut l = DemotionLedger::default();
        let per_2m = g.pages_per_2m();
        assert!(l.zapped(g, Gfn::new(0), Pfn::new(0), PageSize::Size1G, Gfn::new(3)));
        // The fault's own part is required already.
        assert_eq!(one(&l, g, 1), None);
        let parts = g.pages(PageSize::Size1G) / per_2m;
        for part in 1..parts {
            assert_eq!(
                l.required(g, Gfn::new(0), PageSize::Size1G, Gfn::new(part * per_2m)),
                part == parts - 1
            );
        }
    }

    #[test]
    fn a_remap_at_the_old_size_closes_the_record() {
        let g = Geometry::X86;
        let mut l = DemotionLedger::default();
        assert!(l.zapped(g, Gfn::new(0x400), Pfn::new(0x400), PageSize::Size2M, Gfn::new(0x205)));
        l.remapped(Gfn::new(0x400), PageSize::Size4K);
        assert!(one(&l, g, 0x400).is_some());
        l.remapped(Gfn::new(0x400), PageSize::Size2M);
        assert_eq!(one(&l, g, 0x400), None);
    }

    #[test]
    fn a_record_nested_in_a_larger_one_hides_none_of_it() {
        let g = Geometry::X86;
        let per_2m = g.pages_per_2m();
        let mut l = DemotionLedger::default();
        // A 1G leaf zapped for a fault in part 0; a 2M leaf later mapped at part 1 and zapped for
        // a fault just past it.
        assert!(l.zapped(g, Gfn::new(0), Pfn::new(0), PageSize::Size1G, Gfn::new(1)));
        assert!(l.zapped(g, Gfn::new(per_2m), Pfn::new(0x9_0000), PageSize::Size2M, Gfn::new(2 * per_2m)));
        // Part 1 is under both records; part 2 under the 1G one only, though the 2M record starts
        // nearer.
        assert_eq!(l.old_leaves(g, Gfn::new(per_2m + 5)).len(), 2);
        assert_eq!(one(&l, g, 2 * per_2m), Some((Gfn::new(0), Pfn::new(0), PageSize::Size1G)));
    }

    #[test]
    fn a_zap_for_another_reason_closes_the_records_it_overlaps() {
        let g = Geometry::X86;
        let mut l = DemotionLedger::default();
        assert!(l.zapped(g, Gfn::new(0x400), Pfn::new(0x400), PageSize::Size2M, Gfn::new(0x205)));
        assert!(l.zapped(g, Gfn::new(0x800), Pfn::new(0x800), PageSize::Size2M, Gfn::new(0x605)));
        // A memory-attribute change over the last page of the first leaf only.
        l.zapped_elsewhere(g, Gfn::new(0x5ff), 1);
        assert_eq!(one(&l, g, 0x400), None);
        assert!(one(&l, g, 0x800).is_some());
    }
}
