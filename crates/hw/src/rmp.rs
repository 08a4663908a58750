//! The region-structured RMP: the model every upper layer (host, KVM, guest, engine) uses.
//!
//! State costs O(regions), not O(pages), and less where regions repeat: a region's contents are
//! stored only while they differ from the all-zero (hypervisor-owned) state of a fresh RMP (H1),
//! in a [`RegionVec`] (finding a region is an index, not a tree search; consecutive 2M regions
//! whose aligned entries differ only by a GPA rising with the index cost one chunk header). A 2M
//! region (H2) is stored as its one aligned entry; the raw contents of its other `G-1` entries are
//! derived on read (H3), never stored. A 4K region that holds any assigned entry is stored as its
//! `G` raw entries in a [`RunVec`] (a smashed region's entries, GPA rising page by page, cost a
//! chunk header per 64 pages); it is dropped as soon as it returns to all-zero. The per-ASID counters (H7) are kept incrementally, the
//! sub-page count (H4) in the aligned raw entry as the hardware keeps it.
//!
//! Every rule is written once for any [`crate::Geometry`] and cites its rule id in
//! `docs/semantics.md` ("Hardware"), which names the sources. Only ordered containers are used so
//! that every run is deterministic.
//!
//! Why one long file: the RMP's storage and every instruction that reads or writes it (RMPUPDATE,
//! PSMASH, PVALIDATE, RMPADJUST, RMPQUERY/RMPREAD and the access checks) share the private
//! region representation; splitting them would expose it to the rest of the crate. The last
//! 130 lines are its unit tests.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use snpsim_defs::rmp::{RMP_GPA_LIMIT, RMP_LOCK_ASID};
use snpsim_defs::{
    Gfn, Gpa, NpfErrorCode, PageSize, PfErrorCode, Pfn, ReturnCode, RmpAdjustOperand, RmpArchEntry,
    RmpEntryHi, RmpEntryLo, RmpEntryRaw, RmpPageSize, SvmExitCode, VmplPerms,
};

use crate::model::{
    AccessKind, GuestAccess, GuestContext, GuestOutcome, PvalidateStatus, RmpConfig, RmpModel, RmpQueryResult,
};
use crate::rmpopt::{RmpStats, RmpoptTable, RmpoptVerify, Target};
use snpsim_stores::{Progression, RegionVec, RunVec};

mod run;

/// Largest ASID a guest page may be assigned to (RMPUPDATE step 3: 0 is a firmware page, 0x3FF
/// the firmware's lock value, AMD SEV firmware `rmp_entry_write`).
const MAX_GUEST_ASID: u32 = RMP_LOCK_ASID as u32 - 1;

/// RMPADJUST step 1: reserved operand bits, 13–15 (perms byte bits 5–7) and 17–63.
const RMPADJUST_RESERVED: u64 = 0xe000 | !0x1_ffff;

/// The highest VMPL (VMPL0–3).
const MAX_VMPL: u8 = 3;

/// The all-zero raw entry: a hypervisor-owned 4K page (H1, firmware `RMP_ENTRY_VAL_HYPERVISOR`).
const ZERO: RmpEntryRaw = RmpEntryRaw { lo: RmpEntryLo::new(), hi: RmpEntryHi::new() };

/// The stored state of one 2M region that is not all-zero.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Region {
    /// H2: a 2M region, stored as its aligned raw entry (assigned, page-size bit set, sub-page
    /// count `G-1` per H4). The other `G-1` entries are derived from it on read (H3). H5: only
    /// assigned 2M entries exist.
    Huge(RmpEntryRaw),
    /// A 4K region holding at least one assigned entry: its `G` raw entries, progressions of
    /// them (a smashed region's entries, GPA rising page by page) stored once per chunk; the
    /// aligned one carries the region's sub-page count (H4). Entries beyond `pages` (a partial last
    /// region) stay zero.
    Small(Box<RunVec<Entry>>),
}

/// One 2M region's slot: its stored state, `None` while it is all zero. A local type, so that it
/// can be stored as a progression.
#[derive(Clone, Default, PartialEq, Eq)]
struct Slot(Option<Region>);

impl core::fmt::Debug for Slot {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.fmt(f)
    }
}

/// H3 in storage: consecutive 2M regions whose aligned entries differ only by a GPA rising by a
/// constant step form a progression (`snpsim_stores::runs`); a 4K region never does.
impl Progression for Slot {
    type Step = u64;
    fn step_to(&self, next: &Self) -> Option<u64> {
        match (&self.0, &next.0) {
            (None, None) => Some(0),
            (Some(Region::Huge(a)), Some(Region::Huge(b))) => Entry(*a).step_to(&Entry(*b)),
            _ => None,
        }
    }

    #[inline]
    fn nth(&self, step: u64, k: u64) -> Self {
        match &self.0 {
            Some(Region::Huge(a)) => Slot(Some(Region::Huge(Entry(*a).nth(step, k).0))),
            None => Slot(None),
            Some(Region::Small(_)) => self.clone(),
        }
    }
}

/// A raw entry as a 4K region stores it. A local type, so that it can be stored as a progression.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Entry(RmpEntryRaw);

impl core::fmt::Debug for Entry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.fmt(f)
    }
}

/// Entries that differ only by a GPA rising by a constant step form a progression (a smashed 2M
/// region's entries, H3).
impl Progression for Entry {
    type Step = u64;
    fn step_to(&self, next: &Self) -> Option<u64> {
        let (a, b) = (&self.0, &next.0);
        same_but_gpa(a, b).then(|| b.lo.gpa_frame().wrapping_sub(a.lo.gpa_frame()) & GPA_FRAME_MASK)
    }

    fn step_over(&self, next: &Self, k: u64) -> Option<u64> {
        let (a, b) = (&self.0, &next.0);
        let diff = b.lo.gpa_frame().checked_sub(a.lo.gpa_frame())?;
        (same_but_gpa(a, b) && diff.is_multiple_of(k)).then(|| diff / k)
    }

    fn nth(&self, step: u64, k: u64) -> Self {
        if step == 0 {
            return *self;
        }
        let e = &self.0;
        let gpa = e.lo.gpa_frame().wrapping_add(step.wrapping_mul(k)) & GPA_FRAME_MASK;
        Entry(RmpEntryRaw { lo: e.lo.with_gpa_frame(gpa), hi: e.hi })
    }
}

/// Whether two entries differ at most in their GPA frame.
fn same_but_gpa(a: &RmpEntryRaw, b: &RmpEntryRaw) -> bool {
    a.hi == b.hi && a.lo.with_gpa_frame(0) == b.lo.with_gpa_frame(0)
}

/// The GPA frame field's values (39 bits, `RmpEntryLo`).
const GPA_FRAME_MASK: u64 = (1 << 39) - 1;

/// The RMP's 2M regions by region index: the region's stored state, `None` while it is all zero.
/// Its `Debug` form lists the stored regions only, whatever their storage.
#[derive(Clone, PartialEq, Eq)]
struct Regions {
    slots: RegionVec<Slot>,
    stored: usize,
}

impl core::fmt::Debug for Regions {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_map().entries(self.slots.iter_set(0, self.slots.extent())).finish()
    }
}

impl Regions {
    fn new() -> Self {
        Regions { slots: RegionVec::new(), stored: 0 }
    }

    #[inline]
    fn get(&self, idx: u64) -> Cow<'_, Option<Region>> {
        match self.slots.get(idx) {
            Cow::Borrowed(slot) => Cow::Borrowed(&slot.0),
            Cow::Owned(slot) => Cow::Owned(slot.0),
        }
    }

    /// The stored region `idx`, for writing (callers know it is stored).
    fn get_mut(&mut self, idx: u64) -> Option<&mut Region> {
        self.slots.get_mut(idx).0.as_mut()
    }

    fn insert(&mut self, idx: u64, region: Region) {
        let slot = self.slots.get_mut(idx);
        if slot.0.is_none() {
            self.stored += 1;
        }
        *slot = Slot(Some(region));
    }

    fn remove(&mut self, idx: u64) {
        if self.slots.get(idx).0.is_some() {
            self.stored -= 1;
            self.slots.set(idx, Slot(None));
        }
    }

    fn get_or_insert_with(&mut self, idx: u64, make: impl FnOnce() -> Region) -> &mut Region {
        if self.slots.get(idx).0.is_none() {
            self.stored += 1;
            self.slots.set(idx, Slot(Some(make())));
        }
        self.slots.get_mut(idx).0.as_mut().expect("the region was just stored")
    }

    fn len(&self) -> usize {
        self.stored
    }

    /// Bytes of the slots and of the stored 4K regions' entries.
    fn state_bytes(&self) -> usize {
        let small: usize = self
            .slots
            .dense_values()
            .map(|r| match r {
                Slot(Some(Region::Small(e))) => size_of::<RunVec<Entry>>() + e.state_bytes(),
                _ => 0,
            })
            .sum();
        self.slots.state_bytes() + small
    }
}

/// The RMP, stored by 2M region so that untouched memory costs one empty slot.
///
/// Implements [`RmpModel`] by the rules of `docs/semantics.md` ("Hardware"). Build it with
/// [`Rmp::new`]; a fresh RMP is all zero (every page hypervisor-owned, H1), RMPOPT off (O8).
/// Equality and `Debug` cover the state only, not the instruction counters ([`RmpStats`]).
#[derive(Clone)]
pub struct Rmp {
    /// Geometry, size and switchable checks.
    config: RmpConfig,
    /// Regions (indexed by region index = first frame / `G`) whose entries are not all zero.
    regions: Regions,
    /// Region indices inside an in-flight window (*Concurrency*).
    in_flight: BTreeSet<u64>,
    /// H7: 4 KiB pages assigned per ASID; ASIDs with a zero count are absent.
    asid_pages: BTreeMap<u16, u64>,
    /// A planted bug, for checker tests (`crate::mutant`).
    mutant: Option<crate::Mutant>,
    /// O1–O8: the RMPOPT table (disabled and empty unless [`Rmp::set_rmpopt`]).
    rmpopt: RmpoptTable,
    /// Instruction counters: observations, not state.
    stats: RmpStats,
}

impl PartialEq for Rmp {
    fn eq(&self, other: &Self) -> bool {
        // Every state field; the counters are left out (two RMPs with equal entries behave alike).
        let Rmp { config, regions, in_flight, asid_pages, mutant, rmpopt, stats: _ } = self;
        *config == other.config
            && *regions == other.regions
            && *in_flight == other.in_flight
            && *asid_pages == other.asid_pages
            && *mutant == other.mutant
            && *rmpopt == other.rmpopt
    }
}

impl Eq for Rmp {}

impl core::fmt::Debug for Rmp {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let Rmp { config, regions, in_flight, asid_pages, mutant, rmpopt, stats: _ } = self;
        let mut d = f.debug_struct("Rmp");
        d.field("config", config)
            .field("regions", regions)
            .field("in_flight", in_flight)
            .field("asid_pages", asid_pages)
            .field("mutant", mutant);
        // Printed only when enabled, so a machine without RMPOPT prints as before.
        if rmpopt.enabled() {
            d.field("rmpopt", rmpopt);
        }
        d.finish()
    }
}

/// H3: the raw entry `i` of a 2M region whose aligned entry is `aligned`: it mirrors assigned,
/// immutable, ASID, Validated, VMSA and permissions; GPA = base + i·4K; page-size bit and sub-page
/// count only on the aligned entry (H4).
fn derive_huge(aligned: RmpEntryRaw, i: usize) -> RmpEntryRaw {
    if i == 0 {
        return aligned;
    }
    let lo = aligned
        .lo
        .with_page_size(false)
        .with_subpage_count(0)
        .with_gpa_frame(aligned.lo.gpa_frame() + i as u64);
    RmpEntryRaw { lo, hi: aligned.hi }
}

/// RMPUPDATE step 7: the VMPL permissions of a newly assigned entry: VMPL0 all (RWXuXsS), VMPL1–3
/// none (VeriSMo `rmp_perm_init`).
fn reset_perms() -> RmpEntryHi {
    RmpEntryHi::new().with_vmpl0(VmplPerms::ALL)
}

/// The #NPF error code base of every RMP #NPF: P | RMP | GUEST_FINAL (Linux `PFERR_GUEST_*`).
fn npf_base() -> NpfErrorCode {
    NpfErrorCode::new().with_present(true).with_rmp(true).with_guest_final(true)
}

/// The #NPF of PVALIDATE, RMPADJUST and RMPQUERY: P | RMP | GUEST_FINAL | ENC (+ SIZEM), write
/// clear (docs "PVALIDATE", **Choice**: the instruction is not a data write).
fn instr_npf(sizem: bool) -> NpfErrorCode {
    npf_base().with_enc(true).with_sizem(sizem)
}

impl Rmp {
    /// A fresh RMP for `config`: every page hypervisor-owned (H1), nothing stored.
    pub fn new(config: RmpConfig) -> Rmp {
        Rmp {
            config,
            regions: Regions::new(),
            in_flight: BTreeSet::new(),
            asid_pages: BTreeMap::new(),
            mutant: None,
            rmpopt: RmpoptTable::default(),
            stats: RmpStats::default(),
        }
    }

    /// O8: enable or disable RMPOPT (`[machine] rmpopt`); disabling drops every mark. A fresh
    /// RMP has it off and no region marked: Linux marks regions by a scan once SNP is
    /// initialised ([`RmpModel::rmpopt_verify_all`]).
    pub fn set_rmpopt(&mut self, on: bool) {
        self.rmpopt.set_enabled(on);
    }

    /// The RMPOPT table.
    pub fn rmpopt(&self) -> &RmpoptTable {
        &self.rmpopt
    }

    /// O2: whether every entry of RMPOPT region `idx` is hypervisor-owned and none of its 2M
    /// regions is in flight, read from the stored regions (a region not stored is all zero, H1).
    fn rmpopt_hv_owned(&self, idx: u64) -> bool {
        let g = self.g();
        let n = crate::rmpopt::region_pages(self.config.geometry);
        let (lo, hi) = (idx * n / g, ((idx + 1) * n).min(self.config.pages).div_ceil(g));
        let assigned = self.regions.slots.iter_set(lo, hi).any(|(r, _)| self.region_any_assigned(r));
        !assigned && self.in_flight.range(lo..hi).next().is_none()
    }

    /// Plant a bug (checker tests only; see [`crate::Mutant`]).
    pub fn set_mutant(&mut self, mutant: Option<crate::Mutant>) {
        self.mutant = mutant;
    }

    /// The number of stored (touched, not all-zero) 2M regions: the model's memory is
    /// proportional to it.
    pub fn touched_regions(&self) -> usize {
        self.regions.len()
    }

    /// Bytes of memory the model's state takes (slots, stored regions and side tables; B-tree
    /// entries estimated at [`snpsim_stores::BTREE_ENTRY_BYTES`]).
    pub fn state_bytes(&self) -> usize {
        self.regions.state_bytes()
            + (self.in_flight.len() + self.asid_pages.len()) * snpsim_stores::BTREE_ENTRY_BYTES
            + self.rmpopt.state_bytes()
    }

    /// Append the RMP's state to `out` in a binary form that is equal for two RMPs exactly when
    /// they are equal (`==`, `Debug`): every stored region with its raw entries, the in-flight
    /// regions, the ASID page counts, the configuration, the planted bug and, when RMPOPT is
    /// enabled, the marked regions (nothing when it is off). The model checker
    /// identifies states by it; it is several times faster to write than the `Debug` text.
    pub fn write_canonical(&self, out: &mut Vec<u8>) {
        use core::fmt::Write as _;
        let end = u64::MAX.to_le_bytes();
        for (idx, region) in self.regions.slots.iter_set(0, self.regions.slots.extent()) {
            out.extend_from_slice(&idx.to_le_bytes());
            match &region.0 {
                Some(Region::Huge(e)) => {
                    out.push(0);
                    out.extend_from_slice(&e.to_u128().to_le_bytes());
                }
                Some(Region::Small(entries)) => {
                    out.push(1);
                    for (j, e) in entries.iter_set(0, entries.extent()) {
                        out.extend_from_slice(&j.to_le_bytes());
                        out.extend_from_slice(&e.0.to_u128().to_le_bytes());
                    }
                    out.extend_from_slice(&end);
                }
                None => out.push(2),
            }
        }
        out.extend_from_slice(&end);
        out.extend_from_slice(&(self.in_flight.len() as u64).to_le_bytes());
        for r in &self.in_flight {
            out.extend_from_slice(&r.to_le_bytes());
        }
        out.extend_from_slice(&(self.asid_pages.len() as u64).to_le_bytes());
        for (asid, pages) in &self.asid_pages {
            out.extend_from_slice(&asid.to_le_bytes());
            out.extend_from_slice(&pages.to_le_bytes());
        }
        let mut text = String::new();
        let _ = write!(text, "{:?}{:?}", self.config, self.mutant);
        out.extend_from_slice(&(text.len() as u64).to_le_bytes());
        out.extend_from_slice(text.as_bytes());
        if self.rmpopt.enabled() {
            out.push(b'O');
            for idx in self.rmpopt.marked() {
                out.extend_from_slice(&idx.to_le_bytes());
            }
            out.extend_from_slice(&end);
        }
    }

    /// `G`: pages per 2M region.
    #[inline]
    fn g(&self) -> u64 {
        self.config.geometry.pages_per_2m()
    }

    /// Bytes in a 2M page of the geometry.
    fn bytes_2m(&self) -> u64 {
        self.config.geometry.bytes(PageSize::Size2M)
    }

    /// H6: whether `pfn` has an RMP entry.
    fn in_rmp(&self, pfn: Pfn) -> bool {
        pfn.raw() < self.config.pages
    }

    /// The region index of `pfn` and its index inside the region: by shift and mask, not division.
    #[inline]
    fn split(&self, pfn: Pfn) -> (u64, usize) {
        let geometry = self.config.geometry;
        (pfn.raw() >> geometry.region_shift(), (pfn.raw() & (geometry.pages_per_2m() - 1)) as usize)
    }

    /// The raw entry of `pfn` (zero when nothing is stored, including beyond the RMP).
    #[inline]
    fn entry(&self, pfn: Pfn) -> RmpEntryRaw {
        let (idx, i) = self.split(pfn);
        match &*self.regions.get(idx) {
            None => ZERO,
            Some(Region::Huge(aligned)) => derive_huge(*aligned, i),
            Some(Region::Small(entries)) => entries.get(i as u64).0,
        }
    }

    /// The authoritative entry E for `pfn` as seen by this page (H2: the 2M entry of a 2M region,
    /// viewed through H3 so that its GPA is the page's; else the page's own entry) and the size of
    /// the entry that governs the page.
    fn governing(&self, pfn: Pfn) -> (RmpEntryRaw, RmpPageSize) {
        let (idx, i) = self.split(pfn);
        match &*self.regions.get(idx) {
            None => (ZERO, RmpPageSize::Size4K),
            Some(Region::Huge(aligned)) => (derive_huge(*aligned, i), RmpPageSize::Size2M),
            Some(Region::Small(entries)) => (entries.get(i as u64).0, RmpPageSize::Size4K),
        }
    }

    /// Whether any entry of region `idx` other than the aligned one is assigned: RMPREAD's 2M-region
    /// status for the aligned frame (Linux commit 3e43c60eb3e3). H4: the aligned entry's sub-page
    /// count, which is `G-1` in a 2M region.
    fn region_others_assigned(&self, idx: u64) -> bool {
        match &*self.regions.get(idx) {
            None => false,
            Some(Region::Huge(aligned)) => aligned.lo.subpage_count() > 0,
            Some(Region::Small(entries)) => entries.get(0).0.lo.subpage_count() > 0,
        }
    }

    /// Whether any entry of region `idx` is assigned: the host and shared-access large-mapping
    /// checks. H4: the aligned entry's own assigned bit plus its sub-page count, O(1) as in
    /// hardware.
    fn region_any_assigned(&self, idx: u64) -> bool {
        match &*self.regions.get(idx) {
            None => false,
            Some(Region::Huge(_)) => true,
            Some(Region::Small(entries)) => {
                let aligned = entries.get(0).0.lo;
                aligned.assigned() || aligned.subpage_count() > 0
            }
        }
    }

    /// H7: add `n` pages to `asid`'s counter.
    fn count_add(&mut self, asid: u16, n: u64) {
        *self.asid_pages.entry(asid).or_insert(0) += n;
    }

    /// H7: remove `n` pages from `asid`'s counter, dropping it at zero.
    fn count_sub(&mut self, asid: u16, n: u64) {
        let c = self.asid_pages.get_mut(&asid).expect("H7: counter of an assigned ASID exists");
        *c -= n;
        if *c == 0 {
            self.asid_pages.remove(&asid);
        }
    }

    /// PVALIDATE steps 3–4 (shared by RMPADJUST step 3, RMPQUERY and private accesses): the region
    /// is not in flight and the authoritative entry E is assigned, mutable, owned by `guest.asid`
    /// and bound to `gpa`'s frame. Returns E (as seen by this page) and the governing size, or
    /// `None` for an RMP #NPF. A frame beyond the RMP has no entry: it fails as unassigned.
    fn owned_entry(&self, guest: GuestContext, gpa: Gpa, pfn: Pfn) -> Option<(RmpEntryRaw, RmpPageSize)> {
        let (idx, _) = self.split(pfn);
        // PVALIDATE step 3 (Choice): the firmware's lock ASID 0x3FF in the aligned entry fails
        // the ownership test of every guest while the region is in flight.
        if self.in_flight.contains(&idx) {
            return None;
        }
        // PVALIDATE step 4 (VeriSMo `pvalidate`, `check_access`): E's GPA for this page is
        // compared frame by frame (a byte-granular access GPA must not fault on its offset).
        let (e, size) = self.governing(pfn);
        let lo = e.lo;
        let owned =
            lo.assigned() && !lo.immutable() && lo.asid() == guest.asid && lo.gpa_frame() == gpa.gfn().raw();
        owned.then_some((e, size))
    }

    /// Apply `f` to the authoritative entry of `pfn` (the stored aligned entry of a 2M region,
    /// which H3 mirrors to all `G`; else the page's own entry). The entry must be assigned.
    fn modify_governing(&mut self, pfn: Pfn, f: impl FnOnce(RmpEntryRaw) -> RmpEntryRaw) {
        let (idx, i) = self.split(pfn);
        match self.regions.get_mut(idx) {
            Some(Region::Huge(aligned)) => *aligned = f(*aligned),
            Some(Region::Small(entries)) => {
                let e = entries.get(i as u64).0;
                entries.set(i as u64, Entry(f(e)));
            }
            None => unreachable!("modify_governing on an unassigned page"),
        }
    }

    /// Write the 4K entry of `pfn` in a region that is not 2M, keeping H4 (the aligned entry's
    /// sub-page count), H7 (ASID counters) and the storage invariant (a region that returns to
    /// all-zero is dropped). `new`'s sub-page count is ignored.
    fn write_4k(&mut self, pfn: Pfn, new: RmpEntryRaw) {
        let g = self.g();
        let (idx, i) = self.split(pfn);
        let region = self.regions.get_or_insert_with(idx, || Region::Small(Box::default()));
        let Region::Small(entries) = region else {
            unreachable!("RMPUPDATE step 6 rejects a 4K update in a 2M region")
        };
        let i = i as u64;
        let old = entries.get(i).0;
        // H4: the sub-page count lives in the aligned entry's bits 3–11 whatever its own state.
        let mut new = new;
        new.lo = new.lo.with_subpage_count(old.lo.subpage_count());
        entries.set(i, Entry(new));
        if i != 0 && old.lo.assigned() != new.lo.assigned() {
            // H4 (firmware `set_rmp_sub_page_count`): count assigned non-aligned entries.
            let mut aligned = entries.get(0).0;
            let c = aligned.lo.subpage_count();
            let c = if new.lo.assigned() { c + 1 } else { c - 1 };
            aligned.lo = aligned.lo.with_subpage_count(c);
            entries.set(0, Entry(aligned));
        }
        // An unassigned entry is all zero (RMPUPDATE step 7), so a zero aligned entry (unassigned,
        // sub-page count 0) means the whole region is zero: drop it.
        let region_zero = entries.get(0).0 == ZERO;
        debug_assert!(!region_zero || entries.iter_set(0, g).next().is_none());
        if region_zero {
            self.regions.remove(idx);
        }
        // H7.
        if old.lo.assigned() {
            self.count_sub(old.lo.asid(), 1);
        }
        if new.lo.assigned() {
            self.count_add(new.lo.asid(), 1);
        }
    }

    /// RMPUPDATE step 3: operand validity.
    fn operand_valid(&self, new: RmpArchEntry) -> bool {
        if new.assigned() {
            let bytes =
                if new.page_size() { self.bytes_2m() } else { self.config.geometry.bytes(PageSize::Size4K) };
            (1..=MAX_GUEST_ASID).contains(&new.asid())
                && new.gpa().raw() < RMP_GPA_LIMIT
                && new.gpa().is_aligned(bytes)
        } else {
            new.asid() == 0 && new.gpa() == Gpa::default() && !new.immutable()
        }
    }

    /// The raw entry RMPUPDATE step 7 writes over `old` (the page's or the 2M region's current
    /// entry, `old_huge` its size) for the valid operand `new`.
    fn rmpupdate_entry(old: RmpEntryRaw, old_huge: bool, new: RmpArchEntry, g: u64) -> RmpEntryRaw {
        if !new.assigned() {
            // Step 7: unassigned entries are all zero (H5 for 2M).
            return ZERO;
        }
        let asid = new.asid() as u16;
        let gfn = new.gpa().gfn().raw();
        let huge = new.page_size();
        let mut lo = RmpEntryLo::new()
            .with_assigned(true)
            .with_page_size(huge)
            .with_immutable(new.immutable())
            .with_gpa_frame(gfn)
            .with_asid(asid);
        if huge {
            // H4: every other entry of a 2M region is assigned.
            lo = lo.with_subpage_count((g - 1) as u16);
        }
        // Step 7 (VeriSMo `_rmpupdate`): Validated, VMSA and permissions survive only if assigned,
        // ASID, GPA and size are unchanged; otherwise Validated/VMSA clear, permissions reset.
        let keep =
            old.lo.assigned() && old.lo.asid() == asid && old.lo.gpa_frame() == gfn && old_huge == huge;
        if keep {
            lo = lo.with_validated(old.lo.validated()).with_vmsa(old.lo.vmsa());
            RmpEntryRaw { lo, hi: old.hi }
        } else {
            RmpEntryRaw { lo, hi: reset_perms() }
        }
    }
}

impl RmpModel for Rmp {
    fn config(&self) -> RmpConfig {
        self.config
    }

    fn rmpupdate(&mut self, pfn: Pfn, new: RmpArchEntry) -> ReturnCode {
        let g = self.g();
        // Step 1 (H6): outside the RMP.
        if !self.in_rmp(pfn) {
            return ReturnCode::FailInput;
        }
        let huge = new.page_size();
        // Step 2 (APM, UNVERIFIED): a 2M entry needs a region-aligned frame. Also (not in the
        // docs, Choice here): a 2M entry whose region extends past the end of the RMP (a partial
        // last region) is rejected, because some of its pages would have no entry (H6).
        if huge && (!pfn.is_aligned(g) || self.config.pages - pfn.raw() < g) {
            return ReturnCode::FailInput;
        }
        // Step 3 (Choice): operand validity.
        if !self.operand_valid(new) {
            return ReturnCode::FailInput;
        }
        let (idx, i) = self.split(pfn);
        // Step 4 (Linux `PSMASH_FAIL_INUSE` comment): the region is in flight.
        if self.in_flight.contains(&idx) {
            return ReturnCode::FailInuse;
        }
        let current_slot = self.regions.get(idx);
        let current = current_slot.as_ref().as_ref();
        // Step 5 (MSVC `__rmpupdate`, VeriSMo `_rmpupdate`): an entry to be rewritten is immutable:
        // the page's own for 4K (H3: in a 2M region it mirrors the 2M entry), any of the G for 2M.
        let immutable = match (current, huge) {
            (None, _) => false,
            (Some(Region::Huge(aligned)), _) => aligned.lo.immutable(),
            (Some(Region::Small(entries)), false) => entries.get(i as u64).0.lo.immutable(),
            // The immutable bit is the same along a stored progression: one test per run.
            (Some(Region::Small(entries)), true) => entries.runs(0, g).any(|(_, _, e, _)| e.0.lo.immutable()),
        };
        if immutable {
            return ReturnCode::FailPermission;
        }
        // Step 6 (Linux `RMPUPDATE_FAIL_OVERLAP`): a 4K update in a 2M region, or a 2M update of a
        // 4K region holding any assigned entry. A 2M update of a 2M region is allowed.
        let overlap = match current {
            Some(Region::Huge(_)) => !huge,
            Some(Region::Small(_)) => huge && self.region_any_assigned(idx),
            None => false,
        };
        if overlap {
            return ReturnCode::FailOverlap;
        }
        let old_huge = match current {
            Some(Region::Huge(aligned)) => Some(*aligned),
            _ => None,
        };
        drop(current_slot);
        // Step 7: the effect.
        if huge {
            // Step 6 rejected a 4K region with assigned entries, and stored 4K regions have one:
            // the region is 2M or empty.
            let old = old_huge;
            if let Some(old) = old {
                self.count_sub(old.lo.asid(), g);
            }
            let entry = Self::rmpupdate_entry(old.unwrap_or(ZERO), old.is_some(), new, g);
            if entry.lo.assigned() {
                // H7: a 2M entry counts G pages.
                self.count_add(entry.lo.asid(), g);
                self.regions.insert(idx, Region::Huge(entry));
            } else {
                // H5: a 2M update to unassigned returns all G entries to zero.
                self.regions.remove(idx);
            }
        } else {
            // A 4K update touches a 4K region only (step 6), whose entries are all 4K.
            let entry = Self::rmpupdate_entry(self.entry(pfn), false, new, g);
            self.write_4k(pfn, entry);
        }
        // O4: the RMPUPDATE clears its region's RMPOPT mark; every one flushes all TLBs.
        self.stats.rmp_updates += 1;
        if self.rmpopt.clear(self.config.geometry, pfn) {
            self.stats.rmpopt_marks_cleared += 1;
        }
        ReturnCode::Success
    }

    fn psmash(&mut self, pfn: Pfn) -> ReturnCode {
        let g = self.g();
        // PSMASH step 1 (MSVC `__psmash` 1): outside the RMP or not region-aligned (Linux aligns
        // down before calling). Step 2, FAIL_PERMISSION (executed with ASID ≠ 0), cannot happen:
        // only the host, at ASID 0, executes PSMASH here.
        if !self.in_rmp(pfn) || !pfn.is_aligned(g) {
            return ReturnCode::FailInput;
        }
        let (idx, _) = self.split(pfn);
        // PSMASH step 3 (MSVC `__psmash` 3, Linux `PSMASH_FAIL_INUSE`).
        if self.in_flight.contains(&idx) {
            return ReturnCode::FailInuse;
        }
        // PSMASH step 4 (MSVC `__psmash` 7, "doesn't meet the requirements for expansion"): the
        // region is not 2M (H5: every 2M entry is assigned), or its 2M entry is immutable (Choice).
        let aligned = match self.regions.get(idx).into_owned() {
            Some(Region::Huge(aligned)) if !aligned.lo.immutable() => aligned,
            _ => return ReturnCode::FailUnsupported,
        };
        // PSMASH step 5 (Linux `snp_rmptable_psmash` "preserving the Validated bit"): the H3
        // entries become the region's own; only the aligned page-size bit clears. The sub-page
        // count stays G-1 (H4) and the ASID counter is unchanged (H7).
        let mut aligned_4k = aligned;
        aligned_4k.lo = aligned_4k.lo.with_page_size(false);
        let mut others = derive_huge(aligned, 1);
        if crate::Mutant::PsmashClearsValidated.planted(self.mutant) {
            aligned_4k.lo = aligned_4k.lo.with_validated(false);
            others.lo = others.lo.with_validated(false);
        }
        // Entry i ≥ 1 is `derive_huge(aligned, i)`: GPA rising one frame per page.
        let mut entries = Box::new(RunVec::new());
        entries.set_run(1, g, &Entry(others), 1);
        entries.set(0, Entry(aligned_4k));
        self.regions.insert(idx, Region::Small(entries));
        // O4: a PSMASH changes RMP entries and clears its region's mark (unreachable: by O5 a
        // marked region holds no assigned 2M entry to smash).
        if self.rmpopt.clear(self.config.geometry, pfn) {
            self.stats.rmpopt_marks_cleared += 1;
        }
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
        // Step 1 (VeriSMo `pvalidate`): VMPL0 only.
        if guest.vmpl != 0 {
            return GuestOutcome::Fail(ReturnCode::FailPermission);
        }
        // Step 2: outside the RMP, or a 2M operand with an unaligned GPA ⇒ FAIL_INPUT; a 2M operand
        // whose GPA is aligned but whose frame is not is not backed by a 2M page ⇒
        // FAIL_SIZEMISMATCH (H12).
        let huge_op = size == RmpPageSize::Size2M;
        if !self.in_rmp(pfn) || (huge_op && !gpa.is_aligned(self.bytes_2m())) {
            return GuestOutcome::Fail(ReturnCode::FailInput);
        }
        if huge_op && !pfn.is_aligned(self.g()) {
            return GuestOutcome::Fail(ReturnCode::FailSizeMismatch);
        }
        // Steps 3–4: in flight / ownership ⇒ #NPF (RMP).
        let Some((e, entry_size)) = self.owned_entry(guest, gpa, pfn) else {
            return GuestOutcome::Npf(instr_npf(false));
        };
        // Step 5 (KVM `sev_handle_rmp_fault` cause a): 4K operand on a 2M entry ⇒ #NPF SIZEM.
        if entry_size == RmpPageSize::Size2M && !huge_op {
            return GuestOutcome::Npf(instr_npf(true));
        }
        // Step 6 (Linux `pval_pages`, coconut `pvalidate_range`): 2M operand on a 4K entry.
        if entry_size == RmpPageSize::Size4K && huge_op {
            return GuestOutcome::Fail(ReturnCode::FailSizeMismatch);
        }
        // Step 7 (MSVC `__pvalidate`: CF = 1, EAX = 0).
        if e.lo.validated() == validate {
            return GuestOutcome::Done(PvalidateStatus::Unchanged);
        }
        // Step 8: set Validated (on the 2M entry, which H3 mirrors to all G).
        self.modify_governing(pfn, |e| RmpEntryRaw { lo: e.lo.with_validated(validate), hi: e.hi });
        GuestOutcome::Done(PvalidateStatus::Changed)
    }

    fn pvalidate_4k_run(
        &mut self,
        guest: GuestContext,
        gpa: Gpa,
        pfn: Pfn,
        pages: u64,
        validate: bool,
    ) -> u64 {
        self.pvalidate_run(guest, gpa, pfn, pages, validate)
    }

    fn assigned_4k_run(&self, pfn: Pfn, pages: u64) -> u64 {
        self.assigned_run(pfn, pages)
    }

    fn rmpupdate_4k_run(&mut self, pfn: Pfn, gpa: Gpa, asid: u16, pages: u64) -> u64 {
        self.update_run(pfn, gpa, asid, pages)
    }

    fn rmpupdate_operand_valid(&self, new: RmpArchEntry) -> bool {
        self.operand_valid(new)
    }

    fn rmpadjust(
        &mut self,
        guest: GuestContext,
        gpa: Gpa,
        pfn: Pfn,
        size: RmpPageSize,
        op: RmpAdjustOperand,
    ) -> GuestOutcome<()> {
        let huge_op = size == RmpPageSize::Size2M;
        // Step 1: target VMPL, reserved bits, outside the RMP, unaligned 2M, VMSA on a 2M operand
        // (Choice: a VMSA is a 4K page).
        if op.target_vmpl() > MAX_VMPL
            || op.into_bits() & RMPADJUST_RESERVED != 0
            || !self.in_rmp(pfn)
            || (huge_op && (!gpa.is_aligned(self.bytes_2m()) || !pfn.is_aligned(self.g())))
            || (op.vmsa() && huge_op)
        {
            return GuestOutcome::Fail(ReturnCode::FailInput);
        }
        // Step 2 (AMDSEV issue 208, VeriSMo `rmpadjust`): only less-privileged VMPLs.
        if op.target_vmpl() <= guest.vmpl {
            return GuestOutcome::Fail(ReturnCode::FailPermission);
        }
        // Step 3: in flight / ownership as PVALIDATE steps 3–5.
        let Some((e, entry_size)) = self.owned_entry(guest, gpa, pfn) else {
            return GuestOutcome::Npf(instr_npf(false));
        };
        if entry_size == RmpPageSize::Size2M && !huge_op {
            return GuestOutcome::Npf(instr_npf(true));
        }
        // Step 4: E not Validated ⇒ #VC 0x404.
        if !e.lo.validated() {
            return GuestOutcome::Vc(SvmExitCode::PageNotValidated);
        }
        // Step 5: 2M operand on a 4K entry.
        if entry_size == RmpPageSize::Size4K && huge_op {
            return GuestOutcome::Fail(ReturnCode::FailSizeMismatch);
        }
        // Step 6: the new permissions must be a subset of the caller's own.
        let caller = e.perms(guest.vmpl).into_bits();
        if op.perms().into_bits() & !caller != 0 {
            return GuestOutcome::Fail(ReturnCode::FailPermission);
        }
        // Step 7 (MSVC `__rmpadjust`, edk2 `SevSnpRmpAdjust`): target permissions := op.perms (all
        // G for 2M through H3); the VMSA bit only at VMPL0.
        let (target, perms, vmsa, at_vmpl0) = (op.target_vmpl(), op.perms(), op.vmsa(), guest.vmpl == 0);
        self.modify_governing(pfn, |e| {
            let e = e.with_perms(target, perms);
            if at_vmpl0 { RmpEntryRaw { lo: e.lo.with_vmsa(vmsa), hi: e.hi } } else { e }
        });
        GuestOutcome::Done(())
    }

    fn rmpquery(
        &self,
        guest: GuestContext,
        gpa: Gpa,
        pfn: Pfn,
        target_vmpl: u8,
    ) -> GuestOutcome<RmpQueryResult> {
        // RMPQUERY: bad target VMPL or outside the RMP.
        if target_vmpl > MAX_VMPL || !self.in_rmp(pfn) {
            return GuestOutcome::Fail(ReturnCode::FailInput);
        }
        // RMPQUERY (Choice): a VMPL may query itself and less-privileged levels.
        if target_vmpl < guest.vmpl {
            return GuestOutcome::Fail(ReturnCode::FailPermission);
        }
        // RMPQUERY: in flight / ownership ⇒ #NPF without SIZEM (works on either size).
        let Some((e, entry_size)) = self.owned_entry(guest, gpa, pfn) else {
            return GuestOutcome::Npf(instr_npf(false));
        };
        // RMPQUERY: not Validated ⇒ #VC 0x404.
        if !e.lo.validated() {
            return GuestOutcome::Vc(SvmExitCode::PageNotValidated);
        }
        GuestOutcome::Done(RmpQueryResult {
            perms: e.perms(target_vmpl),
            vmsa: e.lo.vmsa(),
            page_size: entry_size,
        })
    }

    fn rmpread(&self, pfn: Pfn) -> Result<RmpArchEntry, ReturnCode> {
        // RMPREAD: outside the RMP (H6).
        if !self.in_rmp(pfn) {
            return Err(ReturnCode::FailInput);
        }
        // RMPREAD: the page's own raw entry (H3 for a 2M region) in the architectural layout, with
        // the 2M-region status: only for a region-aligned frame, set when another page of its
        // region is assigned (Linux commit 3e43c60eb3e3, `struct rmpentry` `hpage_region_status`).
        let e = self.entry(pfn).lo;
        let (idx, i) = self.split(pfn);
        Ok(RmpArchEntry::new()
            .with_gpa(Gfn::new(e.gpa_frame()).gpa())
            .with_assigned(e.assigned())
            .with_page_size(e.page_size())
            .with_hpage_region_status(i == 0 && self.region_others_assigned(idx))
            .with_immutable(e.immutable())
            .with_asid(u32::from(e.asid())))
    }

    fn raw_entry(&self, pfn: Pfn) -> Option<RmpEntryRaw> {
        // H1/H6: one raw entry per page inside the RMP (derived for a 2M region, H3).
        self.in_rmp(pfn).then(|| self.entry(pfn))
    }

    fn check_guest_access(&self, access: &GuestAccess) -> GuestOutcome<()> {
        // Guest access checks: base P | RMP | GUEST_FINAL, + W, ID, U.
        let base = npf_base()
            .with_write(access.kind == AccessKind::Write)
            .with_fetch(access.kind == AccessKind::Exec)
            .with_user(access.user);
        // The NPT leaf counted as at most 2M (Linux `adjust_direct_map` comment).
        let npt_huge = access.npt_size >= PageSize::Size2M;
        if access.private {
            // Private (VeriSMo `check_access`), + ENC.
            let code = base.with_enc(true);
            // In flight / ownership as PVALIDATE 3–4. Choice (the docs are silent): a frame
            // beyond the RMP has no entry, so no guest owns it and it fails as unassigned.
            let Some((e, entry_size)) = self.owned_entry(access.guest, access.gpa, access.pfn) else {
                return GuestOutcome::Npf(code);
            };
            // Size: 2M leaf over a 4K entry (RFC v3 handler, APM §15.36.11), or 4K leaf over a 2M
            // entry when `smaller_npt_faults` (KVM `sev_handle_rmp_fault` cause b).
            let entry_huge = entry_size == RmpPageSize::Size2M;
            if (npt_huge && !entry_huge) || (!npt_huge && entry_huge && self.config.smaller_npt_faults) {
                return GuestOutcome::Npf(code.with_sizem(true));
            }
            // Not Validated ⇒ #VC 0x404.
            if !e.lo.validated() {
                return GuestOutcome::Vc(SvmExitCode::PageNotValidated);
            }
            // VMPL permission for the kind (read R, write W, fetch Xu at CPL 3 else Xs).
            let perms = e.perms(access.guest.vmpl);
            let allowed = match access.kind {
                AccessKind::Read => perms.read(),
                AccessKind::Write => perms.write(),
                AccessKind::Exec if access.user => perms.exec_user(),
                AccessKind::Exec => perms.exec_supervisor(),
            };
            if !allowed {
                return GuestOutcome::Npf(code.with_vmpl(true));
            }
            GuestOutcome::Done(())
        } else {
            // Choice (the docs are silent): a shared access to a frame beyond the RMP is not
            // checked, as a host write to it (H6; `RmpConfig::pages`: "a DEFAULT page that no RMP
            // check applies to"), even through a large leaf over a partial last region.
            if !self.in_rmp(access.pfn) {
                return GuestOutcome::Done(());
            }
            // Shared: the page's own entry assigned ⇒ #NPF (KVM implicit conversion).
            if self.entry(access.pfn).lo.assigned() {
                return GuestOutcome::Npf(base);
            }
            // A leaf ≥ 2M whose accessed 2M part holds an assigned page ⇒ #NPF RMP|SIZEM (checked
            // as a host write through a large mapping; `docs/semantics.md`, guest access checks).
            let (idx, _) = self.split(access.pfn);
            if npt_huge && self.region_any_assigned(idx) {
                return GuestOutcome::Npf(base.with_sizem(true));
            }
            GuestOutcome::Done(())
        }
    }

    fn check_host_write(&self, pfn: Pfn, mapping: PageSize, user: bool) -> Result<(), PfErrorCode> {
        // H6: a frame beyond the RMP is not checked.
        if !self.in_rmp(pfn) {
            return Ok(());
        }
        // O6: a write to a region RMPOPT marked skips the check (by O5 it could not fault).
        if self.rmpopt.is_marked(self.config.geometry, pfn) {
            return Ok(());
        }
        // Host write check (RFC v4 10/40, Linux `adjust_direct_map`): the target assigned, or a
        // mapping ≥ 2M whose 2M part holds an assigned page. Choice: immutable alone is writable.
        let (idx, _) = self.split(pfn);
        let large_checked = !crate::Mutant::HostWriteIgnoresLargeMapping.planted(self.mutant);
        if self.entry(pfn).lo.assigned()
            || (large_checked && mapping >= PageSize::Size2M && self.region_any_assigned(idx))
        {
            return Err(PfErrorCode::new()
                .with_present(true)
                .with_write(true)
                .with_rmp(true)
                .with_user(user));
        }
        Ok(())
    }

    fn begin_in_flight(&mut self, region: Pfn) -> ReturnCode {
        // Concurrency: only a region start inside the RMP.
        if !self.in_rmp(region) || !region.is_aligned(self.g()) {
            return ReturnCode::FailInput;
        }
        let (idx, _) = self.split(region);
        if self.in_flight.insert(idx) { ReturnCode::Success } else { ReturnCode::FailInuse }
    }

    fn in_flight(&self, pfn: Pfn) -> bool {
        self.in_rmp(pfn) && self.in_flight.contains(&self.split(pfn).0)
    }

    fn end_in_flight(&mut self, region: Pfn) -> bool {
        if !region.is_aligned(self.g()) {
            return false;
        }
        let (idx, _) = self.split(region);
        self.in_flight.remove(&idx)
    }

    fn asid_assigned_pages(&self, asid: u16) -> u64 {
        // H7.
        self.asid_pages.get(&asid).copied().unwrap_or(0)
    }

    fn rmpopt_verify(&mut self, region: Pfn) -> RmpoptVerify {
        // O2/O3.
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
        // O6.
        self.in_rmp(pfn) && self.rmpopt.is_marked(self.config.geometry, pfn)
    }

    fn rmpopt_marked_pages(&self) -> u64 {
        self.rmpopt.marked_pages(self.config.geometry, self.config.pages)
    }

    fn rmp_stats(&self) -> RmpStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Geometry;

    fn assigned(gpa: u64, asid: u32, huge: bool) -> RmpArchEntry {
        RmpArchEntry::new().with_gpa(Gpa::new(gpa)).with_assigned(true).with_asid(asid).with_page_size(huge)
    }

    fn shared(huge: bool) -> RmpArchEntry {
        RmpArchEntry::new().with_page_size(huge)
    }

    const VMPL0: GuestContext = GuestContext { asid: 5, vmpl: 0 };

    #[test]
    fn fresh_rmp_stores_nothing() {
        let rmp = Rmp::new(RmpConfig::x86(3 * 512 + 7));
        assert_eq!(rmp.touched_regions(), 0);
        assert_eq!(rmp.raw_entry(Pfn::new(3 * 512 + 6)), Some(RmpEntryRaw::default()));
        assert_eq!(rmp.raw_entry(Pfn::new(3 * 512 + 7)), None);
        assert_eq!(rmp.rmpread(Pfn::new(3 * 512 + 7)), Err(ReturnCode::FailInput));
    }

    #[test]
    fn small_region_returning_to_zero_is_dropped() {
        let mut rmp = Rmp::new(RmpConfig::x86(1024));
        assert_eq!(rmp.rmpupdate(Pfn::new(513), assigned(0x1000, 5, false)), ReturnCode::Success);
        assert_eq!(rmp.rmpupdate(Pfn::new(600), assigned(0x2000, 6, false)), ReturnCode::Success);
        assert_eq!(rmp.touched_regions(), 1);
        // H4: the aligned entry counts the two assigned non-aligned entries.
        assert_eq!(rmp.raw_entry(Pfn::new(512)).unwrap().lo.subpage_count(), 2);
        assert!(rmp.rmpread(Pfn::new(512)).unwrap().hpage_region_status());
        assert_eq!(rmp.rmpupdate(Pfn::new(513), shared(false)), ReturnCode::Success);
        assert_eq!(rmp.touched_regions(), 1);
        assert_eq!(rmp.rmpupdate(Pfn::new(600), shared(false)), ReturnCode::Success);
        assert_eq!(rmp.touched_regions(), 0);
        assert_eq!(rmp, Rmp::new(RmpConfig::x86(1024)));
    }

    #[test]
    fn aligned_entry_keeps_subpage_count_when_unassigned() {
        let mut rmp = Rmp::new(RmpConfig::tiny(8));
        assert_eq!(rmp.rmpupdate(Pfn::new(4), assigned(0x4000, 5, false)), ReturnCode::Success);
        assert_eq!(rmp.rmpupdate(Pfn::new(5), assigned(0x5000, 5, false)), ReturnCode::Success);
        assert_eq!(rmp.rmpupdate(Pfn::new(4), shared(false)), ReturnCode::Success);
        let aligned = rmp.raw_entry(Pfn::new(4)).unwrap();
        assert_eq!(aligned.lo.into_bits(), RmpEntryLo::new().with_subpage_count(1).into_bits());
        assert_eq!(rmp.touched_regions(), 1);
        assert_eq!(rmp.asid_assigned_pages(5), 1);
    }

    #[test]
    fn two_meg_update_touches_one_region_and_derives_h3_entries() {
        let g = 512;
        let mut rmp = Rmp::new(RmpConfig::x86(4 * g));
        assert_eq!(rmp.rmpupdate(Pfn::new(2 * g), assigned(0x4000_0000, 7, true)), ReturnCode::Success);
        assert_eq!(rmp.touched_regions(), 1);
        assert_eq!(rmp.asid_assigned_pages(7), g);
        let base = 0x4000_0000 >> 12;
        for i in 0..g {
            let e = rmp.raw_entry(Pfn::new(2 * g + i)).unwrap();
            let lo = e.lo;
            assert!(lo.assigned() && !lo.immutable() && !lo.validated() && !lo.vmsa());
            assert_eq!((lo.asid(), lo.gpa_frame()), (7, base + i));
            assert_eq!(lo.page_size(), i == 0);
            assert_eq!(lo.subpage_count(), if i == 0 { 511 } else { 0 });
            assert_eq!(e.hi, reset_perms());
        }
        assert_eq!(rmp.lookup(Pfn::new(2 * g + 3)), Some((true, RmpPageSize::Size2M)));
        // H5: a 2M update to unassigned returns the region to zero.
        assert_eq!(rmp.rmpupdate(Pfn::new(2 * g), shared(true)), ReturnCode::Success);
        assert_eq!(rmp.touched_regions(), 0);
        assert_eq!(rmp.asid_assigned_pages(7), 0);
    }

    #[test]
    fn pvalidate_2m_then_psmash_preserves_validated() {
        let mut rmp = Rmp::new(RmpConfig { geometry: Geometry::TINY, pages: 16, smaller_npt_faults: true });
        assert_eq!(rmp.rmpupdate(Pfn::new(8), assigned(0x4000, 5, true)), ReturnCode::Success);
        let huge = RmpPageSize::Size2M;
        assert_eq!(
            rmp.pvalidate(VMPL0, Gpa::new(0x5000), Pfn::new(9), RmpPageSize::Size4K, true),
            GuestOutcome::Npf(instr_npf(true))
        );
        assert_eq!(
            rmp.pvalidate(VMPL0, Gpa::new(0x4000), Pfn::new(8), huge, true),
            GuestOutcome::Done(PvalidateStatus::Changed)
        );
        assert_eq!(
            rmp.pvalidate(VMPL0, Gpa::new(0x4000), Pfn::new(8), huge, true),
            GuestOutcome::Done(PvalidateStatus::Unchanged)
        );
        assert_eq!(rmp.psmash(Pfn::new(8)), ReturnCode::Success);
        assert_eq!(rmp.touched_regions(), 1);
        for i in 0..4 {
            let e = rmp.raw_entry(Pfn::new(8 + i)).unwrap();
            assert!(e.lo.validated() && !e.lo.page_size());
        }
        // H4: the other G - 1 = 3 entries of the tiny region are assigned.
        assert_eq!(rmp.raw_entry(Pfn::new(8)).unwrap().lo.subpage_count(), 3);
        assert_eq!(rmp.psmash(Pfn::new(8)), ReturnCode::FailUnsupported);
        // A 4K update now works and keeps Validated if nothing changes (RMPUPDATE step 7).
        assert_eq!(rmp.rmpupdate(Pfn::new(9), assigned(0x5000, 5, false)), ReturnCode::Success);
        assert!(rmp.raw_entry(Pfn::new(9)).unwrap().lo.validated());
        assert_eq!(rmp.rmpupdate(Pfn::new(9), assigned(0x6000, 5, false)), ReturnCode::Success);
        assert!(!rmp.raw_entry(Pfn::new(9)).unwrap().lo.validated());
        // Still the region's G = 4 pages, all assigned to ASID 5.
        assert_eq!(rmp.asid_assigned_pages(5), 4);
        // The region now holds 4K assigned entries: a 2M update overlaps.
        assert_eq!(rmp.rmpupdate(Pfn::new(8), assigned(0x4000, 5, true)), ReturnCode::FailOverlap);
    }

    #[test]
    fn partial_region_rejects_2m_and_in_flight_blocks() {
        let mut rmp = Rmp::new(RmpConfig::tiny(10));
        assert_eq!(rmp.rmpupdate(Pfn::new(8), assigned(0x8000, 5, true)), ReturnCode::FailInput);
        assert_eq!(rmp.begin_in_flight(Pfn::new(8)), ReturnCode::Success);
        assert_eq!(rmp.begin_in_flight(Pfn::new(8)), ReturnCode::FailInuse);
        assert_eq!(rmp.rmpupdate(Pfn::new(9), assigned(0x9000, 5, false)), ReturnCode::FailInuse);
        assert!(rmp.end_in_flight(Pfn::new(8)));
        assert!(!rmp.end_in_flight(Pfn::new(8)));
        assert_eq!(rmp.rmpupdate(Pfn::new(9), assigned(0x9000, 5, false)), ReturnCode::Success);
        assert_eq!(
            rmp.check_host_write(Pfn::new(8), PageSize::Size2M, true),
            Err(PfErrorCode::from_bits(0x8000_0007))
        );
        assert_eq!(rmp.check_host_write(Pfn::new(8), PageSize::Size4K, false), Ok(()));
        assert_eq!(rmp.check_host_write(Pfn::new(10), PageSize::Size2M, false), Ok(()));
    }
}
