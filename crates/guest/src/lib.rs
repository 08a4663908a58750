//! SEV-SNP guest models for snpsim: what a Linux (or other) guest does around page-state changes.
//!
//! [`Guest`] keeps the guest's own bookkeeping — which pages it validated (validation tracking),
//! which pages hold its data and at which version — and performs the guest operations of a
//! scenario's steps (`docs/semantics.md` G1–G7) through a [`Platform`]: page-state changes in
//! Linux's order (rescind before a PSC to shared; PSC, then PVALIDATE with the 2M→4K fallback, for
//! private), acceptance, bare PVALIDATE and RMPADJUST, accesses, and re-coalescing a PSMASHed 2M
//! region. It knows nothing of the host or KVM.

pub mod accept;
mod config;
mod error;
mod guest;
mod ops;
pub mod platform;
pub mod task;

pub use accept::{BootLayout, UnacceptedMemory, swiotlb_bytes};
pub use config::{Granularity, GuestConfig, Protocol, PscOrder, Recoalesce};
pub use error::{GuestError, GuestStats, TermReason};
pub use guest::Guest;
pub use platform::{Platform, Stop};
pub use task::{GuestTask, Reply, Request, TaskResult, TaskStep};
