//! Planted bugs: realistic mistakes a hardware-model, host or KVM developer could make, switched on
//! one at a time to prove that the model checker and the invariant checks catch them.
//!
//! A mutant is off unless a test or `snpsim check --mutant` turns it on; every site that consults
//! one names it through [`Mutant::planted`]. `docs/mutants.md` has one section per mutant naming
//! the properties that catch it.
//!
//! The hooks exist only with this crate's `mutants` feature: without it [`Mutant::planted`] is the
//! constant `false`, so every hook site compiles away and a planted mutant has no effect
//! ([`HOOKS`] says which build this is). The checker's tests and the CLI's default features turn
//! it on; `cargo build --release -p snpsim --no-default-features` builds a `snpsim` without them.

/// One planted bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mutant {
    /// hw: PSMASH clears Validated in the 4K entries instead of preserving it.
    PsmashClearsValidated,
    /// hw: a host write through a ≥ 2M mapping is checked only against its target page.
    HostWriteIgnoresLargeMapping,
    /// host: the direct map is not split to 4K before a 4K RMPUPDATE.
    SkipDirectMapSplit,
    /// KVM: the NPT is filled at the largest level the memslot allows, ignoring the host mapping.
    NptIgnoresHostLevel,
    /// KVM: a private page is mapped at the backing level even when its RMP entry is smaller.
    NptIgnoresRmpLevel,
    /// KVM: after PSMASH resolves a SIZEM fault, the NPT range is not zapped.
    NoZapAfterPsmash,
    /// KVM: a 4K conversion to shared inside a 2M RMP entry is not preceded by PSMASH.
    NoPsmashBefore4kShared,
    /// KVM: a 2M PSC entry whose GFN is not 2M-aligned is accepted.
    PscAcceptsUnaligned2m,
    /// KVM: a partly done PSC entry is redone from its start, ignoring `cur_page`.
    PscIgnoresCurPage,
    /// KVM: a memory-attribute change does not zap the NPT range.
    NoZapOnAttributeChange,
    /// KVM: a guest_memfd hole punch frees pages without making them shared in the RMP.
    PunchHoleSkipsInvalidate,
    /// KVM: the MMU notifier is ignored, so a host split leaves a huge NPT leaf in place.
    MmuNotifierIgnored,
    /// guest: the guest forgets to untrack pages it converts to shared (it still believes them
    /// validated).
    GuestKeepsTrackingShared,
    /// KVM: a PSMASH that fails because another vCPU already smashed the entry is an error (no
    /// re-lookup: the "already 4K" tolerance of `sev_handle_rmp_fault` is missing).
    PsmashRaceFatal,
    /// KVM: PSMASH's FAIL_INUSE (another CPU's instruction in flight) is an error instead of a
    /// retry (`snp_rmptable_psmash` loops on it).
    FailInuseFatal,
    /// KVM: an in-place guest_memfd conversion to shared splits the HugeTLB folio before KVM
    /// unmaps it, so the unmap covers only the converted pages and a leaf larger than the now
    /// split folio survives (the race reviewers of guestmem_hugetlb found, RFC v2 of May 2025,
    /// `cover.1747264138`).
    SplitBeforeUnmap,
}

/// Whether the mutant hooks are compiled in (this crate's `mutants` feature).
pub const HOOKS: bool = cfg!(feature = "mutants");

impl Mutant {
    /// Whether `self` is the bug `planted` at a hook site. Always `false` without the `mutants`
    /// feature, so the hook is dead code the compiler removes.
    #[inline]
    pub fn planted(self, planted: Option<Mutant>) -> bool {
        HOOKS && planted == Some(self)
    }

    /// Every mutant.
    pub const ALL: [Mutant; 16] = [
        Mutant::PsmashClearsValidated,
        Mutant::HostWriteIgnoresLargeMapping,
        Mutant::SkipDirectMapSplit,
        Mutant::NptIgnoresHostLevel,
        Mutant::NptIgnoresRmpLevel,
        Mutant::NoZapAfterPsmash,
        Mutant::NoPsmashBefore4kShared,
        Mutant::PscAcceptsUnaligned2m,
        Mutant::PscIgnoresCurPage,
        Mutant::NoZapOnAttributeChange,
        Mutant::PunchHoleSkipsInvalidate,
        Mutant::MmuNotifierIgnored,
        Mutant::GuestKeepsTrackingShared,
        Mutant::PsmashRaceFatal,
        Mutant::FailInuseFatal,
        Mutant::SplitBeforeUnmap,
    ];

    /// The kebab-case name used on the command line and in `docs/mutants.md`.
    pub const fn name(self) -> &'static str {
        match self {
            Mutant::PsmashClearsValidated => "psmash-clears-validated",
            Mutant::HostWriteIgnoresLargeMapping => "host-write-ignores-large-mapping",
            Mutant::SkipDirectMapSplit => "skip-direct-map-split",
            Mutant::NptIgnoresHostLevel => "npt-ignores-host-level",
            Mutant::NptIgnoresRmpLevel => "npt-ignores-rmp-level",
            Mutant::NoZapAfterPsmash => "no-zap-after-psmash",
            Mutant::NoPsmashBefore4kShared => "no-psmash-before-4k-shared",
            Mutant::PscAcceptsUnaligned2m => "psc-accepts-unaligned-2m",
            Mutant::PscIgnoresCurPage => "psc-ignores-cur-page",
            Mutant::NoZapOnAttributeChange => "no-zap-on-attribute-change",
            Mutant::PunchHoleSkipsInvalidate => "punch-hole-skips-invalidate",
            Mutant::MmuNotifierIgnored => "mmu-notifier-ignored",
            Mutant::GuestKeepsTrackingShared => "guest-keeps-tracking-shared",
            Mutant::PsmashRaceFatal => "psmash-race-fatal",
            Mutant::FailInuseFatal => "fail-inuse-fatal",
            Mutant::SplitBeforeUnmap => "split-before-unmap",
        }
    }

    /// The mutant named `name`.
    pub fn from_name(name: &str) -> Option<Mutant> {
        Mutant::ALL.into_iter().find(|m| m.name() == name)
    }
}
