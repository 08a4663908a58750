//! The invariants of design §7, checked over the whole state (`--check full`).
//!
//! Invariants 3 (accesses) and 5 (host writes) are checked on each completed access by the
//! [`crate::machine::Machine`]; 6 on each validation; the rest here, after every step.

use std::collections::BTreeSet;

use snpsim_defs::{Gfn, PageSize, Pfn};
use snpsim_guest::Guest;
use snpsim_hw::RmpModel;
use snpsim_kvm::Era;

use crate::machine::Machine;

/// Check invariants 1, 2, 3 (leaf form), 4 and 7. Returns one message per violation.
pub fn check(m: &Machine, guest: &Guest, lossy_recoalesce: bool) -> Vec<String> {
    let mut v = Vec::new();
    let g = m.rmp.config().geometry;
    let mut frames: BTreeSet<(u64, u64)> = BTreeSet::new();
    for (start, leaf) in m.kvm.npt.leaves() {
        let n = g.pages(leaf.size);
        // 1. NPT leaf level ≤ the backing's level.
        match m.kvm.backing_level(&m.host, start) {
            Some(level) if leaf.size <= level => {}
            level => v.push(format!(
                "invariant 1: NPT leaf {} at GFN {start} exceeds its backing level {level:?}",
                leaf.size.name()
            )),
        }
        // 2. The leaf maps the frames bound to its GFNs, and no frame twice.
        if m.kvm.bound_pfn(&m.host, start) != Some(leaf.pfn)
            || m.kvm.bound_pfn(&m.host, Gfn(start.raw() + n - 1)) != Some(Pfn(leaf.pfn.raw() + n - 1))
        {
            v.push(format!("invariant 2: NPT leaf at GFN {start} maps frame {} not bound to it", leaf.pfn));
        }
        if let Some(&(ps, pe)) = frames.range(..(leaf.pfn.raw() + n, 0)).next_back()
            && pe > leaf.pfn.raw()
            && ps < leaf.pfn.raw() + n
        {
            v.push(format!("invariant 2: frame {} is mapped at two GPAs", leaf.pfn));
        }
        frames.insert((leaf.pfn.raw(), leaf.pfn.raw() + n));
        // 3. With npt_level_follows_rmp, no leaf over assigned pages is larger than their entry.
        if m.kvm.config.npt_level_follows_rmp && leaf.size >= PageSize::Size2M {
            let mut p = leaf.pfn.raw();
            while p < leaf.pfn.raw() + n {
                let region = g.region_of(Pfn(p));
                let e = m.rmp.rmpread(region);
                if e.is_ok_and(|e| e.hpage_region_status() && !e.page_size()) {
                    v.push(format!(
                        "invariant 3: {} NPT leaf at GFN {start} over 4K RMP entries",
                        leaf.size.name()
                    ));
                    break;
                }
                p = region.raw() + g.pages_per_2m();
            }
        }
    }
    // 4. Every assigned page is this guest's, at the GPA bound to it; none is assigned elsewhere
    // (the per-ASID counter equals the assigned pages found among the bound frames).
    let mut found = 0u64;
    let era = m.kvm.era();
    let mut check_frame = |gfn: Gfn, pfn: Pfn, v: &mut Vec<String>| {
        if let Ok(e) = m.rmp.rmpread(pfn)
            && e.assigned()
        {
            found += 1;
            if e.asid() != u32::from(m.asid) || e.gpa() != gfn.gpa().raw() {
                v.push(format!(
                    "invariant 4: frame {pfn} assigned to ASID {} at GPA {:#x}, bound to GFN {gfn}",
                    e.asid(),
                    e.gpa()
                ));
            }
        }
    };
    let pages = m.kvm.pages();
    let gmem = m.host.gmem.as_ref();
    for gfn in 0..pages {
        if let Some(pfn) = m.host.vma.pfn(gfn) {
            check_frame(Gfn(gfn), pfn, &mut v);
        }
        if era == Era::Gmem
            && let Some((pfn, _)) = gmem.and_then(|gm| gm.pfn(gfn))
        {
            check_frame(Gfn(gfn), pfn, &mut v);
        }
    }
    let counted = m.rmp.asid_assigned_pages(m.asid);
    if counted != found {
        v.push(format!(
            "invariant 4: {counted} pages assigned to the guest's ASID, {found} of them bound to its memory"
        ));
    }
    // 7. No data loss unless a naive re-coalesce ran.
    if guest.stats.data_loss_pages > 0 && !lossy_recoalesce {
        v.push(format!(
            "invariant 7: {} data pages lost without a naive re-coalesce",
            guest.stats.data_loss_pages
        ));
    }
    v
}
