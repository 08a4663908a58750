//! #NPF handling: the non-RMP fault that maps a GFN (at the level its backing, the memory
//! attributes and the RMP-level cap allow), and the RMP fault — a size mismatch, resolved by
//! PSMASH or by the policy, or an implicit conversion (SVM `npf_interception` → the KVM MMU,
//! `sev_handle_rmp_fault`; RFC v4 38/40 `snp_handle_rmp_page_fault`).

use snpsim_defs::{Gfn, Gpa, NpfErrorCode, PageSize, Pfn, ReturnCode, RmpPageSize};
use snpsim_host::Host;
use snpsim_hw::{Mutant, RmpModel};

use super::ops::Ops;
use super::{Kvm, NpfStep, PsmashPlan};
use crate::error::{KvmError, KvmInsn, Unresolved, unbacked};
use crate::policy::{PsmashFailure, RmpCap};
use crate::psc::PscRange;
use crate::stats::exit;

impl Kvm {
    /// Handle a #NPF exit for `gpa` with `code` (SVM's `npf_interception` → KVM MMU, and
    /// `sev_handle_rmp_fault` for the RMP bit).
    pub fn handle_npf(
        &mut self,
        host: &mut Host,
        rmp: &mut dyn RmpModel,
        gpa: Gpa,
        code: NpfErrorCode,
    ) -> Result<(), KvmError> {
        match self.begin_npf(host, rmp, gpa, code)? {
            NpfStep::Handled => Ok(()),
            NpfStep::Psmash(plan) => self.finish_psmash(rmp, plan),
        }
    }

    /// The first part of [`Kvm::handle_npf`]: everything, except that when the fault needs a
    /// PSMASH of a 2M entry (what KVM decided from its RMP lookup) it returns that decision, so
    /// that an engine can run other vCPUs between the lookup and [`Kvm::finish_psmash`] — the
    /// window in which two vCPUs faulting in one 2M region race.
    pub fn begin_npf(
        &mut self,
        host: &mut Host,
        rmp: &mut dyn RmpModel,
        gpa: Gpa,
        code: NpfErrorCode,
    ) -> Result<NpfStep, KvmError> {
        let gfn = gpa.gfn();
        self.stats.npf += 1;
        self.stats.exit(exit::NPF);
        if !code.rmp() {
            if code.present() {
                return Err(KvmError::Unresolvable {
                    gfn,
                    why: Unresolved::UnhandledNpf,
                    detail: format!("non-RMP #NPF {code:?} on a present leaf"),
                });
            }
            return self.fault_in(host, rmp, gfn, code.enc()).map(|()| NpfStep::Handled);
        }
        self.stats.rmp_npf += 1;
        if code.sizem() {
            self.stats.rmp_npf_sizem += 1;
        }
        let Some((pfn, _)) = self.npt.translate(gfn) else {
            return Err(KvmError::Unresolvable {
                gfn,
                why: Unresolved::UnhandledNpf,
                detail: "RMP #NPF on an unmapped GFN".into(),
            });
        };
        let (assigned, rmp_level) = rmp.lookup(pfn).unwrap_or((false, RmpPageSize::Size4K));
        if code.sizem() {
            if rmp_level == RmpPageSize::Size2M {
                return Ok(NpfStep::Psmash(PsmashPlan { gfn, pfn }));
            }
            let policy = self.policy;
            return policy
                .resolve_npt_larger(&mut Ops { kvm: self, host, rmp }, gfn)
                .map(|()| NpfStep::Handled);
        }
        // An implicit conversion: the access's C-bit disagrees with the page's state — its RMP
        // assignment in the legacy era, its memory attribute in the gmem era.
        let state_private = self.policy.page_is_private(&self.attrs, gfn, assigned);
        if code.enc() != state_private && !self.psc_adversary.lies() {
            // A private access to a shared page or a shared access to a private one: the guest
            // changed the page's state without a PSC (implicit conversion).
            self.stats.implicit_conversions += 1;
            if let Some(reason) = self.policy.implicit_conversion_exit() {
                self.stats.exit(reason);
            }
            self.convert(host, rmp, PscRange { gfn, pages: 1, private: code.enc(), size_2m: false })?;
            if self.policy.zap_after_implicit_conversion() {
                let start = self.geometry.gfn_align_down(gfn, PageSize::Size2M);
                self.zap_for_fault(start, self.geometry.pages_per_2m(), gfn, PageSize::Size4K);
            }
            return Ok(NpfStep::Handled);
        }
        // Upstream `sev_handle_rmp_fault` runs for every RMP #NPF on a private GFN that
        // `kvm_mmu_page_fault` resumed from, and PSMASHes whenever the entry is 2M.
        if self.policy.psmash_on_any_rmp_fault()
            && rmp_level == RmpPageSize::Size2M
            && assigned
            && self.attrs.is_private(gfn)
        {
            return Ok(NpfStep::Psmash(PsmashPlan { gfn, pfn }));
        }
        Err(KvmError::Unresolvable {
            gfn,
            why: Unresolved::UnhandledNpf,
            detail: format!("RMP #NPF {code:?} that KVM cannot resolve"),
        })
    }

    /// A #NPF taken inside another CPU's in-flight window: KVM finds nothing to fix
    /// (`sev_handle_rmp_fault` returns) and the guest retries the instruction.
    pub fn spurious_npf(&mut self) {
        self.stats.npf += 1;
        self.stats.exit(exit::NPF);
        self.stats.races.spurious_npf += 1;
    }

    /// Every policy's answer to a SIZEM fault on a 2M RMP entry (a 4K PVALIDATE/RMPADJUST inside
    /// it, or a private access through a smaller leaf): PSMASH the entry, then remove the NPT
    /// mappings over it so the page refaults at the new RMP level — a zap of 512 GFNs (RFC v3
    /// 34/37 and v4 38/40 from the 2M-aligned GFN; upstream `sev_handle_rmp_fault` from the
    /// faulting GFN) or, for a policy that demotes minimally, an in-place demotion of the faulting
    /// leaf. A failed PSMASH (FAIL_UNSUPPORTED, 7, when a racing vCPU already smashed the entry) is
    /// handled as the policy's code does ([`PsmashFailure`]).
    pub fn finish_psmash(&mut self, rmp: &mut dyn RmpModel, plan: PsmashPlan) -> Result<(), KvmError> {
        let PsmashPlan { gfn, pfn } = plan;
        let region = self.geometry.region_of(pfn);
        let rc = self.psmash_unchecked(rmp, pfn);
        if rc != ReturnCode::Success {
            let entry = rmp.lookup(pfn);
            // Upstream's re-lookup asks for an assigned 4K entry; the others only for 4K.
            let now_4k = match self.policy.psmash_failure() {
                PsmashFailure::WarnAndZap => entry == Some((true, RmpPageSize::Size4K)),
                _ => entry.map(|(_, l)| l) == Some(RmpPageSize::Size4K),
            };
            match self.policy.psmash_failure() {
                PsmashFailure::Ignored => {}
                PsmashFailure::WarnAndZap if now_4k && !Mutant::PsmashRaceFatal.planted(self.mutant) => {
                    // "the PSMASH may have raced with another process": nothing left to do.
                    self.stats.races.psmash_already_4k += 1;
                    return Ok(());
                }
                PsmashFailure::WarnAndZap if !Mutant::PsmashRaceFatal.planted(self.mutant) => {
                    self.stats.kvm_warnings += 1;
                }
                PsmashFailure::Fatal if now_4k && !Mutant::PsmashRaceFatal.planted(self.mutant) => {
                    self.stats.races.psmash_already_4k += 1;
                }
                PsmashFailure::Fatal | PsmashFailure::WarnAndZap => {
                    return Err(KvmError::Instruction {
                        instruction: KvmInsn::Psmash,
                        pfn: region,
                        code: rc,
                    });
                }
            }
        }
        if Mutant::NoZapAfterPsmash.planted(self.mutant) {
            return Ok(());
        }
        if self.policy.demote_after_psmash() {
            // Minimal: split a 1G leaf into its 2M parts in place and zap nothing. The retried
            // 4K PVALIDATE/RMPADJUST needs no new leaf; the 2M part over the smashed entries
            // outgrew them and is demoted if a private access through it later takes a SIZEM
            // fault. Its 511 siblings stay mapped at 2M.
            self.demote_for_fault(gfn, PageSize::Size2M);
            self.npt.mark_uncapped(gfn);
            return Ok(());
        }
        let start = self.policy.psmash_zap_start(self.geometry, gfn);
        self.zap_for_fault(start, self.geometry.pages_per_2m(), gfn, PageSize::Size4K);
        Ok(())
    }

    /// PSMASH the 2M region holding `pfn` (Linux `snp_rmptable_psmash` aligns the frame down),
    /// counted, and return the code without acting on it.
    pub fn psmash_unchecked(&mut self, rmp: &mut dyn RmpModel, pfn: Pfn) -> ReturnCode {
        self.stats.psmash += 1;
        rmp.psmash(self.geometry.region_of(pfn))
    }

    /// Map `gfn` after a non-RMP #NPF (or a pre-fault), at the largest level its backing, the
    /// memslot, its memory attributes and (with `npt_level_follows_rmp`, for private accesses) its
    /// RMP entry allow.
    pub fn fault_in(
        &mut self,
        host: &mut Host,
        rmp: &mut dyn RmpModel,
        gfn: Gfn,
        private: bool,
    ) -> Result<(), KvmError> {
        self.fault_in_at_most(host, rmp, gfn, private, PageSize::Size1G, true)
    }

    /// [`Kvm::fault_in`] at a level of at most `limit`, with (`rmp_cap`) or without the
    /// RMP-level cap: RFC v4's page-state-change handler maps a missing GPA through
    /// `kvm_mmu_map_tdp_page`, which calls `direct_page_fault` with the request's level and so
    /// skips the `sev_get_tdp_max_page_level` hook of `kvm_tdp_page_fault`.
    pub(super) fn fault_in_at_most(
        &mut self,
        host: &mut Host,
        rmp: &mut dyn RmpModel,
        gfn: Gfn,
        private: bool,
        limit: PageSize,
        rmp_cap: bool,
    ) -> Result<(), KvmError> {
        if gfn.raw() >= self.pages {
            return Err(KvmError::Unresolvable {
                gfn,
                why: Unresolved::UnbackedGfn,
                detail: "GPA outside guest memory (MMIO is not modelled)".into(),
            });
        }
        if self.policy.fault_needs_conversion(&self.attrs, gfn, private) {
            if self.psc_adversary.lies() {
                return Err(KvmError::Unresolvable {
                    gfn,
                    why: Unresolved::AdversaryRefused,
                    detail: "the adversarial KVM refuses to convert the page the guest asked for".into(),
                });
            }
            // KVM_EXIT_MEMORY_FAULT: the access's C-bit disagrees with the attribute; the VMM
            // converts the page and the access is retried.
            self.stats.implicit_conversions += 1;
            if let Some(reason) = self.policy.implicit_conversion_exit() {
                self.stats.exit(reason);
            }
            return self.convert(host, rmp, PscRange { gfn, pages: 1, private, size_2m: false });
        }
        // The conversion above leaves the attribute equal to the access's C-bit. Only private
        // memory is prepared: under in-place conversion shared GFNs are guest_memfd's too.
        let in_gmem = self.policy.in_gmem(&self.attrs, gfn);
        let gmem_private = in_gmem && private;
        let mut max = if in_gmem {
            if host.gmem.is_none() && host.gmem_hugetlb.is_none() {
                return Err(unbacked(gfn, "no guest_memfd"));
            }
            let (pfn, folio, _) = host.gmem_get_pfn(gfn.raw())?;
            if gmem_private {
                self.gmem_prepare(host, rmp, gfn, pfn, folio)?;
            }
            folio
        } else {
            // `hva_to_pfn` faults the VMA page in (the gmem era populates it on first touch).
            host.populate_vma(gfn.raw())?;
            if Mutant::NptIgnoresHostLevel.planted(self.mutant) {
                PageSize::Size1G
            } else {
                host.vma.level(gfn.raw())
            }
        };
        max = max.min(limit);
        let every = self.policy.rmp_cap() == RmpCap::EveryFault;
        // A legacy shared GFN maps the same frames a private one would: a leaf ≥ 2M over a region
        // holding an assigned page faults on every shared access through it (the hardware checks
        // a shared access through a large leaf like a host write), so the cap keeps it at 4K.
        let legacy_shared = !private && self.policy.shared_maps_private_frames();
        if rmp_cap
            && (private || every || legacy_shared)
            && self.config.npt_level_follows_rmp
            && !Mutant::NptIgnoresRmpLevel.planted(self.mutant)
        {
            let pfn = self.bound_pfn(host, gfn).ok_or_else(|| unbacked(gfn, "unbacked GFN"))?;
            let rmp_max = match rmp.lookup(pfn) {
                Some((_, level)) if every => level.page_size(),
                Some((true, level)) => level.page_size(),
                Some((false, _)) if legacy_shared => {
                    if rmp.region_has_assigned(self.geometry.region_of(pfn)) {
                        PageSize::Size4K
                    } else {
                        PageSize::Size1G
                    }
                }
                _ => PageSize::Size4K,
            };
            max = max.min(rmp_max);
        }
        loop {
            let n = self.geometry.pages(max);
            let start = self.geometry.gfn_align_down(gfn, max);
            let fits = start.raw() + n <= self.pages
                && !self.npt.any_mapped(start, n)
                && (n == 1 || self.rebound.range(start..start + n).next().is_none())
                && self.policy.leaf_allowed(&self.attrs, start, n);
            if fits && let Some(pfn) = self.bound_pfn(host, start) {
                self.npt.map(start, max, pfn);
                self.demotions.remapped(start, max);
                if gmem_private {
                    // Everything KVM maps private must be prepared (without
                    // `npt_level_follows_rmp` a leaf can cover more than the faulting page's entry).
                    let per_2m = self.geometry.pages_per_2m();
                    let mut p = start.raw();
                    while p < start.raw() + n {
                        let page_pfn = pfn + (p - start.raw());
                        let entry = rmp.lookup(page_pfn);
                        if page_pfn.is_aligned(per_2m) && entry == Some((true, RmpPageSize::Size2M)) {
                            // A 2M entry: its pages are all assigned.
                            p += per_2m;
                            continue;
                        }
                        if !entry.is_some_and(|(a, _)| a) {
                            let folio = host.gmem_frame(p).map_or(PageSize::Size4K, |(_, s)| s);
                            self.gmem_prepare(host, rmp, Gfn::new(p), page_pfn, folio)?;
                        }
                        p += 1;
                    }
                }
                return Ok(());
            }
            max = max.smaller().ok_or_else(|| unbacked(gfn, "no NPT leaf fits"))?;
        }
    }
}
