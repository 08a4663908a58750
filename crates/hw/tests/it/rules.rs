//! One test per hardware rule and per return code of `docs/semantics.md`, section "Hardware".
//!
//! Every test is written against the [`RmpModel`] trait only, so any implementation runs the
//! whole set: `rule_tests!(module_name, constructor)` instantiates it for a constructor
//! `fn(RmpConfig) -> impl RmpModel`. Each test is named for its rule and cites the rule (and
//! through it the source) in a comment. Tests assert exact return codes, exact error-code bits and
//! exact raw entries, and run on both the x86 geometry (`G` = 512) and the `tiny` one (`G` = 4)
//! wherever the region size matters.

use snpsim_defs::rmp::{RMP_GPA_LIMIT, RMP_LOCK_ASID};
use snpsim_defs::{
    Gpa, NpfErrorCode, PAGE_SIZE_4K, PageSize, PfErrorCode, Pfn, ReturnCode, RmpAdjustOperand, RmpArchEntry,
    RmpEntryHi, RmpEntryLo, RmpEntryRaw, RmpPageSize, SvmExitCode, VmplPerms,
};
use snpsim_hw::reference::DenseRmp;
use snpsim_hw::{
    AccessKind, GuestAccess, GuestContext, GuestOutcome, PvalidateStatus, RmpConfig, RmpModel, RmpQueryResult,
};

/// The guest under test and a second guest.
const A: u16 = 1;
const B: u16 = 2;

/// An x86 RMP of 4096 pages (8 regions of 512) and a `tiny` one of 64 pages (16 regions of 4).
const X86: RmpConfig = RmpConfig::x86(4096);
const TINY: RmpConfig = RmpConfig::tiny(64);
const CONFIGS: [RmpConfig; 2] = [X86, TINY];

/// #NPF error-code bits (Linux `PFERR_*`, `defs::NpfErrorCode`).
const NPF_P: u64 = 1;
const NPF_W: u64 = 1 << 1;
const NPF_U: u64 = 1 << 2;
const NPF_ID: u64 = 1 << 4;
const NPF_RMP: u64 = 1 << 31;
const NPF_FINAL: u64 = 1 << 32;
const NPF_ENC: u64 = 1 << 34;
const NPF_SIZEM: u64 = 1 << 35;
const NPF_VMPL: u64 = 1 << 36;
/// The #NPF of PVALIDATE, RMPADJUST and RMPQUERY: P | RMP | GUEST_FINAL | ENC.
const NPF_INSTR: u64 = NPF_P | NPF_RMP | NPF_FINAL | NPF_ENC;
/// The base of every guest-access #NPF: P | RMP | GUEST_FINAL.
const NPF_ACCESS: u64 = NPF_P | NPF_RMP | NPF_FINAL;

/// VMPL permission bits (`defs::VmplPerms`).
const PERM_R: u8 = 1;
const PERM_W: u8 = 1 << 1;
const PERM_XU: u8 = 1 << 2;
const PERM_XS: u8 = 1 << 3;
const PERM_SSS: u8 = 1 << 4;

fn g(c: RmpConfig) -> u64 {
    c.geometry.pages_per_2m()
}

fn bytes_2m(c: RmpConfig) -> u64 {
    c.geometry.bytes(PageSize::Size2M)
}

/// The first frame of region `k`.
fn region(c: RmpConfig, k: u64) -> Pfn {
    Pfn(k * g(c))
}

/// The first GPA of the `k`-th 2M-aligned guest range.
fn gpa_2m(c: RmpConfig, k: u64) -> Gpa {
    Gpa(k * bytes_2m(c))
}

/// Frame `i` after `p`.
fn pf(p: Pfn, i: u64) -> Pfn {
    Pfn(p.0 + i)
}

/// Page `i` after `gpa`.
fn ga(gpa: Gpa, i: u64) -> Gpa {
    Gpa(gpa.0 + i * PAGE_SIZE_4K)
}

fn at(vmpl: u8) -> GuestContext {
    GuestContext { asid: A, vmpl }
}

fn private(gpa: Gpa, asid: u16, size: RmpPageSize) -> RmpArchEntry {
    RmpArchEntry::new().with_gpa(gpa.0).with_assigned(true).with_page_size(size.bit()).with_asid(asid.into())
}

fn shared(size: RmpPageSize) -> RmpArchEntry {
    RmpArchEntry::new().with_page_size(size.bit())
}

fn grant(target_vmpl: u8, perms: u8) -> RmpAdjustOperand {
    RmpAdjustOperand::new().with_target_vmpl(target_vmpl).with_perms(VmplPerms::from_bits(perms))
}

fn npf<T>(bits: u64) -> GuestOutcome<T> {
    GuestOutcome::Npf(NpfErrorCode::from_bits(bits))
}

fn vc<T>() -> GuestOutcome<T> {
    GuestOutcome::Vc(SvmExitCode::PageNotValidated)
}

fn pf_err(bits: u32) -> Result<(), PfErrorCode> {
    Err(PfErrorCode::from_bits(bits))
}

fn raw(lo: RmpEntryLo, hi: RmpEntryHi) -> RmpEntryRaw {
    RmpEntryRaw { lo, hi }
}

fn assigned_lo(gfn: u64, asid: u16) -> RmpEntryLo {
    RmpEntryLo::new().with_assigned(true).with_gpa_frame(gfn).with_asid(asid)
}

/// RMPUPDATE step 7 reset: VMPL0 = all, VMPL1–3 = none.
fn initial_hi() -> RmpEntryHi {
    RmpEntryHi::new().with_vmpl0(VmplPerms::ALL)
}

fn read_access(guest: GuestContext, gpa: Gpa, pfn: Pfn, npt_size: PageSize, private: bool) -> GuestAccess {
    GuestAccess { guest, gpa, pfn, npt_size, private, kind: AccessKind::Read, user: false }
}

fn assign_4k<M: RmpModel>(m: &mut M, pfn: Pfn, gpa: Gpa, asid: u16) {
    assert_eq!(m.rmpupdate(pfn, private(gpa, asid, RmpPageSize::Size4K)), ReturnCode::Success);
}

fn assign_2m<M: RmpModel>(m: &mut M, pfn: Pfn, gpa: Gpa, asid: u16) {
    assert_eq!(m.rmpupdate(pfn, private(gpa, asid, RmpPageSize::Size2M)), ReturnCode::Success);
}

/// Assign `pfn` to guest A at `gpa` as 4K and PVALIDATE it.
fn valid_4k<M: RmpModel>(m: &mut M, pfn: Pfn, gpa: Gpa) {
    assign_4k(m, pfn, gpa, A);
    assert_eq!(
        m.pvalidate(at(0), gpa, pfn, RmpPageSize::Size4K, true),
        GuestOutcome::Done(PvalidateStatus::Changed)
    );
}

/// Assign the region at `pfn` to guest A at `gpa` as 2M and PVALIDATE it as 2M.
fn valid_2m<M: RmpModel>(m: &mut M, pfn: Pfn, gpa: Gpa) {
    assign_2m(m, pfn, gpa, A);
    assert_eq!(
        m.pvalidate(at(0), gpa, pfn, RmpPageSize::Size2M, true),
        GuestOutcome::Done(PvalidateStatus::Changed)
    );
}

/// All raw entries of `count` frames from `pfn`.
fn raws<M: RmpModel>(m: &M, pfn: Pfn, count: u64) -> Vec<Option<RmpEntryRaw>> {
    (0..count).map(|i| m.raw_entry(pf(pfn, i))).collect()
}

/// Instantiate every rule test in module `$name` for the model built by `$ctor`, a function or
/// closure from [`RmpConfig`] to an [`RmpModel`].
macro_rules! rule_tests {
    ($name:ident, $ctor:expr) => {
        mod $name {
            use super::*;

            fn rmp(c: RmpConfig) -> impl RmpModel {
                let ctor = $ctor;
                ctor(c)
            }

            // ---------------------------------------------------------------- entries and regions

            #[test]
            fn h1_fresh_rmp_is_all_zero_hypervisor_entries() {
                // H1: a fresh RMP is all zero (firmware RMP_ENTRY_VAL_HYPERVISOR = 0).
                for c in CONFIGS {
                    let m = rmp(c);
                    assert_eq!(m.config(), c);
                    for p in 0..c.pages {
                        assert_eq!(m.raw_entry(Pfn(p)), Some(RmpEntryRaw::default()), "{c:?} frame {p}");
                        assert_eq!(m.rmpread(Pfn(p)), Ok(RmpArchEntry::new()));
                    }
                    assert_eq!(m.asid_assigned_pages(A), 0);
                    assert_eq!(m.lookup(Pfn(1)), Some((false, RmpPageSize::Size4K)));
                }
            }

            #[test]
            fn h6_frame_beyond_rmp_has_no_entry() {
                // H6: a frame >= pages is outside the RMP (firmware "DEFAULT" page).
                for c in CONFIGS {
                    let m = rmp(c);
                    assert_eq!(m.raw_entry(Pfn(c.pages)), None);
                    assert_eq!(m.raw_entry(Pfn(u64::MAX)), None);
                    assert_eq!(m.rmpread(Pfn(c.pages)), Err(ReturnCode::FailInput));
                    assert_eq!(m.lookup(Pfn(c.pages)), None);
                }
            }

            #[test]
            fn h6_instructions_naming_a_frame_beyond_rmp_are_fail_input() {
                // H6: instructions naming a frame outside the RMP return FAIL_INPUT.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let out = Pfn(c.pages);
                    let gpa = Gpa(0);
                    assert_eq!(m.rmpupdate(out, private(gpa, A, RmpPageSize::Size4K)), ReturnCode::FailInput);
                    assert_eq!(m.rmpupdate(out, shared(RmpPageSize::Size2M)), ReturnCode::FailInput);
                    assert_eq!(m.psmash(out), ReturnCode::FailInput);
                    let pv = m.pvalidate(at(0), gpa, out, RmpPageSize::Size4K, true);
                    assert_eq!(pv, GuestOutcome::Fail(ReturnCode::FailInput));
                    let adj = m.rmpadjust(at(0), gpa, out, RmpPageSize::Size4K, grant(1, PERM_R));
                    assert_eq!(adj, GuestOutcome::Fail(ReturnCode::FailInput));
                    assert_eq!(m.rmpquery(at(0), gpa, out, 0), GuestOutcome::Fail(ReturnCode::FailInput));
                    assert_eq!(m.begin_in_flight(out), ReturnCode::FailInput);
                }
            }

            #[test]
            fn h6_host_write_beyond_rmp_is_not_checked() {
                // H6: host writes to a frame outside the RMP are not checked.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    assign_2m(&mut m, region(c, 0), gpa_2m(c, 0), A);
                    for size in PageSize::ALL {
                        assert_eq!(m.check_host_write(Pfn(c.pages), size, false), Ok(()));
                        assert_eq!(m.check_host_write(Pfn(c.pages + 1), size, true), Ok(()));
                    }
                }
            }

            #[test]
            fn h2_h3_2m_rmpupdate_mirrors_the_aligned_entry_in_every_raw_entry() {
                // H2 (Linux __snp_lookup_rmpentry), H3 (Choice): the G-1 other entries mirror the
                // 2M entry with GPA + i·4K, page-size bit 0, sub-page count 0; H4: G-1 on the
                // aligned entry.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 2);
                    let base = gpa_2m(c, 5);
                    assign_2m(&mut m, r, base, A);
                    for i in 0..g(c) {
                        let lo = assigned_lo(base.gfn().0 + i, A)
                            .with_page_size(i == 0)
                            .with_subpage_count(if i == 0 { (g(c) - 1) as u16 } else { 0 });
                        assert_eq!(m.raw_entry(pf(r, i)), Some(raw(lo, initial_hi())), "{c:?} entry {i}");
                        assert_eq!(m.lookup(pf(r, i)), Some((true, RmpPageSize::Size2M)));
                    }
                    assert_eq!(m.raw_entry(pf(r, g(c))), Some(RmpEntryRaw::default()));
                    assert_eq!(m.raw_entry(Pfn(r.0 - 1)), Some(RmpEntryRaw::default()));
                }
                // Known answer, x86: assigned | size | 511 << 3 | GPA frame 0xA00 << 12 | ASID 1 << 51;
                // VMPL0 = 0x1f in the high quadword.
                let mut m = rmp(X86);
                assign_2m(&mut m, Pfn(0x400), Gpa(0xa0_0000), A);
                let aligned = m.raw_entry(Pfn(0x400)).unwrap();
                assert_eq!(aligned.to_u128(), 0x0000_0000_0000_001f_0008_0000_00a0_0ffb);
                // The next entry mirrors it: assigned | GPA frame 0xA01 << 12 | ASID 1 << 51, with
                // the size bit and the sub-page count clear.
                let next = m.raw_entry(Pfn(0x401)).unwrap();
                assert_eq!(next.to_u128(), 0x0000_0000_0000_001f_0008_0000_00a0_1001);
            }

            #[test]
            fn h4_subpage_count_counts_assigned_pages_other_than_the_aligned_one() {
                // H4 (firmware set_rmp_sub_page_count): raw bits 3–11 of the aligned entry only.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 1);
                    let base = gpa_2m(c, 3);
                    let count = |m: &dyn RmpModel| m.raw_entry(r).unwrap().lo.subpage_count();
                    assign_4k(&mut m, pf(r, 1), ga(base, 1), A);
                    // The aligned entry is unassigned yet carries the count: raw = 1 << 3.
                    assert_eq!(
                        m.raw_entry(r),
                        Some(raw(RmpEntryLo::new().with_subpage_count(1), RmpEntryHi::new()))
                    );
                    assert_eq!(m.raw_entry(r).unwrap().to_u128(), 1 << 3);
                    assign_4k(&mut m, pf(r, 3), ga(base, 3), B);
                    assert_eq!(count(&m), 2);
                    assign_4k(&mut m, r, base, A);
                    assert_eq!(count(&m), 2);
                    assert_eq!(
                        m.raw_entry(r),
                        Some(raw(assigned_lo(base.gfn().0, A).with_subpage_count(2), initial_hi()))
                    );
                    assert_eq!(m.rmpupdate(pf(r, 1), shared(RmpPageSize::Size4K)), ReturnCode::Success);
                    assert_eq!(count(&m), 1);
                    assert_eq!(m.raw_entry(pf(r, 3)).unwrap().lo.subpage_count(), 0);
                    assert_eq!(m.raw_entry(pf(r, 1)), Some(RmpEntryRaw::default()));
                    assert_eq!(m.rmpupdate(r, shared(RmpPageSize::Size4K)), ReturnCode::Success);
                    assert_eq!(
                        m.raw_entry(r),
                        Some(raw(RmpEntryLo::new().with_subpage_count(1), RmpEntryHi::new()))
                    );
                }
            }

            #[test]
            fn h5_unassigned_2m_rmpupdate_zeroes_the_whole_region() {
                // H5 (Choice): a 2M RMPUPDATE to unassigned returns all G entries to zero.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 3);
                    let base = gpa_2m(c, 1);
                    valid_2m(&mut m, r, base);
                    let adj = m.rmpadjust(at(0), base, r, RmpPageSize::Size2M, grant(1, PERM_R));
                    assert_eq!(adj, GuestOutcome::Done(()));
                    assert_eq!(m.rmpupdate(r, shared(RmpPageSize::Size2M)), ReturnCode::Success);
                    assert_eq!(raws(&m, r, g(c)), vec![Some(RmpEntryRaw::default()); g(c) as usize]);
                    assert_eq!(m.lookup(r), Some((false, RmpPageSize::Size4K)));
                    assert_eq!(m.asid_assigned_pages(A), 0);
                    // The region is 4K again: a 4K RMPUPDATE inside it no longer overlaps.
                    assign_4k(&mut m, pf(r, 1), ga(base, 1), A);
                }
            }

            #[test]
            fn h7_asid_counter_counts_assigned_4k_pages() {
                // H7 (firmware check_rmp_for_asid): per-ASID count of assigned 4 KiB pages; a 2M
                // entry counts G.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 2);
                    assign_2m(&mut m, r, gpa_2m(c, 2), A);
                    assert_eq!(m.asid_assigned_pages(A), g(c));
                    assign_4k(&mut m, region(c, 4), gpa_2m(c, 9), A);
                    assign_4k(&mut m, pf(region(c, 4), 1), ga(gpa_2m(c, 9), 1), A);
                    assign_4k(&mut m, pf(region(c, 5), 2), Gpa(0x1000), B);
                    assert_eq!(m.asid_assigned_pages(A), g(c) + 2);
                    assert_eq!(m.asid_assigned_pages(B), 1);
                    assert_eq!(m.asid_assigned_pages(3), 0);
                    assert_eq!(m.psmash(r), ReturnCode::Success);
                    assert_eq!(m.asid_assigned_pages(A), g(c) + 2);
                    assert_eq!(m.rmpupdate(pf(r, 1), shared(RmpPageSize::Size4K)), ReturnCode::Success);
                    assert_eq!(m.asid_assigned_pages(A), g(c) + 1);
                    // Reassigning a page to another ASID moves it between counters.
                    assign_4k(&mut m, region(c, 4), Gpa(0x2000), B);
                    assert_eq!((m.asid_assigned_pages(A), m.asid_assigned_pages(B)), (g(c), 2));
                }
            }

            #[test]
            fn lookup_reports_own_assigned_bit_and_governing_size() {
                // RmpModel::lookup (Linux snp_lookup_rmpentry): own entry's assigned, aligned
                // entry's size.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 1);
                    assign_4k(&mut m, pf(r, 2), ga(gpa_2m(c, 1), 2), A);
                    assert_eq!(m.lookup(pf(r, 2)), Some((true, RmpPageSize::Size4K)));
                    assert_eq!(m.lookup(pf(r, 1)), Some((false, RmpPageSize::Size4K)));
                    assign_2m(&mut m, region(c, 2), gpa_2m(c, 2), A);
                    assert_eq!(m.lookup(pf(region(c, 2), g(c) - 1)), Some((true, RmpPageSize::Size2M)));
                }
            }

            // ------------------------------------------------------------------------ RMPUPDATE

            #[test]
            fn rmpupdate_step1_frame_beyond_rmp_is_fail_input() {
                // RMPUPDATE step 1 (H6): pfn >= pages ⇒ FAIL_INPUT.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    for p in [c.pages, c.pages + 1, u64::MAX] {
                        let new = private(Gpa(0x1000), A, RmpPageSize::Size4K);
                        assert_eq!(m.rmpupdate(Pfn(p), new), ReturnCode::FailInput);
                        assert_eq!(m.rmpupdate(Pfn(p), shared(RmpPageSize::Size4K)), ReturnCode::FailInput);
                    }
                    assign_4k(&mut m, Pfn(c.pages - 1), Gpa(0x1000), A);
                }
            }

            #[test]
            fn rmpupdate_step2_unaligned_2m_is_fail_input() {
                // RMPUPDATE step 2 (APM, UNVERIFIED wording): a 2M entry at an unaligned frame.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 1);
                    for i in [1, g(c) - 1] {
                        let new = private(gpa_2m(c, 1), A, RmpPageSize::Size2M);
                        assert_eq!(m.rmpupdate(pf(r, i), new), ReturnCode::FailInput);
                        assert_eq!(m.rmpupdate(pf(r, i), shared(RmpPageSize::Size2M)), ReturnCode::FailInput);
                    }
                    // Step 2 precedes step 4: in flight still gives FAIL_INPUT.
                    assert_eq!(m.begin_in_flight(r), ReturnCode::Success);
                    let new = private(gpa_2m(c, 1), A, RmpPageSize::Size2M);
                    assert_eq!(m.rmpupdate(pf(r, 1), new), ReturnCode::FailInput);
                    assert!(m.end_in_flight(r));
                    assert_eq!(raws(&m, r, g(c)), vec![Some(RmpEntryRaw::default()); g(c) as usize]);
                }
            }

            #[test]
            fn rmpupdate_step3_asid_outside_1_to_1022_is_fail_input() {
                // RMPUPDATE step 3 (Choice): ASID 0 is a firmware page, 0x3FF the firmware lock.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    for asid in [0, u32::from(RMP_LOCK_ASID), 1024, u32::MAX] {
                        let new = private(Gpa(0x1000), A, RmpPageSize::Size4K).with_asid(asid);
                        assert_eq!(m.rmpupdate(Pfn(1), new), ReturnCode::FailInput, "asid {asid}");
                        let new_2m = private(Gpa(0), A, RmpPageSize::Size2M).with_asid(asid);
                        assert_eq!(m.rmpupdate(region(c, 1), new_2m), ReturnCode::FailInput, "asid {asid}");
                    }
                    assert_eq!(m.raw_entry(Pfn(1)), Some(RmpEntryRaw::default()));
                    assign_4k(&mut m, Pfn(1), Gpa(0x1000), 1022);
                    assert_eq!(m.asid_assigned_pages(1022), 1);
                }
            }

            #[test]
            fn rmpupdate_step3_gpa_at_or_above_2_pow_51_is_fail_input() {
                // RMPUPDATE step 3 (Choice): the raw entry keeps GPA bits 50:12 only.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    for gpa in [RMP_GPA_LIMIT, RMP_GPA_LIMIT + PAGE_SIZE_4K, u64::MAX & !0xfff] {
                        let new = private(Gpa(gpa), A, RmpPageSize::Size4K);
                        assert_eq!(m.rmpupdate(Pfn(2), new), ReturnCode::FailInput);
                    }
                    assign_4k(&mut m, Pfn(2), Gpa(RMP_GPA_LIMIT - PAGE_SIZE_4K), A);
                    let gfn = (RMP_GPA_LIMIT - PAGE_SIZE_4K) >> 12;
                    assert_eq!(m.raw_entry(Pfn(2)), Some(raw(assigned_lo(gfn, A), initial_hi())));
                }
            }

            #[test]
            fn rmpupdate_step3_gpa_unaligned_to_entry_size_is_fail_input() {
                // RMPUPDATE step 3 (Choice): the GPA is aligned to the entry size.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let new = private(Gpa(0x1800), A, RmpPageSize::Size4K);
                    assert_eq!(m.rmpupdate(Pfn(3), new), ReturnCode::FailInput);
                    for gpa in [bytes_2m(c) + PAGE_SIZE_4K, bytes_2m(c) / 2, 1] {
                        let new = private(Gpa(gpa), A, RmpPageSize::Size2M);
                        assert_eq!(
                            m.rmpupdate(region(c, 1), new),
                            ReturnCode::FailInput,
                            "{c:?} gpa {gpa:#x}"
                        );
                    }
                    assert_eq!(m.lookup(region(c, 1)), Some((false, RmpPageSize::Size4K)));
                    assign_2m(&mut m, region(c, 1), gpa_2m(c, 7), A);
                }
            }

            #[test]
            fn rmpupdate_step3_unassigned_operand_with_asid_gpa_or_immutable_is_fail_input() {
                // RMPUPDATE step 3 (Choice; Linux rmp_make_shared zeroes the whole state).
                for c in CONFIGS {
                    let mut m = rmp(c);
                    assign_4k(&mut m, Pfn(1), Gpa(0x1000), A);
                    for size in [RmpPageSize::Size4K, RmpPageSize::Size2M] {
                        let pfn = if size == RmpPageSize::Size4K { Pfn(1) } else { region(c, 2) };
                        for bad in [
                            shared(size).with_asid(1),
                            shared(size).with_gpa(0x1000),
                            shared(size).with_immutable(true),
                        ] {
                            assert_eq!(m.rmpupdate(pfn, bad), ReturnCode::FailInput);
                        }
                    }
                    assert_eq!(m.lookup(Pfn(1)), Some((true, RmpPageSize::Size4K)));
                }
            }

            #[test]
            fn rmpupdate_step3_input_precedes_inuse() {
                // RMPUPDATE steps 3 then 4: an invalid operand in an in-flight region is FAIL_INPUT.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    assert_eq!(m.begin_in_flight(region(c, 1)), ReturnCode::Success);
                    let bad = private(Gpa(0x1000), A, RmpPageSize::Size4K).with_asid(0);
                    assert_eq!(m.rmpupdate(pf(region(c, 1), 1), bad), ReturnCode::FailInput);
                }
            }

            #[test]
            fn rmpupdate_step4_region_in_flight_is_fail_inuse() {
                // RMPUPDATE step 4 (Linux PSMASH_FAIL_INUSE comment; Concurrency).
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 2);
                    let base = gpa_2m(c, 2);
                    assert_eq!(m.begin_in_flight(r), ReturnCode::Success);
                    assert_eq!(
                        m.rmpupdate(pf(r, 1), private(ga(base, 1), A, RmpPageSize::Size4K)),
                        ReturnCode::FailInuse
                    );
                    assert_eq!(
                        m.rmpupdate(pf(r, g(c) - 1), shared(RmpPageSize::Size4K)),
                        ReturnCode::FailInuse
                    );
                    assert_eq!(m.rmpupdate(r, private(base, A, RmpPageSize::Size2M)), ReturnCode::FailInuse);
                    assert_eq!(raws(&m, r, g(c)), vec![Some(RmpEntryRaw::default()); g(c) as usize]);
                    // Other regions are unaffected.
                    assign_4k(&mut m, pf(region(c, 3), 1), Gpa(0x1000), A);
                    assert!(m.end_in_flight(r));
                    assign_2m(&mut m, r, base, A);
                }
            }

            #[test]
            fn rmpupdate_step4_inuse_precedes_permission_and_overlap() {
                // RMPUPDATE steps 4 then 5 then 6.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 1);
                    let imm = private(ga(gpa_2m(c, 1), 1), A, RmpPageSize::Size4K).with_immutable(true);
                    assert_eq!(m.rmpupdate(pf(r, 1), imm), ReturnCode::Success);
                    assign_2m(&mut m, region(c, 2), gpa_2m(c, 2), A);
                    assert_eq!(m.begin_in_flight(r), ReturnCode::Success);
                    assert_eq!(m.begin_in_flight(region(c, 2)), ReturnCode::Success);
                    assert_eq!(m.rmpupdate(pf(r, 1), shared(RmpPageSize::Size4K)), ReturnCode::FailInuse);
                    let inside = private(Gpa(0x1000), A, RmpPageSize::Size4K);
                    assert_eq!(m.rmpupdate(pf(region(c, 2), 1), inside), ReturnCode::FailInuse);
                }
            }

            #[test]
            fn rmpupdate_step5_immutable_entry_is_fail_permission() {
                // RMPUPDATE step 5 (MSVC __rmpupdate "the RMP entry is immutable"; VeriSMo).
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let imm = private(Gpa(0x5000), A, RmpPageSize::Size4K).with_immutable(true);
                    assert_eq!(m.rmpupdate(Pfn(1), imm), ReturnCode::Success);
                    let before = m.raw_entry(Pfn(1));
                    assert_eq!(before, Some(raw(assigned_lo(5, A).with_immutable(true), initial_hi())));
                    assert_eq!(m.rmpupdate(Pfn(1), shared(RmpPageSize::Size4K)), ReturnCode::FailPermission);
                    assert_eq!(m.rmpupdate(Pfn(1), imm), ReturnCode::FailPermission);
                    assert_eq!(
                        m.rmpupdate(Pfn(1), private(Gpa(0x6000), B, RmpPageSize::Size4K)),
                        ReturnCode::FailPermission
                    );
                    assert_eq!(m.raw_entry(Pfn(1)), before);
                }
            }

            #[test]
            fn rmpupdate_step5_2m_over_region_with_an_immutable_page_is_fail_permission() {
                // RMPUPDATE step 5: for a 2M update any of the G entries; checked before step 6.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 1);
                    let last = pf(r, g(c) - 1);
                    let imm = private(Gpa(0x9000), A, RmpPageSize::Size4K).with_immutable(true);
                    assert_eq!(m.rmpupdate(last, imm), ReturnCode::Success);
                    assert_eq!(
                        m.rmpupdate(r, private(gpa_2m(c, 1), A, RmpPageSize::Size2M)),
                        ReturnCode::FailPermission
                    );
                    assert_eq!(m.rmpupdate(r, shared(RmpPageSize::Size2M)), ReturnCode::FailPermission);
                    assert_eq!(m.lookup(last), Some((true, RmpPageSize::Size4K)));
                }
            }

            #[test]
            fn rmpupdate_step5_4k_inside_immutable_2m_is_fail_permission() {
                // RMPUPDATE step 5 precedes step 6: a 4K update of an immutable 2M region's page.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 2);
                    let imm = private(gpa_2m(c, 2), A, RmpPageSize::Size2M).with_immutable(true);
                    assert_eq!(m.rmpupdate(r, imm), ReturnCode::Success);
                    assert_eq!(
                        m.rmpupdate(pf(r, 1), shared(RmpPageSize::Size4K)),
                        ReturnCode::FailPermission
                    );
                    assert_eq!(m.rmpupdate(r, shared(RmpPageSize::Size4K)), ReturnCode::FailPermission);
                    assert_eq!(m.rmpupdate(r, shared(RmpPageSize::Size2M)), ReturnCode::FailPermission);
                    assert_eq!(m.lookup(pf(r, 1)), Some((true, RmpPageSize::Size2M)));
                }
            }

            #[test]
            fn rmpupdate_4k_inside_assigned_2m_is_fail_overlap() {
                // RMPUPDATE step 6 (Linux RMPUPDATE_FAIL_OVERLAP "4K page and 2MB page overlap").
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 2);
                    let base = gpa_2m(c, 2);
                    assign_2m(&mut m, r, base, A);
                    let before = raws(&m, r, g(c));
                    for i in [0, 1, g(c) - 1] {
                        assert_eq!(
                            m.rmpupdate(pf(r, i), shared(RmpPageSize::Size4K)),
                            ReturnCode::FailOverlap
                        );
                        let same = private(ga(base, i), A, RmpPageSize::Size4K);
                        assert_eq!(m.rmpupdate(pf(r, i), same), ReturnCode::FailOverlap);
                    }
                    assert_eq!(raws(&m, r, g(c)), before);
                }
            }

            #[test]
            fn rmpupdate_2m_over_4k_region_with_an_assigned_page_is_fail_overlap() {
                // RMPUPDATE step 6: a 2M update (either state) of a 4K region holding an assigned entry.
                for c in CONFIGS {
                    for i in [0, 1, g(c) - 1] {
                        let mut m = rmp(c);
                        let r = region(c, 3);
                        assign_4k(&mut m, pf(r, i), Gpa(0x4000), B);
                        let before = raws(&m, r, g(c));
                        assert_eq!(
                            m.rmpupdate(r, private(gpa_2m(c, 3), A, RmpPageSize::Size2M)),
                            ReturnCode::FailOverlap
                        );
                        assert_eq!(m.rmpupdate(r, shared(RmpPageSize::Size2M)), ReturnCode::FailOverlap);
                        assert_eq!(raws(&m, r, g(c)), before);
                    }
                }
            }

            #[test]
            fn rmpupdate_2m_over_unassigned_4k_region_succeeds() {
                // RMPUPDATE step 6: no assigned entry in the 4K region ⇒ no overlap.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 1);
                    assign_4k(&mut m, pf(r, 1), Gpa(0x1000), A);
                    assert_eq!(m.rmpupdate(pf(r, 1), shared(RmpPageSize::Size4K)), ReturnCode::Success);
                    assign_2m(&mut m, r, gpa_2m(c, 4), A);
                    assert_eq!(m.lookup(pf(r, 1)), Some((true, RmpPageSize::Size2M)));
                    // A 2M shared update of an all-unassigned 4K region succeeds and leaves zeros.
                    let r2 = region(c, 2);
                    assert_eq!(m.rmpupdate(r2, shared(RmpPageSize::Size2M)), ReturnCode::Success);
                    assert_eq!(raws(&m, r2, g(c)), vec![Some(RmpEntryRaw::default()); g(c) as usize]);
                }
            }

            #[test]
            fn rmpupdate_2m_over_2m_region_rewrites_the_2m_entry() {
                // RMPUPDATE step 6: a 2M update of a 2M region is allowed; step 7 rewrites all G.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 1);
                    assign_2m(&mut m, r, gpa_2m(c, 1), A);
                    let other = gpa_2m(c, 6);
                    assign_2m(&mut m, r, other, B);
                    for i in 0..g(c) {
                        let lo = assigned_lo(other.gfn().0 + i, B)
                            .with_page_size(i == 0)
                            .with_subpage_count(if i == 0 { (g(c) - 1) as u16 } else { 0 });
                        assert_eq!(m.raw_entry(pf(r, i)), Some(raw(lo, initial_hi())));
                    }
                    assert_eq!((m.asid_assigned_pages(A), m.asid_assigned_pages(B)), (0, g(c)));
                }
            }

            #[test]
            fn rmpupdate_step7_4k_private_writes_the_exact_raw_entry() {
                // RMPUPDATE step 7; H1 layout (Linux struct rmpentry_raw, firmware rmp_fields_t).
                let mut m = rmp(X86);
                assign_4k(&mut m, Pfn(0x123), Gpa(0x5000), 7);
                // lo = assigned | GPA frame 5 << 12 | ASID 7 << 51; hi = VMPL0 0x1f.
                assert_eq!(
                    m.raw_entry(Pfn(0x123)).unwrap().to_u128(),
                    0x0000_0000_0000_001f_0038_0000_0000_5001
                );
                let imm = private(Gpa(0x6000), 7, RmpPageSize::Size4K).with_immutable(true);
                assert_eq!(m.rmpupdate(Pfn(0x124), imm), ReturnCode::Success);
                assert_eq!(
                    m.raw_entry(Pfn(0x124)).unwrap().to_u128(),
                    0x0000_0000_0000_001f_0038_0000_0000_6005
                );
                for c in CONFIGS {
                    let mut m = rmp(c);
                    assign_4k(&mut m, pf(region(c, 1), 2), Gpa(0x7000), B);
                    assert_eq!(m.raw_entry(pf(region(c, 1), 2)), Some(raw(assigned_lo(7, B), initial_hi())));
                    let neighbours = [m.raw_entry(pf(region(c, 1), 1)), m.raw_entry(pf(region(c, 1), 3))];
                    assert_eq!(neighbours, [Some(RmpEntryRaw::default()); 2]);
                }
            }

            #[test]
            fn rmpupdate_step7_unassigned_4k_zeroes_the_entry() {
                // RMPUPDATE step 7: unassigned entries are all zero (Validated, VMSA, perms too).
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let p = pf(region(c, 1), 1);
                    valid_4k(&mut m, p, Gpa(0x3000));
                    let op = grant(1, PERM_R).with_vmsa(true);
                    assert_eq!(
                        m.rmpadjust(at(0), Gpa(0x3000), p, RmpPageSize::Size4K, op),
                        GuestOutcome::Done(())
                    );
                    assert_eq!(m.rmpupdate(p, shared(RmpPageSize::Size4K)), ReturnCode::Success);
                    assert_eq!(m.raw_entry(p), Some(RmpEntryRaw::default()));
                }
            }

            #[test]
            fn rmpupdate_step7_same_state_keeps_validated_vmsa_and_perms() {
                // RMPUPDATE step 7 (VeriSMo _rmpupdate: reset only when assigned/ASID/GPA/size
                // change); an immutable-only change keeps them too.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let p = pf(region(c, 1), 1);
                    let gpa = Gpa(0x3000);
                    valid_4k(&mut m, p, gpa);
                    let op = grant(2, PERM_R | PERM_XU).with_vmsa(true);
                    assert_eq!(m.rmpadjust(at(0), gpa, p, RmpPageSize::Size4K, op), GuestOutcome::Done(()));
                    let kept = raw(
                        assigned_lo(3, A).with_validated(true).with_vmsa(true),
                        initial_hi().with_vmpl2(VmplPerms::from_bits(PERM_R | PERM_XU)),
                    );
                    assert_eq!(m.raw_entry(p), Some(kept));
                    assign_4k(&mut m, p, gpa, A);
                    assert_eq!(m.raw_entry(p), Some(kept));
                    let imm = private(gpa, A, RmpPageSize::Size4K).with_immutable(true);
                    assert_eq!(m.rmpupdate(p, imm), ReturnCode::Success);
                    assert_eq!(m.raw_entry(p), Some(raw(kept.lo.with_immutable(true), kept.hi)));
                }
            }

            #[test]
            fn rmpupdate_step7_asid_change_resets_validated_vmsa_and_perms() {
                // RMPUPDATE step 7: ASID changed ⇒ Validated, VMSA cleared; VMPL0 all, VMPL1–3 none.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let p = Pfn(3);
                    valid_4k(&mut m, p, Gpa(0x3000));
                    let op = grant(1, PERM_R).with_vmsa(true);
                    assert_eq!(
                        m.rmpadjust(at(0), Gpa(0x3000), p, RmpPageSize::Size4K, op),
                        GuestOutcome::Done(())
                    );
                    assign_4k(&mut m, p, Gpa(0x3000), B);
                    assert_eq!(m.raw_entry(p), Some(raw(assigned_lo(3, B), initial_hi())));
                }
            }

            #[test]
            fn rmpupdate_step7_gpa_change_resets_validated_vmsa_and_perms() {
                // RMPUPDATE step 7: GPA changed ⇒ reset.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let p = Pfn(3);
                    valid_4k(&mut m, p, Gpa(0x3000));
                    let op = grant(3, PERM_W).with_vmsa(true);
                    assert_eq!(
                        m.rmpadjust(at(0), Gpa(0x3000), p, RmpPageSize::Size4K, op),
                        GuestOutcome::Done(())
                    );
                    assign_4k(&mut m, p, Gpa(0x8000), A);
                    assert_eq!(m.raw_entry(p), Some(raw(assigned_lo(8, A), initial_hi())));
                }
            }

            #[test]
            fn rmpupdate_step7_assigned_change_resets_validated() {
                // RMPUPDATE step 7; APM: only PVALIDATE sets Validated. Shared then private again
                // with the same ASID and GPA comes back unvalidated.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let p = Pfn(3);
                    valid_4k(&mut m, p, Gpa(0x3000));
                    assert_eq!(m.rmpupdate(p, shared(RmpPageSize::Size4K)), ReturnCode::Success);
                    assign_4k(&mut m, p, Gpa(0x3000), A);
                    assert_eq!(m.raw_entry(p), Some(raw(assigned_lo(3, A), initial_hi())));
                }
            }

            #[test]
            fn rmpupdate_step7_2m_same_state_keeps_and_new_gpa_resets_every_entry() {
                // RMPUPDATE step 7 for 2M: same state keeps Validated/perms on all G entries; a new
                // GPA resets them on all G.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 1);
                    let base = gpa_2m(c, 1);
                    valid_2m(&mut m, r, base);
                    let adj = m.rmpadjust(at(0), base, r, RmpPageSize::Size2M, grant(1, PERM_R | PERM_W));
                    assert_eq!(adj, GuestOutcome::Done(()));
                    let before = raws(&m, r, g(c));
                    assert!(
                        before
                            .iter()
                            .all(|e| e.unwrap().lo.validated() && e.unwrap().hi.vmpl1().into_bits() == 3)
                    );
                    assign_2m(&mut m, r, base, A);
                    assert_eq!(raws(&m, r, g(c)), before);
                    let other = gpa_2m(c, 2);
                    assign_2m(&mut m, r, other, A);
                    for i in 0..g(c) {
                        let lo = assigned_lo(other.gfn().0 + i, A)
                            .with_page_size(i == 0)
                            .with_subpage_count(if i == 0 { (g(c) - 1) as u16 } else { 0 });
                        assert_eq!(m.raw_entry(pf(r, i)), Some(raw(lo, initial_hi())));
                    }
                }
            }

            // --------------------------------------------------------------------------- PSMASH

            #[test]
            fn psmash_step1_unaligned_or_beyond_rmp_is_fail_input() {
                // PSMASH step 1 (MSVC __psmash 1): pfn >= pages or not region-aligned ⇒ FAIL_INPUT,
                // before every other check.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 1);
                    assign_2m(&mut m, r, gpa_2m(c, 1), A);
                    assert_eq!(m.psmash(pf(r, 1)), ReturnCode::FailInput);
                    assert_eq!(m.psmash(pf(r, g(c) - 1)), ReturnCode::FailInput);
                    assert_eq!(m.psmash(Pfn(c.pages)), ReturnCode::FailInput);
                    assert_eq!(m.lookup(r), Some((true, RmpPageSize::Size2M)));
                    // Unaligned inside an in-flight 4K region: FAIL_INPUT beats FAIL_INUSE (3) and
                    // FAIL_UNSUPPORTED (7).
                    let empty = region(c, 2);
                    assert_eq!(m.begin_in_flight(empty), ReturnCode::Success);
                    assert_eq!(m.psmash(pf(empty, 1)), ReturnCode::FailInput);
                }
            }

            #[test]
            fn psmash_return_codes_have_the_intrinsic_numbers() {
                // MSVC __psmash: 0 success, 1 invalid input, 2 ASID ≠ 0, 3 in use, 7 "doesn't meet
                // the requirements for expansion". Code 2 needs a guest executing PSMASH, which the
                // model has no caller for (docs/semantics.md, PSMASH).
                let codes = [
                    ReturnCode::Success,
                    ReturnCode::FailInput,
                    ReturnCode::FailPermission,
                    ReturnCode::FailInuse,
                    ReturnCode::FailUnsupported,
                ];
                assert_eq!(codes.map(ReturnCode::raw), [0, 1, 2, 3, 7]);
                assert_eq!(ReturnCode::FailUnsupported.name(), "FAIL_UNSUPPORTED");
            }

            #[test]
            fn psmash_step3_region_in_flight_is_fail_inuse() {
                // PSMASH step 3 (MSVC __psmash 3, Linux PSMASH_FAIL_INUSE); precedes step 4: an
                // in-flight 4K region (region 2, never assigned) is FAIL_INUSE, not 7.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 1);
                    assign_2m(&mut m, r, gpa_2m(c, 1), A);
                    assert_eq!(m.begin_in_flight(r), ReturnCode::Success);
                    assert_eq!(m.psmash(r), ReturnCode::FailInuse);
                    assert_eq!(m.lookup(r), Some((true, RmpPageSize::Size2M)));
                    assert_eq!(m.begin_in_flight(region(c, 2)), ReturnCode::Success);
                    assert_eq!(m.psmash(region(c, 2)), ReturnCode::FailInuse);
                    assert!(m.end_in_flight(r));
                    assert_eq!(m.psmash(r), ReturnCode::Success);
                }
            }

            #[test]
            fn psmash_step4_4k_region_is_fail_unsupported() {
                // PSMASH step 4 (MSVC __psmash 7): a region that is not 2M does not meet the
                // requirements for expansion, whatever its 4K entries hold; nothing changes.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 1);
                    assert_eq!(m.psmash(r), ReturnCode::FailUnsupported);
                    assign_4k(&mut m, r, gpa_2m(c, 1), A);
                    assign_4k(&mut m, pf(r, 1), ga(gpa_2m(c, 1), 1), A);
                    let before = raws(&m, r, g(c));
                    assert_eq!(m.psmash(r), ReturnCode::FailUnsupported);
                    assert_eq!(raws(&m, r, g(c)), before);
                    // A partial last region (frames beyond the RMP) can hold no 2M entry (H9).
                    let tail = RmpConfig { pages: c.pages + 1, ..c };
                    let mut t = rmp(tail);
                    assert_eq!(t.psmash(Pfn(c.pages)), ReturnCode::FailUnsupported);
                }
            }

            #[test]
            fn psmash_step4_immutable_2m_is_fail_unsupported() {
                // PSMASH step 4 (Choice): an immutable 2M entry is not expandable (7); FAIL_PERMISSION
                // is only "ASID ≠ 0" for PSMASH (MSVC __psmash).
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 1);
                    let imm = private(gpa_2m(c, 1), A, RmpPageSize::Size2M).with_immutable(true);
                    assert_eq!(m.rmpupdate(r, imm), ReturnCode::Success);
                    let before = raws(&m, r, g(c));
                    assert_eq!(m.psmash(r), ReturnCode::FailUnsupported);
                    assert_eq!(raws(&m, r, g(c)), before);
                    // In flight, FAIL_INUSE (3) comes first.
                    assert_eq!(m.begin_in_flight(r), ReturnCode::Success);
                    assert_eq!(m.psmash(r), ReturnCode::FailInuse);
                }
            }

            #[test]
            fn psmash_step5_clears_page_size_keeping_validated_perms_and_gpa_plus_i_4k() {
                // PSMASH step 5 (Linux snp_rmptable_psmash "preserving the Validated bit"; H3).
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 2);
                    let base = gpa_2m(c, 3);
                    valid_2m(&mut m, r, base);
                    let adj = m.rmpadjust(at(0), base, r, RmpPageSize::Size2M, grant(1, PERM_R));
                    assert_eq!(adj, GuestOutcome::Done(()));
                    assert_eq!(m.psmash(r), ReturnCode::Success);
                    let hi = initial_hi().with_vmpl1(VmplPerms::from_bits(PERM_R));
                    for i in 0..g(c) {
                        let lo = assigned_lo(base.gfn().0 + i, A)
                            .with_validated(true)
                            .with_subpage_count(if i == 0 { (g(c) - 1) as u16 } else { 0 });
                        assert_eq!(m.raw_entry(pf(r, i)), Some(raw(lo, hi)), "{c:?} entry {i}");
                        assert_eq!(m.lookup(pf(r, i)), Some((true, RmpPageSize::Size4K)));
                    }
                    assert_eq!(m.asid_assigned_pages(A), g(c));
                    // The 4K entries are validated: PVALIDATE 4K finds nothing to change.
                    let pv = m.pvalidate(at(0), ga(base, 1), pf(r, 1), RmpPageSize::Size4K, true);
                    assert_eq!(pv, GuestOutcome::Done(PvalidateStatus::Unchanged));
                    // One-way: a second PSMASH finds a 4K region (7); 4K RMPUPDATEs no longer overlap.
                    assert_eq!(m.psmash(r), ReturnCode::FailUnsupported);
                    assert_eq!(m.rmpupdate(pf(r, 1), shared(RmpPageSize::Size4K)), ReturnCode::Success);
                }
            }

            // ------------------------------------------------------------------------ PVALIDATE

            #[test]
            fn pvalidate_step1_vmpl_above_0_is_fail_permission() {
                // PVALIDATE step 1 (VeriSMo pvalidate): VMPL0 only; precedes step 2.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    assign_4k(&mut m, Pfn(1), Gpa(0x1000), A);
                    for vmpl in 1..=3 {
                        let pv = m.pvalidate(at(vmpl), Gpa(0x1000), Pfn(1), RmpPageSize::Size4K, true);
                        assert_eq!(pv, GuestOutcome::Fail(ReturnCode::FailPermission));
                    }
                    let out = m.pvalidate(at(1), Gpa(0), Pfn(c.pages), RmpPageSize::Size4K, true);
                    assert_eq!(out, GuestOutcome::Fail(ReturnCode::FailPermission));
                    assert!(!m.raw_entry(Pfn(1)).unwrap().lo.validated());
                }
            }

            #[test]
            fn pvalidate_step2_frame_beyond_rmp_is_fail_input() {
                // PVALIDATE step 2 (H6).
                for c in CONFIGS {
                    let mut m = rmp(c);
                    for size in [RmpPageSize::Size4K, RmpPageSize::Size2M] {
                        let pv = m.pvalidate(at(0), Gpa(0), Pfn(c.pages), size, true);
                        assert_eq!(pv, GuestOutcome::Fail(ReturnCode::FailInput));
                    }
                }
            }

            #[test]
            fn pvalidate_step2_unaligned_2m_is_fail_input() {
                // PVALIDATE step 2: size 2M with gpa unaligned ⇒ FAIL_INPUT; an aligned gpa on an
                // unaligned frame ⇒ FAIL_SIZEMISMATCH (H12); both precede step 3.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 1);
                    let base = gpa_2m(c, 1);
                    assign_2m(&mut m, r, base, A);
                    let size = RmpPageSize::Size2M;
                    assert_eq!(
                        m.pvalidate(at(0), ga(base, 1), pf(r, 1), size, true),
                        GuestOutcome::Fail(ReturnCode::FailInput)
                    );
                    assert_eq!(
                        m.pvalidate(at(0), base, pf(r, 1), size, true),
                        GuestOutcome::Fail(ReturnCode::FailSizeMismatch)
                    );
                    assert_eq!(
                        m.pvalidate(at(0), ga(base, 1), r, size, true),
                        GuestOutcome::Fail(ReturnCode::FailInput)
                    );
                    assert_eq!(m.begin_in_flight(r), ReturnCode::Success);
                    assert_eq!(
                        m.pvalidate(at(0), base, pf(r, 1), size, true),
                        GuestOutcome::Fail(ReturnCode::FailSizeMismatch)
                    );
                    assert!(!m.raw_entry(r).unwrap().lo.validated());
                }
            }

            #[test]
            fn pvalidate_step3_region_in_flight_is_npf() {
                // PVALIDATE step 3 (Choice: the firmware lock ASID 0x3FF fails the ASID test).
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let p = pf(region(c, 1), 2);
                    assign_4k(&mut m, p, Gpa(0x2000), A);
                    assert_eq!(m.begin_in_flight(region(c, 1)), ReturnCode::Success);
                    let pv = m.pvalidate(at(0), Gpa(0x2000), p, RmpPageSize::Size4K, true);
                    assert_eq!(pv, GuestOutcome::Npf(NpfErrorCode::from_bits(0x0000_0005_8000_0001)));
                    assert!(m.end_in_flight(region(c, 1)));
                    let pv = m.pvalidate(at(0), Gpa(0x2000), p, RmpPageSize::Size4K, true);
                    assert_eq!(pv, GuestOutcome::Done(PvalidateStatus::Changed));
                }
            }

            #[test]
            fn pvalidate_step4_unassigned_page_is_npf() {
                // PVALIDATE step 4: E not assigned.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    assert_eq!(
                        m.pvalidate(at(0), Gpa(0x1000), Pfn(1), RmpPageSize::Size4K, true),
                        npf(NPF_INSTR)
                    );
                    assert_eq!(
                        m.pvalidate(at(0), Gpa(0), region(c, 1), RmpPageSize::Size2M, true),
                        npf(NPF_INSTR)
                    );
                    assert_eq!(m.raw_entry(Pfn(1)), Some(RmpEntryRaw::default()));
                }
            }

            #[test]
            fn pvalidate_step4_other_asid_is_npf() {
                // PVALIDATE step 4: E's ASID ≠ guest ASID.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    assign_4k(&mut m, Pfn(1), Gpa(0x1000), B);
                    assert_eq!(
                        m.pvalidate(at(0), Gpa(0x1000), Pfn(1), RmpPageSize::Size4K, true),
                        npf(NPF_INSTR)
                    );
                    assign_2m(&mut m, region(c, 1), gpa_2m(c, 1), B);
                    let pv = m.pvalidate(at(0), gpa_2m(c, 1), region(c, 1), RmpPageSize::Size2M, true);
                    assert_eq!(pv, npf(NPF_INSTR));
                }
            }

            #[test]
            fn pvalidate_step4_other_gpa_is_npf() {
                // PVALIDATE step 4: E's GPA for the page ≠ gpa.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    assign_4k(&mut m, Pfn(1), Gpa(0x1000), A);
                    assert_eq!(
                        m.pvalidate(at(0), Gpa(0x2000), Pfn(1), RmpPageSize::Size4K, true),
                        npf(NPF_INSTR)
                    );
                    assign_2m(&mut m, region(c, 1), gpa_2m(c, 1), A);
                    let pv = m.pvalidate(at(0), gpa_2m(c, 2), region(c, 1), RmpPageSize::Size2M, true);
                    assert_eq!(pv, npf(NPF_INSTR));
                    assert!(!m.raw_entry(region(c, 1)).unwrap().lo.validated());
                }
            }

            #[test]
            fn pvalidate_step4_immutable_page_is_npf() {
                // PVALIDATE step 4: E immutable (firmware PRE_GUEST state).
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let imm = private(Gpa(0x1000), A, RmpPageSize::Size4K).with_immutable(true);
                    assert_eq!(m.rmpupdate(Pfn(1), imm), ReturnCode::Success);
                    assert_eq!(
                        m.pvalidate(at(0), Gpa(0x1000), Pfn(1), RmpPageSize::Size4K, true),
                        npf(NPF_INSTR)
                    );
                }
            }

            #[test]
            fn pvalidate_step4_2m_entry_gpa_for_a_page_is_base_plus_offset() {
                // PVALIDATE step 4 precedes step 5: in a 2M region the page's GPA is E's GPA + i·4K.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 1);
                    let base = gpa_2m(c, 2);
                    assign_2m(&mut m, r, base, A);
                    let i = g(c) - 1;
                    let right = m.pvalidate(at(0), ga(base, i), pf(r, i), RmpPageSize::Size4K, true);
                    assert_eq!(right, npf(NPF_INSTR | NPF_SIZEM));
                    let wrong = m.pvalidate(at(0), base, pf(r, i), RmpPageSize::Size4K, true);
                    assert_eq!(wrong, npf(NPF_INSTR));
                }
            }

            #[test]
            fn pvalidate_step5_4k_in_2m_region_is_npf_sizem() {
                // PVALIDATE step 5 (KVM sev_handle_rmp_fault cause a): P|RMP|FINAL|ENC|SIZEM, no W.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 1);
                    let base = gpa_2m(c, 1);
                    assign_2m(&mut m, r, base, A);
                    for i in [0, 1] {
                        let pv = m.pvalidate(at(0), ga(base, i), pf(r, i), RmpPageSize::Size4K, true);
                        assert_eq!(pv, GuestOutcome::Npf(NpfErrorCode::from_bits(0x0000_000d_8000_0001)));
                    }
                    assert!(raws(&m, r, g(c)).iter().all(|e| !e.unwrap().lo.validated()));
                }
            }

            #[test]
            fn pvalidate_step6_2m_in_4k_region_is_fail_sizemismatch() {
                // PVALIDATE step 6 (Linux pval_pages, coconut pvalidate_range): no fault.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 1);
                    let base = gpa_2m(c, 1);
                    for i in 0..g(c) {
                        assign_4k(&mut m, pf(r, i), ga(base, i), A);
                    }
                    let before = raws(&m, r, g(c));
                    let pv = m.pvalidate(at(0), base, r, RmpPageSize::Size2M, true);
                    assert_eq!(pv, GuestOutcome::Fail(ReturnCode::FailSizeMismatch));
                    assert_eq!(raws(&m, r, g(c)), before);
                }
            }

            #[test]
            fn pvalidate_step7_already_in_requested_state_is_unchanged() {
                // PVALIDATE step 7 (MSVC __pvalidate: CF = 1, EAX = 0).
                for c in CONFIGS {
                    let mut m = rmp(c);
                    assign_4k(&mut m, Pfn(1), Gpa(0x1000), A);
                    let before = m.raw_entry(Pfn(1));
                    let rescind = m.pvalidate(at(0), Gpa(0x1000), Pfn(1), RmpPageSize::Size4K, false);
                    assert_eq!(rescind, GuestOutcome::Done(PvalidateStatus::Unchanged));
                    assert_eq!(m.raw_entry(Pfn(1)), before);
                    valid_4k(&mut m, Pfn(2), Gpa(0x2000));
                    let again = m.pvalidate(at(0), Gpa(0x2000), Pfn(2), RmpPageSize::Size4K, true);
                    assert_eq!(again, GuestOutcome::Done(PvalidateStatus::Unchanged));
                    valid_2m(&mut m, region(c, 1), gpa_2m(c, 1));
                    let again = m.pvalidate(at(0), gpa_2m(c, 1), region(c, 1), RmpPageSize::Size2M, true);
                    assert_eq!(again, GuestOutcome::Done(PvalidateStatus::Unchanged));
                }
            }

            #[test]
            fn pvalidate_step8_sets_and_clears_validated_on_a_4k_entry() {
                // PVALIDATE step 8: Validated is raw bit 62.
                let mut m = rmp(X86);
                valid_4k(&mut m, Pfn(0x123), Gpa(0x5000));
                assert_eq!(
                    m.raw_entry(Pfn(0x123)).unwrap().to_u128(),
                    0x0000_0000_0000_001f_4008_0000_0000_5001
                );
                let pv = m.pvalidate(at(0), Gpa(0x5000), Pfn(0x123), RmpPageSize::Size4K, false);
                assert_eq!(pv, GuestOutcome::Done(PvalidateStatus::Changed));
                assert_eq!(
                    m.raw_entry(Pfn(0x123)).unwrap().to_u128(),
                    0x0000_0000_0000_001f_0008_0000_0000_5001
                );
                for c in CONFIGS {
                    let mut m = rmp(c);
                    valid_4k(&mut m, pf(region(c, 1), 1), Gpa(0x5000));
                    assert_eq!(
                        m.raw_entry(pf(region(c, 1), 1)),
                        Some(raw(assigned_lo(5, A).with_validated(true), initial_hi()))
                    );
                    assert!(!m.raw_entry(region(c, 1)).unwrap().lo.validated());
                }
            }

            #[test]
            fn pvalidate_step8_2m_sets_validated_on_all_g_entries() {
                // PVALIDATE step 8: for 2M, all G entries (H3 mirror).
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 2);
                    valid_2m(&mut m, r, gpa_2m(c, 2));
                    assert!(raws(&m, r, g(c)).iter().all(|e| e.unwrap().lo.validated()));
                    assert!(!m.raw_entry(pf(r, g(c))).unwrap().lo.validated());
                    let pv = m.pvalidate(at(0), gpa_2m(c, 2), r, RmpPageSize::Size2M, false);
                    assert_eq!(pv, GuestOutcome::Done(PvalidateStatus::Changed));
                    assert!(raws(&m, r, g(c)).iter().all(|e| !e.unwrap().lo.validated()));
                }
            }

            // ------------------------------------------------------------------------ RMPADJUST

            #[test]
            fn rmpadjust_step1_target_vmpl_above_3_is_fail_input() {
                // RMPADJUST step 1: target VMPL > 3.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    valid_4k(&mut m, Pfn(1), Gpa(0x1000));
                    for t in [4, 0xff] {
                        let adj =
                            m.rmpadjust(at(0), Gpa(0x1000), Pfn(1), RmpPageSize::Size4K, grant(t, PERM_R));
                        assert_eq!(adj, GuestOutcome::Fail(ReturnCode::FailInput));
                    }
                }
            }

            #[test]
            fn rmpadjust_step1_reserved_bits_13_to_15_are_fail_input() {
                // RMPADJUST step 1: VmplPerms reserved bits (operand bits 13–15).
                for c in CONFIGS {
                    let mut m = rmp(c);
                    valid_4k(&mut m, Pfn(1), Gpa(0x1000));
                    for bit in 13..=15 {
                        let op = RmpAdjustOperand::from_bits(grant(1, PERM_R).into_bits() | 1 << bit);
                        let adj = m.rmpadjust(at(0), Gpa(0x1000), Pfn(1), RmpPageSize::Size4K, op);
                        assert_eq!(adj, GuestOutcome::Fail(ReturnCode::FailInput), "bit {bit}");
                    }
                    assert_eq!(m.raw_entry(Pfn(1)).unwrap().hi, initial_hi());
                }
            }

            #[test]
            fn rmpadjust_step1_reserved_bits_17_to_63_are_fail_input() {
                // RMPADJUST step 1: operand bits 17–63.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    valid_4k(&mut m, Pfn(1), Gpa(0x1000));
                    for bit in [17, 31, 47, 63] {
                        let op = RmpAdjustOperand::from_bits(grant(1, PERM_R).into_bits() | 1 << bit);
                        let adj = m.rmpadjust(at(0), Gpa(0x1000), Pfn(1), RmpPageSize::Size4K, op);
                        assert_eq!(adj, GuestOutcome::Fail(ReturnCode::FailInput), "bit {bit}");
                    }
                }
            }

            #[test]
            fn rmpadjust_step1_bit_12_supervisor_shadow_stack_is_accepted() {
                // RMPADJUST step 1: bit 12 is the supervisor-shadow-stack permission, not reserved.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    valid_4k(&mut m, Pfn(1), Gpa(0x1000));
                    let op = grant(1, PERM_SSS);
                    assert_eq!(op.into_bits(), 0x1001);
                    assert_eq!(
                        m.rmpadjust(at(0), Gpa(0x1000), Pfn(1), RmpPageSize::Size4K, op),
                        GuestOutcome::Done(())
                    );
                    assert_eq!(m.raw_entry(Pfn(1)).unwrap().hi.into_bits(), 0x101f);
                }
            }

            #[test]
            fn rmpadjust_step1_frame_beyond_rmp_is_fail_input() {
                // RMPADJUST step 1 (H6).
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let adj = m.rmpadjust(at(0), Gpa(0), Pfn(c.pages), RmpPageSize::Size4K, grant(1, PERM_R));
                    assert_eq!(adj, GuestOutcome::Fail(ReturnCode::FailInput));
                }
            }

            #[test]
            fn rmpadjust_step1_unaligned_2m_is_fail_input() {
                // RMPADJUST step 1: size 2M with gpa or pfn unaligned.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 1);
                    let base = gpa_2m(c, 1);
                    valid_2m(&mut m, r, base);
                    let size = RmpPageSize::Size2M;
                    let op = grant(1, PERM_R);
                    assert_eq!(
                        m.rmpadjust(at(0), ga(base, 1), pf(r, 1), size, op),
                        GuestOutcome::Fail(ReturnCode::FailInput)
                    );
                    assert_eq!(
                        m.rmpadjust(at(0), base, pf(r, 1), size, op),
                        GuestOutcome::Fail(ReturnCode::FailInput)
                    );
                    assert_eq!(
                        m.rmpadjust(at(0), ga(base, 1), r, size, op),
                        GuestOutcome::Fail(ReturnCode::FailInput)
                    );
                }
            }

            #[test]
            fn rmpadjust_step1_vmsa_with_2m_is_fail_input() {
                // RMPADJUST step 1 (Choice: a VMSA is a 4K page).
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 1);
                    valid_2m(&mut m, r, gpa_2m(c, 1));
                    let op = grant(1, PERM_R).with_vmsa(true);
                    let adj = m.rmpadjust(at(0), gpa_2m(c, 1), r, RmpPageSize::Size2M, op);
                    assert_eq!(adj, GuestOutcome::Fail(ReturnCode::FailInput));
                    assert!(!m.raw_entry(r).unwrap().lo.vmsa());
                }
            }

            #[test]
            fn rmpadjust_step1_input_precedes_permission() {
                // RMPADJUST steps 1 then 2: a reserved bit with a non-less-privileged target.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    valid_4k(&mut m, Pfn(1), Gpa(0x1000));
                    let op = RmpAdjustOperand::from_bits(grant(1, PERM_R).into_bits() | 1 << 20);
                    let adj = m.rmpadjust(at(1), Gpa(0x1000), Pfn(1), RmpPageSize::Size4K, op);
                    assert_eq!(adj, GuestOutcome::Fail(ReturnCode::FailInput));
                }
            }

            #[test]
            fn rmpadjust_step2_target_not_less_privileged_is_fail_permission() {
                // RMPADJUST step 2 (T. Lendacky, AMDSEV issue 208; VeriSMo rmpadjust step 1).
                for c in CONFIGS {
                    let mut m = rmp(c);
                    valid_4k(&mut m, Pfn(1), Gpa(0x1000));
                    for (vmpl, target) in [(0, 0), (1, 1), (1, 0), (2, 1), (3, 3)] {
                        let adj =
                            m.rmpadjust(at(vmpl), Gpa(0x1000), Pfn(1), RmpPageSize::Size4K, grant(target, 0));
                        assert_eq!(
                            adj,
                            GuestOutcome::Fail(ReturnCode::FailPermission),
                            "vmpl {vmpl} target {target}"
                        );
                    }
                    // Step 2 precedes step 3: an unowned page still gives FAIL_PERMISSION.
                    let adj = m.rmpadjust(at(0), Gpa(0x9000), Pfn(9), RmpPageSize::Size4K, grant(0, 0));
                    assert_eq!(adj, GuestOutcome::Fail(ReturnCode::FailPermission));
                }
            }

            #[test]
            fn rmpadjust_step3_in_flight_or_ownership_is_npf() {
                // RMPADJUST step 3: as PVALIDATE 3–4.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let p = pf(region(c, 1), 1);
                    let op = grant(1, PERM_R);
                    let size = RmpPageSize::Size4K;
                    assert_eq!(m.rmpadjust(at(0), Gpa(0x1000), p, size, op), npf(NPF_INSTR));
                    valid_4k(&mut m, p, Gpa(0x1000));
                    assert_eq!(m.rmpadjust(at(0), Gpa(0x2000), p, size, op), npf(NPF_INSTR));
                    let other = GuestContext { asid: B, vmpl: 0 };
                    assert_eq!(m.rmpadjust(other, Gpa(0x1000), p, size, op), npf(NPF_INSTR));
                    assert_eq!(m.begin_in_flight(region(c, 1)), ReturnCode::Success);
                    assert_eq!(m.rmpadjust(at(0), Gpa(0x1000), p, size, op), npf(NPF_INSTR));
                    assert!(m.end_in_flight(region(c, 1)));
                    assert_eq!(m.rmpadjust(at(0), Gpa(0x1000), p, size, op), GuestOutcome::Done(()));
                }
            }

            #[test]
            fn rmpadjust_step3_4k_in_2m_region_is_npf_sizem() {
                // RMPADJUST step 3: as PVALIDATE 5, SIZEM for a 4K operation in a 2M region.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 1);
                    let base = gpa_2m(c, 1);
                    valid_2m(&mut m, r, base);
                    let adj =
                        m.rmpadjust(at(0), ga(base, 1), pf(r, 1), RmpPageSize::Size4K, grant(1, PERM_R));
                    assert_eq!(adj, GuestOutcome::Npf(NpfErrorCode::from_bits(0x0000_000d_8000_0001)));
                }
            }

            #[test]
            fn rmpadjust_step4_not_validated_is_vc() {
                // RMPADJUST step 4: #VC 0x404; precedes step 5.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    assign_4k(&mut m, Pfn(1), Gpa(0x1000), A);
                    let adj = m.rmpadjust(at(0), Gpa(0x1000), Pfn(1), RmpPageSize::Size4K, grant(1, PERM_R));
                    assert_eq!(adj, GuestOutcome::Vc(SvmExitCode::PageNotValidated));
                    assert_eq!(SvmExitCode::PageNotValidated.raw(), 0x404);
                    let r = region(c, 1);
                    assign_4k(&mut m, r, gpa_2m(c, 1), A);
                    let adj = m.rmpadjust(at(0), gpa_2m(c, 1), r, RmpPageSize::Size2M, grant(1, PERM_R));
                    assert_eq!(adj, vc());
                }
            }

            #[test]
            fn rmpadjust_step5_2m_in_4k_region_is_fail_sizemismatch() {
                // RMPADJUST step 5.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 1);
                    valid_4k(&mut m, r, gpa_2m(c, 1));
                    let adj = m.rmpadjust(at(0), gpa_2m(c, 1), r, RmpPageSize::Size2M, grant(1, PERM_R));
                    assert_eq!(adj, GuestOutcome::Fail(ReturnCode::FailSizeMismatch));
                    assert_eq!(m.raw_entry(r).unwrap().hi, initial_hi());
                }
            }

            #[test]
            fn rmpadjust_step6_perms_beyond_the_callers_own_are_fail_permission() {
                // RMPADJUST step 6 (VeriSMo rmpadjust): subset of the caller's own permissions.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let size = RmpPageSize::Size4K;
                    valid_4k(&mut m, Pfn(1), Gpa(0x1000));
                    assert_eq!(
                        m.rmpadjust(at(0), Gpa(0x1000), Pfn(1), size, grant(1, PERM_R)),
                        GuestOutcome::Done(())
                    );
                    let adj = m.rmpadjust(at(1), Gpa(0x1000), Pfn(1), size, grant(2, PERM_R | PERM_W));
                    assert_eq!(adj, GuestOutcome::Fail(ReturnCode::FailPermission));
                    let adj = m.rmpadjust(at(1), Gpa(0x1000), Pfn(1), size, grant(3, PERM_SSS));
                    assert_eq!(adj, GuestOutcome::Fail(ReturnCode::FailPermission));
                    let adj = m.rmpadjust(at(1), Gpa(0x1000), Pfn(1), size, grant(2, PERM_R));
                    assert_eq!(adj, GuestOutcome::Done(()));
                    assert_eq!(m.raw_entry(Pfn(1)).unwrap().hi.into_bits(), 0x0001_011f);
                }
            }

            #[test]
            fn rmpadjust_step7_sets_the_target_perms_exactly() {
                // RMPADJUST step 7 (MSVC __rmpadjust): the target VMPL's byte := op.perms.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let size = RmpPageSize::Size4K;
                    valid_4k(&mut m, Pfn(1), Gpa(0x1000));
                    let adj = m.rmpadjust(at(0), Gpa(0x1000), Pfn(1), size, grant(3, PERM_R | PERM_XS));
                    assert_eq!(adj, GuestOutcome::Done(()));
                    assert_eq!(m.raw_entry(Pfn(1)).unwrap().hi.into_bits(), 0x0900_001f);
                    assert_eq!(
                        m.rmpadjust(at(0), Gpa(0x1000), Pfn(1), size, grant(3, 0)),
                        GuestOutcome::Done(())
                    );
                    assert_eq!(
                        m.raw_entry(Pfn(1)),
                        Some(raw(assigned_lo(1, A).with_validated(true), initial_hi()))
                    );
                }
            }

            #[test]
            fn rmpadjust_step7_vmsa_bit_follows_the_operand_only_at_vmpl0() {
                // RMPADJUST step 7 (MSVC __rmpadjust; edk2 SevSnpRmpAdjust): VMSA := op.vmsa at
                // VMPL0, ignored elsewhere.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let size = RmpPageSize::Size4K;
                    valid_4k(&mut m, Pfn(1), Gpa(0x1000));
                    let op = grant(1, PERM_R).with_vmsa(true);
                    assert_eq!(m.rmpadjust(at(0), Gpa(0x1000), Pfn(1), size, op), GuestOutcome::Done(()));
                    assert!(m.raw_entry(Pfn(1)).unwrap().lo.vmsa());
                    // VMPL1 clearing it: ignored.
                    assert_eq!(
                        m.rmpadjust(at(1), Gpa(0x1000), Pfn(1), size, grant(2, 0)),
                        GuestOutcome::Done(())
                    );
                    assert!(m.raw_entry(Pfn(1)).unwrap().lo.vmsa());
                    assert_eq!(
                        m.rmpadjust(at(0), Gpa(0x1000), Pfn(1), size, grant(1, PERM_R)),
                        GuestOutcome::Done(())
                    );
                    assert!(!m.raw_entry(Pfn(1)).unwrap().lo.vmsa());
                    // VMPL1 setting it: ignored.
                    let op = grant(2, PERM_R).with_vmsa(true);
                    assert_eq!(m.rmpadjust(at(1), Gpa(0x1000), Pfn(1), size, op), GuestOutcome::Done(()));
                    let expected = raw(
                        assigned_lo(1, A).with_validated(true),
                        initial_hi()
                            .with_vmpl1(VmplPerms::from_bits(PERM_R))
                            .with_vmpl2(VmplPerms::from_bits(PERM_R)),
                    );
                    assert_eq!(m.raw_entry(Pfn(1)), Some(expected));
                }
            }

            #[test]
            fn rmpadjust_step7_2m_sets_all_g_entries() {
                // RMPADJUST step 7: all G entries for 2M.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 2);
                    valid_2m(&mut m, r, gpa_2m(c, 2));
                    let adj =
                        m.rmpadjust(at(0), gpa_2m(c, 2), r, RmpPageSize::Size2M, grant(2, PERM_W | PERM_XU));
                    assert_eq!(adj, GuestOutcome::Done(()));
                    for e in raws(&m, r, g(c)) {
                        assert_eq!(e.unwrap().hi.into_bits(), 0x0006_001f);
                    }
                    assert_eq!(m.raw_entry(pf(r, g(c))), Some(RmpEntryRaw::default()));
                }
            }

            // ------------------------------------------------------------------------- RMPQUERY

            #[test]
            fn rmpquery_target_above_3_or_frame_beyond_rmp_is_fail_input() {
                // RMPQUERY: target_vmpl > 3 or pfn >= pages ⇒ FAIL_INPUT.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    valid_4k(&mut m, Pfn(1), Gpa(0x1000));
                    assert_eq!(
                        m.rmpquery(at(0), Gpa(0x1000), Pfn(1), 4),
                        GuestOutcome::Fail(ReturnCode::FailInput)
                    );
                    assert_eq!(
                        m.rmpquery(at(0), Gpa(0), Pfn(c.pages), 0),
                        GuestOutcome::Fail(ReturnCode::FailInput)
                    );
                }
            }

            #[test]
            fn rmpquery_more_privileged_target_is_fail_permission() {
                // RMPQUERY (Choice): a VMPL may query itself and less-privileged levels.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    valid_4k(&mut m, Pfn(1), Gpa(0x1000));
                    let size = RmpPageSize::Size4K;
                    assert_eq!(
                        m.rmpadjust(at(0), Gpa(0x1000), Pfn(1), size, grant(1, PERM_R)),
                        GuestOutcome::Done(())
                    );
                    assert_eq!(
                        m.rmpquery(at(1), Gpa(0x1000), Pfn(1), 0),
                        GuestOutcome::Fail(ReturnCode::FailPermission)
                    );
                    assert_eq!(
                        m.rmpquery(at(3), Gpa(0x1000), Pfn(1), 2),
                        GuestOutcome::Fail(ReturnCode::FailPermission)
                    );
                    let own = RmpQueryResult {
                        perms: VmplPerms::from_bits(PERM_R),
                        vmsa: false,
                        page_size: RmpPageSize::Size4K,
                    };
                    assert_eq!(m.rmpquery(at(1), Gpa(0x1000), Pfn(1), 1), GuestOutcome::Done(own));
                    let lower = RmpQueryResult { perms: VmplPerms::NONE, ..own };
                    assert_eq!(m.rmpquery(at(1), Gpa(0x1000), Pfn(1), 3), GuestOutcome::Done(lower));
                }
            }

            #[test]
            fn rmpquery_in_flight_or_ownership_is_npf_without_sizem() {
                // RMPQUERY: in flight / ownership ⇒ #NPF without SIZEM; either size may be queried.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 1);
                    let base = gpa_2m(c, 1);
                    valid_2m(&mut m, r, base);
                    let all =
                        RmpQueryResult { perms: VmplPerms::ALL, vmsa: false, page_size: RmpPageSize::Size2M };
                    assert_eq!(m.rmpquery(at(0), ga(base, 1), pf(r, 1), 0), GuestOutcome::Done(all));
                    assert_eq!(m.rmpquery(at(0), base, pf(r, 1), 0), npf(NPF_INSTR));
                    let other = GuestContext { asid: B, vmpl: 0 };
                    assert_eq!(m.rmpquery(other, ga(base, 1), pf(r, 1), 0), npf(NPF_INSTR));
                    assert_eq!(m.rmpquery(at(0), Gpa(0x1000), Pfn(1), 0), npf(NPF_INSTR));
                    assert_eq!(m.begin_in_flight(r), ReturnCode::Success);
                    assert_eq!(m.rmpquery(at(0), ga(base, 1), pf(r, 1), 0), npf(NPF_INSTR));
                }
            }

            #[test]
            fn rmpquery_not_validated_is_vc() {
                // RMPQUERY: not Validated ⇒ #VC 0x404.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    assign_4k(&mut m, Pfn(1), Gpa(0x1000), A);
                    assert_eq!(m.rmpquery(at(0), Gpa(0x1000), Pfn(1), 1), vc());
                }
            }

            #[test]
            fn rmpquery_reports_target_perms_vmsa_and_governing_size() {
                // RMPQUERY: the target's permissions, the page's VMSA bit and the entry size.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    valid_4k(&mut m, Pfn(1), Gpa(0x1000));
                    let op = grant(2, PERM_R | PERM_XS).with_vmsa(true);
                    assert_eq!(
                        m.rmpadjust(at(0), Gpa(0x1000), Pfn(1), RmpPageSize::Size4K, op),
                        GuestOutcome::Done(())
                    );
                    let q = m.rmpquery(at(0), Gpa(0x1000), Pfn(1), 2);
                    let expected = RmpQueryResult {
                        perms: VmplPerms::from_bits(PERM_R | PERM_XS),
                        vmsa: true,
                        page_size: RmpPageSize::Size4K,
                    };
                    assert_eq!(q, GuestOutcome::Done(expected));
                    let r = region(c, 2);
                    valid_2m(&mut m, r, gpa_2m(c, 4));
                    let q = m.rmpquery(at(0), gpa_2m(c, 4), r, 1);
                    let expected = RmpQueryResult {
                        perms: VmplPerms::NONE,
                        vmsa: false,
                        page_size: RmpPageSize::Size2M,
                    };
                    assert_eq!(q, GuestOutcome::Done(expected));
                }
            }

            // -------------------------------------------------------------------------- RMPREAD

            #[test]
            fn rmpread_frame_beyond_rmp_is_fail_input() {
                // RMPREAD: pfn >= pages ⇒ FAIL_INPUT.
                for c in CONFIGS {
                    let m = rmp(c);
                    assert_eq!(m.rmpread(Pfn(c.pages)), Err(ReturnCode::FailInput));
                    assert_eq!(m.rmpread(Pfn(u64::MAX)), Err(ReturnCode::FailInput));
                }
            }

            #[test]
            fn rmpread_reports_the_own_entry_in_the_architectural_layout() {
                // RMPREAD (Linux struct rmpentry): GPA, assigned, size, immutable, ASID.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let imm = private(Gpa(0x7000), 5, RmpPageSize::Size4K).with_immutable(true);
                    assert_eq!(m.rmpupdate(Pfn(1), imm), ReturnCode::Success);
                    // gpa | assigned (bit 64) | immutable (80) | ASID (96); frame 1 is not
                    // region-aligned, so the region status (73) stays clear.
                    let bits = 0x7000 | 1 << 64 | 1 << 80 | 5 << 96;
                    assert_eq!(m.rmpread(Pfn(1)).map(RmpArchEntry::into_bits), Ok(bits));
                    valid_4k(&mut m, Pfn(2), Gpa(0x8000));
                    assert_eq!(m.rmpread(Pfn(2)), Ok(private(Gpa(0x8000), A, RmpPageSize::Size4K)));
                    // The aligned frame 0 is unassigned; frames 1 and 2 of its region are: status.
                    let status = RmpArchEntry::new().with_hpage_region_status(true);
                    assert_eq!(m.rmpread(Pfn(0)).map(RmpArchEntry::into_bits), Ok(1 << 73));
                    assert_eq!(m.rmpread(Pfn(0)), Ok(status));
                }
            }

            #[test]
            fn rmpread_hpage_region_status_is_set_at_an_aligned_frame_when_another_page_is_assigned() {
                // RMPREAD (Linux commit 3e43c60eb3e3): hpage_region_status = the input frame is
                // 2M-aligned and some *other* page of its region is assigned.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 1);
                    assign_4k(&mut m, pf(r, g(c) - 1), Gpa(0x1000), A);
                    let status = RmpArchEntry::new().with_hpage_region_status(true);
                    assert_eq!(m.rmpread(r), Ok(status));
                    // Unaligned frames of the region (assigned or not) never carry it.
                    assert_eq!(m.rmpread(pf(r, 1)), Ok(RmpArchEntry::new()));
                    assert_eq!(m.rmpread(pf(r, g(c) - 1)), Ok(private(Gpa(0x1000), A, RmpPageSize::Size4K)));
                    // Neighbouring regions' aligned frames see nothing assigned in theirs.
                    assert_eq!(m.rmpread(region(c, 0)), Ok(RmpArchEntry::new()));
                    assert_eq!(m.rmpread(region(c, 2)), Ok(RmpArchEntry::new()));
                    assert_eq!(
                        m.rmpupdate(pf(r, g(c) - 1), shared(RmpPageSize::Size4K)),
                        ReturnCode::Success
                    );
                    assert_eq!(m.rmpread(r), Ok(RmpArchEntry::new()));
                    // Only the aligned page assigned: no *other* page is, so the bit stays clear
                    // (the caller reads the entry's own assigned bit for that page).
                    assign_4k(&mut m, r, gpa_2m(c, 1), A);
                    assert_eq!(m.rmpread(r), Ok(private(gpa_2m(c, 1), A, RmpPageSize::Size4K)));
                    assert!(m.region_has_assigned(pf(r, 1)));
                    assign_4k(&mut m, pf(r, 1), ga(gpa_2m(c, 1), 1), A);
                    let both = private(gpa_2m(c, 1), A, RmpPageSize::Size4K).with_hpage_region_status(true);
                    assert_eq!(m.rmpread(r), Ok(both));
                }
            }

            #[test]
            fn region_has_assigned_reads_the_aligned_entry_and_its_region_status() {
                // RmpModel::region_has_assigned: one RMPREAD of the aligned frame, own assigned bit
                // or region status; any frame of the region names it; none beyond the RMP.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 1);
                    assert!(!m.region_has_assigned(r));
                    assign_4k(&mut m, pf(r, 2), Gpa(0x2000), A);
                    for i in [0, 1, 2, g(c) - 1] {
                        assert!(m.region_has_assigned(pf(r, i)), "{c:?} frame {i}");
                    }
                    assert!(!m.region_has_assigned(region(c, 0)));
                    assert!(!m.region_has_assigned(region(c, 2)));
                    assert!(!m.region_has_assigned(Pfn(c.pages)));
                }
            }

            #[test]
            fn rmpread_2m_region_sets_page_size_only_on_the_aligned_entry() {
                // RMPREAD: the page's own entry; H3: page-size bit only on the aligned entry.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 1);
                    let base = gpa_2m(c, 3);
                    assign_2m(&mut m, r, base, A);
                    // The aligned frame's other G-1 pages are assigned (H3): region status set.
                    let aligned = private(base, A, RmpPageSize::Size2M).with_hpage_region_status(true);
                    assert_eq!(m.rmpread(r), Ok(aligned));
                    // An unaligned frame never carries the region status (Linux 3e43c60eb3e3).
                    let other = private(ga(base, 1), A, RmpPageSize::Size4K);
                    assert_eq!(m.rmpread(pf(r, 1)), Ok(other));
                }
            }

            #[test]
            fn rmpread_is_unaffected_by_in_flight() {
                // Concurrency: RMPREAD is unaffected by an in-flight window.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    assign_4k(&mut m, Pfn(1), Gpa(0x1000), A);
                    let before = m.rmpread(Pfn(1));
                    assert_eq!(m.begin_in_flight(region(c, 0)), ReturnCode::Success);
                    assert_eq!(m.rmpread(Pfn(1)), before);
                    assert_eq!(m.raw_entry(Pfn(1)).unwrap().lo.asid(), A);
                }
            }

            // ------------------------------------------------------------ guest private accesses

            #[test]
            fn private_access_in_flight_region_is_npf() {
                // Private access 1: in flight (as PVALIDATE 3).
                for c in CONFIGS {
                    let mut m = rmp(c);
                    valid_4k(&mut m, Pfn(1), Gpa(0x1000));
                    assert_eq!(m.begin_in_flight(region(c, 0)), ReturnCode::Success);
                    let a = read_access(at(0), Gpa(0x1000), Pfn(1), PageSize::Size4K, true);
                    assert_eq!(m.check_guest_access(&a), npf(0x0000_0005_8000_0001));
                    assert!(m.end_in_flight(region(c, 0)));
                    assert_eq!(m.check_guest_access(&a), GuestOutcome::Done(()));
                }
            }

            #[test]
            fn private_access_ownership_failures_are_npf() {
                // Private access 1 (VeriSMo check_access): unassigned, other ASID, other GPA, immutable.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let acc = |gpa, pfn| read_access(at(0), gpa, pfn, PageSize::Size4K, true);
                    let base = NPF_ACCESS | NPF_ENC;
                    assert_eq!(m.check_guest_access(&acc(Gpa(0x1000), Pfn(1))), npf(base));
                    valid_4k(&mut m, Pfn(1), Gpa(0x1000));
                    assert_eq!(m.check_guest_access(&acc(Gpa(0x2000), Pfn(1))), npf(base));
                    let other =
                        GuestAccess { guest: GuestContext { asid: B, vmpl: 0 }, ..acc(Gpa(0x1000), Pfn(1)) };
                    assert_eq!(m.check_guest_access(&other), npf(base));
                    let imm = private(Gpa(0x3000), A, RmpPageSize::Size4K).with_immutable(true);
                    assert_eq!(m.rmpupdate(Pfn(3), imm), ReturnCode::Success);
                    assert_eq!(m.check_guest_access(&acc(Gpa(0x3000), Pfn(3))), npf(base));
                    assert_eq!(m.check_guest_access(&acc(Gpa(0x1000), Pfn(1))), GuestOutcome::Done(()));
                }
            }

            #[test]
            fn private_access_2m_leaf_over_4k_entry_is_npf_sizem() {
                // Private access 2 (APM §15.36.11 "2M NPT, 4K RMP"; RFC v3 handler); before #VC.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 1);
                    let base = gpa_2m(c, 1);
                    valid_4k(&mut m, pf(r, 1), ga(base, 1));
                    assign_4k(&mut m, pf(r, 2), ga(base, 2), A);
                    let sizem = npf(NPF_ACCESS | NPF_ENC | NPF_SIZEM);
                    let a = read_access(at(0), ga(base, 1), pf(r, 1), PageSize::Size2M, true);
                    assert_eq!(m.check_guest_access(&a), sizem);
                    let a = read_access(at(0), ga(base, 2), pf(r, 2), PageSize::Size2M, true);
                    assert_eq!(m.check_guest_access(&a), sizem);
                }
            }

            #[test]
            fn private_access_4k_leaf_in_2m_entry_is_npf_sizem() {
                // Private access 2 (KVM sev_handle_rmp_fault cause b), smaller_npt_faults = true.
                for c in CONFIGS {
                    assert!(c.smaller_npt_faults);
                    let mut m = rmp(c);
                    let r = region(c, 1);
                    let base = gpa_2m(c, 1);
                    valid_2m(&mut m, r, base);
                    let a = GuestAccess {
                        kind: AccessKind::Write,
                        ..read_access(at(0), ga(base, 1), pf(r, 1), PageSize::Size4K, true)
                    };
                    assert_eq!(m.check_guest_access(&a), npf(NPF_ACCESS | NPF_W | NPF_ENC | NPF_SIZEM));
                    let a = read_access(at(0), ga(base, 1), pf(r, 1), PageSize::Size2M, true);
                    assert_eq!(m.check_guest_access(&a), GuestOutcome::Done(()));
                }
            }

            #[test]
            fn private_access_4k_leaf_in_2m_entry_passes_when_smaller_npt_faults_is_false() {
                // Private access 2: the smaller-leaf SIZEM is switchable (`[vm] smaller_npt_faults`).
                for c in CONFIGS {
                    let mut m = rmp(RmpConfig { smaller_npt_faults: false, ..c });
                    let r = region(c, 1);
                    let base = gpa_2m(c, 1);
                    valid_2m(&mut m, r, base);
                    let a = read_access(at(0), ga(base, 1), pf(r, 1), PageSize::Size4K, true);
                    assert_eq!(m.check_guest_access(&a), GuestOutcome::Done(()));
                    // The larger-leaf direction still faults.
                    valid_4k(&mut m, pf(region(c, 2), 1), Gpa(0x1000));
                    let a = read_access(at(0), Gpa(0x1000), pf(region(c, 2), 1), PageSize::Size2M, true);
                    assert_eq!(m.check_guest_access(&a), npf(NPF_ACCESS | NPF_ENC | NPF_SIZEM));
                }
            }

            #[test]
            fn private_access_1g_leaf_is_checked_as_its_2m_part() {
                // Private access 2: a 1G leaf is checked as the 2M part accessed (Linux
                // adjust_direct_map comment).
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 1);
                    let base = gpa_2m(c, 1);
                    valid_2m(&mut m, r, base);
                    let a = read_access(at(0), ga(base, 2), pf(r, 2), PageSize::Size1G, true);
                    assert_eq!(m.check_guest_access(&a), GuestOutcome::Done(()));
                    valid_4k(&mut m, region(c, 2), gpa_2m(c, 2));
                    let a = read_access(at(0), gpa_2m(c, 2), region(c, 2), PageSize::Size1G, true);
                    assert_eq!(m.check_guest_access(&a), npf(NPF_ACCESS | NPF_ENC | NPF_SIZEM));
                }
            }

            #[test]
            fn private_access_to_unvalidated_page_is_vc() {
                // Private access 3: not Validated ⇒ #VC 0x404 (openvmm PAGE_NOT_VALIDATED).
                for c in CONFIGS {
                    let mut m = rmp(c);
                    assign_4k(&mut m, Pfn(1), Gpa(0x1000), A);
                    for kind in [AccessKind::Read, AccessKind::Write, AccessKind::Exec] {
                        let a = GuestAccess {
                            kind,
                            ..read_access(at(0), Gpa(0x1000), Pfn(1), PageSize::Size4K, true)
                        };
                        assert_eq!(m.check_guest_access(&a), GuestOutcome::Vc(SvmExitCode::PageNotValidated));
                    }
                    assign_2m(&mut m, region(c, 1), gpa_2m(c, 1), A);
                    let a = read_access(at(0), gpa_2m(c, 1), region(c, 1), PageSize::Size2M, true);
                    assert_eq!(m.check_guest_access(&a), vc());
                }
            }

            #[test]
            fn private_access_without_vmpl_permission_is_npf_vmpl() {
                // Private access 4: read R, write W, fetch Xu at CPL 3 and Xs otherwise.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let gpa = Gpa(0x1000);
                    valid_4k(&mut m, Pfn(1), gpa);
                    let base = read_access(at(1), gpa, Pfn(1), PageSize::Size4K, true);
                    let vmpl = NPF_ACCESS | NPF_ENC | NPF_VMPL;
                    assert_eq!(m.check_guest_access(&base), npf(vmpl));
                    let adj =
                        m.rmpadjust(at(0), gpa, Pfn(1), RmpPageSize::Size4K, grant(1, PERM_R | PERM_XS));
                    assert_eq!(adj, GuestOutcome::Done(()));
                    assert_eq!(m.check_guest_access(&base), GuestOutcome::Done(()));
                    let write = GuestAccess { kind: AccessKind::Write, ..base };
                    assert_eq!(m.check_guest_access(&write), npf(vmpl | NPF_W));
                    let fetch = GuestAccess { kind: AccessKind::Exec, ..base };
                    assert_eq!(m.check_guest_access(&fetch), GuestOutcome::Done(()));
                    let user_fetch = GuestAccess { user: true, ..fetch };
                    assert_eq!(m.check_guest_access(&user_fetch), npf(vmpl | NPF_ID | NPF_U));
                    let user_read = GuestAccess { user: true, ..base };
                    assert_eq!(m.check_guest_access(&user_read), GuestOutcome::Done(()));
                    let adj =
                        m.rmpadjust(at(0), gpa, Pfn(1), RmpPageSize::Size4K, grant(1, PERM_XU | PERM_W));
                    assert_eq!(adj, GuestOutcome::Done(()));
                    assert_eq!(m.check_guest_access(&user_fetch), GuestOutcome::Done(()));
                    assert_eq!(m.check_guest_access(&write), GuestOutcome::Done(()));
                    assert_eq!(m.check_guest_access(&fetch), npf(vmpl | NPF_ID));
                    assert_eq!(m.check_guest_access(&base), npf(vmpl));
                }
            }

            #[test]
            fn private_access_error_code_has_write_fetch_and_user_bits() {
                // Guest access error code: P | RMP | GUEST_FINAL, + W, + ID, + U, + ENC.
                for c in CONFIGS {
                    let m = rmp(c);
                    let base = read_access(at(0), Gpa(0x1000), Pfn(1), PageSize::Size4K, true);
                    let write_user = GuestAccess { kind: AccessKind::Write, user: true, ..base };
                    assert_eq!(m.check_guest_access(&write_user), npf(0x0000_0005_8000_0007));
                    let fetch = GuestAccess { kind: AccessKind::Exec, ..base };
                    assert_eq!(m.check_guest_access(&fetch), npf(0x0000_0005_8000_0011));
                    assert_eq!(m.check_guest_access(&base), npf(0x0000_0005_8000_0001));
                }
            }

            #[test]
            fn private_access_to_owned_validated_page_is_done() {
                // Private access: every check passes at VMPL0 (all permissions), at any offset.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 1);
                    let base = gpa_2m(c, 5);
                    valid_2m(&mut m, r, base);
                    valid_4k(&mut m, pf(region(c, 2), 3), Gpa(0x4000));
                    for kind in [AccessKind::Read, AccessKind::Write, AccessKind::Exec] {
                        for user in [false, true] {
                            let a = GuestAccess {
                                kind,
                                user,
                                ..read_access(
                                    at(0),
                                    Gpa(ga(base, 2).0 + 0x123),
                                    pf(r, 2),
                                    PageSize::Size2M,
                                    true,
                                )
                            };
                            assert_eq!(m.check_guest_access(&a), GuestOutcome::Done(()));
                            let a = GuestAccess {
                                kind,
                                user,
                                ..read_access(at(0), Gpa(0x4ff8), pf(region(c, 2), 3), PageSize::Size4K, true)
                            };
                            assert_eq!(m.check_guest_access(&a), GuestOutcome::Done(()));
                        }
                    }
                }
            }

            // ------------------------------------------------------------- guest shared accesses

            #[test]
            fn shared_access_to_assigned_page_is_npf() {
                // Shared access 1 (KVM: implicit conversion): own entry assigned ⇒ #NPF, no ENC.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    valid_4k(&mut m, Pfn(1), Gpa(0x1000));
                    let a = read_access(at(0), Gpa(0x1000), Pfn(1), PageSize::Size4K, false);
                    assert_eq!(m.check_guest_access(&a), npf(0x0000_0001_8000_0001));
                    let w = GuestAccess { kind: AccessKind::Write, user: true, ..a };
                    assert_eq!(m.check_guest_access(&w), npf(NPF_ACCESS | NPF_W | NPF_U));
                    // Through a 2M leaf the own-entry check comes first: no SIZEM.
                    let large = GuestAccess { npt_size: PageSize::Size2M, ..a };
                    assert_eq!(m.check_guest_access(&large), npf(NPF_ACCESS));
                }
            }

            #[test]
            fn shared_access_through_large_leaf_over_region_with_assigned_page_is_npf_sizem() {
                // Shared access 2 (`docs/semantics.md`, guest access checks): leaf ≥ 2M whose
                // accessed 2M part holds an assigned page.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 1);
                    assign_4k(&mut m, pf(r, g(c) - 1), Gpa(0x1000), A);
                    for size in [PageSize::Size2M, PageSize::Size1G] {
                        let a = read_access(at(0), Gpa(0x20_0000), r, size, false);
                        assert_eq!(m.check_guest_access(&a), npf(NPF_ACCESS | NPF_SIZEM));
                        let f = GuestAccess { kind: AccessKind::Exec, ..a };
                        assert_eq!(m.check_guest_access(&f), npf(NPF_ACCESS | NPF_SIZEM | NPF_ID));
                    }
                }
            }

            #[test]
            fn shared_access_through_4k_leaf_beside_assigned_page_is_done() {
                // Shared access: a 4K leaf only checks the page's own entry.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 1);
                    assign_2m(&mut m, region(c, 2), gpa_2m(c, 2), A);
                    assign_4k(&mut m, pf(r, 1), Gpa(0x1000), A);
                    let a = read_access(at(0), Gpa(0x5000), r, PageSize::Size4K, false);
                    assert_eq!(m.check_guest_access(&a), GuestOutcome::Done(()));
                    let w = GuestAccess { kind: AccessKind::Write, ..a };
                    assert_eq!(m.check_guest_access(&w), GuestOutcome::Done(()));
                }
            }

            #[test]
            fn shared_access_1g_leaf_checks_only_the_accessed_2m_part() {
                // Shared access 2: the accessed 2M part only.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    assign_4k(&mut m, pf(region(c, 0), 1), Gpa(0x1000), A);
                    let a = read_access(at(0), Gpa(0x40_0000), region(c, 1), PageSize::Size1G, false);
                    assert_eq!(m.check_guest_access(&a), GuestOutcome::Done(()));
                }
            }

            #[test]
            fn shared_access_is_unaffected_by_in_flight() {
                // Concurrency: shared accesses are unaffected by an in-flight window.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    assert_eq!(m.begin_in_flight(region(c, 1)), ReturnCode::Success);
                    let a = read_access(at(0), Gpa(0x1000), pf(region(c, 1), 1), PageSize::Size2M, false);
                    assert_eq!(m.check_guest_access(&a), GuestOutcome::Done(()));
                }
            }

            // ----------------------------------------------------------------------- host writes

            #[test]
            fn host_write_to_assigned_page_is_pf_with_rmp_bit() {
                // Host write check (RFC v4 10/40; Linux X86_PF_RMP): P | W | RMP (+ U).
                for c in CONFIGS {
                    let mut m = rmp(c);
                    assign_4k(&mut m, Pfn(1), Gpa(0x1000), A);
                    for size in PageSize::ALL {
                        assert_eq!(m.check_host_write(Pfn(1), size, false), pf_err(0x8000_0003));
                        assert_eq!(m.check_host_write(Pfn(1), size, true), pf_err(0x8000_0007));
                    }
                    assert_eq!(m.rmpupdate(Pfn(1), shared(RmpPageSize::Size4K)), ReturnCode::Success);
                    assert_eq!(m.check_host_write(Pfn(1), PageSize::Size4K, false), Ok(()));
                }
            }

            #[test]
            fn host_write_through_2m_mapping_over_region_with_assigned_page_is_pf() {
                // Host write check: a mapping ≥ 2M and any page of the accessed 2M part assigned.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 1);
                    assign_4k(&mut m, pf(r, g(c) - 1), Gpa(0x1000), A);
                    assert_eq!(m.check_host_write(r, PageSize::Size2M, false), pf_err(0x8000_0003));
                    assert_eq!(m.check_host_write(pf(r, 1), PageSize::Size2M, true), pf_err(0x8000_0007));
                    assert_eq!(m.check_host_write(r, PageSize::Size4K, false), Ok(()));
                    assert_eq!(m.check_host_write(pf(r, g(c)), PageSize::Size2M, false), Ok(()));
                    assert_eq!(m.check_host_write(Pfn(r.0 - 1), PageSize::Size2M, false), Ok(()));
                }
            }

            #[test]
            fn host_write_through_1g_mapping_checks_the_accessed_2m_part() {
                // Host write check (Linux adjust_direct_map: 1G mappings are checked as 2M).
                for c in CONFIGS {
                    let mut m = rmp(c);
                    assign_2m(&mut m, region(c, 1), gpa_2m(c, 1), A);
                    assert_eq!(m.check_host_write(region(c, 2), PageSize::Size1G, false), Ok(()));
                    assert_eq!(m.check_host_write(pf(region(c, 0), 1), PageSize::Size1G, false), Ok(()));
                    let err = m.check_host_write(pf(region(c, 1), 1), PageSize::Size1G, false);
                    assert_eq!(
                        err,
                        Err(PfErrorCode::new().with_present(true).with_write(true).with_rmp(true))
                    );
                    assign_4k(&mut m, pf(region(c, 2), 1), Gpa(0x1000), B);
                    assert_eq!(
                        m.check_host_write(region(c, 2), PageSize::Size1G, false),
                        pf_err(0x8000_0003)
                    );
                }
            }

            #[test]
            fn host_write_after_unassign_is_allowed() {
                // Host write check: only assigned pages fault; H5 zeroes a released 2M region.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 1);
                    assign_2m(&mut m, r, gpa_2m(c, 1), A);
                    assert_eq!(m.check_host_write(pf(r, 1), PageSize::Size4K, false), pf_err(0x8000_0003));
                    assert_eq!(m.rmpupdate(r, shared(RmpPageSize::Size2M)), ReturnCode::Success);
                    for size in PageSize::ALL {
                        assert_eq!(m.check_host_write(pf(r, 1), size, false), Ok(()));
                    }
                }
            }

            #[test]
            fn host_write_is_unaffected_by_in_flight() {
                // Concurrency: host writes are unaffected by an in-flight window.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    assign_4k(&mut m, Pfn(1), Gpa(0x1000), A);
                    assert_eq!(m.begin_in_flight(region(c, 0)), ReturnCode::Success);
                    assert_eq!(m.check_host_write(Pfn(1), PageSize::Size4K, false), pf_err(0x8000_0003));
                    assert_eq!(m.check_host_write(Pfn(2), PageSize::Size4K, false), Ok(()));
                }
            }

            // ----------------------------------------------------------------------- concurrency

            #[test]
            fn begin_in_flight_unaligned_or_beyond_rmp_is_fail_input() {
                // Concurrency (RmpModel::begin_in_flight): FAIL_INPUT unless a region start inside.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    assert_eq!(m.begin_in_flight(Pfn(1)), ReturnCode::FailInput);
                    assert_eq!(m.begin_in_flight(pf(region(c, 1), g(c) - 1)), ReturnCode::FailInput);
                    assert_eq!(m.begin_in_flight(Pfn(c.pages)), ReturnCode::FailInput);
                    assert!(!m.end_in_flight(Pfn(1)));
                    assert_eq!(
                        m.rmpupdate(Pfn(1), private(Gpa(0x1000), A, RmpPageSize::Size4K)),
                        ReturnCode::Success
                    );
                }
            }

            #[test]
            fn begin_in_flight_twice_is_fail_inuse() {
                // Concurrency: a region already in flight.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    assert_eq!(m.begin_in_flight(region(c, 1)), ReturnCode::Success);
                    assert_eq!(m.begin_in_flight(region(c, 1)), ReturnCode::FailInuse);
                    assert_eq!(m.begin_in_flight(region(c, 2)), ReturnCode::Success);
                }
            }

            #[test]
            fn end_in_flight_reports_whether_a_window_was_open() {
                // Concurrency (RmpModel::end_in_flight).
                for c in CONFIGS {
                    let mut m = rmp(c);
                    assert!(!m.end_in_flight(region(c, 1)));
                    assert_eq!(m.begin_in_flight(region(c, 1)), ReturnCode::Success);
                    let inside = Pfn(region(c, 1).raw() + 1);
                    assert!(m.in_flight(inside) && m.in_flight(region(c, 1)));
                    assert!(!m.in_flight(region(c, 2)) && !m.in_flight(Pfn(u64::MAX)));
                    assert!(!m.end_in_flight(region(c, 2)));
                    assert!(m.end_in_flight(region(c, 1)));
                    assert!(!m.end_in_flight(region(c, 1)));
                    assert_eq!(m.begin_in_flight(region(c, 1)), ReturnCode::Success);
                }
            }

            #[test]
            fn in_flight_window_blocks_only_its_region_and_changes_no_entry() {
                // Concurrency: FAIL_INUSE / #NPF inside the window only; entries untouched.
                for c in CONFIGS {
                    let mut m = rmp(c);
                    let r = region(c, 1);
                    let base = gpa_2m(c, 1);
                    valid_2m(&mut m, r, base);
                    valid_4k(&mut m, region(c, 2), Gpa(0x1000));
                    let before = raws(&m, Pfn(0), c.pages);
                    assert_eq!(m.begin_in_flight(r), ReturnCode::Success);
                    assert_eq!(raws(&m, Pfn(0), c.pages), before);
                    assert_eq!(m.lookup(r), Some((true, RmpPageSize::Size2M)));
                    let a = read_access(at(0), base, r, PageSize::Size2M, true);
                    assert_eq!(m.check_guest_access(&a), npf(NPF_ACCESS | NPF_ENC));
                    let b = read_access(at(0), Gpa(0x1000), region(c, 2), PageSize::Size4K, true);
                    assert_eq!(m.check_guest_access(&b), GuestOutcome::Done(()));
                    let pv = m.pvalidate(at(0), base, r, RmpPageSize::Size2M, false);
                    assert_eq!(pv, npf(NPF_INSTR));
                    assert_eq!(m.psmash(r), ReturnCode::FailInuse);
                    assert_eq!(raws(&m, Pfn(0), c.pages), before);
                    assert!(m.end_in_flight(r));
                    assert_eq!(m.check_guest_access(&a), GuestOutcome::Done(()));
                }
            }
        }
    };
}

rule_tests!(dense_reference, DenseRmp::new);
rule_tests!(region_store, snpsim_hw::rmp::Rmp::new);
