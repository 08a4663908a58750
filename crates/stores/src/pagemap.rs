//! A value per page, stored per 2M region, so that memory nobody touched page by page costs O(regions)
//! and whole-region updates (a 2M RMPUPDATE, a 2M PVALIDATE) cost O(1). Consecutive uniform
//! regions whose values rise by a constant step (stamps of a 2M sweep) cost one entry per chunk of
//! regions ([`RunVec`]).

use crate::runs::{CHUNK, Progression, RegionVec, RunVec};

/// One region: a single value for all its pages, or one value per page.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Region<T: Progression> {
    Uniform(T),
    /// One value per page, progressions of them stored once per chunk.
    Pages(Box<RunVec<T>>),
    /// One value per page, stored plainly: a region whose pages were written in no order (half
    /// its chunks or more stored value by value) is read with one indirection less.
    Flat(Box<[T]>),
}

impl<T: Progression> Default for Region<T> {
    fn default() -> Self {
        Region::Uniform(T::default())
    }
}

/// Uniform regions whose values form a progression form one; a region of per-page values never
/// does.
impl<T: Progression> Progression for Region<T> {
    type Step = T::Step;
    #[inline]
    fn step_to(&self, next: &Self) -> Option<T::Step> {
        match (self, next) {
            (Region::Uniform(a), Region::Uniform(b)) => a.step_to(b),
            _ => None,
        }
    }

    #[inline]
    fn nth(&self, step: T::Step, k: u64) -> Self {
        match self {
            Region::Uniform(v) => Region::Uniform(v.nth(step, k)),
            Region::Pages(_) | Region::Flat(_) => self.clone(),
        }
    }
}

/// A value of type `T` for every page number, `T::default()` until set. Regions of `region_pages`
/// pages are stored as one value until a page of them is set to a different value, then as an
/// array; [`PageMap::set_range`] over a whole region makes it one value again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageMap<T: Progression> {
    region_pages: u64,
    regions: RegionVec<Region<T>>,
    /// Regions written page by page go straight to a plain array (values written in no order).
    flat: bool,
}

impl<T: Progression + Copy> PageMap<T> {
    /// Bytes of memory the map takes.
    pub fn state_bytes(&self) -> usize {
        let pages: usize = self
            .regions
            .dense_values()
            .map(|r| match r {
                Region::Pages(p) => size_of::<RunVec<T>>() + p.state_bytes(),
                Region::Flat(p) => size_of_val(&**p),
                Region::Uniform(_) => 0,
            })
            .sum();
        self.regions.state_bytes() + pages
    }

    /// An all-default map with regions of `region_pages` pages (the geometry's 2M page, a power of
    /// two).
    pub fn new(region_pages: u64) -> Self {
        assert!(region_pages.is_power_of_two());
        PageMap { region_pages, regions: RegionVec::new(), flat: false }
    }

    /// An all-default map for values written in no order (content versions, data pages): a
    /// region written page by page becomes a plain array at once, without first trying to store
    /// its pages as progressions.
    pub fn new_flat(region_pages: u64) -> Self {
        PageMap { flat: true, ..Self::new(region_pages) }
    }

    fn split(&self, page: u64) -> (u64, usize) {
        (page >> self.region_pages.trailing_zeros(), (page & (self.region_pages - 1)) as usize)
    }

    /// The value of `page`.
    #[inline]
    pub fn get(&self, page: u64) -> T {
        let (r, i) = self.split(page);
        match &*self.regions.get(r) {
            Region::Uniform(v) => *v,
            Region::Flat(p) => p[i],
            Region::Pages(p) => *p.get(i as u64),
        }
    }

    /// The value of every page of the region holding `page`, if they are all the same.
    pub fn uniform(&self, page: u64) -> Option<T> {
        let (r, _) = self.split(page);
        match &*self.regions.get(r) {
            Region::Uniform(v) => Some(*v),
            Region::Pages(_) | Region::Flat(_) => None,
        }
    }

    /// Set `page` to `value`.
    pub fn set(&mut self, page: u64, value: T) {
        let (r, i) = self.split(page);
        if matches!(&*self.regions.get(r), Region::Uniform(v) if *v == value) {
            return;
        }
        let n = self.region_pages;
        let region = self.regions.get_mut(r);
        match region {
            Region::Uniform(v) if self.flat => {
                let mut pages = vec![*v; n as usize].into_boxed_slice();
                pages[i] = value;
                *region = Region::Flat(pages);
            }
            Region::Uniform(v) => {
                let mut pages = Box::new(RunVec::new());
                pages.set_run(0, n, v, T::Step::default());
                pages.set(i as u64, value);
                *region = Region::Pages(pages);
            }
            Region::Flat(p) => p[i] = value,
            Region::Pages(p) => {
                p.set(i as u64, value);
                let chunks = n.div_ceil(CHUNK as u64) as usize;
                if 2 * p.dense_chunks() >= chunks.max(2) {
                    *region = Region::Flat((0..n).map(|k| *p.get(k)).collect());
                }
            }
        }
    }

    /// Set every page of `start..start + pages` to `value`; whole regions become one value.
    pub fn set_range(&mut self, start: u64, pages: u64, value: T) {
        let end = start + pages;
        let mut p = start;
        while p < end {
            let (r, i) = self.split(p);
            let region_end = (p / self.region_pages + 1) * self.region_pages;
            if i == 0 && region_end <= end {
                let regions_end = end / self.region_pages;
                self.regions.set_run(r, regions_end, &Region::Uniform(value), T::Step::default());
                p = regions_end * self.region_pages;
            } else {
                let stop = region_end.min(end);
                self.set_in_region(p, stop - p, value, T::Step::default());
                p = stop;
            }
        }
    }

    /// Set `pages` pages from `page`, all in one region, to the progression `value, value + step,
    /// …` (`step` the default: all to `value`): a region stored as runs takes them as one run (its
    /// whole chunks without expanding them), as [`PageMap::set`] of each page would leave them.
    fn set_in_region(&mut self, page: u64, pages: u64, value: T, step: T::Step) {
        let same = step == T::Step::default();
        if same && pages == 1 {
            return self.set(page, value);
        }
        let (r, i) = self.split(page);
        if same && matches!(&*self.regions.get(r), Region::Uniform(v) if *v == value) {
            return;
        }
        let n = self.region_pages;
        let fill = |slots: &mut [T]| {
            if same {
                slots.fill(value);
            } else {
                for (k, slot) in slots.iter_mut().enumerate() {
                    *slot = value.nth(step, k as u64);
                }
            }
        };
        let region = self.regions.get_mut(r);
        match region {
            Region::Uniform(v) if self.flat => {
                let mut all = vec![*v; n as usize].into_boxed_slice();
                fill(&mut all[i..i + pages as usize]);
                *region = Region::Flat(all);
            }
            Region::Uniform(v) => {
                let mut runs = Box::new(RunVec::new());
                runs.set_run(0, n, v, T::Step::default());
                runs.set_run(i as u64, i as u64 + pages, &value, step);
                *region = Region::Pages(runs);
            }
            Region::Flat(all) => fill(&mut all[i..i + pages as usize]),
            Region::Pages(runs) => {
                runs.set_run(i as u64, i as u64 + pages, &value, step);
                let chunks = n.div_ceil(CHUNK as u64) as usize;
                if 2 * runs.dense_chunks() >= chunks.max(2) {
                    *region = Region::Flat((0..n).map(|k| *runs.get(k)).collect());
                }
            }
        }
    }

    /// Set the pages of `start..start + pages` to the progression `first, first+step, …` (stamps
    /// rising page by page): the values [`PageMap::set`] of each page in turn would leave, each
    /// region's share written as one run.
    pub fn set_progression(&mut self, start: u64, pages: u64, first: T, step: T::Step) {
        let end = start + pages;
        let mut p = start;
        while p < end {
            let stop = ((p / self.region_pages + 1) * self.region_pages).min(end);
            self.set_in_region(p, stop - p, first.nth(step, p - start), step);
            p = stop;
        }
    }

    /// Every page whose value is not the default, with its value, in page order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, T)> + '_ {
        let n = self.region_pages;
        self.regions.iter_set(0, self.regions.extent()).flat_map(move |(r, region)| {
            let base = r * n;
            (0..n).filter_map(move |i| {
                let v = match &*region {
                    Region::Uniform(v) => *v,
                    Region::Flat(p) => p[i as usize],
                    Region::Pages(p) => *p.get(i),
                };
                (v != T::default()).then_some((base + i, v))
            })
        })
    }

    /// Every page of `start..start + pages` whose value is not the default, in page order.
    pub fn iter_range(&self, start: u64, pages: u64) -> impl Iterator<Item = (u64, T)> + '_ {
        (start..start + pages).filter_map(move |p| {
            let v = self.get(p);
            (v != T::default()).then_some((p, v))
        })
    }

    /// How many pages of `start..start + pages` hold a value other than the default.
    pub fn count_in(&self, start: u64, pages: u64) -> u64 {
        let end = start + pages;
        let mut p = start;
        let mut count = 0;
        while p < end {
            let region_end = ((p / self.region_pages + 1) * self.region_pages).min(end);
            match self.uniform(p) {
                Some(v) if v == T::default() => {}
                Some(_) => count += region_end - p,
                None => count += (p..region_end).filter(|&q| self.get(q) != T::default()).count() as u64,
            }
            p = region_end;
        }
        count
    }

    /// Regions stored as one value per page (the map's memory beyond its region table).
    pub fn dense_regions(&self) -> usize {
        self.regions.dense_values().filter(|r| !matches!(r, Region::Uniform(_))).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn matches_a_dense_array(flat: bool, ops in proptest::collection::vec((0u64..1200, 1u64..400, 0u8..3, 0u8..4), 1..60)) {
            let mut m = if flat { PageMap::<u8>::new_flat(4) } else { PageMap::<u8>::new(4) };
            let mut dense = vec![0u8; 1600];
            for (s, n, v, kind) in ops {
                match kind {
                    0 => {
                        m.set(s, v);
                        dense[s as usize] = v;
                    }
                    1 => {
                        m.set_range(s, n, v);
                        for p in s..s + n { dense[p as usize] = v; }
                    }
                    3 => {
                        // Stamps rising page by page (a run of 4K RMPUPDATEs).
                        m.set_progression(s, n, v, 1);
                        for p in s..s + n { dense[p as usize] = v.wrapping_add((p - s) as u8); }
                    }
                    _ => {
                        // A stamp per region, rising region by region (a 2M sweep's RMPUPDATEs).
                        for r in s / 4..(s + n) / 4 {
                            let stamp = v.wrapping_add(r as u8);
                            m.set_range(r * 4, 4, stamp);
                            dense[(r * 4) as usize..(r * 4 + 4) as usize].fill(stamp);
                        }
                    }
                }
                for p in 0..1600u64 { prop_assert_eq!(m.get(p), dense[p as usize]); }
                let listed: Vec<(u64, u8)> = m.iter().collect();
                let expected: Vec<(u64, u8)> =
                    (0..1600u64).filter(|&p| dense[p as usize] != 0).map(|p| (p, dense[p as usize])).collect();
                prop_assert_eq!(&listed, &expected);
                let c = (8..900).filter(|&p| dense[p] != 0).count() as u64;
                prop_assert_eq!(m.count_in(8, 892), c);
                prop_assert_eq!(m.iter_range(8, 892).count() as u64, c);
                for r in 0..400u64 {
                    let w = &dense[(r * 4) as usize..(r * 4 + 4) as usize];
                    if let Some(v) = m.uniform(r * 4) { prop_assert!(w.iter().all(|&x| x == v)); }
                }
            }
        }
    }

    #[test]
    fn whole_regions_stay_compact() {
        let mut m = PageMap::<u64>::new(512);
        m.set_range(0, 512 * 1000, 7);
        assert_eq!(m.dense_regions(), 0);
        m.set(5, 8);
        assert_eq!(m.dense_regions(), 1);
        m.set_range(0, 512, 9);
        assert_eq!(m.dense_regions(), 0);
        assert_eq!(m.count_in(0, 512 * 1000), 512 * 1000);
    }
}
