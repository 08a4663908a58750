//! The nested page table: GFN → host frame leaves of 4K, 2M or 1G.

use std::collections::BTreeMap;

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

/// The NPT of one VM, stored as its leaves keyed by first GFN (leaves are aligned to their size
/// and never overlap).
#[derive(Clone, Debug)]
pub struct Npt {
    geometry: Geometry,
    leaves: BTreeMap<Gfn, Leaf>,
}

impl Npt {
    /// An empty NPT.
    pub fn new(geometry: Geometry) -> Self {
        Npt { geometry, leaves: BTreeMap::new() }
    }

    /// The geometry.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// The leaf translating `gfn`, with its first GFN.
    pub fn leaf(&self, gfn: Gfn) -> Option<(Gfn, Leaf)> {
        let (&start, &leaf) = self.leaves.range(..=gfn).next_back()?;
        (gfn.raw() < start.raw() + self.geometry.pages(leaf.size)).then_some((start, leaf))
    }

    /// Translate `gfn`: its host frame and the size of the leaf that maps it.
    pub fn translate(&self, gfn: Gfn) -> Option<(Pfn, PageSize)> {
        let (start, leaf) = self.leaf(gfn)?;
        Some((Pfn(leaf.pfn.raw() + (gfn.raw() - start.raw())), leaf.size))
    }

    /// Whether any leaf maps a GFN in `start..start + pages`.
    pub fn any_mapped(&self, start: Gfn, pages: u64) -> bool {
        self.leaf(start).is_some() || self.leaves.range(start..Gfn(start.raw() + pages)).next().is_some()
    }

    /// Install a leaf of `size` at the `size`-aligned `gfn`, mapping frames from `pfn`. The caller
    /// guarantees the range is unmapped ([`Npt::any_mapped`]).
    pub fn map(&mut self, gfn: Gfn, size: PageSize, pfn: Pfn) {
        debug_assert!(gfn.is_aligned(self.geometry.pages(size)));
        debug_assert!(!self.any_mapped(gfn, self.geometry.pages(size)));
        self.leaves.insert(gfn, Leaf { size, pfn });
    }

    /// Remove every leaf that maps any GFN in `start..start + pages` (a huge leaf straddling the
    /// range goes whole, as `kvm_zap_gfn_range` does). Returns the removed leaves in GFN order.
    pub fn zap(&mut self, start: Gfn, pages: u64) -> Vec<Removed> {
        let mut removed = Vec::new();
        if let Some((s, leaf)) = self.leaf(start)
            && s < start
        {
            self.leaves.remove(&s);
            removed.push(Removed { gfn: s, leaf });
        }
        let end = Gfn(start.raw().saturating_add(pages));
        let keys: Vec<Gfn> = self.leaves.range(start..end).map(|(&k, _)| k).collect();
        for k in keys {
            if let Some(leaf) = self.leaves.remove(&k) {
                removed.push(Removed { gfn: k, leaf });
            }
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
            self.leaves.remove(&start);
            let n = self.geometry.pages(smaller);
            for i in 0..self.geometry.pages(leaf.size) / n {
                self.leaves.insert(
                    Gfn(start.raw() + i * n),
                    Leaf { size: smaller, pfn: Pfn(leaf.pfn.raw() + i * n) },
                );
            }
            split.push(Removed { gfn: start, leaf });
        }
        split
    }

    /// Pages mapped at each size: `[4K, 2M, 1G]`.
    pub fn coverage(&self) -> [u64; 3] {
        let mut c = [0; 3];
        for leaf in self.leaves.values() {
            c[usize::from(leaf.size.level() - 1)] += self.geometry.pages(leaf.size);
        }
        c
    }

    /// Every leaf, in GFN order.
    pub fn leaves(&self) -> impl Iterator<Item = (Gfn, Leaf)> + '_ {
        self.leaves.iter().map(|(&g, &l)| (g, l))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translate_zap_and_minimal_demotion() {
        let g = Geometry::TINY;
        let mut npt = Npt::new(g);
        npt.map(Gfn(16), PageSize::Size1G, Pfn(32));
        assert_eq!(npt.translate(Gfn(21)), Some((Pfn(37), PageSize::Size1G)));
        let split = npt.demote(Gfn(21), PageSize::Size4K);
        assert_eq!(split.len(), 2);
        assert_eq!(split[0].leaf.size, PageSize::Size1G);
        assert_eq!(split[1].leaf.size, PageSize::Size2M);
        assert_eq!(npt.translate(Gfn(21)), Some((Pfn(37), PageSize::Size4K)));
        assert_eq!(npt.translate(Gfn(25)), Some((Pfn(41), PageSize::Size2M)));
        assert_eq!(npt.coverage(), [4, 12, 0]);
        let zapped = npt.zap(Gfn(22), 4);
        assert_eq!(zapped.len(), 3);
        assert_eq!(npt.translate(Gfn(24)), None);
        assert_eq!(npt.translate(Gfn(21)), Some((Pfn(37), PageSize::Size4K)));
        assert!(npt.any_mapped(Gfn(20), 4));
        assert!(!npt.any_mapped(Gfn(22), 6));
    }
}
