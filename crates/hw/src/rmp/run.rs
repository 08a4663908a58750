//! Runs of 4K PVALIDATEs on the region-structured RMP ([`RmpModel::pvalidate_4k_run`]): where the
//! entries of a smashed region are stored as progressions (GPA rising page by page), a run of
//! PVALIDATEs whose outcome is the same for every page — each entry assigned to the guest, mutable,
//! bound to the page's GPA, 4K, in the other validation state, its region not in flight — is
//! checked and written one stored progression at a time rather than page by page. The first page
//! that differs ends the run; the caller executes it as one PVALIDATE (docs/semantics.md,
//! "Ranges").
//!
//! [`RmpModel::pvalidate_4k_run`]: crate::RmpModel::pvalidate_4k_run

use snpsim_defs::{Gpa, Pfn, RmpEntryRaw};
use snpsim_stores::{Progression, RunVec};

use super::{Entry, Region, Rmp};
use crate::model::GuestContext;

impl Rmp {
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
        let g = self.g();
        let mut done = 0;
        while done < pages {
            let p = pfn.raw() + done;
            // Step 2: inside the RMP (a 4K operand has no alignment rule).
            if p >= self.config.pages {
                break;
            }
            let (idx, i) = self.split(Pfn::new(p));
            // Step 3: not in flight.
            if self.in_flight.contains(&idx) {
                break;
            }
            let i = i as u64;
            let end = (i + (pages - done)).min(g).min(self.config.pages - idx * g);
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
    /// [`crate::RmpModel::assigned_4k_run`] on the region RMP: a frame is assigned and governed by
    /// a 4K entry exactly when its region is stored as 4K entries and its own entry is assigned;
    /// a stored progression's entries differ only in their GPA, so each is judged by its first.
    pub(super) fn assigned_run(&self, pfn: Pfn, pages: u64) -> u64 {
        let g = self.g();
        let mut done = 0;
        while done < pages {
            let p = pfn.raw() + done;
            if p >= self.config.pages {
                break;
            }
            let (idx, i) = self.split(Pfn::new(p));
            let i = i as u64;
            let end = (i + (pages - done)).min(g).min(self.config.pages - idx * g);
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
