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
pub use vm::{InPlaceConversion, Kvm, KvmConfig, NpfStep, PscAdversary, PsmashPlan};

/// The policy seam: the test-only policy (`policy/test_only.rs`, one registry line) runs through
/// KVM's handlers like any other.
#[cfg(test)]
mod tests {
    use snpsim_defs::ghcb::{GHCB_MSR_PSC_REQ, GhcbMsrPscRequest, PscOp};
    use snpsim_defs::{Gfn, NpfErrorCode, PageSize, Pfn, RmpPageSize};
    use snpsim_host::{Host, VmaBacking};
    use snpsim_hw::rmp::Rmp;
    use snpsim_hw::{AccessKind, Geometry, GuestAccess, GuestContext, GuestOutcome, RmpConfig, RmpModel};

    use crate::policy::{TestOnly, by_name};
    use crate::vm::{Kvm, KvmConfig};

    /// The policy found by name in the registry runs a page-state change and a size-mismatch
    /// #NPF through KVM's handlers exactly as a real policy does.
    #[test]
    fn a_registered_policy_runs_a_psc_and_a_fault_through_the_common_paths() {
        let policy = by_name("test-only").unwrap();
        // 4096 guest pages (16 MiB) on THP, so GFN 0x200 is mapped by a 2M leaf.
        let (guest_pages, host_pages) = (4096, 4 * 4096);
        let mut host = Host::new(Geometry::X86, host_pages, guest_pages, VmaBacking::Thp, None).unwrap();
        let mut rmp = Rmp::new(RmpConfig::x86(host_pages));
        let config = KvmConfig { asid: 1, prefault_on_psc: false, npt_level_follows_rmp: false };
        let mut kvm = Kvm::new(config, policy, &host).unwrap();

        // An MSR page-state change of GFN 0x210 to private: the policy's convert hook, then
        // KVM's 4K RMPUPDATE.
        let req = GhcbMsrPscRequest::new()
            .with_info(GHCB_MSR_PSC_REQ)
            .with_gfn(Gfn::new(0x210))
            .with_op(PscOp::Private.raw());
        assert_eq!(kvm.handle_psc_msr(&mut host, &mut rmp, req).unwrap().error(), 0);
        assert_eq!(TestOnly::calls(), (1, 0));
        assert_eq!(rmp.lookup(Pfn::new(0x210)), Some((true, RmpPageSize::Size4K)));

        // A non-present private #NPF maps the 2M leaf of the host's THP (no RMP cap).
        let gpa = Gfn::new(0x210).gpa();
        let not_present = NpfErrorCode::new().with_guest_final(true).with_enc(true);
        kvm.handle_npf(&mut host, &mut rmp, gpa, not_present).unwrap();
        let (pfn, npt_size) = kvm.npt.translate(Gfn::new(0x210)).unwrap();
        assert_eq!(npt_size, PageSize::Size2M);

        // A private read through that leaf over the 4K entry takes an RMP #NPF with SIZEM; KVM
        // hands it to the policy, which demotes the leaf.
        let ctx = GuestContext { asid: 1, vmpl: 0 };
        let access = GuestAccess {
            guest: ctx,
            gpa,
            pfn,
            npt_size,
            private: true,
            kind: AccessKind::Read,
            user: false,
        };
        let GuestOutcome::Npf(code) = rmp.check_guest_access(&access) else { panic!("no #NPF") };
        assert!(code.rmp() && code.sizem());
        kvm.handle_npf(&mut host, &mut rmp, gpa, code).unwrap();
        assert_eq!(TestOnly::calls(), (1, 1));
        assert_eq!(kvm.npt.translate(Gfn::new(0x210)), Some((Pfn::new(0x210), PageSize::Size4K)));

        // The retried read reaches the page, which the guest has not validated: #VC, no #NPF.
        let access = GuestAccess { pfn: Pfn::new(0x210), npt_size: PageSize::Size4K, ..access };
        assert_eq!(
            rmp.check_guest_access(&access),
            GuestOutcome::Vc(snpsim_defs::SvmExitCode::PageNotValidated)
        );
        // The counters KVM keeps for every policy: one PSC request, two #NPFs (the non-present
        // one and the SIZEM one), one 2M -> 4K demotion.
        assert_eq!((kvm.stats.psc_requests, kvm.stats.npf, kvm.stats.rmp_npf_sizem), (1, 2, 1));
        assert_eq!(kvm.stats.demotions_total(), 1);
    }
}
