//! A value per page, stored per 2M region, so that memory nobody touched page by page costs O(regions)
//! and whole-region updates (a 2M RMPUPDATE, a 2M PVALIDATE) cost O(1).

/// One region: a single value for all its pages, or one value per page.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Region<T> {
    Uniform(T),
    Pages(Box<[T]>),
}

/// A value of type `T` for every page number, `T::default()` until set. Regions of `region_pages`
/// pages are stored as one value until a page of them is set to a different value, then as an
/// array; [`PageMap::set_range`] over a whole region makes it one value again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageMap<T> {
    region_pages: u64,
    regions: Vec<Region<T>>,
}

impl<T: Copy + Default + PartialEq> PageMap<T> {
    /// Bytes of memory the map takes.
    pub fn state_bytes(&self) -> usize {
        let pages: usize = self
            .regions
            .iter()
            .map(|r| match r {
                Region::Pages(p) => size_of_val(&**p),
                Region::Uniform(_) => 0,
            })
            .sum();
        self.regions.len() * size_of::<Region<T>>() + pages
    }

    /// An all-default map with regions of `region_pages` pages (the geometry's 2M page).
    pub fn new(region_pages: u64) -> Self {
        assert!(region_pages > 0);
        PageMap { region_pages, regions: Vec::new() }
    }

    fn split(&self, page: u64) -> (usize, usize) {
        let r = usize::try_from(page / self.region_pages).unwrap_or(usize::MAX);
        (r, (page % self.region_pages) as usize)
    }

    /// The value of `page`.
    pub fn get(&self, page: u64) -> T {
        let (r, i) = self.split(page);
        match self.regions.get(r) {
            None => T::default(),
            Some(Region::Uniform(v)) => *v,
            Some(Region::Pages(p)) => p[i],
        }
    }

    /// The value of every page of the region holding `page`, if they are all the same.
    pub fn uniform(&self, page: u64) -> Option<T> {
        let (r, _) = self.split(page);
        match self.regions.get(r) {
            None => Some(T::default()),
            Some(Region::Uniform(v)) => Some(*v),
            Some(Region::Pages(_)) => None,
        }
    }

    fn region_mut(&mut self, r: usize) -> &mut Region<T> {
        if self.regions.len() <= r {
            self.regions.resize_with(r + 1, || Region::Uniform(T::default()));
        }
        &mut self.regions[r]
    }

    /// Set `page` to `value`.
    pub fn set(&mut self, page: u64, value: T) {
        let (r, i) = self.split(page);
        if self.regions.get(r).is_none() && value == T::default() {
            return;
        }
        let n = self.region_pages as usize;
        let region = self.region_mut(r);
        match region {
            Region::Uniform(v) if *v == value => {}
            Region::Uniform(v) => {
                let mut pages = vec![*v; n].into_boxed_slice();
                pages[i] = value;
                *region = Region::Pages(pages);
            }
            Region::Pages(p) => p[i] = value,
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
                if self.regions.get(r).is_some() || value != T::default() {
                    *self.region_mut(r) = Region::Uniform(value);
                }
                p = region_end;
            } else {
                let stop = region_end.min(end);
                for q in p..stop {
                    self.set(q, value);
                }
                p = stop;
            }
        }
    }

    /// Every page whose value is not the default, with its value, in page order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, T)> + '_ {
        let n = self.region_pages;
        self.regions.iter().enumerate().flat_map(move |(r, region)| {
            let base = r as u64 * n;
            let (uniform, pages) = match region {
                Region::Uniform(v) => (Some(*v), None),
                Region::Pages(p) => (None, Some(p)),
            };
            (0..n).filter_map(move |i| {
                let v = match (uniform, pages) {
                    (Some(v), _) => v,
                    (None, Some(p)) => p[i as usize],
                    (None, None) => T::default(),
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

    /// Regions stored as one value per page (the map's memory beyond one slot per region).
    pub fn dense_regions(&self) -> usize {
        self.regions.iter().filter(|r| matches!(r, Region::Pages(_))).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn matches_a_dense_array(ops in proptest::collection::vec((0u64..40, 1u64..12, 0u8..3, any::<bool>()), 1..60)) {
            let mut m = PageMap::<u8>::new(4);
            let mut dense = [0u8; 64];
            for (s, n, v, range) in ops {
                if range {
                    m.set_range(s, n, v);
                    for p in s..s + n { dense[p as usize] = v; }
                } else {
                    m.set(s, v);
                    dense[s as usize] = v;
                }
                for p in 0..64u64 { prop_assert_eq!(m.get(p), dense[p as usize]); }
                let listed: Vec<(u64, u8)> = m.iter().collect();
                let expected: Vec<(u64, u8)> =
                    (0..64u64).filter(|&p| dense[p as usize] != 0).map(|p| (p, dense[p as usize])).collect();
                prop_assert_eq!(&listed, &expected);
                let c = (8..30).filter(|&p| dense[p] != 0).count() as u64;
                prop_assert_eq!(m.count_in(8, 22), c);
                prop_assert_eq!(m.iter_range(8, 22).count() as u64, c);
                for r in 0..16u64 {
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
