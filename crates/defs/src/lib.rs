//! Logic-free SEV-SNP architectural definitions for snpsim.
//!
//! Layouts, numbers and encodings only, in the manner of openvmm's `x86defs`: address and frame
//! newtypes ([`addr`]), page sizes ([`page`]), RMP entry layouts ([`rmp`]), instruction return codes
//! and fault/exit codes ([`codes`]), and GHCB page-state-change encodings ([`ghcb`]). Behaviour lives
//! in `snpsim-hw` and above. Each item cites where its numbers come from.

pub mod addr;
pub mod codes;
pub mod ghcb;
pub mod page;
pub mod rmp;

pub use addr::{Gfn, Gpa, Hpa, Hva, PAGE_SHIFT, PAGE_SIZE_4K, Pfn, Vfn};
pub use codes::{NpfErrorCode, PfErrorCode, ReturnCode, SvmExitCode};
pub use page::{PageSize, RmpPageSize};
pub use rmp::{RmpAdjustOperand, RmpArchEntry, RmpEntryHi, RmpEntryLo, RmpEntryRaw, VmplPerms};
