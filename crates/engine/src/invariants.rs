//! The invariants (`docs/semantics.md` E8), checked over the whole state (`--check full`) or over what a step
//! changed (`--check incremental`).
//!
//! Invariants 3 (accesses) and 5 (host writes) are checked on each completed access by the
//! [`crate::machine::Machine`]; 6 on each validation; 9 on each kernel write; the rest here,
//! after every step.

use std::collections::BTreeSet;

use snpsim_defs::{Gfn, PageSize, Pfn};
use snpsim_guest::Guest;
use snpsim_hw::RmpModel;
use snpsim_kvm::Era;
use snpsim_kvm::npt::Leaf;

use crate::machine::Machine;

/// The frame ranges of the leaves seen so far, for invariant 2's "no frame twice". Leaves come in
/// GFN order, and their frames usually rise with it: while they do, a vector answers in O(1); the
/// first range out of order moves everything to an ordered set.
/// A `disjoint` one knows beforehand that no two ranges it will see overlap.
#[derive(Default)]
struct FrameRanges {
    rising: Vec<(u64, u64)>,
    set: Option<BTreeSet<(u64, u64)>>,
    disjoint: bool,
}

/// Ranges [`FrameRanges::screened`] sorts at most: 16 MiB of them.
const SCREEN_AT_MOST: usize = 1 << 20;

impl FrameRanges {
    /// For the frame ranges `all` of the leaves about to be checked: when no two overlap (one
    /// sort shows it), every answer is "no overlap", and a guest whose frames fall out of GFN
    /// order (faulted in any order: guest_memfd at 4K) no longer fills the ordered set, which was
    /// a quarter of a whole-state check. More than [`SCREEN_AT_MOST`] ranges are not screened.
    fn screened(all: impl Iterator<Item = (u64, u64)>) -> Self {
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for (start, end) in all {
            if let Some(last) = ranges.last_mut().filter(|last| last.1 == start) {
                last.1 = end;
            } else if ranges.len() == SCREEN_AT_MOST {
                return FrameRanges::default();
            } else {
                ranges.push((start, end));
            }
        }
        ranges.sort_unstable();
        let disjoint = ranges.windows(2).all(|w| w[0].1 <= w[1].0);
        FrameRanges { disjoint, ..FrameRanges::default() }
    }

    /// Whether the seen range with the greatest start below `start + n` overlaps `start..start + n`.
    fn overlaps_predecessor(&self, start: u64, n: u64) -> bool {
        if self.disjoint {
            return false;
        }
        let end = start + n;
        let pred = match &self.set {
            Some(set) => set.range(..(end, 0)).next_back().copied(),
            None => self.rising.iter().rev().find(|&&(s, _)| s < end).copied(),
        };
        pred.is_some_and(|(ps, pe)| pe > start && ps < end)
    }

    fn insert(&mut self, start: u64, end: u64) {
        if self.disjoint {
            return;
        }
        match &mut self.set {
            Some(set) => {
                set.insert((start, end));
            }
            // A range right after the last one extends it (a 4K-mapped region is one range, not
            // 512): the union is the same, and so is every later overlap answer.
            None if self.rising.last().is_some_and(|&(_, last_end)| last_end == start) => {
                if let Some(last) = self.rising.last_mut() {
                    last.1 = end;
                }
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

/// Check invariants 1, 2, 3 (leaf form), 4, 7 and 8. Returns one message per violation.
pub fn check(m: &Machine, guest: &Guest, lossy_recoalesce: bool) -> Vec<String> {
    let mut v = Vec::new();
    let g = m.rmp.config().geometry;
    // The leaves listed once, for both uses (a 4K-mapped guest has a leaf per page): the one list
    // the leaf checks held before, kept for the frame screen too.
    let leaves: Vec<(Gfn, Leaf)> = m.kvm.npt.leaves().collect();
    let mut frames = FrameRanges::screened(
        leaves.iter().map(|(_, leaf)| (leaf.pfn.raw(), leaf.pfn.raw() + g.pages(leaf.size))),
    );
    for &(start, leaf) in &leaves {
        check_leaf(m, start, leaf, &mut frames, &mut v);
    }
    check_assigned(m, &mut v);
    check_guest_view(m, guest, 0, guest.pages(), &mut v);
    // 7. No data loss unless a naive re-coalesce ran.
    if guest.stats.data_loss_pages > 0 && !lossy_recoalesce {
        v.push(format!(
            "invariant 7: {} data pages lost without a naive re-coalesce",
            guest.stats.data_loss_pages
        ));
    }
    v
}

/// Invariant 8 over the GFNs `start..end`, a 2M region at a time: every page the guest believes
/// validated is bound to a frame whose RMP entry is assigned and validated. A page that is not
/// would take #VC 0x404 on its next private access (APM §15.36.6) although the guest followed
/// the protocol: PSMASH preserves Validated (Linux `snp_rmptable_psmash`), and a guest that
/// converts a page to shared rescinds and forgets it (`set_pages_state` after
/// `pvalidate_pages(.., false)`). One message per region and check, naming its first such page in `start..end`.
fn check_guest_view(m: &Machine, guest: &Guest, start: u64, end: u64, v: &mut Vec<String>) {
    let per_2m = m.rmp.config().geometry.pages_per_2m();
    let end = end.min(guest.pages());
    let mut r = start - start % per_2m;
    while r < end {
        let r_end = (r + per_2m).min(guest.pages());
        let runs = guest.validated_set().runs_in(r, r_end);
        // The common case: a whole region validated, bound to one 2M frame run, under a
        // validated 2M entry.
        let whole = runs.len() == 1 && runs[0] == (r, r + per_2m);
        let first = m.kvm.bound_pfn(&m.host, Gfn::new(r));
        let two_meg_ok = whole
            && first.is_some_and(|p| {
                p.raw().is_multiple_of(per_2m)
                    && m.kvm.bound_pfn(&m.host, Gfn::new(r + per_2m - 1)) == Some(p + (per_2m - 1))
                    && m.rmp
                        .raw_entry(p)
                        .is_some_and(|e| e.lo.assigned() && e.lo.page_size() && e.lo.validated())
            });
        if !two_meg_ok {
            // Page by page, only over `start..end`: a change that can break the invariant at a
            // page (its validation, binding or its frame's RMP entry) touches that page — the
            // caller adds every rebound GFN, whose frame's changes touch another GFN — so the
            // region's other pages were checked when they last changed. Walking the whole region
            // made each 4K conversion inside a fragmented region cost the region.
            let (lo, hi) = (r.max(start), r_end.min(end));
            let bad = runs.iter().flat_map(|&(s, e)| s.max(lo)..e.min(hi)).find_map(|g| {
                match m.kvm.bound_pfn(&m.host, Gfn::new(g)) {
                    None => Some(format!("invariant 8: the guest believes GFN {} validated, but no frame is bound to it", Gfn::new(g))),
                    Some(p) if !m.rmp.raw_entry(p).is_some_and(|e| e.lo.assigned() && e.lo.validated()) => Some(format!(
                        "invariant 8: the guest believes GFN {} validated, but the RMP entry of its frame {p} is not assigned and validated",
                        Gfn::new(g)
                    )),
                    Some(_) => None,
                }
            });
            v.extend(bad);
        }
        r += per_2m;
    }
}

/// Invariants 1, 2 and 3 (leaf form) for one NPT leaf; `frames` holds the frames of the leaves
/// checked before it.
fn check_leaf(m: &Machine, start: Gfn, leaf: Leaf, frames: &mut FrameRanges, v: &mut Vec<String>) {
    let g = m.rmp.config().geometry;
    let n = g.pages(leaf.size);
    // The first GFN's bound frame and backing level, from one look.
    let bound = m.kvm.bound_frame(&m.host, start);
    // 1. NPT leaf level ≤ the backing's level.
    match bound.map(|(_, level)| level) {
        Some(level) if leaf.size <= level => {}
        level => v.push(format!(
            "invariant 1: NPT leaf {} at GFN {start} exceeds its backing level {level:?}",
            leaf.size.name()
        )),
    }
    // 2. The leaf maps the frames bound to its GFNs, and no frame twice.
    if bound.map(|(pfn, _)| pfn) != Some(leaf.pfn)
        || (n > 1 && m.kvm.bound_pfn(&m.host, start + (n - 1)) != Some(leaf.pfn + (n - 1)))
    {
        v.push(format!("invariant 2: NPT leaf at GFN {start} maps frame {} not bound to it", leaf.pfn));
    }
    if frames.overlaps_predecessor(leaf.pfn.raw(), n) {
        v.push(format!("invariant 2: frame {} is mapped at two GPAs", leaf.pfn));
    }
    frames.insert(leaf.pfn.raw(), leaf.pfn.raw() + n);
    // 3. With npt_level_follows_rmp, KVM's fault path maps no leaf over assigned pages larger than
    // their entry. A leaf the RMP shrank under later (a legacy page-state change, which does not
    // zap) or one a path without the cap mapped (RFC v4's page-state-change handler) is no
    // violation: the hardware's size check faults on the next private access through it.
    if m.kvm.config.npt_level_follows_rmp && leaf.size >= PageSize::Size2M && !m.kvm.npt.is_uncapped(start) {
        let mut p = leaf.pfn.raw();
        while p < leaf.pfn.raw() + n {
            let region = g.region_of(Pfn::new(p));
            // Any page of the region assigned (the aligned one, or another: its region status).
            let e = m.rmp.rmpread(region);
            if e.is_ok_and(|e| (e.assigned() || e.hpage_region_status()) && !e.page_size()) {
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

/// Invariant 4 over the frames bound to `n` GFNs from `gfn`, from frame `pfn` (`source`: VMA 0,
/// guest_memfd 1): each assigned one must be this guest's at its bound GPA. Messages go to `bad`
/// with their GFN and source; returns the assigned pages found.
fn check_bound_run(
    m: &Machine,
    gfn: u64,
    pfn: Pfn,
    n: u64,
    source: u8,
    bad: &mut Vec<(u64, u8, String)>,
) -> u64 {
    let g = m.rmp.config().geometry;
    let per_2m = g.pages_per_2m();
    let mut found = 0;
    let mut i = 0;
    while i < n {
        let p = pfn + i;
        let region = g.region_of(p);
        if p == region
            && i + per_2m <= n
            && let Ok(head) = m.rmp.rmpread(region)
        {
            if !head.assigned() && !head.hpage_region_status() {
                i += per_2m;
                continue;
            }
            // A 2M entry of this guest at the bound GPA: all its pages are (H3).
            if head.page_size() && head.asid() == u32::from(m.asid) && head.gpa() == Gfn::new(gfn + i).gpa() {
                found += per_2m;
                i += per_2m;
                continue;
            }
        }
        if let Ok(e) = m.rmp.rmpread(p)
            && e.assigned()
        {
            found += 1;
            let f = Gfn::new(gfn + i);
            if e.asid() != u32::from(m.asid) || e.gpa() != f.gpa() {
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
    found
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
    // Messages are collected with their GFN and source (VMA 0, guest_memfd 1) and reported in that
    // order, as a GFN-by-GFN walk would.
    let mut bad: Vec<(u64, u8, String)> = Vec::new();
    let mut check_run = |gfn: u64, pfn: Pfn, n: u64, source: u8| {
        found += check_bound_run(m, gfn, pfn, n, source, &mut bad);
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
    // The in-place file: shared and private pages alike are its folios (S9).
    if let Some(file) = m.host.gmem_hugetlb.as_ref() {
        let n = g.pages(file.folio_size());
        for (offset, pfn) in file.folios() {
            check_run(offset, pfn, n.min(m.kvm.pages().saturating_sub(offset)), 1);
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

/// What steps changed since the last [`take_touched`]: GFN ranges (NPT leaves, memory attributes,
/// VMA frames and levels, guest_memfd folios), frame ranges (RMP entries rewritten or smashed,
/// host frames freed) and the GFNs whose frames may have lost their validation, each
/// `(first, count)`.
#[derive(Debug, Default)]
pub struct Touched {
    /// GFN ranges.
    pub gfns: Vec<(u64, u64)>,
    /// Frame ranges.
    pub frames: Vec<(u64, u64)>,
    /// GFN ranges named by validated entries that were rewritten, smashed or rescinded.
    pub unvalidated: Vec<(u64, u64)>,
}

/// Drain the stores' dirty logs.
pub fn take_touched(m: &mut Machine) -> Touched {
    let mut gfns = m.kvm.npt.dirty.take();
    gfns.extend(m.kvm.attrs.dirty.take());
    gfns.extend(m.host.vma.dirty.take());
    if let Some(gm) = m.host.gmem.as_mut() {
        gfns.extend(gm.dirty.take());
    }
    if let Some(file) = m.host.gmem_hugetlb.as_mut() {
        gfns.extend(file.dirty.take());
    }
    let mut frames = m.rmp.dirty.take();
    frames.extend(m.host.memory.dirty.take());
    Touched { gfns, frames, unvalidated: m.rmp.unvalidated.take() }
}

/// `start..end` ranges sorted and merged where they overlap or touch.
fn merged(ranges: impl IntoIterator<Item = (u64, u64)>) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = ranges.into_iter().filter(|&(s, e)| s < e).collect();
    runs.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::with_capacity(runs.len());
    for (s, e) in runs {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    merged
}

/// Invariants 1, 2, 3 (leaf form), 4, 7 and 8 over what `touched` names: the leaves over every
/// touched GFN and its bound frames, and every touched frame whose entry is assigned, with the GFN
/// its GPA names. A step that changes nothing costs nothing. Over a run it finds the violations
/// the whole-state check finds, with the same messages, except the per-ASID count of invariant 4,
/// which it replaces by a check of each touched entry's binding, and invariant 8's, which name the
/// first such page of the part of a region checked then (`crates/check/tests/it/incremental.rs`
/// compares both on every mutant and on random operation streams).
pub fn check_touched(m: &Machine, guest: &Guest, lossy_recoalesce: bool, touched: &Touched) -> Vec<String> {
    let mut v = Vec::new();
    let g = m.rmp.config().geometry;
    let per_2m = g.pages_per_2m();
    let asid = u32::from(m.asid);
    let mut gfns = snpsim_host::DirtyLog::default();
    for &(first, n) in &touched.gfns {
        gfns.mark(first, n);
    }
    for (fs, fe) in merged(touched.frames.iter().map(|&(s, n)| (s, s + n))) {
        let mut p = fs;
        while p < fe {
            let region = g.region_of(Pfn::new(p));
            let region_end = (region.raw() + per_2m).min(fe);
            match m.rmp.rmpread(region) {
                // Nothing assigned in the region (the aligned page, or another: its region status).
                Ok(h) if !h.assigned() && !h.hpage_region_status() => p = region_end,
                // A 2M entry: its touched frames `p..region_end` at the GPAs it implies.
                Ok(h) if h.page_size() => {
                    let gfn = h.gpa().gfn() + (p - region.raw());
                    gfns.mark(gfn.raw(), region_end - p);
                    if h.asid() == asid {
                        check_frames_bound(m, Pfn::new(p), gfn, region_end - p, h.gpa(), &mut v);
                    }
                    p = region_end;
                }
                // 4K entries: each touched frame's own, the region's entry read once for them all.
                Ok(_) => {
                    while p < region_end {
                        if let Ok(e) = m.rmp.rmpread(Pfn::new(p))
                            && e.assigned()
                        {
                            let gfn = e.gpa().gfn();
                            gfns.mark(gfn.raw(), 1);
                            if e.asid() == asid {
                                check_frames_bound(m, Pfn::new(p), gfn, 1, e.gpa(), &mut v);
                            }
                        }
                        p += 1;
                    }
                }
                Err(_) => p += 1,
            }
        }
    }
    let mut bad: Vec<(u64, u8, String)> = Vec::new();
    let end_gfn = m.kvm.pages();
    let mut frames = FrameRanges::default();
    let gfn_ranges = merged(gfns.take().into_iter().map(|(s, n)| (s, s.saturating_add(n))));
    // 8 over the touched GFNs, those whose validation may have gone and every rebound GFN, a 2M
    // region at a time. A rebound GFN's frame maps back (through its RMP entry's GPA) to another
    // GFN, so a change to that frame touches the other GFN, not the rebound one.
    let mut view = Vec::new();
    let rebound = m.kvm.rebound_gfns().map(|g| (g.raw(), g.raw() + 1));
    for (s, e) in merged(
        gfn_ranges
            .iter()
            .copied()
            .chain(touched.unvalidated.iter().map(|&(s, n)| (s, s.saturating_add(n))))
            .chain(rebound),
    ) {
        check_guest_view(m, guest, s, e, &mut view);
    }
    // Leaves are visited in GFN order, a 1G at a time; a huge leaf over two touched ranges once.
    let mut last_leaf: Option<Gfn> = None;
    let chunk = g.pages(PageSize::Size1G);
    for (start, end) in gfn_ranges {
        let end = end.min(end_gfn);
        if start >= end {
            continue;
        }
        for (offset, first, pages) in m.host.vma.runs_in(start, end) {
            check_bound_run(m, offset, first, pages, 0, &mut bad);
        }
        // A 1G-aligned piece at a time, so that the lists stay short: no leaf or folio crosses
        // a 1G boundary (both are size-aligned), and a huge leaf met twice is checked once.
        let gm = m.host.gmem.as_ref().filter(|_| m.kvm.era() == Era::Gmem);
        let mut at = start;
        while at < end {
            let to = (at / chunk + 1).saturating_mul(chunk).min(end);
            for (first, leaf) in m.kvm.npt.leaves_in(Gfn::new(at), Gfn::new(to)) {
                if last_leaf.is_none_or(|last| last < first) {
                    last_leaf = Some(first);
                    check_leaf(m, first, leaf, &mut frames, &mut v);
                }
            }
            check_folios_in(m, gm, at, to, &mut bad);
            at = to;
        }
    }
    // 2's "no frame twice" pairs a touched leaf with any other leaf of the frame, which need not
    // be touched. Only a rebound GFN can bind a frame to two GPAs (a leaf mapping a frame not
    // bound to it breaks 2 by itself), so while one exists every leaf is compared, as `check` does.
    if m.kvm.has_rebound() {
        let mut all = FrameRanges::default();
        for (_, leaf) in m.kvm.npt.leaves() {
            let n = g.pages(leaf.size);
            if all.overlaps_predecessor(leaf.pfn.raw(), n) {
                v.push(format!("invariant 2: frame {} is mapped at two GPAs", leaf.pfn));
            }
            all.insert(leaf.pfn.raw(), leaf.pfn.raw() + n);
        }
    }
    bad.sort_by_key(|(gfn, source, _)| (*gfn, *source));
    v.extend(bad.into_iter().map(|(_, _, msg)| msg));
    v.extend(view);
    if guest.stats.data_loss_pages > 0 && !lossy_recoalesce {
        v.push(format!(
            "invariant 7: {} data pages lost without a naive re-coalesce",
            guest.stats.data_loss_pages
        ));
    }
    v
}

/// Invariant 4 over the guest_memfd folios (`gm`'s, or the in-place file's) holding pages of
/// `at..to`, clipped to it.
fn check_folios_in(
    m: &Machine,
    gm: Option<&snpsim_host::Gmem>,
    at: u64,
    to: u64,
    bad: &mut Vec<(u64, u8, String)>,
) {
    let g = m.rmp.config().geometry;
    for (offset, folio) in gm.map(|gm| gm.folios_in(at, to)).unwrap_or_default() {
        let (s, e) = (offset.max(at), (offset + g.pages(folio.size)).min(to));
        check_bound_run(m, s, Pfn::new(folio.pfn.raw() + (s - offset)), e - s, 1, bad);
    }
    if let Some(file) = m.host.gmem_hugetlb.as_ref() {
        let n = g.pages(file.folio_size());
        for (offset, pfn) in file.folios_in(at, to) {
            let (s, e) = (offset.max(at), (offset + n).min(to));
            check_bound_run(m, s, Pfn::new(pfn.raw() + (s - offset)), e - s, 1, bad);
        }
    }
}

/// Invariant 4 for `n` frames from `pfn` assigned to the guest at the GFNs from `gfn` (inside one
/// 2M entry whose GPA is `gpa`): each must be the frame bound to its GFN. A run bound to one
/// guest_memfd folio or VMA unit is checked at its ends; anything else page by page.
fn check_frames_bound(m: &Machine, pfn: Pfn, gfn: Gfn, n: u64, gpa: snpsim_defs::Gpa, v: &mut Vec<String>) {
    let last = gfn + (n - 1);
    // One page is its own last (not looked up twice).
    let ends = m.kvm.bound_pfn(&m.host, gfn) == Some(pfn)
        && (n == 1 || m.kvm.bound_pfn(&m.host, last) == Some(pfn + (n - 1)));
    let one_folio = |private: bool| {
        !private
            || m.kvm.era() == Era::Legacy
            || m.host.gmem.as_ref().is_some_and(|gm| {
                gm.folio_at(gfn.raw()).map(|(s, _)| s) == gm.folio_at(last.raw()).map(|(s, _)| s)
            })
    };
    if ends && (n == 1 || m.kvm.attrs.uniform(gfn, n).is_some_and(one_folio)) {
        return;
    }
    for i in 0..n {
        if m.kvm.bound_pfn(&m.host, gfn + i) != Some(pfn + i) {
            v.push(format!(
                "invariant 4: frame {} assigned to the guest at GPA {:#x}, which is not bound to it",
                pfn + i,
                gpa + (i << snpsim_defs::PAGE_SHIFT)
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FrameRanges;

    /// The answers of a screened set are those of an unscreened one, for ranges met in any order.
    #[test]
    fn a_screened_set_answers_as_an_unscreened_one() {
        let cases: [&[(u64, u64)]; 5] = [
            &[(0, 1), (1, 2), (2, 3)],
            &[(8, 9), (0, 1), (4, 8), (1, 2)],
            &[(8, 9), (0, 1), (4, 9), (1, 2)],
            &[(0, 512), (256, 257)],
            &[(5, 6), (5, 6)],
        ];
        for ranges in cases {
            let mut screened = FrameRanges::screened(ranges.iter().copied());
            let mut plain = FrameRanges::default();
            for &(s, e) in ranges {
                assert_eq!(
                    screened.overlaps_predecessor(s, e - s),
                    plain.overlaps_predecessor(s, e - s),
                    "{ranges:?}"
                );
                screened.insert(s, e);
                plain.insert(s, e);
            }
            let overlapping =
                ranges.iter().enumerate().any(|(i, a)| ranges[..i].iter().any(|b| a.0 < b.1 && b.0 < a.1));
            assert_eq!(screened.disjoint, !overlapping, "{ranges:?}");
        }
    }
}
