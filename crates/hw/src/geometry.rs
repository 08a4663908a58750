//! Page geometry: how many 4 KiB pages make a 2M and a 1G page.
//!
//! Every rule is written for any geometry so that the model checker can run the same code on a
//! `tiny` machine (4 pages per level) where the x86 machine has 512. Base pages stay 4 KiB.

use snpsim_defs::{Gfn, PAGE_SIZE_4K, PageSize, Pfn};

/// Pages per paging level. `x86` is the hardware; `tiny` exists for exhaustive model checking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Geometry {
    /// log2 of the number of entries per paging level (9 on x86, 2 on `tiny`).
    level_shift: u32,
}

impl Geometry {
    /// The hardware: 512 entries per level (4K, 2M, 1G).
    pub const X86: Geometry = Geometry { level_shift: 9 };
    /// 4 entries per level: a "2M" page is 4 base pages and a "1G" page 16, for model checking.
    pub const TINY: Geometry = Geometry { level_shift: 2 };

    /// Look a geometry up by its scenario name (`x86`, `tiny`).
    pub fn from_name(name: &str) -> Option<Geometry> {
        match name {
            "x86" => Some(Geometry::X86),
            "tiny" => Some(Geometry::TINY),
            _ => None,
        }
    }

    /// The scenario name of the geometry.
    #[inline]
    pub const fn name(self) -> &'static str {
        if self.level_shift == 9 { "x86" } else { "tiny" }
    }

    /// Base pages in a page of `size`.
    #[inline]
    pub const fn pages(self, size: PageSize) -> u64 {
        match size {
            PageSize::Size4K => 1,
            PageSize::Size2M => 1 << self.level_shift,
            PageSize::Size1G => 1 << (2 * self.level_shift),
        }
    }

    /// Base pages in a 2M page: the size of an RMP region (one 2M-capable RMP entry).
    #[inline]
    pub const fn pages_per_2m(self) -> u64 {
        self.pages(PageSize::Size2M)
    }

    /// log2 of [`Geometry::pages_per_2m`]: a frame's region is `pfn >> region_shift()` (a region's
    /// page count is a power of two by construction).
    #[inline]
    pub const fn region_shift(self) -> u32 {
        self.level_shift
    }

    /// Bytes in a page of `size`.
    #[inline]
    pub const fn bytes(self, size: PageSize) -> u64 {
        self.pages(size) * PAGE_SIZE_4K
    }

    /// The first frame of the 2M region holding `pfn`.
    #[inline]
    pub const fn region_of(self, pfn: Pfn) -> Pfn {
        pfn.align_down(self.pages_per_2m())
    }

    /// The first guest frame of the page of `size` holding `gfn`.
    #[inline]
    pub const fn gfn_align_down(self, gfn: Gfn, size: PageSize) -> Gfn {
        gfn.align_down(self.pages(size))
    }

    /// The largest page size whose page holding `pfn` starts at `pfn`.
    #[inline]
    pub const fn pfn_alignment(self, pfn: Pfn) -> PageSize {
        if pfn.is_aligned(self.pages(PageSize::Size1G)) {
            PageSize::Size1G
        } else if pfn.is_aligned(self.pages(PageSize::Size2M)) {
            PageSize::Size2M
        } else {
            PageSize::Size4K
        }
    }
}

impl Default for Geometry {
    fn default() -> Self {
        Geometry::X86
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x86_matches_hardware_sizes() {
        let g = Geometry::X86;
        for s in PageSize::ALL {
            assert_eq!(g.bytes(s), s.x86_bytes());
        }
        assert_eq!(g.region_of(Pfn::new(0x3ff)), Pfn::new(0x200));
        assert_eq!(g.pfn_alignment(Pfn::new(0x40000)), PageSize::Size1G);
        assert_eq!(g.pfn_alignment(Pfn::new(0x200)), PageSize::Size2M);
        assert_eq!(g.pfn_alignment(Pfn::new(0x201)), PageSize::Size4K);
    }

    #[test]
    fn tiny_has_four_entries_per_level() {
        let g = Geometry::TINY;
        assert_eq!(g.pages(PageSize::Size2M), 4);
        assert_eq!(g.pages(PageSize::Size1G), 16);
        assert_eq!(g.region_of(Pfn::new(7)), Pfn::new(4));
        assert_eq!(Geometry::from_name("tiny"), Some(g));
        assert_eq!(Geometry::from_name("arm"), None);
        assert_eq!(g.name(), "tiny");
    }
}
