//! Differential tests: the region-structured [`Rmp`] against the dense oracle [`DenseRmp`].
//!
//! Random operation sequences (every `RmpModel` instruction, check and concurrency hook, with
//! valid and invalid operands, and RMPOPT verifies) are applied to both models on small hosts
//! whose last 2M region is partial, with RMPOPT on for half of the hosts. After every operation the
//! results must be equal, and so must the `rmpread`, `raw_entry` and `is_optimized` views of every
//! page (and a few beyond the RMP), the per-ASID counters, the RMPOPT coverage and the instruction
//! counters.
//!
//! Each operation is generated from its own 64-bit seed by a state-free, biased generator: the
//! operations concentrate on a few regions and a few offsets in them, and guests mostly use the
//! GPA that the host assigned (a fixed GPA layout per ASID), so that the interesting states
//! (validated 2M pages, smashed regions, VMPL permissions, overlaps) are reached; each half of the
//! differential fails unless its own cases reached every outcome of [`REACHED`] (and the RMPOPT
//! outcomes of its half). proptest shrinks a failing case by dropping operations; the `#[ignore]`d
//! long run draws the seeds from one seeded generator and prints the case seed on failure.
//!
//! Why one long file: the operations, their biased generator, the outcome counters and the
//! page-by-page comparison are one instrument, and the tests here only choose its cases.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, RngSeed};
use snpsim_defs::{
    Gpa, NpfErrorCode, PageSize, PfErrorCode, Pfn, ReturnCode, RmpAdjustOperand, RmpArchEntry, RmpEntryRaw,
    RmpPageSize, VmplPerms,
};
use snpsim_hw::reference::DenseRmp;
use snpsim_hw::rmp::Rmp;
use snpsim_hw::{
    AccessKind, Geometry, GuestAccess, GuestContext, GuestOutcome, PvalidateStatus, RmpConfig, RmpModel,
    RmpQueryResult, RmpoptVerify,
};

/// Operations per generated case.
const OPS_PER_CASE: usize = 256;
/// proptest cases in the normal run (400 × 256 = 102,400 operations), half with RMPOPT on.
const CASES: u32 = 400;
/// Operations of the ignored long run.
const LONG_RUN_OPS: u64 = 10_000_000;

/// ASIDs whose counters are compared; includes invalid ones.
const ASIDS: [u16; 8] = [0, 1, 2, 3, 1022, 1023, 1024, 5000];

/// The tests' deterministic generator: ChaCha8 seeded from a `u64` (the engine's generator).
#[derive(Clone, Debug)]
pub(crate) struct Rng(rand_chacha::ChaCha8Rng);

impl Rng {
    pub(crate) fn seeded(seed: u64) -> Self {
        Rng(<rand_chacha::ChaCha8Rng as rand_core::SeedableRng>::seed_from_u64(seed))
    }

    pub(crate) fn next(&mut self) -> u64 {
        rand_core::RngCore::next_u64(&mut self.0)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// True with probability `pct` %.
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }

    /// One of `items`.
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// The hosts the differential runs on: `tiny` and `x86`, each with a partial last region, with
/// the SIZEM check for smaller NPT leaves on and off.
pub(crate) fn config(index: u64) -> RmpConfig {
    let (geometry, pages) = match index % 3 {
        0 => (Geometry::TINY, 4 * 4 + 3),
        1 => (Geometry::X86, 3 * 512 + 7),
        _ => (Geometry::TINY, 4 * BIG_REGIONS + 3),
    };
    RmpConfig { geometry, pages, smaller_npt_faults: (index / 3).is_multiple_of(2) }
}

/// Number of distinct configurations of [`config`].
const CONFIGS: u64 = 6;

/// Whether case `index` (of `0..2 * CONFIGS`, configuration `index % CONFIGS`) runs with RMPOPT
/// enabled: the upper half.
fn rmpopt_on(index: u64) -> bool {
    index >= CONFIGS
}

/// Full regions of the big host: several chunks of the run-compressed storage
/// (`snpsim_stores::runs::CHUNK`), one guest owning them all, so that a sweep of 2M assignments
/// leaves progressions that the random operations then break and the storage compresses again.
const BIG_REGIONS: u64 = 2 * snpsim_stores::runs::REGION_CHUNK as u64 + 5;

/// One operation on an RMP model.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Op {
    Update(Pfn, RmpArchEntry),
    Psmash(Pfn),
    Pvalidate(GuestContext, Gpa, Pfn, RmpPageSize, bool),
    /// A run of 4K PVALIDATEs: the region RMP's range path against the oracle's one page at a time.
    PvalidateRun(GuestContext, Gpa, Pfn, u64, bool),
    /// How many frames in a row are assigned 4K (the region RMP's runs against lookups).
    AssignedRun(Pfn, u64),
    /// A run of 4K RMPUPDATEs to private (frame, first GPA, ASID, pages): the region RMP's
    /// progressions against the oracle's one page at a time.
    UpdateRun(Pfn, Gpa, u16, u64),
    Adjust(GuestContext, Gpa, Pfn, RmpPageSize, RmpAdjustOperand),
    Query(GuestContext, Gpa, Pfn, u8),
    Access(GuestAccess),
    HostWrite(Pfn, PageSize, bool),
    Begin(Pfn),
    End(Pfn),
    Verify(Pfn),
}

/// The result of one operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Res {
    Code(ReturnCode),
    Pvalidate(GuestOutcome<PvalidateStatus>),
    Run(u64),
    Unit(GuestOutcome<()>),
    Query(GuestOutcome<RmpQueryResult>),
    HostWrite(Result<(), PfErrorCode>),
    Ended(bool),
    Verify(RmpoptVerify),
}

pub(crate) fn apply(m: &mut dyn RmpModel, op: Op) -> Res {
    match op {
        Op::Update(pfn, e) => Res::Code(m.rmpupdate(pfn, e)),
        Op::Psmash(pfn) => Res::Code(m.psmash(pfn)),
        Op::Pvalidate(g, gpa, pfn, size, v) => Res::Pvalidate(m.pvalidate(g, gpa, pfn, size, v)),
        Op::PvalidateRun(g, gpa, pfn, pages, v) => Res::Run(m.pvalidate_4k_run(g, gpa, pfn, pages, v)),
        Op::AssignedRun(pfn, pages) => Res::Run(m.assigned_4k_run(pfn, pages)),
        Op::UpdateRun(pfn, gpa, asid, pages) => Res::Run(m.rmpupdate_4k_run(pfn, gpa, asid, pages)),
        Op::Adjust(g, gpa, pfn, size, o) => Res::Unit(m.rmpadjust(g, gpa, pfn, size, o)),
        Op::Query(g, gpa, pfn, t) => Res::Query(m.rmpquery(g, gpa, pfn, t)),
        Op::Access(a) => Res::Unit(m.check_guest_access(&a)),
        Op::HostWrite(pfn, size, user) => Res::HostWrite(m.check_host_write(pfn, size, user)),
        Op::Begin(pfn) => Res::Code(m.begin_in_flight(pfn)),
        Op::End(pfn) => Res::Ended(m.end_in_flight(pfn)),
        Op::Verify(pfn) => Res::Verify(m.rmpopt_verify(pfn)),
    }
}

/// The GPA layout every generated guest uses: ASID `a` sees system frame `p` at GPA
/// `a·256 MiB + p·4K` (2M-aligned frames get 2M-aligned GPAs in both geometries).
fn gpa_of(asid: u64, pfn: u64) -> u64 {
    (asid << 28).wrapping_add(pfn << 12)
}

/// The biased operation generator; state-free so that every operation depends on its own seed only.
pub(crate) struct Gen {
    pub(crate) cfg: RmpConfig,
}

impl Gen {
    fn g(&self) -> u64 {
        self.cfg.geometry.pages_per_2m()
    }

    /// Number of regions touching the RMP (the last one partial).
    fn regions(&self) -> u64 {
        self.cfg.pages.div_ceil(self.g())
    }

    /// A frame: mostly in two hot regions at a few offsets, sometimes anywhere, sometimes beyond.
    fn pfn(&self, r: &mut Rng, hot: u64) -> u64 {
        let g = self.g();
        match r.below(100) {
            0..=84 => {
                // Hot: region `hot` or the next one (wrapping through the partial last region).
                let region = (hot + r.below(2)) % self.regions();
                let off = match r.below(100) {
                    0..=39 => 0,
                    40..=74 => 1 + r.below(3.min(g - 1)),
                    75..=84 => g - 1,
                    _ => r.below(g),
                };
                region * g + off
            }
            85..=94 => r.below(self.cfg.pages),
            95..=98 => self.cfg.pages + r.below(2 * g),
            _ => r.pick(&[u64::MAX >> 12, 1 << 40, self.regions() * g]),
        }
    }

    /// A region-aligned frame most of the time.
    fn aligned_pfn(&self, r: &mut Rng, hot: u64) -> u64 {
        let p = self.pfn(r, hot);
        if r.chance(85) { p & !(self.g() - 1) } else { p }
    }

    /// The guest that mostly owns the region of `pfn` (ASID 1 or 2 by region parity), so that the
    /// host's assignments and the guests' operations meet.
    fn owner(&self, pfn: u64) -> u16 {
        if self.regions() > BIG_REGIONS { 1 } else { 1 + (pfn / self.g() % 2) as u16 }
    }

    /// On the big host, the sweep the operations start from: every full region assigned 2M to
    /// ASID 1 at its GPA and validated, in rising order, as an eager 2M acceptance does.
    pub(crate) fn sweep(&self) -> Vec<Op> {
        if self.regions() <= BIG_REGIONS {
            return Vec::new();
        }
        let g = self.g();
        let guest = GuestContext { asid: 1, vmpl: 0 };
        (0..self.cfg.pages / g)
            .flat_map(|r| {
                let pfn = r * g;
                let gpa = gpa_of(1, pfn);
                let e = RmpArchEntry::new()
                    .with_page_size(true)
                    .with_assigned(true)
                    .with_asid(1)
                    .with_gpa(Gpa::new(gpa));
                [
                    Op::Update(Pfn::new(pfn), e),
                    Op::Pvalidate(guest, Gpa::new(gpa), Pfn::new(pfn), RmpPageSize::Size2M, true),
                ]
            })
            .collect()
    }

    /// A guest working on `pfn`: mostly its owner, sometimes another or an invalid ASID.
    fn guest(&self, r: &mut Rng, pfn: u64, vmpl0_pct: u64) -> GuestContext {
        let asid = match r.below(100) {
            0..=79 => self.owner(pfn),
            80..=91 => r.pick(&[1, 2, 3]),
            _ => r.pick(&[0, 1022, 1023, 1024]),
        };
        let vmpl = if r.chance(vmpl0_pct) { 0 } else { 1 + r.below(3) as u8 };
        GuestContext { asid, vmpl }
    }

    /// The GPA a guest names for `pfn`: mostly the one its host assigned.
    fn guest_gpa(&self, r: &mut Rng, asid: u16, pfn: u64) -> Gpa {
        let gpa = gpa_of(u64::from(asid), pfn);
        Gpa::new(match r.below(100) {
            0..=86 => gpa,
            87..=91 => gpa_of(u64::from(asid), pfn ^ 1),
            92..=95 => gpa.wrapping_add(0x123),
            96..=97 => gpa.wrapping_add(self.g() << 12),
            _ => r.next(),
        })
    }

    fn rmp_size(r: &mut Rng, huge_pct: u64) -> RmpPageSize {
        if r.chance(huge_pct) { RmpPageSize::Size2M } else { RmpPageSize::Size4K }
    }

    fn update(&self, r: &mut Rng, hot: u64) -> Op {
        let huge = r.chance(40);
        let pfn = if huge { self.aligned_pfn(r, hot) } else { self.pfn(r, hot) };
        let mut e = RmpArchEntry::new().with_page_size(huge);
        if r.chance(70) {
            let asid = match r.below(100) {
                0..=79 => u32::from(self.owner(pfn)),
                80..=91 => r.pick(&[1, 2, 3]),
                _ => r.pick(&[0, 1022, 1023, 1024, 0x1_0001]),
            };
            let gpa = gpa_of(u64::from(asid), pfn);
            let gpa = match r.below(100) {
                0..=84 => gpa,
                85..=89 => gpa_of(u64::from(asid), pfn + 1),
                90..=93 => gpa.wrapping_add(0x800),
                94..=96 => gpa.wrapping_add(0x1000),
                _ => gpa.wrapping_add(1 << 51),
            };
            e = e.with_assigned(true).with_asid(asid).with_gpa(Gpa::new(gpa)).with_immutable(r.chance(8));
        } else if r.chance(12) {
            // A malformed unassigned operand.
            match r.below(3) {
                0 => e = e.with_asid(1 + r.below(3) as u32),
                1 => e = e.with_gpa(Gpa::new(gpa_of(1, pfn))),
                _ => e = e.with_immutable(true),
            }
        }
        // The RMPREAD-only status bit in an RMPUPDATE operand.
        if r.chance(2) {
            e = e.with_hpage_region_status(true);
        }
        Op::Update(Pfn::new(pfn), e)
    }

    fn adjust_operand(r: &mut Rng, huge: bool) -> RmpAdjustOperand {
        let target = match r.below(100) {
            0..=94 => r.below(4) as u8,
            95..=97 => 4,
            _ => 255,
        };
        let perms = VmplPerms::from_bits(match r.below(100) {
            0..=19 => 0x1f,
            20..=94 => r.below(32) as u8,
            _ => r.below(256) as u8,
        });
        let vmsa = r.chance(if huge { 5 } else { 20 });
        let mut op = RmpAdjustOperand::new().with_target_vmpl(target).with_perms(perms).with_vmsa(vmsa);
        if r.chance(3) {
            op = RmpAdjustOperand::from_bits(op.into_bits() | 1 << (17 + r.below(47)));
        }
        op
    }

    /// A frame naming an RMPOPT region: mostly one of the hot frames, sometimes the start of the
    /// first region beyond the 2 TB window (O3).
    fn rmpopt_pfn(&self, r: &mut Rng, hot: u64) -> u64 {
        if r.chance(95) {
            self.pfn(r, hot)
        } else {
            snpsim_hw::rmpopt::RMPOPT_MAX_REGIONS * snpsim_hw::rmpopt::region_pages(self.cfg.geometry)
        }
    }

    pub(crate) fn op(&self, seed: u64) -> Op {
        let r = &mut Rng::seeded(seed);
        // Two hot regions (of the few there are) per operation: region 0/1 most of the time.
        let hot = if r.chance(70) { 0 } else { r.below(self.regions()) };
        match r.below(1000) {
            0..=219 => self.update(r, hot),
            220..=269 => Op::Psmash(Pfn::new(self.aligned_pfn(r, hot))),
            270..=329 => {
                // A run of 4K PVALIDATEs: from a hot frame, over a few pages or a whole region.
                let pfn = self.pfn(r, hot);
                let g = self.g();
                let pages = r.pick(&[1, 2, 3, g - 1, g, g + 1, 2 * g + 3]);
                let guest = self.guest(r, pfn, 90);
                let gpa = self.guest_gpa(r, guest.asid, pfn);
                if r.chance(20) {
                    return Op::AssignedRun(Pfn::new(pfn), pages);
                }
                if r.chance(25) {
                    // Mostly the owner at the host's GPA layout; sometimes an invalid ASID or GPA.
                    let asid = match r.below(100) {
                        0..=89 => self.owner(pfn),
                        _ => r.pick(&[0, 1023, 1024]),
                    };
                    let gpa = match r.below(100) {
                        0..=89 => Gpa::new(gpa_of(u64::from(asid), pfn)),
                        90..=94 => Gpa::new(gpa_of(u64::from(asid), pfn).wrapping_add(0x800)),
                        _ => Gpa::new((1 << 51) - 0x2000),
                    };
                    return Op::UpdateRun(Pfn::new(pfn), gpa, asid, pages);
                }
                Op::PvalidateRun(guest, gpa, Pfn::new(pfn), pages, r.chance(75))
            }
            330..=449 => {
                let size = Self::rmp_size(r, 40);
                let pfn =
                    if size == RmpPageSize::Size2M { self.aligned_pfn(r, hot) } else { self.pfn(r, hot) };
                let guest = self.guest(r, pfn, 90);
                let gpa = self.guest_gpa(r, guest.asid, pfn);
                Op::Pvalidate(guest, gpa, Pfn::new(pfn), size, r.chance(75))
            }
            450..=569 => {
                let size = Self::rmp_size(r, 30);
                let pfn =
                    if size == RmpPageSize::Size2M { self.aligned_pfn(r, hot) } else { self.pfn(r, hot) };
                let guest = self.guest(r, pfn, 65);
                let gpa = self.guest_gpa(r, guest.asid, pfn);
                Op::Adjust(
                    guest,
                    gpa,
                    Pfn::new(pfn),
                    size,
                    Self::adjust_operand(r, size == RmpPageSize::Size2M),
                )
            }
            570..=629 => {
                let pfn = self.pfn(r, hot);
                let guest = self.guest(r, pfn, 60);
                let gpa = self.guest_gpa(r, guest.asid, pfn);
                let target = if r.chance(95) { r.below(4) as u8 } else { r.pick(&[4, 200]) };
                Op::Query(guest, gpa, Pfn::new(pfn), target)
            }
            630..=859 => {
                let pfn = self.pfn(r, hot);
                let guest = self.guest(r, pfn, 60);
                let gpa = self.guest_gpa(r, guest.asid, pfn);
                let npt_size = match r.below(100) {
                    0..=49 => PageSize::Size4K,
                    50..=84 => PageSize::Size2M,
                    _ => PageSize::Size1G,
                };
                let kind = r.pick(&[AccessKind::Read, AccessKind::Write, AccessKind::Exec]);
                let private = r.chance(70);
                Op::Access(GuestAccess {
                    guest,
                    gpa,
                    pfn: Pfn::new(pfn),
                    npt_size,
                    private,
                    kind,
                    user: r.chance(50),
                })
            }
            860..=929 => {
                let size = r.pick(&[PageSize::Size4K, PageSize::Size2M, PageSize::Size1G]);
                Op::HostWrite(Pfn::new(self.pfn(r, hot)), size, r.chance(30))
            }
            930..=944 => Op::Begin(Pfn::new(self.aligned_pfn(r, hot))),
            945..=969 => Op::End(Pfn::new(self.aligned_pfn(r, hot))),
            _ => Op::Verify(Pfn::new(self.rmpopt_pfn(r, hot))),
        }
    }
}

/// Outcome counters, to prove that the generator reaches the interesting cases.
#[derive(Debug, Default)]
struct Stats {
    ops: u64,
    outcomes: BTreeMap<&'static str, u64>,
}

impl Stats {
    fn bump(&mut self, name: &'static str) {
        *self.outcomes.entry(name).or_insert(0) += 1;
    }

    fn get(&self, name: &str) -> u64 {
        self.outcomes.get(name).copied().unwrap_or(0)
    }

    fn record(&mut self, op: Op, res: Res) {
        self.ops += 1;
        let sizem = |e: NpfErrorCode| e.sizem();
        match (op, res) {
            (Op::Update(_, e), Res::Code(ReturnCode::Success)) => {
                self.bump(if e.page_size() { "rmpupdate 2M success" } else { "rmpupdate 4K success" });
            }
            (Op::Update(..) | Op::Psmash(_), Res::Code(ReturnCode::FailInuse)) => self.bump("FAIL_INUSE"),
            (Op::Update(..), Res::Code(ReturnCode::FailOverlap)) => self.bump("FAIL_OVERLAP"),
            (Op::Update(..), Res::Code(ReturnCode::FailPermission)) => self.bump("rmpupdate FAIL_PERMISSION"),
            (Op::Psmash(_), Res::Code(ReturnCode::Success)) => self.bump("psmash success"),
            (Op::Psmash(_), Res::Code(ReturnCode::FailUnsupported)) => self.bump("psmash FAIL_UNSUPPORTED"),
            (Op::Pvalidate(_, _, _, size, _), Res::Pvalidate(GuestOutcome::Done(s))) => {
                self.bump(match (size, s) {
                    (RmpPageSize::Size2M, PvalidateStatus::Changed) => "pvalidate 2M changed",
                    (RmpPageSize::Size4K, PvalidateStatus::Changed) => "pvalidate 4K changed",
                    (_, PvalidateStatus::Unchanged) => "pvalidate unchanged",
                });
            }
            (Op::Pvalidate(..), Res::Pvalidate(GuestOutcome::Fail(ReturnCode::FailSizeMismatch))) => {
                self.bump("pvalidate FAIL_SIZEMISMATCH");
            }
            (Op::Pvalidate(..), Res::Pvalidate(GuestOutcome::Npf(e))) if sizem(e) => self.bump("SIZEM #NPF"),
            (Op::PvalidateRun(..), Res::Run(n)) if n >= 2 => self.bump("pvalidate run of 2 or more"),
            (Op::AssignedRun(..), Res::Run(n)) if n >= 2 => self.bump("assigned 4K run of 2 or more"),
            (Op::UpdateRun(.., pages), Res::Run(n)) => {
                if n >= 2 {
                    self.bump("rmpupdate run of 2 or more");
                }
                if n > 0 && n < pages {
                    self.bump("rmpupdate run stopped short");
                }
            }
            (Op::Adjust(..), Res::Unit(GuestOutcome::Done(()))) => self.bump("rmpadjust success"),
            (Op::Adjust(..), Res::Unit(GuestOutcome::Fail(ReturnCode::FailPermission))) => {
                self.bump("rmpadjust FAIL_PERMISSION");
            }
            (Op::Adjust(..), Res::Unit(GuestOutcome::Npf(e))) if sizem(e) => self.bump("SIZEM #NPF"),
            (Op::Query(..), Res::Query(GuestOutcome::Done(_))) => self.bump("rmpquery success"),
            (Op::Access(a), Res::Unit(GuestOutcome::Done(()))) if a.private => self.bump("private access ok"),
            (Op::Access(_), Res::Unit(GuestOutcome::Npf(e))) if sizem(e) => self.bump("SIZEM #NPF"),
            (Op::Access(_), Res::Unit(GuestOutcome::Npf(e))) if e.vmpl() => self.bump("VMPL #NPF"),
            (Op::Access(_), Res::Unit(GuestOutcome::Vc(_))) => self.bump("access #VC"),
            (Op::HostWrite(..), Res::HostWrite(Err(_))) => self.bump("host write #PF"),
            (Op::Verify(_), Res::Verify(v)) => self.bump(match v {
                RmpoptVerify::Optimized => "rmpopt optimized",
                RmpoptVerify::NotOptimized => "rmpopt not optimized",
                RmpoptVerify::OutOfRange => "rmpopt out of range",
                RmpoptVerify::Disabled => "rmpopt disabled",
            }),
            _ => {}
        }
    }
}

/// The oracle's views, cached so that [`DenseRmp::rmpread`] (which may scan the page's region) is
/// re-read only for regions whose raw entries changed, and for every page on a full comparison.
struct Views {
    cfg: RmpConfig,
    raw: Vec<Option<RmpEntryRaw>>,
    read: Vec<Result<RmpArchEntry, ReturnCode>>,
}

/// A full comparison (every oracle view re-read) every this many operations and after the last.
const FULL_EVERY: usize = 32;

impl Views {
    fn new(cfg: RmpConfig, dense: &DenseRmp) -> Views {
        let pages = 0..cfg.pages;
        Views {
            cfg,
            raw: pages.clone().map(|p| dense.raw_entry(Pfn::new(p))).collect(),
            read: pages.map(|p| dense.rmpread(Pfn::new(p))).collect(),
        }
    }

    /// Compare everything observable of the two models: both views of every page (and of a few
    /// frames beyond the RMP) and the per-ASID counters. The oracle's `rmpread` of a region whose
    /// raw entries did not change is taken from the cache unless `full`: by the rules it depends
    /// only on the region's entries (RMPREAD: own entry, 2M-region status), and the full
    /// comparisons check that the oracle agrees. `Rmp`'s views are all read every time.
    fn compare(&mut self, fast: &Rmp, dense: &DenseRmp, full: bool) -> Result<(), String> {
        let (g, pages) = (self.cfg.geometry.pages_per_2m(), self.cfg.pages);
        for region in (0..pages).step_by(g as usize) {
            let frames = region..pages.min(region + g);
            let mut changed = full;
            for p in frames.clone() {
                let (a, b) = (fast.raw_entry(Pfn::new(p)), dense.raw_entry(Pfn::new(p)));
                if a != b {
                    return Err(format!("raw_entry({:?}): Rmp {a:?} vs DenseRmp {b:?}", Pfn::new(p)));
                }
                let i = p as usize;
                changed |= self.raw[i] != b;
                self.raw[i] = b;
            }
            for p in frames {
                let i = p as usize;
                if changed {
                    self.read[i] = dense.rmpread(Pfn::new(p));
                }
                let a = fast.rmpread(Pfn::new(p));
                if a != self.read[i] {
                    return Err(format!(
                        "rmpread({:?}): Rmp {a:?} vs DenseRmp {:?}",
                        Pfn::new(p),
                        self.read[i]
                    ));
                }
            }
        }
        for p in (0..pages).chain([pages, pages + 1, pages + g, 1 << 40, u64::MAX]).map(Pfn::new) {
            let (a, b) = (fast.is_optimized(p), dense.is_optimized(p));
            if a != b {
                return Err(format!("is_optimized({p:?}): Rmp {a} vs DenseRmp {b}"));
            }
        }
        let (a, b) = (fast.rmpopt_marked_pages(), dense.rmpopt_marked_pages());
        if a != b {
            return Err(format!("rmpopt_marked_pages: Rmp {a} vs DenseRmp {b}"));
        }
        let (a, b) = (fast.rmp_stats(), dense.rmp_stats());
        if a != b {
            return Err(format!("rmp_stats: Rmp {a:?} vs DenseRmp {b:?}"));
        }
        for p in [pages, pages + 1, pages + g, 1 << 40, u64::MAX].map(Pfn::new) {
            let (a, b) = (fast.raw_entry(p), dense.raw_entry(p));
            if a != b {
                return Err(format!("raw_entry({p:?}): Rmp {a:?} vs DenseRmp {b:?}"));
            }
            let (a, b) = (fast.rmpread(p), dense.rmpread(p));
            if a != b {
                return Err(format!("rmpread({p:?}): Rmp {a:?} vs DenseRmp {b:?}"));
            }
        }
        for asid in ASIDS {
            let (a, b) = (fast.asid_assigned_pages(asid), dense.asid_assigned_pages(asid));
            if a != b {
                return Err(format!("asid_assigned_pages({asid}): Rmp {a} vs DenseRmp {b}"));
            }
        }
        Ok(())
    }
}

/// Apply `ops` to both models, comparing after each. On a difference, the error lists the
/// operations up to it.
/// The views are compared after every operation from the end of the first `sweep` ones (a
/// big host's sweep: results are still compared one by one).
fn run(cfg: RmpConfig, rmpopt: bool, ops: &[Op], sweep: usize, stats: &mut Stats) -> Result<(), String> {
    let mut fast = Rmp::new(cfg);
    let mut dense = DenseRmp::new(cfg);
    fast.set_rmpopt(rmpopt);
    dense.set_rmpopt(rmpopt);
    // O7: Linux scans all memory once SNP is initialised; with RMPOPT on the run starts marked.
    let (a, b) = (fast.rmpopt_verify_all(), dense.rmpopt_verify_all());
    if a != b {
        return Err(format!("{cfg:?}: rmpopt_verify_all: Rmp {a:?} vs DenseRmp {b:?}"));
    }
    let mut views = Views::new(cfg, &dense);
    let mut history: Vec<Op> = Vec::new();
    let fail = |history: &[Op], what: String| {
        let mut s = format!("{cfg:?}, rmpopt {rmpopt}\n");
        for (i, op) in history.iter().enumerate() {
            let _ = writeln!(s, "  op {i}: {op:?}");
        }
        s + &what
    };
    for (n, &op) in ops.iter().enumerate() {
        history.push(op);
        if let Op::HostWrite(pfn, ..) = op
            && fast.is_optimized(pfn)
        {
            stats.bump("host write check skipped");
        }
        let cleared = fast.rmp_stats().rmpopt_marks_cleared;
        let a = apply(&mut fast, op);
        if fast.rmp_stats().rmpopt_marks_cleared > cleared {
            stats.bump("rmpopt mark cleared");
        }
        let b = apply(&mut dense, op);
        if a != b {
            return Err(fail(&history, format!("result: Rmp {a:?} vs DenseRmp {b:?}")));
        }
        if let Op::Update(_, e) = op {
            let (x, y) = (fast.rmpupdate_operand_valid(e), dense.rmpupdate_operand_valid(e));
            if x != y {
                return Err(fail(&history, format!("rmpupdate_operand_valid: Rmp {x} vs DenseRmp {y}")));
            }
        }
        stats.record(op, a);
        if n + 1 < sweep {
            continue;
        }
        let full = n % FULL_EVERY == FULL_EVERY - 1 || n + 1 == ops.len() || n + 1 == sweep;
        views.compare(&fast, &dense, full).map_err(|e| fail(&history, e))?;
    }
    Ok(())
}

/// One case of the long run: configuration and operation seeds from `case_seed`.
fn run_case(case_seed: u64, stats: &mut Stats) -> Result<(), String> {
    let mut r = Rng::seeded(case_seed);
    let index = r.below(2 * CONFIGS);
    let cfg = config(index % CONFIGS);
    let generator = Gen { cfg };
    let mut ops = generator.sweep();
    let sweep = ops.len();
    ops.extend((0..OPS_PER_CASE).map(|_| generator.op(r.next())));
    run(cfg, rmpopt_on(index), &ops, sweep, stats)
}

/// The outcomes both halves of the differential must reach, so that it cannot silently test
/// nothing.
const REACHED: &[&str] = &[
    "psmash success",
    "psmash FAIL_UNSUPPORTED",
    "pvalidate 2M changed",
    "pvalidate 4K changed",
    "pvalidate run of 2 or more",
    "assigned 4K run of 2 or more",
    "rmpupdate run of 2 or more",
    "rmpupdate run stopped short",
    "FAIL_OVERLAP",
    "FAIL_INUSE",
    "rmpadjust success",
    "SIZEM #NPF",
    "rmpupdate 2M success",
    "rmpupdate FAIL_PERMISSION",
    "pvalidate FAIL_SIZEMISMATCH",
    "rmpquery success",
    "private access ok",
    "VMPL #NPF",
    "access #VC",
    "host write #PF",
];

/// Half of the 400 cases × 256 operations (configurations `offset..offset + CONFIGS`), each
/// compared result by result and page by page; panics on a difference. Returns the outcomes the
/// cases reached.
fn differential_half(seed: u64, offset: u64) -> Stats {
    let stats = std::cell::RefCell::new(Stats::default());
    let mut runner = proptest::test_runner::TestRunner::new(half_config(seed));
    let cases = (0..CONFIGS, proptest::collection::vec(any::<u64>(), OPS_PER_CASE));
    if let Err(e) = runner.run(&cases, |(config_index, seeds)| {
        differential_case(offset + config_index, &seeds, &mut stats.borrow_mut())
    }) {
        panic!("{e}");
    }
    let stats = stats.into_inner();
    for needed in REACHED {
        assert!(stats.get(needed) > 0, "never reached: {needed}; {stats:?}");
    }
    stats
}

/// RMPOPT off (its own test, so that the two halves run in parallel).
#[test]
fn rmp_matches_dense_reference() {
    let stats = differential_half(0x5e5_5a1d, 0);
    assert!(stats.get("rmpopt disabled") > 0, "never reached: rmpopt disabled; {stats:?}");
}

/// RMPOPT on, from its own seed (the other half's cases are not repeated with RMPOPT on).
#[test]
fn rmp_matches_dense_reference_with_rmpopt() {
    let stats = differential_half(0x5e5_5a1d ^ 1, CONFIGS);
    for needed in [
        "rmpopt optimized",
        "rmpopt not optimized",
        "rmpopt out of range",
        "rmpopt mark cleared",
        "host write check skipped",
    ] {
        assert!(stats.get(needed) > 0, "never reached: {needed}; {stats:?}");
    }
}

/// The configuration of each half of the differential: half the cases, from `seed`.
fn half_config(seed: u64) -> ProptestConfig {
    ProptestConfig {
        cases: CASES / 2,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        ..ProptestConfig::default()
    }
}

/// One proptest case: the configuration sweep, then one operation per seed, against the oracle;
/// the outcomes reached are added to `stats`.
fn differential_case(index: u64, seeds: &[u64], stats: &mut Stats) -> Result<(), TestCaseError> {
    let cfg = config(index % CONFIGS);
    let generator = Gen { cfg };
    let mut ops = generator.sweep();
    let sweep = ops.len();
    ops.extend(seeds.iter().map(|&s| generator.op(s)));
    if let Err(e) = run(cfg, rmpopt_on(index), &ops, sweep, stats) {
        prop_assert!(false, "{}", e);
    }
    Ok(())
}

/// Every other page of smashed 2M regions returned to the hypervisor in rising order (the
/// fragmented guest of `snpsim bench`'s `fragment-1t`, whose regions the storage keeps as two
/// interleaved progressions), then every fourth page assigned and validated again, then random
/// operations that break the patterns: compared with the oracle after every operation.
#[test]
fn alternating_pages_match_dense_reference() {
    // x86: three full regions and a partial one.
    let cfg = config(1);
    let generator = Gen { cfg };
    let g = cfg.geometry.pages_per_2m();
    let full = cfg.pages / g * g;
    let guest = GuestContext { asid: 1, vmpl: 0 };
    let mut ops = Vec::new();
    for pfn in (0..full).step_by(g as usize) {
        let gpa = gpa_of(1, pfn);
        let e =
            RmpArchEntry::new().with_page_size(true).with_assigned(true).with_asid(1).with_gpa(Gpa::new(gpa));
        ops.push(Op::Update(Pfn::new(pfn), e));
        ops.push(Op::Pvalidate(guest, Gpa::new(gpa), Pfn::new(pfn), RmpPageSize::Size2M, true));
        ops.push(Op::Psmash(Pfn::new(pfn)));
        ops.extend((pfn + 1..pfn + g).step_by(2).map(|p| Op::Update(Pfn::new(p), RmpArchEntry::new())));
    }
    for p in (1..full).step_by(4) {
        let gpa = gpa_of(1, p);
        ops.push(Op::Update(
            Pfn::new(p),
            RmpArchEntry::new().with_assigned(true).with_asid(1).with_gpa(Gpa::new(gpa)),
        ));
        ops.push(Op::Pvalidate(guest, Gpa::new(gpa), Pfn::new(p), RmpPageSize::Size4K, true));
    }
    let mut r = Rng::seeded(0xa17e_4a7e);
    ops.extend((0..OPS_PER_CASE).map(|_| generator.op(r.next())));
    let mut stats = Stats::default();
    // With RMPOPT off and on (the operations include verifies, which must match the oracle too).
    for rmpopt in [false, true] {
        if let Err(e) = run(cfg, rmpopt, &ops, 0, &mut stats) {
            panic!("rmpopt {rmpopt}: {e}");
        }
    }
    // The pattern was really built: every region smashed, and the 4K updates (half the pages
    // returned, a quarter assigned again) succeeded; the random operations may add more.
    assert!(stats.get("psmash success") >= full / g);
    assert!(stats.get("rmpupdate 4K success") >= full / 2 + full / 4);
}

/// The long run: ≥ 10,000,000 operations (`cargo test --release -p snpsim-hw --test differential
/// -- --ignored --nocapture`). `SNPSIM_DIFF_SEED` changes the master seed; a failure prints its
/// case seed, which `SNPSIM_DIFF_CASE` replays alone.
#[test]
#[ignore = "long run: 10M operations"]
fn rmp_matches_dense_reference_long() {
    let env = |name: &str| {
        std::env::var(name).ok().map(|s| {
            let s = s.trim_start_matches("0x");
            u64::from_str_radix(s, 16).unwrap_or_else(|_| panic!("{name}: hexadecimal seed expected"))
        })
    };
    let mut stats = Stats::default();
    if let Some(seed) = env("SNPSIM_DIFF_CASE") {
        run_case(seed, &mut stats).unwrap_or_else(|e| panic!("case seed {seed:#x}: {e}"));
        return;
    }
    let master_seed = env("SNPSIM_DIFF_SEED").unwrap_or(0x10_0000_0001);
    let mut master = Rng::seeded(master_seed);
    let start = Instant::now();
    while stats.ops < LONG_RUN_OPS {
        let seed = master.next();
        run_case(seed, &mut stats)
            .unwrap_or_else(|e| panic!("master seed {master_seed:#x}, case seed {seed:#x}: {e}"));
    }
    println!("{} ops in {:?}: {stats:#?}", stats.ops, start.elapsed());
}
