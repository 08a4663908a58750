//! RMPOPT (`docs/semantics.md`, "Hardware", *RMPOPT*, O1–O8): the rules on both RMP stores, and
//! the safety property that skipping the RMP check of a marked region never lets a host write
//! through that the full check would have refused.

use snpsim_defs::{PageSize, Pfn, ReturnCode, RmpArchEntry};
use snpsim_hw::reference::DenseRmp;
use snpsim_hw::rmp::Rmp;
use snpsim_hw::rmpopt::{RMPOPT_MAX_REGIONS, region_pages};
use snpsim_hw::{RmpConfig, RmpModel, RmpStats, RmpoptScan, RmpoptVerify};

use crate::differential::{Gen, Op, Rng, apply, config};

/// A fresh model of each store with RMPOPT on or off.
fn stores(cfg: RmpConfig, on: bool) -> [Box<dyn RmpModel>; 2] {
    let mut fast = Rmp::new(cfg);
    fast.set_rmpopt(on);
    let mut dense = DenseRmp::new(cfg);
    dense.set_rmpopt(on);
    [Box::new(fast), Box::new(dense)]
}

fn assigned_4k(gpa: u64) -> RmpArchEntry {
    RmpArchEntry::new().with_assigned(true).with_asid(1).with_gpa(snpsim_defs::Gpa::new(gpa))
}

/// O2, O4, O6 on the `tiny` geometry (a region is the 16-page "1G" page): verify marks a region
/// with no assigned entry, host writes there skip the check, an RMPUPDATE in it clears the mark,
/// a verify with an assigned entry does not mark, and the region is marked again once the page
/// is returned to the hypervisor and re-verified.
#[test]
fn verify_marks_update_clears_reverify_restores() {
    // 64 frames: four regions of 16.
    for mut m in stores(RmpConfig::tiny(64), true) {
        assert_eq!(m.rmpopt_verify(Pfn::new(16)), RmpoptVerify::Optimized);
        // Any frame of the region names it (Linux masks the address to 1 GiB): already marked.
        assert_eq!(m.rmpopt_verify(Pfn::new(31)), RmpoptVerify::Optimized);
        assert!(m.is_optimized(Pfn::new(16)) && m.is_optimized(Pfn::new(31)));
        assert!(!m.is_optimized(Pfn::new(15)) && !m.is_optimized(Pfn::new(32)));
        // 16 of 64 frames marked.
        assert_eq!(m.rmpopt_marked_pages(), 16);
        assert!((m.rmpopt_coverage() - 0.25).abs() < 1e-12);
        assert_eq!(m.check_host_write(Pfn::new(20), PageSize::Size1G, true), Ok(()));
        // O4: an RMPUPDATE assigning frame 17 clears region 1's mark; the write now faults.
        assert_eq!(m.rmpupdate(Pfn::new(17), assigned_4k(0x1000)), ReturnCode::Success);
        assert!(!m.is_optimized(Pfn::new(16)));
        assert!(m.check_host_write(Pfn::new(17), PageSize::Size4K, false).is_err());
        // O2: an assigned entry: not marked.
        assert_eq!(m.rmpopt_verify(Pfn::new(16)), RmpoptVerify::NotOptimized);
        assert_eq!(m.rmpopt_marked_pages(), 0);
        // Back to the hypervisor: an RMPUPDATE, but the region was not marked (nothing cleared).
        assert_eq!(m.rmpupdate(Pfn::new(17), RmpArchEntry::new()), ReturnCode::Success);
        assert_eq!(m.rmpopt_verify(Pfn::new(16)), RmpoptVerify::Optimized);
        // O4 (Choice): even an RMPUPDATE to the hypervisor-owned state clears the mark.
        assert_eq!(m.rmpupdate(Pfn::new(18), RmpArchEntry::new()), ReturnCode::Success);
        assert!(!m.is_optimized(Pfn::new(18)));
        // A failed RMPUPDATE changes nothing and keeps the mark.
        assert_eq!(m.rmpopt_verify(Pfn::new(16)), RmpoptVerify::Optimized);
        assert_eq!(m.rmpupdate(Pfn::new(18), assigned_4k(0x1800)), ReturnCode::FailInput);
        assert!(m.is_optimized(Pfn::new(18)));
        // Verifies: 2 optimized + 1 not + 2 optimized = 5 (the first two at frames 16 and 31);
        // RMPUPDATEs: 3 successful (17 assign, 17 shared, 18 shared); cleared: 2 (17, 18).
        assert_eq!(
            m.rmp_stats(),
            RmpStats {
                rmp_updates: 3,
                rmpopt_verifies: 5,
                rmpopt_optimized: 4,
                rmpopt_not_optimized: 1,
                rmpopt_out_of_range: 0,
                rmpopt_marks_cleared: 2,
            }
        );
    }
}

/// O2 (**Choice**): a region with a 2M region in flight (the firmware's lock in its aligned entry)
/// is not hypervisor-owned; once the window closes it can be marked.
#[test]
fn in_flight_region_is_not_marked() {
    for mut m in stores(RmpConfig::tiny(32), true) {
        assert_eq!(m.begin_in_flight(Pfn::new(20)), ReturnCode::Success);
        assert_eq!(m.rmpopt_verify(Pfn::new(16)), RmpoptVerify::NotOptimized);
        assert_eq!(m.rmpopt_verify(Pfn::new(0)), RmpoptVerify::Optimized);
        assert!(m.end_in_flight(Pfn::new(20)));
        assert_eq!(m.rmpopt_verify(Pfn::new(16)), RmpoptVerify::Optimized);
    }
}

/// O3: the table covers 2048 regions from frame 0 (2 TB of 1 GiB regions on x86; 2048 × 16
/// frames on `tiny`). A region starting at or beyond the window or the RMP's end is out of range;
/// the whole-memory scan stops at the window, so coverage stays below 1.
#[test]
fn two_terabyte_window() {
    let n = region_pages(snpsim_hw::Geometry::TINY);
    // One region more than the window, plus a partial one: 2049 × 16 + 3 frames.
    let pages = (RMPOPT_MAX_REGIONS + 1) * n + 3;
    for mut m in stores(RmpConfig::tiny(pages), true) {
        assert_eq!(m.rmpopt_verify(Pfn::new(RMPOPT_MAX_REGIONS * n)), RmpoptVerify::OutOfRange);
        assert_eq!(m.rmpopt_verify(Pfn::new(pages + n)), RmpoptVerify::OutOfRange);
        let scan = m.rmpopt_verify_all();
        assert_eq!(scan, RmpoptScan { verified: 2048, optimized: 2048 });
        // Marked: the 2048 × 16 = 32,768 frames of the window, of 32,787.
        assert_eq!(m.rmpopt_marked_pages(), RMPOPT_MAX_REGIONS * n);
        assert!(!m.is_optimized(Pfn::new(RMPOPT_MAX_REGIONS * n)));
        assert_eq!(m.rmp_stats().rmpopt_out_of_range, 2);
    }
    // On x86 the window is 2048 × 262,144 frames = 2^29 frames of 4 KiB = 2 TiB.
    assert_eq!(RMPOPT_MAX_REGIONS * region_pages(snpsim_hw::Geometry::X86) * 4096, 2 << 40);
}

/// O7: the scan marks exactly the regions with no assigned entry; a partial last region counts
/// its frames inside the RMP; a 2M page in region 0 keeps region 0 unmarked.
#[test]
fn scan_marks_hypervisor_owned_regions_only() {
    // 40 frames: regions 0 and 1 whole, region 2 holds frames 32..40.
    for mut m in stores(RmpConfig::tiny(40), true) {
        let huge = RmpArchEntry::new()
            .with_assigned(true)
            .with_asid(1)
            .with_page_size(true)
            .with_gpa(snpsim_defs::Gpa::new(0x4000));
        assert_eq!(m.rmpupdate(Pfn::new(4), huge), ReturnCode::Success);
        assert_eq!(m.rmpopt_verify_all(), RmpoptScan { verified: 3, optimized: 2 });
        // 16 + 8 frames marked.
        assert_eq!(m.rmpopt_marked_pages(), 24);
        assert!(
            !m.is_optimized(Pfn::new(7)) && m.is_optimized(Pfn::new(39)) && !m.is_optimized(Pfn::new(40))
        );
        // PSMASH of the 2M page: region 0 was not marked, nothing to clear.
        assert_eq!(m.psmash(Pfn::new(4)), ReturnCode::Success);
        assert_eq!(m.rmp_stats().rmpopt_marks_cleared, 0);
    }
}

/// O8: disabled (the default), verify changes and counts nothing and every write is checked.
#[test]
fn disabled_by_default() {
    let mut fast = Rmp::new(RmpConfig::tiny(32));
    let mut dense = DenseRmp::new(RmpConfig::tiny(32));
    for m in [&mut fast as &mut dyn RmpModel, &mut dense] {
        assert_eq!(m.rmpopt_verify(Pfn::new(0)), RmpoptVerify::Disabled);
        assert_eq!(m.rmpopt_verify_all(), RmpoptScan::default());
        assert!(!m.is_optimized(Pfn::new(0)));
        assert_eq!(m.rmp_stats().rmpopt_verifies, 0);
    }
    // Enabling, marking, then disabling drops the marks.
    fast.set_rmpopt(true);
    assert_eq!(fast.rmpopt_verify_all().optimized, 2);
    fast.set_rmpopt(false);
    assert_eq!(fast.rmpopt_marked_pages(), 0);
    assert_eq!(fast, Rmp::new(RmpConfig::tiny(32)));
}

/// Marks are state (equality, canonical form); the counters are not.
#[test]
fn marks_are_state_counters_are_not() {
    let cfg = RmpConfig::tiny(32);
    let (mut a, mut b) = (Rmp::new(cfg), Rmp::new(cfg));
    a.set_rmpopt(true);
    b.set_rmpopt(true);
    let canonical = |r: &Rmp| {
        let mut out = Vec::new();
        r.write_canonical(&mut out);
        out
    };
    assert_eq!(a.rmpopt_verify(Pfn::new(0)), RmpoptVerify::Optimized);
    assert_ne!(a, b);
    assert_ne!(canonical(&a), canonical(&b));
    // b reaches the same marks by another path, with other counters: equal.
    assert_eq!(b.rmpupdate(Pfn::new(1), RmpArchEntry::new()), ReturnCode::Success);
    assert_eq!(b.rmpopt_verify(Pfn::new(0)), RmpoptVerify::Optimized);
    assert_ne!(a.rmp_stats(), b.rmp_stats());
    assert_eq!(a, b);
    assert_eq!(canonical(&a), canonical(&b));
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
    // RMPOPT off: the canonical form is that of an RMP built before RMPOPT existed (no marks).
    let mut plain = Vec::new();
    Rmp::new(cfg).write_canonical(&mut plain);
    let mut off = Rmp::new(cfg);
    off.set_rmpopt(false);
    assert_eq!(canonical(&off), plain);
}

/// Each store with RMPOPT on, paired with a plain region-structured RMP without it.
fn pairs(cfg: RmpConfig) -> [(Box<dyn RmpModel>, Rmp); 2] {
    let [fast, dense] = stores(cfg, true);
    [(fast, Rmp::new(cfg)), (dense, Rmp::new(cfg))]
}

/// The frames whose host-write check is compared after each operation: all of a `tiny` host; on
/// x86 the first, second, middle and last frame of every 2M region (the oracle's large-mapping
/// check scans 512 entries), plus the frames just beyond the RMP.
fn probe_frames(cfg: RmpConfig) -> Vec<Pfn> {
    let g = cfg.geometry.pages_per_2m();
    let inside: Vec<u64> = if g <= 4 {
        (0..cfg.pages).collect()
    } else {
        (0..cfg.pages).filter(|p| [0, 1, g / 2, g - 1].contains(&(p % g))).collect()
    };
    inside.into_iter().chain([cfg.pages, cfg.pages + 1]).map(Pfn::new).collect()
}

/// O5/O6, the safety property: over random operation streams (every instruction, in-flight
/// windows, guest operations and RMPOPT verifies from the differential generator, plus a scan of
/// all memory at the start and every 64 operations, as Linux runs at SNP initialisation and
/// guest teardown), a model with RMPOPT and a plain one fed the same operations give the same
/// result for every operation but the verify, and the same host-write check for the probed
/// frames through every mapping size, user or kernel, after every operation. So skipping the
/// check of a marked region never allows a write the full check forbids. And every frame of a
/// marked region is hypervisor-owned (O5).
#[test]
fn skipping_never_allows_a_forbidden_write() {
    let mut master = Rng::seeded(0x04d5_00e7);
    let (mut skipped, mut cleared, mut refused) = (0u64, 0u64, 0u64);
    for case in 0..400u64 {
        // The small tiny host and the x86 host (the big one is all assigned by its sweep).
        let cfg = config(case % 2);
        let generator = Gen { cfg };
        let mut ops = generator.sweep();
        ops.extend((0..256).map(|_| generator.op(master.next())));
        let probes = probe_frames(cfg);
        for (mut opt, mut plain) in pairs(cfg) {
            opt.rmpopt_verify_all();
            for (i, &op) in ops.iter().enumerate() {
                let a = apply(opt.as_mut(), op);
                let b = apply(&mut plain, op);
                if !matches!(op, Op::Verify(_)) {
                    assert_eq!(a, b, "case {case}, op {i}: {op:?}");
                }
                if i % 64 == 63 {
                    opt.rmpopt_verify_all();
                }
                for &p in &probes {
                    let marked = opt.is_optimized(p);
                    // O5: a marked region holds no assigned entry.
                    assert!(
                        !marked || opt.raw_entry(p).is_some_and(|e| !e.lo.assigned()),
                        "case {case}, op {i}: {p:?} marked but assigned"
                    );
                    for size in PageSize::ALL {
                        for user in [false, true] {
                            let full = plain.check_host_write(p, size, user);
                            assert_eq!(
                                opt.check_host_write(p, size, user),
                                full,
                                "case {case}, op {i} ({op:?}): host write to {p:?} through {size:?}"
                            );
                            skipped += u64::from(marked);
                            refused += u64::from(full.is_err());
                        }
                    }
                }
            }
            cleared += opt.rmp_stats().rmpopt_marks_cleared;
        }
    }
    // Not vacuous: writes to marked regions were skipped, marks were cleared by RMPUPDATEs, and
    // the full check refused writes elsewhere.
    println!("checks skipped {skipped}, marks cleared {cleared}, writes refused {refused}");
    assert!(skipped > 100_000 && cleared > 100 && refused > 100_000, "{skipped} {cleared} {refused}");
}
