//! What a guest can ask of the machine it runs on: VMGEXITs and the guest-side RMP instructions.

use snpsim_defs::ghcb::{GhcbMsrPscRequest, GhcbMsrPscResponse, PscBuffer};
use snpsim_defs::{Gfn, Gpa, RmpAdjustOperand, RmpPageSize};
use snpsim_hw::{AccessKind, GuestOutcome, PvalidateStatus};

/// The machine stopped the VM (a VMM or KVM failure); the platform keeps the reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Stop;

/// What the guest sees of the platform. The platform resolves every #NPF itself (through KVM) and
/// returns only what the guest observes: a result, a failure code or a #VC.
pub trait Platform {
    /// VMGEXIT with an MSR-protocol page-state-change request.
    fn psc_msr(&mut self, vcpu: u32, req: GhcbMsrPscRequest) -> Result<GhcbMsrPscResponse, Stop>;

    /// VMGEXIT with an NAE page-state-change buffer; returns SW_EXITINFO2.
    fn psc_ghcb(&mut self, vcpu: u32, buf: &mut PscBuffer) -> Result<u64, Stop>;

    /// PVALIDATE of the page at `gpa`.
    fn pvalidate(
        &mut self,
        vcpu: u32,
        gpa: Gpa,
        size: RmpPageSize,
        validate: bool,
    ) -> Result<GuestOutcome<PvalidateStatus>, Stop>;

    /// Whether the platform executes runs of 4K PVALIDATEs ([`Platform::pvalidate_run`]); a
    /// guest asks for them only then. A platform that interleaves vCPUs instruction by instruction
    /// does not.
    fn runs(&self) -> bool {
        false
    }

    /// A run of 4K PVALIDATEs of `pages` consecutive pages from `gpa`, executed in order for as
    /// long as each retires `Changed` (and the platform can execute them as one run): how many
    /// did. The page after them is left untouched, for the guest to execute alone. By default
    /// none.
    fn pvalidate_run(&mut self, _vcpu: u32, _gpa: Gpa, _pages: u64, _validate: bool) -> Result<u64, Stop> {
        Ok(0)
    }

    /// RMPADJUST of the page at `gpa`.
    fn rmpadjust(
        &mut self,
        vcpu: u32,
        gpa: Gpa,
        size: RmpPageSize,
        op: RmpAdjustOperand,
    ) -> Result<GuestOutcome<()>, Stop>;

    /// A memory access; a write of `version` stores it as the page's content.
    fn access(
        &mut self,
        vcpu: u32,
        gpa: Gpa,
        kind: AccessKind,
        private: bool,
        version: u64,
    ) -> Result<GuestOutcome<()>, Stop>;

    /// What a private read of `gfn` returns: the version last written, or `None` when the page's
    /// contents were scrambled (its RMP owner or key changed since).
    fn read_version(&self, gfn: Gfn) -> Option<u64>;
}
