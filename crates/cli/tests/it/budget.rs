//! The memory budget holds (issue 19): for every shipped example, benchmark and workload preset,
//! the peak resident memory `snpsim run` measures is between 1/4 and 4 times what
//! `snpsim_scenario::budget::estimate` said before the run, untraced and, where the trace fits a
//! CI machine, traced (a run that stops early, its VM refused or its guest killed, is held to the
//! upper bound only: it does less than the scenario asks). Each run is its own process, measured by the kernel (`ru_maxrss` of the
//! one child a fresh `python3` waited for), so nothing of the test's own memory counts.
//!
//! The small scenarios run by default; the 64 GiB examples, the benchmarks and the suite
//! (minutes of CPU) are `#[ignore]`d and run by `.ci/run` explicitly.

use crate::common::{s, temp_dir, two_at_a_time};

use std::path::{Path, PathBuf};
use std::process::Command;

use snpsim_debate::debate::{workload_matrix, workload_scenario};
use snpsim_scenario::budget::estimate;
use snpsim_scenario::{Scenario, load_scenario};

/// Traced runs are measured only when their estimate is at most this, so the test fits a CI
/// machine's memory (two runs at once: twice this at most).
const TRACED_AT_MOST: u64 = 1 << 30;

/// A scenario is "large" (ignored by default) from this guest size.
const LARGE_GUEST: u64 = 32 << 30;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The scenario files under `dir` (sweep files, which are not scenarios, left out), sorted.
fn scenarios_under(dir: &Path) -> Vec<(PathBuf, Scenario)> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "toml") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, &mut files);
    files.sort();
    files.into_iter().filter_map(|f| load_scenario(&f).ok().map(|sc| (f, sc))).collect()
}

/// The Python interpreter `python3` names, resolved once: `python3` may be a shim (pyenv's is a
/// shell script that runs two more processes), and the test starts Python once per run.
fn python() -> &'static Path {
    static PYTHON: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable or '')"])
            .output()
            .expect("python3 runs (it measures the child's peak memory)");
        assert!(
            out.status.success(),
            "python3 -c 'import sys' failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let exe = String::from_utf8(out.stdout).unwrap();
        // An interpreter that cannot name itself is run by its name.
        PathBuf::from(if exe.trim().is_empty() { "python3" } else { exe.trim() })
    })
}

/// Peak resident bytes of `snpsim ARGS` run to its end, and its exit code; its standard output
/// goes to `stdout`.
fn peak_rss(args: &[&str], stdout: &Path) -> (Option<i32>, u64) {
    const MEASURE: &str = "import resource, subprocess, sys\n\
        r = subprocess.run(sys.argv[2:], stdout=open(sys.argv[1], 'wb'), stderr=subprocess.DEVNULL)\n\
        print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n";
    let out = Command::new(python())
        .args(["-I", "-S", "-c"])
        .arg(MEASURE)
        .arg(stdout)
        .arg(env!("CARGO_BIN_EXE_snpsim"))
        .args(args)
        .output()
        .expect("python3 runs (it measures the child's peak memory)");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut it = text.split_whitespace();
    let code = it.next().and_then(|c| c.parse().ok());
    // ru_maxrss is in KiB on Linux.
    let kib: u64 = it.next().and_then(|k| k.parse().ok()).unwrap_or_else(|| panic!("no measurement: {text}"));
    (code, kib * 1024)
}

/// Run every case (a name, its scenario file and scenario), untraced and, when the estimate is
/// small enough, traced; return the lines of the cases outside the bounds, and the report. The
/// runs go two at a time (each is its own single-threaded process, measured alone by its own
/// `python3`), in the order of `cases` in the report.
fn check(test: &str, cases: &[(String, PathBuf, Scenario)]) -> (Vec<String>, String) {
    let scratch = temp_dir(test);
    let runs: Vec<(usize, bool)> = (0..cases.len())
        .flat_map(|i| [(i, false), (i, true)])
        .filter(|&(i, traced)| !traced || estimate(&cases[i].2, true).bytes <= TRACED_AT_MOST)
        .collect();
    let lines: Vec<(String, bool)> =
        two_at_a_time(&runs, |k, &(i, traced)| measure(&cases[i], traced, &scratch.join(format!("r{k}"))));
    let _ = std::fs::remove_dir_all(&scratch);
    let report = lines.iter().map(|(l, _)| l.as_str()).collect::<Vec<_>>().join("\n");
    (lines.into_iter().filter(|(_, ok)| !ok).map(|(l, _)| l).collect(), report)
}

/// Run one case, traced or not, with its files in `dir`: the report line, and whether the peak
/// is within the bounds.
fn measure((name, file, sc): &(String, PathBuf, Scenario), traced: bool, dir: &Path) -> (String, bool) {
    std::fs::create_dir_all(dir).unwrap();
    let (trace, json) = (dir.join("t.jsonl"), dir.join("results.json"));
    let e = estimate(sc, traced).bytes;
    let mut args = vec!["run", s(file), "-q", "--json", "--no-expect", "--memory-budget", "unlimited"];
    if traced {
        args.extend(["--trace", s(&trace)]);
    }
    let (code, peak) = peak_rss(&args, &json);
    let _ = std::fs::remove_file(&trace);
    let ratio = peak as f64 / e as f64;
    // The estimate counts the work the scenario asks for; a run that stops early (the VM
    // refused, the guest killed) does less, so only the upper bound applies to it.
    let completed = std::fs::read(&json)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v[0].get("outcome").and_then(|o| o.as_str()).map(|o| o == "completed"))
        .unwrap_or(true);
    let low = if completed { 0.25 } else { 0.0 };
    let line = format!(
        "{name}{}{}: estimate {} MiB, peak {:.1} MiB ({ratio:.2}x), exit {code:?}",
        if traced { " (traced)" } else { "" },
        if completed { "" } else { " (stopped early)" },
        e >> 20,
        peak as f64 / f64::from(1 << 20)
    );
    // Exit 1 is a failed expectation or invariant: --no-expect drops the former; a run that
    // breaks an invariant is still measured whole.
    let ok = (low..=4.0).contains(&ratio) && matches!(code, Some(0 | 1));
    (line, ok)
}

fn shipped(large: bool) -> Vec<(String, PathBuf, Scenario)> {
    let root = repo();
    let mut cases = Vec::new();
    for dir in ["examples", "bench"] {
        for (f, sc) in scenarios_under(&root.join(dir)) {
            let is_large = dir == "bench" || sc.vm.memory >= LARGE_GUEST;
            if is_large == large {
                let name = f.strip_prefix(&root).unwrap_or(&f).display().to_string();
                cases.push((name, f, sc));
            }
        }
    }
    cases
}

/// Every example under 32 GiB of guest memory and every workload preset of the default run.
#[test]
fn small_examples_and_workload_presets_use_what_the_budget_estimates() {
    let mut cases = shipped(false);
    let dir = temp_dir("budget-presets");
    for (i, (p, b, g)) in workload_matrix().into_iter().enumerate() {
        let f = dir.join(format!("workload-{i}.toml"));
        std::fs::write(&f, workload_scenario(p, b, g)).unwrap();
        let sc = load_scenario(&f).unwrap();
        cases.push((format!("workload {p}/{b}/{g}"), f, sc));
    }
    // 38 small examples and 16 workload presets when this was written: the bound catches a walk
    // that lost a directory.
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    let (bad, report) = check("budget-small", &cases);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(bad.is_empty(), "outside 1/4..4x of the estimate:\n{}\nall:\n{report}", bad.join("\n"));
}

/// The 64 GiB examples, the benchmarks (`bench/*.toml`) and the suite's scenarios
/// (`bench/suite/`). Minutes of CPU: run by `.ci/run` with `--ignored`.
#[test]
#[ignore = "minutes of CPU; .ci/run runs it explicitly"]
fn large_examples_and_benchmarks_use_what_the_budget_estimates() {
    let cases = shipped(true);
    // 3 large examples, 6 benchmarks and 5 suite scenarios when this was written.
    assert!(cases.len() >= 10, "only {} cases", cases.len());
    let (bad, report) = check("budget-large", &cases);
    println!("{report}");
    assert!(bad.is_empty(), "outside 1/4..4x of the estimate:\n{}\nall:\n{report}", bad.join("\n"));
}
