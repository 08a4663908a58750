//! An RMP wrapper that records when each page's RMP owner or key last changed, so the engine can
//! tell scrambled memory contents from intact ones (`docs/semantics.md` G4) and reset per-assignment checks,
//! and counts the RMP instructions it passes for the cost model.
//!
//! The change stamps are kept per 2M region ([`PageMap`]): a 2M RMPUPDATE stamps its region in
//! O(1), memory no 4K RMPUPDATE touched costs nothing beyond its region, and a sweep of
//! RMPUPDATEs (stamps rising region by region) is stored as a progression.

use snpsim_defs::{
    Gpa, PageSize, PfErrorCode, Pfn, ReturnCode, RmpAdjustOperand, RmpArchEntry, RmpEntryRaw, RmpPageSize,
};
use snpsim_hw::{
    GuestAccess, GuestContext, GuestOutcome, PvalidateStatus, RmpConfig, RmpModel, RmpQueryResult,
    run_4k_operand,
};

use snpsim_stores::PageMap;

use crate::events::EventSink;

/// RMP instructions executed through the wrapper, by size, for the cost model: every RMPUPDATE and
/// PSMASH (they always retire with a code), and every PVALIDATE and RMPADJUST that retired (one that
/// took an #NPF or #VC is priced as that exit instead).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct InsnCounts {
    /// RMPUPDATE of a 4K entry.
    pub rmpupdate_4k: u64,
    /// RMPUPDATE of a 2M entry.
    pub rmpupdate_2m: u64,
    /// PSMASH.
    pub psmash: u64,
    /// PVALIDATE with a 4K operand that retired.
    pub pvalidate_4k: u64,
    /// PVALIDATE with a 2M operand that retired.
    pub pvalidate_2m: u64,
    /// RMPADJUST that retired.
    pub rmpadjust: u64,
}

/// Wraps an [`RmpModel`]; every successful RMPUPDATE stamps the pages it rewrote with a new
/// sequence number.
#[derive(Debug, Clone)]
pub struct Observed<R> {
    inner: R,
    seq: u64,
    /// Page → sequence number of the last RMPUPDATE that rewrote it (0 = never).
    changed: PageMap<u64>,
    /// Instructions executed, for the cost model.
    pub counts: InsnCounts,
    /// Frames whose entries RMPUPDATE or PSMASH rewrote (for the incremental invariant check).
    pub dirty: snpsim_host::DirtyLog,
    /// GFNs whose frames may have lost their validation: those named by the GPA of a validated
    /// entry that RMPUPDATE or PSMASH rewrote, or that a PVALIDATE rescinded (for invariant 8 in
    /// the incremental check, which cannot map a rewritten frame back to its GFN otherwise).
    pub unvalidated: snpsim_host::DirtyLog,
    /// The event sink, when the run has one: every RMP instruction issued through this
    /// wrapper (by the guest, KVM or the host) is recorded with its operands and result.
    pub(crate) sink: Option<Box<dyn EventSink>>,
}

impl Observed<snpsim_hw::rmp::Rmp> {
    /// Bytes of memory the wrapped RMP's and the change stamps' state takes.
    pub fn state_bytes(&self) -> usize {
        self.inner.state_bytes() + self.changed.state_bytes()
    }
}

impl<R: RmpModel> Observed<R> {
    /// Wrap `inner`.
    pub fn new(inner: R) -> Self {
        let region = inner.config().geometry.pages_per_2m();
        Observed {
            inner,
            seq: 0,
            changed: PageMap::new(region),
            counts: InsnCounts::default(),
            dirty: snpsim_host::DirtyLog::default(),
            unvalidated: snpsim_host::DirtyLog::default(),
            sink: None,
        }
    }

    /// The wrapped model.
    pub fn inner(&self) -> &R {
        &self.inner
    }

    /// The current sequence number (the stamp a write made now would carry).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The sequence number of the last RMPUPDATE that rewrote `pfn` (0 = never).
    pub fn last_change(&self, pfn: Pfn) -> u64 {
        self.changed.get(pfn.raw())
    }

    /// The stamp shared by every page of the 2M region holding `pfn`, if they all have the same.
    pub fn region_change(&self, pfn: Pfn) -> Option<u64> {
        self.changed.uniform(pfn.raw())
    }
}

impl<R: RmpModel> Observed<R> {
    /// Before `pfn`'s entry (`pages` of them from a 2M-aligned `pfn` for a 2M operation) is
    /// rewritten: log the GFNs its validated entries name.
    fn note_unvalidated(&mut self, pfn: Pfn, pages: u64) {
        let Some(e) = self.inner.raw_entry(pfn) else { return };
        if e.lo.assigned() && e.lo.validated() {
            let gfn = e.lo.gpa_frame();
            let n = if e.lo.page_size() { self.inner.config().geometry.pages_per_2m() } else { pages };
            self.unvalidated.mark(gfn, n);
        }
    }
}

/// Whether a guest instruction retired (with a result or a failure code) rather than faulting.
pub fn retired<T>(r: &GuestOutcome<T>) -> bool {
    matches!(r, GuestOutcome::Done(_) | GuestOutcome::Fail(_))
}

impl<R: RmpModel> RmpModel for Observed<R> {
    fn config(&self) -> RmpConfig {
        self.inner.config()
    }

    fn rmpupdate(&mut self, pfn: Pfn, new: RmpArchEntry) -> ReturnCode {
        self.note_unvalidated(pfn, 1);
        let rc = self.inner.rmpupdate(pfn, new);
        if new.page_size() {
            self.counts.rmpupdate_2m += 1;
        } else {
            self.counts.rmpupdate_4k += 1;
        }
        if rc == ReturnCode::Success {
            self.seq += 1;
            let n = if new.page_size() { self.inner.config().geometry.pages_per_2m() } else { 1 };
            self.changed.set_range(pfn.raw(), n, self.seq);
            self.dirty.mark(pfn.raw(), n);
        }
        if let Some(r) = &mut self.sink {
            r.rmpupdate(pfn, new, rc);
        }
        rc
    }

    fn psmash(&mut self, pfn: Pfn) -> ReturnCode {
        self.counts.psmash += 1;
        self.note_unvalidated(pfn, 1);
        let rc = self.inner.psmash(pfn);
        if rc == ReturnCode::Success {
            self.dirty.mark(pfn.raw(), self.inner.config().geometry.pages_per_2m());
        }
        if let Some(r) = &mut self.sink {
            r.psmash(pfn, rc);
        }
        rc
    }

    fn pvalidate(
        &mut self,
        guest: GuestContext,
        gpa: Gpa,
        pfn: Pfn,
        size: RmpPageSize,
        validate: bool,
    ) -> GuestOutcome<PvalidateStatus> {
        let r = self.inner.pvalidate(guest, gpa, pfn, size, validate);
        if !validate && matches!(r, GuestOutcome::Done(_)) {
            let n = match size {
                RmpPageSize::Size4K => 1,
                RmpPageSize::Size2M => self.inner.config().geometry.pages_per_2m(),
            };
            self.unvalidated.mark(gpa.gfn().raw(), n);
        }
        if retired(&r) {
            match size {
                RmpPageSize::Size4K => self.counts.pvalidate_4k += 1,
                RmpPageSize::Size2M => self.counts.pvalidate_2m += 1,
            }
        }
        if let Some(rec) = &mut self.sink {
            rec.pvalidate(gpa, pfn, size, validate, &r);
        }
        r
    }

    fn assigned_4k_run(&self, pfn: Pfn, pages: u64) -> u64 {
        self.inner.assigned_4k_run(pfn, pages)
    }

    fn rmpupdate_operand_valid(&self, new: RmpArchEntry) -> bool {
        self.inner.rmpupdate_operand_valid(new)
    }

    /// The run's RMPUPDATEs as [`Observed::rmpupdate`] of each would record them: each page
    /// stamped with the next sequence number, marked dirty, counted, and given its own event. The
    /// entries were unassigned, so no validation is lost.
    fn rmpupdate_4k_run(&mut self, pfn: Pfn, gpa: Gpa, asid: u16, pages: u64) -> u64 {
        let done = self.inner.rmpupdate_4k_run(pfn, gpa, asid, pages);
        if done == 0 {
            return 0;
        }
        self.counts.rmpupdate_4k += done;
        self.changed.set_progression(pfn.raw(), done, self.seq + 1, 1);
        self.seq += done;
        self.dirty.mark(pfn.raw(), done);
        if let Some(r) = &mut self.sink {
            let geometry = self.inner.config().geometry;
            for k in 0..done {
                r.rmpupdate(pfn + k, run_4k_operand(geometry, asid, gpa, k), ReturnCode::Success);
            }
        }
        done
    }

    fn pvalidate_4k_run(
        &mut self,
        guest: GuestContext,
        gpa: Gpa,
        pfn: Pfn,
        pages: u64,
        validate: bool,
    ) -> u64 {
        let done = self.inner.pvalidate_4k_run(guest, gpa, pfn, pages, validate);
        if done == 0 {
            return 0;
        }
        if !validate {
            self.unvalidated.mark(gpa.gfn().raw(), done);
        }
        self.counts.pvalidate_4k += done;
        if let Some(rec) = &mut self.sink {
            // The trace of a run is the trace of its PVALIDATEs.
            let bytes = self.inner.config().geometry.bytes(PageSize::Size4K);
            for k in 0..done {
                let r = GuestOutcome::Done(PvalidateStatus::Changed);
                rec.pvalidate(Gpa::new(gpa.raw() + k * bytes), pfn + k, RmpPageSize::Size4K, validate, &r);
            }
        }
        done
    }

    fn rmpadjust(
        &mut self,
        guest: GuestContext,
        gpa: Gpa,
        pfn: Pfn,
        size: RmpPageSize,
        op: RmpAdjustOperand,
    ) -> GuestOutcome<()> {
        let r = self.inner.rmpadjust(guest, gpa, pfn, size, op);
        if retired(&r) {
            self.counts.rmpadjust += 1;
        }
        if let Some(rec) = &mut self.sink {
            rec.rmpadjust(gpa, pfn, size, op, &r);
        }
        r
    }

    fn rmpquery(
        &self,
        guest: GuestContext,
        gpa: Gpa,
        pfn: Pfn,
        target_vmpl: u8,
    ) -> GuestOutcome<RmpQueryResult> {
        self.inner.rmpquery(guest, gpa, pfn, target_vmpl)
    }

    fn rmpread(&self, pfn: Pfn) -> Result<RmpArchEntry, ReturnCode> {
        self.inner.rmpread(pfn)
    }

    fn raw_entry(&self, pfn: Pfn) -> Option<RmpEntryRaw> {
        self.inner.raw_entry(pfn)
    }

    fn check_guest_access(&self, access: &GuestAccess) -> GuestOutcome<()> {
        self.inner.check_guest_access(access)
    }

    fn check_host_write(&self, pfn: Pfn, mapping: PageSize, user: bool) -> Result<(), PfErrorCode> {
        self.inner.check_host_write(pfn, mapping, user)
    }

    fn begin_in_flight(&mut self, region: Pfn) -> ReturnCode {
        self.inner.begin_in_flight(region)
    }

    fn in_flight(&self, pfn: Pfn) -> bool {
        self.inner.in_flight(pfn)
    }

    fn end_in_flight(&mut self, region: Pfn) -> bool {
        self.inner.end_in_flight(region)
    }

    fn asid_assigned_pages(&self, asid: u16) -> u64 {
        self.inner.asid_assigned_pages(asid)
    }

    // RMPOPT (O1–O8): forwarded, as the trait asks of a wrapper. A verify changes no RMP entry,
    // so it is not an owner change to observe.
    fn rmpopt_verify(&mut self, region: Pfn) -> snpsim_hw::RmpoptVerify {
        self.inner.rmpopt_verify(region)
    }

    fn rmpopt_enabled(&self) -> bool {
        self.inner.rmpopt_enabled()
    }

    fn is_optimized(&self, pfn: Pfn) -> bool {
        self.inner.is_optimized(pfn)
    }

    fn rmpopt_marked_pages(&self) -> u64 {
        self.inner.rmpopt_marked_pages()
    }

    fn rmp_stats(&self) -> snpsim_hw::RmpStats {
        self.inner.rmp_stats()
    }
}
