//! guest_memfd: the private side of a gmem-era VM, allocated in folios on first use.

use snpsim_defs::{PageSize, Pfn};
use snpsim_hw::Geometry;

use crate::{BlockMap, DirtyLog, HostError, HostMemory};

/// A folio of the guest_memfd file: `size` pages of host memory from `pfn`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Folio {
    /// First host frame.
    pub pfn: Pfn,
    /// Folio size.
    pub size: PageSize,
}

/// How guest_memfd backs an aligned range ([`Gmem::range_backing`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RangeBacking {
    /// One allocated folio at least as large as the range holds it; the frame of its first page.
    Folio(Pfn),
    /// No page of the range is allocated, and first use allocates a folio at least as large.
    Unallocated,
    /// The range is (or would be) held by smaller folios.
    Smaller,
}

/// A guest_memfd file of `pages` pages whose folios are `folio_size` (4K upstream, 2M in the THP
/// RFC, 1G in the HugeTLB RFC; chosen per scenario), allocated on first use and split to smaller folios when
/// a hole is punched into part of one (as both RFCs do on partial invalidation). Its `Debug` form
/// leaves out the allocation counter (history, not state).
#[derive(Clone)]
pub struct Gmem {
    geometry: Geometry,
    folio_size: PageSize,
    pages: u64,
    /// Folios by the file offset (in pages) of their first page.
    folios: BlockMap,
    /// Pages allocated (and cleared) for folios so far.
    pub allocated_pages: u64,
    /// File offsets whose folio changed (for the incremental invariant check).
    pub dirty: DirtyLog,
}

/// The folios as a map from first offset, for `Debug`.
struct Folios<'a>(&'a Gmem);

impl core::fmt::Debug for Folios<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_map().entries(self.0.folios()).finish()
    }
}

impl core::fmt::Debug for Gmem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Gmem")
            .field("geometry", &self.geometry)
            .field("folio_size", &self.folio_size)
            .field("pages", &self.pages)
            .field("folios", &Folios(self))
            .finish_non_exhaustive()
    }
}

impl Gmem {
    /// An empty file of `pages` pages with folios of `folio_size`.
    pub fn new(geometry: Geometry, folio_size: PageSize, pages: u64) -> Self {
        Gmem {
            geometry,
            folio_size,
            pages,
            folios: BlockMap::new(geometry),
            allocated_pages: 0,
            dirty: DirtyLog::default(),
        }
    }

    /// Bytes of memory the file's folio map takes.
    pub fn state_bytes(&self) -> usize {
        self.folios.state_bytes()
    }

    /// The configured folio size.
    pub fn folio_size(&self) -> PageSize {
        self.folio_size
    }

    /// The folio holding `offset`, with its first offset, if allocated.
    pub fn folio_at(&self, offset: u64) -> Option<(u64, Folio)> {
        self.folios.holding(offset).map(|(start, size, pfn)| (start, Folio { pfn, size }))
    }

    /// The host frame of `offset` and the size of its folio, if allocated.
    pub fn pfn(&self, offset: u64) -> Option<(Pfn, PageSize)> {
        let (start, folio) = self.folio_at(offset)?;
        Some((folio.pfn.checked_add(offset - start)?, folio.size))
    }

    /// The frame of `offset`, allocating its folio first if needed (`kvm_gmem_get_pfn`); the flag
    /// says whether a folio was allocated. A folio never extends past the file end: near the end the
    /// largest size that fits is used.
    pub fn get_pfn(&mut self, mem: &mut HostMemory, offset: u64) -> Result<(Pfn, PageSize, bool), HostError> {
        if offset >= self.pages {
            return Err(HostError::OutsideGmem { offset });
        }
        if let Some((start, folio)) = self.folio_at(offset) {
            let pfn = folio.pfn.checked_add(offset - start).ok_or(HostError::OutsideGmem { offset })?;
            return Ok((pfn, folio.size, false));
        }
        let mut size = self.folio_size;
        loop {
            let n = self.geometry.pages(size);
            let start = offset / n * n;
            // No folio holds `offset`, so a 4K folio there is free without a second look (the
            // look costs as much as the allocation, once per page of a 4K file).
            let free = start + n <= self.pages
                && (n == 1
                    || self.folio_at(start).is_none() && self.folios.first_in(start, start + n).is_none());
            if free {
                let pfn = mem.alloc(size)?;
                self.allocated_pages += n;
                self.folios.insert(start, size, pfn);
                self.dirty.mark(start, n);
                return Ok((
                    pfn.checked_add(offset - start).ok_or(HostError::OutsideGmem { offset })?,
                    size,
                    true,
                ));
            }
            size = size.smaller().ok_or(HostError::OutsideGmem { offset })?;
        }
    }

    /// Punch a hole over `count` pages from `offset` (fallocate PUNCH_HOLE): every page of the
    /// range that is allocated is handed to `invalidate` (as runs of frames, before they are freed:
    /// KVM's `sev_gmem_invalidate` makes them shared again) and freed. A folio only partly inside
    /// the range is first split into folios of the next smaller size. Returns the pages freed.
    pub fn punch_hole(
        &mut self,
        mem: &mut HostMemory,
        offset: u64,
        count: u64,
        mut invalidate: impl FnMut(Pfn, u64),
    ) -> Result<u64, HostError> {
        let end = offset
            .checked_add(count)
            .filter(|&e| e <= self.pages)
            .ok_or(HostError::OutsideGmem { offset })?;
        let mut freed = 0;
        let mut pos = offset;
        while pos < end {
            let Some((start, folio)) = self.folio_at(pos) else {
                pos = self.folios.first_in(pos, end).unwrap_or(end);
                continue;
            };
            let n = self.geometry.pages(folio.size);
            if start >= offset && start + n <= end {
                self.folios.remove(start);
                self.dirty.mark(start, n);
                invalidate(folio.pfn, n);
                mem.free(folio.pfn, folio.size)?;
                freed += n;
                pos = start + n;
            } else {
                let smaller = folio.size.smaller().ok_or(HostError::OutsideGmem { offset: pos })?;
                let m = self.geometry.pages(smaller);
                self.folios.remove(start);
                self.dirty.mark(start, n);
                for i in 0..n / m {
                    let pfn = folio.pfn.checked_add(i * m).ok_or(HostError::OutsideGmem { offset: pos })?;
                    self.folios.insert(start + i * m, smaller, pfn);
                }
            }
        }
        Ok(freed)
    }

    /// How the file backs the aligned range `start..start + pages` (a 2M range, for the largest
    /// leaf KVM could map it with): inside one allocated folio of at least `pages` pages (its frame
    /// at `start`), not allocated at all (first use allocates a folio of the configured size, or the
    /// largest that fits in the file: `kvm_gmem_get_pfn`), or only in smaller folios (a punched
    /// hole split the folio that held it, and folios are never merged again).
    pub fn range_backing(&self, start: u64, pages: u64) -> RangeBacking {
        if let Some((first, folio)) = self.folio_at(start) {
            return if self.geometry.pages(folio.size) >= pages
                && first + self.geometry.pages(folio.size) >= start + pages
            {
                folio.pfn.checked_add(start - first).map_or(RangeBacking::Smaller, RangeBacking::Folio)
            } else {
                RangeBacking::Smaller
            };
        }
        let end = start.saturating_add(pages);
        if end > self.pages || self.folios.first_in(start, end).is_some() {
            return RangeBacking::Smaller;
        }
        if self.geometry.pages(self.folio_size) >= pages {
            RangeBacking::Unallocated
        } else {
            RangeBacking::Smaller
        }
    }

    /// The folios holding any offset in `start..end`, with their first offsets, in order.
    pub fn folios_in(&self, start: u64, end: u64) -> Vec<(u64, Folio)> {
        let mut out: Vec<(u64, Folio)> =
            self.folio_at(start).filter(|&(s, _)| s < start).into_iter().collect();
        out.extend(self.folios.keys_in(start, end).into_iter().filter_map(|k| self.folio_at(k)));
        out
    }

    /// Every allocated folio with the file offset of its first page, in offset order.
    pub fn folios(&self) -> impl Iterator<Item = (u64, Folio)> + '_ {
        self.folios.iter().map(|(o, size, pfn)| (o, Folio { pfn, size }))
    }

    /// Allocated folios, by size.
    pub fn folio_count(&self, size: PageSize) -> usize {
        self.folios.iter().filter(|&(_, s, _)| s == size).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folios_are_allocated_on_first_use_and_split_by_partial_punch() {
        let g = Geometry::TINY;
        let mut mem = HostMemory::new(g, 256);
        let mut gm = Gmem::new(g, PageSize::Size2M, 10);
        let (pfn, size, new) = gm.get_pfn(&mut mem, 5).unwrap();
        assert_eq!((size, new), (PageSize::Size2M, true));
        assert_eq!(gm.get_pfn(&mut mem, 4).unwrap(), (Pfn::new(pfn.raw() - 1), size, false));
        // Tail: offsets 8..10 cannot hold a whole 2M folio.
        assert_eq!(gm.get_pfn(&mut mem, 9).unwrap().1, PageSize::Size4K);
        let mut seen = Vec::new();
        let freed = gm.punch_hole(&mut mem, 5, 1, |p, n| seen.push((p, n))).unwrap();
        assert_eq!(freed, 1);
        assert_eq!(seen, vec![(pfn, 1)]);
        // The 2M folio (4 tiny pages) split into four 4K folios, one freed: 3, plus the tail's.
        assert_eq!(gm.folio_count(PageSize::Size4K), 4);
        assert_eq!(gm.pfn(5), None);
        assert_eq!(gm.pfn(6).map(|(_, s)| s), Some(PageSize::Size4K));
    }

    #[test]
    fn range_backing_tells_whole_folios_from_split_and_unallocated_ranges() {
        // Tiny geometry: a 2M range is 4 pages, a 1G one 16.
        let g = Geometry::TINY;
        let mut mem = HostMemory::new(g, 256);
        let mut gm = Gmem::new(g, PageSize::Size1G, 34);
        // Nothing allocated: a 1G folio would hold 0..16.
        assert_eq!(gm.range_backing(4, 4), RangeBacking::Unallocated);
        // First use of offset 0: the 1G folio holding 0..16, `pfn` its first frame.
        let (pfn, size, _) = gm.get_pfn(&mut mem, 0).unwrap();
        assert_eq!(size, PageSize::Size1G);
        // Offset 4 is 4 pages into the 1G folio that starts at 0.
        assert_eq!(gm.range_backing(4, 4), RangeBacking::Folio(pfn + 4));
        // A hole at page 9 splits the 1G folio into 2M folios, and the one holding 8..12 into 4K.
        gm.punch_hole(&mut mem, 9, 1, |_, _| {}).unwrap();
        assert_eq!(gm.range_backing(8, 4), RangeBacking::Smaller);
        assert_eq!(gm.range_backing(12, 4), RangeBacking::Folio(pfn + 12));
        // 32..34 is the file's tail: no 2M range fits there.
        assert_eq!(gm.range_backing(32, 4), RangeBacking::Smaller);
        // A 4K folio allocated alone in an otherwise empty 2M range.
        let mut small = Gmem::new(g, PageSize::Size4K, 8);
        assert_eq!(small.range_backing(0, 4), RangeBacking::Smaller);
        small.get_pfn(&mut mem, 5).unwrap();
        assert_eq!(small.range_backing(4, 4), RangeBacking::Smaller);
    }

    proptest::proptest! {
        /// `get_pfn` against a page-by-page model of the file: the folio holding a page is found,
        /// and a page no folio holds gets the largest folio whose aligned range lies in the file
        /// with no page of it held. Holes punched in between (the model re-read from the file)
        /// leave split folios and 4K gaps next to larger folios.
        #[test]
        fn get_pfn_matches_a_page_by_page_model(
            size in 0usize..3,
            pages in 1u64..40,
            ops in proptest::collection::vec((proptest::bool::ANY, 0u64..40, 1u64..6), 1..40),
        ) {
            let g = Geometry::TINY;
            let folio_size = [PageSize::Size4K, PageSize::Size2M, PageSize::Size1G][size];
            let mut mem = HostMemory::new(g, 4096);
            let mut gm = Gmem::new(g, folio_size, pages);
            for (punch, offset, count) in ops {
                let offset = offset % pages;
                if punch {
                    gm.punch_hole(&mut mem, offset, count.min(pages - offset), |_, _| {}).unwrap();
                    continue;
                }
                let mut held = vec![None; pages as usize];
                for (start, f) in gm.folios() {
                    for k in 0..g.pages(f.size) {
                        held[(start + k) as usize] = Some((start, f));
                    }
                }
                let got = gm.get_pfn(&mut mem, offset).unwrap();
                if let Some((start, f)) = held[offset as usize] {
                    proptest::prop_assert_eq!(got, (f.pfn + (offset - start), f.size, false));
                    continue;
                }
                let free = |s: PageSize| {
                    let n = g.pages(s);
                    let start = offset / n * n;
                    start + n <= pages && (start..start + n).all(|p| held[p as usize].is_none())
                };
                let size = std::iter::successors(Some(folio_size), |s| s.smaller()).find(|&s| free(s)).unwrap();
                proptest::prop_assert_eq!((got.1, got.2), (size, true));
                let start = offset / g.pages(size) * g.pages(size);
                let first = Pfn::new(got.0.raw() - (offset - start));
                proptest::prop_assert_eq!(gm.folio_at(offset), Some((start, Folio { pfn: first, size })));
            }
        }
    }
}
