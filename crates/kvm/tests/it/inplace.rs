//! `gmem-inplace` on the in-place guest_memfd (HugeTLB folios), driven through KVM's handlers on
//! the tiny geometry, where a 2M folio is 4 pages and a 1G folio 16: one file for shared and
//! private pages, folio splits and merges, refused conversions, SIGBUS on private pages, and the
//! order of unmap and split (with the `split-before-unmap` mutant reversing it).

use snpsim_defs::ghcb::{GHCB_MSR_PSC_REQ, GhcbMsrPscRequest, PscOp};
use snpsim_defs::{Gfn, NpfErrorCode, PageSize, Pfn, RmpPageSize};
use snpsim_host::{Host, HostError, HostVia, HostWriteOutcome, PrivateAccess};
use snpsim_hw::rmp::Rmp;
use snpsim_hw::{Geometry, Mutant, RmpConfig, RmpModel};
use snpsim_kvm::policy::GmemInplace;
use snpsim_kvm::psc::PscRange;
use snpsim_kvm::{Kvm, KvmConfig, KvmError, Policy};

const G: Geometry = Geometry::TINY;
const HOST_PAGES: u64 = 1024;

struct Vm {
    host: Host,
    rmp: Rmp,
    kvm: Kvm,
}

/// A `gmem-inplace` VM of `guest_pages` pages on an in-place file of `folio` folios.
fn vm(folio: PageSize, guest_pages: u64) -> Vm {
    let host = Host::new_in_place(G, HOST_PAGES, guest_pages, folio).unwrap();
    let rmp = Rmp::new(RmpConfig::tiny(HOST_PAGES));
    let policy: &'static dyn Policy = &GmemInplace;
    let config =
        KvmConfig { asid: 1, prefault_on_psc: false, npt_level_follows_rmp: policy.npt_level_follows_rmp() };
    let kvm = Kvm::new(config, policy, &host).unwrap();
    Vm { host, rmp, kvm }
}

/// Map `gfn` as a non-present #NPF of a `private` access does.
fn fault_in(vm: &mut Vm, gfn: u64, private: bool) -> Result<(), KvmError> {
    let code = NpfErrorCode::new().with_guest_final(true).with_enc(private);
    vm.kvm.handle_npf(&mut vm.host, &mut vm.rmp, Gfn::new(gfn).gpa(), code)
}

/// An MSR page-state change of one page; the GHCB error code the guest sees.
fn psc(vm: &mut Vm, gfn: u64, private: bool) -> u32 {
    let op = if private { PscOp::Private } else { PscOp::Shared };
    let req = GhcbMsrPscRequest::new().with_info(GHCB_MSR_PSC_REQ).with_gfn(Gfn::new(gfn)).with_op(op.raw());
    vm.kvm.handle_psc_msr(&mut vm.host, &mut vm.rmp, req).unwrap().error()
}

fn convert(vm: &mut Vm, gfn: u64, pages: u64, private: bool) {
    let range = PscRange { gfn: Gfn::new(gfn), pages, private, size_2m: false };
    vm.kvm.convert(&mut vm.host, &mut vm.rmp, range).unwrap();
}

fn leaf(vm: &Vm, gfn: u64) -> Option<(Pfn, PageSize)> {
    vm.kvm.npt.translate(Gfn::new(gfn))
}

fn file(vm: &Vm) -> &snpsim_host::GmemHugetlb {
    vm.host.gmem_hugetlb.as_ref().unwrap()
}

#[test]
fn the_policy_is_registered_and_needs_the_in_place_file() {
    assert!(snpsim_kvm::policy::ALL.iter().any(|p| p.name() == "gmem-inplace"));
    assert_eq!(
        snpsim_kvm::policy::by_name("gmem-inplace").map(snpsim_kvm::Policy::name),
        Some("gmem-inplace")
    );
    // A plain gmem host has no in-place file: the memslot is refused.
    let host = Host::new(G, HOST_PAGES, 32, snpsim_host::VmaBacking::Thp, Some(PageSize::Size2M)).unwrap();
    let config = KvmConfig { asid: 1, prefault_on_psc: false, npt_level_follows_rmp: true };
    assert!(matches!(Kvm::new(config, &GmemInplace, &host), Err(KvmError::Rejected { .. })));
    // And the other way round: upstream's gmem (no in-place conversion) refuses the in-place file.
    let in_place = Host::new_in_place(G, HOST_PAGES, 32, PageSize::Size2M).unwrap();
    assert!(matches!(Kvm::new(config, &snpsim_kvm::policy::Gmem, &in_place), Err(KvmError::Rejected { .. })));
}

/// A shared page is the same frame its private state had, in the same folio: converting it splits
/// the folio, costs no allocation, and the host reaches it while its private neighbours SIGBUS.
#[test]
fn shared_and_private_pages_are_one_file_and_one_pool() {
    let mut vm = vm(PageSize::Size1G, 32);
    fault_in(&mut vm, 5, true).unwrap();
    // The 1G folio 0..16 is allocated; first use prepared GFNs 4..8 with one 2M RMPUPDATE (folio
    // ≥ 2M, region unassigned, all private), so the RMP cap maps a 2M leaf over 4..8.
    let (pfn5, size) = leaf(&vm, 5).unwrap();
    assert_eq!(size, PageSize::Size2M);
    let used = vm.host.memory.used_pages();
    assert_eq!(file(&vm).allocated_pages, 16);

    assert_eq!(psc(&mut vm, 5, false), 0);
    assert!(!vm.kvm.attrs.is_private(Gfn::new(5)) && file(&vm).is_shared(5));
    // The folio split once; KVM unmapped the whole folio before; GFN 5 went back to the
    // hypervisor after a PSMASH of its 2M entry, and its neighbours stay assigned at 4K.
    assert_eq!(file(&vm).stats.folio_splits, 1);
    assert_eq!(leaf(&vm, 4), None);
    assert_eq!(vm.kvm.stats.psmash, 1);
    assert_eq!(vm.rmp.lookup(pfn5), Some((false, RmpPageSize::Size4K)));
    assert_eq!(vm.rmp.lookup(Pfn::new(pfn5.raw() + 1)), Some((true, RmpPageSize::Size4K)));

    // The shared fault maps the same frame at 4K, and nothing was allocated for it.
    fault_in(&mut vm, 5, false).unwrap();
    assert_eq!(leaf(&vm, 5), Some((pfn5, PageSize::Size4K)));
    assert_eq!(vm.host.memory.used_pages(), used);

    // The VMM writes the shared page; its write to private GFN 6 is SIGBUS, named.
    assert_eq!(vm.host.write_via_gmem(&vm.rmp, 5, HostVia::Vmm), HostWriteOutcome::Done);
    assert_eq!(vm.host.write_via_gmem(&vm.rmp, 6, HostVia::Vmm), HostWriteOutcome::Sigbus);
    assert_eq!(file(&vm).first_private_access, Some(PrivateAccess { offset: 6, via: HostVia::Vmm }));
    // No RMP #PF handling ran: no host split.
    assert_eq!((vm.host.stats.sigbus, vm.host.stats.host_splits), (1, 0));

    // Back to private: the folio's pages are all private again and it merges.
    assert_eq!(psc(&mut vm, 5, true), 0);
    assert_eq!(file(&vm).stats.folio_merges, 1);
    assert_eq!(vm.host.gmem_frame(5), Some((pfn5, PageSize::Size1G)));
    // No preparation tracking: the private fault makes the page guest-owned again, at 4K since
    // its 2M region still holds GFNs 4, 6 and 7 assigned at 4K; the RMP cap keeps the leaf 4K.
    fault_in(&mut vm, 5, true).unwrap();
    assert_eq!(vm.rmp.lookup(pfn5), Some((true, RmpPageSize::Size4K)));
    assert_eq!(leaf(&vm, 5), Some((pfn5, PageSize::Size4K)));
}

/// After a whole 2M folio went shared and back, the next private fault prepares it with one 2M
/// RMPUPDATE and maps it with one 2M leaf: the merge restores what a huge leaf needs.
#[test]
fn a_folio_made_private_again_is_mapped_huge_again() {
    let mut vm = vm(PageSize::Size2M, 8);
    fault_in(&mut vm, 0, true).unwrap();
    assert_eq!(leaf(&vm, 0).map(|l| l.1), Some(PageSize::Size2M));
    convert(&mut vm, 0, 4, false);
    // The whole 2M entry went shared with one 2M RMPUPDATE: no PSMASH.
    assert_eq!(vm.kvm.stats.psmash, 0);
    assert!(!vm.kvm.huge_capable(&vm.host, &vm.rmp, Gfn::new(0)));
    convert(&mut vm, 0, 4, true);
    assert!(vm.kvm.huge_capable(&vm.host, &vm.rmp, Gfn::new(0)));
    fault_in(&mut vm, 2, true).unwrap();
    assert_eq!(leaf(&vm, 2).map(|l| l.1), Some(PageSize::Size2M));
    let s = file(&vm).stats;
    assert_eq!((s.folio_splits, s.folio_merges), (1, 1));
}

/// A page with an extra reference refuses the conversion: the guest's PSC fails, nothing changed,
/// and once the reference is dropped the same PSC succeeds.
#[test]
fn a_referenced_page_refuses_the_conversion_and_the_guest_is_told() {
    let mut vm = vm(PageSize::Size2M, 8);
    vm.host.gmem_hugetlb.as_mut().unwrap().get_ref(1).unwrap();
    assert_ne!(psc(&mut vm, 1, false), 0);
    assert!(vm.kvm.attrs.is_private(Gfn::new(1)));
    let f = file(&vm);
    assert!(!f.is_shared(1) && !f.is_split(1));
    assert_eq!((f.stats.conversions_refused, f.stats.folio_splits), (1, 0));
    assert_eq!(vm.kvm.stats.psc_failed, 1);
    // An implicit conversion has no request to fail: the error reaches the VMM.
    assert_eq!(
        fault_in(&mut vm, 1, false),
        Err(KvmError::Host(HostError::ExtraReference { offset: 1, refs: 1 }))
    );
    vm.host.gmem_hugetlb.as_mut().unwrap().put_ref(1).unwrap();
    assert_eq!(psc(&mut vm, 1, false), 0);
    // Two refusals: the PSC's and the implicit conversion's.
    assert_eq!(file(&vm).stats.conversions_refused, 2);
}

/// KVM never maps larger than the folio: in a split folio even private pages map at 4K.
#[test]
fn a_split_folio_is_mapped_at_4k() {
    let mut vm = vm(PageSize::Size2M, 8);
    convert(&mut vm, 1, 1, false);
    fault_in(&mut vm, 2, true).unwrap();
    assert_eq!(leaf(&vm, 2).map(|l| l.1), Some(PageSize::Size4K));
    // The other folio is whole: 2M.
    fault_in(&mut vm, 6, true).unwrap();
    assert_eq!(leaf(&vm, 6).map(|l| l.1), Some(PageSize::Size2M));
    assert!(vm.kvm.leaves_larger_than_folio(&vm.host).is_empty());
}

/// A 1G folio mapped by two 2M leaves (the RMP caps private leaves at 2M); one page of it goes
/// shared. In order (unmap, then split) KVM unmaps the whole folio and no leaf outlives it; with
/// the split first, the unmap covers the split page only and the other 2M leaf stays over a folio
/// now mapped at 4K.
#[test]
fn split_before_unmap_leaves_a_leaf_larger_than_its_folio() {
    const { assert!(snpsim_hw::mutant::HOOKS, "kvm's tests build the mutant hooks") };
    for mutant in [None, Some(Mutant::SplitBeforeUnmap)] {
        let mut vm = vm(PageSize::Size1G, 16);
        vm.kvm.set_mutant(mutant);
        fault_in(&mut vm, 1, true).unwrap();
        fault_in(&mut vm, 9, true).unwrap();
        assert_eq!(leaf(&vm, 9).map(|l| l.1), Some(PageSize::Size2M));
        convert(&mut vm, 1, 1, false);
        let larger = vm.kvm.leaves_larger_than_folio(&vm.host);
        if mutant.is_none() {
            assert!(larger.is_empty());
            assert_eq!(leaf(&vm, 9), None);
        } else {
            // The leaf over GFNs 8..12 survived the conversion.
            assert_eq!(larger, vec![(Gfn::new(8), PageSize::Size2M)]);
        }
    }
}

/// Between the two steps of a conversion — where another vCPU can run — the window exists with the
/// mutant even when the final unmap closes it (a 2M folio under one 2M leaf), and never without.
#[test]
fn the_window_between_split_and_unmap_is_open_only_with_the_mutant() {
    for mutant in [None, Some(Mutant::SplitBeforeUnmap)] {
        let mut vm = vm(PageSize::Size2M, 8);
        vm.kvm.set_mutant(mutant);
        fault_in(&mut vm, 0, true).unwrap();
        let range = PscRange { gfn: Gfn::new(1), pages: 1, private: false, size_2m: false };
        let step = vm.kvm.begin_convert_in_place(&mut vm.host, range).unwrap();
        let between = vm.kvm.leaves_larger_than_folio(&vm.host);
        vm.kvm.finish_convert_in_place(&mut vm.host, &mut vm.rmp, step).unwrap();
        assert!(vm.kvm.leaves_larger_than_folio(&vm.host).is_empty());
        let expect = if mutant.is_some() { vec![(Gfn::new(0), PageSize::Size2M)] } else { vec![] };
        assert_eq!(between, expect, "{mutant:?}");
    }
}

/// Without the mutant, no sequence of conversions and faults ever leaves a leaf larger than its
/// folio: 400 pseudo-random steps over a 32-page guest on 1G folios, checked after each step and
/// between the two steps of every conversion.
#[test]
fn no_leaf_is_ever_larger_than_its_folio_in_order() {
    let mut vm = vm(PageSize::Size1G, 32);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    for _ in 0..400 {
        let gfn = next(32);
        // One step in four faults, two convert to private, one to shared: so folios empty of
        // shared pages again and merge.
        match next(4) {
            0 => {
                let private = vm.kvm.attrs.is_private(Gfn::new(gfn));
                if vm.kvm.npt.translate(Gfn::new(gfn)).is_none() {
                    fault_in(&mut vm, gfn, private).unwrap();
                }
            }
            op => {
                let pages = (1 + next(8)).min(32 - gfn);
                let range = PscRange { gfn: Gfn::new(gfn), pages, private: op != 3, size_2m: false };
                let step = vm.kvm.begin_convert_in_place(&mut vm.host, range).unwrap();
                assert!(vm.kvm.leaves_larger_than_folio(&vm.host).is_empty());
                vm.kvm.finish_convert_in_place(&mut vm.host, &mut vm.rmp, step).unwrap();
            }
        }
        assert!(vm.kvm.leaves_larger_than_folio(&vm.host).is_empty());
        // A shared page is never guest-owned in the RMP once its conversion finished.
        for g in 0..32 {
            if !vm.kvm.attrs.is_private(Gfn::new(g)) {
                assert!(!vm.host.gmem_page_assigned(&vm.rmp, g), "GFN {g}");
            }
        }
    }
    // Both splits and merges happened along the way.
    let s = file(&vm).stats;
    assert!(s.folio_splits > 0 && s.folio_merges > 0, "{s:?}");
}
