//! Interleaved vCPUs (`[vm] interleave`): one vCPU interleaved is the sequential run, races occur
//! and are absorbed the way KVM absorbs them, and an interleaved run is reproducible from its seed
//! and replays from its trace.

use snpsim_engine::engine::CheckMode;
use snpsim_scenario::run::run_scenario_traced;
use snpsim_scenario::{Scenario, Step, StepOp, load_scenario, load_scenario_with_overrides};
use snpsim_trace::TraceMeta;
use snpsim_trace::replay::replay;

fn example(rel: &str) -> std::path::PathBuf {
    crate::common::repo("examples").join(rel)
}

fn with(rel: &str, seed: u64) -> Scenario {
    let seed = seed.to_string();
    load_scenario_with_overrides(&example(rel), &[("seed", seed.as_str())]).unwrap()
}

fn metrics_json(s: &Scenario) -> (String, serde_json::Value, Vec<String>) {
    let run = run_scenario_traced(s, CheckMode::Full, None).unwrap();
    (
        run.result.outcome.name().to_string(),
        serde_json::to_value(&run.result.metrics).unwrap(),
        run.result.violations,
    )
}

#[test]
fn one_vcpu_interleaved_is_the_sequential_run() {
    // Every scripted debate example: the same outcome, metrics and findings, whether the guest's
    // operations run to completion or tick by tick (PSC ranges one per tick, PSMASH after its
    // lookup): with one vCPU nothing can come between the ticks. A barrier after every step keeps
    // the host's steps where the file puts them (otherwise the scheduler may move them).
    let dir = example("debate");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut compared = 0;
    for f in files.iter().filter(|f| f.extension().is_some_and(|e| e == "toml")) {
        let s = load_scenario(f).unwrap();
        if !s.vm.adversary.is_empty() || s.vm.vcpus != 1 {
            continue;
        }
        let mut inter = s.clone();
        inter.vm.interleave = true;
        inter.steps = s
            .steps
            .iter()
            .flat_map(|st| [st.clone(), Step { line: st.line, vcpu: 0, op: StepOp::Barrier }])
            .collect();
        assert_eq!(metrics_json(&s), metrics_json(&inter), "{}", f.display());
        compared += 1;
    }
    // All 16 of examples/debate/ qualify today (one vCPU, no adversary); the bound catches a
    // filter that lost most of them.
    assert!(compared >= 10, "only {compared} examples compared");
}

#[test]
fn races_occur_and_are_absorbed_over_seeds() {
    // Over 32 seeds each race KVM tolerates shows up, and none ends a run or breaks an invariant:
    // two PSMASHes of one entry (one finds the other in flight, or finds the entry already 4K),
    // a PSC range meeting another CPU's in-flight RMPUPDATE, and instructions faulting inside a
    // window.
    let mut seen = std::collections::BTreeMap::<String, u64>::new();
    for rel in ["races/01-psmash-vs-psmash.toml", "races/02-psc-vs-psc.toml"] {
        for seed in 1..=32 {
            let s = with(rel, seed);
            let run = run_scenario_traced(&s, CheckMode::Full, None).unwrap();
            assert_eq!(run.result.outcome.name(), "completed", "{rel} seed {seed}: {}", run.result.detail);
            assert!(run.result.violations.is_empty(), "{rel} seed {seed}: {:?}", run.result.violations);
            assert_eq!(run.result.metrics.false_negatives, 0);
            for (k, v) in &run.result.metrics.races {
                *seen.entry(k.clone()).or_default() += v;
            }
        }
    }
    for race in ["psmash_fail_inuse", "psmash_already_4k", "rmpupdate_fail_inuse", "spurious_npf"] {
        assert!(seen.get(race).copied().unwrap_or(0) > 0, "{race} never occurred: {seen:?}");
    }
}

#[test]
fn both_psmash_orders_end_in_the_same_rmp_state() {
    // Whichever vCPU wins, the region ends smashed with both pages rescinded: the guest state the
    // metrics summarise is the same for every seed.
    let mut ends = std::collections::BTreeSet::new();
    for seed in 1..=16 {
        let s = with("races/01-psmash-vs-psmash.toml", seed);
        let run = run_scenario_traced(&s, CheckMode::Full, None).unwrap();
        let m = &run.result.metrics;
        ends.insert((m.pvalidate, format!("{:?}", m.npt_coverage), m.data_loss_pages));
    }
    assert_eq!(ends.len(), 1, "{ends:?}");
}

#[test]
fn a_seed_fixes_the_interleaving_and_the_trace_replays() {
    let meta = TraceMeta { scenario: "race".into(), source: "test".into(), ..TraceMeta::default() };
    let s = with("races/02-psc-vs-psc.toml", 11);
    let a = run_scenario_traced(&s, CheckMode::Full, Some(&meta)).unwrap().result.trace.unwrap();
    let b = run_scenario_traced(&s, CheckMode::Full, Some(&meta)).unwrap().result.trace.unwrap();
    assert_eq!(a, b, "same seed, same trace");
    let text = String::from_utf8(a).unwrap();
    assert!(text.contains(r#""op":"tick""#));
    let summary = replay(&text).unwrap();
    assert_eq!(summary.runs, 1);
    let other = with("races/02-psc-vs-psc.toml", 12);
    let c = run_scenario_traced(&other, CheckMode::Full, Some(&meta)).unwrap().result.trace.unwrap();
    assert_ne!(text.as_bytes(), &c[..], "another seed, another interleaving");
}

#[test]
fn interleaved_workloads_keep_every_invariant_after_every_tick() {
    // Four vCPUs boot and run a steady workload with conversions and host writes, every policy
    // on its typical backings, invariants checked after every tick: races happen, nothing breaks.
    let base = r#"name = "interleaved workload"
[machine]
host_memory = "64MiB"
[vm]
memory = "8MiB"
vcpus = 4
policy = "gmem"
backing = "gmem-2m"
interleave = true
[guest]
preset = "linux"
[workload]
phases = [ { kind = "boot" }, { kind = "steady", duration = "4ms", working_set = "4MiB", conversions_per_s = 2000, host_writes_per_s = 5000 } ]
"#;
    let configs = [
        ("gmem", "gmem-2m", "completed"),
        ("gmem", "gmem-4k", "completed"),
        ("npt-demote", "thp", "completed"),
        ("rfc-host-split", "thp", "completed"),
        ("npt-demote", "hugetlbfs-2m", "completed"),
        ("fail-psc-hugetlbfs", "hugetlbfs-2m", "guest_terminated"),
    ];
    // Independent runs (each single-threaded and checked after every tick: seconds in the test
    // profile), one thread each, so that the binary's long tail uses both cores. An 8 MiB guest:
    // at 16 MiB this test was two minutes of the binary's two and a half, for the same races
    // (three of the runs race at 8 MiB too, as `races > 0` demands).
    let races: u64 = std::thread::scope(|scope| {
        let runs: Vec<_> = configs
            .iter()
            .map(|&(policy, backing, outcome)| {
                scope.spawn(move || {
                    let seed = "1";
                    let s = snpsim_scenario::parse_scenario_with_overrides(
                        "<test>",
                        base,
                        &[("vm.policy", policy), ("vm.backing", backing), ("seed", seed)],
                    )
                    .unwrap();
                    let run = run_scenario_traced(&s, CheckMode::Full, None).unwrap();
                    let what = format!("{policy} {backing} seed {seed}: {}", run.result.detail);
                    assert_eq!(run.result.outcome.name(), outcome, "{what}");
                    assert!(run.result.violations.is_empty(), "{what}: {:?}", run.result.violations);
                    run.result.metrics.races.values().sum::<u64>()
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).sum()
    });
    assert!(races > 0);
}

/// The `(vcpu, actor, rc)` of every `ev` line of a JSONL trace.
fn events(trace: &str, ev: &str) -> Vec<(serde_json::Value, String, serde_json::Value)> {
    trace
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["ev"] == ev)
        .map(|v| (v["vcpu"].clone(), v["actor"].as_str().unwrap_or("").to_string(), v["rc"].clone()))
        .collect()
}

#[test]
fn kvm_s_psmash_and_rmpupdates_in_later_ticks_are_kvm_s_on_the_vcpu() {
    // Every event's actor is the one who executed it: the PSMASH KVM decided on in an #NPF's
    // handling runs in a later tick of the vCPU (E-multi), and a page-state change's later ranges
    // in later ticks; both are KVM's, on that vCPU, never the guest's.
    let meta = TraceMeta { scenario: "race".into(), source: "test".into(), ..TraceMeta::default() };
    let s = with("races/01-psmash-vs-psmash.toml", 1);
    let text = String::from_utf8(
        run_scenario_traced(&s, CheckMode::Full, Some(&meta)).unwrap().result.trace.unwrap(),
    )
    .unwrap();
    let psmash = events(&text, "psmash");
    // Seed 1 (the example's `[expect]`): both vCPUs PSMASH; the second finds the entry already 4K
    // (psmash_already_4k = 1), which PSMASH answers with 7, FAIL_UNSUPPORTED.
    let rcs: Vec<_> = psmash.iter().map(|(_, _, rc)| rc.as_str().unwrap()).collect();
    assert_eq!(rcs, ["SUCCESS", "FAIL_UNSUPPORTED"]);
    let vcpus: std::collections::BTreeSet<_> = psmash.iter().map(|(v, _, _)| v.as_u64().unwrap()).collect();
    assert_eq!(vcpus, [0, 1].into(), "each on the vCPU whose #NPF decided it");
    assert!(psmash.iter().all(|(_, a, _)| a == "kvm"), "{psmash:?}");
    for seed in 1..=8 {
        for rel in ["races/01-psmash-vs-psmash.toml", "races/02-psc-vs-psc.toml"] {
            let s = with(rel, seed);
            let trace = run_scenario_traced(&s, CheckMode::Full, Some(&meta)).unwrap().result.trace.unwrap();
            let text = String::from_utf8(trace).unwrap();
            for ev in ["psmash", "rmpupdate"] {
                let all = events(&text, ev);
                assert!(!all.is_empty() || ev == "psmash", "{rel} seed {seed}: no {ev}");
                for (vcpu, actor, _) in all {
                    assert_eq!(actor, "kvm", "{rel} seed {seed}: {ev} on {vcpu}");
                    assert!(vcpu.is_u64(), "{rel} seed {seed}: {ev} of KVM handling a vCPU");
                }
            }
            assert!(events(&text, "pvalidate").iter().all(|(_, a, _)| a == "guest"), "{rel} seed {seed}");
        }
    }
}
