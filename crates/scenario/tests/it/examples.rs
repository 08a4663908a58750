//! Every scenario under `examples/` runs and meets its `[expect]`, with full invariant checking.

use std::path::{Path, PathBuf};

use snpsim_engine::engine::CheckMode;
use snpsim_scenario::load_scenario;
use snpsim_scenario::run::run_scenario;

fn scenario_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() && p.ends_with("calibration") {
            // crates/engine/tests/it/calibration.rs runs these (64 GiB boots) with end-of-run checks.
        } else if p.is_dir() && p.ends_with("sweeps") {
            // Sweep files and their base scenarios: crates/cli/tests/it/sweep.rs runs them.
        } else if p.is_dir() {
            scenario_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "toml") {
            out.push(p);
        }
    }
}

#[test]
fn every_example_meets_its_expectations() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut files = Vec::new();
    scenario_files(&root, &mut files);
    assert!(!files.is_empty(), "no scenarios under {}", root.display());
    let mut failed = Vec::new();
    for f in &files {
        let s = load_scenario(f).unwrap_or_else(|e| panic!("{e}"));
        assert!(!s.expect.is_empty(), "{} has no [expect]", f.display());
        let run = run_scenario(&s, CheckMode::Full).unwrap();
        if !run.passed() {
            failed.push(format!("{}:\n  {}", f.display(), run.failures.join("\n  ")));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
