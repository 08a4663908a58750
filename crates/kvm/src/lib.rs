//! KVM for SEV-SNP guests as snpsim models it.
//!
//! One VM: its memslot, nested page table ([`npt`]), memory attributes ([`attributes`]), the
//! page-state-change protocols ([`psc`]), the #NPF and conversion handlers ([`vm`]) and the
//! policies compared by the 2021 debate and upstream ([`policy`]). Hardware checks and
//! instructions come from `snpsim-hw`; host memory from `snpsim-host`. KVM knows nothing of the
//! guest's internals.

pub mod attributes;
pub mod demotions;
pub mod error;
pub mod npt;
pub mod policy;
pub mod psc;
pub mod stats;
pub mod vm;

pub use error::{KvmError, KvmInsn, PscRefusal, Unresolved};
pub use policy::{Era, Policy};
pub use stats::{KvmStats, Races};
pub use vm::{Kvm, KvmConfig, NpfStep, PscAdversary, PsmashPlan};
