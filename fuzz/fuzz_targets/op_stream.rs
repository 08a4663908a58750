//! Random streams of guest and host operations on a tiny machine, under every policy and backing,
//! with the whole-state invariant check after every step: never a panic, never a false negative
//! (the hardware guarantees hold whatever the guest does). One setup bit runs two interleaved
//! vCPUs: an action for a busy vCPU becomes a tick of it, and the stream ends with both drained.
#![no_main]

use libfuzzer_sys::fuzz_target;
use snpsim_defs::{Gfn, PageSize, RmpPageSize, VmplPerms};
use snpsim_guest::{Granularity, GuestConfig, Protocol, PscOrder, Recoalesce};
use snpsim_host::{HostVia, HugetlbFolio, VmaBacking};
use snpsim_hw::{AccessKind, Geometry};
use snpsim_engine::engine::{Action, CheckMode, MemoryBacking, SimConfig, Simulation};

const PAGES: u64 = 32;

fn action(b: &[u8], vcpu: u32) -> Action {
    let page = u64::from(b[1]) % PAGES;
    let gpa = Gfn::new(page).gpa();
    let aligned = Gfn::new(page & !3).gpa();
    let flag = b[2] & 1 == 1;
    match b[0] % 12 {
        0 => Action::Psc { vcpu, gpa, pages: 1, private: flag, granularity: None },
        1 => Action::Psc { vcpu, gpa: aligned, pages: 4, private: flag, granularity: None },
        2 => Action::Accept { vcpu, gpa: aligned, pages: 4, granularity: None },
        3 => Action::Access { vcpu, gpa, kind: AccessKind::Write, private: flag },
        4 => Action::Access { vcpu, gpa, kind: AccessKind::Read, private: flag },
        5 => Action::HostWrite {
            gpa,
            via: [HostVia::Vmm, HostVia::Uaccess, HostVia::Kernel][usize::from(b[2] % 3)],
        },
        6 => Action::HostSplit { gpa },
        7 => Action::HostCollapse { gpa },
        8 => Action::Recoalesce {
            vcpu,
            gpa: aligned,
            mode: if flag { Recoalesce::Naive } else { Recoalesce::SaveRestore },
        },
        9 => Action::Pvalidate {
            vcpu,
            gpa,
            size: if b[2] & 2 == 2 { RmpPageSize::Size2M } else { RmpPageSize::Size4K },
            validate: flag,
        },
        10 => Action::Rmpadjust {
            vcpu,
            gpa,
            size: RmpPageSize::Size4K,
            vmpl: 1 + b[2] % 3,
            perms: VmplPerms::from_bits(b[2] >> 3),
            vmsa: flag,
        },
        _ => Action::PunchHole { gpa, pages: 1 + u64::from(b[2] % 4) },
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&setup, ops)) = data.split_first() else { return };
    let policy = snpsim_kvm::policy::ALL[usize::from(setup) % snpsim_kvm::policy::ALL.len()];
    let backing = if policy.in_place_conversion() && setup & 0x08 != 0 {
        // The in-place file on HugeTLB folios (its other runs use the gmem folio sizes below).
        let folio = if setup & 0x10 != 0 { HugetlbFolio::Size1G } else { HugetlbFolio::Size2M };
        MemoryBacking::GmemHugetlb(folio)
    } else if policy.era() == snpsim_kvm::Era::Gmem {
        let folio = [PageSize::Size4K, PageSize::Size2M, PageSize::Size1G][usize::from((setup >> 3) % 3)];
        MemoryBacking::Gmem { folio, shared: VmaBacking::Thp }
    } else {
        let b = [VmaBacking::Anon4k, VmaBacking::Thp, VmaBacking::Hugetlbfs2m, VmaBacking::Hugetlbfs1g];
        MemoryBacking::Vma(b[usize::from((setup >> 3) % 4)])
    };
    let interleave = setup & 0x04 != 0;
    let config = SimConfig {
        geometry: Geometry::TINY,
        host_pages: 128,
        guest_pages: PAGES,
        vcpus: if interleave { 2 } else { 1 },
        policy,
        backing,
        prefault_on_psc: setup & 0x20 != 0,
        npt_level_follows_rmp: None,
        smaller_npt_faults: true,
        khugepaged: setup & 0x40 != 0,
        guest: GuestConfig {
            granularity: if setup & 0x80 != 0 { Granularity::M2 } else { Granularity::K4 },
            protocol: Protocol::Ghcb,
            ghcb_entries: 64,
            validation_tracking: true,
            // Both orders of a page-state change (Linux today, and the 2021 guest's whole range).
            order: if setup & 0x02 != 0 { PscOrder::WholeRange } else { PscOrder::PerRequest },
            msr_until_ghcb: false,
        },
        step_budget: None,
        check: CheckMode::Full,
        adversary: snpsim_engine::adversary::Attacks::NONE,
        interleave,
        rmpopt: setup & 0x01 != 0,
        // A scattered host with RMPOPT now and then (the two together change what RMPOPT marks).
        allocation: if setup & 0x09 == 0x09 {
            snpsim_host::Allocation::Scattered
        } else {
            snpsim_host::Allocation::Contiguous
        },
    };
    let Ok(mut sim) = Simulation::new(config) else { return };
    let busy = |sim: &Simulation| (0..2).find(|&v| sim.is_busy(v));
    for chunk in ops.chunks_exact(3).take(64) {
        let vcpu = if interleave { u32::from(chunk[2] >> 2 & 1) } else { 0 };
        let mut a = action(chunk, vcpu);
        if interleave {
            match a.vcpu() {
                Some(v) if sim.is_busy(v) => a = Action::Tick { vcpu: v },
                None if sim.windows_open() => a = Action::Tick { vcpu: busy(&sim).unwrap_or(0) },
                _ => {}
            }
        }
        sim.step(&a);
    }
    for _ in 0..10_000 {
        let Some(v) = busy(&sim).filter(|_| sim.outcome().is_none()) else { break };
        sim.step(&Action::Tick { vcpu: v });
    }
    let result = sim.finish();
    assert_eq!(result.metrics.false_negatives, 0, "{:?}", result.violations);
});
