//! Memory acceptance as a Linux guest does it, and the boot-time layout that decides what is
//! accepted and shared up front.
//!
//! Linux (≥ 6.5, `drivers/firmware/efi/unaccepted_memory.c`, `arch/x86/boot/compressed/mem.c`)
//! keeps unaccepted memory in a bitmap with one bit per `unit_size` = 2 MiB (PMD_SIZE). The EFI stub
//! (`process_unaccepted_memory`) accepts up front what the bitmap cannot represent — a range shorter
//! than two units entirely, otherwise its head and tail outside 2M alignment — and records the
//! rest. `accept_memory(start, end)` accepts every unit the range touches (the range is widened to
//! whole units) and clears their bits. The page allocator keeps unaccepted memory in MAX_ORDER
//! blocks (4 MiB) and accepts one block at a time when it needs memory; memblock allocations (the
//! memmap, the SWIOTLB buffer) accept their range. With `accept_memory=eager` everything is accepted
//! at boot (Shutemov, unaccepted memory v8 cover letter; QEMU's prefault commit states the 4 MiB
//! chunk). All sizes here are in pages of the guest's geometry: a unit is one 2M page, a chunk two.

use snpsim_defs::PAGE_SIZE_4K;
use snpsim_hw::Geometry;

use snpsim_stores::RangeSet;

/// Units per accept chunk: Linux accepts unaccepted memory in MAX_ORDER blocks, 4 MiB = two 2M units.
pub const CHUNK_UNITS: u64 = 2;

/// The guest's unaccepted-memory bitmap: which 2M units of guest memory it has not accepted yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnacceptedMemory {
    unit: u64,
    /// Unaccepted unit indices.
    units: RangeSet,
}

impl UnacceptedMemory {
    /// Nothing unaccepted (an eager guest, or one without unaccepted-memory support).
    pub fn none(geometry: Geometry) -> Self {
        UnacceptedMemory { unit: geometry.pages_per_2m(), units: RangeSet::new() }
    }

    /// The bitmap of a lazy guest whose `pages` pages of memory (from GFN 0) the firmware reported
    /// unaccepted, and the page ranges the EFI stub accepts up front (`process_unaccepted_memory`):
    /// all of it when it is shorter than two units, else the parts before the first and after the
    /// last 2M boundary.
    pub fn lazy(geometry: Geometry, pages: u64) -> (Self, Vec<(u64, u64)>) {
        let unit = geometry.pages_per_2m();
        let mut bitmap = UnacceptedMemory { unit, units: RangeSet::new() };
        if pages < 2 * unit {
            return (bitmap, if pages == 0 { Vec::new() } else { vec![(0, pages)] });
        }
        let (first, last) = (0u64.div_ceil(unit), pages / unit);
        let mut up_front = Vec::new();
        if first * unit > 0 {
            up_front.push((0, first * unit));
        }
        if last * unit < pages {
            up_front.push((last * unit, pages - last * unit));
        }
        bitmap.units.insert(first, last);
        (bitmap, up_front)
    }

    /// Pages per unit (one 2M page).
    pub fn unit_pages(&self) -> u64 {
        self.unit
    }

    /// Whether `gfn` lies in an unaccepted unit.
    pub fn is_unaccepted(&self, gfn: u64) -> bool {
        self.units.contains(gfn / self.unit)
    }

    /// The unaccepted page ranges `(start, end)`, in order.
    pub fn unaccepted_runs(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.units.runs().map(|(s, e)| (s * self.unit, e * self.unit))
    }

    /// Pages still unaccepted.
    pub fn unaccepted_pages(&self) -> u64 {
        self.units.len() * self.unit
    }

    /// `accept_memory(start, start + pages)`: the page ranges to accept — every unaccepted unit the
    /// range touches, as maximal runs — now marked accepted.
    pub fn take_range(&mut self, start: u64, pages: u64) -> Vec<(u64, u64)> {
        if pages == 0 {
            return Vec::new();
        }
        let (first, last) = (start / self.unit, (start + pages).div_ceil(self.unit));
        let runs: Vec<(u64, u64)> = self.units.runs_in(first, last).collect();
        self.units.remove(first, last);
        runs.into_iter().map(|(s, e)| (s * self.unit, (e - s) * self.unit)).collect()
    }

    /// The page allocator needs the page `gfn`: accept the 4 MiB-aligned chunk holding it (its
    /// unaccepted units). Returns the page ranges to accept, as [`UnacceptedMemory::take_range`].
    pub fn take_chunk(&mut self, gfn: u64) -> Vec<(u64, u64)> {
        let chunk = self.unit * CHUNK_UNITS;
        self.take_range(gfn / chunk * chunk, chunk)
    }
}

/// Linux's SWIOTLB size for an encrypted guest of `memory` bytes (`mem_encrypt_setup_arch`): 6 % of
/// memory clamped to [64 MiB (IO_TLB_DEFAULT_SIZE), 1 GiB], rounded up to whole IO_TLB segments
/// (128 slabs of 2 KiB = 256 KiB, `swiotlb_adjust_size`). **Choice**: a guest smaller than four
/// times that gets a quarter of its memory (page-aligned), where Linux would fail the allocation.
pub fn swiotlb_bytes(memory: u64) -> u64 {
    const SEGMENT: u64 = 128 * 2048;
    let want =
        (memory / 100 * 6 + memory % 100 * 6 / 100).clamp(64 << 20, 1 << 30).div_ceil(SEGMENT) * SEGMENT;
    want.min(memory / 4 / PAGE_SIZE_4K * PAGE_SIZE_4K)
}

/// Where a booting Linux guest puts what it accepts and shares up front, in pages of guest memory
/// from GFN 0 (`docs/semantics.md` G5, G6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BootLayout {
    /// Guest memory in pages.
    pub pages: u64,
    /// Firmware, kernel image, initrd and early allocations: `0..footprint`.
    pub footprint: u64,
    /// The memmap (64-byte `struct page` per 4 KiB page), allocated by memblock at the top of
    /// memory: `memmap..pages`.
    pub memmap: u64,
    /// The SWIOTLB bounce buffer below it: `swiotlb..swiotlb + swiotlb_pages`, made shared at boot.
    pub swiotlb: u64,
    /// SWIOTLB pages.
    pub swiotlb_pages: u64,
}

/// Bytes of guest memory the firmware and the kernel's early boot use before the page allocator
/// runs (**Choice**, `docs/semantics.md` G5): 64 MiB, or all of a smaller guest.
pub const BOOT_FOOTPRINT_BYTES: u64 = 64 << 20;

impl BootLayout {
    /// The layout of a guest of `pages` pages of `geometry`. memblock allocates top-down, so the
    /// memmap sits at the top of memory and the SWIOTLB buffer right below it; the footprint is at
    /// the bottom. On geometries other than x86 the sizes scale with the 4K page count alone.
    pub fn new(geometry: Geometry, pages: u64) -> Self {
        let _ = geometry;
        let memory = pages * PAGE_SIZE_4K;
        let footprint = (BOOT_FOOTPRINT_BYTES / PAGE_SIZE_4K).min(pages / 4);
        let memmap_pages = pages.div_ceil(64);
        let memmap = pages - memmap_pages;
        let swiotlb_pages = (swiotlb_bytes(memory) / PAGE_SIZE_4K).min(memmap.saturating_sub(footprint));
        BootLayout { pages, footprint, memmap, swiotlb: memmap - swiotlb_pages, swiotlb_pages }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn swiotlb_is_six_percent_clamped() {
        // 6 % of 512 MiB (30.7 MiB) raised to the 64 MiB floor; 6 % of 4 GiB (245.76 MiB)
        // rounded up to a whole 256 KiB segment; 6 % of 64 GiB (3.84 GiB) capped at 1 GiB; a
        // 16 MiB guest, under 4 × 64 MiB, gets a quarter of its memory.
        assert_eq!(swiotlb_bytes(512 * MIB), 64 * MIB);
        assert_eq!(swiotlb_bytes(4096 * MIB), 4096 * MIB * 6 / 100 / (256 << 10) * (256 << 10) + (256 << 10));
        assert_eq!(swiotlb_bytes(64 << 30), 1 << 30);
        assert_eq!(swiotlb_bytes(16 * MIB), 4 * MIB);
    }

    #[test]
    fn boot_layout_of_4_gib() {
        let l = BootLayout::new(Geometry::X86, 1 << 20);
        // The memmap, 64 bytes per 4 KiB page (1/64 of memory: 2^14 pages), at the top.
        assert_eq!(l.memmap, (1 << 20) - (1 << 14));
        assert_eq!(l.swiotlb + l.swiotlb_pages, l.memmap);
        assert_eq!(l.swiotlb_pages * PAGE_SIZE_4K, swiotlb_bytes(4 << 30));
        // The firmware/kernel footprint: the first 64 MiB = 16384 pages.
        assert_eq!(l.footprint, 16384);
    }

    proptest! {
        /// Lazy acceptance covers exactly guest memory: what the EFI stub accepts up front, plus
        /// every unit accepted later by chunks and ranges in any order, is each page exactly once,
        /// and a page is reported unaccepted exactly when nothing accepted it yet.
        #[test]
        fn acceptance_covers_exactly_the_memory(
            tiny in any::<bool>(),
            units in 0u64..40,
            tail in 0u64..512,
            touches in proptest::collection::vec((any::<u64>(), 0u64..3000, any::<bool>()), 0..40),
        ) {
            let g = if tiny { Geometry::TINY } else { Geometry::X86 };
            let unit = g.pages_per_2m();
            let pages = units * unit + tail % unit;
            let (mut b, up_front) = UnacceptedMemory::lazy(g, pages);
            let mut count = vec![0u32; pages as usize];
            for (s, n) in up_front {
                prop_assert!(n < unit || pages < 2 * unit, "only edges are accepted up front");
                for p in s..s + n { count[p as usize] += 1; }
            }
            for p in 0..pages {
                prop_assert_eq!(b.is_unaccepted(p), count[p as usize] == 0);
            }
            for (at, len, chunk) in touches {
                if pages == 0 { break; }
                let at = at % pages;
                let got = if chunk { b.take_chunk(at) } else { b.take_range(at, len.clamp(1, pages - at)) };
                for (s, n) in got {
                    prop_assert!(s % unit == 0 && n % unit == 0 && s + n <= pages);
                    for p in s..s + n { count[p as usize] += 1; }
                }
                prop_assert!(!b.is_unaccepted(at));
                for p in 0..pages {
                    prop_assert!(count[p as usize] <= 1, "page {} accepted twice", p);
                    prop_assert_eq!(b.is_unaccepted(p), count[p as usize] == 0);
                }
            }
            let rest = b.take_range(0, pages);
            for (s, n) in rest { for p in s..s + n { count[p as usize] += 1; } }
            prop_assert!(count.iter().all(|&c| c == 1));
            prop_assert_eq!(b.unaccepted_pages(), 0);
        }
    }
}
