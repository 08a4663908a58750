//! The guest model's state: what it validated, what data it holds, and its counters. The
//! operations that change it are tasks ([`crate::task`]) driven by `ops.rs`.

use snpsim_defs::{Gfn, RmpPageSize, SvmExitCode};
use snpsim_hw::{AccessKind, Geometry, GuestOutcome};
use snpsim_stores::{PageMap, PageSet};

use crate::config::{GuestConfig, Protocol};
use crate::error::{GuestError, GuestStats, TermReason};

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

    /// The VM was destroyed (the `teardown` step): none of its memory is the guest's any more, so
    /// it believes no page validated and holds no data.
    pub fn destroyed(&mut self) {
        self.validated = PageSet::new();
        self.holding = PageMap::new_flat(self.geometry.pages_per_2m());
        self.held = 0;
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
        self.holding.iter().map(|(g, v)| (Gfn::new(g), v))
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

    pub(crate) fn span(&self, size: RmpPageSize) -> u64 {
        self.geometry.pages(size.page_size())
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
}
