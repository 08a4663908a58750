//! Page-state changes through `Kvm::handle_psc_ghcb` and `Kvm::handle_psc_msr` on a real host and
//! RMP: the NAE buffer checks, resume, the legacy RMPUPDATE sizes and the gmem-era conversion.

use snpsim_defs::ghcb::{
    GHCB_MSR_PSC_REQ, GHCB_MSR_PSC_RESP, GhcbMsrPscRequest, PscBuffer, PscEntry, PscHeader, PscOp,
    VMGEXIT_PSC_ERROR_GENERIC, VMGEXIT_PSC_ERROR_INVALID_ENTRY, VMGEXIT_PSC_ERROR_INVALID_HDR,
};
use snpsim_defs::{Gfn, NpfErrorCode, PageSize, Pfn, RmpPageSize};
use snpsim_host::{Host, VmaBacking};
use snpsim_hw::rmp::Rmp;
use snpsim_hw::{Geometry, RmpConfig, RmpModel};
use snpsim_kvm::stats::exit;
use snpsim_kvm::{Kvm, KvmConfig};

const MIB: u64 = 256;
const GIB: u64 = 1024 * MIB;
const P2M: u64 = 512;

struct Vm {
    host: Host,
    rmp: Rmp,
    kvm: Kvm,
}

fn vm(name: &str, backing: VmaBacking, folio: Option<PageSize>, guest_pages: u64, prefault: bool) -> Vm {
    let p = snpsim_kvm::policy::by_name(name).unwrap();
    let host_pages = 4 * guest_pages;
    let host = Host::new(Geometry::X86, host_pages, guest_pages, backing, folio).unwrap();
    let rmp = Rmp::new(RmpConfig::x86(host_pages));
    let config =
        KvmConfig { asid: 1, prefault_on_psc: prefault, npt_level_follows_rmp: p.npt_level_follows_rmp() };
    let kvm = Kvm::new(config, p, &host).unwrap();
    Vm { host, rmp, kvm }
}

fn legacy(backing: VmaBacking) -> Vm {
    let pages = if backing == VmaBacking::Hugetlbfs1g { GIB } else { 16 * MIB };
    vm("npt-demote", backing, None, pages, false)
}

fn entry(gfn: u64, op: PscOp, big: bool) -> PscEntry {
    PscEntry::new().with_gfn(gfn).with_op(op.raw()).with_page_size(big)
}

fn buffer(entries: Vec<PscEntry>) -> PscBuffer {
    let end = entries.len() as u16 - 1;
    PscBuffer { header: PscHeader::new().with_end_entry(end), entries }
}

impl Vm {
    fn ghcb(&mut self, buf: &mut PscBuffer) -> u64 {
        self.kvm.handle_psc_ghcb(&mut self.host, &mut self.rmp, buf).unwrap()
    }

    fn ghcb_one(&mut self, gfn: u64, op: PscOp, big: bool) -> u64 {
        self.ghcb(&mut buffer(vec![entry(gfn, op, big)]))
    }

    fn msr(&mut self, gfn: u64, op: PscOp) -> u32 {
        let req = GhcbMsrPscRequest::new().with_info(GHCB_MSR_PSC_REQ).with_gfn(gfn).with_op(op.raw());
        let resp = self.kvm.handle_psc_msr(&mut self.host, &mut self.rmp, req).unwrap();
        assert_eq!(resp.info(), GHCB_MSR_PSC_RESP);
        resp.error()
    }

    fn lookup(&self, pfn: u64) -> Option<(bool, RmpPageSize)> {
        self.rmp.lookup(Pfn(pfn))
    }

    fn fault_in(&mut self, gfn: u64, private: bool) {
        let code = NpfErrorCode::new().with_guest_final(true).with_enc(private);
        self.kvm.handle_npf(&mut self.host, &mut self.rmp, Gfn(gfn).gpa(), code).unwrap();
    }

    fn gmem_pfn(&self, gfn: u64) -> Option<(Pfn, PageSize)> {
        self.host.gmem.as_ref().unwrap().pfn(gfn)
    }
}

const PRIVATE_4K: Option<(bool, RmpPageSize)> = Some((true, RmpPageSize::Size4K));
const PRIVATE_2M: Option<(bool, RmpPageSize)> = Some((true, RmpPageSize::Size2M));
const SHARED: Option<(bool, RmpPageSize)> = Some((false, RmpPageSize::Size4K));

// ---------------------------------------------------------------------------------------------
// Buffer validation

#[test]
fn end_entry_of_253_or_beyond_the_buffer_is_an_invalid_header() {
    let mut v = legacy(VmaBacking::Anon4k);
    let mut b = buffer((0..254).map(|g| entry(g, PscOp::Private, false)).collect());
    assert_eq!(b.header.end_entry(), 253);
    assert_eq!(v.ghcb(&mut b), VMGEXIT_PSC_ERROR_INVALID_HDR);
    let mut b = buffer(vec![entry(1, PscOp::Private, false)]);
    b.header.set_end_entry(1);
    assert_eq!(v.ghcb(&mut b), VMGEXIT_PSC_ERROR_INVALID_HDR);
    assert_eq!(b.header.cur_entry(), 0);
    assert_eq!(v.kvm.stats.rmpupdate, 0);
    assert_eq!(v.kvm.stats.psc_failed, 2);
    assert_eq!(v.kvm.stats.psc_requests, 2);
    assert_eq!(v.kvm.stats.exits[exit::VMGEXIT_PSC], 2);
    assert_eq!(v.lookup(0), SHARED);
    // 253 entries (end_entry 252) is the largest valid request.
    let mut b = buffer((0..253).map(|g| entry(g, PscOp::Private, false)).collect());
    assert_eq!(v.ghcb(&mut b), 0);
    assert_eq!(b.header.cur_entry(), 253);
    assert_eq!(v.kvm.stats.rmpupdate, 253);
    assert_eq!(v.kvm.stats.psc_pages, 253);
    assert_eq!(v.lookup(252), PRIVATE_4K);
    assert_eq!(v.lookup(253), SHARED);
}

#[test]
fn unaligned_2m_gfn_and_cur_page_beyond_the_entry_are_invalid_entries() {
    let mut v = legacy(VmaBacking::Thp);
    for bad in [
        entry(0x201, PscOp::Private, true),
        entry(0x10, PscOp::Private, false).with_cur_page(2),
        entry(0x200, PscOp::Private, true).with_cur_page(513),
    ] {
        let mut b = buffer(vec![bad]);
        assert_eq!(v.ghcb(&mut b), VMGEXIT_PSC_ERROR_INVALID_ENTRY, "{bad:?}");
        assert_eq!(b.header.cur_entry(), 0);
    }
    assert_eq!(v.kvm.stats.rmpupdate, 0);
    assert_eq!(v.kvm.stats.psc_failed, 3);
    // Entries before the bad one are done and the header says so.
    let mut b = buffer(vec![entry(0x10, PscOp::Private, false), entry(0x401, PscOp::Private, true)]);
    assert_eq!(v.ghcb(&mut b), VMGEXIT_PSC_ERROR_INVALID_ENTRY);
    assert_eq!(b.header.cur_entry(), 1);
    assert_eq!(b.entries[0].cur_page(), 1);
    assert_eq!(v.lookup(0x10), PRIVATE_4K);
    assert_eq!(v.lookup(0x401), SHARED);
    // An entry already complete (cur_page = 512 of a 2M entry) is skipped, not an error.
    let mut b = buffer(vec![entry(0x200, PscOp::Private, true).with_cur_page(512)]);
    assert_eq!(v.ghcb(&mut b), 0);
    assert_eq!(v.lookup(0x200), SHARED);
    assert_eq!(v.kvm.stats.rmpupdate, 1);
}

/// `snp_begin_psc`'s default branch: an NAE entry whose operation is neither private nor shared
/// (0 and 5–15 are undefined by the GHCB spec) is marked complete without action, and the request
/// succeeds; the MSR protocol (`snp_begin_psc_msr`) still answers such a request with an error.
#[test]
fn unknown_operations_complete_without_action_on_the_nae_path_and_fail_on_the_msr_path() {
    let mut v = legacy(VmaBacking::Anon4k);
    for op in [0u8, 5, 15] {
        let mut b = buffer(vec![PscEntry::new().with_gfn(0x10).with_op(op)]);
        assert_eq!(v.ghcb(&mut b), 0, "op {op}");
        assert_eq!((b.header.cur_entry(), b.entries[0].cur_page()), (1, 1), "op {op}");
        let req = GhcbMsrPscRequest::new().with_info(GHCB_MSR_PSC_REQ).with_gfn(0x10).with_op(op);
        assert_eq!(v.kvm.handle_psc_msr(&mut v.host, &mut v.rmp, req).unwrap().error(), u32::MAX);
    }
    assert_eq!(v.kvm.stats.rmpupdate, 0);
    // Three ops, each failed once over MSR only.
    assert_eq!(v.kvm.stats.psc_failed, 3);
    assert_eq!(v.lookup(0x10), SHARED);
}

#[test]
fn psmash_and_unsmash_are_acknowledged_without_any_rmp_instruction() {
    let mut v = legacy(VmaBacking::Thp);
    assert_eq!(v.ghcb_one(0x200, PscOp::Private, true), 0);
    assert_eq!(v.kvm.stats.rmpupdate, 1);
    let mut b = buffer(vec![
        entry(0x200, PscOp::Psmash, true),
        entry(0x400, PscOp::Unsmash, true),
        entry(0x600, PscOp::Psmash, false),
    ]);
    assert_eq!(v.ghcb(&mut b), 0);
    assert_eq!(b.header.cur_entry(), 3);
    assert_eq!(b.entries.iter().map(PscEntry::cur_page).collect::<Vec<_>>(), [512, 512, 1]);
    assert_eq!((v.kvm.stats.rmpupdate, v.kvm.stats.psmash), (1, 0));
    assert_eq!(v.lookup(0x205), PRIVATE_2M);
    assert_eq!(v.lookup(0x400), SHARED);
    assert_eq!(v.kvm.stats.psc_failed, 0);
}

#[test]
fn a_resumed_buffer_converts_exactly_the_remaining_pages() {
    let mut v = legacy(VmaBacking::Thp);
    let mut b = buffer(vec![
        entry(0x10, PscOp::Private, false),
        entry(0x200, PscOp::Private, true).with_cur_page(0x100),
        entry(0x500, PscOp::Private, false),
    ]);
    b.header.set_cur_entry(1);
    assert_eq!(v.ghcb(&mut b), 0);
    assert_eq!(b.header.cur_entry(), 3);
    assert_eq!(b.entries[1].cur_page(), 512);
    assert_eq!(b.entries[2].cur_page(), 1);
    // Entry 0 was done before; of entry 1 only pages 0x100.. remain, converted at 4K.
    assert_eq!(v.lookup(0x10), SHARED);
    for g in 0x200..0x300 {
        assert_eq!(v.lookup(g), SHARED, "GFN {g:#x}");
    }
    for g in 0x300..0x400 {
        assert_eq!(v.lookup(g), PRIVATE_4K, "GFN {g:#x}");
        let e = v.rmp.rmpread(Pfn(g)).unwrap();
        assert_eq!((e.gpa(), e.asid()), (g << 12, 1));
    }
    assert_eq!(v.lookup(0x500), PRIVATE_4K);
    assert_eq!(v.lookup(0x501), SHARED);
    // 0x100 pages of entry 1 (0x300..0x400) and the one of entry 2.
    assert_eq!(v.kvm.stats.rmpupdate, 0x101);
    assert_eq!(v.kvm.stats.psc_pages, 0x101);
    assert_eq!(v.kvm.stats.psc_requests, 1);
}

// ---------------------------------------------------------------------------------------------
// Legacy RMPUPDATE sizes

#[test]
fn legacy_2m_request_on_a_2m_host_mapping_is_one_2m_rmpupdate() {
    for backing in [VmaBacking::Thp, VmaBacking::Hugetlbfs2m, VmaBacking::Hugetlbfs1g] {
        let mut v = legacy(backing);
        assert_eq!(v.ghcb_one(0x200, PscOp::Private, true), 0, "{backing:?}");
        assert_eq!(v.kvm.stats.rmpupdate, 1, "{backing:?}");
        assert_eq!(v.kvm.stats.psc_pages, P2M, "{backing:?}");
        assert_eq!(v.lookup(0x200), PRIVATE_2M, "{backing:?}");
        assert_eq!(v.lookup(0x3ff), PRIVATE_2M, "{backing:?}");
        assert_eq!(v.lookup(0x400), SHARED, "{backing:?}");
        assert_eq!(v.rmp.rmpread(Pfn(0x3ff)).unwrap().gpa(), 0x3f_f000, "{backing:?}");
        assert_eq!(v.host.stats.direct_map_splits, 0, "{backing:?}");
        // Two contiguous 2M entries: two 2M RMPUPDATEs.
        let mut b = buffer(vec![entry(0x400, PscOp::Private, true), entry(0x600, PscOp::Private, true)]);
        assert_eq!(v.ghcb(&mut b), 0);
        assert_eq!(v.kvm.stats.rmpupdate, 3, "{backing:?}");
        assert_eq!(v.lookup(0x7ff), PRIVATE_2M, "{backing:?}");
        // And back to shared: one 2M RMPUPDATE, no PSMASH.
        assert_eq!(v.ghcb_one(0x200, PscOp::Shared, true), 0);
        assert_eq!((v.kvm.stats.rmpupdate, v.kvm.stats.psmash), (4, 0), "{backing:?}");
        assert_eq!(v.lookup(0x3ff), SHARED, "{backing:?}");
    }
}

#[test]
fn legacy_2m_request_over_a_partly_private_region_goes_4k_and_skips_done_pages() {
    let mut v = legacy(VmaBacking::Thp);
    assert_eq!(v.msr(0x205, PscOp::Private), 0);
    assert_eq!(v.ghcb_one(0x200, PscOp::Private, true), 0);
    // One 4K update for the MSR request, then 511 for the pages not yet private.
    assert_eq!(v.kvm.stats.rmpupdate, 512);
    assert_eq!(v.kvm.stats.psc_pages, 513);
    assert_eq!(v.lookup(0x200), PRIVATE_4K);
    assert_eq!(v.lookup(0x205), PRIVATE_4K);
    assert_eq!(v.lookup(0x3ff), PRIVATE_4K);
    assert_eq!(v.kvm.stats.psmash, 0);
}

#[test]
fn legacy_2m_request_on_anon_4k_is_512_4k_rmpupdates() {
    let mut v = legacy(VmaBacking::Anon4k);
    assert_eq!(v.ghcb_one(0x200, PscOp::Private, true), 0);
    assert_eq!(v.kvm.stats.rmpupdate, P2M);
    for g in 0x200..0x400 {
        assert_eq!(v.lookup(g), PRIVATE_4K, "GFN {g:#x}");
    }
    // The host's 2M direct-map leaf over those frames was split once.
    assert_eq!(v.host.stats.direct_map_splits, 1);
}

#[test]
fn a_4k_change_to_shared_inside_a_2m_entry_psmashes_first() {
    let mut v = legacy(VmaBacking::Thp);
    assert_eq!(v.ghcb_one(0x200, PscOp::Private, true), 0);
    assert_eq!(v.msr(0x205, PscOp::Shared), 0);
    // The 2M RMPUPDATE to private, then PSMASH and the one 4K RMPUPDATE to shared.
    assert_eq!(v.kvm.stats.psmash, 1);
    assert_eq!(v.kvm.stats.rmpupdate, 2);
    assert_eq!(v.lookup(0x205), SHARED);
    assert_eq!(v.lookup(0x204), PRIVATE_4K);
    assert_eq!(v.lookup(0x200), PRIVATE_4K);
    assert_eq!(v.lookup(0x3ff), PRIVATE_4K);
    assert_eq!(v.kvm.stats.exits[exit::VMGEXIT_PSC_MSR], 1);
    assert_eq!(v.kvm.stats.exits[exit::HYPERCALL], 0);
}

#[test]
fn legacy_psc_does_not_touch_the_npt() {
    let mut v = legacy(VmaBacking::Thp);
    v.fault_in(0x200, false);
    assert_eq!(v.msr(0x205, PscOp::Private), 0);
    assert_eq!(v.kvm.npt.translate(Gfn(0x205)), Some((Pfn(0x205), PageSize::Size2M)));
    assert_eq!(v.kvm.stats.demotions_total(), 0);
}

// ---------------------------------------------------------------------------------------------
// gmem era

fn gmem2m(prefault: bool) -> Vm {
    vm("gmem", VmaBacking::Thp, Some(PageSize::Size2M), 16 * MIB, prefault)
}

#[test]
fn gmem_psc_to_shared_exits_sets_attributes_zaps_and_punches_a_hole() {
    let mut v = gmem2m(false);
    v.fault_in(0x205, true);
    v.fault_in(0x400, true);
    let (folio, _) = v.gmem_pfn(0x200).unwrap();
    assert_eq!(v.lookup(folio.raw()), PRIVATE_2M);
    assert_eq!(v.kvm.npt.translate(Gfn(0x205)), Some((Pfn(folio.raw() + 5), PageSize::Size2M)));
    assert_eq!(v.ghcb_one(0x205, PscOp::Shared, false), 0);
    assert_eq!(v.kvm.stats.exits[exit::VMGEXIT_PSC], 1);
    assert_eq!(v.kvm.stats.exits[exit::HYPERCALL], 1);
    assert!(!v.kvm.attrs.is_private(Gfn(0x205)));
    assert!(v.kvm.attrs.is_private(Gfn(0x204)));
    // The attribute change zapped the NPT range: the 2M leaf over it is gone, the next one stays.
    assert_eq!(v.kvm.npt.translate(Gfn(0x204)), None);
    assert!(v.kvm.npt.translate(Gfn(0x400)).is_some());
    // The hole split the 2M folio into 4K folios and freed one; its page is shared again,
    // PSMASHed out of the 2M entry.
    let gm = v.host.gmem.as_ref().unwrap();
    assert_eq!(gm.pfn(0x205), None);
    assert_eq!(gm.pfn(0x204), Some((Pfn(folio.raw() + 4), PageSize::Size4K)));
    // 512 4K folios from the split, less the one punched out.
    assert_eq!(gm.folio_count(PageSize::Size4K), 511);
    assert_eq!(gm.folio_count(PageSize::Size2M), 1);
    assert_eq!(v.kvm.stats.psmash, 1);
    assert_eq!(v.lookup(folio.raw() + 5), SHARED);
    assert_eq!(v.lookup(folio.raw() + 4), PRIVATE_4K);
    // The two fault-ins prepared a 2M folio each (2), the hole made one page shared (3).
    assert_eq!(v.kvm.stats.rmpupdate, 3);
    // A whole 2M folio goes back with one 2M RMPUPDATE.
    let (folio2, _) = v.gmem_pfn(0x400).unwrap();
    assert_eq!(v.ghcb_one(0x400, PscOp::Shared, true), 0);
    assert_eq!(v.lookup(folio2.raw()), SHARED);
    assert_eq!(v.lookup(folio2.raw() + 511), SHARED);
    assert_eq!((v.kvm.stats.rmpupdate, v.kvm.stats.psmash), (4, 1));
    assert_eq!(v.host.gmem.as_ref().unwrap().folio_count(PageSize::Size2M), 0);
    assert_eq!(v.kvm.npt.translate(Gfn(0x400)), None);
    assert_eq!(v.kvm.stats.exits[exit::HYPERCALL], 2);
    // The 4K request and the 2M one: 1 + 512 pages.
    assert_eq!(v.kvm.stats.psc_pages, 513);
}

#[test]
fn gmem_psc_to_private_with_prefault_maps_without_an_npf_exit() {
    let mut v = gmem2m(true);
    assert_eq!(v.ghcb_one(0x400, PscOp::Shared, true), 0);
    assert!(!v.kvm.attrs.is_private(Gfn(0x5ff)));
    assert_eq!(v.ghcb_one(0x400, PscOp::Private, true), 0);
    assert!(v.kvm.attrs.is_private(Gfn(0x5ff)));
    let (folio, size) = v.gmem_pfn(0x400).unwrap();
    assert_eq!(size, PageSize::Size2M);
    assert_eq!(v.kvm.npt.translate(Gfn(0x400)), Some((folio, PageSize::Size2M)));
    assert_eq!(v.lookup(folio.raw()), PRIVATE_2M);
    assert_eq!(v.kvm.stats.npf, 0);
    assert_eq!(v.kvm.stats.exits[exit::NPF], 0);
    // One exit to the VMM per request; the one RMPUPDATE is the prefault's 2M prepare (the
    // conversion to shared punched a hole where no folio had been allocated yet).
    assert_eq!(v.kvm.stats.exits[exit::HYPERCALL], 2);
    assert_eq!(v.kvm.stats.rmpupdate, 1);
}

#[test]
fn gmem_msr_psc_is_forwarded_to_the_vmm() {
    let mut v = vm("gmem", VmaBacking::Thp, Some(PageSize::Size4K), 16 * MIB, false);
    v.fault_in(0x10, true);
    let (pfn, _) = v.gmem_pfn(0x10).unwrap();
    assert_eq!(v.lookup(pfn.raw()), PRIVATE_4K);
    assert_eq!(v.msr(0x10, PscOp::Shared), 0);
    assert_eq!(v.kvm.stats.exits[exit::VMGEXIT_PSC_MSR], 1);
    assert_eq!(v.kvm.stats.exits[exit::HYPERCALL], 1);
    assert!(!v.kvm.attrs.is_private(Gfn(0x10)));
    assert_eq!(v.gmem_pfn(0x10), None);
    assert_eq!(v.lookup(pfn.raw()), SHARED);
    assert_eq!(v.kvm.npt.translate(Gfn(0x10)), None);
}

#[test]
fn punch_hole_frees_private_pages_and_keeps_shared_leaves() {
    let mut v = vm("gmem", VmaBacking::Thp, Some(PageSize::Size4K), 16 * MIB, false);
    for g in 0x10..0x14 {
        v.fault_in(g, true);
    }
    assert_eq!(v.msr(0x12, PscOp::Shared), 0);
    v.fault_in(0x12, false);
    let shared = v.host.vma.pfn(0x12).expect("the shared fault populates the VMA");
    assert_eq!(v.kvm.npt.translate(Gfn(0x12)), Some((shared, PageSize::Size4K)));
    let freed: Vec<Pfn> = [0x10, 0x11, 0x13].iter().map(|&g| v.gmem_pfn(g).unwrap().0).collect();
    v.kvm.punch_hole(&mut v.host, &mut v.rmp, Gfn(0x10), 4).unwrap();
    for (g, pfn) in [0x10, 0x11, 0x13].into_iter().zip(freed) {
        assert_eq!(v.gmem_pfn(g), None);
        assert_eq!(v.lookup(pfn.raw()), SHARED);
        assert_eq!(v.kvm.npt.translate(Gfn(g)), None);
    }
    // The shared GFN's leaf maps the VMA and survives the hole.
    assert_eq!(v.kvm.npt.translate(Gfn(0x12)), Some((shared, PageSize::Size4K)));
    // Four pages made private, one shared by the PSC's own hole, three by this one.
    assert_eq!(v.kvm.stats.rmpupdate, 4 + 1 + 3);
}

#[test]
fn fail_psc_hugetlbfs_answers_a_ghcb_private_request_with_a_generic_error() {
    let mut v = vm("fail-psc-hugetlbfs", VmaBacking::Hugetlbfs2m, None, 16 * MIB, false);
    let mut b = buffer(vec![entry(0x200, PscOp::Private, true)]);
    assert_eq!(v.ghcb(&mut b), VMGEXIT_PSC_ERROR_GENERIC);
    assert_eq!(b.header.cur_entry(), 0);
    assert_eq!(v.kvm.stats.psc_failed, 1);
    assert_eq!(v.kvm.stats.rmpupdate, 0);
    assert_eq!(v.lookup(0x200), SHARED);
    // A range beyond guest memory is refused too, without being fatal.
    let mut v = legacy(VmaBacking::Anon4k);
    let r = v.kvm.handle_psc_msr(
        &mut v.host,
        &mut v.rmp,
        GhcbMsrPscRequest::new().with_info(GHCB_MSR_PSC_REQ).with_gfn(16 * MIB).with_op(PscOp::Private.raw()),
    );
    assert!(matches!(r, Ok(resp) if resp.error() == u32::MAX), "{r:?}");
}

// ---------------------------------------------------------------------------------------------
// The 2M-region test reads RMPREAD's region status at the aligned frame, which counts only the
// *other* pages of the region (Linux commit 3e43c60eb3e3): the aligned page's own assigned bit
// must be read too, or a 2M RMPUPDATE would overlap it.

#[test]
fn a_2m_private_psc_over_a_region_whose_aligned_page_alone_is_private_goes_4k() {
    let mut v = legacy(VmaBacking::Thp);
    // GFN 0x200 (the region's aligned page, frame 0x200 in the preallocated VMA) made private
    // alone: one 4K RMPUPDATE.
    assert_eq!(v.msr(0x200, PscOp::Private), 0);
    assert_eq!(v.lookup(0x200), PRIVATE_4K);
    // RMPREAD at the aligned frame: assigned, and no *other* page of the region is.
    let head = v.rmp.rmpread(Pfn(0x200)).unwrap();
    assert!(head.assigned() && !head.hpage_region_status());
    // The 2M request over the region cannot be one 2M RMPUPDATE (it would overlap the 4K entry):
    // KVM converts the 511 other pages at 4K, 1 + 511 = 512 RMPUPDATEs in all.
    assert_eq!(v.ghcb_one(0x200, PscOp::Private, true), 0);
    assert_eq!(v.kvm.stats.rmpupdate, 512);
    for g in [0x200, 0x201, 0x3ff] {
        assert_eq!(v.lookup(g), PRIVATE_4K, "GFN {g:#x}");
    }
}

#[test]
fn gmem_prepare_of_a_2m_folio_whose_aligned_frame_alone_is_private_goes_4k() {
    let mut v = gmem2m(false);
    // GFN 0x3ff shared before any folio exists: no hole to punch, the 2M range's attributes mixed.
    assert_eq!(v.ghcb_one(0x3ff, PscOp::Shared, false), 0);
    // Faulting GFN 0x200 allocates the 2M folio; mixed attributes prepare its frame alone at 4K.
    v.fault_in(0x200, true);
    let (folio, size) = v.gmem_pfn(0x200).unwrap();
    assert_eq!(size, PageSize::Size2M);
    assert_eq!(v.lookup(folio.raw()), PRIVATE_4K);
    assert_eq!(v.lookup(folio.raw() + 1), SHARED);
    assert_eq!(v.kvm.stats.rmpupdate, 1);
    // GFN 0x3ff private again: the attributes are uniform, no RMP change (no prefault).
    assert_eq!(v.ghcb_one(0x3ff, PscOp::Private, false), 0);
    assert_eq!(v.kvm.stats.rmpupdate, 1);
    // Faulting GFN 0x201: its frame is unassigned but the aligned one is, so sev_gmem_prepare
    // cannot make the folio one 2M entry; it prepares frame folio + 1 at 4K (RMPUPDATE 2).
    v.fault_in(0x201, true);
    assert_eq!(v.lookup(folio.raw() + 1), PRIVATE_4K);
    assert_eq!(v.lookup(folio.raw()), PRIVATE_4K);
    assert_eq!(v.kvm.stats.rmpupdate, 2);
}
