//! Traces and replay: every example and every run of the embedded debate matrix replays, traces are
//! byte-identical across runs, and a corrupted trace fails at the corrupted line.

use std::path::{Path, PathBuf};

use snpsim_sim::debate::{matrix, matrix_scenario};
use snpsim_sim::engine::CheckMode;
use snpsim_sim::replay::{ReplayError, replay};
use snpsim_sim::run::run_scenario_traced;
use snpsim_sim::scenario::{Scenario, load_scenario, parse_scenario};
use snpsim_sim::trace::TraceMeta;

fn scenario_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
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

#[test]
fn matrix_runs_replay_in_one_file() {
    let mut text = String::new();
    for (i, (p, b, g)) in matrix().into_iter().enumerate() {
        let source = format!("<embedded {}/{}/{}>", p.name(), b.name(), g.name());
        let s = parse_scenario(&source, &matrix_scenario(p, b, g)).unwrap();
        text.push_str(&trace_of(&s, &source, i as u64));
    }
    let summary = replay(&text).unwrap();
    assert_eq!(summary.runs, matrix().len());
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
