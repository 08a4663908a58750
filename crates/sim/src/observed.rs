//! An RMP wrapper that records when each page's RMP owner or key last changed, so the engine can
//! tell scrambled memory contents from intact ones (design §6) and reset per-assignment checks.

use std::collections::BTreeMap;

use snpsim_defs::{
    Gpa, PageSize, PfErrorCode, Pfn, ReturnCode, RmpAdjustOperand, RmpArchEntry, RmpEntryRaw, RmpPageSize,
};
use snpsim_hw::{
    GuestAccess, GuestContext, GuestOutcome, PvalidateStatus, RmpConfig, RmpModel, RmpQueryResult,
};

use crate::trace::Recorder;

/// Wraps an [`RmpModel`]; every successful RMPUPDATE stamps the pages it rewrote with a new
/// sequence number.
#[derive(Debug, Clone)]
pub struct Observed<R> {
    inner: R,
    seq: u64,
    /// Page → sequence number of the last RMPUPDATE that rewrote it.
    changed: BTreeMap<u64, u64>,
    /// The trace recorder, when the run is traced: every RMP instruction issued through this
    /// wrapper (by the guest, KVM or the host) is recorded with its operands and result.
    pub(crate) recorder: Option<Box<Recorder>>,
}

impl<R: RmpModel> Observed<R> {
    /// Wrap `inner`.
    pub fn new(inner: R) -> Self {
        Observed { inner, seq: 0, changed: BTreeMap::new(), recorder: None }
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
        self.changed.get(&pfn.raw()).copied().unwrap_or(0)
    }
}

impl<R: RmpModel> RmpModel for Observed<R> {
    fn config(&self) -> RmpConfig {
        self.inner.config()
    }

    fn rmpupdate(&mut self, pfn: Pfn, new: RmpArchEntry) -> ReturnCode {
        let rc = self.inner.rmpupdate(pfn, new);
        if rc == ReturnCode::Success {
            self.seq += 1;
            let n = if new.page_size() { self.inner.config().geometry.pages_per_2m() } else { 1 };
            for p in pfn.raw()..pfn.raw() + n {
                self.changed.insert(p, self.seq);
            }
        }
        if let Some(r) = &mut self.recorder {
            r.rmpupdate(pfn, new, rc);
        }
        rc
    }

    fn psmash(&mut self, pfn: Pfn) -> ReturnCode {
        let rc = self.inner.psmash(pfn);
        if let Some(r) = &mut self.recorder {
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
        if let Some(rec) = &mut self.recorder {
            rec.pvalidate(gpa, pfn, size, validate, &r);
        }
        r
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
        if let Some(rec) = &mut self.recorder {
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

    fn end_in_flight(&mut self, region: Pfn) -> bool {
        self.inner.end_in_flight(region)
    }

    fn asid_assigned_pages(&self, asid: u16) -> u64 {
        self.inner.asid_assigned_pages(asid)
    }
}
