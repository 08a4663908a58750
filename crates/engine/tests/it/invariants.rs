//! The invariant checkers (`docs/semantics.md` E8), each fed a state broken on purpose: `invariants::check`
//! (1, 2, 3 leaf form, 4, 7) and the machine's own checks (6). Every test first shows the honest
//! state passes, then breaks one invariant by mutating the machine directly.
//!
//! Not testable through the public API: the machine's false-negative checks (invariant 3 in its
//! access form, and 5). They re-derive from the RMP what the hardware model just decided, and the
//! machine's RMP is a concrete `Observed<Rmp>`, so no completed access can disagree with them
//! unless the hardware model itself is wrong; the tests below only show that accesses and host
//! writes the hardware refuses are not counted as false negatives.

use snpsim_defs::{Gfn, Gpa, NpfErrorCode, PageSize, Pfn, ReturnCode, RmpArchEntry, RmpPageSize};
use snpsim_engine::engine::{Action, CheckMode, Simulation};
use snpsim_engine::invariants;
use snpsim_engine::machine::Machine;
use snpsim_guest::{Granularity, Guest, GuestConfig, Platform, Protocol, PscOrder};
use snpsim_host::{Host, HostVia, HostWriteOutcome, VmaBacking};
use snpsim_hw::rmp::Rmp;
use snpsim_hw::{AccessKind, Geometry, GuestOutcome, PvalidateStatus, RmpConfig, RmpModel};
use snpsim_kvm::psc::PscRange;
use snpsim_kvm::{Kvm, KvmConfig};
use snpsim_scenario::parse_scenario;
use snpsim_scenario::run::{actions, sim_config};

const ASID: u16 = 1;
const MIB: u64 = 256;

const GUEST: GuestConfig = GuestConfig {
    granularity: Granularity::K4,
    protocol: Protocol::Msr,
    ghcb_entries: 64,
    validation_tracking: true,
    order: PscOrder::PerRequest,
    msr_until_ghcb: false,
};

/// A 16 MiB VM on a 64 MiB host, as the engine wires it (the VMA maps GFN n to frame n).
fn machine(policy: &str, backing: VmaBacking, folio: Option<PageSize>, follows: Option<bool>) -> Machine {
    let p = snpsim_kvm::policy::by_name(policy).unwrap();
    let (host_pages, guest_pages) = (64 * MIB, 16 * MIB);
    let host = Host::new(Geometry::X86, host_pages, guest_pages, backing, folio).unwrap();
    let rmp = Rmp::new(RmpConfig::x86(host_pages));
    let config = KvmConfig {
        asid: ASID,
        prefault_on_psc: false,
        npt_level_follows_rmp: follows.unwrap_or(p.npt_level_follows_rmp()),
    };
    let kvm = Kvm::new(config, p, &host).unwrap();
    Machine::new(rmp, host, kvm, ASID)
}

fn guest() -> Guest {
    Guest::new(GUEST, Geometry::X86, 16 * MIB)
}

fn check(m: &Machine) -> Vec<String> {
    invariants::check(m, &guest(), false)
}

fn fault_in(m: &mut Machine, gfn: u64, private: bool) {
    let code = NpfErrorCode::new().with_guest_final(true).with_enc(private);
    m.kvm.handle_npf(&mut m.host, &mut m.rmp, Gfn(gfn).gpa(), code).unwrap();
}

fn convert(m: &mut Machine, gfn: u64, private: bool) {
    let r = PscRange { gfn: Gfn(gfn), pages: 1, private, size_2m: false };
    m.kvm.convert(&mut m.host, &mut m.rmp, r).unwrap();
}

fn assigned(gpa: u64, asid: u16) -> RmpArchEntry {
    RmpArchEntry::new().with_assigned(true).with_asid(u32::from(asid)).with_gpa(gpa)
}

/// Assert exactly one violation per listed prefix, in order.
fn assert_violations(found: &[String], prefixes: &[&str]) {
    assert_eq!(found.len(), prefixes.len(), "{found:#?}");
    for (f, p) in found.iter().zip(prefixes) {
        assert!(f.starts_with(p), "expected `{p}…`, got `{f}`");
    }
}

// ---------------------------------------------------------------------------------------------
// 1. NPT leaf level ≤ backing level

#[test]
fn invariant_1_npt_leaf_larger_than_the_host_mapping() {
    let mut m = machine("npt-demote", VmaBacking::Anon4k, None, None);
    fault_in(&mut m, 0x10, false);
    assert_eq!(check(&m), Vec::<String>::new());
    m.kvm.npt.map(Gfn(0x200), PageSize::Size2M, Pfn(0x200));
    let v = check(&m);
    assert_violations(&v, &["invariant 1: NPT leaf 2m at GFN 0x200"]);
}

#[test]
fn invariant_1_npt_leaf_larger_than_the_gmem_folio() {
    let mut m = machine("gmem", VmaBacking::Thp, Some(PageSize::Size4K), None);
    fault_in(&mut m, 0x200, true);
    let (pfn, size) = m.kvm.npt.translate(Gfn(0x200)).unwrap();
    assert_eq!(size, PageSize::Size4K);
    assert_eq!(check(&m), Vec::<String>::new());
    // A 2M leaf from a 4K folio's frame: larger than the folio (and mapping GFNs
    // that have no gmem page yet, and covering 4K RMP entries).
    m.kvm.npt.zap(Gfn(0x200), 1);
    m.kvm.npt.map(Gfn(0x200), PageSize::Size2M, pfn);
    let v = check(&m);
    assert!(v[0].starts_with("invariant 1: NPT leaf 2m at GFN 0x200"), "{v:#?}");
    assert!(v.iter().any(|s| s.starts_with("invariant 2:")), "{v:#?}");
    assert!(v.iter().any(|s| s.starts_with("invariant 3:")), "{v:#?}");
}

// ---------------------------------------------------------------------------------------------
// 2. Leaves map the bound frames, each frame once

#[test]
fn invariant_2_leaf_maps_a_frame_not_bound_to_its_gfn() {
    let mut m = machine("npt-demote", VmaBacking::Anon4k, None, None);
    m.kvm.npt.map(Gfn(0x10), PageSize::Size4K, Pfn(0x11));
    assert_violations(&check(&m), &["invariant 2: NPT leaf at GFN 0x10 maps frame 0x11 not bound to it"]);
}

#[test]
fn invariant_2_frame_mapped_at_two_gpas() {
    let mut m = machine("npt-demote", VmaBacking::Anon4k, None, None);
    fault_in(&mut m, 0x10, false);
    assert_eq!(check(&m), Vec::<String>::new());
    m.kvm.npt.map(Gfn(0x20), PageSize::Size4K, Pfn(0x10));
    assert_violations(
        &check(&m),
        &[
            "invariant 2: NPT leaf at GFN 0x20 maps frame 0x10 not bound to it",
            "invariant 2: frame 0x10 is mapped at two GPAs",
        ],
    );
}

#[test]
fn invariant_2_private_gfn_mapped_to_the_vma_instead_of_gmem() {
    let mut m = machine("gmem", VmaBacking::Thp, Some(PageSize::Size4K), None);
    fault_in(&mut m, 0x10, true);
    assert_ne!(m.kvm.npt.translate(Gfn(0x10)).unwrap().0, Pfn(0x10));
    assert_eq!(check(&m), Vec::<String>::new());
    m.kvm.npt.zap(Gfn(0x10), 1);
    m.kvm.npt.map(Gfn(0x10), PageSize::Size4K, Pfn(0x10));
    assert_violations(&check(&m), &["invariant 2: NPT leaf at GFN 0x10 maps frame 0x10 not bound to it"]);
}

// ---------------------------------------------------------------------------------------------
// 3. (leaf form) With npt_level_follows_rmp, no leaf larger than the RMP entries under it

#[test]
fn invariant_3_leaf_larger_than_the_rmp_entry_with_npt_level_follows_rmp() {
    for follows in [true, false] {
        let mut m = machine("npt-demote", VmaBacking::Thp, None, Some(follows));
        convert(&mut m, 0x205, true);
        fault_in(&mut m, 0x205, true);
        let size = m.kvm.npt.translate(Gfn(0x205)).unwrap().1;
        assert_eq!(size, if follows { PageSize::Size4K } else { PageSize::Size2M });
        if follows {
            assert_eq!(check(&m), Vec::<String>::new());
            // Replace the capped leaf by the host-level one.
            m.kvm.npt.zap(Gfn(0x200), 512);
            m.kvm.npt.map(Gfn(0x200), PageSize::Size2M, Pfn(0x200));
            assert_violations(&check(&m), &["invariant 3: 2m NPT leaf at GFN 0x200 over 4K RMP entries"]);
        } else {
            // Without the rule such a leaf is legal; the hardware check catches accesses.
            assert_eq!(check(&m), Vec::<String>::new());
        }
    }
}

/// A well-behaved guest cannot break invariant 3's leaf form with the cap on: a shared 2M write
/// maps a 2M leaf over the unassigned region (no cap applies to it), then a legacy 8 KiB PSC to
/// private makes two 4K entries under it without a zap, as the RFC's handler did. That leaf
/// outgrew its entries (KVM records it as uncapped): KVM did not map it too large, and the
/// hardware's size check faults on the next private access through it (npt-demote then demotes
/// it). The same leaf removed and mapped anew at 2M by hand is a violation.
#[test]
fn invariant_3_a_leaf_the_rmp_shrank_under_is_no_violation() {
    let text = r#"
name = "invariant 3, uncapped leaf"
seed = 1
[machine]
host_memory = "16MiB"
[vm]
memory = "4MiB"
policy = "npt-demote"
backing = "thp"
npt_level_follows_rmp = true
[guest]
psc_granularity = "4k"
[[step]]
op = "access"
gpa = "0x200000"
kind = "write"
private = false
[[step]]
op = "psc"
gpa = "0x23d000"
size = "8KiB"
to = "private"
[[step]]
op = "access"
gpa = "0x23d000"
kind = "write"
"#;
    let s = parse_scenario("t.toml", text).unwrap();
    let mut sim = Simulation::new(sim_config(&s, CheckMode::Full)).unwrap();
    let acts = actions(&s);
    sim.step(&acts[0]);
    sim.step(&acts[1]);
    let m = sim.machine().unwrap();
    assert_eq!(m.kvm.npt.translate(Gfn(0x23d)).map(|(_, s)| s), Some(PageSize::Size2M));
    assert!(m.kvm.npt.is_uncapped(Gfn(0x200)));
    assert_eq!(check(m), Vec::<String>::new());
    // The private write meets the 2M leaf over 4K entries: SIZEM, demoted to 4K, completed.
    sim.step(&acts[2]);
    let r = sim.finish();
    assert_eq!(r.violations, Vec::<String>::new());
    assert_eq!(r.metrics.rmp_npf_sizem, 1);
    assert_eq!(r.metrics.npt_demotions.get("2m_4k"), Some(&1));

    // The same leaf mapped fresh over those entries (not uncapped) is a violation.
    let mut m = machine("npt-demote", VmaBacking::Thp, None, Some(true));
    fault_in(&mut m, 0x200, false);
    convert(&mut m, 0x23d, true);
    assert!(m.kvm.npt.is_uncapped(Gfn(0x200)));
    m.kvm.npt.zap(Gfn(0x200), 512);
    m.kvm.npt.map(Gfn(0x200), PageSize::Size2M, Pfn(0x200));
    assert_violations(&check(&m), &["invariant 3: 2m NPT leaf at GFN 0x200 over 4K RMP entries"]);
}

/// The parts of an uncapped leaf that npt-demote splits stay uncapped: a shared write maps a 1G
/// leaf over unassigned memory, 4K conversions in two of its 2M parts make it outgrow them, and a
/// private access's SIZEM fault splits it; the 2M part over the second conversion is no violation.
#[test]
fn invariant_3_the_parts_of_a_split_uncapped_leaf_stay_uncapped() {
    let p = snpsim_kvm::policy::by_name("npt-demote").unwrap();
    let (host_pages, guest_pages) = (2048 * MIB, 1024 * MIB);
    let host = Host::new(Geometry::X86, host_pages, guest_pages, VmaBacking::Hugetlbfs1g, None).unwrap();
    let rmp = Rmp::new(RmpConfig::x86(host_pages));
    let config = KvmConfig { asid: ASID, prefault_on_psc: false, npt_level_follows_rmp: true };
    let kvm = Kvm::new(config, p, &host).unwrap();
    let mut m = Machine::new(rmp, host, kvm, ASID);
    fault_in(&mut m, 0x0, false);
    assert_eq!(m.kvm.npt.translate(Gfn(0x1)).map(|(_, s)| s), Some(PageSize::Size1G));
    convert(&mut m, 0x1, true);
    convert(&mut m, 0x201, true);
    assert!(m.kvm.npt.is_uncapped(Gfn(0x0)));
    let code = NpfErrorCode::new().with_present(true).with_rmp(true).with_guest_final(true).with_enc(true);
    m.kvm.handle_npf(&mut m.host, &mut m.rmp, Gfn(0x1).gpa(), code.with_sizem(true)).unwrap();
    assert_eq!(m.kvm.npt.translate(Gfn(0x201)).map(|(_, s)| s), Some(PageSize::Size2M));
    assert!(m.kvm.npt.is_uncapped(Gfn(0x200)));
    assert_eq!(
        invariants::check(&m, &Guest::new(GUEST, Geometry::X86, guest_pages), false),
        Vec::<String>::new()
    );
}

/// A leaf that was already larger than the cap allows when a conversion shrinks the RMP under it
/// is not exempted: a fault path that broke the cap stays visible to invariant 3.
#[test]
fn invariant_3_a_leaf_too_large_before_a_conversion_stays_a_violation() {
    let mut m = machine("npt-demote", VmaBacking::Thp, None, Some(true));
    convert(&mut m, 0x205, true);
    m.kvm.npt.map(Gfn(0x200), PageSize::Size2M, Pfn(0x200));
    convert(&mut m, 0x206, true);
    assert!(!m.kvm.npt.is_uncapped(Gfn(0x200)));
    assert_violations(&check(&m), &["invariant 3: 2m NPT leaf at GFN 0x200 over 4K RMP entries"]);
}

#[test]
fn invariant_3_sees_a_region_whose_aligned_page_alone_is_assigned() {
    // RMPREAD's region status at the aligned frame counts only the *other* pages (Linux commit
    // 3e43c60eb3e3): the check must read the aligned page's own assigned bit too.
    let mut m = machine("npt-demote", VmaBacking::Thp, None, Some(true));
    convert(&mut m, 0x200, true);
    fault_in(&mut m, 0x200, true);
    assert_eq!(m.kvm.npt.translate(Gfn(0x200)).unwrap().1, PageSize::Size4K);
    assert_eq!(check(&m), Vec::<String>::new());
    m.kvm.npt.zap(Gfn(0x200), 512);
    m.kvm.npt.map(Gfn(0x200), PageSize::Size2M, Pfn(0x200));
    assert_violations(&check(&m), &["invariant 3: 2m NPT leaf at GFN 0x200 over 4K RMP entries"]);
}

// ---------------------------------------------------------------------------------------------
// 4. Assigned entries: this guest's ASID, the bound GPA

#[test]
fn invariant_4_sees_a_wrong_gpa_on_a_region_s_aligned_page_assigned_alone() {
    // The region scan skips a region only when neither its aligned page nor (region status) any
    // other page is assigned.
    let mut m = machine("npt-demote", VmaBacking::Anon4k, None, None);
    assert_eq!(m.rmp.rmpupdate(Pfn(0x200), assigned(0x12000, ASID)), ReturnCode::Success);
    assert_violations(
        &check(&m),
        &["invariant 4: frame 0x200 assigned to ASID 1 at GPA 0x12000, bound to GFN 0x200"],
    );
}

#[test]
fn invariant_4_page_assigned_to_another_asid() {
    let mut m = machine("npt-demote", VmaBacking::Anon4k, None, None);
    convert(&mut m, 0x10, true);
    assert_eq!(check(&m), Vec::<String>::new());
    assert_eq!(m.rmp.rmpupdate(Pfn(0x20), assigned(0x20000, 2)), ReturnCode::Success);
    assert_violations(
        &check(&m),
        &[
            "invariant 4: frame 0x20 assigned to ASID 2 at GPA 0x20000, bound to GFN 0x20",
            "invariant 4: 1 pages assigned to the guest's ASID, 2 of them bound to its memory",
        ],
    );
}

#[test]
fn invariant_4_page_assigned_at_the_wrong_gpa() {
    let mut m = machine("npt-demote", VmaBacking::Anon4k, None, None);
    assert_eq!(m.rmp.rmpupdate(Pfn(0x11), assigned(0x12000, ASID)), ReturnCode::Success);
    assert_violations(
        &check(&m),
        &["invariant 4: frame 0x11 assigned to ASID 1 at GPA 0x12000, bound to GFN 0x11"],
    );
}

#[test]
fn invariant_4_guest_page_outside_its_memory() {
    let mut m = machine("npt-demote", VmaBacking::Anon4k, None, None);
    // Frame 0x2000 is host memory beyond the guest's 16 MiB VMA.
    assert_eq!(m.rmp.rmpupdate(Pfn(0x2000), assigned(0x1000, ASID)), ReturnCode::Success);
    assert_violations(&check(&m), &["invariant 4: 1 pages assigned to the guest's ASID, 0 of them bound"]);
}

// ---------------------------------------------------------------------------------------------
// 6. No double validation (checked by the machine on each PVALIDATE)

#[test]
fn invariant_6_validate_rescind_validate_through_the_platform() {
    let mut m = machine("npt-demote", VmaBacking::Anon4k, None, None);
    convert(&mut m, 0x10, true);
    let gpa = Gfn(0x10).gpa();
    let changed = Ok(GuestOutcome::Done(PvalidateStatus::Changed));
    assert_eq!(m.pvalidate(0, gpa, RmpPageSize::Size4K, true), changed);
    assert_eq!(m.findings.violations, Vec::<String>::new());
    assert_eq!(m.pvalidate(0, gpa, RmpPageSize::Size4K, false), changed);
    assert_eq!(m.pvalidate(0, gpa, RmpPageSize::Size4K, true), changed);
    assert_eq!(
        m.findings.violations,
        vec!["invariant 6: frame 0x10 validated twice since it was assigned".to_string()]
    );
    // A new assignment starts the count again.
    convert(&mut m, 0x10, false);
    convert(&mut m, 0x10, true);
    assert_eq!(m.pvalidate(0, gpa, RmpPageSize::Size4K, true), changed);
    assert_eq!(m.findings.violations.len(), 1);
    assert_eq!(m.findings.false_negatives, 0);
}

#[test]
fn invariant_6_reported_by_a_run_of_bare_pvalidates() {
    let text = r#"name = "double validation"
[machine]
host_memory = "64MiB"
[vm]
memory = "16MiB"
policy = "npt-demote"
backing = "anon-4k"
[guest]
psc_granularity = "4k"
validation_tracking = false
[[step]]
op = "psc"
gpa = "0x10000"
to = "private"
[[step]]
op = "pvalidate"
gpa = "0x10000"
validate = false
[[step]]
op = "pvalidate"
gpa = "0x10000"
validate = true
"#;
    let s = parse_scenario("t.toml", text).unwrap();
    let r = Simulation::new(sim_config(&s, CheckMode::Full)).unwrap().run(&actions(&s));
    assert_eq!(
        r.violations,
        vec!["invariant 6: frame 0x10 validated twice since it was assigned".to_string()]
    );
    assert_eq!(r.metrics.invariant_violations, 1);
    assert_eq!(r.metrics.false_negatives, 0);
}

// ---------------------------------------------------------------------------------------------
// 7. No data loss without a naive re-coalesce

#[test]
fn invariant_7_data_lost_behind_the_guests_back() {
    let mut m = machine("npt-demote", VmaBacking::Anon4k, None, None);
    let mut g = Guest::new(GuestConfig { validation_tracking: false, ..GUEST }, Geometry::X86, 16 * MIB);
    g.psc(&mut m, 0, Gfn(0x10), 1, true, None).unwrap();
    let gpa = Gfn(0x10).gpa();
    assert_eq!(g.access(&mut m, 0, gpa, AccessKind::Write, true), Ok(GuestOutcome::Done(())));
    assert_eq!(invariants::check(&m, &g, false), Vec::<String>::new());
    // The hypervisor reassigns the page behind the guest's back; the guest validates it again.
    convert(&mut m, 0x10, false);
    convert(&mut m, 0x10, true);
    assert!(g.pvalidate(&mut m, 0, Gfn(0x10), RmpPageSize::Size4K, true).unwrap().is_done());
    assert_eq!(g.access(&mut m, 0, gpa, AccessKind::Read, true), Ok(GuestOutcome::Done(())));
    assert_eq!(g.stats.data_loss_pages, 1);
    assert_violations(&invariants::check(&m, &g, false), &["invariant 7: 1 data pages lost"]);
    // After a naive re-coalesce the same loss is the guest's own doing.
    assert_eq!(invariants::check(&m, &g, true), Vec::<String>::new());
}

#[test]
fn invariant_7_depends_on_the_recoalesce_mode_that_ran() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/debate/10-recoalesce-naive.toml"
    ))
    .unwrap();
    let s = parse_scenario("10.toml", &text).unwrap();
    let mut sim = Simulation::new(sim_config(&s, CheckMode::Full)).unwrap();
    for a in actions(&s) {
        sim.step(&a);
    }
    // The 16 KiB the example writes at 0x300000 and reads back after the naive re-coalesce.
    assert_eq!(sim.guest().stats.data_loss_pages, 4);
    let m = sim.machine().unwrap();
    assert_eq!(invariants::check(m, sim.guest(), true), Vec::<String>::new());
    assert_violations(&invariants::check(m, sim.guest(), false), &["invariant 7: 4 data pages lost"]);
    // The engine knows a naive re-coalesce ran: the run itself reports nothing.
    let r = sim.finish();
    assert_eq!(r.violations, Vec::<String>::new());
    assert_eq!(r.metrics.data_loss_pages, 4);
}

// ---------------------------------------------------------------------------------------------
// False negatives (3 access form, 5): refused accesses are not counted

#[test]
fn refused_host_writes_and_guest_accesses_are_not_false_negatives() {
    let mut m = machine("npt-demote", VmaBacking::Hugetlbfs2m, None, None);
    let mut g = guest();
    g.psc(&mut m, 0, Gfn(0x200), 1, true, None).unwrap();
    // Host writes through the 2M hugetlbfs mapping over the private page fail.
    let next = Gfn(0x201).gpa();
    assert_eq!(m.host_write(next, HostVia::Vmm), HostWriteOutcome::Sigbus);
    assert_eq!(m.host_write(next, HostVia::Uaccess), HostWriteOutcome::Efault);
    assert_eq!(m.host_write(Gfn(0x200).gpa(), HostVia::Kernel), HostWriteOutcome::KernelOops);
    // The direct map was split before the 4K RMPUPDATE: a kernel write next door completes.
    assert_eq!(m.host_write(next, HostVia::Kernel), HostWriteOutcome::Done);
    assert_eq!((m.host.stats.sigbus, m.host.stats.efault, m.host.stats.kernel_oops), (1, 1, 1));
    // Guest accesses: the private one is demoted and completes, the shared one next door too.
    assert_eq!(g.access(&mut m, 0, Gfn(0x200).gpa(), AccessKind::Write, true), Ok(GuestOutcome::Done(())));
    assert_eq!(g.access(&mut m, 0, next, AccessKind::Write, false), Ok(GuestOutcome::Done(())));
    assert_eq!(m.kvm.npt.translate(Gfn(0x201)), Some((Pfn(0x201), PageSize::Size4K)));
    assert_eq!(m.findings.false_negatives, 0);
    assert_eq!(m.findings.violations, Vec::<String>::new());
    assert_eq!(invariants::check(&m, &g, false), Vec::<String>::new());
}

#[test]
fn a_full_check_run_reports_a_violation_once() {
    // The engine de-duplicates: a broken state seen after every step is one violation.
    let text = r#"name = "t"
[machine]
host_memory = "64MiB"
[vm]
memory = "16MiB"
policy = "npt-demote"
backing = "anon-4k"
[guest]
validation_tracking = false
[[step]]
op = "psc"
gpa = "0x10000"
to = "private"
"#;
    let s = parse_scenario("t.toml", text).unwrap();
    let mut sim = Simulation::new(sim_config(&s, CheckMode::Full)).unwrap();
    for a in actions(&s) {
        sim.step(&a);
    }
    for _ in 0..3 {
        sim.step(&Action::Pvalidate {
            vcpu: 0,
            gpa: Gpa(0x10000),
            size: RmpPageSize::Size4K,
            validate: false,
        });
        sim.step(&Action::Pvalidate {
            vcpu: 0,
            gpa: Gpa(0x10000),
            size: RmpPageSize::Size4K,
            validate: true,
        });
    }
    let r = sim.finish();
    assert_eq!(
        r.violations,
        vec!["invariant 6: frame 0x10 validated twice since it was assigned".to_string()]
    );
    assert_eq!(r.metrics.invariant_violations, 1);
}
