//! RMPOPT: the per-1 GiB "hypervisor-owned" marks that let host writes skip the RMP check.
//!
//! In SEV-SNP every host (and non-SNP guest) write is RMP-checked. RMPOPT's *verify and report
//! status* function reads the RMP entries of a 1 GiB region and, if none is assigned, sets the
//! region's bit in the RMPOPT table; while it is set, writes to the region skip the RMP check.
//! RMPUPDATE clears the bit of the region it changes (A. Kalra, "Add RMPOPT support" v1 cover
//! and reply to D. Hansen, 17 Feb 2026; v2 3/7 `cover.1772486459`, 2 Mar 2026; AMD document
//! 69201). The rules, O1–O8, are written down with their sources in `docs/semantics.md`
//! ("Hardware", *RMPOPT*).
//!
//! This module holds what both RMP stores share: the region geometry (O1), the 2 TB window (O3),
//! the table of marks ([`RmpoptTable`]), the verify outcome ([`RmpoptVerify`]), the counters
//! ([`RmpStats`]). The instruction and the whole-memory scan the guest_memfd teardown hook runs
//! (O7) are [`crate::RmpModel`] methods. Whether a region may be marked — every entry hypervisor-owned —
//! is decided by each store from its own entries ([`crate::rmp::Rmp`],
//! [`crate::reference::DenseRmp`]), so the differential test compares two independent readings.

use std::collections::BTreeSet;

use snpsim_defs::{PageSize, Pfn};

use crate::Geometry;

/// O3: regions the RMPOPT table covers, counted from frame 0: 2 TB of 1 GiB regions. Linux
/// limits its RMPOPT scan to "the first 2 TB of RAM" (v2 3/7 `rmpopt_kthread`, quoted in
/// S. Christopherson's review of 4 Mar 2026; v4 cover, 13 Apr 2026: "up to 2TB of system RAM").
/// **Choice**: counted in regions of the geometry, so the `tiny` machine has the same 2048.
pub const RMPOPT_MAX_REGIONS: u64 = 2048;

/// O1: base pages in an RMPOPT region: the geometry's 1G page (262,144 on `x86`, 16 on `tiny`).
pub const fn region_pages(geometry: Geometry) -> u64 {
    geometry.pages(PageSize::Size1G)
}

/// O1: the index of the RMPOPT region holding `pfn`.
pub const fn region_index(geometry: Geometry, pfn: Pfn) -> u64 {
    pfn.raw() / region_pages(geometry)
}

/// What an RMPOPT verify did to a region (O2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RmpoptVerify {
    /// Every RMP entry of the region is hypervisor-owned: the region is marked.
    Optimized,
    /// Some entry is assigned (or a 2M region of it is in flight): the region is not marked.
    NotOptimized,
    /// The region starts beyond the RMP or beyond the 2 TB window (O3): nothing changes.
    OutOfRange,
    /// RMPOPT is not enabled on this machine (O8): nothing changes, nothing is counted.
    Disabled,
}

impl RmpoptVerify {
    /// The outcome as traces and step results write it.
    pub const fn name(self) -> &'static str {
        match self {
            RmpoptVerify::Optimized => "optimized",
            RmpoptVerify::NotOptimized => "not_optimized",
            RmpoptVerify::OutOfRange => "out_of_range",
            RmpoptVerify::Disabled => "disabled",
        }
    }
}

/// Counters of RMP instructions for the engine's cost model and metrics. They are observations,
/// not state: [`crate::rmp::Rmp`]'s equality and canonical form leave them out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RmpStats {
    /// Successful RMPUPDATEs. Each one flushes the TLBs of all cores (Bagia et al. 2025,
    /// DOI 10.1145/3768725.3768727), with RMPOPT enabled or not. **Choice**: a failed RMPUPDATE
    /// changes no entry and is not counted.
    pub rmp_updates: u64,
    /// RMPOPT verifies executed (O2), whatever their outcome; not counted while disabled.
    pub rmpopt_verifies: u64,
    /// Verifies that marked their region ([`RmpoptVerify::Optimized`]).
    pub rmpopt_optimized: u64,
    /// Verifies that found an assigned or in-flight entry ([`RmpoptVerify::NotOptimized`]).
    pub rmpopt_not_optimized: u64,
    /// Verifies of a region beyond the RMP or the 2 TB window ([`RmpoptVerify::OutOfRange`]).
    pub rmpopt_out_of_range: u64,
    /// Marks cleared by a successful RMPUPDATE or PSMASH in their region (O4).
    pub rmpopt_marks_cleared: u64,
}

impl RmpStats {
    /// Count one verify and its outcome.
    pub(crate) fn count_verify(&mut self, outcome: RmpoptVerify) {
        let bucket = match outcome {
            RmpoptVerify::Optimized => &mut self.rmpopt_optimized,
            RmpoptVerify::NotOptimized => &mut self.rmpopt_not_optimized,
            RmpoptVerify::OutOfRange => &mut self.rmpopt_out_of_range,
            RmpoptVerify::Disabled => return,
        };
        *bucket += 1;
        self.rmpopt_verifies += 1;
    }
}

/// The region a verify works on ([`RmpoptTable::target`]); the store decides O2 for a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// RMPOPT is disabled (O8).
    Disabled,
    /// The region starts beyond the RMP or the 2 TB window (O3).
    OutOfRange,
    /// The region with this index.
    Region(u64),
}

/// The RMPOPT table of one machine: whether RMPOPT is enabled (O8) and the marked regions.
///
/// Linux keeps one table per CPU and runs every verify on all CPUs (v2 3/7 `on_each_cpu_mask`;
/// v9 5/6: "RMPOPT table is a per-CPU table"); RMPUPDATE clears the bit everywhere. **Choice**:
/// the model keeps one table, the state every CPU's table reaches once a verify has run on all.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RmpoptTable {
    /// O8: RMPOPT is in use (off by default).
    enabled: bool,
    /// Indices of the marked regions (O1), all below [`RMPOPT_MAX_REGIONS`].
    marked: BTreeSet<u64>,
}

impl RmpoptTable {
    /// Whether RMPOPT is enabled.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// O8: enable or disable RMPOPT. Disabling drops every mark, so all writes are checked again.
    pub fn set_enabled(&mut self, on: bool) {
        self.enabled = on;
        if !on {
            self.marked.clear();
        }
    }

    /// O3: which region a verify naming `region` (any frame of it, as Linux masks the address
    /// to 1 GiB) works on in an RMP of `pages` frames.
    pub(crate) fn target(&self, geometry: Geometry, pages: u64, region: Pfn) -> Target {
        if !self.enabled {
            return Target::Disabled;
        }
        let idx = region_index(geometry, region);
        let start = idx * region_pages(geometry);
        if idx < RMPOPT_MAX_REGIONS && start < pages { Target::Region(idx) } else { Target::OutOfRange }
    }

    /// O2: record the outcome of a verify of region `idx`: mark it iff every entry is
    /// hypervisor-owned (a region that fails loses its mark; by O5 a marked one cannot fail).
    pub(crate) fn record(&mut self, idx: u64, hv_owned: bool) -> RmpoptVerify {
        if hv_owned {
            self.marked.insert(idx);
            RmpoptVerify::Optimized
        } else {
            self.marked.remove(&idx);
            RmpoptVerify::NotOptimized
        }
    }

    /// O4: an RMP entry of `pfn`'s region changed: clear the region's mark. Returns whether one was.
    pub(crate) fn clear(&mut self, geometry: Geometry, pfn: Pfn) -> bool {
        self.enabled && self.marked.remove(&region_index(geometry, pfn))
    }

    /// O6: whether host writes to `pfn` skip the RMP check: its region is marked.
    pub fn is_marked(&self, geometry: Geometry, pfn: Pfn) -> bool {
        self.enabled && self.marked.contains(&region_index(geometry, pfn))
    }

    /// The number of marked regions.
    pub fn marked_regions(&self) -> usize {
        self.marked.len()
    }

    /// The marked region indices, in order.
    pub fn marked(&self) -> impl Iterator<Item = u64> + '_ {
        self.marked.iter().copied()
    }

    /// The frames inside an RMP of `pages` frames that lie in marked regions (a partial last
    /// region counts its frames inside the RMP only).
    pub fn marked_pages(&self, geometry: Geometry, pages: u64) -> u64 {
        let n = region_pages(geometry);
        self.marked.iter().map(|&idx| pages.min((idx + 1) * n).saturating_sub(idx * n)).sum()
    }

    /// Bytes of memory the table takes (B-tree entries estimated at [`snpsim_stores::BTREE_ENTRY_BYTES`]).
    pub fn state_bytes(&self) -> usize {
        self.marked.len() * snpsim_stores::BTREE_ENTRY_BYTES
    }
}

/// What a scan of all memory did ([`crate::RmpModel::rmpopt_verify_all`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RmpoptScan {
    /// Regions verified.
    pub verified: u64,
    /// Regions marked by the scan (including ones already marked).
    pub optimized: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_the_geometrys_1g_page() {
        // O1: 512 × 512 = 262,144 pages (1 GiB) on x86; 4 × 4 = 16 on tiny.
        assert_eq!(region_pages(Geometry::X86), 262_144);
        assert_eq!(region_pages(Geometry::TINY), 16);
        assert_eq!(region_index(Geometry::TINY, Pfn::new(31)), 1);
        assert_eq!(region_index(Geometry::TINY, Pfn::new(32)), 2);
    }

    #[test]
    fn table_targets_inside_the_window_only() {
        let mut t = RmpoptTable::default();
        let g = Geometry::TINY;
        // O8: disabled, nothing is targeted or marked.
        assert_eq!(t.target(g, 1 << 20, Pfn::new(0)), Target::Disabled);
        t.set_enabled(true);
        assert_eq!(t.target(g, 1 << 20, Pfn::new(17)), Target::Region(1));
        // O3: region 2048 starts at 2048 × 16 = 32,768, beyond the window.
        assert_eq!(t.target(g, 1 << 20, Pfn::new(2048 * 16)), Target::OutOfRange);
        assert_eq!(t.target(g, 1 << 20, Pfn::new(2047 * 16 + 15)), Target::Region(2047));
        // A region starting at or beyond the RMP's end (20 frames: regions 0 and 1 only).
        assert_eq!(t.target(g, 20, Pfn::new(32)), Target::OutOfRange);
        assert_eq!(t.record(1, true), RmpoptVerify::Optimized);
        // The partial region 1 holds frames 16..20 of the RMP: 4 marked pages.
        assert_eq!(t.marked_pages(g, 20), 4);
        assert!(t.is_marked(g, Pfn::new(19)) && !t.is_marked(g, Pfn::new(15)));
        assert!(t.clear(g, Pfn::new(18)));
        assert!(!t.clear(g, Pfn::new(18)));
        t.record(0, true);
        t.set_enabled(false);
        assert_eq!(t.marked_regions(), 0);
    }
}
