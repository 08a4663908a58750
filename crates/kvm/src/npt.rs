//! The nested page table: GFN → host frame leaves of 4K, 2M or 1G.
//!
//! Leaves are stored per 2M region of GFNs ([`BlockMap`]: a 2M leaf or an array of 4K leaves) with
//! the 1G leaves on the side, so a translation is an index and a 64 GiB guest mapped at 4K costs
//! 4 KiB per 2M region rather than a tree node per page.

use std::collections::BTreeSet;

use snpsim_host::{BlockMap, DirtyLog};

use snpsim_defs::{Gfn, PageSize, Pfn};
use snpsim_hw::Geometry;

/// One NPT leaf: it maps `size` worth of GFNs from its start to the host frames from `pfn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Leaf {
    /// The leaf's size (its paging level).
    pub size: PageSize,
    /// The host frame of the leaf's first page.
    pub pfn: Pfn,
}

/// A leaf removed or split by [`Npt::zap`] or [`Npt::demote`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Removed {
    /// The leaf's first GFN.
    pub gfn: Gfn,
    /// The leaf.
    pub leaf: Leaf,
}

/// Work done on the NPT, for the cost model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NptStats {
    /// Leaves installed by [`Npt::map`].
    pub mapped: u64,
    /// Leaves removed by [`Npt::zap`] and [`Npt::zap_where`].
    pub zapped: u64,
    /// Leaves split in place by [`Npt::demote`].
    pub split: u64,
    /// TLB flushes: one per zap or demotion that changed anything.
    pub flushes: u64,
}

/// The NPT of one VM: leaves keyed by first GFN, aligned to their size and never overlapping. Its
/// `Debug` form shows the geometry and the leaves only: the coverage is derived from them and the
/// counters record history, not state.
#[derive(Clone)]
pub struct Npt {
    geometry: Geometry,
    leaves: BlockMap,
    /// Pages mapped at 4K, 2M and 1G, kept as leaves come and go.
    coverage: [u64; 3],
    /// Work counters.
    pub stats: NptStats,
    /// GFNs of the leaves added or removed (for the incremental invariant check).
    pub dirty: DirtyLog,
    /// First GFNs of the leaves ≥ 2M that KVM's RMP-level cap does not govern: leaves no larger
    /// than the RMP entries under them when mapped, whose entries a later change without a zap
    /// made smaller (a legacy page-state change does not zap the NPT), and leaves mapped by a path
    /// that skips the cap (RFC v4's page-state-change handler). Kept until the leaf goes.
    uncapped: BTreeSet<u64>,
}

impl core::fmt::Debug for Npt {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        struct Leaves<'a>(&'a Npt);
        impl core::fmt::Debug for Leaves<'_> {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.debug_map().entries(self.0.leaves()).finish()
            }
        }
        let mut d = f.debug_struct("Npt");
        d.field("geometry", &self.geometry).field("leaves", &Leaves(self));
        if !self.uncapped.is_empty() {
            d.field("uncapped", &self.uncapped);
        }
        d.finish_non_exhaustive()
    }
}

fn level_index(size: PageSize) -> usize {
    usize::from(size.level() - 1)
}

impl Npt {
    /// An empty NPT.
    pub fn new(geometry: Geometry) -> Self {
        Npt {
            geometry,
            leaves: BlockMap::new(geometry),
            coverage: [0; 3],
            stats: NptStats::default(),
            dirty: DirtyLog::default(),
            uncapped: BTreeSet::new(),
        }
    }

    fn insert_leaf(&mut self, gfn: Gfn, leaf: Leaf) {
        self.coverage[level_index(leaf.size)] += self.geometry.pages(leaf.size);
        self.leaves.insert(gfn.raw(), leaf.size, leaf.pfn);
        self.dirty.mark(gfn.raw(), self.geometry.pages(leaf.size));
        self.uncapped.remove(&gfn.raw());
    }

    fn remove_leaf(&mut self, gfn: Gfn) -> Option<Leaf> {
        let (size, pfn) = self.leaves.remove(gfn.raw())?;
        let leaf = Leaf { size, pfn };
        self.dirty.mark(gfn.raw(), self.geometry.pages(size));
        self.uncapped.remove(&gfn.raw());
        self.coverage[level_index(leaf.size)] -= self.geometry.pages(leaf.size);
        Some(leaf)
    }

    /// Bytes of memory the leaves take.
    pub fn state_bytes(&self) -> usize {
        self.leaves.state_bytes()
    }

    /// The geometry.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// Record that the leaf holding `gfn` is not governed by the RMP-level cap: the RMP entries
    /// under it became smaller without a zap, or it was mapped by a path that skips the cap (see
    /// [`Npt::is_uncapped`]); nothing if that leaf is 4K or absent.
    pub fn mark_uncapped(&mut self, gfn: Gfn) {
        if let Some((start, leaf)) = self.leaf(gfn)
            && leaf.size > PageSize::Size4K
        {
            self.uncapped.insert(start.raw());
        }
    }

    /// Whether the leaf starting at `start` is exempt from the RMP-level cap: it outgrew its RMP
    /// entries after it was mapped (a legacy page-state change shrank them without zapping it), or
    /// a path that skips the cap mapped it; rather than KVM's fault path mapping it too large.
    pub fn is_uncapped(&self, start: Gfn) -> bool {
        self.uncapped.contains(&start.raw())
    }

    /// The leaf translating `gfn`, with its first GFN.
    pub fn leaf(&self, gfn: Gfn) -> Option<(Gfn, Leaf)> {
        self.leaves.holding(gfn.raw()).map(|(s, size, pfn)| (Gfn::new(s), Leaf { size, pfn }))
    }

    /// Translate `gfn`: its host frame and the size of the leaf that maps it.
    pub fn translate(&self, gfn: Gfn) -> Option<(Pfn, PageSize)> {
        let (start, leaf) = self.leaf(gfn)?;
        Some((leaf.pfn + (gfn.raw() - start.raw()), leaf.size))
    }

    /// Whether any leaf maps a GFN in `start..start + pages`.
    pub fn any_mapped(&self, start: Gfn, pages: u64) -> bool {
        // A leaf starting inside a range of one page starts at `start`, so holds it: for one
        // page (each 4K map and pre-fault asks) the look for leaves inside the range adds nothing.
        self.leaf(start).is_some()
            || (pages > 1 && self.leaves.first_in(start.raw(), start.raw() + pages).is_some())
    }

    /// Install a leaf of `size` at the `size`-aligned `gfn`, mapping frames from `pfn`. The caller
    /// guarantees the range is unmapped ([`Npt::any_mapped`]).
    pub fn map(&mut self, gfn: Gfn, size: PageSize, pfn: Pfn) {
        debug_assert!(gfn.is_aligned(self.geometry.pages(size)));
        debug_assert!(!self.any_mapped(gfn, self.geometry.pages(size)));
        self.stats.mapped += 1;
        self.insert_leaf(gfn, Leaf { size, pfn });
    }

    /// Remove every leaf that maps any GFN in `start..start + pages` (a huge leaf straddling the
    /// range goes whole, as `kvm_zap_gfn_range` does). Returns the removed leaves in GFN order.
    pub fn zap(&mut self, start: Gfn, pages: u64) -> Vec<Removed> {
        self.zap_where(start, pages, |_| true)
    }

    /// [`Npt::zap`] limited to the leaves whose first GFN satisfies `which` (the others stay).
    pub fn zap_where(&mut self, start: Gfn, pages: u64, which: impl Fn(Gfn) -> bool) -> Vec<Removed> {
        let mut keys = Vec::new();
        if let Some((s, _)) = self.leaf(start)
            && s < start
        {
            keys.push(s);
        }
        let end = Gfn::new(start.raw().saturating_add(pages));
        keys.extend(self.leaves.keys_in(start.raw(), end.raw()).into_iter().map(Gfn::new));
        let mut removed = Vec::new();
        for k in keys {
            if which(k)
                && let Some(leaf) = self.remove_leaf(k)
            {
                removed.push(Removed { gfn: k, leaf });
            }
        }
        if !removed.is_empty() {
            self.stats.zapped += removed.len() as u64;
            self.stats.flushes += 1;
        }
        removed
    }

    /// Demote in place the leaf holding `gfn` until the leaf holding it is at most `target`: each
    /// split replaces one leaf by leaves of the next smaller size over the same frames, so the rest
    /// of the range stays mapped at the larger size it can keep (minimal demotion). Returns the
    /// leaves split, largest first.
    pub fn demote(&mut self, gfn: Gfn, target: PageSize) -> Vec<Removed> {
        let mut split = Vec::new();
        while let Some((start, leaf)) = self.leaf(gfn) {
            let Some(smaller) = leaf.size.smaller().filter(|_| leaf.size > target) else { break };
            // The parts of an uncapped leaf were not mapped under the cap either.
            let uncapped = self.uncapped.contains(&start.raw());
            self.remove_leaf(start);
            let n = self.geometry.pages(smaller);
            for i in 0..self.geometry.pages(leaf.size) / n {
                let part = start + (i * n);
                self.insert_leaf(part, Leaf { size: smaller, pfn: leaf.pfn + (i * n) });
                if uncapped && smaller > PageSize::Size4K {
                    self.uncapped.insert(part.raw());
                }
            }
            split.push(Removed { gfn: start, leaf });
        }
        if !split.is_empty() {
            self.stats.split += split.len() as u64;
            self.stats.flushes += 1;
        }
        split
    }

    /// The leaves that map any GFN in `start..end`, in GFN order (a huge leaf straddling `start`
    /// first).
    pub fn leaves_in(&self, start: Gfn, end: Gfn) -> Vec<(Gfn, Leaf)> {
        let mut out: Vec<(Gfn, Leaf)> = self.leaf(start).filter(|&(s, _)| s < start).into_iter().collect();
        for k in self.leaves.keys_in(start.raw(), end.raw()) {
            if let Some((size, pfn)) = self.leaves.get(k) {
                out.push((Gfn::new(k), Leaf { size, pfn }));
            }
        }
        out
    }

    /// Pages mapped at each size: `[4K, 2M, 1G]` (kept incrementally: O(1)).
    pub fn coverage(&self) -> [u64; 3] {
        self.coverage
    }

    /// [`Npt::coverage`] recomputed from the leaves (for tests of the incremental count).
    pub fn recount_coverage(&self) -> [u64; 3] {
        let mut c = [0; 3];
        for (_, leaf) in self.leaves() {
            c[level_index(leaf.size)] += self.geometry.pages(leaf.size);
        }
        c
    }

    /// Every leaf, in GFN order.
    pub fn leaves(&self) -> impl Iterator<Item = (Gfn, Leaf)> + '_ {
        self.leaves.iter().map(|(s, size, pfn)| (Gfn::new(s), Leaf { size, pfn }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use std::collections::BTreeMap;

    /// The NPT as a plain map from first GFN to leaf, the way it used to be stored.
    #[derive(Default)]
    struct Reference(BTreeMap<u64, Leaf>);

    impl Reference {
        fn holding(&self, g: Geometry, gfn: u64) -> Option<(u64, Leaf)> {
            let (&s, &l) = self.0.range(..=gfn).next_back()?;
            (gfn < s + g.pages(l.size)).then_some((s, l))
        }
    }

    proptest! {
        #[test]
        fn region_store_matches_a_plain_map(ops in proptest::collection::vec((0u8..4, 0u64..160, 0u8..3), 1..60)) {
            let g = Geometry::TINY;
            let mut npt = Npt::new(g);
            let mut r = Reference::default();
            let sizes = [PageSize::Size4K, PageSize::Size2M, PageSize::Size1G];
            for (op, at, sz) in ops {
                let size = sizes[usize::from(sz)];
                match op {
                    0 | 1 => {
                        let gfn = at / g.pages(size) * g.pages(size);
                        let n = g.pages(size);
                        if npt.any_mapped(Gfn::new(gfn), n) {
                            prop_assert!((gfn..gfn + n).any(|p| r.holding(g, p).is_some()));
                        } else {
                            prop_assert!((gfn..gfn + n).all(|p| r.holding(g, p).is_none()));
                            npt.map(Gfn::new(gfn), size, Pfn::new(1000 + gfn));
                            r.0.insert(gfn, Leaf { size, pfn: Pfn::new(1000 + gfn) });
                        }
                    }
                    2 => {
                        let n = u64::from(sz) * 5 + 1;
                        let removed: Vec<u64> = npt.zap(Gfn::new(at), n).iter().map(|x| x.gfn.raw()).collect();
                        let mut expected: Vec<u64> = r.holding(g, at).map(|(s, _)| s).filter(|&s| s < at).into_iter().collect();
                        expected.extend(r.0.range(at..at + n).map(|(&k, _)| k));
                        for k in &expected { r.0.remove(k); }
                        prop_assert_eq!(removed, expected);
                    }
                    _ => {
                        let split = npt.demote(Gfn::new(at), size);
                        while let Some((s, l)) = r.holding(g, at) {
                            let Some(smaller) = l.size.smaller().filter(|_| l.size > size) else { break };
                            r.0.remove(&s);
                            let n = g.pages(smaller);
                            for i in 0..g.pages(l.size) / n {
                                r.0.insert(s + i * n, Leaf { size: smaller, pfn: l.pfn + (i * n) });
                            }
                        }
                        let _ = split;
                    }
                }
                for gfn in 0..176u64 {
                    prop_assert_eq!(npt.leaf(Gfn::new(gfn)).map(|(s, l)| (s.raw(), l)), r.holding(g, gfn));
                }
                let leaves: Vec<(u64, Leaf)> = npt.leaves().map(|(s, l)| (s.raw(), l)).collect();
                let expected: Vec<(u64, Leaf)> = r.0.iter().map(|(&s, &l)| (s, l)).collect();
                prop_assert_eq!(leaves, expected);
                prop_assert_eq!(npt.coverage(), npt.recount_coverage());
            }
        }
    }

    #[test]
    fn translate_zap_and_minimal_demotion() {
        let g = Geometry::TINY;
        let mut npt = Npt::new(g);
        npt.map(Gfn::new(16), PageSize::Size1G, Pfn::new(32));
        assert_eq!(npt.translate(Gfn::new(21)), Some((Pfn::new(37), PageSize::Size1G)));
        let split = npt.demote(Gfn::new(21), PageSize::Size4K);
        assert_eq!(split.len(), 2);
        assert_eq!(split[0].leaf.size, PageSize::Size1G);
        assert_eq!(split[1].leaf.size, PageSize::Size2M);
        assert_eq!(npt.translate(Gfn::new(21)), Some((Pfn::new(37), PageSize::Size4K)));
        assert_eq!(npt.translate(Gfn::new(25)), Some((Pfn::new(41), PageSize::Size2M)));
        // Tiny pages: the 1G leaf's 16 pages are now the 2M part 20..24 at 4K (4) and the other
        // three 2M parts (12).
        assert_eq!(npt.coverage(), [4, 12, 0]);
        assert_eq!(npt.recount_coverage(), [4, 12, 0]);
        // 22..26: the 4K leaves 22 and 23 and the 2M leaf 24..28.
        let zapped = npt.zap(Gfn::new(22), 4);
        assert_eq!(zapped.len(), 3);
        assert_eq!(npt.translate(Gfn::new(24)), None);
        assert_eq!(npt.translate(Gfn::new(21)), Some((Pfn::new(37), PageSize::Size4K)));
        assert!(npt.any_mapped(Gfn::new(20), 4));
        assert!(!npt.any_mapped(Gfn::new(22), 6));
        assert_eq!(npt.coverage(), npt.recount_coverage());
        // One map; two splits (1G → 2M, 2M → 4K) in one demotion and three leaves in one zap:
        // one flush each.
        assert_eq!(npt.stats, NptStats { mapped: 1, zapped: 3, split: 2, flushes: 2 });
        // Left: 16..20 and 28..32 at 2M, 20 and 21 at 4K; all but 20 go.
        let kept = npt.zap_where(Gfn::new(0), 64, |g| g.raw() != 20);
        assert_eq!(kept.len(), 3);
        assert_eq!(npt.translate(Gfn::new(20)), Some((Pfn::new(36), PageSize::Size4K)));
        assert_eq!(npt.coverage(), npt.recount_coverage());
    }
}
