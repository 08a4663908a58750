//! How a guest operation ends when it does not complete, and the guest's counters.

use snpsim_defs::Gpa;

use crate::platform::Stop;

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
