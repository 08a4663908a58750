//! The interface of an RMP model: the instructions, the access checks and the concurrency hooks.
//!
//! Two implementations exist: [`crate::rmp::Rmp`] (the model every other layer uses, stored by
//! 2M region so that untouched memory costs nothing) and [`crate::reference::DenseRmp`] (one raw
//! 16-byte entry per 4 KiB page, the simplest possible code, kept as the test oracle). Both follow
//! the rules written down, with their sources, in `docs/semantics.md` ("Hardware").

use snpsim_defs::{
    Gpa, NpfErrorCode, PageSize, PfErrorCode, Pfn, ReturnCode, RmpAdjustOperand, RmpArchEntry, RmpEntryRaw,
    RmpPageSize, SvmExitCode, VmplPerms,
};

use crate::Geometry;
use crate::rmpopt::{RmpStats, RmpoptScan, RmpoptVerify};

/// How an RMP model is built: geometry, size and the switchable checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RmpConfig {
    /// Pages per level.
    pub geometry: Geometry,
    /// System pages the RMP covers (frames `0..pages`); a frame beyond is a "DEFAULT" page that no
    /// RMP check applies to.
    pub pages: u64,
    /// Whether a private access through an NPT leaf *smaller* than the RMP entry (4K leaf, 2M
    /// entry) faults with SIZEM. APM §15.36.11 as quoted by the RFC v3 KVM handler and upstream
    /// `sev_handle_rmp_fault`'s comment list it; default true (`[vm] smaller_npt_faults`).
    pub smaller_npt_faults: bool,
}

impl RmpConfig {
    /// An x86 RMP covering `pages` frames with the default checks.
    pub const fn x86(pages: u64) -> Self {
        RmpConfig { geometry: Geometry::X86, pages, smaller_npt_faults: true }
    }

    /// A `tiny`-geometry RMP covering `pages` frames with the default checks.
    pub const fn tiny(pages: u64) -> Self {
        RmpConfig { geometry: Geometry::TINY, pages, smaller_npt_faults: true }
    }
}

/// The guest executing an instruction or access: its ASID and the VMPL it runs at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GuestContext {
    /// The guest's ASID (1–1022 for an SNP guest).
    pub asid: u16,
    /// The VMPL the vCPU runs at (0–3).
    pub vmpl: u8,
}

/// What a guest access does with the page.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::Display,
)]
#[strum(serialize_all = "lowercase")]
pub enum AccessKind {
    /// A data read.
    Read,
    /// A data write.
    Write,
    /// An instruction fetch.
    Exec,
}

/// A guest memory access after the NPT walk: which GPA, which system page the NPT leaf maps it to,
/// and the size of that leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GuestAccess {
    /// Who accesses.
    pub guest: GuestContext,
    /// The accessed guest-physical address.
    pub gpa: Gpa,
    /// The system page the NPT maps `gpa` to.
    pub pfn: Pfn,
    /// The size of the NPT leaf that translated `gpa`.
    pub npt_size: PageSize,
    /// C-bit set (private access) or clear (shared access).
    pub private: bool,
    /// Read, write or fetch.
    pub kind: AccessKind,
    /// The access was made at CPL 3.
    pub user: bool,
}

/// The result of a guest-executed RMP instruction or access check.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GuestOutcome<T> {
    /// The instruction retired with [`ReturnCode::Success`] (or the access completed).
    Done(T),
    /// The instruction retired with a failure code in EAX.
    Fail(ReturnCode),
    /// The instruction or access caused a nested page fault with this error code.
    Npf(NpfErrorCode),
    /// The instruction or access caused a #VC with this exit code.
    Vc(SvmExitCode),
}

impl<T> GuestOutcome<T> {
    /// Whether the outcome is `Done`.
    pub const fn is_done(&self) -> bool {
        matches!(self, GuestOutcome::Done(_))
    }

    /// The outcome as traces and step results write it: `done` (`done` names a completed
    /// outcome's value), a failure code's name, `npf:0x...` (the error code) or `vc:0x...` (the
    /// exit code). Stable lower-case names, never `Debug` text.
    pub fn name_with(&self, done: impl Fn(&T) -> &'static str) -> String {
        match self {
            GuestOutcome::Done(t) => done(t).to_string(),
            GuestOutcome::Fail(rc) => rc.name().to_string(),
            GuestOutcome::Npf(code) => format!("npf:{:#x}", code.into_bits()),
            GuestOutcome::Vc(code) => format!("vc:{:#x}", code.raw()),
        }
    }
}

impl PvalidateStatus {
    /// `done` (the entry changed, CF = 0) or `unchanged` (CF = 1).
    pub const fn name(self) -> &'static str {
        match self {
            PvalidateStatus::Changed => "done",
            PvalidateStatus::Unchanged => "unchanged",
        }
    }
}

/// Whether a successful PVALIDATE changed the Validated bit (CF = 0) or found it already in the
/// requested state (CF = 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PvalidateStatus {
    /// The entry changed (CF = 0).
    Changed,
    /// The entry already had the requested state (CF = 1; Linux `PVALIDATE_FAIL_NOUPDATE`).
    Unchanged,
}

/// What RMPQUERY reports about a page for a target VMPL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RmpQueryResult {
    /// The target VMPL's permissions.
    pub perms: VmplPerms,
    /// The page is a VMSA.
    pub vmsa: bool,
    /// The size of the RMP entry governing the page.
    pub page_size: RmpPageSize,
}

/// The RMPUPDATE operand of page `k` of a [`RmpModel::rmpupdate_4k_run`] from `gpa`: an assigned
/// 4K entry of `asid` at the GPA `k` pages on (Linux `rmp_make_private` of a 4K page).
pub fn run_4k_operand(geometry: Geometry, asid: u16, gpa: Gpa, k: u64) -> RmpArchEntry {
    RmpArchEntry::new()
        .with_assigned(true)
        .with_asid(u32::from(asid))
        .with_gpa(Gpa::new(gpa.raw().wrapping_add(k.wrapping_mul(geometry.bytes(PageSize::Size4K)))))
}

/// An RMP: the per-page ownership table of SEV-SNP and the instructions and checks that use it.
///
/// Frame numbers are system frames (`Pfn`); the caller (host or KVM layer) has already translated
/// guest addresses through its page tables. Every method is deterministic.
pub trait RmpModel: core::fmt::Debug {
    /// How the model was built.
    fn config(&self) -> RmpConfig;

    /// RMPUPDATE (host, CPL 0): write the architectural state `new` into the entry for `pfn` (a 2M
    /// entry when `new.page_size()`).
    fn rmpupdate(&mut self, pfn: Pfn, new: RmpArchEntry) -> ReturnCode;

    /// PSMASH (host): split the 2M entry at `pfn` (2M-aligned) into 4K entries.
    fn psmash(&mut self, pfn: Pfn) -> ReturnCode;

    /// PVALIDATE (guest): set or clear Validated for the page at `gpa`, which the NPT maps to
    /// `pfn`, at `size`.
    fn pvalidate(
        &mut self,
        guest: GuestContext,
        gpa: Gpa,
        pfn: Pfn,
        size: RmpPageSize,
        validate: bool,
    ) -> GuestOutcome<PvalidateStatus>;

    /// A run of 4K PVALIDATEs (docs/semantics.md, "Ranges"): the PVALIDATEs of `pages`
    /// consecutive 4K pages from `gpa`, which the NPT maps to the frames from `pfn` (GPA and frame
    /// rising together), executed in order for as long as each retires `Done(Changed)`. Returns
    /// how many did; the state is then exactly what that many 4K [`RmpModel::pvalidate`]s would
    /// have left, and the page after them (if any) is as it was, for the caller to execute alone
    /// (its PVALIDATE does something else). A model may stop earlier than that page — the
    /// region-structured RMP stops wherever a run is not uniform — so a caller must run the next
    /// page alone whatever the count. This default executes the pages one at a time (a
    /// PVALIDATE that does not retire `Changed` changes nothing).
    fn pvalidate_4k_run(
        &mut self,
        guest: GuestContext,
        gpa: Gpa,
        pfn: Pfn,
        pages: u64,
        validate: bool,
    ) -> u64 {
        let bytes = self.config().geometry.bytes(PageSize::Size4K);
        for k in 0..pages {
            let (g, p) = (Gpa::new(gpa.raw().wrapping_add(k * bytes)), Pfn::new(pfn.raw().wrapping_add(k)));
            if self.pvalidate(guest, g, p, RmpPageSize::Size4K, validate)
                != GuestOutcome::Done(PvalidateStatus::Changed)
            {
                return k;
            }
        }
        pages
    }

    /// How many frames from `pfn` (at most `pages`) are, in a row, assigned and governed by a 4K
    /// entry: [`RmpModel::lookup`] of each is `Some((true, 4K))` (docs/semantics.md, "Ranges").
    /// This default looks each frame up.
    fn assigned_4k_run(&self, pfn: Pfn, pages: u64) -> u64 {
        (0..pages)
            .position(|k| self.lookup(Pfn::new(pfn.raw() + k)) != Some((true, RmpPageSize::Size4K)))
            .map_or(pages, |k| k as u64)
    }

    /// Whether RMPUPDATE step 3 accepts `new` as its operand (the ASID, the GPA and its alignment;
    /// an unassigned operand all zero). Software cannot ask this of the hardware; a range form
    /// asks it so that it never starts work that an RMPUPDATE of its run would then refuse.
    fn rmpupdate_operand_valid(&self, new: RmpArchEntry) -> bool;

    /// A run of 4K RMPUPDATEs to private (docs/semantics.md, "Ranges"): the RMPUPDATEs that make
    /// `pages` consecutive frames from `pfn` assigned 4K entries of `asid`, at the GPAs rising one
    /// page per frame from `gpa`, executed in order for as long as each frame's entry reads
    /// unassigned before its RMPUPDATE ([`RmpModel::lookup`] `Some((false, 4K))`) and the
    /// RMPUPDATE succeeds. Returns how many did; the state is then exactly what that many
    /// [`RmpModel::rmpupdate`]s would have left, and the frame after them (if any) is as it was,
    /// for the caller to update alone. Like [`RmpModel::pvalidate_4k_run`] it may stop early
    /// wherever a run is not uniform. This default executes the frames one at a time (a failed
    /// RMPUPDATE changes nothing).
    fn rmpupdate_4k_run(&mut self, pfn: Pfn, gpa: Gpa, asid: u16, pages: u64) -> u64 {
        let geometry = self.config().geometry;
        for k in 0..pages {
            let p = Pfn::new(pfn.raw().wrapping_add(k));
            if self.lookup(p) != Some((false, RmpPageSize::Size4K)) {
                return k;
            }
            if self.rmpupdate(p, run_4k_operand(geometry, asid, gpa, k)) != ReturnCode::Success {
                return k;
            }
        }
        pages
    }

    /// RMPADJUST (guest): set the permissions (and VMSA flag) of a less-privileged VMPL.
    fn rmpadjust(
        &mut self,
        guest: GuestContext,
        gpa: Gpa,
        pfn: Pfn,
        size: RmpPageSize,
        op: RmpAdjustOperand,
    ) -> GuestOutcome<()>;

    /// RMPQUERY (guest): read the permissions of `target_vmpl` on the page.
    fn rmpquery(
        &self,
        guest: GuestContext,
        gpa: Gpa,
        pfn: Pfn,
        target_vmpl: u8,
    ) -> GuestOutcome<RmpQueryResult>;

    /// RMPREAD (host): the architectural view of the entry for `pfn`.
    fn rmpread(&self, pfn: Pfn) -> Result<RmpArchEntry, ReturnCode>;

    /// The raw 16-byte in-memory entry for `pfn`, or `None` beyond the RMP.
    fn raw_entry(&self, pfn: Pfn) -> Option<RmpEntryRaw>;

    /// The RMP check of a guest access after its NPT walk.
    fn check_guest_access(&self, access: &GuestAccess) -> GuestOutcome<()>;

    /// The RMP check of a host write to `pfn` through a host mapping of `mapping` size; host reads
    /// are never RMP-checked. `user` marks a CPL-3 access. A write to a region RMPOPT marked
    /// skips the check and completes (O6).
    fn check_host_write(&self, pfn: Pfn, mapping: PageSize, user: bool) -> Result<(), PfErrorCode>;

    /// RMPOPT verify and report status (O2, `docs/semantics.md` *RMPOPT*): mark the 1 GiB region
    /// holding `region` iff every RMP entry in it is hypervisor-owned and none of its 2M regions
    /// is in flight. A model without RMPOPT (this default) answers [`RmpoptVerify::Disabled`];
    /// a wrapper must forward this and the other RMPOPT methods to the model it wraps.
    fn rmpopt_verify(&mut self, region: Pfn) -> RmpoptVerify {
        let _ = region;
        RmpoptVerify::Disabled
    }

    /// O8: whether RMPOPT is enabled on this machine.
    fn rmpopt_enabled(&self) -> bool {
        false
    }

    /// O6: whether host writes to `pfn` skip the RMP check because its region is marked.
    fn is_optimized(&self, pfn: Pfn) -> bool {
        let _ = pfn;
        false
    }

    /// Frames of the RMP in marked regions.
    fn rmpopt_marked_pages(&self) -> u64 {
        0
    }

    /// `rmpopt_coverage`: the share of the RMP's frames (all host memory) in marked regions,
    /// 0 for an empty RMP.
    fn rmpopt_coverage(&self) -> f64 {
        let pages = self.config().pages;
        if pages == 0 { 0.0 } else { self.rmpopt_marked_pages() as f64 / pages as f64 }
    }

    /// The instruction counters (RMPUPDATEs for the global TLB flush, RMPOPT verifies and
    /// cleared marks). Zero for a model that does not count.
    fn rmp_stats(&self) -> RmpStats {
        RmpStats::default()
    }

    /// O7: RMPOPT verify every region of the RMP inside the 2 TB window, in rising order:
    /// Linux's whole-memory pass (v2 3/7 `rmpopt_kthread`, from the first 1 GiB-aligned address
    /// of RAM up to the 2 TB limit), run once SNP is initialised and again when guest memory is
    /// freed (v2: each time a guest_memfd is destroyed, S. Christopherson's review of 4 Mar 2026;
    /// v10 6/6, 30 Jun 2026: `snp_rmpopt_all_physmem()` after `sev_vm_destroy`). Stops at once
    /// when RMPOPT is disabled.
    fn rmpopt_verify_all(&mut self) -> RmpoptScan {
        let config = self.config();
        let n = crate::rmpopt::region_pages(config.geometry);
        let regions = config.pages.div_ceil(n).min(crate::rmpopt::RMPOPT_MAX_REGIONS);
        let mut scan = RmpoptScan::default();
        for idx in 0..regions {
            match self.rmpopt_verify(Pfn::new(idx * n)) {
                RmpoptVerify::Disabled => break,
                RmpoptVerify::Optimized => scan.optimized += 1,
                RmpoptVerify::NotOptimized | RmpoptVerify::OutOfRange => {}
            }
            scan.verified += 1;
        }
        scan
    }

    /// Mark the 2M region starting at `region` as being rewritten by an in-flight operation on
    /// another CPU: until [`RmpModel::end_in_flight`], RMPUPDATE and PSMASH in it return FAIL_INUSE
    /// and guest checks in it take an #NPF. Returns FAIL_INUSE if it already is, FAIL_INPUT if
    /// `region` is not a region start inside the RMP.
    fn begin_in_flight(&mut self, region: Pfn) -> ReturnCode;

    /// End an in-flight operation started by [`RmpModel::begin_in_flight`]; returns whether one was.
    fn end_in_flight(&mut self, region: Pfn) -> bool;

    /// Whether the 2M region holding `pfn` is in flight. Software cannot ask this of the hardware
    /// (it sees FAIL_INUSE or an #NPF); the engine uses it to retry the way KVM's loops would.
    fn in_flight(&self, pfn: Pfn) -> bool;

    /// The number of 4 KiB pages assigned to `asid` (the RMP's per-ASID bookkeeping counter).
    fn asid_assigned_pages(&self, asid: u16) -> u64;

    /// Whether any page of the 2M region holding `pfn` is assigned, as software learns it from one
    /// RMPREAD of the region's aligned frame: that entry's own assigned bit, or its 2M-region status
    /// ("some *other* page of the region is assigned", set only for an aligned frame; Linux commit
    /// 3e43c60eb3e3). `false` beyond the RMP.
    fn region_has_assigned(&self, pfn: Pfn) -> bool {
        let region = self.config().geometry.region_of(pfn);
        self.rmpread(region).is_ok_and(|e| e.assigned() || e.hpage_region_status())
    }

    /// Linux `snp_lookup_rmpentry`: whether `pfn` is assigned and the size of the entry that
    /// governs it (the 2M-aligned entry's page-size bit). `None` beyond the RMP.
    fn lookup(&self, pfn: Pfn) -> Option<(bool, RmpPageSize)> {
        let own = self.rmpread(pfn).ok()?;
        let large = self.rmpread(self.config().geometry.region_of(pfn)).ok()?;
        Some((own.assigned(), RmpPageSize::from_bit(large.page_size())))
    }
}
