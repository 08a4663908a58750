//! The VMM's mapping of guest memory: one VMA, its backing, and the level of each host mapping.

use std::collections::{BTreeMap, BTreeSet};

use snpsim_defs::{Hva, PageSize, Pfn};
use snpsim_hw::Geometry;

use crate::{DirtyLog, HostError, HostMemory};

/// What backs the VMM's guest-memory VMA (`docs/semantics.md` S1–S3).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::Display,
)]
pub enum VmaBacking {
    /// Anonymous memory mapped with 4 KiB pages only.
    #[strum(serialize = "anon-4k")]
    Anon4k,
    /// Transparent huge pages: every 2M-aligned range inside the VMA is a PMD mapping (populated at
    /// VM start, as with preallocation and THP "always"); the host can split one to 4K.
    #[strum(serialize = "thp")]
    Thp,
    /// hugetlbfs with 2 MiB pages: never split.
    #[strum(serialize = "hugetlbfs-2m")]
    Hugetlbfs2m,
    /// hugetlbfs with 1 GiB pages: never split.
    #[strum(serialize = "hugetlbfs-1g")]
    Hugetlbfs1g,
}

impl VmaBacking {
    /// The scenario name of the backing (`anon-4k`, `thp`, `hugetlbfs-2m`, `hugetlbfs-1g`), for
    /// messages.
    pub fn name(self) -> &'static str {
        self.into()
    }

    /// Whether the host can split a huge mapping of this backing (THP can; hugetlbfs cannot —
    /// D. Hansen on the RFC v4 10/40 thread).
    pub const fn splittable(self) -> bool {
        matches!(self, VmaBacking::Thp)
    }

    /// Whether the backing is hugetlbfs.
    pub const fn is_hugetlbfs(self) -> bool {
        matches!(self, VmaBacking::Hugetlbfs2m | VmaBacking::Hugetlbfs1g)
    }

    /// The size of the backing's pages: the alignment its VMA and HPAs get.
    pub const fn page_size(self) -> PageSize {
        match self {
            VmaBacking::Anon4k => PageSize::Size4K,
            VmaBacking::Thp | VmaBacking::Hugetlbfs2m => PageSize::Size2M,
            VmaBacking::Hugetlbfs1g => PageSize::Size1G,
        }
    }
}

/// A range of the VMA whose mappings changed, reported to MMU-notifier listeners (KVM zaps the NPT
/// over it), as page offsets from the VMA start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Invalidation {
    /// First page offset.
    pub offset: u64,
    /// Number of pages.
    pub pages: u64,
}

/// Where the VMA's frames come from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Frames {
    /// Populated at VM start: contiguous frames from this one (legacy era).
    Contiguous(Pfn),
    /// Populated on first touch, one unit (2M, or 1G for hugetlbfs-1g) at a time: the first frame of
    /// each populated unit, by unit index (gmem era, docs/semantics.md).
    OnDemand(BTreeMap<u64, Pfn>),
}

/// The guest-memory VMA: `pages` pages at `hva` (aligned to the backing's page size, so that the
/// memslot's alignment never limits a level: `docs/semantics.md` S1), with a mapping level per
/// page. Its frames are contiguous within each unit of `max(backing page, 2M)` and aligned to it.
#[derive(Clone, Debug)]
pub struct GuestVma {
    geometry: Geometry,
    backing: VmaBacking,
    hva: Hva,
    frames: Frames,
    pages: u64,
    /// Pages with frames: all of them from creation for a preallocated VMA, the populated units'
    /// for one populated on first touch.
    populated: u64,
    /// THP: 2M regions (by index) currently mapped with 4K PTEs.
    split: BTreeSet<u64>,
    /// Page offsets whose frame or mapping level changed (for the incremental invariant check).
    pub dirty: DirtyLog,
}

impl GuestVma {
    /// A VMA of `pages` pages over frames from `pfn`. hugetlbfs needs a whole number of its pages.
    pub fn new(
        geometry: Geometry,
        backing: VmaBacking,
        hva: Hva,
        pfn: Pfn,
        pages: u64,
    ) -> Result<Self, HostError> {
        let unit = geometry.pages(backing.page_size());
        if backing.is_hugetlbfs() && !pages.is_multiple_of(unit) {
            return Err(HostError::HugetlbfsSize { pages, unit });
        }
        Ok(GuestVma {
            geometry,
            backing,
            hva,
            frames: Frames::Contiguous(pfn),
            pages,
            populated: pages,
            split: BTreeSet::new(),
            dirty: DirtyLog::default(),
        })
    }

    /// A VMA of `pages` pages with no frames yet: each unit is populated by [`GuestVma::populate`]
    /// on first touch.
    pub fn on_demand(
        geometry: Geometry,
        backing: VmaBacking,
        hva: Hva,
        pages: u64,
    ) -> Result<Self, HostError> {
        let mut vma = GuestVma::new(geometry, backing, hva, Pfn(0), pages)?;
        vma.frames = Frames::OnDemand(BTreeMap::new());
        vma.populated = 0;
        Ok(vma)
    }

    /// Pages per population unit: the backing's page size, at least 2M.
    fn unit(&self) -> u64 {
        self.geometry.pages(self.backing.page_size().max(PageSize::Size2M))
    }

    /// Fault in the unit holding `offset` (the first touch of a VMM's shared memory), allocating
    /// its frames from `mem`. Returns whether frames were allocated.
    pub fn populate(&mut self, mem: &mut HostMemory, offset: u64) -> Result<bool, HostError> {
        if offset >= self.pages {
            return Err(HostError::OutsideVma { offset });
        }
        let unit = self.unit();
        let align = self.backing.page_size().max(PageSize::Size2M);
        let Frames::OnDemand(units) = &mut self.frames else { return Ok(false) };
        let index = offset / unit;
        if units.contains_key(&index) {
            return Ok(false);
        }
        let count = unit.min(self.pages - index * unit);
        units.insert(index, mem.alloc_pages(align, count)?);
        self.populated += count;
        self.dirty.mark(index * unit, count);
        Ok(true)
    }

    /// The populated runs of the VMA clipped to the page offsets `start..end`.
    pub fn runs_in(&self, start: u64, end: u64) -> Vec<(u64, Pfn, u64)> {
        let end = end.min(self.pages);
        match &self.frames {
            Frames::Contiguous(pfn) if start < end => vec![(start, Pfn(pfn.raw() + start), end - start)],
            Frames::Contiguous(_) => Vec::new(),
            Frames::OnDemand(units) => {
                let unit = self.unit();
                let last = if end == 0 { 0 } else { (end - 1) / unit + 1 };
                units
                    .range(start / unit..last)
                    .filter_map(|(&i, &pfn)| {
                        let (s, e) = ((i * unit).max(start), ((i + 1) * unit).min(end));
                        (s < e).then(|| (s, Pfn(pfn.raw() + (s - i * unit)), e - s))
                    })
                    .collect()
            }
        }
    }

    /// The populated runs of the VMA: `(first page offset, first frame, pages)`, in offset order.
    pub fn runs(&self) -> Vec<(u64, Pfn, u64)> {
        let unit = self.unit();
        match &self.frames {
            Frames::Contiguous(pfn) => vec![(0, *pfn, self.pages)],
            Frames::OnDemand(units) => {
                units.iter().map(|(&i, &pfn)| (i * unit, pfn, unit.min(self.pages - i * unit))).collect()
            }
        }
    }

    /// Bytes of memory the VMA's bookkeeping takes (B-tree entries estimated).
    pub fn state_bytes(&self) -> usize {
        let units = match &self.frames {
            Frames::Contiguous(_) => 0,
            Frames::OnDemand(units) => units.len(),
        };
        (units + self.split.len()) * snpsim_stores::BTREE_ENTRY_BYTES
    }

    /// The backing.
    pub fn backing(&self) -> VmaBacking {
        self.backing
    }

    /// The VMA's first address.
    pub fn hva(&self) -> Hva {
        self.hva
    }

    /// Pages in the VMA.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// Pages that have host frames: every page of a VMA populated at VM start (preallocation),
    /// the populated units of one populated on first touch. The host cleared each of them when it
    /// handed it out (`clear_page`/`clear_huge_page` on the fault or the preallocation).
    pub fn populated_pages(&self) -> u64 {
        self.populated
    }

    /// The host frame backing page `offset`.
    pub fn pfn(&self, offset: u64) -> Option<Pfn> {
        if offset >= self.pages {
            return None;
        }
        match &self.frames {
            Frames::Contiguous(pfn) => pfn.checked_add(offset),
            Frames::OnDemand(units) => {
                let unit = self.unit();
                units.get(&(offset / unit))?.checked_add(offset % unit)
            }
        }
    }

    /// The page offset of `hva` in the VMA.
    pub fn offset_of(&self, hva: Hva) -> Option<u64> {
        let off = hva.checked_offset_from(self.hva)? >> snpsim_defs::PAGE_SHIFT;
        (off < self.pages).then_some(off)
    }

    /// The size of the host mapping (PTE, PMD or PUD leaf) that maps page `offset`.
    pub fn level(&self, offset: u64) -> PageSize {
        let per_2m = self.geometry.pages_per_2m();
        match self.backing {
            VmaBacking::Anon4k => PageSize::Size4K,
            VmaBacking::Hugetlbfs2m => PageSize::Size2M,
            VmaBacking::Hugetlbfs1g => PageSize::Size1G,
            VmaBacking::Thp => {
                let region = offset / per_2m;
                let whole = (region + 1) * per_2m <= self.pages;
                if whole && !self.split.contains(&region) { PageSize::Size2M } else { PageSize::Size4K }
            }
        }
    }

    /// Translate `offset` to its host frame and mapping level.
    pub fn translate(&self, offset: u64) -> Option<(Pfn, PageSize)> {
        Some((self.pfn(offset)?, self.level(offset)))
    }

    /// Split the huge mapping holding `offset` to 4K (`__split_huge_pmd`). `Ok(None)` if it is
    /// already 4K; an error for a backing that cannot split.
    pub fn split(&mut self, offset: u64) -> Result<Option<Invalidation>, HostError> {
        if offset >= self.pages {
            return Err(HostError::OutsideVma { offset });
        }
        if self.level(offset) == PageSize::Size4K {
            return Ok(None);
        }
        if !self.backing.splittable() {
            return Err(HostError::Unsplittable { backing: self.backing });
        }
        let per_2m = self.geometry.pages_per_2m();
        let region = offset / per_2m;
        self.split.insert(region);
        self.dirty.mark(region * per_2m, per_2m);
        Ok(Some(Invalidation { offset: region * per_2m, pages: per_2m }))
    }

    /// Collapse a split THP range back to a PMD mapping of the same frames (khugepaged's
    /// in-place collapse of a PTE-mapped THP). `Ok(None)` if nothing changed.
    pub fn collapse(&mut self, offset: u64) -> Result<Option<Invalidation>, HostError> {
        if offset >= self.pages {
            return Err(HostError::OutsideVma { offset });
        }
        let per_2m = self.geometry.pages_per_2m();
        let region = offset / per_2m;
        if self.backing != VmaBacking::Thp || !self.split.remove(&region) {
            return Ok(None);
        }
        self.dirty.mark(region * per_2m, per_2m);
        Ok(Some(Invalidation { offset: region * per_2m, pages: per_2m }))
    }

    /// Regions currently split to 4K (THP only).
    pub fn split_regions(&self) -> usize {
        self.split.len()
    }

    /// The page offsets of the 2M regions currently split to 4K, in order (THP only).
    pub fn split_offsets(&self) -> Vec<u64> {
        let per_2m = self.geometry.pages_per_2m();
        self.split.iter().map(|r| r * per_2m).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vma(backing: VmaBacking, pages: u64) -> GuestVma {
        GuestVma::new(Geometry::TINY, backing, Hva(0x4000_0000), Pfn(64), pages).unwrap()
    }

    #[test]
    fn thp_maps_whole_regions_at_2m_and_the_tail_at_4k() {
        let v = vma(VmaBacking::Thp, 10);
        assert_eq!(v.level(0), PageSize::Size2M);
        assert_eq!(v.level(7), PageSize::Size2M);
        assert_eq!(v.level(8), PageSize::Size4K);
        assert_eq!(v.translate(5), Some((Pfn(69), PageSize::Size2M)));
        assert_eq!(v.translate(10), None);
    }

    #[test]
    fn thp_splits_and_collapses_in_place() {
        let mut v = vma(VmaBacking::Thp, 8);
        assert_eq!(v.split(5).unwrap(), Some(Invalidation { offset: 4, pages: 4 }));
        assert_eq!(v.level(6), PageSize::Size4K);
        assert_eq!(v.level(1), PageSize::Size2M);
        assert_eq!(v.split(6).unwrap(), None);
        assert_eq!(v.collapse(7).unwrap(), Some(Invalidation { offset: 4, pages: 4 }));
        assert_eq!(v.level(6), PageSize::Size2M);
        assert_eq!(v.pfn(6), Some(Pfn(70)));
    }

    #[test]
    fn on_demand_units_are_populated_once_and_aligned() {
        let g = Geometry::TINY;
        let mut mem = HostMemory::new(g, 256);
        let mut v = GuestVma::on_demand(g, VmaBacking::Anon4k, Hva(0x4000_0000), 10).unwrap();
        assert_eq!(v.pfn(5), None);
        assert_eq!(v.populated_pages(), 0);
        mem.alloc(PageSize::Size4K).unwrap();
        assert!(v.populate(&mut mem, 5).unwrap());
        assert!(!v.populate(&mut mem, 6).unwrap());
        assert_eq!(v.pfn(5), Some(Pfn(5)));
        assert_eq!(v.pfn(3), None);
        assert!(v.populate(&mut mem, 9).unwrap());
        assert_eq!(v.runs(), vec![(4, Pfn(4), 4), (8, Pfn(8), 2)]);
        // Two units: the whole 4-page unit of offset 5 and the 2-page tail unit of offset 9.
        assert_eq!(v.populated_pages(), 4 + 2);
        assert_eq!(v.populate(&mut mem, 10), Err(HostError::OutsideVma { offset: 10 }));
    }

    #[test]
    fn hugetlbfs_never_splits() {
        let mut v = vma(VmaBacking::Hugetlbfs1g, 16);
        assert_eq!(v.level(3), PageSize::Size1G);
        assert_eq!(v.split(3), Err(HostError::Unsplittable { backing: VmaBacking::Hugetlbfs1g }));
        assert!(GuestVma::new(Geometry::TINY, VmaBacking::Hugetlbfs2m, Hva(0), Pfn(0), 6).is_err());
        let anon = vma(VmaBacking::Anon4k, 8);
        assert_eq!(anon.level(4), PageSize::Size4K);
        // Preallocated at VM start: every page has its frame from the beginning.
        assert_eq!(anon.populated_pages(), 8);
    }
}
