//! How KVM's handlers fail: the errors the VMM sees, why a fault stayed unresolved, and why a
//! page-state change was refused. Closed sets, so that callers classify a failure by its kind.

use snpsim_defs::{Gfn, PageSize, Pfn, ReturnCode};
use snpsim_host::{HostError, VmaBacking};

/// A failure KVM cannot hide from the guest or the VMM.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KvmError {
    /// Memory registration was refused (outcome `vm_rejected`): RFC v6 refused hugetlbfs VMAs
    /// at KVM_MEMORY_ENCRYPT_REG_REGION (`VM_HUGETLB` check on the registered HVA range).
    #[error("{policy} refuses to register {} memory for an SNP guest", backing.name())]
    Rejected {
        /// The policy that refused.
        policy: &'static str,
        /// The backing refused.
        backing: VmaBacking,
    },
    /// A fault KVM cannot resolve (outcome `vm_error`, cause `unresolvable`).
    #[error("unresolvable #NPF at GFN {gfn}: {detail}")]
    Unresolvable {
        /// The faulting GFN.
        gfn: Gfn,
        /// Why, as a closed set.
        why: Unresolved,
        /// The same in words, with the values involved.
        detail: String,
    },
    /// A page-state change KVM refuses; the guest is told, not the VMM (outside a PSC, on an
    /// implicit conversion, the VM stops).
    #[error("page-state change refused: {0}")]
    PscRefused(PscRefusal),
    /// An RMP instruction KVM issued failed (outcome `vm_error`, cause `instruction_failed`).
    #[error("{instruction} of frame {pfn} failed with {}", code.name())]
    Instruction {
        /// RMPUPDATE or PSMASH.
        instruction: KvmInsn,
        /// The frame.
        pfn: Pfn,
        /// The return code.
        code: ReturnCode,
    },
    /// A host memory operation failed.
    #[error(transparent)]
    Host(#[from] HostError),
}

/// The RMP instructions KVM issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KvmInsn {
    /// RMPUPDATE.
    Rmpupdate,
    /// PSMASH.
    Psmash,
}

impl KvmInsn {
    /// The mnemonic.
    pub const fn name(self) -> &'static str {
        match self {
            KvmInsn::Rmpupdate => "RMPUPDATE",
            KvmInsn::Psmash => "PSMASH",
        }
    }
}

impl std::fmt::Display for KvmInsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why KVM could not resolve a #NPF: a closed set, so that callers classify a failure by its
/// kind, never by its text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unresolved {
    /// The policy splits the host mapping, and it cannot be split (hugetlbfs: `hugetlb_fault`
    /// has no split path) or is already 4K.
    HostSplitImpossible,
    /// The policy demotes the NPT leaf, and it is already at the RMP level.
    NptAtRmpLevel,
    /// A SIZEM fault over a 4K RMP entry that the policy's handler does not act on (upstream
    /// `sev_handle_rmp_fault` only PSMASHes a 2M entry): the fault would repeat.
    RmpEntry4k,
    /// A #NPF no handler resolves: a non-RMP fault on a present leaf, an RMP fault on an unmapped
    /// GFN, or an RMP fault that is neither a size mismatch nor an implicit conversion.
    UnhandledNpf,
    /// The GFN has no backing: outside guest memory (MMIO is not modelled), outside the VMA, no
    /// guest_memfd, or no NPT leaf fits.
    UnbackedGfn,
    /// An adversarial KVM refuses the conversion the guest's access needs.
    AdversaryRefused,
}

/// Why KVM refused a page-state change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum PscRefusal {
    /// The policy refuses private pages on this backing (`fail-psc-hugetlbfs`).
    #[error("{policy} refuses private {} pages", backing.name())]
    Policy {
        /// The policy.
        policy: &'static str,
        /// The VMA's backing.
        backing: VmaBacking,
    },
    /// An RMP instruction of the conversion failed, which fails the request (RFC v4's
    /// `__snp_handle_page_state_change` returns the error to the guest).
    #[error("{instruction} of frame {pfn} failed with {} at {}", code.name(), level.name())]
    Instruction {
        /// RMPUPDATE or PSMASH.
        instruction: KvmInsn,
        /// The frame.
        pfn: Pfn,
        /// The return code.
        code: ReturnCode,
        /// The level the conversion ran at.
        level: PageSize,
    },
}

/// An [`Unresolved::UnbackedGfn`] failure at `gfn`.
pub(crate) fn unbacked(gfn: Gfn, detail: &str) -> KvmError {
    KvmError::Unresolvable { gfn, why: Unresolved::UnbackedGfn, detail: detail.to_owned() }
}
