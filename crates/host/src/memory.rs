//! Host physical memory: a deterministic page allocator that never hands out a frame twice.

use std::collections::BTreeMap;

use snpsim_defs::{PageSize, Pfn};
use snpsim_hw::Geometry;
use snpsim_stores::PageSet;

use crate::{BlockMap, DirtyLog, HostError};

/// Blocks of one size given back, as the set of their block numbers (first frame / block size):
/// blocks freed one by one between allocated ones cost bits, not tree nodes.
#[derive(Clone, Default)]
struct FreeBlocks {
    blocks: PageSet,
    /// No block below this one is free (where the search for the lowest starts).
    low: u64,
}

/// The free blocks, whatever the search hint.
impl core::fmt::Debug for FreeBlocks {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.blocks.fmt(f)
    }
}

impl FreeBlocks {
    /// Take the lowest free block.
    fn pop_first(&mut self) -> Option<u64> {
        let b = self.blocks.first_from(self.low)?;
        self.blocks.remove(b, b + 1);
        self.low = b + 1;
        Some(b)
    }

    /// Give back block `b`; `false` if it was free already.
    fn insert(&mut self, b: u64) -> bool {
        self.low = self.low.min(b);
        self.blocks.insert(b, b + 1) == 1
    }
}

/// Where single 4K blocks come from (`[machine] allocation`, `docs/semantics.md` S7).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::Display,
)]
#[strum(serialize_all = "lowercase")]
pub enum Allocation {
    /// From the bump pointer, in order: consecutive 4K folios are consecutive frames.
    #[default]
    Contiguous,
    /// A fragmented host: the k-th new 4K block is taken in 1 GiB region `k mod R` (of the `R`
    /// regions of host memory), downward from the region's top, so consecutive 4K folios land in
    /// different 1 GiB regions. Larger blocks still come from the bump pointer; a request the two
    /// would both need fails as out of memory rather than hand a frame out twice.
    Scattered,
}

/// The host's RAM, frames `0..pages`, handed out in naturally aligned 4K, 2M or 1G blocks.
///
/// Allocation is a bump pointer per request, aligned up to the block size, plus a free set per size
/// for blocks given back; the lowest free block is reused first, so runs are reproducible. A freed
/// block is never merged into a larger one (Linux's buddy allocator would; the model has no need).
#[derive(Clone)]
pub struct HostMemory {
    geometry: Geometry,
    pages: u64,
    next: u64,
    free: BTreeMap<PageSize, FreeBlocks>,
    /// Blocks handed out, keyed by first frame (bookkeeping only: a bump-allocated range is
    /// recorded as its first block, and a block allocated inside a split larger one replaces it).
    allocated: BlockMap,
    /// Frames handed out or given back (for the incremental invariant check: a freed frame must
    /// not stay assigned to the guest).
    pub dirty: DirtyLog,
    allocation: Allocation,
    /// Scattered 4K blocks handed out so far (the next one's index `k`).
    scattered_next: u64,
    /// The frames scattered 4K blocks took (the bump pointer must not hand them out again).
    scattered: PageSet,
}

/// The derived form, with the scattered allocator's state only when it is in use: the trace's
/// `state_hash` digests this text, so traces of contiguous hosts keep their hashes.
impl core::fmt::Debug for HostMemory {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut d = f.debug_struct("HostMemory");
        d.field("geometry", &self.geometry)
            .field("pages", &self.pages)
            .field("next", &self.next)
            .field("free", &self.free)
            .field("allocated", &self.allocated)
            .field("dirty", &self.dirty);
        if self.allocation != Allocation::Contiguous {
            d.field("allocation", &self.allocation)
                .field("scattered_next", &self.scattered_next)
                .field("scattered", &self.scattered);
        }
        d.finish()
    }
}

impl HostMemory {
    /// A host with `pages` 4 KiB frames.
    pub fn new(geometry: Geometry, pages: u64) -> Self {
        HostMemory {
            geometry,
            pages,
            next: 0,
            free: BTreeMap::new(),
            allocated: BlockMap::new(geometry),
            dirty: DirtyLog::default(),
            allocation: Allocation::Contiguous,
            scattered_next: 0,
            scattered: PageSet::new(),
        }
    }

    /// Where single 4K blocks come from from now on.
    pub fn set_allocation(&mut self, allocation: Allocation) {
        self.allocation = allocation;
    }

    /// Bytes of memory the allocator's bookkeeping takes (B-tree entries estimated).
    pub fn state_bytes(&self) -> usize {
        let free: usize = self.free.values().map(|f| f.blocks.state_bytes()).sum();
        self.allocated.state_bytes() + free + self.scattered.state_bytes()
    }

    /// Frames of RAM.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// The geometry.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// Allocate one naturally aligned block of `size`.
    pub fn alloc(&mut self, size: PageSize) -> Result<Pfn, HostError> {
        self.alloc_pages(size, self.geometry.pages(size))
    }

    /// Allocate `count` contiguous frames aligned to `align` (for a VMA populated at VM start).
    pub fn alloc_pages(&mut self, align: PageSize, count: u64) -> Result<Pfn, HostError> {
        if count == self.geometry.pages(align)
            && let Some(set) = self.free.get_mut(&align)
            && let Some(block) = set.pop_first()
        {
            let pfn = Pfn::new(block * self.geometry.pages(align));
            self.allocated.insert(pfn.raw(), align, pfn);
            return Ok(pfn);
        }
        if self.allocation == Allocation::Scattered && align == PageSize::Size4K && count == 1 {
            return self.alloc_scattered();
        }
        let step = self.geometry.pages(align);
        let start = self.next.div_ceil(step) * step;
        let end = start.checked_add(count).ok_or(HostError::OutOfMemory { requested: count })?;
        if end > self.pages || self.scattered.count_in(start, end) > 0 {
            return Err(HostError::OutOfMemory { requested: count });
        }
        self.next = end;
        self.allocated.insert(start, align, Pfn::new(start));
        Ok(Pfn::new(start))
    }

    /// The next scattered 4K block ([`Allocation::Scattered`]): the k-th goes to 1 GiB region
    /// `k mod R`, at `k div R` frames below the region's top, skipping frames the bump pointer has
    /// passed.
    fn alloc_scattered(&mut self) -> Result<Pfn, HostError> {
        let region = self.geometry.pages(PageSize::Size1G).min(self.pages);
        let regions = self.pages.div_ceil(region);
        while self.scattered_next < self.pages {
            let k = self.scattered_next;
            self.scattered_next += 1;
            let top = ((k % regions + 1) * region).min(self.pages);
            let Some(pfn) = top.checked_sub(1 + k / regions) else { continue };
            if pfn >= self.next && pfn >= (k % regions) * region {
                self.scattered.insert(pfn, pfn + 1);
                self.allocated.insert(pfn, PageSize::Size4K, Pfn::new(pfn));
                return Ok(Pfn::new(pfn));
            }
        }
        Err(HostError::OutOfMemory { requested: 1 })
    }

    /// Give back a block of `size` at `pfn` that was allocated (whole or as a piece of a split
    /// block). Freeing a frame that is already free is an error: it would be handed out twice.
    pub fn free(&mut self, pfn: Pfn, size: PageSize) -> Result<(), HostError> {
        let set = self.free.entry(size).or_default();
        // Blocks are naturally aligned (they were handed out so, or are pieces of such a block).
        debug_assert!(pfn.is_aligned(self.geometry.pages(size)));
        if !set.insert(pfn.raw() / self.geometry.pages(size)) {
            return Err(HostError::DoubleFree { pfn });
        }
        self.allocated.remove(pfn.raw());
        self.dirty.mark(pfn.raw(), self.geometry.pages(size));
        Ok(())
    }

    /// Frames handed out and not given back, counting bump-allocated ranges in full.
    pub fn used_pages(&self) -> u64 {
        let freed: u64 =
            self.free.iter().map(|(size, set)| set.blocks.len() * self.geometry.pages(*size)).sum();
        (self.next + self.scattered.len()).saturating_sub(freed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_aligned_disjoint_and_reused_lowest_first() {
        let g = Geometry::X86;
        let mut m = HostMemory::new(g, 4 << 18);
        let a = m.alloc(PageSize::Size4K).unwrap();
        let b = m.alloc(PageSize::Size2M).unwrap();
        let c = m.alloc(PageSize::Size1G).unwrap();
        // The bump pointer aligns each block to its size: 4K at 0, 2M at the next 2M boundary
        // (512), 1G at the next 1G boundary (2^18).
        assert_eq!(a, Pfn::new(0));
        assert_eq!(b, Pfn::new(512));
        assert_eq!(c, Pfn::new(1 << 18));
        m.free(b, PageSize::Size2M).unwrap();
        assert_eq!(m.free(b, PageSize::Size2M), Err(HostError::DoubleFree { pfn: b }));
        assert_eq!(m.alloc(PageSize::Size2M).unwrap(), b);
        assert!(matches!(m.alloc_pages(PageSize::Size1G, 3 << 18), Err(HostError::OutOfMemory { .. })));
    }

    /// Scattered 4K blocks go round the 1 GiB regions from their tops, never to a frame the bump
    /// pointer handed out, and the bump pointer never hands one of them out.
    #[test]
    fn scattered_4k_blocks_go_round_the_regions_and_stay_disjoint() {
        let g = Geometry::X86;
        let region = 1 << 18;
        let mut m = HostMemory::new(g, 4 * region);
        let two_m = m.alloc(PageSize::Size2M).unwrap();
        m.set_allocation(Allocation::Scattered);
        let got: Vec<u64> = (0..6).map(|_| m.alloc(PageSize::Size4K).unwrap().raw()).collect();
        // k = 0..3: the top frame of regions 0..3; k = 4, 5: one below the top of regions 0, 1.
        let r = region;
        assert_eq!(got, vec![r - 1, 2 * r - 1, 3 * r - 1, 4 * r - 1, r - 2, 2 * r - 2]);
        assert_eq!(m.used_pages(), 512 + 6);
        // The bump pointer is at 512: a 1G block from 2^18 would cover a scattered frame.
        assert!(matches!(m.alloc(PageSize::Size1G), Err(HostError::OutOfMemory { .. })));
        assert_eq!(m.alloc(PageSize::Size2M).unwrap(), Pfn::new(two_m.raw() + 512));
        // A freed scattered block is reused first.
        m.free(Pfn::new(r - 1), PageSize::Size4K).unwrap();
        assert_eq!(m.alloc(PageSize::Size4K).unwrap(), Pfn::new(r - 1));
    }
}
