//! The range operations against the one-page oracle (docs/semantics.md, "Ranges"): random
//! scenarios — any policy with any backing of its era, 4K or 2M granularity, tracking or naive
//! guests, MSR or GHCB page-state changes request by request or over the whole range, with or
//! without pre-faulting, on a 16 MiB x86 guest — run in lockstep twice, once with runs of
//! PVALIDATEs executed as range operations and once page by page ([`Simulation::set_ranges`]).
//! After every action the step's result, the outcome, the canonical state (the model checker's
//! form: RMP, NPT, attributes, host, validation counts, the guest's tracking and running tasks),
//! the guest with its counters, the RMP instruction counts, KVM's counters and the checker's
//! findings must be equal; at the end the metrics and violations. The CI size runs 48 scenarios of
//! 96 actions; the `#[ignore]`d long form runs over 1,000,000 actions
//! (`cargo test --release -p snpsim-check --test it ranges:: -- --ignored --nocapture`).

use snpsim_check::canonical;
use snpsim_check::run::backings;
use snpsim_defs::{Gfn, RmpPageSize};
use snpsim_engine::engine::{Action, CheckMode, SimConfig, Simulation};
use snpsim_guest::{Granularity, Protocol, PscOrder, Recoalesce};
use snpsim_host::HostVia;
use snpsim_hw::AccessKind;

/// 16 MiB of guest (eight 2M regions) on a 64 MiB host.
const GUEST_PAGES: u64 = 8 * 512;
const HOST_PAGES: u64 = 32 * 512;

/// SplitMix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// A random configuration; with `prefault`, one where pre-fault runs can happen (`gmem`, the
/// policy whose pre-faults have a range path — `gmem-inplace`'s go page by page — pre-faulting on
/// every PSC, the NPT capped at the RMP level), so that every run of the test exercises them
/// whatever else the registry holds.
fn config(r: &mut Rng, prefault: bool) -> SimConfig {
    let policies: Vec<_> =
        snpsim_kvm::policy::ALL.into_iter().filter(|p| !prefault || p.name() == "gmem").collect();
    let policy = policies[r.below(policies.len() as u64) as usize];
    let backings = backings(policy.era());
    let (_, backing) = backings[r.below(backings.len() as u64) as usize];
    let mut c = SimConfig::new(policy, backing, GUEST_PAGES, HOST_PAGES);
    c.guest.granularity = r.pick(&[Granularity::K4, Granularity::M2]);
    c.guest.validation_tracking = r.chance(80);
    c.guest.protocol = if r.chance(80) { Protocol::Ghcb } else { Protocol::Msr };
    c.guest.order = if r.chance(80) { PscOrder::PerRequest } else { PscOrder::WholeRange };
    c.guest.ghcb_entries = r.pick(&[1, 3, 64, 64, 253]);
    c.prefault_on_psc = prefault || r.chance(50);
    c.npt_level_follows_rmp =
        if prefault { r.pick(&[None, Some(true)]) } else { r.pick(&[None, Some(true), Some(false)]) };
    c.check = CheckMode::Incremental;
    c
}

/// A guest page: mostly near the start, the middle or the end of a region.
fn page(r: &mut Rng) -> u64 {
    let region = r.below(GUEST_PAGES / 512);
    let offset = r.pick(&[0, 0, 1, 2, 63, 64, 255, 256, 510, 511]);
    if r.chance(15) { r.below(GUEST_PAGES) } else { region * 512 + offset }
}

/// A random action.
fn action(r: &mut Rng) -> Action {
    let gpa = |p: u64| Gfn::new(p).gpa();
    let start = page(r);
    let pages = r.pick(&[1, 2, 3, 63, 64, 65, 511, 512, 513, 1024, 2048, 4096]).min(GUEST_PAGES - start);
    let granularity = r.pick(&[None, Some(Granularity::K4), Some(Granularity::M2)]);
    match r.below(100) {
        0..=29 => Action::Psc { vcpu: 0, gpa: gpa(start), pages, private: r.chance(60), granularity },
        30..=44 => Action::Accept { vcpu: 0, gpa: gpa(start), pages, granularity },
        45..=54 => {
            let size = if r.chance(30) { RmpPageSize::Size2M } else { RmpPageSize::Size4K };
            let p = if size == RmpPageSize::Size2M { start & !511 } else { start };
            Action::Pvalidate { vcpu: 0, gpa: gpa(p), size, validate: r.chance(70) }
        }
        55..=72 => Action::Access {
            vcpu: 0,
            gpa: gpa(start),
            kind: r.pick(&[AccessKind::Read, AccessKind::Write, AccessKind::Write, AccessKind::Exec]),
            private: r.chance(70),
        },
        73..=81 => Action::HostWrite {
            gpa: gpa(start),
            via: r.pick(&[HostVia::Vmm, HostVia::Uaccess, HostVia::Kernel]),
        },
        82..=87 => Action::PunchHole { gpa: gpa(start), pages },
        88..=93 => Action::Recoalesce {
            vcpu: 0,
            gpa: gpa(start & !511),
            mode: r.pick(&[Recoalesce::SaveRestore, Recoalesce::Naive]),
        },
        94..=96 => Action::HostSplit { gpa: gpa(start) },
        _ => Action::HostCollapse { gpa: gpa(start) },
    }
}

/// Everything observable of `sim` after a step, as text.
fn observed(sim: &Simulation) -> (Vec<u8>, String) {
    let m = sim.machine().map(|m| format!("{:?} {:?} {:?}", m.rmp.counts, m.kvm.stats, m.findings));
    (canonical(sim), format!("{:?} {:?} {m:?} {:?}", sim.outcome(), sim.guest(), sim.steps()))
}

/// Pages the range path took in a run: PVALIDATEd, pre-faulted, of those made private (fresh
/// guest_memfd pages), and made private by legacy page-state changes.
type Used = (u64, u64, u64, u64);

/// Run one random scenario of `actions` actions both ways; returns the actions run and the pages
/// the range run took by runs.
fn case(seed: u64, actions: usize, prefault: bool) -> (u64, Used) {
    let mut r = Rng(seed);
    let config = config(&mut r, prefault);
    let (Ok(mut ranges), Ok(mut pages)) = (Simulation::new(config), Simulation::new(config)) else {
        return (0, (0, 0, 0, 0));
    };
    pages.set_ranges(false);
    let mut run = 0;
    for step in 0..actions {
        if ranges.outcome().is_some() {
            break;
        }
        let a = action(&mut r);
        let (x, y) = (ranges.step(&a), pages.step(&a));
        run += 1;
        let what = || {
            format!("seed {seed:#x} step {step} ({a:?}), {} on {:?}", config.policy.name(), config.backing)
        };
        assert_eq!(x.result, y.result, "{}", what());
        let (cx, tx) = observed(&ranges);
        let (cy, ty) = observed(&pages);
        assert!(cx == cy, "canonical states differ: {}", what());
        assert_eq!(tx, ty, "{}", what());
    }
    let used = |s: &Simulation| {
        s.machine().map_or((0, 0, 0, 0), |m| {
            (m.range_pages(), m.kvm.range_mapped, m.kvm.range_prepared, m.kvm.range_converted)
        })
    };
    let (used, none) = (used(&ranges), used(&pages));
    assert_eq!(none, (0, 0, 0, 0), "the oracle took a range path");
    let (x, y) = (ranges.finish(), pages.finish());
    assert_eq!(format!("{:?}", x.metrics), format!("{:?}", y.metrics), "seed {seed:#x}");
    assert_eq!(x.violations, y.violations, "seed {seed:#x}");
    assert_eq!(x.outcome, y.outcome, "seed {seed:#x}");
    (run, used)
}

#[test]
fn ranges_match_the_one_page_oracle() {
    let (mut actions, mut validated, mut mapped, mut prepared, mut converted) = (0, 0, 0, 0, 0);
    let mut master = Rng(0x0a11_7a9e);
    // Every fourth scenario is one where pre-fault runs can happen.
    for i in 0..48 {
        let (a, (v, m, p, c)) = case(master.next(), 96, i % 4 == 0);
        actions += a;
        validated += v;
        mapped += m;
        prepared += p;
        converted += c;
    }
    // The comparison means something only if runs were taken: thousands of pages of each, fresh
    // guest_memfd pages among the pre-faulted ones, and legacy conversions to private.
    let taken = format!(
        "{validated} pages PVALIDATEd, {mapped} pre-faulted ({prepared} of them fresh) and {converted} made \
         private by legacy page-state changes, by runs"
    );
    assert!(validated > 4096 && mapped > 1024 && prepared > 512 && converted > 1024, "{taken}");
    println!("{actions} actions, {taken}");
}

/// A case the CI size does not reach, found by the long form: a page-state change to private of
/// 2M entries over huge host pages (npt-demote on hugetlbfs-2m) whose first 2M region already
/// holds a private page, so that its pages convert at 4K, and whose next region is free, so that it
/// converts by one 2M RMPUPDATE: a legacy 4K run must stop at that region's first GFN.
#[test]
fn a_4k_run_stops_where_a_2m_request_meets_a_free_huge_page() {
    let (_, (_, _, _, converted)) = case(0x76b3_5ca0_a998_f2b0, 48, false);
    assert!(converted > 0, "no legacy conversion took the range path");
}

/// The long form: scenarios of 256 actions until 1,000,000 actions have run (`SNPSIM_RANGES_ACTIONS`
/// sets another count), with progress on standard error every 100 scenarios.
/// `SNPSIM_RANGES_SEED` changes the master seed. The scenarios are independent runs, dealt to two
/// threads in turn (scenario i to thread i mod 2, each until its half of the actions): the same
/// scenarios run on any machine.
#[test]
#[ignore = "long run: 1,000,000 actions"]
fn ranges_match_the_one_page_oracle_long() {
    const WORKERS: u64 = 2;
    let seed = std::env::var("SNPSIM_RANGES_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x1_0000);
    let start = std::time::Instant::now();
    let target: u64 =
        std::env::var("SNPSIM_RANGES_ACTIONS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    let totals: Vec<(u64, u64, u64, u64)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                scope.spawn(move || {
                    let mut master = Rng(seed);
                    let (mut actions, mut validated, mut mapped, mut cases) = (0, 0, 0, 0);
                    let mut i = 0u64;
                    while actions < target.div_ceil(WORKERS) {
                        // Every thread draws every seed; scenario i is thread i mod 2's.
                        let case_seed = master.next();
                        i += 1;
                        if (i - 1) % WORKERS != w {
                            continue;
                        }
                        let (a, (v, m, _, _)) = case(case_seed, 256, (i - 1).is_multiple_of(4));
                        actions += a;
                        validated += v;
                        mapped += m;
                        cases += 1;
                        if cases % 100 == 0 {
                            eprintln!(
                                "thread {w}: {cases} scenarios, {actions} actions, {validated} + {mapped} pages by runs, 0 divergences"
                            );
                        }
                    }
                    (cases, actions, validated, mapped)
                })
            })
            .collect();
        workers.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let sum = |f: fn(&(u64, u64, u64, u64)) -> u64| totals.iter().map(f).sum::<u64>();
    println!(
        "{} scenarios, {} actions, {} pages PVALIDATEd and {} pre-faulted by runs, 0 divergences, {:.0} s",
        sum(|t| t.0),
        sum(|t| t.1),
        sum(|t| t.2),
        sum(|t| t.3),
        start.elapsed().as_secs_f64()
    );
}
