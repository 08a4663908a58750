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

/// The frame ranges of the leaves seen so far, for invariant 2's "no frame twice". Leaves come in
/// GFN order, and their frames usually rise with it: while they do, a vector answers in O(1); the
/// first range out of order moves everything to an ordered set.
#[derive(Default)]
struct FrameRanges {
    rising: Vec<(u64, u64)>,
    set: Option<BTreeSet<(u64, u64)>>,
}

impl FrameRanges {
    /// Whether the seen range with the greatest start below `start + n` overlaps `start..start + n`.
    fn overlaps_predecessor(&self, start: u64, n: u64) -> bool {
        let end = start + n;
        let pred = match &self.set {
            Some(set) => set.range(..(end, 0)).next_back().copied(),
            None => self.rising.iter().rev().find(|&&(s, _)| s < end).copied(),
        };
        pred.is_some_and(|(ps, pe)| pe > start && ps < end)
    }

    fn insert(&mut self, start: u64, end: u64) {
        match &mut self.set {
            Some(set) => {
                set.insert((start, end));
            }
            None if self.rising.last().is_none_or(|&last| last < (start, end)) => {
                self.rising.push((start, end));
            }
            None => {
                let mut set: BTreeSet<(u64, u64)> = self.rising.drain(..).collect();
                set.insert((start, end));
                self.set = Some(set);
            }
        }
    }
}

/// Check invariants 1, 2, 3 (leaf form), 4 and 7. Returns one message per violation.
pub fn check(m: &Machine, guest: &Guest, lossy_recoalesce: bool) -> Vec<String> {
    let mut v = Vec::new();
    let g = m.rmp.config().geometry;
    let mut frames = FrameRanges::default();
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
        if frames.overlaps_predecessor(leaf.pfn.raw(), n) {
            v.push(format!("invariant 2: frame {} is mapped at two GPAs", leaf.pfn));
        }
        frames.insert(leaf.pfn.raw(), leaf.pfn.raw() + n);
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
    check_assigned(m, &mut v);
    // 7. No data loss unless a naive re-coalesce ran.
    if guest.stats.data_loss_pages > 0 && !lossy_recoalesce {
        v.push(format!(
            "invariant 7: {} data pages lost without a naive re-coalesce",
            guest.stats.data_loss_pages
        ));
    }
    v
}

/// Invariant 4: every assigned page is this guest's, at the GPA bound to it; none is assigned
/// elsewhere (the per-ASID counter equals the assigned pages found among the bound frames).
fn check_assigned(m: &Machine, v: &mut Vec<String>) {
    // 4. Every assigned page is this guest's, at the GPA bound to it; none is assigned elsewhere
    // (the per-ASID counter equals the assigned pages found among the bound frames). Frames are
    // visited a 2M region at a time: a region with nothing assigned is skipped, a 2M entry is
    // checked once.
    let g = m.rmp.config().geometry;
    let mut found = 0u64;
    let per_2m = g.pages_per_2m();
    // Messages are collected with their GFN and source (VMA 0, guest_memfd 1) and reported in that
    // order, as a GFN-by-GFN walk would.
    let mut bad: Vec<(u64, u8, String)> = Vec::new();
    let mut check_run = |gfn: u64, pfn: Pfn, n: u64, source: u8| {
        let mut i = 0;
        while i < n {
            let p = Pfn(pfn.raw() + i);
            let region = g.region_of(p);
            if p == region
                && i + per_2m <= n
                && let Ok(head) = m.rmp.rmpread(region)
            {
                if !head.hpage_region_status() {
                    i += per_2m;
                    continue;
                }
                // A 2M entry of this guest at the bound GPA: all its pages are (H3).
                if head.page_size()
                    && head.asid() == u32::from(m.asid)
                    && head.gpa() == Gfn(gfn + i).gpa().raw()
                {
                    found += per_2m;
                    i += per_2m;
                    continue;
                }
            }
            if let Ok(e) = m.rmp.rmpread(p)
                && e.assigned()
            {
                found += 1;
                let f = Gfn(gfn + i);
                if e.asid() != u32::from(m.asid) || e.gpa() != f.gpa().raw() {
                    bad.push((
                        f.raw(),
                        source,
                        format!(
                            "invariant 4: frame {p} assigned to ASID {} at GPA {:#x}, bound to GFN {f}",
                            e.asid(),
                            e.gpa()
                        ),
                    ));
                }
            }
            i += 1;
        }
    };
    // The VMA's frames are contiguous per populated unit (S1); guest_memfd's are its folios.
    for (offset, first, pages) in m.host.vma.runs() {
        check_run(offset, first, pages.min(m.kvm.pages().saturating_sub(offset)), 0);
    }
    if m.kvm.era() == Era::Gmem
        && let Some(gm) = m.host.gmem.as_ref()
    {
        for (offset, folio) in gm.folios() {
            let n = g.pages(folio.size).min(m.kvm.pages().saturating_sub(offset));
            check_run(offset, folio.pfn, n, 1);
        }
    }
    bad.sort_by_key(|(gfn, source, _)| (*gfn, *source));
    v.extend(bad.into_iter().map(|(_, _, msg)| msg));
    let counted = m.rmp.asid_assigned_pages(m.asid);
    if counted != found {
        v.push(format!(
            "invariant 4: {counted} pages assigned to the guest's ASID, {found} of them bound to its memory"
        ));
    }
}
