//! The calibration of the cost model against the published end-to-end figures of
//! `docs/calibration.md` (§1–§4 below are its sections): every scenario of `examples/calibration/`
//! meets its expectations, and the figures that compare runs hold within their stated tolerances.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use snpsim_engine::engine::CheckMode;
use snpsim_scenario::run::{ScenarioRun, run_scenario};
use snpsim_scenario::{load_scenario, load_scenario_with_overrides};

fn dir() -> PathBuf {
    crate::common::repo("examples/calibration")
}

/// A file's run without overrides, shared by the tests that read it: each run is deterministic,
/// so a file several tests read (05 by three; 01-04, 07-09 and 11 by two) runs once.
fn shared(file: &str) -> Arc<ScenarioRun> {
    type Runs = BTreeMap<String, Arc<OnceLock<Arc<ScenarioRun>>>>;
    static RUNS: Mutex<Runs> = Mutex::new(BTreeMap::new());
    let cell = Arc::clone(RUNS.lock().unwrap().entry(file.to_string()).or_default());
    Arc::clone(cell.get_or_init(|| Arc::new(run(file, &[]))))
}

fn run(file: &str, overrides: &[(&str, &str)]) -> ScenarioRun {
    let path = dir().join(file);
    let s = load_scenario_with_overrides(&path, overrides).unwrap_or_else(|e| panic!("{e}"));
    let r = run_scenario(&s, CheckMode::Incremental).unwrap();
    if overrides.is_empty() {
        assert!(r.passed(), "{file}: {}", r.failures.join("; "));
    } else {
        // An override changes what the file's expectations pin; the run must still be clean.
        assert_eq!(r.result.outcome.name(), "completed", "{file}: {}", r.result.detail);
        assert!(r.result.violations.is_empty(), "{file}: {:?}", r.result.violations);
    }
    r
}

fn time_to_ready(r: &ScenarioRun) -> f64 {
    r.workload.as_ref().and_then(|w| w.time_to_ready_ns).expect("a boot phase") as f64
}

/// The steady phase's simulated time per touch (each is one guest access here: no conversions,
/// no host writes, and every page already accepted).
fn ns_per_access(r: &ScenarioRun) -> f64 {
    let w = r.workload.as_ref().expect("a workload");
    let steady = w.phases.iter().find(|p| p.kind == "steady").expect("a steady phase");
    assert_eq!(steady.steps, steady.actions.touches, "one step per touch");
    (steady.end_ns - steady.start_ns) as f64 / steady.actions.touches as f64
}

#[test]
fn every_calibration_scenario_meets_its_expectations() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    // 01 to 11, one per figure of docs/calibration.md (some figures take two scenarios).
    assert!(files.len() >= 11);
    for f in files {
        // 06 (64 GiB, eager) is run by `lazy_vs_eager_time_to_ready` below, 10 (64 GiB at 4K) by
        // `held_out_figures_within_their_validation_bounds`.
        if f.ends_with("06-boot-64gib-eager.toml") || f.ends_with("10-held-out-ohcl-64gib-accept-4k.toml") {
            continue;
        }
        let s = load_scenario(&f).unwrap();
        assert!(!s.expect.is_empty(), "{} has no [expect]", f.display());
        // `run` asserts that the run meets the expectations.
        shared(&f.file_name().unwrap().to_string_lossy());
    }
}

/// §1, exact: 1024 extra #NPF exits per 4 MiB accepted on gmem-4k without pre-faulting, both for
/// a scripted acceptance and for a lazily accepting boot.
#[test]
fn gmem_4k_takes_1024_npf_exits_per_4_mib_without_prefault() {
    let without = shared("01-gmem-4k-1024-npf-per-4mib.toml");
    let with = shared("02-gmem-4k-prefault-no-npf.toml");
    let chunks = (64 << 20) / (4 << 20);
    assert_eq!(without.result.metrics.exits["npf"] - with.result.metrics.exits["npf"], 1024 * chunks);
    let lazy = shared("05-boot-4gib-lazy.toml");
    let lazy_no_prefault = run("05-boot-4gib-lazy.toml", &[("vm.prefault_on_psc", "false")]);
    // Every page the boot accepted (in 2M units) took one exit: 1024 per 4 MiB.
    let accepted_pages: u64 = lazy.result.metrics.psc_pages - swiotlb_pages(4 << 30);
    assert_eq!(
        lazy_no_prefault.result.metrics.exits["npf"] - lazy.result.metrics.exits["npf"],
        accepted_pages
    );
}

fn swiotlb_pages(memory: u64) -> u64 {
    snpsim_guest::swiotlb_bytes(memory) / 4096
}

/// §2: eager acceptance at 1.5 GiB/s per vCPU, ±2 %.
#[test]
fn eager_acceptance_runs_at_1_5_gib_per_s() {
    let r = shared("03-eager-accept-1.5gib-per-s.toml");
    let gib_per_s = 4.0 / (r.result.metrics.sim_time_ns as f64 / 1e9);
    assert!((gib_per_s - 1.5).abs() <= 0.03, "{gib_per_s} GiB/s");
}

/// §3: lazy vs eager time-to-ready about 2.5× at 4 GiB and 4× at 64 GiB, ±5 %.
#[test]
fn lazy_vs_eager_time_to_ready() {
    let r4 =
        time_to_ready(&shared("04-boot-4gib-eager.toml")) / time_to_ready(&shared("05-boot-4gib-lazy.toml"));
    let r64 = time_to_ready(&shared("06-boot-64gib-eager.toml"))
        / time_to_ready(&shared("07-boot-64gib-lazy.toml"));
    assert!((r4 / 2.5 - 1.0).abs() <= 0.05, "4 GiB: {r4}");
    assert!((r64 / 4.0 - 1.0).abs() <= 0.05, "64 GiB: {r64}");
}

/// §4: a TLB-missing access costs about 40 ns more through 4K leaves (4K guest_memfd) than through
/// 2M leaves (2M private backing), ±1 ns; the 4K figure is MLC's 169 ns, ±1 ns.
#[test]
fn four_k_private_backing_costs_40_ns_per_access() {
    let k4 = ns_per_access(&shared("08-access-gmem-4k.toml"));
    let m2 = ns_per_access(&shared("09-access-gmem-2m.toml"));
    assert!((k4 - m2 - 40.0).abs() <= 1.0, "4K {k4} ns, 2M {m2} ns");
    assert!((k4 - 169.0).abs() <= 1.0, "4K {k4} ns");
}

/// §5 and §6, held out: figures no parameter was fitted to, from microsoft/OHCL-Linux-Kernel pull
/// request #85 ("The 64GiB+64VP VMs accept the memory in under a second on average with this
/// change, and without that that's ~57sec on average"). The validation error of each is computed
/// here from the model's run and printed (`-- --nocapture`); the test fails if one leaves its
/// bound. §1 (a count) is held out too and exact: `gmem_4k_takes_1024_npf_exits_per_4_mib_without_prefault`.
#[test]
fn held_out_figures_within_their_validation_bounds() {
    // §5: 64 GiB accepted at 4K on one vCPU, about 57 s.
    const PUBLISHED_4K_S: f64 = 57.0;
    // The bound: the two published single-vCPU 4K acceptance rates differ by 25 % (§2's 1.5 GiB/s,
    // fitted, and this figure's 64 GiB / 57 s = 1.12 GiB/s); rounded up to 30 %.
    const BOUND_4K: f64 = 0.30;
    // §6: 64 GiB accepted at 2M by 64 vCPUs in parallel, under 1 s.
    const PUBLISHED_2M_PARALLEL_S: f64 = 1.0;

    let k4 = shared("10-held-out-ohcl-64gib-accept-4k.toml");
    let model_4k_s = k4.result.metrics.sim_time_ns as f64 / 1e9;
    let error_4k = model_4k_s / PUBLISHED_4K_S - 1.0;

    let file = "11-held-out-ohcl-64gib-accept-2m-64-vcpus.toml";
    let vcpus = load_scenario(&dir().join(file)).unwrap().vm.vcpus;
    assert_eq!(vcpus, 64, "the figure is for 64 vCPUs");
    let vcpus = f64::from(vcpus);
    let m2 = shared(file);
    // sim_time_ns is serial (a sum of event costs); with the 64 vCPUs each accepting its own
    // 1 GiB and perfect scaling, the parallel time is that sum over the vCPUs.
    let model_2m_s = m2.result.metrics.sim_time_ns as f64 / 1e9 / vcpus;

    eprintln!("held-out figure                                  published    model        validation error");
    eprintln!(
        "§5 64 GiB at 4K, 1 vCPU (OHCL-Linux-Kernel #85)   about {PUBLISHED_4K_S:.0} s  {model_4k_s:>8.3} s   {:+.1} % (bound ±{:.0} %)",
        error_4k * 100.0,
        BOUND_4K * 100.0
    );
    eprintln!(
        "§6 64 GiB at 2M, 64 vCPUs (OHCL-Linux-Kernel #85) under {PUBLISHED_2M_PARALLEL_S:.0} s   {model_2m_s:>8.3} s   \
         {:.1} % of the bound (bound: under it)",
        model_2m_s / PUBLISHED_2M_PARALLEL_S * 100.0
    );
    assert!(error_4k.abs() <= BOUND_4K, "§5: {model_4k_s} s against about {PUBLISHED_4K_S} s");
    assert!(
        model_2m_s < PUBLISHED_2M_PARALLEL_S,
        "§6: {model_2m_s} s against under {PUBLISHED_2M_PARALLEL_S} s"
    );
    // Together the two figures say 2M parallel acceptance is more than 57x faster than 4K serial.
    assert!(
        model_4k_s / model_2m_s > PUBLISHED_4K_S / PUBLISHED_2M_PARALLEL_S,
        "{model_4k_s} / {model_2m_s}"
    );
}
