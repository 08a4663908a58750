//! RMPOPT on the host side: counting which host writes the RMP check covers, and the guest_memfd
//! teardown hook that re-verifies memory.
//!
//! The hardware rules (O1–O8: the per-1 GiB marks, verify, clearing, the 2 TB window and the
//! skipped check) live in `snpsim_hw::rmpopt` and the RMP models; `docs/semantics.md` ("Host",
//! S8) states what the host adds. Nothing here changes an outcome: a write to a marked region
//! completes exactly as the full check would let it (O5).

use snpsim_defs::Pfn;
use snpsim_hw::{RmpModel, RmpoptScan};

use crate::Host;

impl Host {
    /// S8: with RMPOPT enabled, count the RMP check of one host write attempt to `pfn` —
    /// skipped when RMPOPT marked its region (O6), performed otherwise. A frame beyond the RMP is
    /// not checked at all (H6) and counts in neither. Called where a write is executed, not where
    /// the engine only asks what a write would do. **Choice**: nothing is counted with RMPOPT
    /// disabled, so a machine without it keeps its counters (and their `Debug` form) unchanged;
    /// every write is then checked.
    pub(crate) fn count_rmp_check(&mut self, rmp: &dyn RmpModel, pfn: Pfn) {
        if !rmp.rmpopt_enabled() || pfn.raw() >= rmp.config().pages {
            return;
        }
        if rmp.is_optimized(pfn) {
            self.stats.rmp_checks_skipped += 1;
        } else {
            self.stats.rmp_checks += 1;
        }
    }

    /// S8, the guest_memfd teardown hook (O7): re-run RMPOPT verify over all memory inside the
    /// 2 TB window, so regions the destroyed guest_memfd's pages had kept unmarked are marked again.
    ///
    /// Linux v2 (A. Kalra, 2 Mar 2026, `cover.1772486459`) re-scans all memory each time a
    /// guest_memfd is destroyed (S. Christopherson's review of v2 3/7, 4 Mar 2026); v10 6/6 (30 Jun
    /// 2026) runs the same `snp_rmpopt_all_physmem()` deferred after `sev_vm_destroy`. The scan
    /// marks only regions whose pages are all hypervisor-owned again, so the engine calls this
    /// after `sev_gmem_invalidate` has returned the file's pages to the hypervisor (S6); a region
    /// still holding an assigned page stays unmarked until a later scan. A no-op, not counted,
    /// when RMPOPT is disabled. Returns what the scan did; `rmpopt_rescans` counts the scans.
    pub fn rmpopt_gmem_teardown(&mut self, rmp: &mut dyn RmpModel) -> RmpoptScan {
        let scan = rmp.rmpopt_verify_all();
        if scan.verified > 0 {
            self.stats.rmpopt_rescans += 1;
        }
        scan
    }
}

#[cfg(test)]
mod tests {
    use snpsim_defs::{PageSize, ReturnCode, RmpArchEntry};
    use snpsim_hw::rmp::Rmp;
    use snpsim_hw::{Geometry, RmpConfig};

    use crate::{HostStats, HostVia, HostWriteOutcome, VmaBacking};

    use super::*;

    /// A tiny host of 64 frames (four RMPOPT regions of 16) running a 16-page legacy guest whose
    /// THP VMA is placed at the first free 2M-aligned frame, 0.
    fn host() -> (Host, Rmp) {
        let host = Host::new(Geometry::TINY, 64, 16, VmaBacking::Thp, None).expect("fits");
        let mut rmp = Rmp::new(RmpConfig::tiny(64));
        rmp.set_rmpopt(true);
        (host, rmp)
    }

    #[test]
    fn writes_to_marked_regions_skip_the_check_and_complete_alike() {
        let (mut host, mut rmp) = host();
        let (pfn, _) = host.vma.translate(3).expect("populated");
        // Nothing marked yet: the write is checked.
        assert_eq!(host.write_via_vma(&rmp, 3, HostVia::Vmm).0, HostWriteOutcome::Done);
        assert_eq!((host.stats.rmp_checks, host.stats.rmp_checks_skipped), (1, 0));
        // The scan at SNP initialisation marks all four regions.
        assert_eq!(host.rmpopt_gmem_teardown(&mut rmp), RmpoptScan { verified: 4, optimized: 4 });
        assert_eq!(host.write_via_vma(&rmp, 3, HostVia::Uaccess).0, HostWriteOutcome::Done);
        assert_eq!(host.write_via_direct_map(&rmp, pfn), HostWriteOutcome::Done);
        assert_eq!((host.stats.rmp_checks, host.stats.rmp_checks_skipped), (1, 2));
        // The guest takes frame pfn - 1 (offset 2, same 2M page of 4 frames) private: region 0
        // loses its mark, and the VMM's write through the 2M mapping faults and splits it as
        // before (two checked attempts).
        let private =
            RmpArchEntry::new().with_assigned(true).with_asid(1).with_gpa(snpsim_defs::Gpa::new(0x2000));
        assert_eq!(rmp.rmpupdate(Pfn::new(pfn.raw() - 1), private), ReturnCode::Success);
        assert!(!rmp.is_optimized(pfn));
        assert_eq!(host.write_via_vma(&rmp, 3, HostVia::Vmm).0, HostWriteOutcome::Done);
        assert_eq!(host.vma.level(3), PageSize::Size4K);
        assert_eq!((host.stats.rmp_checks, host.stats.rmp_checks_skipped), (3, 2));
        assert_eq!(host.stats.rmpopt_rescans, 1);
        // A frame beyond the RMP is checked by nobody (H6).
        assert_eq!(host.write_via_direct_map(&rmp, Pfn::new(64)), HostWriteOutcome::Done);
        assert_eq!((host.stats.rmp_checks, host.stats.rmp_checks_skipped), (3, 2));
    }

    #[test]
    fn teardown_rescan_remarks_freed_regions_only() {
        let (mut host, mut rmp) = host();
        let private =
            RmpArchEntry::new().with_assigned(true).with_asid(1).with_gpa(snpsim_defs::Gpa::new(0x4000));
        assert_eq!(rmp.rmpupdate(Pfn::new(17), private), ReturnCode::Success);
        // Region 1 holds a private page: 3 of the 4 regions are marked, 48 of 64 frames.
        assert_eq!(host.rmpopt_gmem_teardown(&mut rmp), RmpoptScan { verified: 4, optimized: 3 });
        assert_eq!(rmp.rmpopt_marked_pages(), 48);
        assert!((rmp.rmpopt_coverage() - 0.75).abs() < 1e-12);
        // sev_gmem_invalidate returns the page; the next teardown scan marks region 1 again.
        assert_eq!(rmp.rmpupdate(Pfn::new(17), RmpArchEntry::new()), ReturnCode::Success);
        assert_eq!(host.rmpopt_gmem_teardown(&mut rmp).optimized, 4);
        assert_eq!(rmp.rmpopt_marked_pages(), 64);
        assert_eq!(host.stats.rmpopt_rescans, 2);
        // RMPOPT off: the hook does nothing and counts nothing.
        rmp.set_rmpopt(false);
        assert_eq!(host.rmpopt_gmem_teardown(&mut rmp), RmpoptScan::default());
        assert_eq!(host.stats.rmpopt_rescans, 2);
    }

    #[test]
    fn without_rmpopt_nothing_is_counted_and_debug_is_unchanged() {
        let (mut host, mut rmp) = host();
        rmp.set_rmpopt(false);
        let before = format!("{:?}", host.stats);
        assert_eq!(host.write_via_vma(&rmp, 3, HostVia::Vmm).0, HostWriteOutcome::Done);
        assert_eq!(host.stats, HostStats::default());
        assert_eq!(format!("{:?}", host.stats), before);
        assert!(!before.contains("rmp_checks"));
        // The derived form of the nine counters that predate RMPOPT.
        assert_eq!(
            before,
            "HostStats { host_splits: 0, host_splits_needed: 0, host_splits_needless: 0, \
             direct_map_splits: 0, direct_map_flushes: 0, sigbus: 0, efault: 0, kernel_oops: 0, \
             host_fault_loops: 0 }"
        );
        rmp.set_rmpopt(true);
        assert_eq!(host.write_via_vma(&rmp, 3, HostVia::Vmm).0, HostWriteOutcome::Done);
        assert!(
            format!("{:?}", host.stats)
                .ends_with("rmp_checks: 1, rmp_checks_skipped: 0, rmpopt_rescans: 0 }")
        );
    }
}
