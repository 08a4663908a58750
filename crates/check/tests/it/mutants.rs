//! Every planted bug of the mutant catalogue is caught, and the real model passes the same checks.

use snpsim_check::mutants::{catch, model_check, psc_conformance};
use snpsim_hw::Mutant;

const DEPTH: u32 = 4;

#[test]
fn the_real_model_passes_every_check() {
    assert_eq!(psc_conformance(None), Vec::<String>::new());
    assert_eq!(model_check(None, DEPTH), None);
}

#[test]
fn every_mutant_is_caught() {
    let mut missed = Vec::new();
    for m in Mutant::ALL {
        match catch(m, DEPTH) {
            Some(c) => eprintln!("{}: caught by \"{}\" ({})", m.name(), c.by, c.how),
            None => missed.push(m.name()),
        }
    }
    assert!(missed.is_empty(), "mutants not caught: {missed:?}");
}

/// The shipped scenarios under `examples/` (the sweeps' base files are not scenarios on their own
/// and the calibration runs are minutes long in a debug build: both are left out).
fn shipped_scenarios() -> Vec<(String, snpsim_scenario::Scenario)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut out = Vec::new();
    for dir in ["attacks", "checks", "debate", "races"] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        for f in files {
            let s = snpsim_scenario::load_scenario(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            out.push((format!("{dir}/{}", f.file_name().unwrap().to_string_lossy()), s));
        }
    }
    out
}

/// The scenarios docs/mutants.md's *Run* paragraph of each mutant names (`dir/stem`, by mutant name).
fn documented_runs() -> std::collections::BTreeMap<String, Vec<String>> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/mutants.md");
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = std::collections::BTreeMap::new();
    for section in text.split("\n## ").skip(1) {
        let (name, body) = section.split_once('\n').unwrap();
        let Some(run) = body.split("*Run*:").nth(1) else { continue };
        let para = run.split("\n\n").next().unwrap();
        let names: Vec<String> = para
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|t| ["attacks/", "checks/", "debate/", "races/"].iter().any(|d| t.starts_with(d)))
            .map(str::to_owned)
            .collect();
        out.insert(name.trim().to_owned(), names);
    }
    out
}

/// What `snpsim run` reports for a scenario with `mutant` planted: its failed expectations and
/// invariant violations (non-empty means exit 1).
fn run_failures(s: &snpsim_scenario::Scenario, mutant: Mutant) -> Vec<String> {
    snpsim_scenario::run::run_scenario_with_mutant(s, snpsim_engine::CheckMode::Incremental, mutant)
        .unwrap()
        .failures
}

#[test]
fn every_mutant_is_caught_by_a_plain_run_of_a_shipped_scenario() {
    let scenarios = shipped_scenarios();
    // Without a mutant every shipped scenario passes, so a failure below is the mutant's doing.
    for (name, s) in &scenarios {
        let run = snpsim_scenario::run::run_scenario(s, snpsim_engine::CheckMode::Incremental).unwrap();
        assert!(run.passed(), "{name}: {:?}", run.failures);
    }
    let documented = documented_runs();
    let mut missed = Vec::new();
    for m in Mutant::ALL {
        let caught: Vec<&str> = scenarios
            .iter()
            .filter(|(_, s)| !run_failures(s, m).is_empty())
            .map(|(n, _)| n.as_str())
            .collect();
        eprintln!("{}: caught by {caught:?}", m.name());
        if caught.is_empty() {
            missed.push(m);
        }
        // docs/mutants.md names scenarios that catch each mutant; each must.
        let named =
            documented.get(m.name()).unwrap_or_else(|| panic!("docs/mutants.md: no *Run* for {}", m.name()));
        assert!(!named.is_empty(), "docs/mutants.md names no scenario for {}", m.name());
        for n in named {
            // A name is the file's stem or its number alone (`checks/02`).
            let hit = caught.iter().any(|c| *c == format!("{n}.toml") || c.starts_with(&format!("{n}-")));
            assert!(hit, "{}: docs/mutants.md says {n} catches it; caught by {caught:?}", m.name());
        }
    }
    assert!(missed.is_empty(), "mutants no shipped scenario catches: {missed:?}");
}
