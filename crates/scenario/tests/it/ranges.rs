//! Range operations against the one-page oracle on whole scenarios (docs/semantics.md,
//! "Ranges"): every example scenario and a 16 MiB cut of each acceptance benchmark, run with runs
//! of PVALIDATEs executed as range operations and page by page, traced, give byte-identical
//! traces (every event, the final metrics and the state digest) and the same results. The random
//! differential test is `crates/check/tests/it/ranges.rs`.

use std::path::Path;

use snpsim_engine::engine::CheckMode;
use snpsim_scenario::run::{run_scenario_per_page, run_scenario_traced};
use snpsim_scenario::{Scenario, TraceMetaExt, load_scenario, parse_scenario};
use snpsim_trace::TraceMeta;

/// Both runs of `s`, traced: the range run's and the oracle's trace and JSON result.
fn both(s: &Scenario) -> [(Vec<u8>, String); 2] {
    let meta = TraceMeta::for_scenario(s, "ranges", 0);
    let ranges = run_scenario_traced(s, CheckMode::Incremental, Some(&meta)).unwrap();
    let pages = run_scenario_per_page(s, CheckMode::Incremental, Some(&meta)).unwrap();
    [ranges, pages].map(|mut r| {
        let trace = r.result.trace.take().expect("a traced run has a trace");
        (trace, format!("{:?} {:?} {:?}", r.result.outcome, r.result.metrics, r.result.violations))
    })
}

fn scenario_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() && !p.ends_with("sweeps") && !p.ends_with("calibration") {
            scenario_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "toml") {
            out.push(p);
        }
    }
}

#[test]
fn every_example_traces_the_same_with_ranges_and_page_by_page() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut files = Vec::new();
    scenario_files(&root, &mut files);
    assert!(files.len() > 20, "only {} scenarios under {}", files.len(), root.display());
    for f in &files {
        let s = load_scenario(f).unwrap_or_else(|e| panic!("{e}"));
        let [(a, ra), (b, rb)] = both(&s);
        assert_eq!(ra, rb, "{}", f.display());
        if a != b {
            let line = a.split(|&c| c == b'\n').zip(b.split(|&c| c == b'\n')).position(|(x, y)| x != y);
            panic!("{}: the traces differ first at line {line:?}", f.display());
        }
    }
}

#[test]
fn acceptance_benchmarks_cut_to_16_mib_trace_the_same() {
    for text in [
        include_str!("../../../../bench/suite/accept-1t-4k.toml"),
        include_str!("../../../../bench/suite/accept-1t-2m.toml"),
        include_str!("../../../../bench/suite/fragment-1t.toml"),
    ] {
        let small = text
            .lines()
            .map(|l| match l.split_once(" = ") {
                Some(("host_memory", _)) => "host_memory = \"64MiB\"".to_owned(),
                Some(("memory", _)) => "memory = \"16MiB\"".to_owned(),
                Some(("size", _)) => "size = \"16MiB\"".to_owned(),
                Some(("psmash", _)) => "psmash = 8".to_owned(),
                _ => l.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        let s = parse_scenario("bench.toml", &small).unwrap();
        let [(a, ra), (b, rb)] = both(&s);
        assert_eq!(ra, rb, "{}", s.name);
        assert!(a == b, "{}: the traces differ", s.name);
        // The run must have had something to range over: 4K PVALIDATEs (16 MiB at 4K is 4,096).
        let pvalidates = String::from_utf8_lossy(&a).matches("\"ev\":\"pvalidate\"").count();
        assert!(pvalidates >= 8, "{}: {pvalidates} PVALIDATEs", s.name);
    }
}
