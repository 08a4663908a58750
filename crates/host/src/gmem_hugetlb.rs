//! guest_memfd with in-place conversion on HugeTLB folios: one file, one pool, holding a VM's
//! shared and private memory.
//!
//! Sources: in-place conversion (Ackerley Tng, Sean Christopherson, "KVM: guest_memfd: in-place
//! conversion", v6 of 7 May 2026, `20260507-gmem-inplace-conversion-v6-0-…`; v13 of 10 Sep 2026):
//! shareability is an attribute of the file (`KVM_SET_MEMORY_ATTRIBUTES2`), every page can be
//! mmap()ed, a host fault on a private page is SIGBUS, and a conversion fails while a page holds
//! an unexpected extra reference. HugeTLB folios (guestmem_hugetlb, RFC v2 May 2025,
//! `cover.1747264138`): a folio is split to 4K as soon as any of its pages becomes shared (shared
//! pages are mapped at 4K) and merged back when all of them are private again; shareability is
//! kept as ranges, since per-page updates of a 1G folio were "prohibitively slow".

use snpsim_defs::{PageSize, Pfn};
use snpsim_hw::{Geometry, RmpModel};
use snpsim_stores::PageSet;

use crate::{BlockMap, DirtyLog, Host, HostError, HostMemory, HostVia, HostWriteOutcome, RangeBacking};

/// The HugeTLB folio sizes of an in-place guest_memfd, with the scenario names of their backings
/// (a contract: scenarios and reports use these names, defined here once).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HugetlbFolio {
    /// 2 MiB HugeTLB folios (`gmem-hugetlb-2m`).
    Size2M,
    /// 1 GiB HugeTLB folios (`gmem-hugetlb-1g`).
    Size1G,
}

impl HugetlbFolio {
    /// Every HugeTLB folio size, smallest first.
    pub const ALL: [HugetlbFolio; 2] = [HugetlbFolio::Size2M, HugetlbFolio::Size1G];

    /// The backing's scenario name.
    pub const fn name(self) -> &'static str {
        match self {
            HugetlbFolio::Size2M => "gmem-hugetlb-2m",
            HugetlbFolio::Size1G => "gmem-hugetlb-1g",
        }
    }

    /// The backing named `name`.
    pub fn from_name(name: &str) -> Option<HugetlbFolio> {
        HugetlbFolio::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The folio size.
    pub const fn page_size(self) -> PageSize {
        match self {
            HugetlbFolio::Size2M => PageSize::Size2M,
            HugetlbFolio::Size1G => PageSize::Size1G,
        }
    }
}

/// Counters of the in-place file, named as the metrics that report them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GmemHugetlbStats {
    /// Allocated folios split to 4K because a page of theirs became shared.
    pub folio_splits: u64,
    /// Split allocated folios merged back because all their pages were private again.
    pub folio_merges: u64,
    /// Conversions refused because a page of the range held an extra reference.
    pub conversions_refused: u64,
    /// Host accesses through the file's mapping that faulted on a private page (VM_FAULT_SIGBUS).
    pub private_access_faults: u64,
}

/// A host access that faulted on a private page: the access named, for the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PrivateAccess {
    /// The file offset (page) accessed.
    pub offset: u64,
    /// How the host reached it.
    pub via: HostVia,
}

/// A guest_memfd file of `pages` pages with in-place conversion: shared and private pages live in
/// the same folios, allocated on first use from the HugeTLB pool (one pool for both states).
///
/// With 4K folios it is upstream's in-place file on 4K folios; nothing is ever split then.
#[derive(Clone, Debug)]
pub struct GmemHugetlb {
    geometry: Geometry,
    folio_size: PageSize,
    pages: u64,
    /// Allocated folios, by the file offset of their first page (always at their folio size:
    /// a split folio keeps its frames, only its mapping changes).
    folios: BlockMap,
    /// Shared offsets (KVM_SET_MEMORY_ATTRIBUTES2's shareability, stored as runs: a 1G range
    /// converted at once costs a few words, not 262,144 updates).
    shared: PageSet,
    /// Indices (offset / folio pages) of folios currently split to 4K, allocated or not.
    split: PageSet,
    /// Extra references per offset (a host pin such as an in-flight access): a conversion of a
    /// range holding one is refused.
    refs: std::collections::BTreeMap<u64, u32>,
    /// Counters.
    pub stats: GmemHugetlbStats,
    /// The first host access that faulted on a private page, if any.
    pub first_private_access: Option<PrivateAccess>,
    /// Pages allocated so far.
    pub allocated_pages: u64,
    /// Offsets whose folio, split state or shareability changed (incremental invariant check).
    pub dirty: DirtyLog,
}

impl GmemHugetlb {
    /// An empty file of `pages` pages with folios of `folio_size`. A HugeTLB file is a whole
    /// number of its pages (`hugetlbfs_fallocate` works in huge pages).
    pub fn new(geometry: Geometry, folio_size: PageSize, pages: u64) -> Result<Self, HostError> {
        let unit = geometry.pages(folio_size);
        if !pages.is_multiple_of(unit) {
            return Err(HostError::HugetlbfsSize { pages, unit });
        }
        Ok(GmemHugetlb {
            geometry,
            folio_size,
            pages,
            folios: BlockMap::new(geometry),
            shared: PageSet::new(),
            split: PageSet::new(),
            refs: std::collections::BTreeMap::new(),
            stats: GmemHugetlbStats::default(),
            first_private_access: None,
            allocated_pages: 0,
            dirty: DirtyLog::default(),
        })
    }

    /// Bytes of memory the file's state takes.
    pub fn state_bytes(&self) -> usize {
        self.folios.state_bytes()
            + self.shared.state_bytes()
            + self.split.state_bytes()
            + self.refs.len() * 2 * size_of::<u64>()
    }

    /// The folio size.
    pub fn folio_size(&self) -> PageSize {
        self.folio_size
    }

    /// Pages in the file.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// Pages per folio.
    pub fn folio_pages(&self) -> u64 {
        self.geometry.pages(self.folio_size)
    }

    /// The index of the folio holding `offset`.
    fn folio_index(&self, offset: u64) -> u64 {
        offset / self.folio_pages()
    }

    /// Whether `offset` is shared.
    pub fn is_shared(&self, offset: u64) -> bool {
        self.shared.contains(offset)
    }

    /// Whether the folio holding `offset` is split to 4K.
    pub fn is_split(&self, offset: u64) -> bool {
        self.split.contains(self.folio_index(offset))
    }

    /// The size a page of `offset` is mapped at: 4K in a split folio, else the folio's size. KVM
    /// never maps larger.
    pub fn mapping_size(&self, offset: u64) -> PageSize {
        if self.is_split(offset) { PageSize::Size4K } else { self.folio_size }
    }

    /// The frame of `offset` and its mapping size, if its folio is allocated.
    pub fn pfn(&self, offset: u64) -> Option<(Pfn, PageSize)> {
        let (start, _, pfn) = self.folios.holding(offset)?;
        Some((pfn.checked_add(offset - start)?, self.mapping_size(offset)))
    }

    /// The frame of `offset` and its mapping size, allocating its folio from the pool first if
    /// needed; the flag says whether a folio was allocated.
    pub fn get_pfn(&mut self, mem: &mut HostMemory, offset: u64) -> Result<(Pfn, PageSize, bool), HostError> {
        if offset >= self.pages {
            return Err(HostError::OutsideGmem { offset });
        }
        if let Some((pfn, size)) = self.pfn(offset) {
            return Ok((pfn, size, false));
        }
        let n = self.folio_pages();
        let start = offset / n * n;
        let pfn = mem.alloc(self.folio_size)?;
        self.folios.insert(start, self.folio_size, pfn);
        self.allocated_pages += n;
        self.dirty.mark(start, n);
        let page = pfn.checked_add(offset - start).ok_or(HostError::OutsideGmem { offset })?;
        Ok((page, self.mapping_size(offset), true))
    }

    /// How the file backs the aligned range `start..start + pages` (a 2M range, for the largest
    /// leaf KVM could map it with): within one unsplit allocated folio (its frame at `start`), not
    /// allocated in an unsplit folio large enough, or only at a smaller size (a split folio, whose
    /// pages are mapped at 4K, or a folio smaller than the range).
    pub fn range_backing(&self, start: u64, pages: u64) -> RangeBacking {
        let end = start.saturating_add(pages);
        let n = self.folio_pages();
        if end > self.pages || n < pages || self.folio_index(start) != self.folio_index(end - 1) {
            return RangeBacking::Smaller;
        }
        if self.is_split(start) {
            return RangeBacking::Smaller;
        }
        match self.pfn(start) {
            Some((pfn, _)) => RangeBacking::Folio(pfn),
            None => RangeBacking::Unallocated,
        }
    }

    /// Close the file (VM teardown): every folio goes back to the host's pool, and the file holds
    /// nothing. The caller has returned their frames to the hypervisor in the RMP first
    /// (`sev_gmem_invalidate` runs as a folio is freed). A pinned page keeps nothing alive here:
    /// the teardown step comes last, after every pin the scenario took.
    pub fn release(&mut self, mem: &mut HostMemory) -> Result<(), HostError> {
        let folios: Vec<Pfn> = self.folios.iter().map(|(_, _, pfn)| pfn).collect();
        for pfn in folios {
            mem.free(pfn, self.folio_size)?;
        }
        self.dirty.mark(0, self.pages);
        self.folios = BlockMap::new(self.geometry);
        self.shared = PageSet::new();
        self.split = PageSet::new();
        self.refs.clear();
        self.allocated_pages = 0;
        Ok(())
    }

    /// Allocated folios with the offset of their first page, in offset order.
    pub fn folios(&self) -> impl Iterator<Item = (u64, Pfn)> + '_ {
        self.folios.iter().map(|(o, _, pfn)| (o, pfn))
    }

    /// The allocated folios holding a page of `start..end`, with the offset of their first page,
    /// in offset order (the one holding `start` first, when it begins before it).
    pub fn folios_in(&self, start: u64, end: u64) -> Vec<(u64, Pfn)> {
        let mut out: Vec<(u64, Pfn)> = self
            .folios
            .holding(start)
            .filter(|&(s, _, _)| s < start)
            .map(|(s, _, p)| (s, p))
            .into_iter()
            .collect();
        out.extend(
            self.folios
                .keys_in(start, end)
                .into_iter()
                .filter_map(|k| self.folios.get(k).map(|(_, p)| (k, p))),
        );
        out
    }

    /// Take an extra reference on `offset` (a host pin: get_user_pages on the file's mapping, an
    /// in-flight access).
    pub fn get_ref(&mut self, offset: u64) -> Result<(), HostError> {
        if offset >= self.pages {
            return Err(HostError::OutsideGmem { offset });
        }
        *self.refs.entry(offset).or_default() += 1;
        Ok(())
    }

    /// Drop an extra reference on `offset`.
    pub fn put_ref(&mut self, offset: u64) -> Result<(), HostError> {
        let Some(n) = self.refs.get_mut(&offset) else { return Err(HostError::NoReference { offset }) };
        *n -= 1;
        if *n == 0 {
            self.refs.remove(&offset);
        }
        Ok(())
    }

    /// Extra references held on `offset`.
    pub fn extra_refs(&self, offset: u64) -> u32 {
        self.refs.get(&offset).copied().unwrap_or(0)
    }

    /// The in-place conversion's refcount check (`kvm_gmem_convert`: a folio with an unexpected
    /// reference cannot change shareability, the ioctl fails with the offset): refuse, counting it,
    /// when a page of `start..start + count` holds an extra reference. Nothing changes either way.
    pub fn check_convertible(&mut self, start: u64, count: u64) -> Result<(), HostError> {
        let end = start
            .checked_add(count)
            .filter(|&e| e <= self.pages)
            .ok_or(HostError::OutsideGmem { offset: start })?;
        if let Some((&offset, &refs)) = self.refs.range(start..end).next() {
            self.stats.conversions_refused += 1;
            return Err(HostError::ExtraReference { offset, refs });
        }
        Ok(())
    }

    /// Set the shareability of `start..start + count` (KVM_SET_MEMORY_ATTRIBUTES2 on the file).
    /// Returns the pages whose shareability changed. Splitting and merging folios are separate
    /// steps ([`GmemHugetlb::split_for_shared`], [`GmemHugetlb::merge_private`]) so that KVM can
    /// order them against its unmap.
    pub fn set_shared(&mut self, start: u64, count: u64, shared: bool) -> u64 {
        let end = start.saturating_add(count).min(self.pages);
        let changed = if shared { self.shared.insert(start, end) } else { self.shared.remove(start, end) };
        if changed > 0 {
            self.dirty.mark(start, end - start);
        }
        changed
    }

    /// The offsets of the folios holding any page of `start..start + count`, as one range
    /// `(first, end)` aligned to the folios' mapping: the whole folios while they are unsplit, the
    /// range itself where they are split (a split folio's pages are separate 4K folios).
    pub fn folio_span(&self, start: u64, count: u64) -> (u64, u64) {
        let end = start.saturating_add(count).min(self.pages);
        if start >= end {
            return (start, start);
        }
        let n = self.folio_pages();
        let first = if self.is_split(start) { start } else { start / n * n };
        let last = if self.is_split(end - 1) { end } else { (end - 1) / n * n + n };
        (first, last)
    }

    /// Split to 4K every unsplit folio holding a page of `start..start + count` (guestmem_hugetlb
    /// splits a folio as soon as one of its pages becomes shared). Returns the offset ranges split,
    /// whole folios. An unallocated folio is marked split too (it is allocated split) but does not
    /// count in `folio_splits`; 4K folios never split.
    pub fn split_for_shared(&mut self, start: u64, count: u64) -> Vec<(u64, u64)> {
        let n = self.folio_pages();
        let end = start.saturating_add(count).min(self.pages);
        if n == 1 || start >= end {
            return Vec::new();
        }
        let mut out = Vec::new();
        for f in self.folio_index(start)..=self.folio_index(end - 1) {
            if self.split.insert(f, f + 1) == 0 {
                continue;
            }
            if self.folios.get(f * n).is_some() {
                self.stats.folio_splits += 1;
            }
            self.dirty.mark(f * n, n);
            out.push((f * n, f * n + n));
        }
        out
    }

    /// Merge back every split folio holding a page of `start..start + count` whose pages are all
    /// private again. Returns the offset ranges merged.
    pub fn merge_private(&mut self, start: u64, count: u64) -> Vec<(u64, u64)> {
        let n = self.folio_pages();
        let end = start.saturating_add(count).min(self.pages);
        if n == 1 || start >= end {
            return Vec::new();
        }
        let mut out = Vec::new();
        for f in self.folio_index(start)..=self.folio_index(end - 1) {
            let (s, e) = (f * n, f * n + n);
            if !self.split.contains(f) || self.shared.count_in(s, e) > 0 {
                continue;
            }
            self.split.remove(f, f + 1);
            if self.folios.get(s).is_some() {
                self.stats.folio_merges += 1;
            }
            self.dirty.mark(s, n);
            out.push((s, e));
        }
        out
    }

    /// The allocated frames of `start..start + count` as runs `(first frame, pages)`, in order.
    pub fn frame_runs(&self, start: u64, count: u64) -> Vec<(Pfn, u64)> {
        let end = start.saturating_add(count).min(self.pages);
        let n = self.folio_pages();
        let mut out = Vec::new();
        let mut pos = start;
        while pos < end {
            let folio_end = (pos / n * n + n).min(end);
            if let Some((pfn, _)) = self.pfn(pos) {
                out.push((pfn, folio_end - pos));
            }
            pos = folio_end;
        }
        out
    }

    /// The host's page fault on the file's mapping (`kvm_gmem_fault_user_mapping`): a private
    /// page is VM_FAULT_SIGBUS — counted, and the first such access named — with no RMP #PF and no
    /// split; a shared page is faulted in at 4K (allocating its folio).
    pub fn fault_user(&mut self, mem: &mut HostMemory, offset: u64, via: HostVia) -> Result<Pfn, HostError> {
        if offset >= self.pages {
            return Err(HostError::OutsideGmem { offset });
        }
        if !self.is_shared(offset) {
            self.stats.private_access_faults += 1;
            self.first_private_access.get_or_insert(PrivateAccess { offset, via });
            return Err(HostError::PrivateGmemPage { offset });
        }
        self.get_pfn(mem, offset).map(|(pfn, _, _)| pfn)
    }
}

impl Host {
    /// A host of `host_pages` frames running one VM of `guest_pages` pages whose memory, shared
    /// and private, is one in-place guest_memfd with folios of `folio` (4K, or a HugeTLB size).
    /// The VMA is the gmem era's on-demand one, 4K, and holds no guest memory under in-place
    /// conversion.
    pub fn new_in_place(
        geometry: Geometry,
        host_pages: u64,
        guest_pages: u64,
        folio: PageSize,
    ) -> Result<Self, HostError> {
        let mut host = Host::new(geometry, host_pages, guest_pages, crate::VmaBacking::Anon4k, Some(folio))?;
        host.gmem = None;
        host.gmem_hugetlb = Some(GmemHugetlb::new(geometry, folio, guest_pages)?);
        Ok(host)
    }

    /// The frame of guest_memfd page `offset` and the largest size it may be mapped at, from the
    /// VM's guest_memfd file, whichever kind it is.
    pub fn gmem_frame(&self, offset: u64) -> Option<(Pfn, PageSize)> {
        match (&self.gmem_hugetlb, &self.gmem) {
            (Some(f), _) => f.pfn(offset),
            (None, Some(g)) => g.pfn(offset),
            (None, None) => None,
        }
    }

    /// [`Host::gmem_frame`], allocating the folio first (`kvm_gmem_get_pfn`); the flag says whether
    /// a folio was allocated.
    pub fn gmem_get_pfn(&mut self, offset: u64) -> Result<(Pfn, PageSize, bool), HostError> {
        match (&mut self.gmem_hugetlb, &mut self.gmem) {
            (Some(f), _) => f.get_pfn(&mut self.memory, offset),
            (None, Some(g)) => g.get_pfn(&mut self.memory, offset),
            (None, None) => Err(HostError::OutsideGmem { offset }),
        }
    }

    /// How the VM's guest_memfd backs an aligned range ([`crate::Gmem::range_backing`],
    /// [`GmemHugetlb::range_backing`]); `None` without one.
    pub fn gmem_range_backing(&self, start: u64, pages: u64) -> Option<RangeBacking> {
        match (&self.gmem_hugetlb, &self.gmem) {
            (Some(f), _) => Some(f.range_backing(start, pages)),
            (None, Some(g)) => Some(g.range_backing(start, pages)),
            (None, None) => None,
        }
    }

    /// A host write to page `offset` through the in-place file's mapping (`Vmm` or `Uaccess`;
    /// `Kernel` writes go through the direct map). A private page faults with VM_FAULT_SIGBUS:
    /// SIGBUS for the VMM, -EFAULT for a kernel uaccess (its exception fixup), counted in `sigbus`
    /// / `efault` and named in the file's `first_private_access`; no RMP #PF is taken and nothing
    /// is split. A shared page is mapped at 4K and checked by the hardware like any host write.
    pub fn write_via_gmem(&mut self, rmp: &dyn RmpModel, offset: u64, via: HostVia) -> HostWriteOutcome {
        let user = via == HostVia::Vmm;
        let fail = if user { HostWriteOutcome::Sigbus } else { HostWriteOutcome::Efault };
        let Some(file) = self.gmem_hugetlb.as_mut() else { return fail };
        let outcome = match via {
            HostVia::Kernel => match file.get_pfn(&mut self.memory, offset) {
                Ok((pfn, _, _)) => return self.write_via_direct_map(rmp, pfn),
                Err(_) => fail,
            },
            HostVia::Vmm | HostVia::Uaccess => match file.fault_user(&mut self.memory, offset, via) {
                Ok(pfn) => {
                    // S8: the write reaches the hardware's RMP check (skipped in a marked region).
                    self.count_rmp_check(rmp, pfn);
                    if rmp.check_host_write(pfn, PageSize::Size4K, user).is_ok() {
                        HostWriteOutcome::Done
                    } else {
                        // A shared page still assigned in the RMP: the RMP #PF handler's SIGBUS /
                        // -EFAULT.
                        fail
                    }
                }
                Err(_) => fail,
            },
        };
        match outcome {
            HostWriteOutcome::Sigbus => self.stats.sigbus += 1,
            HostWriteOutcome::Efault => self.stats.efault += 1,
            _ => {}
        }
        outcome
    }

    /// Whether the RMP entry of the in-place file's page `offset` is assigned (for tests and
    /// checks: a shared page must not be).
    pub fn gmem_page_assigned(&self, rmp: &dyn RmpModel, offset: u64) -> bool {
        self.gmem_frame(offset).and_then(|(pfn, _)| rmp.lookup(pfn)).is_some_and(|(assigned, _)| assigned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use snpsim_defs::RmpArchEntry;
    use snpsim_hw::RmpConfig;
    use snpsim_hw::rmp::Rmp;

    // Tiny geometry: a 2M folio is 4 pages, a 1G folio 16.
    const G: Geometry = Geometry::TINY;

    #[test]
    fn names_are_the_contract() {
        assert_eq!(HugetlbFolio::Size2M.name(), "gmem-hugetlb-2m");
        assert_eq!(HugetlbFolio::Size1G.name(), "gmem-hugetlb-1g");
        for f in HugetlbFolio::ALL {
            assert_eq!(HugetlbFolio::from_name(f.name()), Some(f));
        }
        assert_eq!(HugetlbFolio::from_name("gmem-2m"), None);
    }

    #[test]
    fn the_file_is_a_whole_number_of_huge_pages() {
        // 20 pages are one 1G folio (16) and a quarter.
        assert_eq!(
            GmemHugetlb::new(G, PageSize::Size1G, 20).unwrap_err(),
            HostError::HugetlbfsSize { pages: 20, unit: 16 }
        );
        assert!(GmemHugetlb::new(G, PageSize::Size2M, 20).is_ok());
    }

    /// One shared page splits its 1G folio (once, however many of its pages follow), and the folio
    /// merges back when the last of them is private again.
    #[test]
    fn a_folio_splits_on_the_first_shared_page_and_merges_when_all_are_private() {
        let mut mem = HostMemory::new(G, 256);
        let mut f = GmemHugetlb::new(G, PageSize::Size1G, 32).unwrap();
        let (pfn, size, new) = f.get_pfn(&mut mem, 3).unwrap();
        assert_eq!((size, new), (PageSize::Size1G, true));
        let base = pfn.raw() - 3;
        // Page 3 becomes shared: its folio (0..16) splits, the other one (16..32) is unallocated
        // and untouched.
        assert_eq!(f.set_shared(3, 1, true), 1);
        assert_eq!(f.split_for_shared(3, 1), vec![(0, 16)]);
        assert_eq!(f.pfn(5), Some((Pfn::new(base + 5), PageSize::Size4K)));
        assert_eq!(f.range_backing(0, 4), RangeBacking::Smaller);
        assert_eq!(f.range_backing(16, 4), RangeBacking::Unallocated);
        // A second shared page in the same folio splits nothing more.
        f.set_shared(9, 1, true);
        assert!(f.split_for_shared(9, 1).is_empty());
        assert_eq!(f.stats.folio_splits, 1);
        // Page 3 private again: page 9 is still shared, no merge.
        f.set_shared(3, 1, false);
        assert!(f.merge_private(3, 1).is_empty());
        // Page 9 private: the folio merges; the frames never moved.
        f.set_shared(9, 1, false);
        assert_eq!(f.merge_private(9, 1), vec![(0, 16)]);
        assert_eq!(f.pfn(5), Some((Pfn::new(base + 5), PageSize::Size1G)));
        assert_eq!((f.stats.folio_splits, f.stats.folio_merges), (1, 1));
        // One 1G folio allocated: 16 pages.
        assert_eq!(f.allocated_pages, 16);
    }

    /// The span KVM must unmap before a split is the whole folio; once split, only the range.
    #[test]
    fn the_folio_span_is_the_whole_folio_until_it_splits() {
        let mut f = GmemHugetlb::new(G, PageSize::Size1G, 32).unwrap();
        assert_eq!(f.folio_span(5, 1), (0, 16));
        // A range crossing two folios spans both.
        assert_eq!(f.folio_span(15, 2), (0, 32));
        f.split_for_shared(5, 1);
        assert_eq!(f.folio_span(5, 1), (5, 6));
    }

    /// An extra reference anywhere in the range refuses the conversion (counted) and changes
    /// nothing; once dropped, the same check passes.
    #[test]
    fn an_extra_reference_refuses_a_conversion_until_it_is_dropped() {
        let mut f = GmemHugetlb::new(G, PageSize::Size2M, 8).unwrap();
        f.get_ref(6).unwrap();
        f.get_ref(6).unwrap();
        assert_eq!(f.check_convertible(4, 4), Err(HostError::ExtraReference { offset: 6, refs: 2 }));
        // Outside the range, the reference does not matter.
        assert_eq!(f.check_convertible(0, 4), Ok(()));
        f.put_ref(6).unwrap();
        assert_eq!(f.check_convertible(4, 4), Err(HostError::ExtraReference { offset: 6, refs: 1 }));
        f.put_ref(6).unwrap();
        assert_eq!(f.check_convertible(4, 4), Ok(()));
        assert_eq!(f.put_ref(6), Err(HostError::NoReference { offset: 6 }));
        // Two refused checks.
        assert_eq!(f.stats.conversions_refused, 2);
    }

    /// A host write to a private page is SIGBUS (VMM) or -EFAULT (uaccess) with no RMP #PF and no
    /// split; a shared page's write completes at 4K.
    #[test]
    fn a_host_write_to_a_private_page_faults_with_sigbus_and_names_the_access() {
        let host_pages = 256;
        let mut host = Host::new_in_place(G, host_pages, 16, PageSize::Size1G).unwrap();
        let rmp = Rmp::new(RmpConfig::tiny(host_pages));
        assert_eq!(host.write_via_gmem(&rmp, 2, HostVia::Vmm), HostWriteOutcome::Sigbus);
        assert_eq!(host.write_via_gmem(&rmp, 3, HostVia::Uaccess), HostWriteOutcome::Efault);
        let file = host.gmem_hugetlb.as_mut().unwrap();
        assert_eq!(file.stats.private_access_faults, 2);
        assert_eq!(file.first_private_access, Some(PrivateAccess { offset: 2, via: HostVia::Vmm }));
        // The fault allocated nothing and split nothing.
        assert_eq!((file.allocated_pages, file.stats.folio_splits), (0, 0));
        file.set_shared(2, 1, true);
        file.split_for_shared(2, 1);
        assert_eq!(host.write_via_gmem(&rmp, 2, HostVia::Vmm), HostWriteOutcome::Done);
        assert_eq!((host.stats.sigbus, host.stats.efault, host.stats.host_splits), (1, 1, 0));
        assert!(!host.gmem_page_assigned(&rmp, 2));
    }

    /// A host's `Debug` form (read by state hashes) names the in-place file only when it has one.
    #[test]
    fn the_debug_form_shows_the_in_place_file_only_when_present() {
        let plain = Host::new(G, 256, 16, crate::VmaBacking::Thp, Some(PageSize::Size2M)).unwrap();
        let in_place = Host::new_in_place(G, 256, 16, PageSize::Size2M).unwrap();
        assert!(!format!("{plain:?}").contains("gmem_hugetlb"));
        assert!(format!("{in_place:?}").contains("gmem_hugetlb: GmemHugetlb {"));
        // The fields around it keep the derived order.
        assert!(format!("{plain:?}").contains("gmem: Some(Gmem"));
        assert!(format!("{plain:?}").ends_with("unsplittable_rmp_fault: Sigbus }"));
    }

    proptest::proptest! {
        /// Against a page-by-page reference: after any sequence of conversions done in KVM's
        /// order (shareability, then split for shared / merge for private), a folio is split
        /// exactly when one of its pages is shared, an allocated folio maps at 4K exactly then,
        /// and `folio_splits` − `folio_merges` is the number of allocated folios split now.
        #[test]
        fn split_state_matches_a_per_page_reference(
            folio_1g in proptest::bool::ANY,
            allocs in proptest::collection::vec(0u64..64, 0..6),
            ops in proptest::collection::vec((0u64..64, 1u64..9, proptest::bool::ANY), 0..40),
        ) {
            let size = if folio_1g { PageSize::Size1G } else { PageSize::Size2M };
            let n = G.pages(size);
            let pages = 64;
            let mut mem = HostMemory::new(G, 1024);
            let mut f = GmemHugetlb::new(G, size, pages).unwrap();
            for &a in &allocs {
                f.get_pfn(&mut mem, a).unwrap();
            }
            let mut shared = [false; 64];
            for &(start, count, to_shared) in &ops {
                let count = count.min(pages - start);
                f.set_shared(start, count, to_shared);
                for s in &mut shared[start as usize..(start + count) as usize] {
                    *s = to_shared;
                }
                if to_shared {
                    f.split_for_shared(start, count);
                } else {
                    f.merge_private(start, count);
                }
            }
            let mut split_allocated = 0;
            for folio in 0..pages / n {
                let any_shared = shared[(folio * n) as usize..((folio + 1) * n) as usize].contains(&true);
                proptest::prop_assert_eq!(f.is_split(folio * n), any_shared, "folio {}", folio);
                if let Some((_, mapped)) = f.pfn(folio * n) {
                    let want = if any_shared { PageSize::Size4K } else { size };
                    proptest::prop_assert_eq!(mapped, want);
                    split_allocated += u64::from(any_shared);
                }
            }
            for (page, &s) in shared.iter().enumerate() {
                proptest::prop_assert_eq!(f.is_shared(page as u64), s);
            }
            proptest::prop_assert_eq!(f.stats.folio_splits - f.stats.folio_merges, split_allocated);
        }
    }

    /// A shared page still assigned in the RMP (a conversion that skipped its RMPUPDATE) is caught
    /// by the hardware's host-write check.
    #[test]
    fn a_shared_page_left_assigned_faults_the_host_write() {
        let host_pages = 256;
        let mut host = Host::new_in_place(G, host_pages, 4, PageSize::Size2M).unwrap();
        let mut rmp = Rmp::new(RmpConfig::tiny(host_pages));
        let file = host.gmem_hugetlb.as_mut().unwrap();
        let (pfn, _, _) = file.get_pfn(&mut host.memory, 1).unwrap();
        file.set_shared(1, 1, true);
        let private = RmpArchEntry::new()
            .with_assigned(true)
            .with_asid(1)
            .with_gpa(snpsim_defs::Gpa::new(G.bytes(PageSize::Size4K)));
        assert_eq!(rmp.rmpupdate(pfn, private), snpsim_defs::ReturnCode::Success);
        assert_eq!(host.write_via_gmem(&rmp, 1, HostVia::Vmm), HostWriteOutcome::Sigbus);
        // Not a private-page fault of the file: the RMP check's.
        assert_eq!(host.gmem_hugetlb.as_ref().unwrap().stats.private_access_faults, 0);
    }
}
