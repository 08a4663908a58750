//! Runs in parallel (`--jobs`, and the default run's one thread per CPU): every output is the same
//! whatever the number of jobs, in the order of the suite, the files or the configurations.

use crate::common::*;

use std::path::Path;

use serde_json::Value;

#[test]
fn traces_are_byte_identical_across_runs_and_job_counts() {
    let d = temp_dir("determinism");
    let file = example("05-npt-demote-thp.toml");
    let (a, b) = (d.join("a.jsonl"), d.join("b.jsonl"));
    assert_eq!(snpsim(&["run", EXAMPLES, "--trace", s(&a)]).status.code(), Some(0));
    assert_eq!(snpsim(&["run", EXAMPLES, "--trace", s(&b)]).status.code(), Some(0));
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    compare_at_job_counts(&d, &file, &["--guests", "4k,2m"], &["1", "3", "8"]);
}

/// `snpsim ARGS --jobs JOBS --out DIR/NAMEJOBS --with-trace`, which must exit 0: its stdout and the
/// results.json, trace.jsonl and report.html it wrote.
fn outputs_at(d: &Path, name: &str, args: &[&str], jobs: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>, Vec<u8>) {
    let o = d.join(format!("{name}{jobs}"));
    let mut args = args.to_vec();
    args.extend_from_slice(&["--jobs", jobs, "--out", s(&o), "--with-trace"]);
    let r = snpsim(&args);
    assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
    let read = |f: &str| std::fs::read(o.join(f)).unwrap();
    (r.stdout, read("results.json"), read("trace.jsonl"), read("report.html"))
}

/// `snpsim compare FILE --policies all --backings all EXTRA` at each job count into `DIR/cmpN`:
/// the stdout, trace, results and report must not depend on the job count, and the trace must
/// replay. Returns the first job count's trace.
fn compare_at_job_counts(d: &Path, file: &str, extra: &[&str], jobs: &[&str]) -> String {
    let mut args = vec!["compare", file, "--policies", "all", "--backings", "all"];
    args.extend_from_slice(extra);
    let outs: Vec<_> = jobs.iter().map(|j| outputs_at(d, "cmp", &args, j)).collect();
    assert!(outs.windows(2).all(|w| w[0] == w[1]), "compare output of {file} depends on --jobs");
    let rp = snpsim(&["replay", s(&d.join(format!("cmp{}/trace.jsonl", jobs[0])))]);
    assert_eq!(rp.status.code(), Some(0), "{}", text(&rp.stderr));
    text(&outs[0].2)
}

#[test]
fn scenario_files_run_in_parallel_give_what_one_at_a_time_gives() {
    // The claim scenarios: 16 files, each run in milliseconds; one job, then three.
    let d = temp_dir("run-jobs");
    let outs: Vec<_> = ["1", "3"].iter().map(|j| outputs_at(&d, "out", &["run", EXAMPLES], j)).collect();
    assert!(outs[0] == outs[1], "run's output depends on --jobs");
    // In the files' order (results.json is what --json prints: commands.rs): the sources are
    // sorted as the directory's files are.
    let runs: Vec<Value> = serde_json::from_slice::<Value>(&outs[0].1).unwrap().as_array().unwrap().clone();
    let sources: Vec<&str> = runs.iter().map(|r| r["source"].as_str().unwrap()).collect();
    let mut sorted = sources.clone();
    sorted.sort_unstable();
    assert_eq!((sources.len(), &sources), (16, &sorted));
}

#[test]
fn the_cli_runs_the_embedded_suite_exactly_as_the_library_does() {
    // The CLI one run at a time, the library three at a time: the results depend on neither.
    let r = snpsim(&["run", "--json", "--jobs", "1"]);
    assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
    let cli: Vec<Value> = serde_json::from_slice::<Value>(&r.stdout).unwrap().as_array().unwrap().clone();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().unwrap();
    let d =
        pool.install(|| snpsim_debate::debate::run_debate(snpsim_engine::CheckMode::Incremental)).unwrap();
    let lib: Vec<&snpsim_scenario::run::ScenarioRun> =
        d.matrix.iter().chain(&d.claims).chain(&d.workloads).collect();
    assert_eq!(cli.len(), lib.len());
    for (c, l) in cli.iter().zip(lib) {
        assert_eq!(c["policy"], l.policy);
        assert_eq!(c["backing"], l.backing);
        assert_eq!(c["outcome"], l.result.outcome.name());
        // Both sides through the same text-to-float parse.
        let lib: Value = serde_json::from_str(&serde_json::to_string(&l.result.metrics).unwrap()).unwrap();
        assert_eq!(c["metrics"], lib, "{}", c["scenario"]);
    }
}

#[test]
fn interleaved_runs_do_not_depend_on_jobs_and_replay() {
    // Racing vCPUs under every policy and backing: the seeded scheduler, not the thread pool,
    // decides the interleaving.
    let d = temp_dir("interleaved-jobs");
    let file = format!("{}/../../examples/races/02-psc-vs-psc.toml", env!("CARGO_MANIFEST_DIR"));
    let trace = compare_at_job_counts(&d, &file, &[], &["1", "4"]);
    assert!(trace.contains(r#""op":"tick""#), "the trace records the ticks");
    let rp = snpsim(&["replay", s(&d.join("cmp4/trace.jsonl"))]);
    assert_eq!(rp.status.code(), Some(0), "{}", text(&rp.stderr));
}
