//! The host kernel's direct map of all RAM and its one-way splitting to 4K.

use snpsim_defs::{PageSize, Pfn};
use snpsim_hw::Geometry;

/// A set of leaf indices as a bitmap (the split leaves of a 1 TiB host fit in 64 KiB); its `Debug`
/// form is that of an ordered set.
#[derive(Clone, Default, PartialEq, Eq)]
struct Indices(Vec<u64>);

impl Indices {
    fn contains(&self, i: u64) -> bool {
        usize::try_from(i / 64).ok().and_then(|w| self.0.get(w)).is_some_and(|w| w >> (i % 64) & 1 == 1)
    }

    fn insert(&mut self, i: u64) {
        let w = usize::try_from(i / 64).expect("leaf index fits in usize");
        if self.0.len() <= w {
            self.0.resize(w + 1, 0);
        }
        self.0[w] |= 1 << (i % 64);
    }

    fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().enumerate().flat_map(|(w, &bits)| {
            (0..64u64).filter(move |b| bits >> b & 1 == 1).map(move |b| w as u64 * 64 + b)
        })
    }
}

impl core::fmt::Debug for Indices {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

/// The kernel direct map: every frame mapped at the largest size its surroundings allow (1G where
/// a whole 1G of RAM is there, else 2M, else 4K), split on demand and never re-merged.
///
/// Linux `adjust_direct_map` (`arch/x86/virt/svm/sev.c`) splits the ≥2M mapping covering a page to
/// 4K before a 4K RMPUPDATE makes it private, because a kernel write through a large mapping over a
/// private 4K page faults; a 2M RMPUPDATE needs no split (the hardware checks 1G mappings as 2M).
#[derive(Clone, Debug)]
pub struct DirectMap {
    geometry: Geometry,
    pages: u64,
    split_1g: Indices,
    split_2m: Indices,
}

impl DirectMap {
    /// Bytes of memory the split bitmaps take.
    pub fn state_bytes(&self) -> usize {
        (self.split_1g.0.len() + self.split_2m.0.len()) * size_of::<u64>()
    }

    /// The direct map of `pages` frames of RAM.
    pub fn new(geometry: Geometry, pages: u64) -> Self {
        DirectMap { geometry, pages, split_1g: Indices::default(), split_2m: Indices::default() }
    }

    /// The size of the direct-map leaf covering `pfn`.
    pub fn level(&self, pfn: Pfn) -> PageSize {
        let (p2m, p1g) = (self.geometry.pages(PageSize::Size2M), self.geometry.pages(PageSize::Size1G));
        let (r2m, r1g) = (pfn.raw() / p2m, pfn.raw() / p1g);
        if self.split_2m.contains(r2m) || (r2m + 1) * p2m > self.pages {
            PageSize::Size4K
        } else if self.split_1g.contains(r1g) || (r1g + 1) * p1g > self.pages {
            PageSize::Size2M
        } else {
            PageSize::Size1G
        }
    }

    /// Split the mappings covering `pfn` down to 4K; returns how many leaves were split (a 1G leaf
    /// to 2M and a 2M leaf to 4K count one each).
    pub fn split_to_4k(&mut self, pfn: Pfn) -> u64 {
        let (p2m, p1g) = (self.geometry.pages(PageSize::Size2M), self.geometry.pages(PageSize::Size1G));
        let mut splits = 0;
        match self.level(pfn) {
            PageSize::Size4K => {}
            PageSize::Size2M => {
                self.split_2m.insert(pfn.raw() / p2m);
                splits += 1;
            }
            PageSize::Size1G => {
                self.split_1g.insert(pfn.raw() / p1g);
                self.split_2m.insert(pfn.raw() / p2m);
                splits += 2;
            }
        }
        splits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_map_splits_once_and_never_merges() {
        // Tiny geometry: 4 frames per 2M leaf, 16 per 1G. 42 frames: two 1G leaves (0..32), two
        // 2M leaves (32..40), and 40, 41 at 4K.
        let mut d = DirectMap::new(Geometry::TINY, 42);
        assert_eq!(d.level(Pfn::new(3)), PageSize::Size1G);
        assert_eq!(d.level(Pfn::new(33)), PageSize::Size2M);
        assert_eq!(d.level(Pfn::new(38)), PageSize::Size2M);
        assert_eq!(d.level(Pfn::new(41)), PageSize::Size4K);
        // Two leaf splits: 1G → 2M, then the 2M leaf over 4..8 → 4K.
        assert_eq!(d.split_to_4k(Pfn::new(5)), 2);
        assert_eq!(d.level(Pfn::new(5)), PageSize::Size4K);
        assert_eq!(d.level(Pfn::new(1)), PageSize::Size2M);
        // 6 is in the part split already; 1 and 33 sit in 2M leaves: one split each.
        assert_eq!(d.split_to_4k(Pfn::new(6)), 0);
        assert_eq!(d.split_to_4k(Pfn::new(1)), 1);
        assert_eq!(d.split_to_4k(Pfn::new(33)), 1);
    }
}
