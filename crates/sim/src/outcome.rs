//! How a run ended (design §8 outcomes).

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
    /// The run hit its `step_budget`.
    StepBudgetExceeded,
}

impl Outcome {
    /// Every outcome.
    pub const ALL: [Outcome; 5] = [
        Outcome::Completed,
        Outcome::VmRejected,
        Outcome::VmError,
        Outcome::GuestTerminated,
        Outcome::StepBudgetExceeded,
    ];

    /// The contract name (`completed`, `vm_rejected`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::VmRejected => "vm_rejected",
            Outcome::VmError => "vm_error",
            Outcome::GuestTerminated => "guest_terminated",
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
