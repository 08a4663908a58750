//! The SEV-SNP CPU as snpsim models it: page geometry, the RMP with bit-exact entries, the RMP
//! instructions (RMPUPDATE, PSMASH, PVALIDATE, RMPADJUST, RMPQUERY, RMPREAD, RMPOPT) and the RMP
//! checks of guest and host accesses.
//!
//! Hardware behaviour lives here and nowhere else: host, KVM and guest layers call these checks
//! and never re-implement them. The rules and their sources are listed in `docs/semantics.md`.

pub mod geometry;
pub mod model;
pub mod mutant;
pub mod reference;
pub mod rmp;
pub mod rmpopt;

pub use geometry::Geometry;
pub use model::{
    AccessKind, GuestAccess, GuestContext, GuestOutcome, PvalidateStatus, RmpConfig, RmpModel,
    RmpQueryResult, run_4k_operand,
};
pub use mutant::Mutant;
pub use rmpopt::{RmpStats, RmpoptScan, RmpoptVerify};
