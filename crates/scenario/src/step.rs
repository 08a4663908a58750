//! Scripted steps (`[[step]]`): guest and host operations, run in order.

use snpsim_defs::{Gpa, RmpPageSize, VmplPerms};

use super::names::{AccessKind, Granularity, HostVia, PageState, Recoalesce};

/// The `op` of a step: guest operations first, then host operations.
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
pub enum StepKind {
    /// The guest's whole page-state change, as Linux does it.
    #[strum(serialize = "psc")]
    Psc,
    /// One bare PVALIDATE instruction.
    #[strum(serialize = "pvalidate")]
    Pvalidate,
    /// One bare RMPADJUST instruction.
    #[strum(serialize = "rmpadjust")]
    Rmpadjust,
    /// One bare page-state-change request of one entry, as given.
    #[strum(serialize = "psc_request")]
    PscRequest,
    /// A guest memory access to each 4K page of a range.
    #[strum(serialize = "access")]
    Access,
    /// The guest's acceptance of a range (PSC to private and validation).
    #[strum(serialize = "accept")]
    Accept,
    /// The guest regains a 2M RMP entry after PSMASH.
    #[strum(serialize = "recoalesce")]
    Recoalesce,
    /// A host write to one guest page.
    #[strum(serialize = "host_write")]
    HostWrite,
    /// A host read of one guest page.
    #[strum(serialize = "host_read")]
    HostRead,
    /// The host takes an extra reference on an in-place guest_memfd page.
    #[strum(serialize = "host_pin")]
    HostPin,
    /// The host drops an extra reference on an in-place guest_memfd page.
    #[strum(serialize = "host_unpin")]
    HostUnpin,
    /// The host splits the huge page holding a guest page.
    #[strum(serialize = "host_split")]
    HostSplit,
    /// The host collapses the range holding a guest page into a huge page.
    #[strum(serialize = "host_collapse")]
    HostCollapse,
    /// The VMM punches a hole in guest_memfd (gmem era).
    #[strum(serialize = "punch_hole")]
    PunchHole,
    /// In an interleaved run, every vCPU and the host finish the steps before it first.
    #[strum(serialize = "barrier")]
    Barrier,
    /// The VMM destroys the VM and releases its guest_memfd (gmem era; the last step).
    #[strum(serialize = "teardown")]
    Teardown,
}

/// One scripted step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// 1-based line of the step's `[[step]]` header in the file (for messages); for a step
    /// replaced whole by a `--set` override, the override's 1-based index.
    pub line: usize,
    /// The vCPU that runs it (`vcpu`, default 0; always `< vm.vcpus`).
    pub vcpu: u32,
    /// The operation and its fields.
    pub op: StepOp,
}

/// The operation of a step, with its fields. Every `gpa` is 4 KiB-aligned and every range lies
/// inside guest memory; `size` fields are in bytes, non-zero multiples of 4 KiB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StepOp {
    /// `psc`: to shared, rescind validation then the PSC; to private, the PSC then PVALIDATE with
    /// the 2M→4K fallback.
    Psc {
        /// Start of the range.
        gpa: Gpa,
        /// Length of the range in bytes (default 4 KiB).
        size: u64,
        /// Target state.
        to: PageState,
        /// Per-step override of the guest's `psc_granularity`.
        granularity: Option<Granularity>,
    },
    /// `pvalidate`: one instruction.
    Pvalidate {
        /// The page.
        gpa: Gpa,
        /// `4KiB` or `2MiB` (the geometry's 2M page); a 2M size at a gpa that is not 2M-aligned is
        /// passed on: the hardware answers FAIL_INPUT.
        size: RmpPageSize,
        /// Validate (true, the default) or rescind.
        validate: bool,
    },
    /// `psc_request`: one NAE page-state-change request (GHCB spec, Page State Change) of one
    /// entry, sent as given, with no validation before or after it.
    PscRequest {
        /// The entry's first page.
        gpa: Gpa,
        /// The entry's size, `4KiB` or `2MiB`; a 2M entry at a gpa that is not 2M-aligned is sent
        /// as it is (KVM must refuse it).
        size: RmpPageSize,
        /// The entry's operation.
        to: PageState,
        /// The entry's `cur_page`, the pages already processed (12 bits; default 0).
        cur_page: u16,
    },
    /// `rmpadjust`: one instruction.
    Rmpadjust {
        /// The page.
        gpa: Gpa,
        /// `4KiB` or `2MiB` (as for `pvalidate`).
        size: RmpPageSize,
        /// Target VMPL, 1–3.
        vmpl: u8,
        /// Permissions granted: `perms` letters `r` read, `w` write, `x` user execute, `s`
        /// supervisor execute.
        perms: VmplPerms,
        /// Make the page a VMSA (default false).
        vmsa: bool,
    },
    /// `access`: a guest access to each 4 KiB page of the range.
    Access {
        /// Start of the range.
        gpa: Gpa,
        /// Length in bytes (default 4 KiB).
        size: u64,
        /// Read, write or execute; a write marks the page as holding data.
        kind: AccessKind,
        /// C-bit set (default true).
        private: bool,
    },
    /// `accept`: the guest accepts a range in its granularity.
    Accept {
        /// Start of the range.
        gpa: Gpa,
        /// Length in bytes (default 4 KiB).
        size: u64,
        /// Per-step override of the guest's `psc_granularity`.
        granularity: Option<Granularity>,
    },
    /// `recoalesce`: the guest makes the 2M region at `gpa` one 2M private entry again.
    Recoalesce {
        /// The region (2M-aligned in the scenario's geometry).
        gpa: Gpa,
        /// The step's `mode`, else the guest's `recoalesce`; never [`Recoalesce::None`].
        mode: Recoalesce,
    },
    /// `host_write` to the guest page at `gpa`.
    HostWrite {
        /// The guest page.
        gpa: Gpa,
        /// The access path (default `vmm`).
        via: HostVia,
    },
    /// `host_read` of the guest page at `gpa`.
    HostRead {
        /// The guest page.
        gpa: Gpa,
        /// The access path (default `vmm`).
        via: HostVia,
    },
    /// `host_pin` (`pin`) or `host_unpin` of the in-place guest_memfd page at `gpa`.
    HostPin {
        /// The guest page.
        gpa: Gpa,
        /// Take (`host_pin`) or drop (`host_unpin`) the reference.
        pin: bool,
    },
    /// `host_split` of the host page holding `gpa`.
    HostSplit {
        /// A guest page in the host page.
        gpa: Gpa,
    },
    /// `host_collapse` of the host range holding `gpa`.
    HostCollapse {
        /// A guest page in the host range.
        gpa: Gpa,
    },
    /// `punch_hole` in guest_memfd (only with the `gmem` policy).
    PunchHole {
        /// Start of the range.
        gpa: Gpa,
        /// Length in bytes (default 4 KiB).
        size: u64,
    },
    /// `barrier`: the steps before it all finish before any after it starts (a no-op in a
    /// sequential run).
    Barrier,
    /// `teardown`: the VMM destroys the VM and closes its guest_memfd; with RMPOPT the teardown
    /// hook re-verifies all memory (only with a guest_memfd policy, and only as the last step).
    Teardown,
}

impl StepOp {
    /// The op.
    pub const fn kind(&self) -> StepKind {
        match self {
            StepOp::Psc { .. } => StepKind::Psc,
            StepOp::Pvalidate { .. } => StepKind::Pvalidate,
            StepOp::PscRequest { .. } => StepKind::PscRequest,
            StepOp::Rmpadjust { .. } => StepKind::Rmpadjust,
            StepOp::Access { .. } => StepKind::Access,
            StepOp::Accept { .. } => StepKind::Accept,
            StepOp::Recoalesce { .. } => StepKind::Recoalesce,
            StepOp::HostWrite { .. } => StepKind::HostWrite,
            StepOp::HostRead { .. } => StepKind::HostRead,
            StepOp::HostPin { pin: true, .. } => StepKind::HostPin,
            StepOp::HostPin { pin: false, .. } => StepKind::HostUnpin,
            StepOp::HostSplit { .. } => StepKind::HostSplit,
            StepOp::HostCollapse { .. } => StepKind::HostCollapse,
            StepOp::PunchHole { .. } => StepKind::PunchHole,
            StepOp::Barrier => StepKind::Barrier,
            StepOp::Teardown => StepKind::Teardown,
        }
    }

    /// The guest address the step names (0 for a barrier or a teardown).
    pub const fn gpa(&self) -> Gpa {
        match *self {
            StepOp::Psc { gpa, .. }
            | StepOp::Pvalidate { gpa, .. }
            | StepOp::Rmpadjust { gpa, .. }
            | StepOp::PscRequest { gpa, .. }
            | StepOp::Access { gpa, .. }
            | StepOp::Accept { gpa, .. }
            | StepOp::Recoalesce { gpa, .. }
            | StepOp::HostWrite { gpa, .. }
            | StepOp::HostRead { gpa, .. }
            | StepOp::HostPin { gpa, .. }
            | StepOp::HostSplit { gpa }
            | StepOp::HostCollapse { gpa }
            | StepOp::PunchHole { gpa, .. } => gpa,
            StepOp::Barrier | StepOp::Teardown => Gpa::new(0),
        }
    }
}

impl StepKind {
    /// The fields a step of this kind accepts besides `op` and `vcpu`.
    pub const fn fields(self) -> &'static [&'static str] {
        match self {
            StepKind::Psc => &["gpa", "size", "to", "granularity"],
            StepKind::Pvalidate => &["gpa", "size", "validate"],
            StepKind::PscRequest => &["gpa", "size", "to", "cur_page"],
            StepKind::Rmpadjust => &["gpa", "size", "vmpl", "perms", "vmsa"],
            StepKind::Access => &["gpa", "size", "kind", "private"],
            StepKind::Accept => &["gpa", "size", "granularity"],
            StepKind::Recoalesce => &["gpa", "mode"],
            StepKind::HostWrite | StepKind::HostRead => &["gpa", "via"],
            StepKind::HostSplit | StepKind::HostCollapse | StepKind::HostPin | StepKind::HostUnpin => {
                &["gpa"]
            }
            StepKind::PunchHole => &["gpa", "size"],
            StepKind::Barrier | StepKind::Teardown => &[],
        }
    }
}

/// Parse RMPADJUST permission letters: any subset of `r` (read), `w` (write), `x` (user
/// execute), `s` (supervisor execute), each at most once, in any order; `""` grants nothing.
pub fn parse_perms(text: &str) -> Result<VmplPerms, String> {
    let mut perms = VmplPerms::NONE;
    for c in text.chars() {
        let (has, set): (bool, fn(&mut VmplPerms)) = match c {
            'r' => (perms.read(), |p| p.set_read(true)),
            'w' => (perms.write(), |p| p.set_write(true)),
            'x' => (perms.exec_user(), |p| p.set_exec_user(true)),
            's' => (perms.exec_supervisor(), |p| p.set_exec_supervisor(true)),
            _ => {
                return Err(format!(
                    "{text:?}: unknown permission {c:?}; accepted: a subset of \"rwxs\" \
                     (r read, w write, x user execute, s supervisor execute)"
                ));
            }
        };
        if has {
            return Err(format!("{text:?}: permission {c:?} given twice"));
        }
        set(&mut perms);
    }
    Ok(perms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::Named;
    use snpsim_engine::engine::Op;

    /// A step's `op` is the engine's name of the action it becomes (the name a trace's
    /// `action.op` and a generated workload's steps carry), except `barrier`, which orders vCPUs
    /// and becomes no action; every engine operation but the scheduler's `tick` is a step.
    #[test]
    fn step_ops_are_the_engines_operations() {
        let steps: Vec<&str> = StepKind::all().iter().map(|k| k.name()).filter(|&n| n != "barrier").collect();
        let ops: Vec<&str> = Op::all().iter().map(|o| o.name()).filter(|&n| n != "tick").collect();
        let (mut a, mut b) = (steps.clone(), ops.clone());
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b, "steps {steps:?}, engine operations {ops:?}");
    }

    #[test]
    fn perms() {
        let p = parse_perms("rw").unwrap();
        assert!(p.read() && p.write() && !p.exec_user() && !p.exec_supervisor());
        let p = parse_perms("sxwr").unwrap();
        assert_eq!(p.into_bits(), 0x0f);
        assert_eq!(parse_perms("").unwrap(), VmplPerms::NONE);
        assert!(parse_perms("rr").is_err());
        assert!(parse_perms("rq").is_err());
    }

    #[test]
    fn kinds() {
        // Every op's name parses back to it, and no two ops share a name.
        for &k in StepKind::all() {
            assert_eq!(k.name().parse::<StepKind>(), Ok(k));
        }
        let names: std::collections::BTreeSet<&str> = StepKind::all().iter().map(|k| k.name()).collect();
        assert_eq!(names.len(), StepKind::all().len());
        assert_eq!("host_write".parse::<StepKind>(), Ok(StepKind::HostWrite));
        assert_eq!("psc_request".parse::<StepKind>(), Ok(StepKind::PscRequest));
        let op = StepOp::HostSplit { gpa: Gpa::new(0x1000) };
        assert_eq!(op.kind(), StepKind::HostSplit);
        assert_eq!(op.gpa(), Gpa::new(0x1000));
    }
}
