//! Conversions: the policy's choice of mechanism ([`crate::policy::Policy::convert`]) and the
//! 2021 series' own — RMPUPDATE at the level the host mapping (or RFC v4's NPT leaf) allows,
//! PSMASH first for a 4K change inside a 2M entry — with Linux's `rmp_make_private` /
//! `rmp_make_shared`.

use snpsim_defs::{Gfn, Gpa, PageSize, Pfn, ReturnCode, RmpArchEntry, RmpPageSize};
use snpsim_host::Host;
use snpsim_hw::{Mutant, RmpModel};

use super::Kvm;
use super::ops::Ops;
use crate::error::{KvmError, KvmInsn, PscRefusal, unbacked};
use crate::policy::{PscLevel, RmpCap};
use crate::psc::PscRange;

impl Kvm {
    /// Change the state of a GFN range as the policy does it
    /// ([`crate::policy::Policy::convert`]): KVM's own RMPUPDATEs in the legacy era, the VMM's
    /// KVM_HC_MAP_GPA_RANGE handling in the gmem era.
    pub fn convert(
        &mut self,
        host: &mut Host,
        rmp: &mut dyn RmpModel,
        range: PscRange,
    ) -> Result<(), KvmError> {
        let policy = self.policy;
        policy.convert(&mut Ops { kvm: self, host, rmp }, range)
    }

    /// Legacy conversion (RFC series): RMPUPDATE at 2M when the request is 2M and the host mapping
    /// is ≥ 2M, else at 4K; a 4K change inside a 2M entry PSMASHes it first. The NPT is not
    /// touched: the next access finds any size mismatch. A policy whose PSC follows the NPT leaf
    /// ([`PscLevel::NptLeaf`]) converts as RFC v4 did instead ([`Kvm::convert_v4`]).
    pub(super) fn convert_legacy(
        &mut self,
        host: &mut Host,
        rmp: &mut dyn RmpModel,
        range: PscRange,
    ) -> Result<(), KvmError> {
        if range.private && !self.policy.psc_private_allowed(self.backing) {
            return Err(KvmError::PscRefused(PscRefusal::Policy {
                policy: self.policy.name(),
                backing: self.backing,
            }));
        }
        if self.policy.psc_level() == PscLevel::NptLeaf {
            return self.convert_v4(host, rmp, range);
        }
        let per_2m = self.geometry.pages_per_2m();
        let end = range.gfn.raw() + range.pages;
        let mut g = range.gfn.raw();
        while g < end {
            let gfn = Gfn::new(g);
            let pfn = host.vma.pfn(g).ok_or_else(|| unbacked(gfn, "GFN outside the VMA"))?;
            let whole_2m = range.size_2m
                && gfn.is_aligned(per_2m)
                && g + per_2m <= end
                && host.vma.level(g) >= PageSize::Size2M;
            let (assigned, level) = rmp.lookup(pfn).unwrap_or((false, RmpPageSize::Size4K));
            if whole_2m {
                let region_busy = rmp.region_has_assigned(pfn);
                if range.private && assigned && level == RmpPageSize::Size2M {
                    g += per_2m;
                    continue;
                }
                if range.private && !region_busy {
                    self.make_private(host, rmp, pfn, gfn.gpa(), RmpPageSize::Size2M)?;
                    g += per_2m;
                    continue;
                }
                if !range.private && level == RmpPageSize::Size2M {
                    self.make_shared(host, rmp, pfn, RmpPageSize::Size2M)?;
                    g += per_2m;
                    continue;
                }
            }
            if range.private && !assigned {
                let run = self.make_private_legacy_run(host, rmp, gfn, end, range.size_2m);
                if run > 0 {
                    g += run;
                    continue;
                }
                let within = self.leaf_within_cap(rmp, gfn);
                self.make_private(host, rmp, pfn, gfn.gpa(), RmpPageSize::Size4K)?;
                self.note_rmp_shrank(gfn, within);
            } else if !range.private && assigned {
                let within = self.leaf_within_cap(rmp, gfn);
                if level == RmpPageSize::Size2M && !Mutant::NoPsmashBefore4kShared.planted(self.mutant) {
                    self.psmash(rmp, pfn)?;
                }
                self.make_shared(host, rmp, pfn, RmpPageSize::Size4K)?;
                self.note_rmp_shrank(gfn, within);
            }
            g += 1;
        }
        Ok(())
    }

    /// Whether the leaf holding `gfn` is within the RMP-level cap as the RMP stands (the policy's
    /// [`RmpCap`]; vacuously when the cap is off or the leaf is 4K): for [`RmpCap::EveryFault`] a
    /// leaf ≥ 2M needs a 2M entry; otherwise its 2M part must have no assigned page unless its
    /// entry is an assigned 2M one.
    fn leaf_within_cap(&self, rmp: &dyn RmpModel, gfn: Gfn) -> bool {
        let Some((pfn, size)) = self.npt.translate(gfn) else { return true };
        if size == PageSize::Size4K || !self.config.npt_level_follows_rmp {
            return true;
        }
        let entry = rmp.lookup(pfn);
        match self.policy.rmp_cap() {
            RmpCap::EveryFault => entry.is_some_and(|(_, l)| l == RmpPageSize::Size2M),
            RmpCap::PrivateAssigned => {
                entry == Some((true, RmpPageSize::Size2M))
                    || !rmp.region_has_assigned(self.geometry.region_of(pfn))
            }
        }
    }

    /// A legacy conversion made the RMP entries under the leaf holding `gfn` smaller without a zap:
    /// if the leaf was within the cap before (`within`), it outgrew them and is marked uncapped
    /// (invariant 3's leaf form exempts it). A leaf that was already too large is not, so a fault
    /// path that broke the cap stays visible.
    fn note_rmp_shrank(&mut self, gfn: Gfn, within: bool) {
        if within {
            self.npt.mark_uncapped(gfn);
        }
    }

    /// RFC v4's page-state change (the PSC handler's `__snp_handle_page_state_change`, one call per
    /// PSC entry at the entry's level): for each GPA, map it in the NPT if it is not
    /// (`snp_check_and_build_npt`), lower the level to the NPT leaf's (`level = min(level,
    /// npt_level)`, which sticks for the rest of the entry), then RMPUPDATE at that level —
    /// `rmp_make_private`, or `snp_make_page_shared` (nothing for an unassigned page; PSMASH
    /// first for a 4K change inside a 2M entry). A failed instruction fails the request, which
    /// the guest is told of. The NPT is not zapped.
    fn convert_v4(
        &mut self,
        host: &mut Host,
        rmp: &mut dyn RmpModel,
        range: PscRange,
    ) -> Result<(), KvmError> {
        let entry = if range.size_2m { PageSize::Size2M } else { PageSize::Size4K };
        let n = self.geometry.pages(entry);
        let mut first = range.gfn.raw();
        while first < range.gfn.raw() + range.pages {
            let mut level = entry;
            let mut g = first;
            while g < first + n {
                let gfn = Gfn::new(g);
                if self.npt.translate(gfn).is_none() {
                    self.fault_in_at_most(host, rmp, gfn, false, level, false)?;
                    // Mapped without 27/40's cap: it may be larger than assigned entries under it.
                    self.npt.mark_uncapped(gfn);
                }
                let npt_level = self.npt.translate(gfn).map_or(PageSize::Size4K, |(_, s)| s);
                level = level.min(npt_level);
                let rmp_size =
                    if level >= PageSize::Size2M { RmpPageSize::Size2M } else { RmpPageSize::Size4K };
                let pfn = host.vma.pfn(g).ok_or_else(|| unbacked(gfn, "GFN outside the VMA"))?;
                let within = self.leaf_within_cap(rmp, gfn);
                // A failed instruction fails the request (the guest is told), not the VM.
                let refused = |e: KvmError| match e {
                    KvmError::Instruction { instruction, pfn, code } => {
                        KvmError::PscRefused(PscRefusal::Instruction { instruction, pfn, code, level })
                    }
                    other => other,
                };
                if range.private {
                    self.make_private(host, rmp, pfn, gfn.gpa(), rmp_size).map_err(refused)?;
                } else if let Some((true, rmp_level)) = rmp.lookup(pfn) {
                    if rmp_size == RmpPageSize::Size4K && rmp_level == RmpPageSize::Size2M {
                        self.psmash(rmp, pfn).map_err(refused)?;
                    }
                    self.make_shared(host, rmp, pfn, rmp_size).map_err(refused)?;
                }
                // A 4K change, or a 2M one to shared (the entry reads 4K once unassigned), can
                // leave the leaf above 27/40's cap.
                self.note_rmp_shrank(gfn, within);
                g += self.geometry.pages(level);
            }
            first += n;
        }
        Ok(())
    }

    /// Linux `rmp_make_private`: RMPUPDATE to assigned (4K updates split the direct map first).
    pub(super) fn make_private(
        &mut self,
        host: &mut Host,
        rmp: &mut dyn RmpModel,
        pfn: Pfn,
        gpa: Gpa,
        size: RmpPageSize,
    ) -> Result<(), KvmError> {
        if size == RmpPageSize::Size4K {
            host.adjust_direct_map(pfn);
        }
        self.rmpupdate(rmp, pfn, self.private_entry(gpa, size))
    }

    /// `rmp_make_private`'s RMPUPDATE operand: assigned to the VM's ASID at `gpa`, of `size`.
    pub(super) fn private_entry(&self, gpa: Gpa, size: RmpPageSize) -> RmpArchEntry {
        RmpArchEntry::new()
            .with_assigned(true)
            .with_asid(u32::from(self.config.asid))
            .with_gpa(gpa)
            .with_page_size(size.bit())
    }

    /// Linux `rmp_make_shared`: RMPUPDATE to hypervisor-owned.
    pub(super) fn make_shared(
        &mut self,
        host: &mut Host,
        rmp: &mut dyn RmpModel,
        pfn: Pfn,
        size: RmpPageSize,
    ) -> Result<(), KvmError> {
        if size == RmpPageSize::Size4K {
            host.adjust_direct_map(pfn);
        }
        self.rmpupdate(rmp, pfn, RmpArchEntry::new().with_page_size(size.bit()))
    }

    fn rmpupdate(&mut self, rmp: &mut dyn RmpModel, pfn: Pfn, state: RmpArchEntry) -> Result<(), KvmError> {
        self.stats.rmpupdate += 1;
        match rmp.rmpupdate(pfn, state) {
            ReturnCode::Success => Ok(()),
            code => Err(KvmError::Instruction { instruction: KvmInsn::Rmpupdate, pfn, code }),
        }
    }

    fn psmash(&mut self, rmp: &mut dyn RmpModel, pfn: Pfn) -> Result<(), KvmError> {
        match self.psmash_unchecked(rmp, pfn) {
            ReturnCode::Success => Ok(()),
            code => Err(KvmError::Instruction {
                instruction: KvmInsn::Psmash,
                pfn: self.geometry.region_of(pfn),
                code,
            }),
        }
    }
}
