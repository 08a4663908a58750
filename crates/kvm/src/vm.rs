//! KVM's per-VM state and its handlers: #NPF, page-state changes, gmem hooks, MMU notifier.

use snpsim_defs::ghcb::{GhcbMsrPscRequest, GhcbMsrPscResponse, PscBuffer};
use snpsim_defs::{Gfn, Gpa, NpfErrorCode, PageSize, Pfn, ReturnCode, RmpArchEntry, RmpPageSize};
use snpsim_host::{Host, HostError, Invalidation, VmaBacking};
use snpsim_hw::{Geometry, GuestAccess, GuestOutcome, Mutant, RmpModel};

use crate::attributes::MemoryAttributes;
use crate::error::{KvmError, KvmInsn, PscRefusal, Unresolved, unbacked};
use crate::npt::Npt;
use crate::policy::{Era, Policy, PscLevel, PsmashFailure, RmpCap, VmOps};
use crate::psc::{self, PscRange};
use crate::stats::{KvmStats, exit};

mod capable;

/// Per-VM settings: a scenario's `[vm]` table, with the policy's defaults (`docs/semantics.md` K1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KvmConfig {
    /// The guest's ASID.
    pub asid: u16,
    /// The VMM pre-faults every range a PSC makes private (KVM_PRE_FAULT_MEMORY; gmem era).
    pub prefault_on_psc: bool,
    /// NPT level of a private page ≤ its RMP level.
    pub npt_level_follows_rmp: bool,
}

/// KVM's state for one SNP VM whose single memslot maps GFN 0.. onto the VMM's VMA (and, in the
/// gmem era, onto guest_memfd for private GFNs).
#[derive(Clone, Debug)]
pub struct Kvm {
    geometry: Geometry,
    /// Settings.
    pub config: KvmConfig,
    policy: &'static dyn Policy,
    /// The nested page table.
    pub npt: Npt,
    /// Memory attributes (gmem era).
    pub attrs: MemoryAttributes,
    /// Counters.
    pub stats: KvmStats,
    /// The zaps no fault has required in full yet.
    pub demotions: crate::demotions::DemotionLedger,
    pages: u64,
    backing: VmaBacking,
    mutant: Option<Mutant>,
    psc_adversary: PscAdversary,
    /// GFNs an adversarial host bound to other frames than the memslot's (`rebind`).
    rebound: std::collections::BTreeMap<Gfn, Pfn>,
    /// Why KVM refused a range of the page-state change it is handling, if it did: the guest
    /// only sees an error code, the report says why.
    psc_refusal: Option<PscRefusal>,
}

/// What the first part of #NPF handling left to do ([`Kvm::begin_npf`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NpfStep {
    /// The fault is resolved; the instruction can be retried.
    Handled,
    /// KVM looked up a 2M RMP entry and will PSMASH it ([`Kvm::finish_psmash`]).
    Psmash(PsmashPlan),
}

/// A PSMASH KVM decided on: the faulting GFN and the frame its NPT leaf maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PsmashPlan {
    /// The faulting GFN.
    pub gfn: Gfn,
    /// Its frame.
    pub pfn: Pfn,
}

/// An adversarial page-state-change handler (`snpsim_sim::adversary`): what a malicious
/// hypervisor does with the guest's requests. All off for an honest KVM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PscAdversary {
    /// Answer every request with success and convert nothing.
    pub ack_without_action: bool,
    /// Mark the second half of each NAE buffer done without converting it.
    pub lie_cur_page: bool,
    /// Process half of each NAE buffer and return success with `cur_entry` half-way.
    pub drop_halfway: bool,
}

impl PscAdversary {
    /// Whether the handler leaves pages unconverted while claiming success; KVM then also refuses
    /// to fix up the faults that follow (no implicit conversion).
    const fn lies(self) -> bool {
        self.ack_without_action || self.lie_cur_page
    }
}

impl Kvm {
    /// Create the VM and register its memory; the policy may refuse the backing.
    pub fn new(config: KvmConfig, policy: &'static dyn Policy, host: &Host) -> Result<Self, KvmError> {
        let backing = host.vma.backing();
        policy.register_memslot(backing)?;
        let geometry = host.memory.geometry();
        Ok(Kvm {
            geometry,
            config,
            policy,
            npt: Npt::new(geometry),
            attrs: MemoryAttributes::new(),
            stats: KvmStats::default(),
            pages: host.vma.pages(),
            backing,
            mutant: None,
            psc_adversary: PscAdversary::default(),
            rebound: std::collections::BTreeMap::new(),
            demotions: crate::demotions::DemotionLedger::default(),
            psc_refusal: None,
        })
    }

    /// An adversarial host binds `gfn` to `pfn` instead of its memslot frame (it swaps the page
    /// behind the GPA, as page migration would, without the guest's consent) and remaps it. Honest
    /// KVM code then maps the GFN to that frame, at 4K.
    pub fn rebind(&mut self, gfn: Gfn, pfn: Pfn) {
        self.rebound.insert(gfn, pfn);
        self.npt.demote(gfn, PageSize::Size4K);
        self.npt.zap(gfn, 1);
        self.demotions.zapped_elsewhere(self.geometry, gfn, 1);
        self.npt.map(gfn, PageSize::Size4K, pfn);
    }

    /// Whether an adversarial host rebound some GFN to another frame ([`Kvm::rebind`]): the only
    /// way two GPAs can be bound to one frame.
    pub fn has_rebound(&self) -> bool {
        !self.rebound.is_empty()
    }

    /// Make the page-state-change handler adversarial.
    pub fn set_psc_adversary(&mut self, adversary: PscAdversary) {
        self.psc_adversary = adversary;
    }

    /// Plant a bug (checker tests only; see [`Mutant`]).
    pub fn set_mutant(&mut self, mutant: Option<Mutant>) {
        self.mutant = mutant;
    }

    /// Why KVM refused part of the page-state change it handled last, if it did (reset at each
    /// page-state-change VMGEXIT).
    pub fn psc_refusal(&self) -> Option<PscRefusal> {
        self.psc_refusal
    }

    /// The planted bug, if any.
    pub fn mutant(&self) -> Option<Mutant> {
        self.mutant
    }

    /// The policy.
    pub fn policy(&self) -> &'static dyn Policy {
        self.policy
    }

    /// The era of the policy.
    pub fn era(&self) -> Era {
        self.policy.era()
    }

    /// Guest pages in the memslot.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// The host frame `gfn` must map to when mapped (the memslot / gmem binding), if it has one.
    pub fn bound_pfn(&self, host: &Host, gfn: Gfn) -> Option<Pfn> {
        if let Some(&pfn) = self.rebound.get(&gfn) {
            return Some(pfn);
        }
        if self.policy.in_gmem(&self.attrs, gfn) {
            host.gmem.as_ref()?.pfn(gfn.raw()).map(|(p, _)| p)
        } else {
            host.vma.pfn(gfn.raw())
        }
    }

    /// The frame whose RMP entry a conversion of `gfn` rewrites: its guest_memfd page in the gmem
    /// era (when allocated), its VMA page in the legacy era.
    pub fn conversion_pfn(&self, host: &Host, gfn: Gfn) -> Option<Pfn> {
        if self.policy.converts_gmem_frames() {
            host.gmem.as_ref()?.pfn(gfn.raw()).map(|(p, _)| p)
        } else {
            self.bound_pfn(host, gfn)
        }
    }

    /// The largest leaf KVM may use for `gfn` given its backing: host mapping level (legacy, or a
    /// shared GFN in the gmem era) or gmem folio size (private, gmem era).
    pub fn backing_level(&self, host: &Host, gfn: Gfn) -> Option<PageSize> {
        if self.rebound.contains_key(&gfn) {
            return Some(PageSize::Size4K);
        }
        if self.policy.in_gmem(&self.attrs, gfn) {
            host.gmem.as_ref()?.pfn(gfn.raw()).map(|(_, s)| s)
        } else {
            host.vma.translate(gfn.raw()).map(|(_, s)| s)
        }
    }

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

    /// The page geometry.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// Zap `pages` GFNs from `start` to resolve a fault at `fault`, after which the faulting page
    /// refaults at `target`: every zapped leaf larger than `target` is a demotion, needless while a
    /// 2M part of it that it unmapped is required by no fault ([`crate::demotions`]): the
    /// faulting GFN's part is, another part only once a later access would have faulted through the
    /// old leaf ([`Kvm::note_guest_access`]). Returns the number of leaves zapped.
    pub fn zap_for_fault(&mut self, start: Gfn, pages: u64, fault: Gfn, target: PageSize) -> usize {
        let removed = self.npt.zap(start, pages);
        for r in &removed {
            if r.leaf.size > target {
                let needless = self.demotions.zapped(self.geometry, r.gfn, r.leaf.pfn, r.leaf.size, fault);
                self.stats.demotion(r.leaf.size, target, needless);
            }
        }
        removed.len()
    }

    /// A guest access completed (`access` as the NPT translated it): if it falls in a 2M part a
    /// still-needless zap unmapped, and it would have taken an #NPF through the zapped leaf, the
    /// zap was required there; once every part is, the demotion is needed.
    pub fn note_guest_access(&mut self, rmp: &dyn RmpModel, access: &GuestAccess) {
        let gfn = access.gpa.gfn();
        for (start, pfn, size) in self.demotions.old_leaves(self.geometry, gfn) {
            let Some(old_pfn) = pfn.checked_add(gfn.raw() - start.raw()) else { continue };
            let through_old = GuestAccess { pfn: old_pfn, npt_size: size, ..*access };
            if matches!(rmp.check_guest_access(&through_old), GuestOutcome::Npf(_))
                && self.demotions.required(self.geometry, start, size, gfn)
            {
                // Each record added one when it was made, and is removed here once.
                debug_assert!(self.stats.npt_demotions_needless > 0);
                self.stats.npt_demotions_needless = self.stats.npt_demotions_needless.saturating_sub(1);
            }
        }
    }

    /// Demote the leaf holding `gfn` in place down to `target` (minimal demotion). Returns the
    /// number of leaves split.
    pub fn demote_for_fault(&mut self, gfn: Gfn, target: PageSize) -> usize {
        let split = self.npt.demote(gfn, target);
        for r in &split {
            let to = r.leaf.size.smaller().unwrap_or(PageSize::Size4K);
            self.stats.demotion(r.leaf.size, to, false);
        }
        split.len()
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
    fn fault_in_at_most(
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
        // The conversion above leaves the attribute equal to the access's C-bit.
        let gmem_private = self.policy.in_gmem(&self.attrs, gfn);
        let mut max = if gmem_private {
            let gmem = host.gmem.as_mut().ok_or_else(|| unbacked(gfn, "no guest_memfd"))?;
            let (pfn, folio, _) = gmem.get_pfn(&mut host.memory, gfn.raw())?;
            self.gmem_prepare(host, rmp, gfn, pfn, folio)?;
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
                && (n == 1 || self.rebound.range(start..Gfn(start.raw() + n)).next().is_none())
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
                        let page_pfn = Pfn(pfn.raw() + (p - start.raw()));
                        let entry = rmp.lookup(page_pfn);
                        if page_pfn.is_aligned(per_2m) && entry == Some((true, RmpPageSize::Size2M)) {
                            // A 2M entry: its pages are all assigned.
                            p += per_2m;
                            continue;
                        }
                        if !entry.is_some_and(|(a, _)| a) {
                            let folio = host
                                .gmem
                                .as_ref()
                                .and_then(|g| g.pfn(p))
                                .map_or(PageSize::Size4K, |(_, s)| s);
                            self.gmem_prepare(host, rmp, Gfn(p), page_pfn, folio)?;
                        }
                        p += 1;
                    }
                }
                return Ok(());
            }
            max = max.smaller().ok_or_else(|| unbacked(gfn, "no NPT leaf fits"))?;
        }
    }

    /// `sev_gmem_prepare`: make a gmem page private on first use — one 2M RMPUPDATE when its folio
    /// is ≥ 2M and the whole 2M range is unassigned (and, a snpsim choice, private by attribute),
    /// else 4K.
    fn gmem_prepare(
        &mut self,
        host: &mut Host,
        rmp: &mut dyn RmpModel,
        gfn: Gfn,
        pfn: Pfn,
        folio: PageSize,
    ) -> Result<(), KvmError> {
        if rmp.lookup(pfn).is_some_and(|(a, _)| a) {
            return Ok(());
        }
        let region = self.geometry.region_of(pfn);
        let gfn_region = self.geometry.gfn_align_down(gfn, PageSize::Size2M);
        let per_2m = self.geometry.pages_per_2m();
        let whole = folio >= PageSize::Size2M
            && !rmp.region_has_assigned(region)
            && self.attrs.uniform(gfn_region, per_2m) == Some(true);
        if whole {
            self.make_private(host, rmp, region, gfn_region.gpa(), RmpPageSize::Size2M)
        } else {
            self.make_private(host, rmp, pfn, gfn.gpa(), RmpPageSize::Size4K)
        }
    }

    /// Linux `rmp_make_private`: RMPUPDATE to assigned (4K updates split the direct map first).
    fn make_private(
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
        let state = RmpArchEntry::new()
            .with_assigned(true)
            .with_asid(u32::from(self.config.asid))
            .with_gpa(gpa.raw())
            .with_page_size(size.bit());
        self.rmpupdate(rmp, pfn, state)
    }

    /// Linux `rmp_make_shared`: RMPUPDATE to hypervisor-owned.
    fn make_shared(
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

    /// Handle an MSR-protocol PSC VMGEXIT.
    pub fn handle_psc_msr(
        &mut self,
        host: &mut Host,
        rmp: &mut dyn RmpModel,
        req: GhcbMsrPscRequest,
    ) -> Result<GhcbMsrPscResponse, KvmError> {
        self.stats.exit(exit::VMGEXIT_PSC_MSR);
        self.stats.psc_requests += 1;
        self.psc_refusal = None;
        let mut fatal = None;
        let resp = psc::process_msr(req, |range| self.apply_psc(host, rmp, range, &mut fatal));
        if resp.error() != 0 {
            self.stats.psc_failed += 1;
        }
        fatal.map_or(Ok(resp), Err)
    }

    /// Handle an NAE PSC VMGEXIT; returns SW_EXITINFO2.
    pub fn handle_psc_ghcb(
        &mut self,
        host: &mut Host,
        rmp: &mut dyn RmpModel,
        buf: &mut PscBuffer,
    ) -> Result<u64, KvmError> {
        self.stats.exit(exit::VMGEXIT_PSC);
        self.stats.psc_requests += 1;
        self.psc_refusal = None;
        let mut fatal = None;
        let per_2m = self.geometry.pages_per_2m();
        let mutant = self.mutant;
        let adv = self.psc_adversary;
        let (cur, end) = (buf.header.cur_entry(), buf.header.end_entry());
        let half = cur + end.saturating_sub(cur).div_ceil(2);
        if adv.lie_cur_page {
            for e in buf.entries.iter_mut().take(usize::from(end) + 1).skip(usize::from(half) + 1) {
                e.set_cur_page(if e.page_size() { per_2m as u16 } else { 1 });
            }
        }
        let real_end = buf.header.end_entry();
        if adv.drop_halfway && half < end {
            buf.header.set_end_entry(half);
        }
        let info2 = psc::process_ghcb_mutated(buf, per_2m, mutant, |range| {
            self.apply_psc(host, rmp, range, &mut fatal)
        });
        buf.header.set_end_entry(real_end);
        if info2 != 0 {
            self.stats.psc_failed += 1;
        }
        fatal.map_or(Ok(info2), Err)
    }

    /// The range the next step of an NAE PSC would convert (`None` when nothing is left to convert
    /// or the buffer is malformed), without converting anything.
    pub fn psc_next_range(&self, buf: &PscBuffer) -> Option<PscRange> {
        let mut probe = buf.clone();
        let mut next = None;
        psc::process_ghcb_mutated(&mut probe, self.geometry.pages_per_2m(), self.mutant, |range| {
            next = Some(range);
            false
        });
        next
    }

    /// One step of an NAE PSC VMGEXIT in an interleaved run: convert at most one range (as KVM
    /// does per KVM_HC_MAP_GPA_RANGE exit before re-entering `snp_begin_psc`), the exit counted on
    /// the `first` step. Returns SW_EXITINFO2 when the request is finished, `None` while ranges
    /// remain. The adversarial PSC behaviours are not available here.
    pub fn handle_psc_ghcb_one(
        &mut self,
        host: &mut Host,
        rmp: &mut dyn RmpModel,
        buf: &mut PscBuffer,
        first: bool,
    ) -> Result<Option<u64>, KvmError> {
        if first {
            self.stats.exit(exit::VMGEXIT_PSC);
            self.stats.psc_requests += 1;
            self.psc_refusal = None;
        }
        let mut fatal = None;
        let mut applied = false;
        let mut more = false;
        let per_2m = self.geometry.pages_per_2m();
        let info2 = psc::process_ghcb_mutated(buf, per_2m, self.mutant, |range| {
            if applied {
                more = true;
                return false;
            }
            applied = true;
            self.apply_psc(host, rmp, range, &mut fatal)
        });
        if let Some(e) = fatal {
            return Err(e);
        }
        if more {
            return Ok(None);
        }
        if info2 != 0 {
            self.stats.psc_failed += 1;
        }
        Ok(Some(info2))
    }

    /// Convert one PSC range; a refusal is reported to the guest, any other failure is fatal.
    fn apply_psc(
        &mut self,
        host: &mut Host,
        rmp: &mut dyn RmpModel,
        range: PscRange,
        fatal: &mut Option<KvmError>,
    ) -> bool {
        if range.gfn.raw().checked_add(range.pages).is_none_or(|end| end > self.pages) {
            return false;
        }
        self.stats.psc_pages += range.pages;
        if self.psc_adversary.ack_without_action {
            return true;
        }
        if let Some(reason) = self.policy.psc_range_exit() {
            self.stats.exit(reason);
        }
        match self.convert(host, rmp, range) {
            Ok(()) => true,
            Err(KvmError::PscRefused(r)) => {
                self.psc_refusal = Some(r);
                false
            }
            Err(e) => {
                *fatal = Some(e);
                false
            }
        }
    }

    /// Change the state of a GFN range as the policy does it ([`Policy::convert`]): KVM's own
    /// RMPUPDATEs in the legacy era, the VMM's KVM_HC_MAP_GPA_RANGE handling in the gmem era.
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
    fn convert_legacy(
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
            let gfn = Gfn(g);
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
                let gfn = Gfn(g);
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

    /// gmem-era conversion, as the VMM does it after KVM_EXIT_HYPERCALL(KVM_HC_MAP_GPA_RANGE) or
    /// KVM_EXIT_MEMORY_FAULT: set the memory attributes (KVM zaps the NPT range when they change),
    /// then discard the copy no longer needed — punch a hole in gmem on private→shared (which runs
    /// `sev_gmem_invalidate`), MADV_DONTNEED on the VMA on shared→private — and, with
    /// `prefault_on_psc`, pre-fault a range made private (KVM_PRE_FAULT_MEMORY).
    fn map_gpa_range(
        &mut self,
        host: &mut Host,
        rmp: &mut dyn RmpModel,
        range: PscRange,
    ) -> Result<(), KvmError> {
        if self.attrs.set(range.gfn, range.pages, range.private) > 0
            && !Mutant::NoZapOnAttributeChange.planted(self.mutant)
        {
            self.npt.zap(range.gfn, range.pages);
            self.demotions.zapped_elsewhere(self.geometry, range.gfn, range.pages);
        }
        if range.private {
            if self.config.prefault_on_psc {
                self.prefault(host, rmp, range.gfn, range.pages)?;
            }
        } else {
            self.punch_hole(host, rmp, range.gfn, range.pages)?;
        }
        Ok(())
    }

    /// KVM_PRE_FAULT_MEMORY over a private range: map every unmapped GFN, with no exit.
    pub fn prefault(
        &mut self,
        host: &mut Host,
        rmp: &mut dyn RmpModel,
        start: Gfn,
        pages: u64,
    ) -> Result<(), KvmError> {
        let mut g = start.raw();
        while g < start.raw() + pages {
            if self.npt.translate(Gfn(g)).is_none() {
                self.fault_in(host, rmp, Gfn(g), true)?;
            }
            g = match self.npt.leaf(Gfn(g)) {
                Some((s, leaf)) => s.raw() + self.geometry.pages(leaf.size),
                None => g + 1,
            };
        }
        Ok(())
    }

    /// fallocate(PUNCH_HOLE) on guest_memfd over a GFN range: KVM zaps the NPT over it, then every
    /// freed folio page goes through `sev_gmem_invalidate` — one 2M RMPUPDATE to shared where a
    /// whole 2M entry goes, else PSMASH (if inside a 2M entry) and 4K RMPUPDATE. A failed PSMASH or
    /// RMPUPDATE there is only a WARN upstream: counted in `kvm_warnings`, and the invalidation
    /// goes on.
    pub fn punch_hole(
        &mut self,
        host: &mut Host,
        rmp: &mut dyn RmpModel,
        start: Gfn,
        pages: u64,
    ) -> Result<(), KvmError> {
        let Some(gmem) = host.gmem.as_mut() else { return Ok(()) };
        // A shared leaf in the range maps the VMA, not gmem: it stays.
        let attrs = &self.attrs;
        self.npt.zap_where(start, pages, |g| attrs.is_private(g));
        self.demotions.zapped_elsewhere(self.geometry, start, pages);
        let mut freed = Vec::new();
        gmem.punch_hole(&mut host.memory, start.raw(), pages, |pfn, n| freed.push((pfn, n)))?;
        if Mutant::PunchHoleSkipsInvalidate.planted(self.mutant) {
            freed.clear();
        }
        let per_2m = self.geometry.pages_per_2m();
        for (pfn, n) in freed {
            let end = pfn.raw() + n;
            let mut p = pfn.raw();
            while p < end {
                let (assigned, level) = rmp.lookup(Pfn(p)).unwrap_or((false, RmpPageSize::Size4K));
                if !assigned {
                    p += 1;
                    continue;
                }
                let whole = level == RmpPageSize::Size2M && Pfn(p).is_aligned(per_2m) && p + per_2m <= end;
                if !whole && level == RmpPageSize::Size2M {
                    // "This shouldn't fail, but if it does, report it, but still try to update
                    // RMP entry to shared": a WARN_ONCE, and on.
                    if self.psmash_unchecked(rmp, Pfn(p)) != ReturnCode::Success {
                        self.stats.kvm_warnings += 1;
                    }
                }
                let size = if whole { RmpPageSize::Size2M } else { RmpPageSize::Size4K };
                match self.make_shared(host, rmp, Pfn(p), size) {
                    Ok(()) => {}
                    // A failed RMPUPDATE is a WARN_ONCE; the page is skipped (left assigned).
                    Err(KvmError::Instruction { .. }) => self.stats.kvm_warnings += 1,
                    Err(e) => return Err(e),
                }
                p += if whole { per_2m } else { 1 };
            }
        }
        Ok(())
    }

    /// The MMU notifier: the host changed the VMA's mappings over `inv`; zap the NPT there (in the
    /// gmem era only shared GFNs map the VMA).
    pub fn mmu_invalidate(&mut self, inv: Invalidation) {
        if Mutant::MmuNotifierIgnored.planted(self.mutant) {
            return;
        }
        let (policy, attrs) = (self.policy, &self.attrs);
        self.npt.zap_where(Gfn(inv.offset), inv.pages, |g| !policy.in_gmem(attrs, g));
        self.demotions.zapped_elsewhere(self.geometry, Gfn(inv.offset), inv.pages);
    }
}

/// KVM's mechanisms as a policy acts through them ([`VmOps`]), on one VM.
struct Ops<'a> {
    kvm: &'a mut Kvm,
    host: &'a mut Host,
    rmp: &'a mut dyn RmpModel,
}

impl VmOps for Ops<'_> {
    fn split_host_mapping(&mut self, gfn: Gfn) -> Result<(), KvmError> {
        match self.host.split_vma(gfn.raw()) {
            Ok(Some(inv)) => {
                self.kvm.zap_for_fault(Gfn(inv.offset), inv.pages, gfn, PageSize::Size4K);
                Ok(())
            }
            Ok(None) => Err(KvmError::Unresolvable {
                gfn,
                why: Unresolved::HostSplitImpossible,
                detail: "the host mapping is already 4K; splitting it cannot shrink the NPT leaf".into(),
            }),
            Err(HostError::Unsplittable { backing }) => Err(KvmError::Unresolvable {
                gfn,
                why: Unresolved::HostSplitImpossible,
                detail: format!("the host walk found a {} page, which cannot be split", backing.name()),
            }),
            Err(e) => Err(e.into()),
        }
    }

    fn demote_npt(&mut self, gfn: Gfn, target: PageSize) -> Result<(), KvmError> {
        if self.kvm.demote_for_fault(gfn, target) == 0 {
            return Err(KvmError::Unresolvable {
                gfn,
                why: Unresolved::NptAtRmpLevel,
                detail: "the NPT leaf is already at the RMP level".into(),
            });
        }
        Ok(())
    }

    fn psmash_and_zap_2m(&mut self, gfn: Gfn) {
        if let Some((pfn, _)) = self.kvm.npt.translate(gfn) {
            self.kvm.psmash_unchecked(self.rmp, pfn);
        }
        let g = self.kvm.geometry;
        let start = g.gfn_align_down(gfn, PageSize::Size2M);
        self.kvm.zap_for_fault(start, g.pages_per_2m(), gfn, PageSize::Size4K);
    }

    fn convert_rmp(&mut self, range: PscRange) -> Result<(), KvmError> {
        self.kvm.convert_legacy(self.host, self.rmp, range)
    }

    fn map_gpa_range(&mut self, range: PscRange) -> Result<(), KvmError> {
        self.kvm.map_gpa_range(self.host, self.rmp, range)
    }
}
