//! How a run ended: its outcome (a result, not an error) and the reason for it.

use std::fmt;

/// The outcome of a run. An outcome is a result, not an error: a run whose outcome matches its
/// expectation succeeds whatever the outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
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
    /// Every outcome.
    pub const ALL: [Outcome; 6] = [
        Outcome::Completed,
        Outcome::VmRejected,
        Outcome::VmError,
        Outcome::GuestTerminated,
        Outcome::HostHang,
        Outcome::StepBudgetExceeded,
    ];

    /// The contract name (`completed`, `vm_rejected`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::VmRejected => "vm_rejected",
            Outcome::VmError => "vm_error",
            Outcome::GuestTerminated => "guest_terminated",
            Outcome::HostHang => "host_hang",
            Outcome::StepBudgetExceeded => "step_budget_exceeded",
        }
    }

    /// The outcome named `name`.
    pub fn from_name(name: &str) -> Option<Outcome> {
        Outcome::ALL.into_iter().find(|o| o.name() == name)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
