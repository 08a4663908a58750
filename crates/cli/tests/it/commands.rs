//! `snpsim run --out/--trace`, `replay`, `compare`, and the error classes (exit 1 and 2), run as a
//! user runs them: exit codes, messages, files written whole or not at all, determinism.

use crate::common::*;

use std::process::Command;

use serde_json::Value;

#[test]
fn out_writes_results_and_traces_that_replay() {
    let d = temp_dir("out");
    let out = d.join("o");
    let r = snpsim(&["run", EXAMPLES, "--out", s(&out), "--trace-format", "chrome"]);
    assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
    assert_eq!(files_in(&out), ["report.html", "results.json", "trace.json", "trace.jsonl"]);
    // report.html is what `snpsim report` makes of results.json.
    let page = d.join("page.html");
    let rep = snpsim(&["report", s(&out), "--html", s(&page)]);
    assert_eq!(rep.status.code(), Some(0), "{}", text(&rep.stderr));
    assert_eq!(std::fs::read(&page).unwrap(), std::fs::read(out.join("report.html")).unwrap());
    // results.json is the --json document.
    let json = snpsim(&["run", EXAMPLES, "--json"]);
    assert_eq!(std::fs::read(out.join("results.json")).unwrap(), json.stdout);
    // The JSONL trace replays.
    let rp = snpsim(&["replay", s(&out.join("trace.jsonl"))]);
    assert_eq!(rp.status.code(), Some(0), "{}", text(&rp.stderr));
    let files = std::fs::read_dir(EXAMPLES).unwrap().count();
    assert!(text(&rp.stdout).contains(&format!("replayed {files} run(s)")), "{}", text(&rp.stdout));
    // Without chrome, no trace.json; verdicts only for the default run.
    let out2 = d.join("o2");
    let r = snpsim(&["run", &example("05-npt-demote-thp.toml"), "--out", s(&out2), "--with-trace"]);
    assert_eq!(r.status.code(), Some(0));
    assert_eq!(files_in(&out2), ["report.html", "results.json", "trace.jsonl"]);
    // Without --with-trace or --trace-format, --out writes no trace: the default run's is
    // hundreds of MB.
    let out3 = d.join("o3");
    let r = snpsim(&["run", &example("05-npt-demote-thp.toml"), "--out", s(&out3)]);
    assert_eq!(r.status.code(), Some(0));
    assert_eq!(files_in(&out3), ["report.html", "results.json"]);
    // --with-trace only means something with --out.
    let r = snpsim(&["run", &example("05-npt-demote-thp.toml"), "--with-trace"]);
    assert_eq!(r.status.code(), Some(2), "{}", text(&r.stderr));
}

/// The Trace Event format's required fields, per event phase.
fn check_chrome(doc: &Value) {
    let events = doc["traceEvents"].as_array().expect("traceEvents is an array");
    assert!(!events.is_empty());
    let (mut slices, mut instants, mut meta) = (0, 0, 0);
    for e in events {
        assert!(e["name"].is_string(), "{e}");
        // A counter belongs to a process, every other event to a thread.
        assert!(e["pid"].is_u64() && (e["tid"].is_u64() || e["ph"] == "C"), "{e}");
        match e["ph"].as_str().unwrap() {
            "C" => {
                assert!(e["ts"].is_number() && e["args"].as_object().is_some_and(|a| !a.is_empty()), "{e}");
            }
            "s" | "f" => assert!(e["ts"].is_number() && e["id"].is_u64(), "{e}"),
            "X" => {
                assert!(e["ts"].as_f64().unwrap() >= 0.0 && e["dur"].as_f64().unwrap() >= 0.0, "{e}");
                slices += 1;
            }
            "i" => {
                assert!(e["ts"].is_number() && e["s"] == "t", "{e}");
                instants += 1;
            }
            "M" => {
                assert!(e["args"]["name"].is_string() || e["args"]["sort_index"].is_u64(), "{e}");
                meta += 1;
            }
            other => panic!("unexpected phase {other}: {e}"),
        }
    }
    assert!(slices > 0 && instants > 0 && meta > 0);
    let names: Vec<&str> = events.iter().filter_map(|e| e["name"].as_str()).collect();
    assert!(names.iter().any(|n| n.starts_with("#NPF ")), "no #NPF slice");
    assert!(names.iter().any(|n| n.starts_with("exit vmgexit_psc")), "no PSC exit slice");
    assert!(tracks(doc).contains(&"vCPU 0".to_string()), "no vCPU track");
}

/// The names of the threads (tracks) a Trace Event document declares.
fn tracks(doc: &Value) -> Vec<String> {
    doc["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["name"] == "thread_name")
        .filter_map(|e| e["args"]["name"].as_str().map(String::from))
        .collect()
}

#[test]
fn chrome_trace_is_valid_trace_event_json() {
    let d = temp_dir("chrome");
    let f = d.join("t.json");
    let r = snpsim(&[
        "run",
        &example("08-host-writes-still-fault.toml"),
        "--trace",
        s(&f),
        "--trace-format",
        "chrome",
    ]);
    assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
    let doc: Value = serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap();
    check_chrome(&doc);
    let names: Vec<&str> =
        doc["traceEvents"].as_array().unwrap().iter().filter_map(|e| e["name"].as_str()).collect();
    let tracks = tracks(&doc);
    assert!(
        tracks.contains(&"vmm".into()) && tracks.contains(&"vhost".into()),
        "host actor tracks: {tracks:?}"
    );
    assert!(names.iter().any(|n| n.starts_with("#PF host write: ")), "{names:?}");
}

/// The Perfetto timeline's additions: within each run the events are in order of time; every flow
/// arrow goes from an #NPF slice to a PSMASH, NPT demotion or host split that KVM did inside that
/// #NPF's exit; the counter tracks follow the run (host splits end at the run's `host_splits`,
/// NPT coverage at its `npt_coverage`, and a PSMASH turns one assigned 2M RMP entry into 512 4K
/// ones).
#[test]
fn chrome_trace_has_counters_and_flow_arrows_in_time_order() {
    let d = temp_dir("chrome-flows");
    let out = d.join("o");
    let r = snpsim(&["run", EXAMPLES, "--out", s(&out), "--trace-format", "chrome"]);
    assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
    let doc: Value = serde_json::from_slice(&std::fs::read(out.join("trace.json")).unwrap()).unwrap();
    let results: Value = serde_json::from_slice(&std::fs::read(out.join("results.json")).unwrap()).unwrap();
    let events = doc["traceEvents"].as_array().unwrap();
    let ts = |e: &Value| e["ts"].as_f64().unwrap();
    // Time order within each run (a process); metadata has no time.
    let timed: Vec<&Value> = events.iter().filter(|e| e["ph"] != "M").collect();
    for w in timed.windows(2) {
        if w[0]["pid"] == w[1]["pid"] {
            assert!(ts(w[0]) <= ts(w[1]), "out of order:\n{}\n{}", w[0], w[1]);
        }
    }
    // Flows: each end is followed on its track by the zero-length slice it ends on, and its start
    // is the start of an #NPF slice on the same track that spans the end.
    let mut ends_on = std::collections::BTreeSet::new();
    for (i, f) in events.iter().enumerate().filter(|(_, e)| e["ph"] == "f") {
        let same_track = |e: &&Value| e["pid"] == f["pid"] && e["tid"] == f["tid"];
        let target = events[i + 1..].iter().find(|e| same_track(e) && e["ph"] == "X").unwrap();
        assert!(target["ts"] == f["ts"] && target["dur"] == 0.0, "{f} -> {target}");
        let name = target["name"].as_str().unwrap();
        let kind = name.split(' ').take(2).collect::<Vec<_>>().join(" ");
        assert!(["PSMASH", "NPT demotion", "host split"].iter().any(|k| kind.starts_with(k)), "{name}");
        ends_on.insert(if name.starts_with("PSMASH") { "PSMASH".to_string() } else { kind });
        let start = events.iter().find(|e| e["ph"] == "s" && e["id"] == f["id"]).unwrap();
        assert!(same_track(&start) && ts(start) <= ts(f), "{start} -> {f}");
        let npf = events
            .iter()
            .find(|e| {
                same_track(e)
                    && e["ph"] == "X"
                    && e["ts"] == start["ts"]
                    && e["name"].as_str().unwrap().starts_with("#NPF ")
            })
            .unwrap_or_else(|| panic!("no #NPF slice where {start} begins"));
        assert!(ts(f) <= ts(npf) + npf["dur"].as_f64().unwrap(), "{npf} does not span {f}");
    }
    // examples/debate resolves #NPFs by each of the three (05: npt-demote's demotion after its
    // PSMASH; 01: rfc-host-split's host split).
    assert_eq!(ends_on.into_iter().collect::<Vec<_>>(), ["NPT demotion", "PSMASH", "host split"]);
    // Counters, run by run: the last value of each track against the run's metrics.
    for run in results.as_array().unwrap() {
        let pid = run["run_index"].as_u64().unwrap() + 1;
        let last = |name: &str| {
            events.iter().rev().find(|e| e["ph"] == "C" && e["pid"] == pid && e["name"] == name).cloned()
        };
        let m = &run["metrics"];
        match last("host splits") {
            Some(c) => assert_eq!(c["args"]["count"], m["host_splits"], "run {pid}"),
            None => assert_eq!(m["host_splits"], 0, "run {pid}"),
        }
        let Some(cov) = last("NPT coverage (% of guest memory)") else {
            // A VM refused at registration never ran: no sample.
            assert_eq!(run["outcome"], "vm_rejected", "run {pid}: no coverage track");
            continue;
        };
        for level in ["4k", "2m", "1g"] {
            let share = m["npt_coverage"][level].as_f64().unwrap() * 100.0;
            assert!((cov["args"][level].as_f64().unwrap() - share).abs() < 1e-3, "run {pid} {level}: {cov}");
        }
    }
    // A successful PSMASH: the RMP counter at its time has one 2M entry fewer and 512 4K entries
    // more than the counter before it (x86: 512 entries per 2M region).
    let rmp: Vec<&Value> = events.iter().filter(|e| e["name"] == "RMP assigned entries").collect();
    let psmash = events
        .iter()
        .find(|e| e["name"].as_str().is_some_and(|n| n.starts_with("PSMASH")) && e["args"]["rc"] == "SUCCESS")
        .unwrap();
    let at = rmp.iter().position(|c| c["pid"] == psmash["pid"] && c["ts"] == psmash["ts"]).unwrap();
    let (before, after) = (&rmp[at - 1]["args"], &rmp[at]["args"]);
    assert_eq!(after["2m"].as_u64().unwrap() + 1, before["2m"].as_u64().unwrap());
    assert_eq!(after["4k"].as_u64().unwrap(), before["4k"].as_u64().unwrap() + 512);
}

/// A step's result in a trace is a stable name, never a message: the steps that end their runs
/// (examples/debate has a vm_error, a guest_terminated and a host_hang) name the outcome.
#[test]
fn trace_results_are_stable_names() {
    let d = temp_dir("trace-names");
    let t = d.join("t.jsonl");
    assert_eq!(snpsim(&["run", EXAMPLES, "--trace", s(&t)]).status.code(), Some(0));
    let mut endings = std::collections::BTreeSet::new();
    for line in std::fs::read_to_string(&t).unwrap().lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        for key in ["result", "rc"] {
            let Some(r) = v[key].as_str() else { continue };
            let name = r.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_:x".contains(c))
                || r.starts_with("FAIL_")
                || r == "SUCCESS";
            assert!(name, "{key} {r:?} is not a name: {line}");
        }
        if v["ev"] == "step_end" && v["outcome"].is_string() {
            assert_eq!(v["result"], v["outcome"], "{line}");
            endings.insert(v["outcome"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(endings.into_iter().collect::<Vec<_>>(), ["guest_terminated", "host_hang", "vm_error"]);
}

#[test]
fn replay_reports_the_first_divergence_and_malformed_lines() {
    let d = temp_dir("replay");
    let t = d.join("t.jsonl");
    assert_eq!(snpsim(&["run", &example("05-npt-demote-thp.toml"), "--trace", s(&t)]).status.code(), Some(0));
    let good = std::fs::read_to_string(&t).unwrap();
    let lines: Vec<&str> = good.lines().collect();

    // A changed result: exit 1, the line and field named.
    let i = lines.iter().position(|l| l.starts_with("{\"ev\":\"rmpupdate\"")).unwrap();
    let mut bad = lines.clone();
    let changed = lines[i].replace("\"rc\":\"SUCCESS\"", "\"rc\":\"FAIL_OVERLAP\"");
    bad[i] = &changed;
    let f = d.join("diverged.jsonl");
    std::fs::write(&f, bad.join("\n") + "\n").unwrap();
    let r = snpsim(&["replay", s(&f)]);
    assert_eq!(r.status.code(), Some(1));
    let err = text(&r.stderr);
    assert!(err.contains(&format!("diverged.jsonl:{}: divergence", i + 1)), "{err}");
    assert!(err.contains("`rc`") && err.contains("FAIL_OVERLAP") && err.contains("SUCCESS"), "{err}");
    assert_eq!(text(&r.stdout), "");

    // A wrong final hash: exit 1 at the last line.
    let mut bad = lines.clone();
    let last = lines.len() - 1;
    bad[last] = "{\"state_hash\":\"00000000000000000000000000000000\"}";
    std::fs::write(&f, bad.join("\n") + "\n").unwrap();
    let r = snpsim(&["replay", s(&f)]);
    assert_eq!(r.status.code(), Some(1));
    assert!(text(&r.stderr).contains(&format!(":{}: divergence", last + 1)), "{}", text(&r.stderr));

    // Broken JSON: exit 2 with file:line:column.
    let mut bad = lines.clone();
    bad[2] = "{\"ev\":\"step\" \"t\":0}";
    let m = d.join("malformed.jsonl");
    std::fs::write(&m, bad.join("\n") + "\n").unwrap();
    let r = snpsim(&["replay", s(&m)]);
    assert_eq!(r.status.code(), Some(2));
    let err = text(&r.stderr);
    // bad[2] is line 3; column 14 is the `"` after `{"ev":"step" ` where a `,` was due.
    assert!(err.contains("malformed.jsonl:3:14: malformed trace: not JSON"), "{err}");

    // An action that is not valid for the run: exit 2 naming the field and accepted values.
    let step = lines.iter().position(|l| l.starts_with("{\"ev\":\"step\"")).unwrap();
    let mut bad = lines.clone();
    let weird = lines[step].replace("\"to\":\"private\"", "\"to\":\"sideways\"");
    bad[step] = &weird;
    std::fs::write(&m, bad.join("\n") + "\n").unwrap();
    let r = snpsim(&["replay", s(&m)]);
    assert_eq!(r.status.code(), Some(2));
    let err = text(&r.stderr);
    assert!(
        err.contains(&format!("malformed.jsonl:{}:1:", step + 1))
            && err.contains("accepted: private, shared"),
        "{err}"
    );

    // The Chrome file instead of the JSONL one: the message says which file replay wants.
    let c = d.join("t.json");
    let r =
        snpsim(&["run", &example("05-npt-demote-thp.toml"), "--trace", s(&c), "--trace-format", "chrome"]);
    assert_eq!(r.status.code(), Some(0));
    let r = snpsim(&["replay", s(&c)]);
    assert_eq!(r.status.code(), Some(2));
    assert!(
        text(&r.stderr).contains("t.json:1:1: malformed trace: this is a Chrome/Perfetto trace"),
        "{}",
        text(&r.stderr)
    );

    // Missing file.
    let r = snpsim(&["replay", s(&d.join("nope.jsonl"))]);
    assert_eq!(r.status.code(), Some(2));
    assert!(text(&r.stderr).contains("nope.jsonl: cannot read the trace"), "{}", text(&r.stderr));
}

#[test]
fn compare_runs_a_matrix_in_a_stable_order() {
    let file = example("05-npt-demote-thp.toml");
    let r = snpsim(&[
        "compare",
        &file,
        "--policies",
        "npt-demote,gmem",
        "--backings",
        "all",
        "--guests",
        "linux,4k",
        "--json",
    ]);
    assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
    let runs: Vec<Value> = serde_json::from_slice::<Value>(&r.stdout).unwrap().as_array().unwrap().clone();
    // npt-demote × 3 legacy backings × 2 guests, then gmem × 2 gmem backings × 2 guests: the 1G
    // backings need a whole number of 1 GiB pages, which this 16 MiB guest is not.
    assert_eq!(runs.len(), 3 * 2 + 2 * 2);
    let keys: Vec<(String, String, String)> = runs
        .iter()
        .map(|r| {
            (
                r["policy"].as_str().unwrap().into(),
                r["backing"].as_str().unwrap().into(),
                r["guest"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(keys[0], ("npt-demote".into(), "anon-4k".into(), "linux".into()));
    assert_eq!(keys[1], ("npt-demote".into(), "anon-4k".into(), "4k".into()));
    assert_eq!(keys[6], ("gmem".into(), "gmem-4k".into(), "linux".into()));
    // The linux preset brings its own 2m granularity; `4k` only changes the granularity.
    assert_eq!(runs[0]["granularity"], "2m");
    assert_eq!(runs[1]["granularity"], "4k");
    assert!(runs.iter().all(|r| r["metrics"]["invariant_violations"] == 0));
    let err = text(&r.stderr);
    assert!(err.contains("note: skipped npt-demote on gmem-4k: the policy is of the legacy era"), "{err}");
    assert!(
        err.contains("note: skipped npt-demote on hugetlbfs-1g with guest linux: ")
            && err.contains("vm.memory"),
        "{err}"
    );

    // Wide enough for the table in one piece (at the default 100 columns its metric columns are
    // dealt into panels, each repeating the policy rows).
    let table = Command::new(env!("CARGO_BIN_EXE_snpsim"))
        .env("COLUMNS", "250")
        .args(["compare", &file, "--policies", "all", "--backings", "thp,gmem-2m"])
        .output()
        .unwrap();
    assert_eq!(table.status.code(), Some(0), "{}", text(&table.stderr));
    let out = text(&table.stdout);
    assert!(out.contains("policy") && out.contains("guest") && out.contains("sizem"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("npt-demote") && l.contains(" 4k ")), "{out}");
    // Each policy on the one backing of its era here: rfc-host-split on thp, gmem on gmem-2m.
    assert_eq!(
        out.lines().filter(|l| l.starts_with("rfc-host-split") || l.starts_with("gmem ")).count(),
        2,
        "{out}"
    );

    let csv = snpsim(&["compare", &file, "--guests", "all", "--csv"]);
    assert_eq!(csv.status.code(), Some(0), "{}", text(&csv.stderr));
    let csv = text(&csv.stdout);
    assert!(csv.starts_with("scenario,policy,backing,granularity,guest,outcome,"), "{csv}");
    // The header and one row per guest preset (linux, linux-2021, coconut-svsm, oak-stage0).
    assert_eq!(csv.lines().count(), 5, "{csv}");
}

#[test]
fn every_error_class_exits_2_with_a_located_message_and_no_output() {
    let d = temp_dir("errors");
    let file = example("05-npt-demote-thp.toml");
    // Bad arguments: an unknown policy in a list names the item and the accepted values.
    let r = snpsim(&["compare", &file, "--policies", "npt-demote,npt-promote"]);
    assert_eq!(r.status.code(), Some(2));
    let err = text(&r.stderr);
    assert!(err.contains("--policies: item 2 is \"npt-promote\"; accepted: all, or a comma-separated list of rfc-host-split"), "{err}");
    assert_eq!(text(&r.stdout), "");
    let r = snpsim(&["compare", &file, "--guests", "windows"]);
    assert_eq!(r.status.code(), Some(2));
    assert!(
        text(&r.stderr).contains("linux, linux-2021, coconut-svsm, oak-stage0 (presets) or 4k, 2m"),
        "{}",
        text(&r.stderr)
    );
    // An explicitly requested combination that cannot run is an error, not a skip.
    let r = snpsim(&["compare", &file, "--backings", "hugetlbfs-1g"]);
    assert_eq!(r.status.code(), Some(2));
    assert!(text(&r.stderr).contains("vm.memory"), "{}", text(&r.stderr));
    // A bad --set.
    let r = snpsim(&["run", &file, "--set", "vm.backing"]);
    assert_eq!(r.status.code(), Some(2));
    assert!(text(&r.stderr).contains("--set:1:1: expected KEY=VALUE"), "{}", text(&r.stderr));
    let r = snpsim(&["run", &file, "--trace-format", "svg"]);
    assert_eq!(r.status.code(), Some(2));
    assert!(text(&r.stderr).contains("possible values: jsonl, chrome"), "{}", text(&r.stderr));
    // --out on a file: nothing runs, nothing is written.
    let not_dir = d.join("file");
    std::fs::write(&not_dir, "x").unwrap();
    let r = snpsim(&["run", &file, "--out", s(&not_dir)]);
    assert_eq!(r.status.code(), Some(2));
    assert!(text(&r.stderr).contains("exists and is not a directory"), "{}", text(&r.stderr));
    assert_eq!(text(&r.stdout), "");
    // A bad scenario with --out: no directory, no file.
    let bad = d.join("bad.toml");
    std::fs::write(&bad, "name = \"x\"\n[machine]\nhost_memory = \"16GiB\"\n[vm]\nmemory = \"4GiB\"\npolicy = \"foo\"\nbacking = \"thp\"\n").unwrap();
    let out = d.join("never");
    let r = snpsim(&["run", s(&bad), "--out", s(&out)]);
    assert_eq!(r.status.code(), Some(2));
    assert!(text(&r.stderr).contains("bad.toml:6:10: field `vm.policy`"), "{}", text(&r.stderr));
    assert!(!out.exists());
    // No temporary files are left behind anywhere.
    assert!(files_in(&d).iter().all(|f| !f.contains(".tmp-")), "{:?}", files_in(&d));
}

#[test]
fn a_failed_expectation_prints_the_seed_and_the_command_that_reproduces_it() {
    let d = temp_dir("expect");
    let f = d.join("s.toml");
    let text_in = std::fs::read_to_string(example("05-npt-demote-thp.toml"))
        .unwrap()
        .replace("host_splits = 0", "host_splits = 3");
    std::fs::write(&f, text_in).unwrap();
    let out = d.join("o");
    let r = snpsim(&[
        "run",
        s(&f),
        "--set",
        "guest.psc_protocol=msr",
        "--seed",
        "9",
        "--out",
        s(&out),
        "--with-trace",
    ]);
    assert_eq!(r.status.code(), Some(1));
    let err = text(&r.stderr);
    assert!(err.contains("expected host_splits ==3, got 0"), "{err}");
    assert!(
        err.contains(&format!(
            "seed 9; reproduce with: snpsim run {} --set guest.psc_protocol=msr --seed 9 --check incremental",
            s(&f)
        )),
        "{err}"
    );
    assert!(err.contains(&format!("snpsim replay {}", s(&out.join("trace.jsonl")))), "{err}");
    // The failure is a result: the files are all there.
    assert_eq!(files_in(&out), ["report.html", "results.json", "trace.jsonl"]);
}

#[test]
fn every_command_has_help_with_an_example() {
    for cmd in [
        vec!["--help"],
        vec!["run", "--help"],
        vec!["compare", "--help"],
        vec!["replay", "--help"],
        vec!["list", "--help"],
        vec!["report", "--help"],
        vec!["sweep", "--help"],
        vec!["merge", "--help"],
    ] {
        let r = snpsim(&cmd);
        assert_eq!(r.status.code(), Some(0), "{cmd:?}");
        let out = text(&r.stdout);
        assert!(out.contains("Example"), "{cmd:?}: {out}");
        assert!(out.contains("snpsim "), "{cmd:?}: {out}");
    }
}

#[test]
fn out_and_trace_together_get_the_same_traces() {
    let d = temp_dir("both");
    let file = example("08-host-writes-still-fault.toml");
    for format in ["jsonl", "chrome"] {
        let (out, t) = (d.join(format!("o-{format}")), d.join(format!("t.{format}")));
        let r = snpsim(&["run", &file, "--out", s(&out), "--trace", s(&t), "--trace-format", format]);
        assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
        let same = if format == "jsonl" { out.join("trace.jsonl") } else { out.join("trace.json") };
        let (a, b) = (std::fs::read(&t).unwrap(), std::fs::read(same).unwrap());
        assert!(!a.is_empty());
        assert_eq!(a, b, "{format}");
        assert!(!std::fs::read(out.join("trace.jsonl")).unwrap().is_empty());
    }
}

#[test]
fn progress_bars_only_on_a_terminal_and_never_with_quiet() {
    let f = example("05-npt-demote-thp.toml");
    let args =
        ["compare", f.as_str(), "--policies", "npt-demote,rfc-host-split", "--backings", "thp,hugetlbfs-2m"];
    // Not a terminal (captured): no bar.
    let r = snpsim(&args);
    assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
    assert!(!text(&r.stderr).contains("eta"), "{}", text(&r.stderr));
    // A terminal: `script` (util-linux) gives the command a pseudo-terminal.
    if !Command::new("script").arg("--version").output().is_ok_and(|o| o.status.success()) {
        eprintln!("SKIPPED the terminal half: no `script` (util-linux) to make a pseudo-terminal");
        return;
    }
    let on_tty = |extra: &str| -> String {
        let cmd = format!("{} {} --jobs 1 {extra}", env!("CARGO_BIN_EXE_snpsim"), args.join(" "));
        let o = Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
        text(&o.stdout)
    };
    // 2 policies × 2 backings = 4 runs.
    let shown = on_tty("");
    assert!(shown.contains("/4 runs"), "a bar on a terminal: {shown:?}");
    let quiet = on_tty("--quiet");
    assert!(!quiet.contains("/4 runs"), "no bar with --quiet: {quiet:?}");
    assert!(quiet.contains("4 runs"), "{quiet:?}");
}

/// BENCHMARKS.md's tables are generated: the block between its markers is exactly what
/// `snpsim bench --markdown bench/results.json` prints for the committed `snpsim bench --json`
/// document, so no figure in it was typed by hand or projected.
#[test]
fn benchmarks_md_tables_are_generated_from_the_committed_bench_json() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = snpsim(&["bench", "--markdown", s(&root.join("bench/results.json"))]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let generated = text(&out.stdout);
    let doc = std::fs::read_to_string(root.join("BENCHMARKS.md")).unwrap();
    let begin = doc.find("<!-- generated by `snpsim bench --markdown`").expect("the generated block's start");
    let end_marker = "<!-- end of generated tables -->\n";
    let end = doc.find(end_marker).expect("the generated block's end") + end_marker.len();
    assert_eq!(&doc[begin..end], generated, "regenerate: snpsim bench --markdown bench/results.json");
    // The three counts are separate columns, and the document names its commit and machine.
    assert!(
        generated.contains("| RMP instructions |") && generated.contains("| #NPF exits |"),
        "{generated}"
    );
    assert!(generated.contains("| 4K pages named by PSC |"), "{generated}");
    assert!(generated.contains("**Measured**: commit "), "{generated}");
}

#[test]
fn bench_markdown_refuses_a_file_that_is_not_a_bench_document() {
    let d = temp_dir("bench_markdown_refuses");
    let f = d.join("old.json");
    // The format before the counts were separated: a bare array with one `page_ops` figure
    // (accept-1t-2m's: 1,049,600 RMP instructions + 268,697,600 PSC pages).
    std::fs::write(&f, r#"[{"name": "accept-1t-2m", "page_ops": 269747200}]"#).unwrap();
    let out = snpsim(&["bench", "--markdown", s(&f)]);
    assert_ne!(out.status.code(), Some(0));
    assert!(text(&out.stderr).contains("snpsim-bench/2"), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
}

#[test]
fn bench_refuses_an_unknown_benchmark_with_exit_2_naming_the_suite() {
    let out = snpsim(&["bench", "--only", "accept-2t"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("unknown benchmark \"accept-2t\""), "{err}");
    assert!(err.contains("accept-1t-2m, accept-1t-4k, fragment-1t, steady-64g, sweep-1000"), "{err}");
    assert!(out.stdout.is_empty());
}
