//! The guest model: bookkeeping and the guest operations of design §5 and §10.

use snpsim_defs::ghcb::{
    GHCB_MSR_PSC_REQ, GHCB_MSR_PSC_RESP, GhcbMsrPscRequest, PscBuffer, PscEntry, PscHeader, PscOp,
};
use snpsim_defs::{Gfn, Gpa, ReturnCode, RmpAdjustOperand, RmpPageSize, SvmExitCode};
use snpsim_hw::{AccessKind, Geometry, GuestOutcome, PvalidateStatus};

use crate::{PageMap, Platform, RangeSet, Stop};

/// The size of the entries a guest uses in page-state changes and PVALIDATE.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Granularity {
    /// Every change and PVALIDATE at 4K.
    K4,
    /// 2M entries and 2M PVALIDATE for 2M-aligned 2M runs (4K fallback on FAIL_SIZEMISMATCH).
    M2,
}

/// The page-state-change protocol the guest uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// GHCB MSR protocol: one 4K page per VMGEXIT.
    Msr,
    /// GHCB NAE event with a buffer of entries.
    Ghcb,
}

/// What the guest does to regain a 2M RMP entry after a PSMASH (design §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Recoalesce {
    /// Never.
    None,
    /// Copy the region's data out and back around the conversion.
    SaveRestore,
    /// Convert without saving: the region's data is lost.
    Naive,
}

/// The guest's behaviour (design §5 fields).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GuestConfig {
    /// PSC and PVALIDATE granularity.
    pub granularity: Granularity,
    /// PSC protocol.
    pub protocol: Protocol,
    /// Entries per NAE PSC request (Linux: 64; at most 253).
    pub ghcb_entries: u16,
    /// The guest tracks the pages it validated and refuses to validate one twice.
    pub validation_tracking: bool,
}

/// Why a guest terminated itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TermReason {
    /// A page-state change failed (Linux GHCB_TERM_PSC).
    Psc,
    /// PVALIDATE failed (Linux GHCB_TERM_PVALIDATE).
    Pvalidate,
    /// A #VC for a page that is not validated (0x404), which Linux does not handle.
    PageNotValidated,
}

/// A guest operation that did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GuestError {
    /// The guest terminated itself.
    #[error("guest terminated ({reason:?}) at GPA {gpa}")]
    Terminated {
        /// Why.
        reason: TermReason,
        /// The page it was working on.
        gpa: Gpa,
    },
    /// The platform stopped the VM.
    #[error("the VM was stopped by the host")]
    Stopped,
}

impl From<Stop> for GuestError {
    fn from(_: Stop) -> Self {
        GuestError::Stopped
    }
}

/// Counters kept by the guest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GuestStats {
    /// PVALIDATE instructions executed.
    pub pvalidate: u64,
    /// RMPADJUST instructions executed.
    pub rmpadjust: u64,
    /// Reads of private pages holding data that found scrambled or stale contents (design §6).
    pub data_loss_pages: u64,
    /// Validations the guest refused because it had already validated the page.
    pub refused_validations: u64,
    /// 2M regions re-coalesced (2M RMP entry and 2M PVALIDATE regained).
    pub recoalesced: u64,
    /// Re-coalescing attempts that ended with 4K validation (no 2M entry was regained).
    pub recoalesce_failed: u64,
    /// Data pages copied out and back by `save-restore` re-coalescing.
    pub pages_saved: u64,
}

/// One SNP guest.
#[derive(Clone, Debug)]
pub struct Guest {
    config: GuestConfig,
    geometry: Geometry,
    pages: u64,
    validated: RangeSet,
    /// Pages holding data, with the version the guest last wrote (0 = no data; versions start
    /// at 1). Stored per 2M region: memory the guest never wrote costs O(regions).
    holding: PageMap<u64>,
    /// Pages holding data (non-zero entries of `holding`).
    held: u64,
    next_version: u64,
    /// Counters.
    pub stats: GuestStats,
    mutant: Option<snpsim_hw::Mutant>,
}

impl Guest {
    /// A guest of `pages` pages that has validated nothing yet.
    pub fn new(config: GuestConfig, geometry: Geometry, pages: u64) -> Self {
        Guest {
            config,
            geometry,
            pages,
            validated: RangeSet::new(),
            holding: PageMap::new(geometry.pages_per_2m()),
            held: 0,
            next_version: 1,
            stats: GuestStats::default(),
            mutant: None,
        }
    }

    /// Plant a bug (checker tests only; see `snpsim_hw::Mutant`).
    pub fn set_mutant(&mut self, mutant: Option<snpsim_hw::Mutant>) {
        self.mutant = mutant;
    }

    /// Stop tracking `start..end` as validated (unless a planted bug keeps it tracked).
    fn untrack(&mut self, start: u64, end: u64) {
        if self.mutant != Some(snpsim_hw::Mutant::GuestKeepsTrackingShared) {
            self.validated.remove(start, end);
        }
    }

    /// The configuration.
    pub fn config(&self) -> GuestConfig {
        self.config
    }

    /// Pages of guest memory.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// Whether the guest believes it validated `gfn`.
    pub fn is_validated(&self, gfn: Gfn) -> bool {
        self.validated.contains(gfn.raw())
    }

    /// The runs of pages the guest believes validated.
    pub fn validated_set(&self) -> &RangeSet {
        &self.validated
    }

    /// The pages the guest holds data in, with the version it last wrote there.
    pub fn held_pages(&self) -> impl Iterator<Item = (Gfn, u64)> + '_ {
        self.holding.iter().map(|(g, v)| (Gfn(g), v))
    }

    /// Pages the guest believes validated.
    pub fn validated_pages(&self) -> u64 {
        self.validated.len()
    }

    /// Whether the guest holds data in `gfn`.
    pub fn holds_data(&self, gfn: Gfn) -> bool {
        self.holding.get(gfn.raw()) != 0
    }

    /// Pages the guest holds data in.
    pub fn data_pages(&self) -> usize {
        usize::try_from(self.held).unwrap_or(usize::MAX)
    }

    /// Forget the data of `start..start + pages`.
    fn drop_data(&mut self, start: u64, pages: u64) {
        self.held -= self.holding.count_in(start, pages);
        self.holding.set_range(start, pages, 0);
    }

    /// Split `start..start + pages` into PSC/PVALIDATE chunks: 2M for aligned whole 2M runs when
    /// the granularity is 2M (Linux `__set_pages_state`), else 4K.
    fn chunks(&self, start: u64, pages: u64, gran: Granularity) -> Vec<(u64, RmpPageSize)> {
        let per_2m = self.geometry.pages_per_2m();
        let end = start + pages;
        let mut out = Vec::new();
        let mut g = start;
        while g < end {
            if gran == Granularity::M2 && g.is_multiple_of(per_2m) && g + per_2m <= end {
                out.push((g, RmpPageSize::Size2M));
                g += per_2m;
            } else {
                out.push((g, RmpPageSize::Size4K));
                g += 1;
            }
        }
        out
    }

    fn span(&self, size: RmpPageSize) -> u64 {
        self.geometry.pages(size.page_size())
    }

    /// The guest's whole page-state change of a range (design §10 `psc`): to shared, rescind the
    /// validation of the pages it validated, then the PSC; to private, the PSC, then PVALIDATE
    /// (2M with the 4K fallback). Linux ordering (`__set_pages_state`). The guest's own conversion
    /// ends any data it held there.
    pub fn psc(
        &mut self,
        p: &mut dyn Platform,
        vcpu: u32,
        start: Gfn,
        pages: u64,
        private: bool,
        gran: Option<Granularity>,
    ) -> Result<(), GuestError> {
        let gran = gran.unwrap_or(self.config.granularity);
        let chunks = self.chunks(start.raw(), pages, gran);
        if !private {
            self.rescind(p, vcpu, &chunks)?;
        }
        self.send_psc(p, vcpu, &chunks, private)?;
        if private {
            self.validate(p, vcpu, &chunks)?;
        }
        self.drop_data(start.raw(), pages);
        Ok(())
    }

    /// Acceptance of a range (design §10 `accept`): PSC to private and validation in the guest's
    /// granularity (Linux `snp_accept_memory` → `set_pages_state(SNP_PAGE_STATE_PRIVATE)`).
    pub fn accept(
        &mut self,
        p: &mut dyn Platform,
        vcpu: u32,
        start: Gfn,
        pages: u64,
        gran: Option<Granularity>,
    ) -> Result<(), GuestError> {
        self.psc(p, vcpu, start, pages, true, gran)
    }

    fn rescind(
        &mut self,
        p: &mut dyn Platform,
        vcpu: u32,
        chunks: &[(u64, RmpPageSize)],
    ) -> Result<(), GuestError> {
        for &(g, size) in chunks {
            let n = self.span(size);
            let tracked = self.validated.count_in(g, g + n);
            if self.config.validation_tracking && tracked == 0 {
                continue;
            }
            if size == RmpPageSize::Size2M && (tracked == n || !self.config.validation_tracking) {
                match self.pvalidate_checked(p, vcpu, Gfn(g), size, false)? {
                    ChunkResult::Done => {
                        self.untrack(g, g + n);
                        continue;
                    }
                    ChunkResult::SizeMismatch => {}
                }
            }
            for page in g..g + n {
                if self.config.validation_tracking && !self.validated.contains(page) {
                    continue;
                }
                if self.pvalidate_checked(p, vcpu, Gfn(page), RmpPageSize::Size4K, false)?
                    == ChunkResult::SizeMismatch
                {
                    return Err(GuestError::Terminated {
                        reason: TermReason::Pvalidate,
                        gpa: Gfn(page).gpa(),
                    });
                }
                self.untrack(page, page + 1);
            }
        }
        Ok(())
    }

    fn validate(
        &mut self,
        p: &mut dyn Platform,
        vcpu: u32,
        chunks: &[(u64, RmpPageSize)],
    ) -> Result<(), GuestError> {
        for &(g, size) in chunks {
            let n = self.span(size);
            let tracked = if self.config.validation_tracking { self.validated.count_in(g, g + n) } else { 0 };
            self.stats.refused_validations += tracked;
            if size == RmpPageSize::Size2M && tracked == 0 {
                match self.pvalidate_checked(p, vcpu, Gfn(g), size, true)? {
                    ChunkResult::Done => {
                        self.validated.insert(g, g + n);
                        continue;
                    }
                    ChunkResult::SizeMismatch => {}
                }
            }
            for page in g..g + n {
                if self.config.validation_tracking && self.validated.contains(page) {
                    continue;
                }
                if self.pvalidate_checked(p, vcpu, Gfn(page), RmpPageSize::Size4K, true)?
                    == ChunkResult::SizeMismatch
                {
                    return Err(GuestError::Terminated {
                        reason: TermReason::Pvalidate,
                        gpa: Gfn(page).gpa(),
                    });
                }
                self.validated.insert(page, page + 1);
            }
        }
        Ok(())
    }

    /// PVALIDATE as Linux's `pval_pages` treats it: success continues, FAIL_SIZEMISMATCH asks for
    /// the 4K fallback, anything else — including "unchanged" (CF = 1, which Linux reports as
    /// `PVALIDATE_FAIL_NOUPDATE`) for a guest that tracks validation — terminates the guest. A naive
    /// guest (`validation_tracking = false`) does not notice "unchanged".
    fn pvalidate_checked(
        &mut self,
        p: &mut dyn Platform,
        vcpu: u32,
        gfn: Gfn,
        size: RmpPageSize,
        validate: bool,
    ) -> Result<ChunkResult, GuestError> {
        self.stats.pvalidate += 1;
        let term = GuestError::Terminated { reason: TermReason::Pvalidate, gpa: gfn.gpa() };
        match p.pvalidate(vcpu, gfn.gpa(), size, validate)? {
            GuestOutcome::Done(PvalidateStatus::Changed) => Ok(ChunkResult::Done),
            GuestOutcome::Done(PvalidateStatus::Unchanged) if !self.config.validation_tracking => {
                Ok(ChunkResult::Done)
            }
            GuestOutcome::Fail(ReturnCode::FailSizeMismatch) if size == RmpPageSize::Size2M => {
                Ok(ChunkResult::SizeMismatch)
            }
            _ => Err(term),
        }
    }

    /// Issue the PSC for `chunks` with the configured protocol; any error terminates the guest.
    fn send_psc(
        &mut self,
        p: &mut dyn Platform,
        vcpu: u32,
        chunks: &[(u64, RmpPageSize)],
        private: bool,
    ) -> Result<(), GuestError> {
        let op = if private { PscOp::Private } else { PscOp::Shared };
        match self.config.protocol {
            Protocol::Msr => {
                for &(g, size) in chunks {
                    for page in g..g + self.span(size) {
                        let req = GhcbMsrPscRequest::new()
                            .with_info(GHCB_MSR_PSC_REQ)
                            .with_gfn(page)
                            .with_op(op.raw());
                        let resp = p.psc_msr(vcpu, req)?;
                        if resp.info() != GHCB_MSR_PSC_RESP || resp.error() != 0 {
                            return Err(GuestError::Terminated {
                                reason: TermReason::Psc,
                                gpa: Gfn(page).gpa(),
                            });
                        }
                    }
                }
            }
            Protocol::Ghcb => {
                let per_request =
                    usize::from(self.config.ghcb_entries.clamp(1, snpsim_defs::ghcb::VMGEXIT_PSC_MAX_COUNT));
                for batch in chunks.chunks(per_request) {
                    let entries: Vec<PscEntry> = batch
                        .iter()
                        .map(|&(g, size)| {
                            PscEntry::new().with_gfn(g).with_op(op.raw()).with_page_size(size.bit())
                        })
                        .collect();
                    let end = (entries.len() - 1) as u16;
                    let mut buf = PscBuffer { header: PscHeader::new().with_end_entry(end), entries };
                    let gpa = Gfn(batch[0].0).gpa();
                    let term = GuestError::Terminated { reason: TermReason::Psc, gpa };
                    // Linux `vmgexit_psc`: re-issue until cur_entry passes end_entry; fail on an
                    // error, a non-zero reserved field, or a hypervisor that moves backwards.
                    loop {
                        let before = buf.header.cur_entry();
                        let info2 = p.psc_ghcb(vcpu, &mut buf)?;
                        let h = buf.header;
                        if info2 != 0 || h.reserved() != 0 || h.end_entry() != end || h.cur_entry() < before {
                            return Err(term);
                        }
                        if h.cur_entry() > end {
                            break;
                        }
                        if h.cur_entry() == before {
                            return Err(term);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The bare PVALIDATE instruction (design §10 `pvalidate`), keeping the tracking in step.
    pub fn pvalidate(
        &mut self,
        p: &mut dyn Platform,
        vcpu: u32,
        gfn: Gfn,
        size: RmpPageSize,
        validate: bool,
    ) -> Result<GuestOutcome<PvalidateStatus>, GuestError> {
        self.stats.pvalidate += 1;
        let r = p.pvalidate(vcpu, gfn.gpa(), size, validate)?;
        if r.is_done() {
            let n = self.span(size);
            if validate {
                self.validated.insert(gfn.raw(), gfn.raw() + n);
            } else {
                self.validated.remove(gfn.raw(), gfn.raw() + n);
            }
        }
        Ok(r)
    }

    /// The bare RMPADJUST instruction (design §10 `rmpadjust`).
    pub fn rmpadjust(
        &mut self,
        p: &mut dyn Platform,
        vcpu: u32,
        gfn: Gfn,
        size: RmpPageSize,
        op: RmpAdjustOperand,
    ) -> Result<GuestOutcome<()>, GuestError> {
        self.stats.rmpadjust += 1;
        Ok(p.rmpadjust(vcpu, gfn.gpa(), size, op)?)
    }

    /// A memory access (design §10 `access`). A private write makes the page hold data; a private
    /// read of a page holding data checks its contents and counts a loss when they are scrambled
    /// or stale (design §6). A #VC for an unvalidated page terminates a Linux guest.
    pub fn access(
        &mut self,
        p: &mut dyn Platform,
        vcpu: u32,
        gpa: Gpa,
        kind: AccessKind,
        private: bool,
    ) -> Result<GuestOutcome<()>, GuestError> {
        let gfn = gpa.gfn();
        let version = self.next_version;
        let mut r = p.access(vcpu, gpa, kind, private, version)?;
        if r == GuestOutcome::Vc(SvmExitCode::PageNotValidated) && !self.config.validation_tracking {
            // A naive guest validates the page it took the #VC for and retries: exactly what a
            // hypervisor that swapped the frame behind a validated GPA needs (docs/attacks.md).
            self.stats.pvalidate += 1;
            if p.pvalidate(vcpu, gfn.gpa(), RmpPageSize::Size4K, true)?.is_done() {
                self.validated.insert(gfn.raw(), gfn.raw() + 1);
                r = p.access(vcpu, gpa, kind, private, version)?;
            }
        }
        match r {
            GuestOutcome::Vc(SvmExitCode::PageNotValidated) => {
                return Err(GuestError::Terminated { reason: TermReason::PageNotValidated, gpa });
            }
            GuestOutcome::Done(()) if private => match kind {
                AccessKind::Write => {
                    self.next_version += 1;
                    if self.holding.get(gfn.raw()) == 0 {
                        self.held += 1;
                    }
                    self.holding.set(gfn.raw(), version);
                }
                AccessKind::Read => {
                    let expected = self.holding.get(gfn.raw());
                    if expected != 0 && p.read_version(gfn) != Some(expected) {
                        self.stats.data_loss_pages += 1;
                        self.drop_data(gfn.raw(), 1);
                    }
                }
                AccessKind::Exec => {}
            },
            _ => {}
        }
        Ok(r)
    }

    /// A #VC 0x404 ("page not validated") for `gfn` that the guest did not cause (a hypervisor
    /// injecting it). A guest that tracks validation knows whether it validated the page; Linux has
    /// no handler for 0x404 and terminates either way. A naive guest validates the page and goes on
    /// (a PVALIDATE that finds it already validated changes nothing).
    pub fn inject_vc(&mut self, p: &mut dyn Platform, vcpu: u32, gfn: Gfn) -> Result<(), GuestError> {
        if self.config.validation_tracking {
            return Err(GuestError::Terminated { reason: TermReason::PageNotValidated, gpa: gfn.gpa() });
        }
        self.stats.pvalidate += 1;
        if p.pvalidate(vcpu, gfn.gpa(), RmpPageSize::Size4K, true)?.is_done() {
            self.validated.insert(gfn.raw(), gfn.raw() + 1);
        }
        Ok(())
    }

    /// Regain a 2M RMP entry for the region at `start` after a PSMASH (design §5): all its pages
    /// to shared (rescinding what was validated), a 2M PSC to private, PVALIDATE 2M. With
    /// `SaveRestore` the data pages are copied out before and written back after (their versions
    /// kept); with `Naive` they are not, and the region's data is lost. Re-coalescing does not end
    /// the guest's data: it means to keep it.
    pub fn recoalesce(
        &mut self,
        p: &mut dyn Platform,
        vcpu: u32,
        start: Gfn,
        mode: Recoalesce,
    ) -> Result<(), GuestError> {
        let per_2m = self.geometry.pages_per_2m();
        let s = start.raw();
        let saved: Vec<(u64, u64)> = self.holding.iter_range(s, per_2m).collect();
        let chunk = [(s, RmpPageSize::Size2M)];
        self.rescind(p, vcpu, &chunk)?;
        self.send_psc(p, vcpu, &chunk, false)?;
        self.send_psc(p, vcpu, &chunk, true)?;
        let before = self.stats.pvalidate;
        self.validate(p, vcpu, &chunk)?;
        if self.stats.pvalidate - before == 1 {
            self.stats.recoalesced += 1;
        } else {
            self.stats.recoalesce_failed += 1;
        }
        if mode == Recoalesce::SaveRestore {
            for (gfn, version) in saved {
                self.stats.pages_saved += 1;
                let r = p.access(vcpu, Gfn(gfn).gpa(), AccessKind::Write, true, version)?;
                if !r.is_done() {
                    return Err(GuestError::Terminated {
                        reason: TermReason::PageNotValidated,
                        gpa: Gfn(gfn).gpa(),
                    });
                }
            }
        }
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkResult {
    Done,
    SizeMismatch,
}
