//! The registry's policies driven through `Kvm::handle_npf` on a real host and RMP, with the
//! #NPF error codes the hardware model gives: what each one does to the NPT, the host mappings and
//! the counters, branch by branch.

use std::collections::BTreeMap;

use snpsim_defs::ghcb::{GHCB_MSR_PSC_REQ, GhcbMsrPscRequest, PscOp};
use snpsim_defs::{Gfn, Gpa, NpfErrorCode, PageSize, Pfn, RmpArchEntry, RmpPageSize};
use snpsim_host::{Host, HostVia, HostWriteOutcome, VmaBacking};
use snpsim_hw::rmp::Rmp;
use snpsim_hw::{
    AccessKind, Geometry, GuestAccess, GuestContext, GuestOutcome, PvalidateStatus, RmpConfig, RmpModel,
};
use snpsim_kvm::psc::PscRange;
use snpsim_kvm::stats::exit;
use snpsim_kvm::{Kvm, KvmConfig, KvmError, Policy};

const ASID: u16 = 1;
const CTX: GuestContext = GuestContext { asid: ASID, vmpl: 0 };
/// 4 KiB pages per MiB.
const MIB: u64 = 256;
/// 4 KiB pages per GiB.
const GIB: u64 = 1024 * MIB;
/// 4 KiB pages per 2M on x86.
const P2M: u64 = 512;

/// The registered policies whose conversions are KVM's own RMPUPDATEs of the memslot's frames
/// (the 2021 series), by name.
fn legacy_policies() -> impl Iterator<Item = &'static str> {
    snpsim_kvm::policy::ALL.into_iter().filter(|p| !p.converts_gmem_frames()).map(Policy::name)
}
const HOST_SPLIT: [&str; 3] = ["rfc-host-split", "refuse-hugetlbfs", "fail-psc-hugetlbfs"];

/// One VM: host, RMP and KVM, as the engine wires them.
struct Vm {
    host: Host,
    rmp: Rmp,
    kvm: Kvm,
}

fn policy(name: &str) -> &'static dyn Policy {
    snpsim_kvm::policy::by_name(name).unwrap()
}

fn try_vm(
    name: &str,
    backing: VmaBacking,
    gmem: Option<PageSize>,
    guest_pages: u64,
    follows: Option<bool>,
) -> Result<Vm, KvmError> {
    let p = policy(name);
    let host_pages = 4 * guest_pages;
    let host = Host::new(Geometry::X86, host_pages, guest_pages, backing, gmem).unwrap();
    let rmp = Rmp::new(RmpConfig::x86(host_pages));
    let config = KvmConfig {
        asid: ASID,
        prefault_on_psc: false,
        npt_level_follows_rmp: follows.unwrap_or(p.npt_level_follows_rmp()),
    };
    let kvm = Kvm::new(config, p, &host)?;
    Ok(Vm { host, rmp, kvm })
}

fn legacy(name: &str, backing: VmaBacking, guest_pages: u64) -> Vm {
    try_vm(name, backing, None, guest_pages, None).unwrap()
}

fn gmem(folio: PageSize, guest_pages: u64, follows: Option<bool>) -> Vm {
    try_vm("gmem", VmaBacking::Thp, Some(folio), guest_pages, follows).unwrap()
}

fn gpa(gfn: u64) -> Gpa {
    Gfn(gfn).gpa()
}

/// The #NPF a guest access at `gfn` takes, or `None` if it completes (or #VCs): a missing leaf
/// gives the non-present code the CPU reports, a present one goes through the RMP check.
fn access_fault(
    vm: &Vm,
    gfn: u64,
    private: bool,
    kind: AccessKind,
) -> Result<NpfErrorCode, GuestOutcome<()>> {
    let write = kind == AccessKind::Write;
    match vm.kvm.npt.translate(Gfn(gfn)) {
        None => Ok(NpfErrorCode::new().with_guest_final(true).with_enc(private).with_write(write)),
        Some((pfn, npt_size)) => {
            let a = GuestAccess { guest: CTX, gpa: gpa(gfn), pfn, npt_size, private, kind, user: false };
            match vm.rmp.check_guest_access(&a) {
                GuestOutcome::Npf(code) => Ok(code),
                other => Err(other),
            }
        }
    }
}

/// Take the fault of an access at `gfn` (which must fault) to KVM.
fn fault(vm: &mut Vm, gfn: u64, private: bool, kind: AccessKind) -> Result<NpfErrorCode, KvmError> {
    let code = access_fault(vm, gfn, private, kind).expect("the access should fault");
    vm.kvm.handle_npf(&mut vm.host, &mut vm.rmp, gpa(gfn), code).map(|()| code)
}

/// Map `gfn` as a non-present #NPF of a `private` access does.
fn fault_in(vm: &mut Vm, gfn: u64, private: bool) {
    let code = NpfErrorCode::new().with_guest_final(true).with_enc(private);
    vm.kvm.handle_npf(&mut vm.host, &mut vm.rmp, gpa(gfn), code).unwrap();
}

/// Map `gfn` as [`fault_in`] does unless a leaf already maps it.
fn ensure_mapped(vm: &mut Vm, gfn: u64, private: bool) {
    if vm.kvm.npt.translate(Gfn(gfn)).is_none() {
        fault_in(vm, gfn, private);
    }
}

/// PVALIDATE through the NPT as the hardware does it (the leaf must be present).
fn pvalidate(vm: &mut Vm, gfn: u64, size: RmpPageSize) -> GuestOutcome<PvalidateStatus> {
    let (pfn, _) = vm.kvm.npt.translate(Gfn(gfn)).expect("mapped");
    vm.rmp.pvalidate(CTX, gpa(gfn), pfn, size, true)
}

/// A legacy MSR PSC of one page.
fn psc_msr(vm: &mut Vm, gfn: u64, private: bool) -> u32 {
    let op = if private { PscOp::Private } else { PscOp::Shared };
    let req = GhcbMsrPscRequest::new().with_info(GHCB_MSR_PSC_REQ).with_gfn(gfn).with_op(op.raw());
    vm.kvm.handle_psc_msr(&mut vm.host, &mut vm.rmp, req).unwrap().error()
}

fn convert(vm: &mut Vm, gfn: u64, pages: u64, private: bool, size_2m: bool) {
    let r = PscRange { gfn: Gfn(gfn), pages, private, size_2m };
    vm.kvm.convert(&mut vm.host, &mut vm.rmp, r).unwrap();
}

fn leaf(vm: &Vm, gfn: u64) -> Option<(Pfn, PageSize)> {
    vm.kvm.npt.translate(Gfn(gfn))
}

fn demotions(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|&(k, v)| (k.to_string(), v)).collect()
}

fn sizem_private(write: bool) -> NpfErrorCode {
    NpfErrorCode::new()
        .with_present(true)
        .with_rmp(true)
        .with_guest_final(true)
        .with_enc(true)
        .with_sizem(true)
        .with_write(write)
}

/// The legacy set-up every size-mismatch test starts from: GFN 0x200 made private at 4K by an MSR
/// PSC, mapped through a leaf of the host level, and validated.
fn private_4k_at_0x200(vm: &mut Vm) {
    assert_eq!(psc_msr(vm, 0x200, true), 0);
    assert_eq!(vm.rmp.lookup(Pfn(0x200)), Some((true, RmpPageSize::Size4K)));
    fault_in(vm, 0x200, true);
    assert_eq!(pvalidate(vm, 0x200, RmpPageSize::Size4K), GuestOutcome::Done(PvalidateStatus::Changed));
}

// ---------------------------------------------------------------------------------------------
// rfc-host-split (and the two policies that resolve faults as it does)

#[test]
fn host_split_policies_split_thp_needlessly_and_zap_the_2m_range() {
    for name in HOST_SPLIT {
        let mut vm = legacy(name, VmaBacking::Thp, 16 * MIB);
        private_4k_at_0x200(&mut vm);
        fault_in(&mut vm, 0x1ff, false);
        fault_in(&mut vm, 0x400, false);
        assert_eq!(leaf(&vm, 0x200), Some((Pfn(0x200), PageSize::Size2M)), "{name}");
        let code = fault(&mut vm, 0x200, true, AccessKind::Write).unwrap();
        assert_eq!(code, sizem_private(true), "{name}");
        // The host mapping is split; the MMU notifier zapped exactly its 2M range.
        assert_eq!(vm.host.vma.level(0x200), PageSize::Size4K, "{name}");
        assert_eq!(vm.host.vma.level(0x3ff), PageSize::Size4K, "{name}");
        assert_eq!(vm.host.vma.level(0x400), PageSize::Size2M, "{name}");
        assert_eq!(vm.host.stats.host_splits, 1, "{name}");
        assert_eq!(vm.host.stats.host_splits_needless, 1, "{name}");
        assert_eq!(leaf(&vm, 0x200), None, "{name}");
        assert_eq!(leaf(&vm, 0x3ff), None, "{name}");
        assert_eq!(leaf(&vm, 0x1ff), Some((Pfn(0x1ff), PageSize::Size2M)), "{name}");
        assert_eq!(leaf(&vm, 0x400), Some((Pfn(0x400), PageSize::Size2M)), "{name}");
        assert_eq!(vm.kvm.stats.npt_demotions, demotions(&[("2m_4k", 1)]), "{name}");
        assert_eq!(vm.kvm.stats.npt_demotions_needless, 0, "{name}");
        // #NPFs: the three fault-ins (0x200, 0x1ff, 0x400, not present) and the write's SIZEM.
        assert_eq!((vm.kvm.stats.npf, vm.kvm.stats.rmp_npf, vm.kvm.stats.rmp_npf_sizem), (4, 1, 1), "{name}");
        // The refault maps the new host level and the access completes.
        fault(&mut vm, 0x200, true, AccessKind::Write).unwrap();
        assert_eq!(leaf(&vm, 0x200), Some((Pfn(0x200), PageSize::Size4K)), "{name}");
        assert_eq!(access_fault(&vm, 0x200, true, AccessKind::Write), Err(GuestOutcome::Done(())), "{name}");
        assert_eq!(vm.rmp.lookup(Pfn(0x200)), Some((true, RmpPageSize::Size4K)), "{name}");
        assert_eq!(vm.kvm.stats.psmash, 0, "{name}");
    }
}

#[test]
fn a_kvm_host_split_turns_needed_when_a_host_write_would_have_faulted_through_the_old_2m_mapping() {
    let mut vm = legacy("rfc-host-split", VmaBacking::Thp, 16 * MIB);
    private_4k_at_0x200(&mut vm);
    fault(&mut vm, 0x200, true, AccessKind::Write).unwrap();
    assert_eq!((vm.host.stats.host_splits, vm.host.stats.host_splits_needless), (1, 1));
    // A VMM write to the private page itself faults through any mapping: the split cannot matter.
    let (r, _) = vm.host.write_via_vma(&vm.rmp, 0x200, HostVia::Vmm);
    assert_eq!(r, HostWriteOutcome::Sigbus);
    // A write to a shared page of the unsplit 2M region at 0x400 has no split to need.
    let (r, _) = vm.host.write_via_vma(&vm.rmp, 0x400, HostVia::Vmm);
    assert_eq!(r, HostWriteOutcome::Done);
    assert_eq!((vm.host.stats.host_splits_needed, vm.host.stats.host_splits_needless), (0, 1));
    // A write to the shared neighbour 0x201 completes through its 4K mapping, but through the old
    // 2M mapping, whose 2M part holds the assigned 0x200, it would have faulted: needed, once.
    for _ in 0..2 {
        let (r, _) = vm.host.write_via_vma(&vm.rmp, 0x201, HostVia::Uaccess);
        assert_eq!(r, HostWriteOutcome::Done);
    }
    assert_eq!(
        (vm.host.stats.host_splits, vm.host.stats.host_splits_needed, vm.host.stats.host_splits_needless),
        (1, 1, 0)
    );
}

#[test]
fn a_collapse_closes_a_needless_split_for_good() {
    let mut vm = legacy("rfc-host-split", VmaBacking::Thp, 16 * MIB);
    private_4k_at_0x200(&mut vm);
    fault(&mut vm, 0x200, true, AccessKind::Write).unwrap();
    assert!(vm.host.collapse_vma(0x200).unwrap().is_some());
    // Through the collapsed 2M mapping the write faults for real: the host's RMP #PF handler
    // splits again (a needed split of its own), and the first split stays needless.
    let (r, _) = vm.host.write_via_vma(&vm.rmp, 0x201, HostVia::Vmm);
    assert_eq!(r, HostWriteOutcome::Done);
    assert_eq!(
        (vm.host.stats.host_splits, vm.host.stats.host_splits_needed, vm.host.stats.host_splits_needless),
        (2, 1, 1)
    );
}

#[test]
fn host_split_on_a_shared_access_through_a_2m_leaf_over_a_private_page() {
    let mut vm = legacy("rfc-host-split", VmaBacking::Thp, 16 * MIB);
    private_4k_at_0x200(&mut vm);
    // A shared read of the neighbour through the 2M leaf: RMP|SIZEM without ENC.
    let code = fault(&mut vm, 0x201, false, AccessKind::Read).unwrap();
    assert_eq!(
        code,
        NpfErrorCode::new().with_present(true).with_rmp(true).with_guest_final(true).with_sizem(true)
    );
    assert_eq!(vm.host.stats.host_splits_needless, 1);
    assert_eq!(leaf(&vm, 0x201), None);
    fault(&mut vm, 0x201, false, AccessKind::Read).unwrap();
    assert_eq!(leaf(&vm, 0x201), Some((Pfn(0x201), PageSize::Size4K)));
    assert_eq!(access_fault(&vm, 0x201, false, AccessKind::Read), Err(GuestOutcome::Done(())));
    assert_eq!(vm.kvm.stats.implicit_conversions, 0);
}

#[test]
fn host_split_policies_cannot_resolve_on_hugetlbfs_2m() {
    for name in ["rfc-host-split", "fail-psc-hugetlbfs"] {
        let mut vm = legacy(name, VmaBacking::Hugetlbfs2m, 16 * MIB);
        // fail-psc-hugetlbfs refuses the PSC, so the page is assigned behind KVM's back.
        convert_behind_kvm(&mut vm, 0x200);
        fault_in(&mut vm, 0x200, true);
        assert_eq!(
            pvalidate(&mut vm, 0x200, RmpPageSize::Size4K),
            GuestOutcome::Done(PvalidateStatus::Changed)
        );
        let err = fault(&mut vm, 0x200, true, AccessKind::Read).unwrap_err();
        assert!(matches!(err, KvmError::Unresolvable { gfn: Gfn(0x200), .. }), "{name}: {err:?}");
        assert_eq!(leaf(&vm, 0x200), Some((Pfn(0x200), PageSize::Size2M)), "{name}");
        assert_eq!(vm.host.vma.level(0x200), PageSize::Size2M, "{name}");
        assert_eq!(vm.host.stats.host_splits, 0, "{name}");
        assert_eq!(vm.host.stats.host_splits_needless, 0, "{name}");
        assert_eq!(vm.kvm.stats.demotions_total(), 0, "{name}");
    }
}

#[test]
fn rfc_host_split_cannot_resolve_on_hugetlbfs_1g() {
    let mut vm = legacy("rfc-host-split", VmaBacking::Hugetlbfs1g, GIB);
    private_4k_at_0x200(&mut vm);
    assert_eq!(leaf(&vm, 0x200), Some((Pfn(0x200), PageSize::Size1G)));
    let err = fault(&mut vm, 0x200, true, AccessKind::Read).unwrap_err();
    assert!(matches!(err, KvmError::Unresolvable { gfn: Gfn(0x200), .. }), "{err:?}");
    assert_eq!(leaf(&vm, 0x200), Some((Pfn(0x200), PageSize::Size1G)));
    assert_eq!(vm.host.vma.level(0x200), PageSize::Size1G);
    assert_eq!(vm.host.stats.host_splits, 0);
}

/// RMPUPDATE `gfn` private at 4K directly (the VMA maps GFN n to frame n).
fn convert_behind_kvm(vm: &mut Vm, gfn: u64) {
    let e = RmpArchEntry::new().with_assigned(true).with_asid(u32::from(ASID)).with_gpa(gpa(gfn).raw());
    assert_eq!(vm.rmp.rmpupdate(Pfn(gfn), e), snpsim_defs::ReturnCode::Success);
}

// ---------------------------------------------------------------------------------------------
// refuse-hugetlbfs

#[test]
fn refuse_hugetlbfs_rejects_hugetlbfs_memslots_only() {
    for backing in [VmaBacking::Hugetlbfs2m, VmaBacking::Hugetlbfs1g] {
        let pages = if backing == VmaBacking::Hugetlbfs1g { GIB } else { 16 * MIB };
        match try_vm("refuse-hugetlbfs", backing, None, pages, None) {
            Err(KvmError::Rejected { policy, backing: refused }) => {
                assert_eq!((policy, refused), ("refuse-hugetlbfs", backing));
            }
            other => panic!("{backing:?}: expected Rejected, got {:?}", other.map(|_| ())),
        }
    }
    for backing in [VmaBacking::Thp, VmaBacking::Anon4k] {
        assert!(try_vm("refuse-hugetlbfs", backing, None, 16 * MIB, None).is_ok(), "{backing:?}");
    }
    for name in ["rfc-host-split", "fail-psc-hugetlbfs", "npt-demote"] {
        assert!(try_vm(name, VmaBacking::Hugetlbfs2m, None, 16 * MIB, None).is_ok(), "{name}");
    }
}

// ---------------------------------------------------------------------------------------------
// fail-psc-hugetlbfs

#[test]
fn fail_psc_hugetlbfs_refuses_psc_to_private_on_hugetlbfs() {
    for (backing, pages) in [(VmaBacking::Hugetlbfs2m, 16 * MIB), (VmaBacking::Hugetlbfs1g, GIB)] {
        let mut vm = legacy("fail-psc-hugetlbfs", backing, pages);
        // The one PSC, refused before any RMPUPDATE.
        assert_eq!(psc_msr(&mut vm, 0x200, true), u32::MAX, "{backing:?}");
        assert_eq!(vm.kvm.stats.psc_failed, 1);
        assert_eq!(vm.kvm.stats.psc_requests, 1);
        assert_eq!(vm.kvm.stats.rmpupdate, 0);
        assert_eq!(vm.rmp.lookup(Pfn(0x200)), Some((false, RmpPageSize::Size4K)));
        // To shared is allowed: a page assigned earlier goes back.
        convert_behind_kvm(&mut vm, 0x300);
        // A second request, converted by one 4K RMPUPDATE (convert_behind_kvm's is not KVM's).
        assert_eq!(psc_msr(&mut vm, 0x300, false), 0, "{backing:?}");
        assert_eq!(vm.kvm.stats.psc_failed, 1);
        assert_eq!(vm.kvm.stats.psc_requests, 2);
        assert_eq!(vm.kvm.stats.rmpupdate, 1);
        assert_eq!(vm.rmp.lookup(Pfn(0x300)), Some((false, RmpPageSize::Size4K)));
    }
    // Other backings take the PSC.
    let mut vm = legacy("fail-psc-hugetlbfs", VmaBacking::Thp, 16 * MIB);
    assert_eq!(psc_msr(&mut vm, 0x200, true), 0);
    assert_eq!(vm.kvm.stats.psc_failed, 0);
    assert_eq!(vm.rmp.lookup(Pfn(0x200)), Some((true, RmpPageSize::Size4K)));
}

// ---------------------------------------------------------------------------------------------
// npt-demote

#[test]
fn npt_demote_demotes_a_2m_leaf_in_place() {
    for backing in [VmaBacking::Thp, VmaBacking::Hugetlbfs2m] {
        let mut vm = legacy("npt-demote", backing, 16 * MIB);
        private_4k_at_0x200(&mut vm);
        fault_in(&mut vm, 0x400, false);
        fault(&mut vm, 0x200, true, AccessKind::Write).unwrap();
        // Demoted in place: the whole 2M range stays mapped, at 4K, on the same frames.
        assert_eq!(leaf(&vm, 0x200), Some((Pfn(0x200), PageSize::Size4K)), "{backing:?}");
        assert_eq!(leaf(&vm, 0x3ff), Some((Pfn(0x3ff), PageSize::Size4K)), "{backing:?}");
        assert_eq!(leaf(&vm, 0x400), Some((Pfn(0x400), PageSize::Size2M)), "{backing:?}");
        assert_eq!(vm.kvm.npt.coverage(), [P2M, P2M, 0], "{backing:?}");
        assert_eq!(vm.kvm.stats.npt_demotions, demotions(&[("2m_4k", 1)]));
        assert_eq!(vm.kvm.stats.npt_demotions_needless, 0);
        // The host is untouched.
        assert_eq!(vm.host.vma.level(0x200), PageSize::Size2M);
        assert_eq!(vm.host.stats.host_splits, 0);
        assert_eq!(vm.host.stats.host_splits_needless, 0);
        // No refault: the retried access completes.
        assert_eq!(access_fault(&vm, 0x200, true, AccessKind::Write), Err(GuestOutcome::Done(())));
        // #NPFs: the fault-ins of 0x200 and 0x400 (not present) and the write's SIZEM.
        assert_eq!((vm.kvm.stats.npf, vm.kvm.stats.rmp_npf_sizem), (3, 1));
    }
}

#[test]
fn npt_demote_demotes_a_1g_leaf_minimally() {
    let mut vm = legacy("npt-demote", VmaBacking::Hugetlbfs1g, GIB);
    private_4k_at_0x200(&mut vm);
    assert_eq!(leaf(&vm, 0x200), Some((Pfn(0x200), PageSize::Size1G)));
    fault(&mut vm, 0x200, true, AccessKind::Read).unwrap();
    assert_eq!(vm.kvm.stats.npt_demotions, demotions(&[("1g_2m", 1), ("2m_4k", 1)]));
    assert_eq!(vm.kvm.stats.npt_demotions_needless, 0);
    assert_eq!(leaf(&vm, 0x200), Some((Pfn(0x200), PageSize::Size4K)));
    assert_eq!(leaf(&vm, 0x3ff), Some((Pfn(0x3ff), PageSize::Size4K)));
    assert_eq!(leaf(&vm, 0), Some((Pfn(0), PageSize::Size2M)));
    assert_eq!(leaf(&vm, 0x400), Some((Pfn(0x400), PageSize::Size2M)));
    assert_eq!(leaf(&vm, GIB - 1), Some((Pfn(GIB - 1), PageSize::Size2M)));
    assert_eq!(vm.kvm.npt.coverage(), [P2M, GIB - P2M, 0]);
    assert_eq!(vm.host.vma.level(0x200), PageSize::Size1G);
    assert_eq!(vm.host.stats.host_splits, 0);
    assert_eq!(access_fault(&vm, 0x200, true, AccessKind::Read), Err(GuestOutcome::Done(())));
}

// ---------------------------------------------------------------------------------------------
// Common to every policy: a SIZEM fault on a 2M RMP entry is resolved by PSMASH and a zap

fn pvalidate_sizem() -> NpfErrorCode {
    NpfErrorCode::new()
        .with_present(true)
        .with_rmp(true)
        .with_guest_final(true)
        .with_enc(true)
        .with_sizem(true)
}

#[test]
fn host_split_policies_psmash_and_zap_the_aligned_2m_range_on_a_4k_pvalidate() {
    for name in HOST_SPLIT {
        let mut vm = legacy(name, VmaBacking::Thp, 16 * MIB);
        convert(&mut vm, 0x200, P2M, true, true);
        assert_eq!(vm.kvm.stats.rmpupdate, 1, "{name}");
        assert_eq!(vm.rmp.lookup(Pfn(0x205)), Some((true, RmpPageSize::Size2M)), "{name}");
        fault_in(&mut vm, 0x205, true);
        fault_in(&mut vm, 0x1ff, false);
        fault_in(&mut vm, 0x400, false);
        assert_eq!(leaf(&vm, 0x205), Some((Pfn(0x205), PageSize::Size2M)), "{name}");
        let GuestOutcome::Npf(code) = pvalidate(&mut vm, 0x205, RmpPageSize::Size4K) else {
            panic!("{name}: a 4K PVALIDATE in a 2M entry must fault")
        };
        assert_eq!(code, pvalidate_sizem(), "{name}");
        vm.kvm.handle_npf(&mut vm.host, &mut vm.rmp, gpa(0x205), code).unwrap();
        assert_eq!(vm.kvm.stats.psmash, 1, "{name}");
        assert_eq!(vm.rmp.lookup(Pfn(0x200)), Some((true, RmpPageSize::Size4K)), "{name}");
        assert_eq!(vm.rmp.lookup(Pfn(0x3ff)), Some((true, RmpPageSize::Size4K)), "{name}");
        // Legacy: the 2M-aligned 512 GFNs [0x200, 0x400) are zapped, nothing else.
        assert_eq!(leaf(&vm, 0x200), None, "{name}");
        assert_eq!(leaf(&vm, 0x3ff), None, "{name}");
        assert_eq!(leaf(&vm, 0x1ff), Some((Pfn(0x1ff), PageSize::Size2M)), "{name}");
        assert_eq!(leaf(&vm, 0x400), Some((Pfn(0x400), PageSize::Size2M)), "{name}");
        assert_eq!(vm.kvm.stats.npt_demotions, demotions(&[("2m_4k", 1)]), "{name}");
        assert_eq!(vm.kvm.stats.npt_demotions_needless, 0, "{name}");
        assert_eq!(vm.host.vma.level(0x205), PageSize::Size2M, "{name}");
        assert_eq!(vm.host.stats.host_splits, 0, "{name}");
        assert_eq!((vm.kvm.stats.rmp_npf, vm.kvm.stats.rmp_npf_sizem), (1, 1), "{name}");
        // The retried PVALIDATE (after the refault) succeeds at 4K.
        fault_in(&mut vm, 0x205, true);
        assert_eq!(
            pvalidate(&mut vm, 0x205, RmpPageSize::Size4K),
            GuestOutcome::Done(PvalidateStatus::Changed)
        );
    }
}

#[test]
fn gmem_psmashes_and_zaps_512_gfns_from_the_faulting_gfn() {
    let mut vm = gmem(PageSize::Size2M, 16 * MIB, None);
    for g in [0x205, 0x400, 0x600, 0x1ff] {
        fault_in(&mut vm, g, true);
    }
    let (pfn, size) = leaf(&vm, 0x205).unwrap();
    assert_eq!(size, PageSize::Size2M);
    assert_eq!(vm.rmp.lookup(pfn), Some((true, RmpPageSize::Size2M)));
    let GuestOutcome::Npf(code) = pvalidate(&mut vm, 0x205, RmpPageSize::Size4K) else { panic!("no SIZEM") };
    assert_eq!(code, pvalidate_sizem());
    vm.kvm.handle_npf(&mut vm.host, &mut vm.rmp, gpa(0x205), code).unwrap();
    assert_eq!(vm.kvm.stats.psmash, 1);
    assert_eq!(vm.rmp.lookup(pfn), Some((true, RmpPageSize::Size4K)));
    // [0x205, 0x405): the faulting leaf and the next 2M part's leaf go; the latter needlessly.
    assert_eq!(leaf(&vm, 0x200), None);
    assert_eq!(leaf(&vm, 0x400), None);
    assert_eq!(leaf(&vm, 0x5ff), None);
    assert!(leaf(&vm, 0x600).is_some_and(|(_, s)| s == PageSize::Size2M));
    assert!(leaf(&vm, 0x1ff).is_some_and(|(_, s)| s == PageSize::Size2M));
    assert_eq!(vm.kvm.stats.npt_demotions, demotions(&[("2m_4k", 2)]));
    assert_eq!(vm.kvm.stats.npt_demotions_needless, 1);
    // With npt_level_follows_rmp the refault is capped at the new 4K RMP level; the next part,
    // still 2M in the RMP, comes back at 2M.
    fault_in(&mut vm, 0x205, true);
    assert_eq!(leaf(&vm, 0x205), Some((pfn, PageSize::Size4K)));
    fault_in(&mut vm, 0x400, true);
    assert_eq!(leaf(&vm, 0x400).map(|(_, s)| s), Some(PageSize::Size2M));
    assert_eq!(pvalidate(&mut vm, 0x205, RmpPageSize::Size4K), GuestOutcome::Done(PvalidateStatus::Changed));
}

#[test]
fn a_private_access_through_a_leaf_smaller_than_the_rmp_entry_is_psmashed() {
    for name in ["rfc-host-split", "npt-demote"] {
        let mut vm = legacy(name, VmaBacking::Thp, 16 * MIB);
        convert(&mut vm, 0x200, P2M, true, true);
        fault_in(&mut vm, 0x200, true);
        assert_eq!(
            pvalidate(&mut vm, 0x200, RmpPageSize::Size2M),
            GuestOutcome::Done(PvalidateStatus::Changed)
        );
        // The host splits the THP for its own reasons; the refault maps 4K over the 2M entry.
        let inv = vm.host.vma.split(0x200).unwrap().unwrap();
        vm.kvm.mmu_invalidate(inv);
        fault_in(&mut vm, 0x205, true);
        assert_eq!(leaf(&vm, 0x205), Some((Pfn(0x205), PageSize::Size4K)));
        let code = fault(&mut vm, 0x205, true, AccessKind::Read).unwrap();
        assert_eq!(code, sizem_private(false));
        assert_eq!(vm.kvm.stats.psmash, 1);
        assert_eq!(vm.rmp.lookup(Pfn(0x205)), Some((true, RmpPageSize::Size4K)));
        if name == "npt-demote" {
            // Minimal: nothing is zapped; the 4K leaf now matches its 4K entry.
            assert_eq!(leaf(&vm, 0x205), Some((Pfn(0x205), PageSize::Size4K)));
        } else {
            // The zap of the 2M-aligned range removes the 4K leaf; the refault maps it again.
            assert_eq!(leaf(&vm, 0x205), None);
            fault_in(&mut vm, 0x205, true);
        }
        // Only 4K leaves were there: no demotion either way.
        assert_eq!(vm.kvm.stats.demotions_total(), 0, "{name}");
        // PSMASH kept Validated: the access completes.
        assert_eq!(access_fault(&vm, 0x205, true, AccessKind::Read), Err(GuestOutcome::Done(())), "{name}");
    }
}

#[test]
fn gmem_cannot_resolve_an_npt_leaf_larger_than_the_rmp_entry() {
    let mut vm = gmem(PageSize::Size2M, 16 * MIB, Some(false));
    fault_in(&mut vm, 0x205, true);
    let GuestOutcome::Npf(code) = pvalidate(&mut vm, 0x205, RmpPageSize::Size4K) else { panic!("no SIZEM") };
    vm.kvm.handle_npf(&mut vm.host, &mut vm.rmp, gpa(0x205), code).unwrap();
    // Without the cap, the refault maps the 2M folio over the now-4K entries.
    fault_in(&mut vm, 0x205, true);
    let (pfn, size) = leaf(&vm, 0x205).unwrap();
    assert_eq!(size, PageSize::Size2M);
    assert_eq!(pvalidate(&mut vm, 0x205, RmpPageSize::Size4K), GuestOutcome::Done(PvalidateStatus::Changed));
    let err = fault(&mut vm, 0x205, true, AccessKind::Read).unwrap_err();
    assert!(matches!(err, KvmError::Unresolvable { gfn: Gfn(0x205), .. }), "{err:?}");
    assert_eq!(leaf(&vm, 0x205), Some((pfn, PageSize::Size2M)));
    // One PSMASH, for the 4K PVALIDATE's SIZEM; the read's SIZEM (a 2M leaf over the 4K entry)
    // is the second, and unresolvable.
    assert_eq!(vm.kvm.stats.psmash, 1);
    assert_eq!(vm.kvm.stats.rmp_npf_sizem, 2);
}

// ---------------------------------------------------------------------------------------------
// Implicit conversions

#[test]
fn legacy_implicit_conversions_both_ways() {
    assert_ne!(legacy_policies().count(), 0);
    for name in legacy_policies() {
        let mut vm = legacy(name, VmaBacking::Anon4k, 16 * MIB);
        assert_eq!(psc_msr(&mut vm, 0x10, true), 0);
        // rfc-v4's PSC handler maps the GPA itself (`snp_check_and_build_npt`).
        ensure_mapped(&mut vm, 0x10, true);
        // A shared access to a private page: RMP without SIZEM; KVM makes the page shared.
        let code = fault(&mut vm, 0x10, false, AccessKind::Read).unwrap();
        assert_eq!(code, NpfErrorCode::new().with_present(true).with_rmp(true).with_guest_final(true));
        assert_eq!(vm.rmp.lookup(Pfn(0x10)), Some((false, RmpPageSize::Size4K)), "{name}");
        assert_eq!(vm.kvm.stats.implicit_conversions, 1, "{name}");
        // rfc-v4 zaps the 2M-aligned range after every conversion (38/40); the refault maps it.
        assert_eq!(leaf(&vm, 0x10).is_none(), name == "rfc-v4", "{name}");
        ensure_mapped(&mut vm, 0x10, false);
        assert_eq!(access_fault(&vm, 0x10, false, AccessKind::Read), Err(GuestOutcome::Done(())));
        // A private write to a shared page: KVM makes it private (then the guest must validate).
        ensure_mapped(&mut vm, 0x20, false);
        fault(&mut vm, 0x20, true, AccessKind::Write).unwrap();
        ensure_mapped(&mut vm, 0x20, true);
        assert_eq!(vm.rmp.lookup(Pfn(0x20)), Some((true, RmpPageSize::Size4K)), "{name}");
        assert_eq!(vm.rmp.rmpread(Pfn(0x20)).unwrap().gpa(), 0x20000, "{name}");
        assert_eq!(vm.kvm.stats.implicit_conversions, 2, "{name}");
        assert_eq!(
            access_fault(&vm, 0x20, true, AccessKind::Write),
            Err(GuestOutcome::Vc(snpsim_defs::SvmExitCode::PageNotValidated))
        );
        // KVM's RMPUPDATEs: the MSR PSC's and the two implicit conversions', its own in the
        // legacy era (no exit to the VMM); the RMP #NPFs are the two faults that converted.
        assert_eq!(vm.kvm.stats.rmpupdate, 3, "{name}");
        assert_eq!(vm.kvm.stats.exits[exit::MEMORY_FAULT], 0, "{name}");
        assert_eq!(vm.kvm.stats.exits[exit::HYPERCALL], 0, "{name}");
        assert_eq!(vm.kvm.stats.rmp_npf, 2, "{name}");
    }
}

#[test]
fn gmem_implicit_conversions_both_ways_exit_to_the_vmm() {
    let mut vm = gmem(PageSize::Size4K, 16 * MIB, None);
    // Memory starts private by attribute; a shared read converts the page (KVM_EXIT_MEMORY_FAULT).
    fault(&mut vm, 0x10, false, AccessKind::Read).unwrap();
    assert!(!vm.kvm.attrs.is_private(Gfn(0x10)));
    assert!(vm.kvm.attrs.is_private(Gfn(0x11)));
    assert_eq!(vm.kvm.stats.implicit_conversions, 1);
    assert_eq!(vm.kvm.stats.exits[exit::MEMORY_FAULT], 1);
    assert_eq!(leaf(&vm, 0x10), None);
    fault(&mut vm, 0x10, false, AccessKind::Read).unwrap();
    // The shared GFN maps the VMA page; mixed attributes keep the leaf at 4K despite THP.
    assert_eq!(leaf(&vm, 0x10), Some((Pfn(0x10), PageSize::Size4K)));
    assert_eq!(access_fault(&vm, 0x10, false, AccessKind::Read), Err(GuestOutcome::Done(())));
    // A private write through the shared leaf: RMP #NPF, converted back by the VMM.
    let code = fault(&mut vm, 0x10, true, AccessKind::Write).unwrap();
    assert!(code.rmp() && code.enc() && !code.sizem());
    assert!(vm.kvm.attrs.is_private(Gfn(0x10)));
    assert_eq!(vm.kvm.stats.implicit_conversions, 2);
    assert_eq!(vm.kvm.stats.exits[exit::MEMORY_FAULT], 2);
    assert_eq!(leaf(&vm, 0x10), None);
    fault(&mut vm, 0x10, true, AccessKind::Write).unwrap();
    let (pfn, size) = leaf(&vm, 0x10).unwrap();
    assert_eq!(size, PageSize::Size4K);
    assert_eq!(Some(pfn), vm.host.gmem.as_ref().unwrap().pfn(0x10).map(|(p, _)| p));
    assert_ne!(pfn, Pfn(0x10));
    assert_eq!(vm.rmp.lookup(pfn), Some((true, RmpPageSize::Size4K)));
    // Four faults taken to KVM; only the private write through the shared leaf is an RMP #NPF
    // (the others found no leaf).
    assert_eq!(vm.kvm.stats.rmp_npf, 1);
    assert_eq!(vm.kvm.stats.npf, 4);
}

#[test]
fn gmem_implicit_conversion_is_one_userspace_exit() {
    let mut vm = gmem(PageSize::Size4K, 16 * MIB, None);
    fault(&mut vm, 0x10, false, AccessKind::Read).unwrap();
    assert_eq!(vm.kvm.stats.exits[exit::MEMORY_FAULT], 1);
    assert_eq!(vm.kvm.stats.exits[exit::HYPERCALL], 0);
}

// ---------------------------------------------------------------------------------------------
// Fault-in levels

#[test]
fn legacy_fault_in_maps_at_the_host_level() {
    for (backing, pages, level) in [
        (VmaBacking::Anon4k, 16 * MIB, PageSize::Size4K),
        (VmaBacking::Thp, 16 * MIB, PageSize::Size2M),
        (VmaBacking::Hugetlbfs2m, 16 * MIB, PageSize::Size2M),
        (VmaBacking::Hugetlbfs1g, GIB, PageSize::Size1G),
    ] {
        let mut vm = legacy("npt-demote", backing, pages);
        // Also for a private page whose RMP entry is 4K: the legacy NPT follows the host.
        assert_eq!(psc_msr(&mut vm, 0x205, true), 0);
        fault_in(&mut vm, 0x205, true);
        let start = 0x205 & !(Geometry::X86.pages(level) - 1);
        assert_eq!(
            vm.kvm.npt.leaf(Gfn(0x205)).map(|(g, l)| (g, l.size, l.pfn)),
            Some((Gfn(start), level, Pfn(start)))
        );
        let faults = if level == PageSize::Size1G {
            1
        } else {
            fault_in(&mut vm, 0x801, false);
            2
        };
        assert_eq!(leaf(&vm, 0x801).map(|(_, s)| s), Some(level), "{backing:?}");
        assert_eq!(vm.kvm.stats.npf, faults, "{backing:?}");
        assert_eq!(vm.kvm.stats.rmp_npf, 0, "{backing:?}");
    }
    // A THP tail shorter than 2M is mapped at 4K.
    let mut vm = legacy("npt-demote", VmaBacking::Thp, 16 * MIB + 4);
    fault_in(&mut vm, 16 * MIB + 1, false);
    assert_eq!(leaf(&vm, 16 * MIB + 1), Some((Pfn(16 * MIB + 1), PageSize::Size4K)));
    fault_in(&mut vm, 16 * MIB - 1, false);
    assert_eq!(leaf(&vm, 16 * MIB - 1).map(|(_, s)| s), Some(PageSize::Size2M));
}

#[test]
fn legacy_fault_in_capped_at_the_rmp_level_with_npt_level_follows_rmp() {
    let mut vm = try_vm("npt-demote", VmaBacking::Thp, None, 16 * MIB, Some(true)).unwrap();
    assert_eq!(psc_msr(&mut vm, 0x205, true), 0);
    convert(&mut vm, 0x400, P2M, true, true);
    fault_in(&mut vm, 0x205, true);
    assert_eq!(leaf(&vm, 0x205), Some((Pfn(0x205), PageSize::Size4K)));
    fault_in(&mut vm, 0x405, true);
    assert_eq!(leaf(&vm, 0x405), Some((Pfn(0x405), PageSize::Size2M)));
    // Shared faults are not capped.
    fault_in(&mut vm, 0x805, false);
    assert_eq!(leaf(&vm, 0x805), Some((Pfn(0x805), PageSize::Size2M)));
}

#[test]
fn gmem_fault_in_maps_the_folio_size_capped_at_the_rmp_level() {
    for (folio, pages, follows, level) in [
        (PageSize::Size4K, 16 * MIB, true, PageSize::Size4K),
        (PageSize::Size2M, 16 * MIB, true, PageSize::Size2M),
        (PageSize::Size1G, GIB, true, PageSize::Size2M),
        (PageSize::Size1G, GIB, false, PageSize::Size1G),
    ] {
        let mut vm = gmem(folio, pages, Some(follows));
        fault_in(&mut vm, 0x205, true);
        let gm = vm.host.gmem.as_ref().unwrap();
        let (bound, fsize) = gm.pfn(0x205).unwrap();
        assert_eq!(fsize, folio, "{folio:?}");
        let (pfn, size) = leaf(&vm, 0x205).unwrap();
        assert_eq!((pfn, size), (bound, level), "{folio:?} follows={follows}");
        // Private GFNs map guest_memfd, not the VMA.
        assert_ne!(Some(pfn), vm.host.vma.pfn(0x205));
        let rmp_level = if folio == PageSize::Size4K { RmpPageSize::Size4K } else { RmpPageSize::Size2M };
        assert_eq!(vm.rmp.lookup(pfn), Some((true, rmp_level)), "{folio:?}");
        // A 1G leaf (npt_level_follows_rmp off) has all 512 of its 2M parts prepared.
        let updates = if level == PageSize::Size1G { 512 } else { 1 };
        assert_eq!(vm.kvm.stats.rmpupdate, updates, "{folio:?}");
        // Shared GFNs map the VMA (THP: 2M when the whole 2M range is shared).
        convert(&mut vm, 0x400, P2M, false, false);
        fault_in(&mut vm, 0x401, false);
        let shared = vm.host.vma.pfn(0x401);
        assert!(shared.is_some(), "{folio:?}");
        assert_eq!(
            leaf(&vm, 0x401).map(|(p, s)| (Some(p), s)),
            Some((shared, PageSize::Size2M)),
            "{folio:?}"
        );
    }
}

#[test]
fn gmem_mixed_attributes_force_4k_leaves() {
    for follows in [true, false] {
        let mut vm = gmem(PageSize::Size2M, 16 * MIB, Some(follows));
        convert(&mut vm, 0x201, 1, false, false);
        fault_in(&mut vm, 0x201, false);
        let shared = vm.host.vma.pfn(0x201).expect("the shared fault populates the VMA");
        assert_eq!(leaf(&vm, 0x201), Some((shared, PageSize::Size4K)), "follows={follows}");
        fault_in(&mut vm, 0x200, true);
        let (pfn, size) = leaf(&vm, 0x200).unwrap();
        assert_eq!(size, PageSize::Size4K, "follows={follows}");
        assert_eq!(Some(pfn), vm.host.gmem.as_ref().unwrap().pfn(0x200).map(|(p, _)| p));
        // The 2M folio's range is not uniformly private: sev_gmem_prepare goes 4K.
        assert_eq!(vm.rmp.lookup(pfn), Some((true, RmpPageSize::Size4K)), "follows={follows}");
        fault_in(&mut vm, 0x400, true);
        assert_eq!(leaf(&vm, 0x400).map(|(_, s)| s), Some(PageSize::Size2M), "follows={follows}");
    }
}

#[test]
fn a_psmash_zap_of_a_1g_leaf_is_a_needless_demotion() {
    let mut vm = legacy("rfc-host-split", VmaBacking::Hugetlbfs1g, GIB);
    convert(&mut vm, 0x200, P2M, true, true);
    assert_eq!(vm.rmp.lookup(Pfn(0x200)), Some((true, RmpPageSize::Size2M)));
    fault_in(&mut vm, 0x205, true);
    assert_eq!(leaf(&vm, 0x205), Some((Pfn(0x205), PageSize::Size1G)));
    let GuestOutcome::Npf(code) = pvalidate(&mut vm, 0x205, RmpPageSize::Size4K) else { panic!("no SIZEM") };
    vm.kvm.handle_npf(&mut vm.host, &mut vm.rmp, gpa(0x205), code).unwrap();
    // The zap of the 2M-aligned range takes the whole 1G leaf: its other 2M parts for nothing.
    assert_eq!(vm.kvm.npt.coverage(), [0, 0, 0]);
    assert_eq!(vm.kvm.stats.npt_demotions, demotions(&[("1g_4k", 1)]));
    assert_eq!(vm.kvm.stats.npt_demotions_needless, 1);
    assert_eq!(vm.kvm.stats.psmash, 1);
}

/// npt-demote demotes minimally on the PVALIDATE path too: a 4K PVALIDATE inside a 2M RMP entry
/// under a 1G leaf PSMASHes the entry and splits the 1G leaf into 512 2M leaves in place; nothing
/// is zapped. Coverage of the 1 GiB guest (262,144 pages): all of it still mapped at 2M. The
/// retried PVALIDATE goes through the 2M leaf, which is now over 4K entries (outgrown, so not an
/// invariant-3 violation with the cap on).
#[test]
fn npt_demote_demotes_minimally_after_a_pvalidate_psmash() {
    for follows in [false, true] {
        let mut vm = try_vm("npt-demote", VmaBacking::Hugetlbfs1g, None, GIB, Some(follows)).unwrap();
        convert(&mut vm, 0x200, P2M, true, true);
        fault_in(&mut vm, 0x205, true);
        let top = if follows { PageSize::Size2M } else { PageSize::Size1G };
        assert_eq!(leaf(&vm, 0x205), Some((Pfn(0x205), top)));
        let GuestOutcome::Npf(code) = pvalidate(&mut vm, 0x205, RmpPageSize::Size4K) else {
            panic!("no SIZEM")
        };
        vm.kvm.handle_npf(&mut vm.host, &mut vm.rmp, gpa(0x205), code).unwrap();
        assert_eq!(vm.kvm.stats.psmash, 1);
        assert_eq!(vm.kvm.stats.npt_demotions_needless, 0);
        assert_eq!(leaf(&vm, 0x205), Some((Pfn(0x205), PageSize::Size2M)));
        assert!(vm.kvm.npt.is_uncapped(Gfn(0x200)), "follows={follows}");
        if follows {
            // Capped at the 2M entry: a 2M leaf from the start, nothing to demote.
            assert_eq!(vm.kvm.stats.npt_demotions, demotions(&[]));
        } else {
            assert_eq!(vm.kvm.npt.coverage(), [0, GIB, 0]);
            assert_eq!(vm.kvm.stats.npt_demotions, demotions(&[("1g_2m", 1)]));
            assert_eq!(leaf(&vm, 0x400), Some((Pfn(0x400), PageSize::Size2M)));
        }
        assert_eq!(
            pvalidate(&mut vm, 0x205, RmpPageSize::Size4K),
            GuestOutcome::Done(PvalidateStatus::Changed)
        );
    }
}

#[test]
fn gmem_a_leaf_larger_than_the_faulting_entry_has_every_part_prepared() {
    // Without npt_level_follows_rmp a private 1G leaf can cover more than the 2M RMP entry the
    // fault prepared: KVM prepares every part it maps, so no part faults as unassigned.
    let mut vm = gmem(PageSize::Size1G, GIB, Some(false));
    fault_in(&mut vm, 0x205, true);
    assert_eq!(leaf(&vm, 0x405).map(|(_, s)| s), Some(PageSize::Size1G));
    let (pfn, _) = leaf(&vm, 0x405).unwrap();
    assert_eq!(vm.rmp.lookup(pfn), Some((true, RmpPageSize::Size2M)));
    // One 2M prepare per 2M part of the 1G leaf: 1 GiB / 2 MiB = 512.
    assert_eq!(vm.kvm.stats.rmpupdate, 512);
    // A 4K PVALIDATE inside a 2M entry is a SIZEM fault, resolved by PSMASH: progress, and no
    // implicit conversion or memory-fault exit.
    let GuestOutcome::Npf(code) = pvalidate(&mut vm, 0x405, RmpPageSize::Size4K) else { panic!("no #NPF") };
    assert!(vm.kvm.attrs.is_private(Gfn(0x405)) && code.enc() && code.sizem());
    vm.kvm.handle_npf(&mut vm.host, &mut vm.rmp, gpa(0x405), code).unwrap();
    assert_eq!(vm.kvm.stats.implicit_conversions, 0);
    assert_eq!(vm.kvm.stats.exits[exit::MEMORY_FAULT], 0);
    assert_eq!(vm.kvm.stats.psmash, 1);
    fault_in(&mut vm, 0x405, true);
    assert!(pvalidate(&mut vm, 0x405, RmpPageSize::Size4K).is_done());
}

// ---------------------------------------------------------------------------------------------
// rfc-v4: the RFC v4 code as posted

/// 27/40: every fault, shared ones included, is capped at the page size of the 2M-aligned RMP
/// entry. A never-converted THP region's entries are hypervisor-owned 4K entries, so a shared
/// access maps 4K; with the cap off (`npt_level_follows_rmp = false`) the host's 2M level wins.
#[test]
fn rfc_v4_caps_every_fault_at_the_rmp_page_size() {
    let mut vm = legacy("rfc-v4", VmaBacking::Thp, 16 * MIB);
    fault_in(&mut vm, 0x1ff, false);
    assert_eq!(leaf(&vm, 0x1ff), Some((Pfn(0x1ff), PageSize::Size4K)));
    let mut off = try_vm("rfc-v4", VmaBacking::Thp, None, 16 * MIB, Some(false)).unwrap();
    fault_in(&mut off, 0x1ff, false);
    assert_eq!(leaf(&off, 0x1ff), Some((Pfn(0x1ff), PageSize::Size2M)));
}

/// The PSC handler maps a missing GPA at ≤ the entry's level and the host level (no RMP cap on
/// that path), then converts at min(entry level, NPT leaf level), the lowered level sticking for
/// the rest of the entry. A 2M entry over an unmapped THP region: one 2M leaf, one 2M RMPUPDATE.
/// The same 2M entry after a shared access mapped its first page at 4K (the cap above): 512 4K
/// leaves and 512 4K RMPUPDATEs, so the region can never get a 2M entry this way.
#[test]
fn rfc_v4_psc_converts_at_the_npt_leaf_level() {
    let mut vm = legacy("rfc-v4", VmaBacking::Thp, 16 * MIB);
    convert(&mut vm, 0x200, P2M, true, true);
    assert_eq!(leaf(&vm, 0x200), Some((Pfn(0x200), PageSize::Size2M)));
    assert_eq!(vm.rmp.lookup(Pfn(0x3ff)), Some((true, RmpPageSize::Size2M)));
    assert_eq!(vm.kvm.stats.rmpupdate, 1);

    let mut vm = legacy("rfc-v4", VmaBacking::Thp, 16 * MIB);
    fault_in(&mut vm, 0x200, false);
    convert(&mut vm, 0x200, P2M, true, true);
    assert_eq!(vm.kvm.stats.rmpupdate, P2M);
    assert_eq!(vm.rmp.lookup(Pfn(0x3ff)), Some((true, RmpPageSize::Size4K)));
    assert_eq!(vm.kvm.npt.coverage(), [P2M, 0, 0]);
}

/// 38/40: a size mismatch over a 4K RMP entry (a 2M leaf left over 4K entries by a 4K
/// conversion, since the PSC does not zap) is resolved by a PSMASH whose failure is ignored and
/// the zap of the 2M-aligned 512 GFNs; the refault is capped at 4K. Never a host split.
#[test]
fn rfc_v4_resolves_a_size_mismatch_by_psmash_and_zap_never_by_a_host_split() {
    let mut vm = legacy("rfc-v4", VmaBacking::Thp, 16 * MIB);
    convert(&mut vm, 0x200, P2M, true, true);
    assert_eq!(pvalidate(&mut vm, 0x200, RmpPageSize::Size2M), GuestOutcome::Done(PvalidateStatus::Changed));
    // A 4K conversion to shared inside: PSMASH (1), RMPUPDATE at 4K; the 2M leaf stays.
    convert(&mut vm, 0x201, 1, false, false);
    assert_eq!(vm.kvm.stats.psmash, 1);
    assert_eq!(leaf(&vm, 0x205), Some((Pfn(0x205), PageSize::Size2M)));
    let code = fault(&mut vm, 0x205, true, AccessKind::Read).unwrap();
    assert!(code.sizem(), "{code:?}");
    // The second PSMASH fails (the entry is 4K) and is ignored; the 2M range is zapped.
    assert_eq!(vm.kvm.stats.psmash, 2);
    assert_eq!(leaf(&vm, 0x205), None);
    assert_eq!(vm.kvm.stats.npt_demotions, demotions(&[("2m_4k", 1)]));
    assert_eq!(vm.host.stats.host_splits, 0);
    fault_in(&mut vm, 0x205, true);
    assert_eq!(leaf(&vm, 0x205), Some((Pfn(0x205), PageSize::Size4K)));
    assert_eq!(access_fault(&vm, 0x205, true, AccessKind::Read), Err(GuestOutcome::Done(())));
}

// ---------------------------------------------------------------------------------------------
// gmem: what upstream only WARNs about

/// `sev_handle_rmp_fault`: a failed PSMASH whose entry is still 2M on re-lookup is a WARN
/// (`kvm_warnings`), and the zap of 512 GFNs from the faulting GFN happens anyway. To make the
/// PSMASH fail, another CPU's instruction is left in flight in the region (upstream's
/// `snp_rmptable_psmash` would retry FAIL_INUSE; the state only drives the WARN branch).
#[test]
fn gmem_a_failed_psmash_warns_and_still_zaps() {
    let mut vm = gmem(PageSize::Size2M, 16 * MIB, None);
    fault_in(&mut vm, 0x205, true);
    let (pfn, _) = vm.kvm.npt.translate(Gfn(0x200)).unwrap();
    assert_eq!(vm.rmp.lookup(pfn), Some((true, RmpPageSize::Size2M)));
    let GuestOutcome::Npf(code) = pvalidate(&mut vm, 0x205, RmpPageSize::Size4K) else { panic!("no SIZEM") };
    assert_eq!(vm.rmp.begin_in_flight(pfn), snpsim_defs::ReturnCode::Success);
    vm.kvm.handle_npf(&mut vm.host, &mut vm.rmp, gpa(0x205), code).unwrap();
    assert_eq!((vm.kvm.stats.psmash, vm.kvm.stats.kvm_warnings), (1, 1));
    assert_eq!(vm.rmp.lookup(pfn), Some((true, RmpPageSize::Size2M)));
    assert_eq!(leaf(&vm, 0x205), None);
}

/// `sev_gmem_invalidate`: a failed PSMASH before a 4K RMPUPDATE to shared is reported (WARN_ONCE)
/// and the RMPUPDATE still tried; it fails too (the page is inside a 2M entry: FAIL_OVERLAP or,
/// here, FAIL_INUSE), which is another WARN_ONCE, and the page is skipped, left assigned. Two
/// warnings, no error: the hole is punched. (The failures come from another CPU's instruction
/// left in flight, which upstream's PSMASH loop would retry; the state only drives the branches.)
#[test]
fn gmem_invalidate_warns_and_goes_on() {
    let mut vm = gmem(PageSize::Size2M, 16 * MIB, None);
    fault_in(&mut vm, 0x205, true);
    let (pfn, _) = vm.kvm.npt.translate(Gfn(0x205)).unwrap();
    let region = Geometry::X86.region_of(pfn);
    assert_eq!(vm.rmp.begin_in_flight(region), snpsim_defs::ReturnCode::Success);
    vm.kvm.punch_hole(&mut vm.host, &mut vm.rmp, Gfn(0x205), 1).unwrap();
    assert_eq!(vm.kvm.stats.kvm_warnings, 2);
    assert_eq!(vm.rmp.lookup(pfn).map(|(a, _)| a), Some(true));
}

/// Upstream PSMASHes on an RMP #NPF without SIZEM too when the entry is 2M: here an RMP #NPF on a
/// private access to a private GFN (the code a VMPL-permission or similar check would give: no
/// size mismatch, no implicit conversion) still has the handler split the 2M entry and zap.
#[test]
fn gmem_psmashes_a_2m_entry_on_an_rmp_fault_without_sizem() {
    let mut vm = gmem(PageSize::Size2M, 16 * MIB, None);
    fault_in(&mut vm, 0x205, true);
    let (pfn, _) = vm.kvm.npt.translate(Gfn(0x205)).unwrap();
    let code = NpfErrorCode::new().with_present(true).with_rmp(true).with_guest_final(true).with_enc(true);
    vm.kvm.handle_npf(&mut vm.host, &mut vm.rmp, gpa(0x205), code).unwrap();
    assert_eq!(vm.kvm.stats.psmash, 1);
    assert_eq!(vm.rmp.lookup(pfn), Some((true, RmpPageSize::Size4K)));
    assert_eq!(leaf(&vm, 0x205), None);
}
