//! Size-aligned blocks of 4K, 2M or 1G pages keyed by their first page — an NPT's leaves, a
//! guest_memfd file's folios — stored per 2M region: a 2M block or an array of 4K blocks per
//! region, 1G blocks on the side. Finding the block that holds a page is an index, not a tree
//! search, a range mapped at 4K costs 8 bytes per page rather than a tree node, and consecutive
//! 2M blocks on consecutive frames cost one entry per chunk of regions ([`RunVec`]).

use std::borrow::Cow;
use std::collections::BTreeMap;

use snpsim_defs::{PageSize, Pfn};
use snpsim_hw::Geometry;
use snpsim_stores::{BTREE_ENTRY_BYTES, Progression, RegionVec, RunVec};

/// One 2M region.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum Slot {
    /// No 2M or 4K block (a 1G block may cover it).
    #[default]
    Empty,
    /// A 2M block whose first frame is this one.
    Huge(Pfn),
    /// 4K blocks: 1 + the frame of each page, 0 where there is none; and how many there are.
    Small(u32, Box<RunVec<u64>>),
}

/// Empty regions, and 2M blocks whose frames rise by a constant step, form progressions.
impl Progression for Slot {
    type Step = u64;
    fn step_to(&self, next: &Self) -> Option<u64> {
        match (self, next) {
            (Slot::Empty, Slot::Empty) => Some(0),
            (Slot::Huge(a), Slot::Huge(b)) => Some(b.raw().wrapping_sub(a.raw())),
            _ => None,
        }
    }

    #[inline]
    fn nth(&self, step: u64, k: u64) -> Self {
        match self {
            Slot::Huge(p) => Slot::Huge(Pfn::new(p.raw().wrapping_add(step.wrapping_mul(k)))),
            Slot::Empty => Slot::Empty,
            Slot::Small(..) => self.clone(),
        }
    }
}

/// Blocks keyed by first page, each aligned to its size, never overlapping: `(first page, size,
/// first frame)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockMap {
    g2: u64,
    /// log2 of `g2`: region arithmetic by shift and mask, not division (every geometry's page
    /// sizes are powers of two).
    g2_shift: u32,
    g1: u64,
    regions: RegionVec<Slot>,
    huge: BTreeMap<u64, Pfn>,
}

impl BlockMap {
    /// No blocks.
    pub fn new(geometry: Geometry) -> Self {
        BlockMap {
            g2: geometry.pages(PageSize::Size2M),
            g2_shift: geometry.region_shift(),
            g1: geometry.pages(PageSize::Size1G),
            regions: RegionVec::new(),
            huge: BTreeMap::new(),
        }
    }

    /// The region of `page` and the page's index in it.
    #[inline]
    fn split(&self, page: u64) -> (u64, u64) {
        (page >> self.g2_shift, page & (self.g2 - 1))
    }

    #[inline]
    fn slot(&self, r: u64) -> Cow<'_, Slot> {
        self.regions.get(r)
    }

    fn slot_mut(&mut self, r: u64) -> &mut Slot {
        self.regions.get_mut(r)
    }

    /// Bytes of memory the map takes (B-tree entries estimated).
    pub fn state_bytes(&self) -> usize {
        let small: usize = self
            .regions
            .dense_values()
            .map(|s| match s {
                Slot::Small(_, pages) => size_of::<RunVec<u64>>() + pages.state_bytes(),
                _ => 0,
            })
            .sum();
        self.regions.state_bytes() + small + self.huge.len() * BTREE_ENTRY_BYTES
    }

    /// The block whose first page is `start`.
    pub fn get(&self, start: u64) -> Option<(PageSize, Pfn)> {
        let (r, i) = self.split(start);
        match &*self.slot(r) {
            Slot::Huge(pfn) if i == 0 => Some((PageSize::Size2M, *pfn)),
            // 1 + the frame, 0 where there is no block.
            Slot::Small(_, pages) => pages.get(i).checked_sub(1).map(|p| (PageSize::Size4K, Pfn::new(p))),
            Slot::Empty if !self.huge.is_empty() && start.is_multiple_of(self.g1) => {
                self.huge.get(&start).map(|&pfn| (PageSize::Size1G, pfn))
            }
            _ => None,
        }
    }

    /// The block holding `page`: its first page, size and first frame.
    pub fn holding(&self, page: u64) -> Option<(u64, PageSize, Pfn)> {
        let (r, i) = self.split(page);
        match &*self.slot(r) {
            Slot::Huge(pfn) => Some((r * self.g2, PageSize::Size2M, *pfn)),
            Slot::Small(_, pages) => {
                pages.get(i).checked_sub(1).map(|p| (page, PageSize::Size4K, Pfn::new(p)))
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
        let (r, i) = self.split(start);
        match size {
            PageSize::Size1G => {
                self.huge.insert(start, pfn);
            }
            PageSize::Size2M => self.regions.set(r, Slot::Huge(pfn)),
            PageSize::Size4K => {
                let slot = self.slot_mut(r);
                if !matches!(slot, Slot::Small(..)) {
                    *slot = Slot::Small(0, Box::default());
                }
                if let Slot::Small(n, pages) = slot {
                    if *pages.get(i) == 0 {
                        *n += 1;
                    }
                    pages.set(i, pfn.raw() + 1);
                }
            }
        }
    }

    /// Remove the block whose first page is `start`.
    pub fn remove(&mut self, start: u64) -> Option<(PageSize, Pfn)> {
        let block = self.get(start)?;
        let (r, i) = self.split(start);
        match block.0 {
            PageSize::Size1G => {
                self.huge.remove(&start);
            }
            PageSize::Size2M => self.regions.set(r, Slot::Empty),
            PageSize::Size4K => {
                let slot = self.slot_mut(r);
                if let Slot::Small(n, pages) = slot {
                    pages.set(i, 0);
                    *n -= 1;
                    if *n == 0 {
                        *slot = Slot::Empty;
                    }
                }
            }
        }
        Some(block)
    }

    /// Call `f` with the first page of each 2M and 4K block that starts in `start..end`, in
    /// order, until it returns `false`; each stored run of regions is visited once.
    fn small_keys(&self, start: u64, end: u64, mut f: impl FnMut(u64) -> bool) {
        if start >= end {
            return;
        }
        let g2 = self.g2;
        for (at, n, slot, _) in self.regions.runs(start / g2, (end - 1) / g2 + 1) {
            match slot.as_ref() {
                Slot::Empty => {}
                Slot::Huge(_) => {
                    for base in (at..at + n).map(|r| r * g2).filter(|&b| b >= start && b < end) {
                        if !f(base) {
                            return;
                        }
                    }
                }
                Slot::Small(_, pages) => {
                    let base = at * g2;
                    for (i, _) in pages.iter_set(start.max(base) - base, end.min(base + g2) - base) {
                        if !f(base + i) {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// The first pages of the blocks that start in `start..end`, in order.
    pub fn keys_in(&self, start: u64, end: u64) -> Vec<u64> {
        if start >= end {
            return Vec::new();
        }
        let mut keys = Vec::new();
        self.small_keys(start, end, |k| {
            keys.push(k);
            true
        });
        if !self.huge.is_empty() {
            keys.extend(self.huge.range(start..end).map(|(&k, _)| k));
            keys.sort_unstable();
        }
        keys
    }

    /// The first block starting in `start..end` (without collecting the others).
    pub fn first_in(&self, start: u64, end: u64) -> Option<u64> {
        if start >= end {
            return None;
        }
        let mut small = None;
        self.small_keys(start, end, |k| {
            small = Some(k);
            false
        });
        let huge = self.huge.range(start..end).next().map(|(&k, _)| k);
        match (small, huge) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Every block in order: `(first page, size, first frame)`, read from each stored run of
    /// regions once (the whole-state check lists a file's folios after every step).
    pub fn iter(&self) -> impl Iterator<Item = (u64, PageSize, Pfn)> + '_ {
        let g2 = self.g2;
        let mut out = Vec::new();
        for (at, n, slot, step) in self.regions.runs(0, self.regions.extent()) {
            match slot.as_ref() {
                Slot::Empty => {}
                Slot::Huge(_) => out.extend((0..n).filter_map(|k| match slot.nth(step, k) {
                    Slot::Huge(pfn) => Some(((at + k) * g2, PageSize::Size2M, pfn)),
                    Slot::Empty | Slot::Small(..) => None,
                })),
                // 1 + the frame, 0 where there is no block.
                Slot::Small(_, pages) => {
                    out.extend(
                        pages.iter_set(0, g2).map(|(i, p)| (at * g2 + i, PageSize::Size4K, Pfn::new(*p - 1))),
                    );
                }
            }
        }
        if !self.huge.is_empty() {
            out.extend(self.huge.iter().map(|(&k, &pfn)| (k, PageSize::Size1G, pfn)));
            out.sort_unstable_by_key(|&(k, _, _)| k);
        }
        out.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn iter_lists_progressions_of_2m_blocks_4k_blocks_and_1g_blocks_in_order() {
        let g = Geometry::TINY;
        let (g2, g1) = (g.pages(PageSize::Size2M), g.pages(PageSize::Size1G));
        let mut b = BlockMap::new(g);
        let mut plain: BTreeMap<u64, (PageSize, Pfn)> = BTreeMap::new();
        let mut add = |start: u64, size: PageSize, pfn: u64| {
            b.insert(start, size, Pfn::new(pfn));
            plain.insert(start, (size, Pfn::new(pfn)));
        };
        // A 1G block first, then more than two chunks of regions of 2M blocks on frames rising by
        // 12 (progressions), 4K blocks, and another 1G block.
        add(0, PageSize::Size1G, 90_000);
        for r in g1 / g2..1100 {
            add(r * g2, PageSize::Size2M, 1000 + 12 * r);
        }
        for page in [1100 * g2 + 1, 1100 * g2 + 3, 1102 * g2] {
            add(page, PageSize::Size4K, 50_000 + page);
        }
        add((1102 * g2 / g1 + 1) * g1, PageSize::Size1G, 91_000);
        // Stored as progressions, not a value per region.
        assert!(b.state_bytes() < 1100 * size_of::<Slot>(), "{} bytes", b.state_bytes());
        let expected: Vec<(u64, PageSize, Pfn)> = plain.iter().map(|(&s, &(z, f))| (s, z, f)).collect();
        assert_eq!(b.iter().collect::<Vec<_>>(), expected);
    }

    proptest! {
        #[test]
        fn matches_a_plain_map(ops in proptest::collection::vec((any::<bool>(), 0u64..1200, 0u8..4), 1..60)) {
            let g = Geometry::TINY;
            let mut b = BlockMap::new(g);
            let mut plain: BTreeMap<u64, (PageSize, Pfn)> = BTreeMap::new();
            let sizes = [PageSize::Size4K, PageSize::Size2M, PageSize::Size1G];
            for (add, at, sz) in ops {
                if sz == 3 {
                    // A sweep of 2M blocks on rising frames (at most 150 regions: never a whole
                    // chunk of 512 stored as one progression, which the test above covers).
                    let g2 = g.pages(PageSize::Size2M);
                    for r in at / g2..(at / g2 + 150).min(300) {
                        let start = r * g2;
                        let free = |p: u64| plain.range(..=p).next_back().is_none_or(|(s, (z, _))| p >= *s + g.pages(*z));
                        if (start..start + g2).all(free) {
                            b.insert(start, PageSize::Size2M, Pfn::new(500 + start));
                            plain.insert(start, (PageSize::Size2M, Pfn::new(500 + start)));
                        }
                    }
                    continue;
                }
                let size = sizes[usize::from(sz)];
                let n = g.pages(size);
                let start = at / n * n;
                let holding = |p: u64, m: &BTreeMap<u64, (PageSize, Pfn)>| {
                    m.range(..=p).next_back().filter(|(s, (z, _))| p < *s + g.pages(*z)).map(|(s, (z, f))| (*s, *z, *f))
                };
                if add {
                    if (start..start + n).all(|p| holding(p, &plain).is_none()) {
                        b.insert(start, size, Pfn::new(500 + start));
                        plain.insert(start, (size, Pfn::new(500 + start)));
                    }
                } else {
                    prop_assert_eq!(b.remove(start), plain.remove(&start));
                }
                for p in 0..1216u64 {
                    prop_assert_eq!(b.holding(p), holding(p, &plain));
                    prop_assert_eq!(b.get(p), plain.get(&p).copied());
                }
                let all: Vec<(u64, PageSize, Pfn)> = b.iter().collect();
                let expected: Vec<(u64, PageSize, Pfn)> = plain.iter().map(|(&s, &(z, f))| (s, z, f)).collect();
                prop_assert_eq!(all, expected);
                let k: Vec<u64> = b.keys_in(7, 700);
                let e: Vec<u64> = plain.range(7..700).map(|(&s, _)| s).collect();
                prop_assert_eq!(b.first_in(7, 700), e.first().copied());
                prop_assert_eq!(b.first_in(at, at + 9), plain.range(at..at + 9).next().map(|(&s, _)| s));
                prop_assert_eq!(k, e);
            }
        }
    }
}
