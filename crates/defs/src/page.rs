//! Page sizes and paging levels.

/// A mapping size: the level of a leaf in the host page tables, the NPT or a guest_memfd folio.
///
/// Ordered by size, so `a < b` means "a maps less than b". The number of 4 KiB pages in each size
/// depends on the geometry (`hw::Geometry`); the `x86_*` methods give the hardware's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PageSize {
    /// A 4 KiB page: a PTE leaf (level 1).
    Size4K,
    /// A 2 MiB page: a PMD/PDE leaf (level 2).
    Size2M,
    /// A 1 GiB page: a PUD/PDPTE leaf (level 3).
    Size1G,
}

impl PageSize {
    /// All sizes, smallest first.
    pub const ALL: [PageSize; 3] = [PageSize::Size4K, PageSize::Size2M, PageSize::Size1G];

    /// The paging level of a leaf of this size (1 = PTE, 2 = PMD, 3 = PUD), as Linux's
    /// `PG_LEVEL_4K/2M/1G` count them.
    pub const fn level(self) -> u8 {
        match self {
            PageSize::Size4K => 1,
            PageSize::Size2M => 2,
            PageSize::Size1G => 3,
        }
    }

    /// The size of a leaf at paging level `level` (1–3).
    pub const fn from_level(level: u8) -> Option<PageSize> {
        match level {
            1 => Some(PageSize::Size4K),
            2 => Some(PageSize::Size2M),
            3 => Some(PageSize::Size1G),
            _ => None,
        }
    }

    /// Bytes in the page on x86 hardware.
    pub const fn x86_bytes(self) -> u64 {
        match self {
            PageSize::Size4K => 1 << 12,
            PageSize::Size2M => 1 << 21,
            PageSize::Size1G => 1 << 30,
        }
    }

    /// The next smaller size, if any.
    pub const fn smaller(self) -> Option<PageSize> {
        match self {
            PageSize::Size4K => None,
            PageSize::Size2M => Some(PageSize::Size4K),
            PageSize::Size1G => Some(PageSize::Size2M),
        }
    }

    /// The short name used in scenario files and reports: `4k`, `2m`, `1g`.
    pub const fn name(self) -> &'static str {
        match self {
            PageSize::Size4K => "4k",
            PageSize::Size2M => "2m",
            PageSize::Size1G => "1g",
        }
    }
}

/// The two sizes an RMP entry (and the size operand of PVALIDATE, RMPADJUST and RMPUPDATE) can
/// have. The encoding is the architectural one: 0 = 4 KiB, 1 = 2 MiB (RMP entry bit 1; PVALIDATE
/// and RMPADJUST take it in ECX/RCX; Linux `RMP_PG_SIZE_4K/2M`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RmpPageSize {
    /// A 4 KiB RMP entry.
    Size4K = 0,
    /// A 2 MiB RMP entry: the 2M-aligned entry is authoritative for its whole region.
    Size2M = 1,
}

impl RmpPageSize {
    /// Decode the architectural bit.
    pub const fn from_bit(bit: bool) -> Self {
        if bit { RmpPageSize::Size2M } else { RmpPageSize::Size4K }
    }

    /// The architectural bit (true = 2 MiB).
    pub const fn bit(self) -> bool {
        matches!(self, RmpPageSize::Size2M)
    }

    /// The mapping size this RMP size corresponds to.
    pub const fn page_size(self) -> PageSize {
        match self {
            RmpPageSize::Size4K => PageSize::Size4K,
            RmpPageSize::Size2M => PageSize::Size2M,
        }
    }

    /// The RMP size for a mapping size, if the RMP has one (1 GiB has none: the hardware checks a
    /// 1 GiB mapping as 2 MiB accesses, Linux `adjust_direct_map`).
    pub const fn from_page_size(size: PageSize) -> Option<Self> {
        match size {
            PageSize::Size4K => Some(RmpPageSize::Size4K),
            PageSize::Size2M => Some(RmpPageSize::Size2M),
            PageSize::Size1G => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_round_trip_and_order() {
        for s in PageSize::ALL {
            assert_eq!(PageSize::from_level(s.level()), Some(s));
        }
        assert!(PageSize::Size4K < PageSize::Size2M && PageSize::Size2M < PageSize::Size1G);
        assert_eq!(PageSize::from_level(0), None);
        assert_eq!(PageSize::Size1G.x86_bytes(), 512 * PageSize::Size2M.x86_bytes());
        assert_eq!(PageSize::Size2M.smaller(), Some(PageSize::Size4K));
    }

    #[test]
    fn rmp_size_bit_is_architectural() {
        assert!(!RmpPageSize::Size4K.bit());
        assert!(RmpPageSize::Size2M.bit());
        assert_eq!(RmpPageSize::from_bit(true), RmpPageSize::Size2M);
        assert_eq!(RmpPageSize::from_page_size(PageSize::Size1G), None);
    }
}
