//! The guest model: bookkeeping and the guest operations (`docs/semantics.md` G1–G7).

use snpsim_defs::{Gfn, Gpa, RmpAdjustOperand, RmpPageSize, SvmExitCode};
use snpsim_hw::{AccessKind, Geometry, GuestOutcome, PvalidateStatus};
use snpsim_stores::{PageMap, PageSet};

use crate::task::{Chunks, GuestTask, TaskResult};
use crate::{Platform, Stop};

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

/// How the guest orders rescinding, the page-state change and validation over a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PscOrder {
    /// Request by request, as Linux does since "x86/sev: Use large PSC requests if applicable"
    /// (upstream 15d9088779b8): over MSR, page by page (`__page_state_change`, formerly
    /// `early_set_pages_state`: rescind, PSC, or PSC, PVALIDATE, for each 4K page, always at 4K);
    /// over the GHCB, batch by batch of at most `ghcb_entries` entries (`__set_pages_state`:
    /// rescind the batch then send it, or send it then validate it, `pvalidate_pages` taking the
    /// batch's descriptor).
    PerRequest,
    /// The whole range at once: rescind all of it, send all of it (in as many requests as it
    /// takes), validate all of it. Linux before 15d9088779b8: `snp_set_memory_shared` called
    /// `pvalidate_pages` over the range before `set_pages_state`, `snp_set_memory_private` after
    /// it, and `early_snp_set_memory_{shared,private}` did the same around the MSR loop of
    /// `early_set_pages_state`.
    WholeRange,
}

/// What the guest does to regain a 2M RMP entry after a PSMASH (`docs/semantics.md` G3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Recoalesce {
    /// Never.
    None,
    /// Copy the region's data out and back around the conversion.
    SaveRestore,
    /// Convert without saving: the region's data is lost.
    Naive,
}

/// The guest's behaviour (a scenario's `[guest]` fields and preset, `docs/semantics.md` G7).
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
    /// The order of rescind, PSC and PVALIDATE over a range.
    pub order: PscOrder,
    /// With `protocol` GHCB: the guest's first page-state change runs before it has registered
    /// a GHCB and uses the MSR protocol (the 2021 series: `early_set_pages_state` "can be called
    /// before the GHCB is established"); it registers its GHCB when that change starts, and
    /// every later one uses the NAE event.
    pub msr_until_ghcb: bool,
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

impl TermReason {
    /// The report name (kebab-case): `psc-failed`, `pvalidate-failed`, `page-not-validated`.
    pub const fn name(self) -> &'static str {
        match self {
            TermReason::Psc => "psc-failed",
            TermReason::Pvalidate => "pvalidate-failed",
            TermReason::PageNotValidated => "page-not-validated",
        }
    }
}

/// A guest operation that did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GuestError {
    /// The guest terminated itself.
    #[error("guest terminated ({}) at GPA {gpa}", reason.name())]
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
    /// Reads of private pages holding data that found scrambled or stale contents (`docs/semantics.md` G4).
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
    pub(crate) geometry: Geometry,
    pages: u64,
    pub(crate) validated: PageSet,
    /// Pages holding data, with the version the guest last wrote (0 = no data; versions start
    /// at 1). Stored per 2M region: memory the guest never wrote costs O(regions).
    pub(crate) holding: PageMap<u64>,
    /// Pages holding data (non-zero entries of `holding`).
    pub(crate) held: u64,
    pub(crate) next_version: u64,
    /// Whether the guest has registered its GHCB (see [`GuestConfig::msr_until_ghcb`]).
    ghcb_registered: bool,
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
            validated: PageSet::new(),
            holding: PageMap::new_flat(geometry.pages_per_2m()),
            held: 0,
            next_version: 1,
            ghcb_registered: !config.msr_until_ghcb,
            stats: GuestStats::default(),
            mutant: None,
        }
    }

    /// Plant a bug (checker tests only; see `snpsim_hw::Mutant`).
    pub fn set_mutant(&mut self, mutant: Option<snpsim_hw::Mutant>) {
        self.mutant = mutant;
    }

    /// Stop tracking `start..end` as validated (unless a planted bug keeps it tracked).
    pub(crate) fn untrack(&mut self, start: u64, end: u64) {
        if !snpsim_hw::Mutant::GuestKeepsTrackingShared.planted(self.mutant) {
            self.validated.remove(start, end);
        }
    }

    /// The protocol the guest's next page-state change uses: MSR while it has no GHCB (see
    /// [`GuestConfig::msr_until_ghcb`]), else the configured one.
    pub fn psc_protocol(&self) -> Protocol {
        if self.ghcb_registered { self.config.protocol } else { Protocol::Msr }
    }

    /// Start a page-state change: its protocol, after which the guest has its GHCB (the 2021
    /// guest registers it once its first, early, change is under way).
    pub(crate) fn start_psc(&mut self) -> Protocol {
        let protocol = self.psc_protocol();
        self.ghcb_registered = true;
        protocol
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
    pub fn validated_set(&self) -> &PageSet {
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

    /// Bytes of memory the guest model's state takes.
    pub fn state_bytes(&self) -> usize {
        self.validated.state_bytes() + self.holding.state_bytes()
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
    pub(crate) fn drop_data(&mut self, start: u64, pages: u64) {
        self.held -= self.holding.count_in(start, pages);
        self.holding.set_range(start, pages, 0);
    }

    /// Split `start..start + pages` into PSC/PVALIDATE chunks: 2M for aligned whole 2M runs when
    /// the granularity is 2M (Linux `__set_pages_state`), else 4K.
    pub(crate) fn chunks(&self, start: u64, pages: u64, gran: Granularity) -> Chunks {
        Chunks::new(start, start + pages, self.geometry.pages_per_2m(), gran == Granularity::M2)
    }

    pub(crate) fn span(&self, size: RmpPageSize) -> u64 {
        self.geometry.pages(size.page_size())
    }

    /// The guest's whole page-state change of a range (the `psc` step); see [`GuestTask::psc`].
    pub fn psc(
        &mut self,
        p: &mut dyn Platform,
        vcpu: u32,
        start: Gfn,
        pages: u64,
        private: bool,
        gran: Option<Granularity>,
    ) -> Result<(), GuestError> {
        let task = GuestTask::psc(self, start, pages, private, gran);
        self.run(p, vcpu, task).map(|_| ())
    }

    /// Acceptance of a range (the `accept` step): PSC to private and validation in the guest's
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

    /// The bare PVALIDATE instruction; see [`GuestTask::pvalidate`].
    pub fn pvalidate(
        &mut self,
        p: &mut dyn Platform,
        vcpu: u32,
        gfn: Gfn,
        size: RmpPageSize,
        validate: bool,
    ) -> Result<GuestOutcome<PvalidateStatus>, GuestError> {
        match self.run(p, vcpu, GuestTask::pvalidate(gfn, size, validate))? {
            TaskResult::Pvalidate(r) => Ok(r),
            other => unreachable!("PVALIDATE ended with {other:?}"),
        }
    }

    /// One bare page-state-change request; see [`GuestTask::psc_request`]. Returns SW_EXITINFO2.
    pub fn psc_request(
        &mut self,
        p: &mut dyn Platform,
        vcpu: u32,
        gfn: Gfn,
        size: RmpPageSize,
        private: bool,
        cur_page: u16,
    ) -> Result<u64, GuestError> {
        match self.run(p, vcpu, GuestTask::psc_request(gfn, size, private, cur_page))? {
            TaskResult::PscRequest(info2) => Ok(info2),
            other => unreachable!("a PSC request ended with {other:?}"),
        }
    }

    /// The bare RMPADJUST instruction; see [`GuestTask::rmpadjust`].
    pub fn rmpadjust(
        &mut self,
        p: &mut dyn Platform,
        vcpu: u32,
        gfn: Gfn,
        size: RmpPageSize,
        op: RmpAdjustOperand,
    ) -> Result<GuestOutcome<()>, GuestError> {
        match self.run(p, vcpu, GuestTask::rmpadjust(gfn, size, op))? {
            TaskResult::Plain(r) => Ok(r),
            other => unreachable!("RMPADJUST ended with {other:?}"),
        }
    }

    /// A memory access; see [`GuestTask::access`].
    pub fn access(
        &mut self,
        p: &mut dyn Platform,
        vcpu: u32,
        gpa: Gpa,
        kind: AccessKind,
        private: bool,
    ) -> Result<GuestOutcome<()>, GuestError> {
        let task = GuestTask::access(gpa, kind, private);
        match self.run(p, vcpu, task)? {
            TaskResult::Plain(r) => Ok(r),
            other => unreachable!("an access ended with {other:?}"),
        }
    }

    /// The guest's side of a finished access: a #VC for an unvalidated page terminates it; a
    /// completed private write makes the page hold `version`; a completed private read of a page
    /// holding data that `read` something else, or an instruction fetch from one, counts a loss
    /// (`docs/semantics.md` G4).
    pub(crate) fn complete_access(
        &mut self,
        gfn: Gfn,
        kind: AccessKind,
        private: bool,
        version: u64,
        outcome: GuestOutcome<()>,
        read: Option<u64>,
    ) -> Result<(), GuestError> {
        match outcome {
            GuestOutcome::Vc(SvmExitCode::PageNotValidated) => {
                return Err(GuestError::Terminated { reason: TermReason::PageNotValidated, gpa: gfn.gpa() });
            }
            GuestOutcome::Done(()) if private => match kind {
                AccessKind::Write => {
                    if self.holding.get(gfn.raw()) == 0 {
                        self.held += 1;
                    }
                    self.holding.set(gfn.raw(), version);
                }
                // An instruction fetch reads the page as a load does: a guest executing code
                // it wrote there sees the loss the same way.
                AccessKind::Read | AccessKind::Exec => {
                    let expected = self.holding.get(gfn.raw());
                    if expected != 0 && read != Some(expected) {
                        self.stats.data_loss_pages += 1;
                        self.drop_data(gfn.raw(), 1);
                    }
                }
            },
            _ => {}
        }
        Ok(())
    }

    /// A #VC 0x404 that the guest did not cause; see [`GuestTask::inject_vc`].
    pub fn inject_vc(&mut self, p: &mut dyn Platform, vcpu: u32, gfn: Gfn) -> Result<(), GuestError> {
        self.run(p, vcpu, GuestTask::inject_vc(gfn)).map(|_| ())
    }

    /// Regain a 2M RMP entry for the region at `start`; see [`GuestTask::recoalesce`].
    pub fn recoalesce(
        &mut self,
        p: &mut dyn Platform,
        vcpu: u32,
        start: Gfn,
        mode: Recoalesce,
    ) -> Result<(), GuestError> {
        let task = GuestTask::recoalesce(self, start, mode);
        self.run(p, vcpu, task).map(|_| ())
    }
}
