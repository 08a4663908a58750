//! The dense reference RMP: the test oracle.
//!
//! [`DenseRmp`] keeps one raw 16-byte entry ([`RmpEntryRaw`]) per 4 KiB system page in a `Vec` and
//! the set of in-flight regions in a `BTreeSet`. It is deliberately the simplest possible code: no
//! caching and no per-region summaries. Sub-page counts, per-ASID counters and region status are
//! computed from the dense entries every time. It exists to be compared against
//! [`crate::rmp::Rmp`], and was written independently of it from the same contract:
//! `docs/semantics.md`, section "Hardware". Every check below names its rule there (H1–H7, and the
//! numbered steps of each instruction) together with that rule's source. Checks run in the order
//! the contract gives.

use std::collections::BTreeSet;

use snpsim_defs::rmp::{RMP_GPA_LIMIT, RMP_LOCK_ASID};
use snpsim_defs::{
    Gfn, Gpa, NpfErrorCode, PAGE_SIZE_4K, PageSize, PfErrorCode, Pfn, ReturnCode, RmpAdjustOperand,
    RmpArchEntry, RmpEntryHi, RmpEntryLo, RmpEntryRaw, RmpPageSize, SvmExitCode, VmplPerms,
};

use crate::model::{
    AccessKind, GuestAccess, GuestContext, GuestOutcome, PvalidateStatus, RmpConfig, RmpModel, RmpQueryResult,
};
use crate::rmpopt::{RmpStats, RmpoptTable, RmpoptVerify, Target};

/// The oracle RMP: one raw entry per 4 KiB page (H1) and a set of in-flight regions.
///
/// See the module documentation and `docs/semantics.md` ("Hardware").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DenseRmp {
    /// How the model was built.
    config: RmpConfig,
    /// H1: entry `i` is the raw entry of frame `i`, for frames `0..config.pages`.
    entries: Vec<RmpEntryRaw>,
    /// Concurrency: the first frames of the regions another CPU is rewriting.
    in_flight: BTreeSet<Pfn>,
    /// O1–O8: the RMPOPT table (the shared [`RmpoptTable`]: a set of region indices).
    rmpopt: RmpoptTable,
    /// Instruction counters.
    stats: RmpStats,
}

impl DenseRmp {
    /// A fresh RMP: H1, every entry zero (hypervisor-owned; firmware `RMP_ENTRY_VAL_HYPERVISOR`).
    pub fn new(config: RmpConfig) -> DenseRmp {
        let len = usize::try_from(config.pages).expect("the RMP does not fit this host's memory");
        DenseRmp {
            config,
            entries: vec![RmpEntryRaw::default(); len],
            in_flight: BTreeSet::new(),
            rmpopt: RmpoptTable::default(),
            stats: RmpStats::default(),
        }
    }

    /// O8: enable or disable RMPOPT; disabling drops every mark.
    pub fn set_rmpopt(&mut self, on: bool) {
        self.rmpopt.set_enabled(on);
    }

    /// O2: every entry of RMPOPT region `idx` inside the RMP is unassigned and no 2M region of it
    /// is in flight, by scanning the entries.
    fn rmpopt_hv_owned(&self, idx: u64) -> bool {
        let n = crate::rmpopt::region_pages(self.config.geometry);
        let frames = (idx * n)..((idx + 1) * n).min(self.config.pages);
        let in_flight = self.in_flight.iter().any(|r| frames.contains(&r.raw()));
        !in_flight && frames.clone().all(|p| !self.get(Pfn::new(p)).lo.assigned())
    }

    /// O4: a successful RMPUPDATE or PSMASH at `pfn` changed RMP entries: clear the mark of its
    /// region (and count the RMPUPDATE).
    fn rmp_changed(&mut self, pfn: Pfn, update: bool) {
        self.stats.rmp_updates += u64::from(update);
        if self.rmpopt.clear(self.config.geometry, pfn) {
            self.stats.rmpopt_marks_cleared += 1;
        }
    }

    /// `G`: frames per region.
    fn g(&self) -> u64 {
        self.config.geometry.pages_per_2m()
    }

    /// H6: whether `pfn` has an entry (frames `>= pages` are the firmware's "DEFAULT" pages).
    fn inside(&self, pfn: Pfn) -> bool {
        pfn.raw() < self.config.pages
    }

    /// The raw entry of `pfn`, which must be inside the RMP.
    fn get(&self, pfn: Pfn) -> RmpEntryRaw {
        self.entries[pfn.raw() as usize]
    }

    /// Overwrite the raw entry of `pfn`, which must be inside the RMP.
    fn set(&mut self, pfn: Pfn, entry: RmpEntryRaw) {
        self.entries[pfn.raw() as usize] = entry;
    }

    /// The first frame of the region holding `pfn`.
    fn region_of(&self, pfn: Pfn) -> Pfn {
        self.config.geometry.region_of(pfn)
    }

    /// The frames of the region starting at `region` that are inside the RMP.
    fn region_frames(&self, region: Pfn) -> impl Iterator<Item = Pfn> + use<> {
        let end = region.raw().saturating_add(self.g()).min(self.config.pages);
        (region.raw()..end).map(Pfn::new)
    }

    /// Whether all `G` frames of the region starting at `region` are inside the RMP.
    fn region_whole(&self, region: Pfn) -> bool {
        region.raw().checked_add(self.g()).is_some_and(|end| end <= self.config.pages)
    }

    /// H2: the region is 2M iff its aligned entry has the page-size bit set.
    fn is_2m(&self, region: Pfn) -> bool {
        self.inside(region) && self.get(region).lo.page_size()
    }

    /// Whether any entry of the region starting at `region` is assigned (scanning the entries).
    fn any_assigned(&self, region: Pfn) -> bool {
        self.region_frames(region).any(|p| self.get(p).lo.assigned())
    }

    /// The frame of the authoritative entry E for `pfn`: the aligned entry in a 2M region (H2),
    /// else `pfn`'s own entry.
    fn governing(&self, pfn: Pfn) -> Pfn {
        let region = self.region_of(pfn);
        if self.is_2m(region) { region } else { pfn }
    }

    /// Whether the region holding `pfn` is in flight (Concurrency).
    fn is_in_flight(&self, pfn: Pfn) -> bool {
        self.in_flight.contains(&self.region_of(pfn))
    }

    /// PVALIDATE step 4 (VeriSMo `pvalidate`, `check_access`): E is assigned, not immutable, owned
    /// by the guest's ASID, and E's GPA for this page (E's GPA + offset of `pfn` from E) is the
    /// frame of `gpa`. A frame outside the RMP has no entry, so no guest owns it.
    fn owned(&self, guest: GuestContext, gpa: Gpa, pfn: Pfn) -> bool {
        if !self.inside(pfn) {
            return false;
        }
        let e_pfn = self.governing(pfn);
        let e = self.get(e_pfn).lo;
        let page_gfn = e.gpa_frame() + (pfn.raw() - e_pfn.raw());
        e.assigned() && !e.immutable() && e.asid() == guest.asid && page_gfn == gpa.gfn().raw()
    }

    /// H4: the aligned entry's sub-page count := the number of assigned entries of the region
    /// other than the aligned one (firmware `set_rmp_sub_page_count`), recounted from the entries.
    fn recount_subpages(&mut self, region: Pfn) {
        let count = self.region_frames(region).skip(1).filter(|&p| self.get(p).lo.assigned()).count();
        let aligned = self.get(region);
        self.set(region, RmpEntryRaw { lo: aligned.lo.with_subpage_count(count as u16), hi: aligned.hi });
    }

    /// The #NPF error code of PVALIDATE, RMPADJUST and RMPQUERY: P | RMP | GUEST_FINAL | ENC, no
    /// write bit (docs/semantics.md, PVALIDATE, **Choice**).
    fn instruction_npf() -> NpfErrorCode {
        NpfErrorCode::new().with_present(true).with_rmp(true).with_guest_final(true).with_enc(true)
    }

    /// PVALIDATE steps 3–5, shared by RMPADJUST step 3: in flight ⇒ #NPF (step 3); ownership of E
    /// ⇒ #NPF (step 4); a 4K operation in a 2M region ⇒ #NPF SIZEM (step 5, KVM
    /// `sev_handle_rmp_fault` cause a).
    fn instruction_fault(
        &self,
        guest: GuestContext,
        gpa: Gpa,
        pfn: Pfn,
        size: RmpPageSize,
    ) -> Option<NpfErrorCode> {
        if self.is_in_flight(pfn) || !self.owned(guest, gpa, pfn) {
            return Some(Self::instruction_npf());
        }
        if self.is_2m(self.region_of(pfn)) && size == RmpPageSize::Size4K {
            return Some(Self::instruction_npf().with_sizem(true));
        }
        None
    }

    /// PVALIDATE step 2 / RMPADJUST step 1: a 2M operation needs a region-aligned `gpa` and `pfn`.
    fn aligned_2m(&self, gpa: Gpa, pfn: Pfn) -> bool {
        gpa.is_aligned(self.config.geometry.bytes(PageSize::Size2M)) && pfn.is_aligned(self.g())
    }

    /// The entries a guest instruction of `size` at `pfn` rewrites: all `G` of the region for 2M,
    /// else `pfn`'s own.
    fn targets(&self, pfn: Pfn, size: RmpPageSize) -> Vec<Pfn> {
        match size {
            RmpPageSize::Size2M => self.region_frames(self.region_of(pfn)).collect(),
            RmpPageSize::Size4K => vec![pfn],
        }
    }

    /// RMPUPDATE step 3 (**Choice**): assigned ⇒ ASID in `1..=1022`, GPA below 2^51 and aligned to
    /// the entry size; unassigned ⇒ ASID, GPA and immutable all zero (Linux `rmp_make_shared`).
    fn operand_valid(&self, new: &RmpArchEntry) -> bool {
        if new.assigned() {
            let align =
                if new.page_size() { self.config.geometry.bytes(PageSize::Size2M) } else { PAGE_SIZE_4K };
            (1..u32::from(RMP_LOCK_ASID)).contains(&new.asid())
                && new.gpa().raw() < RMP_GPA_LIMIT
                && new.gpa().is_aligned(align)
        } else {
            new.asid() == 0 && new.gpa() == Gpa::default() && !new.immutable()
        }
    }

    /// RMPUPDATE step 7 reset (VeriSMo `_rmpupdate` `rmp_perm_init`): VMPL0 gets every
    /// permission, VMPL1–3 none.
    fn initial_perms() -> RmpEntryHi {
        RmpEntryHi::new()
            .with_vmpl0(VmplPerms::ALL)
            .with_vmpl1(VmplPerms::NONE)
            .with_vmpl2(VmplPerms::NONE)
            .with_vmpl3(VmplPerms::NONE)
    }
}

impl RmpModel for DenseRmp {
    fn config(&self) -> RmpConfig {
        self.config
    }

    fn rmpupdate_operand_valid(&self, new: RmpArchEntry) -> bool {
        self.operand_valid(&new)
    }

    fn rmpupdate(&mut self, pfn: Pfn, new: RmpArchEntry) -> ReturnCode {
        // Step 1 (H6): the frame must have an entry.
        if !self.inside(pfn) {
            return ReturnCode::FailInput;
        }
        let region = self.region_of(pfn);
        // Step 2 (APM, UNVERIFIED wording): a 2M entry needs a region-aligned frame. A 2M update
        // also needs all `G` entries to exist (H6: the frames beyond `pages` have none).
        if new.page_size() && (!pfn.is_aligned(self.g()) || !self.region_whole(region)) {
            return ReturnCode::FailInput;
        }
        // Step 3 (Choice): operand validity.
        if !self.operand_valid(&new) {
            return ReturnCode::FailInput;
        }
        // Step 4 (Linux `PSMASH_FAIL_INUSE` comment): the region is in flight.
        if self.in_flight.contains(&region) {
            return ReturnCode::FailInuse;
        }
        let size = RmpPageSize::from_bit(new.page_size());
        let targets = self.targets(pfn, size);
        // Step 5 (MSVC `__rmpupdate`; VeriSMo `_rmpupdate`): an entry to be rewritten is immutable.
        if targets.iter().any(|&p| self.get(p).lo.immutable()) {
            return ReturnCode::FailPermission;
        }
        // Step 6 (Linux `RMPUPDATE_FAIL_OVERLAP`): 4K inside a 2M region; 2M over a 4K region that
        // holds an assigned entry. 2M over 2M is allowed.
        let was_2m = self.is_2m(region);
        match size {
            RmpPageSize::Size4K if was_2m => return ReturnCode::FailOverlap,
            RmpPageSize::Size2M if !was_2m && self.any_assigned(region) => return ReturnCode::FailOverlap,
            _ => {}
        }
        // Step 7: the effect.
        for (i, &p) in (0u64..).zip(targets.iter()) {
            let old = self.get(p);
            let entry = if new.assigned() {
                // H3: entry i of a 2M region mirrors the aligned one with GPA + i·4K and the
                // page-size bit only on the aligned entry.
                let lo = RmpEntryLo::new()
                    .with_assigned(true)
                    .with_page_size(new.page_size() && i == 0)
                    .with_immutable(new.immutable())
                    .with_gpa_frame(new.gpa().gfn().raw() + i)
                    .with_asid(new.asid() as u16);
                // Step 7 (VeriSMo `_rmpupdate`): reset when assigned, ASID, GPA or size changes.
                let changed = !old.lo.assigned()
                    || old.lo.asid() != lo.asid()
                    || old.lo.gpa_frame() != lo.gpa_frame()
                    || was_2m != new.page_size();
                if changed {
                    RmpEntryRaw { lo, hi: Self::initial_perms() }
                } else {
                    RmpEntryRaw {
                        lo: lo.with_validated(old.lo.validated()).with_vmsa(old.lo.vmsa()),
                        hi: old.hi,
                    }
                }
            } else {
                // Step 7: unassigned entries are all zero; H5: for a 2M update, all `G` of them.
                RmpEntryRaw::default()
            };
            self.set(p, entry);
        }
        // Step 7, H4: the sub-page count follows (the ASID counter is computed on demand, H7).
        self.recount_subpages(region);
        // O4.
        self.rmp_changed(pfn, true);
        ReturnCode::Success
    }

    fn psmash(&mut self, pfn: Pfn) -> ReturnCode {
        // Step 1 (MSVC `__psmash` 1): inside the RMP and region-aligned (Linux aligns the PFN down
        // before calling). Step 2 (code 2, ASID ≠ 0) needs a guest executing PSMASH: never here.
        if !self.inside(pfn) || !pfn.is_aligned(self.g()) {
            return ReturnCode::FailInput;
        }
        // Step 3 (MSVC `__psmash` 3; Linux `PSMASH_FAIL_INUSE`): the region is in flight.
        if self.in_flight.contains(&pfn) {
            return ReturnCode::FailInuse;
        }
        // Step 4 (MSVC `__psmash` 7, "doesn't meet the requirements for expansion"): the region
        // is not 2M, or (Choice) its 2M entry is immutable.
        let aligned = self.get(pfn);
        if !self.is_2m(pfn) || aligned.lo.immutable() {
            return ReturnCode::FailUnsupported;
        }
        // Step 5 (Linux `snp_rmptable_psmash`, "preserving the Validated bit"): clear the page-size
        // bit; by H3 the other entries already hold GPA + i·4K, Validated and the permissions.
        self.set(pfn, RmpEntryRaw { lo: aligned.lo.with_page_size(false), hi: aligned.hi });
        // O4.
        self.rmp_changed(pfn, false);
        ReturnCode::Success
    }

    fn pvalidate(
        &mut self,
        guest: GuestContext,
        gpa: Gpa,
        pfn: Pfn,
        size: RmpPageSize,
        validate: bool,
    ) -> GuestOutcome<PvalidateStatus> {
        // Step 1 (VeriSMo `pvalidate`): PVALIDATE is VMPL0-only.
        if guest.vmpl != 0 {
            return GuestOutcome::Fail(ReturnCode::FailPermission);
        }
        // Step 2: outside the RMP (H6), or a 2M operation with an unaligned GPA or frame.
        let huge = size == RmpPageSize::Size2M;
        if !self.inside(pfn) || (huge && !gpa.is_aligned(self.config.geometry.bytes(PageSize::Size2M))) {
            return GuestOutcome::Fail(ReturnCode::FailInput);
        }
        // H12: an aligned GPA translated to an unaligned frame is not a 2M page.
        if huge && !self.aligned_2m(gpa, pfn) {
            return GuestOutcome::Fail(ReturnCode::FailSizeMismatch);
        }
        // Steps 3–5: in flight, ownership, 4K operation in a 2M region ⇒ #NPF.
        if let Some(code) = self.instruction_fault(guest, gpa, pfn, size) {
            return GuestOutcome::Npf(code);
        }
        // Step 6 (Linux `pval_pages`, coconut `pvalidate_range`): 2M operation in a 4K region.
        if size == RmpPageSize::Size2M && !self.is_2m(self.region_of(pfn)) {
            return GuestOutcome::Fail(ReturnCode::FailSizeMismatch);
        }
        // Step 7 (MSVC `__pvalidate`): already in the requested state ⇒ CF = 1.
        if self.get(self.governing(pfn)).lo.validated() == validate {
            return GuestOutcome::Done(PvalidateStatus::Unchanged);
        }
        // Step 8: set Validated (on all `G` entries for 2M).
        for p in self.targets(pfn, size) {
            let e = self.get(p);
            self.set(p, RmpEntryRaw { lo: e.lo.with_validated(validate), hi: e.hi });
        }
        GuestOutcome::Done(PvalidateStatus::Changed)
    }

    fn rmpadjust(
        &mut self,
        guest: GuestContext,
        gpa: Gpa,
        pfn: Pfn,
        size: RmpPageSize,
        op: RmpAdjustOperand,
    ) -> GuestOutcome<()> {
        // Step 1: target VMPL > 3; reserved operand bits 13–15 (the permission byte's reserved
        // bits) or 17–63; outside the RMP; 2M unaligned; VMSA with 2M (Choice: a VMSA is 4K).
        let reserved = op.perms().reserved() != 0 || op.into_bits() >> 17 != 0;
        if op.target_vmpl() > 3
            || reserved
            || !self.inside(pfn)
            || (size == RmpPageSize::Size2M && !self.aligned_2m(gpa, pfn))
            || (op.vmsa() && size == RmpPageSize::Size2M)
        {
            return GuestOutcome::Fail(ReturnCode::FailInput);
        }
        // Step 2 (AMDSEV issue 208; VeriSMo `rmpadjust`): only less-privileged VMPLs.
        if op.target_vmpl() <= guest.vmpl {
            return GuestOutcome::Fail(ReturnCode::FailPermission);
        }
        // Step 3: as PVALIDATE steps 3–5.
        if let Some(code) = self.instruction_fault(guest, gpa, pfn, size) {
            return GuestOutcome::Npf(code);
        }
        let e = self.get(self.governing(pfn));
        // Step 4: E not Validated ⇒ #VC 0x404.
        if !e.lo.validated() {
            return GuestOutcome::Vc(SvmExitCode::PageNotValidated);
        }
        // Step 5: 2M operation in a 4K region.
        if size == RmpPageSize::Size2M && !self.is_2m(self.region_of(pfn)) {
            return GuestOutcome::Fail(ReturnCode::FailSizeMismatch);
        }
        // Step 6 (VeriSMo `rmpadjust`): the new permissions must be a subset of the caller's own.
        let own = e.perms(guest.vmpl).into_bits();
        if op.perms().into_bits() & !own != 0 {
            return GuestOutcome::Fail(ReturnCode::FailPermission);
        }
        // Step 7 (MSVC `__rmpadjust`; edk2 `SevSnpRmpAdjust`): the target's permissions (all `G`
        // entries for 2M); the VMSA bit only when the caller runs at VMPL0.
        for p in self.targets(pfn, size) {
            let mut entry = self.get(p).with_perms(op.target_vmpl(), op.perms());
            if guest.vmpl == 0 {
                entry.lo = entry.lo.with_vmsa(op.vmsa());
            }
            self.set(p, entry);
        }
        GuestOutcome::Done(())
    }

    fn rmpquery(
        &self,
        guest: GuestContext,
        gpa: Gpa,
        pfn: Pfn,
        target_vmpl: u8,
    ) -> GuestOutcome<RmpQueryResult> {
        // RMPQUERY: target VMPL > 3 or outside the RMP (H6) ⇒ FAIL_INPUT.
        if target_vmpl > 3 || !self.inside(pfn) {
            return GuestOutcome::Fail(ReturnCode::FailInput);
        }
        // RMPQUERY (Choice): a VMPL may query itself and less-privileged levels.
        if target_vmpl < guest.vmpl {
            return GuestOutcome::Fail(ReturnCode::FailPermission);
        }
        // RMPQUERY: in flight / ownership ⇒ #NPF without SIZEM (either size may be queried).
        if self.is_in_flight(pfn) || !self.owned(guest, gpa, pfn) {
            return GuestOutcome::Npf(Self::instruction_npf());
        }
        let e = self.get(self.governing(pfn));
        // RMPQUERY: not Validated ⇒ #VC 0x404.
        if !e.lo.validated() {
            return GuestOutcome::Vc(SvmExitCode::PageNotValidated);
        }
        // RMPQUERY: the target's permissions, the page's VMSA bit and the governing entry's size.
        GuestOutcome::Done(RmpQueryResult {
            perms: e.perms(target_vmpl),
            vmsa: self.get(pfn).lo.vmsa(),
            page_size: RmpPageSize::from_bit(self.is_2m(self.region_of(pfn))),
        })
    }

    fn rmpread(&self, pfn: Pfn) -> Result<RmpArchEntry, ReturnCode> {
        // RMPREAD: outside the RMP (H6) ⇒ FAIL_INPUT.
        if !self.inside(pfn) {
            return Err(ReturnCode::FailInput);
        }
        // RMPREAD: the page's own entry in the architectural layout (Linux `struct rmpentry`), with
        // `hpage_region_status` = the frame is region-aligned and some *other* entry of its region
        // is assigned (Linux commit 3e43c60eb3e3), found by scanning the entries.
        let e = self.get(pfn).lo;
        let status =
            pfn.is_aligned(self.g()) && self.region_frames(pfn).skip(1).any(|p| self.get(p).lo.assigned());
        Ok(RmpArchEntry::new()
            .with_gpa(Gfn::new(e.gpa_frame()).gpa())
            .with_assigned(e.assigned())
            .with_page_size(e.page_size())
            .with_hpage_region_status(status)
            .with_immutable(e.immutable())
            .with_asid(u32::from(e.asid())))
    }

    fn raw_entry(&self, pfn: Pfn) -> Option<RmpEntryRaw> {
        // H1/H6: the raw entry, none beyond the RMP.
        self.inside(pfn).then(|| self.get(pfn))
    }

    fn check_guest_access(&self, access: &GuestAccess) -> GuestOutcome<()> {
        let pfn = access.pfn;
        let region = self.region_of(pfn);
        // Error code base: P | RMP | GUEST_FINAL, + W for writes, + ID for fetches, + U at CPL 3,
        // + ENC for private accesses.
        let base = NpfErrorCode::new()
            .with_present(true)
            .with_rmp(true)
            .with_guest_final(true)
            .with_write(access.kind == AccessKind::Write)
            .with_fetch(access.kind == AccessKind::Exec)
            .with_user(access.user)
            .with_enc(access.private);
        if access.private {
            // Private 1 (VeriSMo `check_access`): in flight or ownership, as PVALIDATE 3–4.
            if self.is_in_flight(pfn) || !self.owned(access.guest, access.gpa, pfn) {
                return GuestOutcome::Npf(base);
            }
            // Private 2: size, the NPT leaf counted as at most 2M (a 1G leaf is checked as its 2M
            // part, Linux `adjust_direct_map` comment).
            let leaf_2m = access.npt_size >= PageSize::Size2M;
            let entry_2m = self.is_2m(region);
            // Larger leaf than entry (APM §15.36.11 "2M NPT, 4K RMP", RFC v3 handler).
            if leaf_2m && !entry_2m {
                return GuestOutcome::Npf(base.with_sizem(true));
            }
            // Smaller leaf than entry (KVM `sev_handle_rmp_fault` cause b), when configured.
            if !leaf_2m && entry_2m && self.config.smaller_npt_faults {
                return GuestOutcome::Npf(base.with_sizem(true));
            }
            let e = self.get(self.governing(pfn));
            // Private 3: not Validated ⇒ #VC 0x404.
            if !e.lo.validated() {
                return GuestOutcome::Vc(SvmExitCode::PageNotValidated);
            }
            // Private 4: the VMPL permission for the kind (fetch: Xu at CPL 3, Xs otherwise).
            let perms = e.perms(access.guest.vmpl);
            let allowed = match access.kind {
                AccessKind::Read => perms.read(),
                AccessKind::Write => perms.write(),
                AccessKind::Exec if access.user => perms.exec_user(),
                AccessKind::Exec => perms.exec_supervisor(),
            };
            if !allowed {
                return GuestOutcome::Npf(base.with_vmpl(true));
            }
            GuestOutcome::Done(())
        } else {
            // Shared: a frame outside the RMP has no entry to check (H6).
            if !self.inside(pfn) {
                return GuestOutcome::Done(());
            }
            // Shared 1 (KVM implicit conversion): the page's own entry assigned ⇒ #NPF.
            if self.get(pfn).lo.assigned() {
                return GuestOutcome::Npf(base);
            }
            // Shared 2 (`docs/semantics.md`, guest access checks): a leaf ≥ 2M whose accessed 2M
            // part holds an assigned page.
            if access.npt_size >= PageSize::Size2M && self.any_assigned(region) {
                return GuestOutcome::Npf(base.with_sizem(true));
            }
            GuestOutcome::Done(())
        }
    }

    fn check_host_write(&self, pfn: Pfn, mapping: PageSize, user: bool) -> Result<(), PfErrorCode> {
        // H6: host writes beyond the RMP are not checked.
        if !self.inside(pfn) {
            return Ok(());
        }
        // O6: RMPOPT marked the region: the check is skipped.
        if self.rmpopt.is_marked(self.config.geometry, pfn) {
            return Ok(());
        }
        // Host write check (RFC v4 10/40; Linux `adjust_direct_map`): the target assigned, or a
        // mapping ≥ 2M whose accessed 2M part holds an assigned page (Choice: immutable alone does
        // not fault).
        let target = self.get(pfn).lo.assigned();
        let large = mapping >= PageSize::Size2M && self.any_assigned(self.region_of(pfn));
        if target || large {
            return Err(PfErrorCode::new()
                .with_present(true)
                .with_write(true)
                .with_rmp(true)
                .with_user(user));
        }
        Ok(())
    }

    fn begin_in_flight(&mut self, region: Pfn) -> ReturnCode {
        // Concurrency: a region start inside the RMP, not already in flight.
        if !self.inside(region) || !region.is_aligned(self.g()) {
            return ReturnCode::FailInput;
        }
        if self.in_flight.insert(region) { ReturnCode::Success } else { ReturnCode::FailInuse }
    }

    fn in_flight(&self, pfn: Pfn) -> bool {
        self.is_in_flight(pfn)
    }

    fn end_in_flight(&mut self, region: Pfn) -> bool {
        self.in_flight.remove(&region)
    }

    fn asid_assigned_pages(&self, asid: u16) -> u64 {
        // H7: count the assigned entries of the ASID by scanning (a 2M entry counts `G` by H3).
        self.entries.iter().filter(|e| e.lo.assigned() && e.lo.asid() == asid).count() as u64
    }

    fn rmpopt_verify(&mut self, region: Pfn) -> RmpoptVerify {
        // O2/O3: disabled, out of range, or marked iff hypervisor-owned.
        let outcome = match self.rmpopt.target(self.config.geometry, self.config.pages, region) {
            Target::Disabled => RmpoptVerify::Disabled,
            Target::OutOfRange => RmpoptVerify::OutOfRange,
            Target::Region(idx) => {
                let hv_owned = self.rmpopt_hv_owned(idx);
                self.rmpopt.record(idx, hv_owned)
            }
        };
        self.stats.count_verify(outcome);
        outcome
    }

    fn rmpopt_enabled(&self) -> bool {
        self.rmpopt.enabled()
    }

    fn is_optimized(&self, pfn: Pfn) -> bool {
        // O6: inside the RMP and in a marked region.
        self.inside(pfn) && self.rmpopt.is_marked(self.config.geometry, pfn)
    }

    fn rmpopt_marked_pages(&self) -> u64 {
        self.rmpopt.marked_pages(self.config.geometry, self.config.pages)
    }

    fn rmp_stats(&self) -> RmpStats {
        self.stats
    }
}
