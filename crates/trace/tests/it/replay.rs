//! Traces and replay: every example and every run of the embedded debate matrix replays, traces are
//! byte-identical across runs, and a corrupted trace fails at the corrupted line.

use std::path::{Path, PathBuf};

use snpsim_debate::debate::{matrix, matrix_scenario, matrix_source};
use snpsim_engine::engine::CheckMode;
use snpsim_scenario::run::run_scenario_traced;
use snpsim_scenario::{Scenario, TraceMetaExt, load_scenario, parse_scenario};
use snpsim_trace::TraceMeta;
use snpsim_trace::replay::{ReplayError, replay};

fn scenario_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() && p.ends_with("calibration") {
            // 64 GiB boots: crates/engine/tests/it/calibration.rs runs them; a trace of each would hold millions
            // of events.
        } else if p.is_dir() && p.ends_with("sweeps") {
            // Sweep files and their base scenarios: crates/cli/tests/it/sweep.rs runs them.
        } else if p.is_dir() {
            scenario_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "toml") {
            out.push(p);
        }
    }
}

fn examples() -> Vec<(String, Scenario)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut files = Vec::new();
    scenario_files(&root, &mut files);
    assert!(!files.is_empty());
    files.iter().map(|f| (f.display().to_string(), load_scenario(f).unwrap())).collect()
}

/// Full checking for the small examples; the debate matrix's 1 GiB guests check at the end only.
fn check_for(s: &Scenario) -> CheckMode {
    if s.vm.memory > 64 << 20 { CheckMode::Incremental } else { CheckMode::Full }
}

fn trace_of(s: &Scenario, source: &str, run: u64) -> String {
    let r = run_scenario_traced(s, check_for(s), Some(&TraceMeta::for_scenario(s, source, run))).unwrap();
    String::from_utf8(r.result.trace.unwrap()).unwrap()
}

#[test]
fn every_example_replays() {
    for (source, s) in examples() {
        let text = trace_of(&s, &source, 0);
        let summary = replay(&text).unwrap_or_else(|e| panic!("{source}: {e}"));
        assert_eq!(summary.runs, 1);
        assert_eq!(summary.lines, text.lines().count());
    }
}

/// The trace-replay fuzz target's seeds are real traces of today's model: each replays to its
/// hash (a change of the trace's content must re-record them: `snpsim run SOURCE --trace FILE`).
#[test]
fn the_fuzz_seeds_replay() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/trace_replay");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let summary = replay(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(summary.runs, 1, "{}", path.display());
        seen += 1;
    }
    // The two recorded traces (npt-demote-thp, drop-psc-halfway); more may be added.
    assert!(seen >= 2, "{seen} seeds in {}", dir.display());
}

/// The debate matrix's runs, traced and replayed as two files of many runs each (each file's runs
/// numbered from 0, as a trace requires), the two halves on two threads.
#[test]
fn matrix_runs_replay_in_multi_run_files() {
    let cells = matrix();
    let (first, second) = cells.split_at(cells.len() / 2);
    let replay_half = |half: &[_]| {
        let mut text = String::new();
        for (i, &(p, b, g, f)) in half.iter().enumerate() {
            let source = matrix_source(p, b, g, f);
            let s = parse_scenario(&source, &matrix_scenario(p, b, g, f)).unwrap();
            text.push_str(&trace_of(&s, &source, i as u64));
        }
        replay(&text).unwrap().runs
    };
    let runs = std::thread::scope(|scope| {
        let other = scope.spawn(|| replay_half(second));
        replay_half(first) + other.join().unwrap()
    });
    assert_eq!(runs, cells.len());
}

#[test]
fn traces_are_byte_identical() {
    for (source, s) in examples() {
        assert_eq!(trace_of(&s, &source, 0), trace_of(&s, &source, 0), "{source}");
    }
}

#[test]
fn a_trace_has_header_events_and_hash() {
    let (source, s) = examples().into_iter().find(|(f, _)| f.contains("05-npt-demote-thp")).unwrap();
    let text = trace_of(&s, &source, 0);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("{\"ev\":\"run\""), "{}", lines[0]);
    assert!(lines[lines.len() - 2].starts_with("{\"ev\":\"end\""));
    assert!(lines[lines.len() - 1].starts_with("{\"state_hash\":\""));
    for ev in ["step", "step_end", "rmpupdate", "pvalidate", "npf", "exit", "access", "npt_demotion"] {
        assert!(text.contains(&format!("{{\"ev\":\"{ev}\"")), "no {ev} event in\n{text}");
    }
}

#[test]
fn a_corrupted_result_diverges_at_its_line() {
    let (source, s) = examples().into_iter().find(|(f, _)| f.contains("05-npt-demote-thp")).unwrap();
    let text = trace_of(&s, &source, 0);
    let lines: Vec<&str> = text.lines().collect();
    // Every kind of line: change a value and replay must name exactly that line.
    for (i, l) in lines.iter().enumerate() {
        let corrupted = if let Some(rest) = l.strip_prefix("{\"state_hash\":\"") {
            format!("{{\"state_hash\":\"{}{}", if rest.starts_with('0') { '1' } else { '0' }, &rest[1..])
        } else if l.contains("\"result\":\"done\"") {
            l.replacen("\"result\":\"done\"", "\"result\":\"FAIL_INPUT\"", 1)
        } else if l.contains("\"t\":") {
            l.replacen("\"t\":", "\"t\":1", 1)
        } else {
            continue;
        };
        let mut bad = lines.clone();
        bad[i] = &corrupted;
        let err = replay(&(bad.join("\n") + "\n")).unwrap_err();
        assert_eq!(err.line(), i + 1, "{err}");
        assert!(err.is_divergence() || i == 0, "{err}");
    }
}

#[test]
fn a_missing_line_diverges_and_garbage_is_malformed() {
    let (source, s) = examples().into_iter().find(|(f, _)| f.contains("05-npt-demote-thp")).unwrap();
    let text = trace_of(&s, &source, 0);
    let lines: Vec<&str> = text.lines().collect();
    let idx = lines.iter().position(|l| l.starts_with("{\"ev\":\"rmpupdate\"")).unwrap();
    let mut missing = lines.clone();
    missing.remove(idx);
    let err = replay(&missing.join("\n")).unwrap_err();
    assert!(err.is_divergence());
    assert_eq!(err.line(), idx + 1);

    let mut garbage = lines.clone();
    garbage[3] = "{\"ev\":\"step\",";
    match replay(&garbage.join("\n")).unwrap_err() {
        // garbage[3] is line 4, and its JSON breaks off after its 13th character, the comma.
        ReplayError::Malformed { line, column, .. } => assert_eq!((line, column), (4, 13)),
        e @ ReplayError::Diverged { .. } => panic!("{e}"),
    }
    let mut unknown = lines.clone();
    unknown[2] = "{\"ev\":\"teleport\"}";
    let err = replay(&unknown.join("\n")).unwrap_err();
    assert!(
        !err.is_divergence() && err.line() == 3 && err.to_string().contains("accepted: run, step"),
        "{err}"
    );

    // Each rule of a well-formed line, on line 3: what the error says, and that it is malformed.
    let hash = format!("{{\"state_hash\":\"{}\"}}", "0".repeat(32));
    for (line, says) in [
        ("[1, 2]".to_string(), "not a JSON object"),
        ("\"step\"".to_string(), "not a JSON object"),
        ("{\"ev\": 3}".to_string(), "needs a string field `ev`"),
        ("{\"t\": 1}".to_string(), "needs a string field `ev`"),
        ("{\"ev\":\"step\",\"traceEvents\":[]}".to_string(), "Chrome"),
        ("{\"ev\":\"step\",\"displayTimeUnit\":\"ns\"}".to_string(), "Chrome"),
        (format!("{{\"ev\":\"step\",{}", &hash[1..]), "state_hash line is"),
        ("{\"state_hash\":\"abc\"}".to_string(), "state_hash line is"),
        ("{\"ev\":\"step\",\"x\":{\"y\":[1,}}".to_string(), "not JSON"),
        // Read as strictly as a whole JSON value: a number out of range, a lone surrogate, a
        // broken array, trailing characters.
        ("{\"ev\":\"step\",\"x\":1e400}".to_string(), "not JSON"),
        ("{\"ev\":\"step\",\"x\":\"\\ud800\"}".to_string(), "not JSON"),
        ("[1, 2".to_string(), "not JSON"),
        ("12x".to_string(), "not JSON"),
    ] {
        let mut bad = lines.clone();
        bad[2] = &line;
        let err = replay(&bad.join("\n")).unwrap_err();
        assert!(!err.is_divergence() && err.line() == 3 && err.to_string().contains(says), "{line}: {err}");
    }
    // A state_hash given twice is still one field (the last value counts, as for any JSON object).
    let mut twice = lines.clone();
    let last = lines[lines.len() - 1];
    let doubled = format!("{{\"state_hash\":\"{}\",{}", "0".repeat(32), &last[1..]);
    *twice.last_mut().unwrap() = &doubled;
    replay(&(twice.join("\n") + "\n")).unwrap();

    let truncated = lines[..lines.len() - 2].join("\n");
    assert!(!replay(&truncated).unwrap_err().is_divergence());

    let bad_action = text.replacen("\"op\":\"psc\"", "\"op\":\"teleport\"", 1);
    let err = replay(&bad_action).unwrap_err();
    assert!(!err.is_divergence() && err.to_string().contains("accepted: psc, accept"), "{err}");

    let step = lines.iter().position(|l| l.starts_with("{\"ev\":\"step\"")).unwrap();
    let mut outside = lines.clone();
    let far = lines[step].replacen("\"gpa\":\"0x200000\"", "\"gpa\":\"0x7fffff000000\"", 1);
    outside[step] = &far;
    let err = replay(&outside.join("\n")).unwrap_err();
    assert_eq!(err.line(), step + 1);
    assert!(!err.is_divergence() && err.to_string().contains("outside guest memory"), "{err}");

    let header = text.replacen("\"policy\":\"npt-demote\"", "\"policy\":\"nope\"", 1);
    let err = replay(&header).unwrap_err();
    assert!(err.line() == 1 && err.to_string().contains("accepted: rfc-host-split"), "{err}");
}

/// Scenarios for [`every_action_and_option_replays`] and the events each trace must show.
const CASES: &[(&str, &[&str])] = &[
    (
        r#"name = "legacy, every action"
[machine]
host_memory = "64MiB"
[vm]
memory = "16MiB"
policy = "rfc-host-split"
backing = "thp"
khugepaged = true
[guest]
psc_granularity = "4k"
psc_protocol = "msr"
[[step]]
op = "accept"
gpa = "0x200000"
size = "2MiB"
[[step]]
op = "access"
gpa = "0x200000"
size = "8KiB"
kind = "write"
[[step]]
op = "rmpadjust"
gpa = "0x200000"
vmpl = 1
perms = "r"
[[step]]
op = "psc"
gpa = "0x201000"
to = "shared"
[[step]]
op = "host_write"
gpa = "0x201000"
via = "vmm"
[[step]]
op = "host_write"
gpa = "0x200000"
via = "uaccess"
[[step]]
op = "host_write"
gpa = "0x200000"
via = "kernel"
[[step]]
op = "host_read"
gpa = "0x200000"
[[step]]
op = "host_split"
gpa = "0x400000"
[[step]]
op = "host_collapse"
gpa = "0x400000"
[[step]]
op = "pvalidate"
gpa = "0x202000"
validate = false
[[step]]
op = "access"
gpa = "0x600000"
kind = "read"
private = false
"#,
        &[
            "psc",
            "rmpadjust",
            "host_write",
            "host_pf",
            "host_split",
            "host_collapse",
            "\"actor\":\"khugepaged\"",
            "\"protocol\":\"msr\"",
        ],
    ),
    (
        r#"name = "gmem, punch hole and implicit conversion"
[machine]
host_memory = "64MiB"
[vm]
memory = "16MiB"
policy = "gmem"
backing = "gmem-2m"
[guest]
psc_granularity = "2m"
[[step]]
op = "accept"
gpa = "0x200000"
size = "4MiB"
[[step]]
op = "psc"
gpa = "0x200000"
size = "64KiB"
to = "shared"
[[step]]
op = "punch_hole"
gpa = "0x400000"
size = "2MiB"
[[step]]
op = "access"
gpa = "0x500000"
kind = "write"
private = false
[[step]]
op = "recoalesce"
gpa = "0x200000"
mode = "save-restore"
"#,
        &["\"reason\":\"hypercall\"", "psmash", "implicit_conversion", "punch_hole"],
    ),
    (
        r#"name = "bare PSC requests on the second vCPU"
[machine]
host_memory = "64MiB"
[vm]
memory = "16MiB"
vcpus = 2
policy = "npt-demote"
backing = "thp"
[[step]]
op = "psc_request"
vcpu = 1
gpa = "0x201000"
size = "2MiB"
to = "private"
[[step]]
op = "psc_request"
vcpu = 1
gpa = "0x400000"
size = "2MiB"
to = "private"
cur_page = 510
"#,
        &[
            "{\"cur_page\":0,\"gpa\":\"0x201000\",\"op\":\"psc_request\",\"size\":\"2m\",\"to\":\"private\",\"vcpu\":1}",
            "{\"cur_page\":510,\"gpa\":\"0x400000\",\"op\":\"psc_request\",\"size\":\"2m\",\"to\":\"private\",\"vcpu\":1}",
        ],
    ),
    (
        r#"name = "budget"
[machine]
host_memory = "64MiB"
[vm]
memory = "16MiB"
policy = "npt-demote"
backing = "hugetlbfs-2m"
step_budget = 2
[[step]]
op = "accept"
gpa = "0x0"
size = "2MiB"
[[step]]
op = "access"
gpa = "0x0"
kind = "write"
[[step]]
op = "access"
gpa = "0x0"
kind = "read"
[[step]]
op = "access"
gpa = "0x1000"
kind = "read"
"#,
        &["\"outcome\":\"step_budget_exceeded\""],
    ),
    (
        r#"name = "rejected"
[machine]
host_memory = "64MiB"
[vm]
memory = "16MiB"
policy = "refuse-hugetlbfs"
backing = "hugetlbfs-2m"
[[step]]
op = "accept"
gpa = "0x0"
size = "2MiB"
"#,
        &["\"outcome\":\"vm_rejected\""],
    ),
    (
        r#"name = "tiny"
[machine]
geometry = "tiny"
host_memory = "256KiB"
[vm]
memory = "64KiB"
policy = "npt-demote"
backing = "thp"
[guest]
psc_granularity = "4k"
[[step]]
op = "psc"
gpa = "0x4000"
to = "private"
[[step]]
op = "access"
gpa = "0x4000"
kind = "write"
"#,
        &["npt_demotion", "\"geometry\":\"tiny\""],
    ),
];

/// Scenarios that exercise every action, both PSC protocols, khugepaged, the gmem era, a step
/// budget, a rejected VM and the tiny geometry: each replays, and the events it should show are
/// in its trace.
#[test]
fn every_action_and_option_replays() {
    for (text, wanted) in CASES {
        let s = parse_scenario("case.toml", text).unwrap_or_else(|e| panic!("{e}"));
        let trace = trace_of(&s, "case.toml", 0);
        let summary = replay(&trace).unwrap_or_else(|e| panic!("{}: {e}", s.name));
        assert_eq!(summary.runs, 1);
        for w in *wanted {
            assert!(trace.contains(w), "{}: no {w} in\n{trace}", s.name);
        }
    }
}

/// The cost item an event's own time is priced by, as `sim_time_ns` prices it (`None` for an event
/// that takes no time of its own, or whose item the trace prices only in part: `npt_demotion` is
/// one kind of `npt_zap`).
fn item_of(ev: &serde_json::Value) -> Option<&'static str> {
    let s = |k: &str| ev[k].as_str().unwrap_or_default().to_owned();
    // A PVALIDATE or RMPADJUST that faulted (`npf:...`, `vc:...`) costs its #NPF exit instead.
    let retired = !s("result").contains(':');
    Some(match ev["ev"].as_str()? {
        "exit" => match s("reason").as_str() {
            "npf" => "npf_exit",
            "vmgexit_psc" | "vmgexit_psc_msr" => "vmgexit",
            _ => "userspace_exit",
        },
        "rmpupdate" if s("size") == "2m" => "rmpupdate_2m",
        "rmpupdate" => "rmpupdate_4k",
        "psmash" => "psmash",
        "pvalidate" if retired && s("size") == "2m" => "pvalidate_2m",
        "pvalidate" if retired => "pvalidate_4k",
        "rmpadjust" if retired => "rmpadjust",
        "host_split" => "host_split",
        "direct_map_split" => "direct_map_split",
        _ => return None,
    })
}

/// Trace events are priced by the run's cost table, `[cost]` overrides included: each event takes
/// its item's cost in that table (times its `count` for a derived split) up to the next line of
/// its step, those costs summed by item are exactly the run's `sim_time_ns` of the item, and the
/// last `step_end` is at `sim_time_ns`. The event before a `step_end` may take longer: the step's
/// costs no event itemises (guest accesses, NPT maps, page clearing) end the step. (Priced with
/// the defaults, each #NPF exit would take 1500 ns in the trace and 500000 in `sim_time_ns`.)
#[test]
fn trace_events_are_priced_by_the_runs_cost_table() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/debate");
    // Every override differs from its default (1500, 1000, 10000, 965, 1500, 965, 1500, 3000).
    let costs = "\n[cost]\nnpf_exit = 500000\nvmgexit = 70000\nuserspace_exit = 90000\nrmpupdate_4k = 3000\n\
                 rmpupdate_2m = 4000\npvalidate_4k = 5000\npvalidate_2m = 6000\nhost_split = 7000\n";
    let itemised = [
        "npf_exit",
        "vmgexit",
        "userspace_exit",
        "rmpupdate_4k",
        "rmpupdate_2m",
        "psmash",
        "pvalidate_4k",
        "pvalidate_2m",
        "rmpadjust",
        "host_split",
        "direct_map_split",
    ];
    for file in ["01-rfc-host-split-thp.toml", "05-npt-demote-thp.toml", "12-gmem-4k-no-prefault.toml"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap() + costs;
        let s = parse_scenario(file, &text).unwrap();
        let r =
            run_scenario_traced(&s, CheckMode::Full, Some(&TraceMeta::for_scenario(&s, file, 0))).unwrap();
        let m = r.result.metrics.clone();
        let trace = String::from_utf8(r.result.trace.unwrap()).unwrap();
        let lines: Vec<serde_json::Value> = trace.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        let mut by_item: std::collections::BTreeMap<&str, u64> = std::collections::BTreeMap::new();
        let mut last_step_end = 0;
        for (i, ev) in lines.iter().enumerate() {
            if ev["ev"] == "step_end" {
                last_step_end = ev["t"].as_u64().unwrap();
            }
            let Some(item) = item_of(ev) else { continue };
            let unit = s.cost.get(snpsim_engine::cost::index_of(item).unwrap());
            let ns = unit * ev.get("count").and_then(serde_json::Value::as_u64).unwrap_or(1);
            *by_item.entry(item).or_default() += ns;
            // Every priced event has a later line in its step: at least its `step_end`.
            let next = &lines[i + 1];
            let took = next["t"].as_u64().unwrap() - ev["t"].as_u64().unwrap();
            if next["ev"] == "step_end" {
                assert!(took >= ns, "{file} line {}: {item} took {took} ns, priced {ns}", i + 1);
            } else {
                assert_eq!(took, ns, "{file} line {}: {item}", i + 1);
            }
        }
        assert_eq!(last_step_end, m.sim_time_ns, "{file}");
        // Each scenario takes #NPF exits, so the overrides are exercised: 500000 ns per #NPF exit.
        assert!(m.npf > 0, "{file}");
        assert_eq!(m.sim_time_by_item["npf_exit"], m.npf * 500_000, "{file}");
        for item in itemised {
            assert_eq!(by_item.get(item).copied().unwrap_or(0), m.sim_time_by_item[item], "{file}: {item}");
        }
        // A traced run with overrides replays: replay prices it with the header's `costs`.
        replay(&trace).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
}

/// The header is verified: an edited seed, scenario, source or run number diverges at the run's
/// `state_hash` (which digests the header), and a duplicated or reordered run is malformed.
#[test]
fn edited_headers_and_misplaced_runs_are_caught() {
    let (source, s) = examples().into_iter().find(|(f, _)| f.contains("05-npt-demote-thp")).unwrap();
    let text = trace_of(&s, &source, 0);
    let last = text.lines().count();
    let edits = [
        ("\"seed\":1,", "\"seed\":2,"),
        ("\"scenario\":\"npt-demote", "\"scenario\":\"edited npt-demote"),
        ("\"source\":\"", "\"source\":\"elsewhere/"),
    ];
    for (old, new) in edits {
        assert!(text.contains(old), "{old}");
        let e = replay(&text.replacen(old, new, 1)).unwrap_err();
        assert!(e.is_divergence() && e.line() == last, "{old}: {e}");
        assert!(e.to_string().contains("header"), "{e}");
    }
    // Run 0 twice; run 1 before run 0; a lone run 1.
    let second = trace_of(&s, &source, 1);
    for bad in [format!("{text}{text}"), format!("{second}{text}"), second.clone()] {
        let e = replay(&bad).unwrap_err();
        assert!(!e.is_divergence(), "{e}");
        assert!(e.to_string().contains("field `run`"), "{e}");
    }
    assert_eq!(replay(&format!("{text}{second}")).unwrap().runs, 2);
}
