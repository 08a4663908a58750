//! The `snpsim` command line: exit codes, output formats, input errors and
//! overrides, run as a user runs it.

use crate::common::*;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;

use serde_json::Value;

/// The metric keys every run reports (JSON `metrics` keys; their names are the contract).
const METRICS: [&str; 26] = [
    "rmp_npf",
    "rmp_npf_sizem",
    "npf",
    "npt_demotions",
    "npt_demotions_needless",
    "host_splits",
    "host_splits_needless",
    "direct_map_splits",
    "psmash",
    "rmpupdate",
    "pvalidate",
    "rmpadjust",
    "psc_requests",
    "psc_pages",
    "psc_failed",
    "implicit_conversions",
    "exits",
    "races",
    "sigbus",
    "efault",
    "data_loss_pages",
    "false_negatives",
    "invariant_violations",
    "npt_coverage",
    "huge_capable",
    "sim_time_ns",
];

/// A valid scenario: a 4K private page on hugetlbfs-2m under npt-demote, with expectations.
const BASE: &str = r#"name = "cli test"
[machine]
host_memory = "64MiB"
[vm]
memory = "16MiB"
policy = "npt-demote"
backing = "hugetlbfs-2m"
[guest]
psc_granularity = "4k"
[[step]]
op = "psc"
gpa = "0x200000"
to = "private"
[[step]]
op = "access"
gpa = "0x200000"
kind = "write"
[expect]
outcome = "completed"
host_splits = 0
rmp_npf_sizem = 1
"#;

fn write(dir: &Path, name: &str, contents: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap();
    p.to_str().unwrap().to_string()
}

/// `BASE` with one line replaced (the line must exist).
fn base_with(old: &str, new: &str) -> String {
    assert!(BASE.contains(old), "{old}");
    BASE.replacen(old, new, 1)
}

fn json_runs(out: &Output) -> Vec<Value> {
    let v: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out.stdout)));
    v.as_array().unwrap().clone()
}

/// `snpsim` with no arguments on a 120-column terminal. Two tests read it; it runs once (the
/// default run is seconds in the test profile, and deterministic).
fn default_run_at_120() -> &'static Output {
    static RUN: OnceLock<Output> = OnceLock::new();
    RUN.get_or_init(|| Command::new(env!("CARGO_BIN_EXE_snpsim")).env("COLUMNS", "120").output().unwrap())
}

#[test]
fn no_arguments_runs_the_debate_and_prints_every_verdict() {
    let out = default_run_at_120();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    // The first screen on a 120-column terminal: the who-wins grids and a verdict per line
    // within its first 40 lines, then the three-line summary (44 lines in all since
    // gmem-inplace added a row to each grid and four verdicts, and the header lost its blank
    // line), at most 120 columns wide.
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines.len() <= 44, "{} lines:\n{stdout}", lines.len());
    let last_verdict = lines.iter().rposition(|l| l.starts_with("  [")).unwrap();
    assert!(last_verdict < 40, "the last verdict is line {}:\n{stdout}", last_verdict + 1);
    assert!(lines.iter().all(|l| l.chars().count() <= 120), "{stdout}");
    for grid in ["4K guest (page-state changes of 4K pages):", "2M guest (page-state changes in 2M chunks):"]
    {
        assert!(lines.contains(&grid), "{grid}: {stdout}");
    }
    // The seed's reading of the RFC on hugetlbfs, as the grid says it.
    let rfc = lines.iter().find(|l| l.starts_with("  rfc-host-split ")).unwrap();
    assert!(rfc.contains("VM error: can't split"), "{rfc}");
    let verdicts: Vec<&str> = stdout.lines().filter(|l| l.starts_with("  [")).collect();
    // One per claim `Debate::verdicts` judges.
    assert_eq!(verdicts.len(), 14, "{stdout}");
    assert!(verdicts.iter().all(|l| l.starts_with("  [supported] ")), "{verdicts:#?}");
    assert!(stdout.contains("14 of 14 verdicts supported; 0 accesses wrongly allowed"), "{stdout}");
    assert_eq!(text(&out.stderr), "");
}

#[test]
fn details_print_every_table_and_each_verdict_with_its_falsifier() {
    let out = snpsim(&["run", "--details"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("\nVerdicts:\n"), "{stdout}");
    assert!(stdout.contains("\nClaim scenarios (examples/debate, examples/upstream-2026):\n"), "{stdout}");
    // Each verdict names the settings it was judged under and the result that would have
    // contradicted it; five hold partly by construction (the refusal policies' own definitions,
    // SIGBUS at the in-place file, the split of a folio holding a shared page and its merge once
    // the last one returns, the series' own rules).
    for prefix in ["        under: ", "        would fail if: "] {
        assert_eq!(stdout.lines().filter(|l| l.starts_with(prefix)).count(), 14, "{prefix}: {stdout}");
    }
    assert_eq!(stdout.lines().filter(|l| l.starts_with("        by construction: ")).count(), 5, "{stdout}");
}

#[test]
fn json_is_one_array_with_one_object_per_scenario() {
    let out = snpsim(&["run", EXAMPLES, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let runs = json_runs(&out);
    let files = std::fs::read_dir(EXAMPLES)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "toml"));
    assert_eq!(runs.len(), files.count());
    for r in &runs {
        for key in ["scenario", "policy", "backing", "outcome"] {
            assert!(r[key].is_string(), "{key} in {r}");
        }
        let m = r["metrics"].as_object().unwrap();
        for key in METRICS {
            assert!(m.contains_key(key), "metric {key} missing in {}", r["scenario"]);
        }
        for reason in ["npf", "vmgexit_psc_msr", "vmgexit_psc", "hypercall", "memory_fault"] {
            assert!(m["exits"][reason].is_u64(), "exits.{reason} in {}", r["scenario"]);
        }
        let shares: Vec<f64> = ["4k", "2m", "1g", "unmapped"]
            .iter()
            .map(|k| {
                m["npt_coverage"][k]
                    .as_f64()
                    .unwrap_or_else(|| panic!("npt_coverage.{k} in {}", r["scenario"]))
            })
            .collect();
        // Shares of guest memory: they sum to 1 (a refused VM maps nothing: unmapped = 1).
        assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-9, "{shares:?} in {}", r["scenario"]);
        assert!(m["huge_capable"].as_f64().is_some_and(|h| (0.0..=1.0).contains(&h)), "{}", r["scenario"]);
    }
    let first = &runs[0];
    assert!(first["scenario"].as_str().unwrap().contains("01-rfc-host-split-thp.toml"), "{first}");
    assert_eq!(first["policy"], "rfc-host-split");
    assert_eq!(first["backing"], "thp");
    assert_eq!(first["outcome"], "completed");
    // 01's one host split, which no host access needs (its [expect] says why).
    assert_eq!(first["metrics"]["host_splits_needless"], 1);
    let outcomes: Vec<&str> = runs.iter().map(|r| r["outcome"].as_str().unwrap()).collect();
    // 03 is the one VM a policy rejects, 04 the one guest that terminates (15 hangs, 02 errors).
    assert_eq!(outcomes.iter().filter(|&&o| o == "vm_rejected").count(), 1, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|&&o| o == "guest_terminated").count(), 1, "{outcomes:?}");
    assert_eq!(text(&out.stderr), "");
}

/// Every run names its outcome's reason (and a `vm_error` its cause) in the CLI's kebab-case
/// names, with the detail in words, in the JSON and in a `why` line under the table.
#[test]
fn json_and_table_give_cause_reason_and_detail() {
    let d = temp_dir("why");
    // BASE under the RFC's host split: the private 4K page under the 2M leaf takes RMP|SIZEM,
    // and hugetlbfs cannot split its page.
    let split = write(&d, "split.toml", &base_with("policy = \"npt-demote\"", "policy = \"rfc-host-split\""));
    // BASE under refuse-hugetlbfs: the memslot is refused before the guest runs.
    let refuse =
        write(&d, "refuse.toml", &base_with("policy = \"npt-demote\"", "policy = \"refuse-hugetlbfs\""));
    let ok = write(&d, "ok.toml", BASE);
    let mut args = vec!["run", split.as_str(), refuse.as_str(), ok.as_str(), "--json"];
    // Their [expect] says completed: the two failing runs exit 1, and still report.
    let out = snpsim(&args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let runs = json_runs(&out);
    let by = |p: &str| runs.iter().find(|r| r["policy"] == p).unwrap_or_else(|| panic!("{p}"));
    let r = by("rfc-host-split");
    assert_eq!((r["outcome"].as_str(), r["cause"].as_str()), (Some("vm_error"), Some("unresolvable")), "{r}");
    assert_eq!(r["reason"], "host-split-impossible", "{r}");
    let detail = r["detail"].as_str().unwrap();
    assert!(detail.contains("hugetlbfs-2m") && !detail.contains("Hugetlbfs2m"), "{detail}");
    let r = by("refuse-hugetlbfs");
    assert_eq!((r["outcome"].as_str(), r["reason"].as_str()), (Some("vm_rejected"), Some("backing-refused")));
    assert!(r["cause"].is_null(), "only a vm_error has a cause: {r}");
    let r = by("npt-demote");
    assert_eq!(r["outcome"], "completed");
    assert!(r["reason"].is_null() && r["cause"].is_null() && r["detail"] == "", "{r}");
    // The table: one `why` line per run that did not complete.
    args.pop();
    let table = text(&snpsim(&args).stdout);
    let why: Vec<&str> = table.lines().filter(|l| l.starts_with("  ") && l.contains(": ")).collect();
    assert!(
        why.iter()
            .any(|l| l
                .starts_with("  rfc-host-split hugetlbfs-2m: vm_error unresolvable host-split-impossible (")),
        "{table}"
    );
    assert!(
        why.iter().any(|l| l.starts_with("  refuse-hugetlbfs hugetlbfs-2m: vm_rejected backing-refused (")),
        "{table}"
    );
    assert!(!why.iter().any(|l| l.contains("npt-demote")), "a completed run has no why line: {table}");
}

#[test]
fn csv_has_a_header_and_one_row_per_run() {
    let d = temp_dir("csv");
    let a = write(&d, "a.toml", BASE);
    let b = write(&d, "b.toml", &base_with("backing = \"hugetlbfs-2m\"", "backing = \"thp\""));
    let out = snpsim(&["run", &a, &b, "--csv"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert!(lines[0].starts_with("scenario,policy,backing,granularity,outcome,"), "{}", lines[0]);
    let header: Vec<&str> = lines[0].split(',').collect();
    for key in [
        "rmp_npf",
        "host_splits_needless",
        "psmash",
        "exits.npf",
        "npt_coverage.2m",
        "npt_coverage.unmapped",
        "huge_capable",
        "sim_time_ns",
    ] {
        assert!(header.contains(&key), "{key} not in {header:?}");
    }
    assert!(
        lines[1].starts_with(&format!("cli test ({a}),npt-demote,hugetlbfs-2m,4k,completed,")),
        "{}",
        lines[1]
    );
    assert!(lines[2].starts_with(&format!("cli test ({b}),npt-demote,thp,4k,completed,")), "{}", lines[2]);
    // Both runs demote one 2M leaf, so the columns agree: the write at 0x200000 goes through the
    // 2M leaf (hugetlbfs or THP) over its 4K private entry, one SIZEM #NPF, one 2M → 4K demotion.
    for row in &lines[1..] {
        let cells: Vec<&str> = row.split(',').collect();
        assert_eq!(cells.len(), header.len(), "{row}");
        let col = |k: &str| cells[header.iter().position(|h| *h == k).unwrap()];
        assert_eq!(col("rmp_npf_sizem"), "1", "{row}");
        assert_eq!(col("npt_demotions.2m_4k"), "1", "{row}");
    }
}

#[test]
fn csv_rows_line_up_with_the_header() {
    let out = snpsim(&["run", EXAMPLES, "--csv"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    let mut lines = stdout.lines();
    let header = lines.next().unwrap().split(',').count();
    for row in lines {
        // Scenario names hold commas: count the cells after the quoted name.
        let rest = row.rsplit_once("\",").map_or(row, |(_, r)| r);
        let name_cells = usize::from(rest.len() != row.len());
        assert_eq!(rest.split(',').count() + name_cells, header, "{row}");
    }
}

#[test]
fn unknown_policy_is_bad_input_with_location_and_field() {
    let d = temp_dir("policy");
    let f = write(&d, "s.toml", &base_with("policy = \"npt-demote\"", "policy = \"npt-demolish\""));
    let out = snpsim(&["run", &f]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stdout), "");
    let err = text(&out.stderr);
    assert!(err.contains(&format!("{f}:6:10: field `vm.policy`")), "{err}");
    assert!(err.contains("\"npt-demolish\""), "{err}");
    assert!(
        err.contains("rfc-host-split, rfc-v4, refuse-hugetlbfs, fail-psc-hugetlbfs, npt-demote, gmem"),
        "{err}"
    );
}

#[test]
fn toml_syntax_error_is_bad_input_with_location() {
    let d = temp_dir("syntax");
    let f = write(&d, "s.toml", &base_with("memory = \"16MiB\"", "memory = \"16MiB"));
    let out = snpsim(&["run", &f]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stdout), "");
    let err = text(&out.stderr);
    assert!(err.contains(&format!("{f}:5:")), "{err}");
    assert!(err.contains("TOML syntax"), "{err}");
}

#[test]
fn toml_syntax_error_names_the_field() {
    let d = temp_dir("syntax-field");
    let f = write(&d, "s.toml", &base_with("memory = \"16MiB\"", "memory = \"16MiB"));
    let out = snpsim(&["run", &f]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("vm.memory"), "{}", text(&out.stderr));
}

#[test]
fn unaligned_gpa_is_bad_input_with_location_and_field() {
    let d = temp_dir("unaligned");
    let f = write(&d, "s.toml", &base_with("gpa = \"0x200000\"\nto", "gpa = \"0x200800\"\nto"));
    let out = snpsim(&["run", &f]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stdout), "");
    let err = text(&out.stderr);
    assert!(err.contains(&format!("{f}:12:7: field `step[0].gpa`")), "{err}");
    assert!(err.contains("0x200800"), "{err}");
}

#[test]
fn a_failed_expectation_exits_1_and_says_which() {
    let d = temp_dir("expect");
    let f = write(&d, "s.toml", &base_with("host_splits = 0", "host_splits = 3"));
    let out = snpsim(&["run", &f]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("FAILED cli test"), "{err}");
    assert!(err.contains("expected host_splits") && err.contains("got 0"), "{err}");
    assert!(!err.contains("rmp_npf_sizem"), "only the failed expectation is reported: {err}");
    assert!(text(&out.stdout).contains("npt-demote"));
    // An outcome mismatch names both outcomes.
    let f = write(&d, "o.toml", &base_with("outcome = \"completed\"", "outcome = \"vm_error\""));
    let out = snpsim(&["run", &f]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("expected outcome vm_error, got completed"), "{err}");
}

#[test]
fn set_overrides_a_field_and_is_validated() {
    let d = temp_dir("set");
    let f = write(&d, "s.toml", BASE);
    let out = snpsim(&["run", &f, "--set", "vm.backing=thp", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let runs = json_runs(&out);
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0]["backing"], "thp");
    // As on hugetlbfs: the write's one SIZEM #NPF through the 2M leaf, one demotion.
    assert_eq!(runs[0]["metrics"]["npt_demotions"]["2m_4k"], 1);
    let out = snpsim(&["run", &f, "--set", "vm.backing=ssd"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stdout), "");
    let err = text(&out.stderr);
    assert!(err.contains("--set:1:") && err.contains("vm.backing"), "{err}");
}

#[test]
fn a_bad_file_in_a_directory_stops_everything_before_any_run() {
    let d = temp_dir("dir");
    write(&d, "a.toml", BASE);
    write(&d, "b.toml", &base_with("policy = \"npt-demote\"", "policy = \"npt-demolish\""));
    for extra in [&[][..], &["--json"][..], &["--csv"][..]] {
        let mut args = vec!["run", d.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = snpsim(&args);
        assert_eq!(out.status.code(), Some(2), "{extra:?}");
        assert_eq!(text(&out.stdout), "", "{extra:?}");
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains("b.toml:6:10: field `vm.policy`"), "{err}");
    }
}

#[test]
fn the_grids_fit_the_width_and_split_into_panels_when_narrower() {
    let at = |cols: &str| {
        let run;
        let out = if cols == "120" {
            default_run_at_120()
        } else {
            run = Command::new(env!("CARGO_BIN_EXE_snpsim")).env("COLUMNS", cols).output().unwrap();
            &run
        };
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    // The grids' rows are the lines indented by two spaces before the verdicts.
    let grid = |t: &str| -> Vec<String> {
        t.split("Verdicts")
            .next()
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("  "))
            .map(String::from)
            .collect()
    };
    // The 4K grid is 111 columns wide (its widest cells `SIGBUS on host write, EFAULT` twice):
    // whole at 120, in two panels at 100 (the default when standard output is not a terminal).
    let (wide, narrow) = (at("120"), at("100"));
    assert!(grid(&wide).iter().any(|l| l.chars().count() > 100), "{wide}");
    assert!(grid(&narrow).iter().all(|l| l.chars().count() <= 100), "{narrow}");
    let rows = |t: &str| grid(t).iter().filter(|l| l.trim_start().starts_with("npt-demote")).count();
    assert_eq!((rows(&wide), rows(&narrow)), (2, 3), "npt-demote: once per grid, once more per extra panel");
    let default = Command::new(env!("CARGO_BIN_EXE_snpsim")).env_remove("COLUMNS").output().unwrap();
    assert_eq!(text(&default.stdout), narrow, "not a terminal and no COLUMNS: 100");
}

#[test]
fn list_names_every_policy_with_what_it_models() {
    let out = snpsim(&["list"]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> =
        stdout.split("Policies:\n").nth(1).unwrap().lines().take_while(|l| !l.is_empty()).collect();
    let policies: Vec<&str> = lines.iter().map(|l| l.split_whitespace().next().unwrap()).collect();
    assert_eq!(
        policies,
        [
            "rfc-host-split",
            "rfc-v4",
            "refuse-hugetlbfs",
            "fail-psc-hugetlbfs",
            "npt-demote",
            "gmem",
            "gmem-inplace"
        ]
    );
    // Code as posted vs an author's description, labelled on each line.
    for (line, code) in lines.iter().zip([false, true, false, false, false, true, true]) {
        let label = if code { "[code as posted]" } else { "[as described]" };
        assert!(line.contains(label), "{line}");
    }
}

#[test]
fn an_unknown_command_is_bad_input() {
    let out = snpsim(&["bogus"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(text(&out.stdout), "");
    assert!(text(&out.stderr).contains("bogus"), "{}", text(&out.stderr));
}

#[test]
fn a_mistyped_command_is_named_not_taken_for_a_file() {
    let out = snpsim(&["rnu"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("`rnu` is neither a command nor a file; did you mean `snpsim run`?"));
    // Far from every command, it is a missing file.
    let out = snpsim(&["no-such-scenario"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no such file"), "{}", text(&out.stderr));
}

#[test]
fn version_names_the_commit() {
    let out = snpsim(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    let v = text(&out.stdout);
    assert!(v.starts_with(&format!("snpsim {} (commit ", env!("CARGO_PKG_VERSION"))), "{v}");
    assert!(v.contains(", tree "), "{v}");
}

#[test]
fn a_directory_run_skips_sweep_files_and_says_so() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/sweeps");
    let out = snpsim(&["run", dir, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // The directory holds two sweeps and the base scenario of one of them.
    assert_eq!(json_runs(&out).len(), 1);
    let err = text(&out.stderr);
    for sweep in ["attacks.toml", "conversion-rate.toml"] {
        assert!(err.contains(&format!("{sweep} is a sweep, not a scenario: skipped")), "{err}");
    }
}

#[test]
fn no_expect_turns_expectations_off_but_not_invariants() {
    // The race scenario pins what its own seed does; another seed breaks its expectations.
    let race = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/races/01-psmash-vs-psmash.toml");
    let out = snpsim(&["run", race, "--set", "seed=4"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let out = snpsim(&["run", race, "--set", "seed=4", "--no-expect"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

#[test]
fn completions_and_the_manual_page_come_from_the_command_definitions() {
    let out = snpsim(&["completions", "bash"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let script = text(&out.stdout);
    for word in ["snpsim", "compare", "replay", "--no-expect", "--details"] {
        assert!(script.contains(word), "{word} missing from the bash completions");
    }
    let out = snpsim(&["man"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let page = text(&out.stdout);
    assert!(page.contains(".TH snpsim 1"), "{page}");
    // Every command is listed.
    for command in ["compare", "replay", "check", "sweep", "completions"] {
        assert!(page.contains(&format!("snpsim\\-{command}")), "{command} missing from the manual page");
    }
    let out = snpsim(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn json_runs_say_where_they_came_from_and_have_every_metric() {
    let out = snpsim(&["run", EXAMPLES, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let runs = json_runs(&out);
    let keys = |r: &Value| r["metrics_flat"].as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    let first = keys(&runs[0]);
    for (i, r) in runs.iter().enumerate() {
        assert_eq!(r["run_index"].as_u64(), Some(i as u64), "{r}");
        assert!(Path::new(r["source"].as_str().unwrap()).extension().is_some_and(|e| e == "toml"), "{r}");
        assert!(r["seed"].is_u64() && r["preset"].is_string(), "{r}");
        assert!(r["snpsim_version"].is_string() && r["commit"].is_string(), "{r}");
        // The same flat columns in every run, whatever happened in it.
        assert_eq!(keys(r), first, "{}", r["scenario"]);
        assert!(
            first.contains(&"npt_demotions.1g_2m".to_owned())
                && first.contains(&"races.spurious_npf".to_owned())
        );
        assert_eq!(r["metrics_flat"]["exits.npf"], r["metrics"]["exits"]["npf"]);
    }
}
