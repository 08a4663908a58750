//! Runs of 4K PVALIDATEs through the machine (docs/semantics.md, "Ranges"): the NPT leaves over
//! the run are looked up leaf by leaf rather than page by page, the RMP executes the run on its
//! stored progressions ([`snpsim_hw::RmpModel::pvalidate_4k_run`]) and the validations are counted
//! per run of equal counts (invariant 6). A run covers only what is uniform: pages the NPT maps to
//! consecutive frames, whose PVALIDATEs each retire `Changed` without an exit. The first page that
//! differs — an unmapped GFN (an #NPF), an RMP entry that is not the run's (a mismatch, another
//! size, already validated, in flight) — ends it, and the guest executes that page alone through
//! the one-page path, which stays the oracle ([`Machine::ranges`] off).

use snpsim_defs::{Gfn, Gpa, Pfn};
use snpsim_hw::RmpModel;

use super::Machine;

impl Machine {
    /// Whether the guest may ask for runs now: ranges are on and no other vCPU holds a window.
    pub(crate) fn runs_now(&self) -> bool {
        self.ranges && self.windows.is_empty()
    }

    /// Pages PVALIDATEd by runs so far (not state: how much of the run took the range path).
    pub fn range_pages(&self) -> u64 {
        self.range_pages
    }

    /// A run of 4K PVALIDATEs of up to `pages` pages from `gpa`: how many retired `Changed`.
    pub(crate) fn pvalidate_run(&mut self, gpa: Gpa, pages: u64, validate: bool) -> u64 {
        if !self.runs_now() {
            return 0;
        }
        let Some((pfn, mapped)) = self.npt_run(gpa.gfn(), pages) else { return 0 };
        let ctx = self.ctx();
        let done = self.rmp.pvalidate_4k_run(ctx, gpa, pfn, mapped, validate);
        if validate && done > 0 {
            self.note_validation_run(pfn, done);
        }
        self.range_pages += done;
        done
    }

    /// The frame the NPT maps `gfn` to and how many of the `pages` GFNs from it are mapped to the
    /// frames rising from it, found one leaf at a time; `None` when `gfn` is unmapped.
    fn npt_run(&self, gfn: Gfn, pages: u64) -> Option<(Pfn, u64)> {
        let geometry = self.rmp.config().geometry;
        let (pfn, size) = self.kvm.npt.translate(gfn)?;
        let leaf_rest = |g: Gfn, size| {
            let n = geometry.pages(size);
            n - g.raw() % n
        };
        let mut n = leaf_rest(gfn, size).min(pages);
        while n < pages {
            match self.kvm.npt.translate(gfn + n) {
                Some((next, size)) if next == pfn + n => n += leaf_rest(gfn + n, size).min(pages - n),
                _ => break,
            }
        }
        Some((pfn, n))
    }

    /// [`Machine::note_validation`] for `pages` frames from `pfn` validated by one run: the same
    /// counts, written per run of equal values.
    fn note_validation_run(&mut self, pfn: Pfn, pages: u64) {
        let region = self.rmp.config().geometry.pages_per_2m();
        if pages == region && pfn.raw().is_multiple_of(region) {
            self.note_validation(pfn, pages);
            return;
        }
        let mut pending: Option<(u64, u64, (u32, u64))> = None;
        for p in pfn.raw()..pfn.raw() + pages {
            let (count, seq) = self.validations.get(p);
            let last = self.rmp.last_change(Pfn::new(p));
            let next = if seq == last && count > 0 { (count + 1, last) } else { (1, last) };
            if next.0 == 2 {
                self.double_validation(p);
            }
            match &mut pending {
                Some((start, n, v)) if *v == next && *start + *n == p => *n += 1,
                _ => {
                    if let Some((start, n, v)) = pending.take() {
                        self.validations.set_range(start, n, v);
                    }
                    pending = Some((p, 1, next));
                }
            }
        }
        if let Some((start, n, v)) = pending {
            self.validations.set_range(start, n, v);
        }
    }
}
