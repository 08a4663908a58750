//! Runs of 4K PVALIDATEs on the region-structured RMP ([`RmpModel::pvalidate_4k_run`]): where the
//! entries of a smashed region are stored as progressions (GPA rising page by page), a run of
//! PVALIDATEs whose outcome is the same for every page — each entry assigned to the guest, mutable,
//! bound to the page's GPA, 4K, in the other validation state, its region not in flight — is
//! checked and written one stored progression at a time rather than page by page. The first page
//! that differs ends the run; the caller executes it as one PVALIDATE (docs/semantics.md,
//! "Ranges").
//!
//! [`RmpModel::pvalidate_4k_run`]: crate::RmpModel::pvalidate_4k_run

use snpsim_defs::rmp::RMP_GPA_LIMIT;
use snpsim_defs::{Gpa, PageSize, Pfn, RmpEntryRaw};
use snpsim_stores::{Progression, RunVec};

use super::{Entry, Region, Rmp, ZERO};
use crate::model::{GuestContext, run_4k_operand};

impl Rmp {
    /// The next piece of a run over `pages` frames from `pfn` of which `done` are done: its region
    /// index, its first index in the region and the index it ends before (the run's end, the
    /// region's or the RMP's); `None` once the frame is outside the RMP (H6).
    fn region_piece(&self, pfn: Pfn, done: u64, pages: u64) -> Option<(u64, u64, u64)> {
        let p = pfn.raw() + done;
        if p >= self.config.pages {
            return None;
        }
        let g = self.g();
        let (idx, i) = self.split(Pfn::new(p));
        let i = i as u64;
        Some((idx, i, (i + (pages - done)).min(g).min(self.config.pages - idx * g)))
    }

    /// [`crate::RmpModel::pvalidate_4k_run`] on the region RMP: region by region, the prefix of the
    /// run that PVALIDATE steps 1–8 would each retire `Changed`, written as progressions. A planted
    /// bug (`crate::Mutant`) disables the run: every page then goes through the one-page rules.
    pub(super) fn pvalidate_run(
        &mut self,
        guest: GuestContext,
        gpa: Gpa,
        pfn: Pfn,
        pages: u64,
        validate: bool,
    ) -> u64 {
        // Step 1: VMPL0 only; a mutant changes the rules, so nothing is assumed uniform.
        if guest.vmpl != 0 || self.mutant.is_some() {
            return 0;
        }
        let mut done = 0;
        while done < pages {
            // Step 2: inside the RMP (a 4K operand has no alignment rule).
            let Some((idx, i, end)) = self.region_piece(pfn, done, pages) else { break };
            // Step 3: not in flight.
            if self.in_flight.contains(&idx) {
                break;
            }
            let gfn = gpa.gfn().raw() + done;
            // Steps 4–5: a 2M region's entry governs its pages: a 4K PVALIDATE takes an #NPF.
            let Some(Region::Small(entries)) = self.regions.get_mut(idx) else { break };
            let (n, more) = validate_in_region(entries, i, end, gfn, guest.asid, validate);
            done += n;
            if i + n < end && !more {
                break;
            }
        }
        done
    }
}

impl Rmp {
    /// [`crate::RmpModel::rmpupdate_4k_run`] on the region RMP: region by region, the prefix of the
    /// run whose entries are unassigned and not immutable (RMPUPDATE steps 1–6 pass for each:
    /// inside the RMP, a valid operand, the region neither in flight nor 2M), written as one
    /// progression (GPA rising page by page) with the effects each RMPUPDATE has: step 7's fresh
    /// entry (Validated clear, permissions reset), H4's sub-page count in the aligned entry, H7's
    /// ASID counter, and O4 (the region's RMPOPT mark cleared). A planted bug
    /// (`crate::Mutant`) disables the run.
    pub(super) fn update_run(&mut self, pfn: Pfn, gpa: Gpa, asid: u16, pages: u64) -> u64 {
        let g = self.g();
        let bytes = self.config.geometry.bytes(PageSize::Size4K);
        let template = run_4k_operand(self.config.geometry, asid, gpa, 0);
        // Step 3: the operand (ASID, 4K-aligned GPA) is valid for every page whose GPA is below
        // the limit; the run stops at the first that is not.
        if self.mutant.is_some() || !self.operand_valid(template) {
            return 0;
        }
        let pages = pages.min((RMP_GPA_LIMIT - gpa.raw()).div_ceil(bytes));
        // Step 7's entry for the run's first page; the others differ only in their GPA.
        let fresh = Self::rmpupdate_entry(ZERO, false, template, g);
        let mut done = 0;
        while done < pages {
            // Step 1: inside the RMP.
            let Some((idx, i, end)) = self.region_piece(pfn, done, pages) else { break };
            // Step 4: not in flight.
            if self.in_flight.contains(&idx) {
                break;
            }
            // Steps 5–6: a 2M region overlaps; an assigned or immutable entry ends the run.
            let n = match &*self.regions.get(idx) {
                None => end - i,
                Some(Region::Huge(_)) => 0,
                Some(Region::Small(entries)) => fresh_prefix(entries, i, end),
            };
            if n == 0 {
                break;
            }
            // Step 7, written as the progression of the fresh entries of the run's GPAs.
            let gfn = gpa.gfn().raw() + done;
            let first = Entry(RmpEntryRaw { lo: fresh.lo.with_gpa_frame(gfn), hi: fresh.hi });
            let region = self.regions.get_or_insert_with(idx, || Region::Small(Box::default()));
            let Region::Small(entries) = region else { unreachable!("a 2M region ends the run") };
            let aligned_count = entries.get(0).0.lo.subpage_count();
            entries.set_run(i, i + n, &first, 1);
            // H4: the aligned entry counts the assigned entries other than itself.
            let others = n - u64::from(i == 0);
            let mut aligned = entries.get(0).0;
            aligned.lo = aligned.lo.with_subpage_count(aligned_count + others as u16);
            entries.set(0, Entry(aligned));
            // H7, and O4 once for the region (a second clear finds no mark).
            self.count_add(asid, n);
            self.stats.rmp_updates += n;
            if self.rmpopt.clear(self.config.geometry, pfn + done) {
                self.stats.rmpopt_marks_cleared += 1;
            }
            done += n;
            if i + n < end {
                break;
            }
        }
        done
    }

    /// [`crate::RmpModel::assigned_4k_run`] on the region RMP: a frame is assigned and governed by
    /// a 4K entry exactly when its region is stored as 4K entries and its own entry is assigned;
    /// a stored progression's entries differ only in their GPA, so each is judged by its first.
    pub(super) fn assigned_run(&self, pfn: Pfn, pages: u64) -> u64 {
        let mut done = 0;
        while done < pages {
            let Some((idx, i, end)) = self.region_piece(pfn, done, pages) else { break };
            let region = self.regions.get(idx);
            let Some(Region::Small(entries)) = &*region else { break };
            let mut n = 0;
            for (at, count, first, _) in entries.runs(i, end) {
                if !first.0.lo.assigned() {
                    break;
                }
                n = at + count - i;
            }
            done += n;
            if i + n < end {
                break;
            }
        }
        done
    }
}

/// How many entries from `from` (before `to`) are unassigned and not immutable, in a row: a stored
/// progression's entries differ only in their GPA, so each is judged by its first; entries past
/// the stored ones are zero.
fn fresh_prefix(entries: &RunVec<Entry>, from: u64, to: u64) -> u64 {
    let mut n = 0;
    for (at, count, first, _) in entries.runs(from, to) {
        let lo = first.0.lo;
        if lo.assigned() || lo.immutable() {
            return at - from;
        }
        n = at + count - from;
    }
    // Past the stored extent every entry is zero.
    if n < to - from && entries.extent() <= from + n { to - from } else { n }
}

/// Whether PVALIDATE steps 4, 7 would pass for `e` at `gfn`: assigned, mutable, owned by `asid`,
/// bound to `gfn`, and not already in the requested state (a 4K region's entries are 4K: step 6
/// cannot fail for a 4K operand).
fn changes(e: &Entry, gfn: u64, asid: u16, validate: bool) -> bool {
    let lo = e.0.lo;
    lo.assigned()
        && !lo.immutable()
        && lo.asid() == asid
        && lo.gpa_frame() == gfn
        && lo.validated() != validate
}

/// Validate (or rescind) entries `from..to` of one 4K region for as long as each would retire
/// `Changed` with the page at `gfn + (index - from)`; returns how many, and whether the entry after
/// them is still to be judged (`true`: call again from there). A stored progression whose GPA
/// rises one frame per page passes or fails as its first entry does (its entries differ only in
/// their GPA), so it is checked once; one that rises otherwise is taken one entry at a time. The
/// accepted entries, all rising one frame per page, are written back as progressions with
/// Validated flipped.
fn validate_in_region(
    entries: &mut RunVec<Entry>,
    from: u64,
    to: u64,
    gfn: u64,
    asid: u16,
    validate: bool,
) -> (u64, bool) {
    // (first index, count, first entry as written).
    let mut ok: Vec<(u64, u64, Entry)> = Vec::new();
    let mut end = from;
    let mut more = false;
    for (at, count, first, step) in entries.runs(from, to) {
        if !changes(&first, gfn + (at - from), asid, validate) {
            break;
        }
        let whole = count == 1 || step == 1;
        let count = if whole { count } else { 1 };
        let lo = first.0.lo.with_validated(validate);
        let flipped = Entry(RmpEntryRaw { lo, hi: first.0.hi });
        match ok.last_mut() {
            // Progressions that continue each other are written as one.
            Some((s, n, f)) if *s + *n == at && f.nth(1, *n) == flipped => *n += count,
            _ => ok.push((at, count, flipped)),
        }
        end = at + count;
        if !whole {
            more = end < to;
            break;
        }
    }
    for (at, count, first) in ok {
        entries.set_run(at, at + count, &first, 1);
    }
    (end - from, more)
}
