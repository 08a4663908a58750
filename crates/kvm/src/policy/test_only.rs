//! `test-only`: a policy that exists only in kvm's unit tests, to prove the seam — a policy is
//! this one file plus one registry line, and KVM's handlers reach it through the same paths as
//! the real ones, with nothing else changed (the test is the crate root's, `lib.rs`).

use std::sync::atomic::{AtomicU64, Ordering};

use snpsim_defs::{Gfn, PageSize};

use super::{Era, Policy, VmOps};
use crate::error::KvmError;
use crate::psc::PscRange;

/// How often KVM called each hook of [`TestOnly`] (one test uses the policy).
static RESOLVED: AtomicU64 = AtomicU64::new(0);
static CONVERTED: AtomicU64 = AtomicU64::new(0);

/// Legacy memory; an RMP size mismatch is resolved by demoting the NPT leaf to 4K; every hook is
/// counted on its way to KVM's common mechanism.
#[derive(Clone, Copy, Debug)]
pub struct TestOnly;

impl TestOnly {
    /// How often KVM called [`Policy::convert`] and [`Policy::resolve_npt_larger`] of this policy.
    pub fn calls() -> (u64, u64) {
        (CONVERTED.load(Ordering::Relaxed), RESOLVED.load(Ordering::Relaxed))
    }
}

impl Policy for TestOnly {
    fn name(&self) -> &'static str {
        "test-only"
    }

    fn era(&self) -> Era {
        Era::Legacy
    }

    fn summary(&self) -> &'static str {
        "kvm's unit tests only: demote the NPT leaf on a size mismatch, counting every hook"
    }

    fn convert(&self, vm: &mut dyn VmOps, range: PscRange) -> Result<(), KvmError> {
        CONVERTED.fetch_add(1, Ordering::Relaxed);
        vm.convert_rmp(range)
    }

    fn resolve_npt_larger(&self, vm: &mut dyn VmOps, gfn: Gfn) -> Result<(), KvmError> {
        RESOLVED.fetch_add(1, Ordering::Relaxed);
        vm.demote_npt(gfn, PageSize::Size4K)
    }
}
