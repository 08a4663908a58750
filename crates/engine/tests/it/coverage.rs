//! NPT coverage as shares of guest memory (`npt_coverage.{4k,2m,1g,unmapped}`), `huge_capable`,
//! and the coverage series every run records (generated workloads included).

use snpsim_engine::RunResult;
use snpsim_engine::Simulation;
use snpsim_engine::engine::CheckMode;
use snpsim_scenario::parse_scenario;
use snpsim_scenario::run::{metric_value, run_scenario, run_steps_and_workload, sim_config};

/// Pages of a 1 GiB guest.
const GUEST_PAGES: f64 = 262_144.0;
/// Pages of a 2M region.
const REGION: f64 = 512.0;

/// A 1 GiB guest that accepts its first 64 MiB at 2M, shares the 4K page at 0x401000 (region 2),
/// then writes the private page at 0x400000 of the same region.
fn scenario(policy: &str, backing: &str) -> String {
    format!(
        r#"name = "coverage"
seed = 1
[machine]
host_memory = "2GiB"
[vm]
memory = "1GiB"
policy = "{policy}"
backing = "{backing}"
[guest]
psc_granularity = "2m"
[[step]]
op = "accept"
gpa = "0x0"
size = "64MiB"
[[step]]
op = "psc"
gpa = "0x401000"
to = "shared"
[[step]]
op = "access"
gpa = "0x400000"
kind = "write"
"#
    )
}

/// Run `text` up to (not including) step `upto` of its steps (all when `None`).
fn run(text: &str, upto: Option<usize>) -> RunResult {
    let mut s = parse_scenario("coverage.toml", text).unwrap_or_else(|e| panic!("{e}"));
    if let Some(n) = upto {
        s.steps.truncate(n);
    }
    let r = run_scenario(&s, CheckMode::Full).unwrap_or_else(|e| panic!("{e}"));
    assert!(r.passed(), "{:?} {:?}", r.failures, r.result.violations);
    assert_eq!(r.result.outcome.name(), "completed", "{}", r.result.detail);
    r.result
}

/// Shares here are multiples of 1/262144 (or small counts), exact in an `f64`, and computed the
/// same way on both sides: compared bit for bit.
#[track_caller]
fn exact(got: f64, want: f64) {
    assert_eq!(got.to_bits(), want.to_bits(), "{got} != {want}");
}

#[track_caller]
fn exact_all(got: &[f64], want: &[f64]) {
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.to_bits(), w.to_bits(), "{got:?} != {want:?}");
    }
}

fn m(r: &RunResult, name: &str) -> f64 {
    metric_value(&r.metrics, name).unwrap_or_else(|| panic!("{name} not reported"))
}

/// `npt_coverage` members `[4k, 2m, 1g, unmapped]` and `huge_capable`.
fn coverage(r: &RunResult) -> ([f64; 4], f64) {
    let c = ["4k", "2m", "1g", "unmapped"].map(|k| m(r, &format!("npt_coverage.{k}")));
    assert!((c.iter().sum::<f64>() - 1.0).abs() < 1e-12, "{c:?} does not sum to 1");
    (c, m(r, "huge_capable"))
}

#[test]
fn accepting_64_mib_at_2m_maps_a_sixteenth_and_leaves_everything_huge_capable() {
    for (policy, backing) in [("npt-demote", "thp"), ("rfc-host-split", "thp"), ("gmem", "gmem-2m")] {
        let r = run(&scenario(policy, backing), Some(1));
        // 64 MiB accepted at 2M: 2M RMP entries (a 2M PSC on a 2M host page, or a 2M folio
        // prepared whole), each PVALIDATE faulting in one 2M leaf: 32 leaves of 512 pages.
        // 2m = 32 × 512 / 262144 = 0.0625; nothing else is mapped: unmapped = 0.9375.
        // huge_capable: the 32 accepted regions hold 2M RMP entries; the other 480 are unassigned
        // on 2M host pages (THP never split) or not yet in guest_memfd (2M folios on first use):
        // every region could be mapped at 2M, so 1.
        let (c, capable) = coverage(&r);
        exact_all(&c, &[0.0, 0.0625, 0.0, 0.9375]);
        exact(capable, 1.0);
    }
}

#[test]
fn npt_demote_splits_in_place_and_loses_huge_capability_for_one_region() {
    let r = run(&scenario("npt-demote", "thp"), None);
    // The guest rescinds 0x401000's validation with a 4K PVALIDATE inside region 2's 2M entry:
    // RMP|SIZEM, KVM PSMASHes and npt-demote zaps nothing (the retried PVALIDATE goes through the
    // 2M leaf). The PSC makes the page shared (4K RMPUPDATE in the now 4K region). The write to
    // 0x400000 through the 2M leaf over a 4K entry takes RMP|SIZEM, and npt-demote splits that
    // leaf in place into 512 4K leaves: one demotion.
    exact(m(&r, "npt_demotions.2m_4k"), 1.0);
    let ([k4, m2, g1, unmapped], capable) = coverage(&r);
    // 4k = 512 / 262144; 2m = 31 × 512 / 262144; unmapped unchanged (0.9375): nothing was left
    // unmapped by the split.
    exact(k4, REGION / GUEST_PAGES);
    exact(m2, 31.0 * REGION / GUEST_PAGES);
    exact(g1, 0.0);
    exact(unmapped, 0.9375);
    // Region 2's RMP entries are 4K with 511 assigned: no leaf ≥ 2M may map it again (short of a
    // re-coalesce). huge_capable = 511 / 512.
    exact(capable, (GUEST_PAGES - REGION) / GUEST_PAGES);
}

#[test]
fn rfc_host_split_zaps_and_leaves_the_region_unmapped() {
    let r = run(&scenario("rfc-host-split", "thp"), None);
    // As under npt-demote up to the write; then the RFC splits the THP of region 2, and the MMU
    // notifier zaps the region's 2M leaf; the write re-faults one 4K leaf at the new host level.
    exact(m(&r, "host_splits"), 1.0);
    let ([k4, m2, g1, unmapped], capable) = coverage(&r);
    // 4k = 1 / 262144; 2m = 31 × 512 / 262144; unmapped = (262144 − 31 × 512 − 1) / 262144: the
    // other 511 pages of region 2 are no longer mapped. (As a share of mapped memory the old
    // metric gave this run 15872 / 15873 = 0.99994 at 2M, npt-demote's 31 / 32 = 0.969.)
    exact(k4, 1.0 / GUEST_PAGES);
    exact(m2, 31.0 * REGION / GUEST_PAGES);
    exact(g1, 0.0);
    exact(unmapped, (GUEST_PAGES - 31.0 * REGION - 1.0) / GUEST_PAGES);
    // Region 2 is now 4K in the host and in the RMP: huge_capable = 511 / 512.
    exact(capable, (GUEST_PAGES - REGION) / GUEST_PAGES);
}

#[test]
fn gmem_mixed_attributes_and_a_split_folio_end_huge_capability() {
    let r = run(&scenario("gmem", "gmem-2m"), Some(2));
    // The 4K PVALIDATE in region 2's 2M entry: RMP|SIZEM, PSMASH, and upstream's zap of 512 GFNs
    // from the faulting GFN 0x401 (0x401..0x601): region 2's leaf, and region 3's, whose first GFN
    // 0x600 is in the range though nothing changed there. The retry maps 0x401 at
    // 4K (the RMP entry is 4K now). The PSC to shared sets the attribute (zapping that 4K leaf)
    // and punches the page out of guest_memfd, splitting region 2's 2M folio into 4K folios.
    let ([k4, m2, g1, unmapped], capable) = coverage(&r);
    // Left: the 30 2M leaves of regions 0, 1 and 4..32. 2m = 30 × 512 / 262144 = 0.05859375;
    // unmapped = 1 − that.
    exact_all(&[k4, m2, g1], &[0.0, 30.0 * REGION / GUEST_PAGES, 0.0]);
    exact(unmapped, 1.0 - 30.0 * REGION / GUEST_PAGES);
    // Region 2 has mixed attributes (KVM never maps it huge) in 4K folios: not huge-capable.
    // Region 3 lost its leaf but keeps its 2M folio and 2M RMP entry: still capable. 511 / 512.
    exact(capable, (GUEST_PAGES - REGION) / GUEST_PAGES);
}

#[test]
fn expectations_name_unmapped_and_huge_capable() {
    let text = format!(
        "{}[expect]\nnpt_coverage = {{ \"2m\" = 0.0625, \"unmapped\" = 0.9375 }}\nhuge_capable = \">=0.9\"\n",
        scenario("npt-demote", "thp")
    );
    let mut s = parse_scenario("coverage.toml", &text).unwrap_or_else(|e| panic!("{e}"));
    s.steps.truncate(1);
    // The same numbers as the acceptance test above: met.
    let r = run_scenario(&s, CheckMode::Full).unwrap();
    assert!(r.passed(), "{:?}", r.failures);
    // A wrong share is reported.
    let wrong = text.replace("huge_capable = \">=0.9\"", "huge_capable = \"<0.5\"");
    let mut s = parse_scenario("coverage.toml", &wrong).unwrap();
    s.steps.truncate(1);
    let r = run_scenario(&s, CheckMode::Full).unwrap();
    assert_eq!(r.failures.len(), 1, "{:?}", r.failures);
    assert!(r.failures[0].contains("huge_capable"), "{:?}", r.failures);
}

/// A generated workload: boot (lazy acceptance, SWIOTLB shared) and 1 ms of touches and
/// conversions. It runs far fewer than 4096 steps, the old sampling stride, which left such
/// series empty.
#[test]
fn workload_runs_have_a_coverage_series_that_ends_with_the_final_state() {
    for (policy, backing) in [("npt-demote", "thp"), ("gmem", "gmem-2m"), ("rfc-host-split", "hugetlbfs-2m")]
    {
        let text = format!(
            "name = \"w\"\nseed = 3\n[machine]\nhost_memory = \"1GiB\"\n[vm]\nmemory = \"256MiB\"\n\
             policy = \"{policy}\"\nbacking = \"{backing}\"\n[guest]\npreset = \"linux\"\n[workload]\n\
             phases = [ {{ kind = \"boot\" }}, {{ kind = \"steady\", duration = \"1ms\", working_set = \"64MiB\", \
             conversions_per_s = 20000 }} ]\n"
        );
        let s = parse_scenario("w.toml", &text).unwrap_or_else(|e| panic!("{e}"));
        let sim = Simulation::new(sim_config(&s, CheckMode::Incremental)).unwrap();
        let (r, _) = run_steps_and_workload(sim, &s, None);
        let label = format!("{policy} on {backing}");
        assert!(!r.coverage_series.is_empty(), "{label}: empty series");
        assert_eq!(r.coverage_series.len(), r.coverage_time_ns.len(), "{label}");
        assert_eq!(r.guest_pages, 65_536, "{label}: 256 MiB");
        // The last point is the end of the run: its pages are the final coverage, at the final time.
        let last = *r.coverage_series.last().unwrap();
        let c = r.metrics.npt_coverage;
        let share = |p: u64| p as f64 / 65_536.0;
        exact_all(&[share(last[0]), share(last[1]), share(last[2])], &[c.k4, c.m2, c.g1]);
        assert_eq!(r.coverage_time_ns.last(), Some(&r.metrics.sim_time_ns), "{label}");
        // The boot accepts memory: the series rises from its first point.
        assert!(r.coverage_series.len() >= 2, "{label}: {:?}", r.coverage_series);
        assert!(r.coverage_time_ns.windows(2).all(|w| w[0] <= w[1]), "{label}: time goes back");
    }
}
