//! How a run ended: its outcome (a result, not an error) and the reason for it.

/// The outcome of a run. An outcome is a result, not an error: a run whose outcome matches its
/// expectation succeeds whatever the outcome.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::Display,
)]
#[strum(serialize_all = "snake_case")]
pub enum Outcome {
    /// Every step ran.
    Completed,
    /// Memory registration was refused before the guest ran.
    VmRejected,
    /// KVM or the VMM hit a fault it could not resolve; the VM stopped.
    VmError,
    /// The guest terminated itself (failed PSC or PVALIDATE, unhandled #VC).
    GuestTerminated,
    /// A host access took an RMP #PF that its handler retries without progress: the VMM or vhost
    /// thread spins in the fault handler (RFC v4 10/40 on hugetlbfs).
    HostHang,
    /// The run hit its `step_budget`.
    StepBudgetExceeded,
}

impl Outcome {
    /// The contract name (`completed`, `vm_rejected`, ...).
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// Why a `vm_error` happened ([`Reason::cause`]).
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::Display,
)]
#[strum(serialize_all = "snake_case")]
pub enum Cause {
    /// The policy cannot resolve the fault, as modelled: a result about the policy.
    Unresolvable,
    /// An RMP instruction KVM issued failed where KVM's code does not tolerate it: a bug in
    /// KVM or in snpsim, also reported as invariant 10.
    InstructionFailed,
}

/// Why a run did not complete: a closed set, each reason belonging to one outcome (and, for
/// `vm_error`, one cause); [`Reason::outcome`] says which.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::Display,
)]
#[strum(serialize_all = "kebab-case")]
pub enum Reason {
    /// `vm_rejected`: the policy refuses the backing at memory registration (RFC v6 refused
    /// `VM_HUGETLB` VMAs).
    BackingRefused,
    /// `vm_error`, unresolvable: the policy resolves a size mismatch by splitting the host
    /// mapping, which cannot be split (hugetlbfs: `hugetlb_fault` has no split path) or is
    /// already 4K.
    HostSplitImpossible,
    /// `vm_error`, unresolvable: the policy demotes the NPT leaf, which is already at the RMP
    /// level.
    NptAtRmpLevel,
    /// `vm_error`, unresolvable: a SIZEM #NPF over a 4K RMP entry, which the policy's handler
    /// leaves as it is (upstream `sev_handle_rmp_fault` only PSMASHes a 2M entry).
    #[strum(serialize = "rmp-entry-4k")]
    RmpEntry4k,
    /// `vm_error`, unresolvable: a #NPF no handler resolves (a non-RMP fault on a present leaf,
    /// an RMP fault on an unmapped GFN, or one that is neither a size mismatch nor an implicit
    /// conversion).
    UnhandledNpf,
    /// `vm_error`, unresolvable: the GFN has no backing (outside guest memory — MMIO is not
    /// modelled —, outside the VMA, no guest_memfd, no NPT leaf fits).
    UnbackedGfn,
    /// `vm_error`, unresolvable: an adversarial KVM refuses the conversion an access needs.
    AdversaryRefused,
    /// `vm_error`, unresolvable: an implicit conversion (an access whose C-bit disagrees with
    /// the page's state) that the policy refuses, as it refuses the page-state change.
    PscRefused,
    /// `vm_error`, unresolvable: one guest instruction still faults after 64 #NPFs that KVM
    /// handled (`MAX_FAULTS_PER_ACCESS`).
    Livelock,
    /// `vm_error`, unresolvable: a host memory operation KVM needed failed (out of memory).
    HostError,
    /// `vm_error`, instruction failed: an RMPUPDATE KVM issued failed.
    RmpupdateFailed,
    /// `vm_error`, instruction failed: a PSMASH KVM issued failed where its code does not
    /// tolerate the failure.
    PsmashFailed,
    /// `guest_terminated`: a page-state change failed (Linux `GHCB_TERM_PSC`).
    PscFailed,
    /// `guest_terminated`: PVALIDATE failed (Linux `GHCB_TERM_PVALIDATE`).
    PvalidateFailed,
    /// `guest_terminated`: a #VC 0x404 (page not validated), which Linux does not handle.
    PageNotValidated,
    /// `host_hang`: a host write re-faults forever (RFC v4 10/40: `hugetlb_fault` ignores
    /// `FAULT_FLAG_PAGE_SPLIT`).
    HostFaultLoop,
    /// `step_budget_exceeded`: the run hit `vm.step_budget`.
    StepBudget,
}

use snpsim_guest::TermReason;
use snpsim_kvm::{KvmError, KvmInsn, PscRefusal, Unresolved};

impl Reason {
    /// The outcome this reason ends a run with.
    pub const fn outcome(self) -> Outcome {
        match self {
            Reason::BackingRefused => Outcome::VmRejected,
            Reason::HostSplitImpossible
            | Reason::NptAtRmpLevel
            | Reason::RmpEntry4k
            | Reason::UnhandledNpf
            | Reason::UnbackedGfn
            | Reason::AdversaryRefused
            | Reason::PscRefused
            | Reason::Livelock
            | Reason::HostError
            | Reason::RmpupdateFailed
            | Reason::PsmashFailed => Outcome::VmError,
            Reason::PscFailed | Reason::PvalidateFailed | Reason::PageNotValidated => {
                Outcome::GuestTerminated
            }
            Reason::HostFaultLoop => Outcome::HostHang,
            Reason::StepBudget => Outcome::StepBudgetExceeded,
        }
    }

    /// The cause of a `vm_error` reason (`None` for the other outcomes).
    pub const fn cause(self) -> Option<Cause> {
        match self {
            Reason::RmpupdateFailed | Reason::PsmashFailed => Some(Cause::InstructionFailed),
            r if matches!(r.outcome(), Outcome::VmError) => Some(Cause::Unresolvable),
            _ => None,
        }
    }

    /// The reason of an RMP instruction KVM issued that failed.
    const fn of_insn(insn: KvmInsn) -> Reason {
        match insn {
            KvmInsn::Rmpupdate => Reason::RmpupdateFailed,
            KvmInsn::Psmash => Reason::PsmashFailed,
        }
    }

    /// The reason a KVM failure stops the VM with, from its kind (never its text).
    pub const fn of_kvm(e: &KvmError) -> Reason {
        match e {
            KvmError::Rejected { .. } => Reason::BackingRefused,
            KvmError::Unresolvable { why, .. } => match why {
                Unresolved::HostSplitImpossible => Reason::HostSplitImpossible,
                Unresolved::NptAtRmpLevel => Reason::NptAtRmpLevel,
                Unresolved::RmpEntry4k => Reason::RmpEntry4k,
                Unresolved::UnhandledNpf => Reason::UnhandledNpf,
                Unresolved::UnbackedGfn => Reason::UnbackedGfn,
                Unresolved::AdversaryRefused => Reason::AdversaryRefused,
            },
            KvmError::PscRefused(PscRefusal::Policy { .. }) => Reason::PscRefused,
            KvmError::PscRefused(PscRefusal::Instruction { instruction, .. })
            | KvmError::Instruction { instruction, .. } => Reason::of_insn(*instruction),
            KvmError::Host(_) => Reason::HostError,
        }
    }

    /// The reason of a guest's self-termination.
    pub const fn of_termination(t: TermReason) -> Reason {
        match t {
            TermReason::Psc => Reason::PscFailed,
            TermReason::Pvalidate => Reason::PvalidateFailed,
            TermReason::PageNotValidated => Reason::PageNotValidated,
        }
    }
}

/// How a run that did not complete ended: a typed reason (which fixes the outcome and, for
/// `vm_error`, the cause) and the details in words (GFN or frame, the rule involved).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ending {
    /// Why.
    pub reason: Reason,
    /// The details, for people: nothing classifies a run by this text.
    pub detail: String,
}

impl Ending {
    /// An ending for `reason`, described by `detail`.
    pub fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Ending { reason, detail: detail.into() }
    }

    /// The ending a KVM failure causes.
    pub fn of_kvm(e: &KvmError) -> Self {
        Ending::new(Reason::of_kvm(e), e.to_string())
    }

    /// The outcome.
    pub const fn outcome(&self) -> Outcome {
        self.reason.outcome()
    }

    /// The cause, for a `vm_error`.
    pub const fn cause(&self) -> Option<Cause> {
        self.reason.cause()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::Named;

    #[test]
    fn every_reason_is_kebab_case_and_belongs_to_one_non_completed_outcome() {
        for &r in Reason::all() {
            let name = r.name();
            assert!(
                !name.is_empty()
                    && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !name.starts_with('-')
                    && !name.ends_with('-')
                    && !name.contains("--"),
                "{name}"
            );
            assert_ne!(r.outcome(), Outcome::Completed, "{name}");
            assert_eq!(r.cause().is_some(), r.outcome() == Outcome::VmError, "{name}");
            assert_eq!(Reason::from_name(name), Some(r));
        }
        // Every non-completed outcome has at least one reason.
        for &o in Outcome::all().iter().filter(|&&o| o != Outcome::Completed) {
            assert!(Reason::all().iter().any(|r| r.outcome() == o), "{o}");
        }
        assert_eq!(Reason::RmpupdateFailed.cause(), Some(Cause::InstructionFailed));
        assert_eq!(Reason::HostSplitImpossible.cause(), Some(Cause::Unresolvable));
        assert_eq!(Reason::PscFailed.cause(), None);
    }

    #[test]
    fn kvm_failures_map_by_kind() {
        use snpsim_defs::{Gfn, PageSize, Pfn, ReturnCode};
        use snpsim_host::VmaBacking;
        let insn = KvmError::Instruction {
            instruction: KvmInsn::Psmash,
            pfn: Pfn(0x200),
            code: ReturnCode::FailInput,
        };
        assert_eq!(Ending::of_kvm(&insn).cause(), Some(Cause::InstructionFailed));
        assert_eq!(Reason::of_kvm(&insn), Reason::PsmashFailed);
        let refused = KvmError::PscRefused(PscRefusal::Instruction {
            instruction: KvmInsn::Rmpupdate,
            pfn: Pfn(0x200),
            code: ReturnCode::FailOverlap,
            level: PageSize::Size2M,
        });
        assert_eq!(Reason::of_kvm(&refused), Reason::RmpupdateFailed);
        let policy =
            KvmError::PscRefused(PscRefusal::Policy { policy: "p", backing: VmaBacking::Hugetlbfs2m });
        assert_eq!(Reason::of_kvm(&policy).cause(), Some(Cause::Unresolvable));
        let rejected = KvmError::Rejected { policy: "p", backing: VmaBacking::Hugetlbfs2m };
        let e = Ending::of_kvm(&rejected);
        assert_eq!((e.outcome(), e.reason), (Outcome::VmRejected, Reason::BackingRefused));
        assert!(e.detail.contains("hugetlbfs-2m"), "the detail uses the CLI's names: {}", e.detail);
        let unresolved =
            KvmError::Unresolvable { gfn: Gfn(5), why: Unresolved::RmpEntry4k, detail: "x".into() };
        assert_eq!(Reason::of_kvm(&unresolved), Reason::RmpEntry4k);
    }
}
