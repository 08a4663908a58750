//! Size-aligned blocks of 4K, 2M or 1G pages keyed by their first page — an NPT's leaves, a
//! guest_memfd file's folios — stored per 2M region: a 2M block or an array of 4K blocks per
//! region, 1G blocks on the side. Finding the block that holds a page is an index, not a tree
//! search, and a range mapped at 4K costs 8 bytes per page rather than a tree node.

use std::collections::BTreeMap;

use snpsim_defs::{PageSize, Pfn};
use snpsim_hw::Geometry;

/// One 2M region.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Slot {
    /// No 2M or 4K block (a 1G block may cover it).
    Empty,
    /// A 2M block whose first frame is this one.
    Huge(Pfn),
    /// 4K blocks: 1 + the frame of each page, 0 where there is none; and how many there are.
    Small(u32, Box<[u64]>),
}

/// Blocks keyed by first page, each aligned to its size, never overlapping: `(first page, size,
/// first frame)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockMap {
    g2: u64,
    g1: u64,
    regions: Vec<Slot>,
    huge: BTreeMap<u64, Pfn>,
}

impl BlockMap {
    /// No blocks.
    pub fn new(geometry: Geometry) -> Self {
        BlockMap {
            g2: geometry.pages(PageSize::Size2M),
            g1: geometry.pages(PageSize::Size1G),
            regions: Vec::new(),
            huge: BTreeMap::new(),
        }
    }

    fn slot(&self, r: u64) -> &Slot {
        usize::try_from(r).ok().and_then(|r| self.regions.get(r)).unwrap_or(&Slot::Empty)
    }

    fn slot_mut(&mut self, r: u64) -> &mut Slot {
        let r = usize::try_from(r).unwrap_or(usize::MAX);
        if self.regions.len() <= r {
            self.regions.resize(r + 1, Slot::Empty);
        }
        &mut self.regions[r]
    }

    /// Bytes of memory the map takes (B-tree entries estimated).
    pub fn state_bytes(&self) -> usize {
        let small: usize = self
            .regions
            .iter()
            .map(|s| match s {
                Slot::Small(_, pages) => size_of_val(&**pages),
                _ => 0,
            })
            .sum();
        self.regions.len() * size_of::<Slot>() + small + self.huge.len() * snpsim_hw::BTREE_ENTRY_BYTES
    }

    /// The block whose first page is `start`.
    pub fn get(&self, start: u64) -> Option<(PageSize, Pfn)> {
        let (r, i) = (start / self.g2, start % self.g2);
        match self.slot(r) {
            Slot::Huge(pfn) if i == 0 => Some((PageSize::Size2M, *pfn)),
            Slot::Small(_, pages) if pages[i as usize] != 0 => {
                Some((PageSize::Size4K, Pfn(pages[i as usize] - 1)))
            }
            Slot::Empty if !self.huge.is_empty() && start.is_multiple_of(self.g1) => {
                self.huge.get(&start).map(|&pfn| (PageSize::Size1G, pfn))
            }
            _ => None,
        }
    }

    /// The block holding `page`: its first page, size and first frame.
    pub fn holding(&self, page: u64) -> Option<(u64, PageSize, Pfn)> {
        let (r, i) = (page / self.g2, page % self.g2);
        match self.slot(r) {
            Slot::Huge(pfn) => Some((r * self.g2, PageSize::Size2M, *pfn)),
            Slot::Small(_, pages) => {
                (pages[i as usize] != 0).then(|| (page, PageSize::Size4K, Pfn(pages[i as usize] - 1)))
            }
            Slot::Empty if !self.huge.is_empty() => {
                let start = page / self.g1 * self.g1;
                self.huge.get(&start).map(|&pfn| (start, PageSize::Size1G, pfn))
            }
            Slot::Empty => None,
        }
    }

    /// Add a block of `size` at the `size`-aligned `start` (the caller keeps blocks disjoint).
    pub fn insert(&mut self, start: u64, size: PageSize, pfn: Pfn) {
        let (r, i) = (start / self.g2, start % self.g2);
        match size {
            PageSize::Size1G => {
                self.huge.insert(start, pfn);
            }
            PageSize::Size2M => *self.slot_mut(r) = Slot::Huge(pfn),
            PageSize::Size4K => {
                let g2 = self.g2 as usize;
                let slot = self.slot_mut(r);
                if !matches!(slot, Slot::Small(..)) {
                    *slot = Slot::Small(0, vec![0; g2].into_boxed_slice());
                }
                if let Slot::Small(n, pages) = slot {
                    if pages[i as usize] == 0 {
                        *n += 1;
                    }
                    pages[i as usize] = pfn.raw() + 1;
                }
            }
        }
    }

    /// Remove the block whose first page is `start`.
    pub fn remove(&mut self, start: u64) -> Option<(PageSize, Pfn)> {
        let block = self.get(start)?;
        let (r, i) = (start / self.g2, start % self.g2);
        match block.0 {
            PageSize::Size1G => {
                self.huge.remove(&start);
            }
            PageSize::Size2M => *self.slot_mut(r) = Slot::Empty,
            PageSize::Size4K => {
                let slot = self.slot_mut(r);
                if let Slot::Small(n, pages) = slot {
                    pages[i as usize] = 0;
                    *n -= 1;
                    if *n == 0 {
                        *slot = Slot::Empty;
                    }
                }
            }
        }
        Some(block)
    }

    /// The first pages of the blocks that start in `start..end`, in order.
    pub fn keys_in(&self, start: u64, end: u64) -> Vec<u64> {
        let mut keys = Vec::new();
        if start >= end {
            return keys;
        }
        let per_1g = self.g1 / self.g2;
        let mut r = start / self.g2;
        let last = (end - 1) / self.g2;
        while r <= last {
            let base = r * self.g2;
            if r.is_multiple_of(per_1g)
                && !self.huge.is_empty()
                && base >= start
                && self.huge.contains_key(&base)
            {
                keys.push(base);
                r += per_1g;
                continue;
            }
            if usize::try_from(r).map_or(true, |r| r >= self.regions.len()) {
                // Past the last stored region only 1G blocks can follow.
                match self.huge.range(base.max(start)..end).next() {
                    Some((&k, _)) => {
                        r = k / self.g2;
                        continue;
                    }
                    None => break,
                }
            }
            match self.slot(r) {
                Slot::Huge(_) if base >= start => keys.push(base),
                Slot::Small(_, pages) => {
                    let from = start.max(base) - base;
                    let to = end.min(base + self.g2) - base;
                    keys.extend((from..to).filter(|&i| pages[i as usize] != 0).map(|i| base + i));
                }
                _ => {}
            }
            r += 1;
        }
        keys
    }

    /// The first block starting in `start..end` (without collecting the others).
    pub fn first_in(&self, start: u64, end: u64) -> Option<u64> {
        if start >= end {
            return None;
        }
        let per_1g = self.g1 / self.g2;
        let huge_first = || self.huge.range(start..end).next().map(|(&k, _)| k);
        let mut r = start / self.g2;
        let last = (end - 1) / self.g2;
        while r <= last {
            if usize::try_from(r).map_or(true, |r| r >= self.regions.len()) {
                return huge_first();
            }
            let base = r * self.g2;
            if r.is_multiple_of(per_1g) && base >= start && self.huge.contains_key(&base) {
                return Some(base);
            }
            match self.slot(r) {
                Slot::Huge(_) if base >= start => return Some(base),
                Slot::Small(_, pages) => {
                    let from = start.max(base) - base;
                    let to = end.min(base + self.g2) - base;
                    if let Some(i) = (from..to).find(|&i| pages[i as usize] != 0) {
                        return Some(base + i);
                    }
                }
                _ => {}
            }
            r += 1;
        }
        None
    }

    /// Every block in order: `(first page, size, first frame)`.
    pub fn iter(&self) -> impl Iterator<Item = (u64, PageSize, Pfn)> + '_ {
        let end = (self.regions.len() as u64 * self.g2)
            .max(self.huge.keys().next_back().map_or(0, |k| k + self.g1));
        self.keys_in(0, end).into_iter().filter_map(|k| self.get(k).map(|(s, p)| (k, s, p)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn matches_a_plain_map(ops in proptest::collection::vec((any::<bool>(), 0u64..160, 0u8..3), 1..60)) {
            let g = Geometry::TINY;
            let mut b = BlockMap::new(g);
            let mut plain: BTreeMap<u64, (PageSize, Pfn)> = BTreeMap::new();
            let sizes = [PageSize::Size4K, PageSize::Size2M, PageSize::Size1G];
            for (add, at, sz) in ops {
                let size = sizes[usize::from(sz)];
                let n = g.pages(size);
                let start = at / n * n;
                let holding = |p: u64, m: &BTreeMap<u64, (PageSize, Pfn)>| {
                    m.range(..=p).next_back().filter(|(s, (z, _))| p < *s + g.pages(*z)).map(|(s, (z, f))| (*s, *z, *f))
                };
                if add {
                    if (start..start + n).all(|p| holding(p, &plain).is_none()) {
                        b.insert(start, size, Pfn(500 + start));
                        plain.insert(start, (size, Pfn(500 + start)));
                    }
                } else {
                    prop_assert_eq!(b.remove(start), plain.remove(&start));
                }
                for p in 0..176u64 {
                    prop_assert_eq!(b.holding(p), holding(p, &plain));
                    prop_assert_eq!(b.get(p), plain.get(&p).copied());
                }
                let all: Vec<(u64, PageSize, Pfn)> = b.iter().collect();
                let expected: Vec<(u64, PageSize, Pfn)> = plain.iter().map(|(&s, &(z, f))| (s, z, f)).collect();
                prop_assert_eq!(all, expected);
                let k: Vec<u64> = b.keys_in(7, 70);
                let e: Vec<u64> = plain.range(7..70).map(|(&s, _)| s).collect();
                prop_assert_eq!(b.first_in(7, 70), e.first().copied());
                prop_assert_eq!(b.first_in(at, at + 9), plain.range(at..at + 9).next().map(|(&s, _)| s));
                prop_assert_eq!(k, e);
            }
        }
    }
}
