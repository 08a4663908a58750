//! Generated workloads (`[workload]`, `docs/semantics.md` G8), guest presets, the `[cost]` table and data
//! integrity across re-coalescing.

use std::fmt::Write as _;

use proptest::prelude::*;
use snpsim_engine::engine::CheckMode;
use snpsim_engine::{Action, Simulation};
use snpsim_scenario::run::{run_scenario, run_steps_and_workload, sim_config};
use snpsim_scenario::workload::steps_toml;
use snpsim_scenario::{Backing, Named, Phase, Preset, TouchPattern, TraceMetaExt, parse_scenario};

const MIB: u64 = 1 << 20;

fn scenario_text(policy: &str, backing: &str, memory: &str, guest: &str, workload: &str) -> String {
    format!(
        "name = \"t\"\nseed = 5\n[machine]\nhost_memory = \"8GiB\"\n[vm]\nmemory = \"{memory}\"\n\
         policy = \"{policy}\"\nbacking = \"{backing}\"\n[guest]\n{guest}\n[workload]\nphases = [{workload}]\n"
    )
}

/// Run a scenario's steps and workload, recording the generated actions.
fn run_recorded(text: &str) -> (snpsim_engine::RunResult, Vec<Action>) {
    let s = parse_scenario("t.toml", text).unwrap_or_else(|e| panic!("{e}"));
    let mut sim = Simulation::new(sim_config(&s, CheckMode::Incremental)).unwrap();
    sim.set_costs(s.cost);
    let mut actions = Vec::new();
    let (result, _) = run_steps_and_workload(sim, &s, Some(&mut actions));
    (result, actions)
}

#[test]
fn cost_table_overrides_and_rejects_unknown_names() {
    let base = "name = \"t\"\n[machine]\nhost_memory = \"1GiB\"\n[vm]\nmemory = \"64MiB\"\n\
                policy = \"npt-demote\"\nbacking = \"thp\"\n";
    let s =
        parse_scenario("t.toml", &format!("{base}[cost]\npvalidate_4k = 7\npage_clear_kib = 0.6\n")).unwrap();
    let i = snpsim_engine::cost::index_of("pvalidate_4k").unwrap();
    assert_eq!(s.cost.get(i), 7);
    assert_eq!(s.cost.get(snpsim_engine::cost::index_of("page_clear_kib").unwrap()), 1);
    let e = parse_scenario("t.toml", &format!("{base}[cost]\npvalidate = 7\n")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("t.toml:9:1: field `cost.pvalidate`: unknown cost parameter; accepted: vmgexit,")
    );
    let e = parse_scenario("t.toml", &format!("{base}[cost]\nnpf_exit = -1\n")).unwrap_err();
    assert!(e.to_string().contains("a cost is a number >= 0 (ns)"), "{e}");
    let e = parse_scenario("t.toml", &format!("{base}[expect]\nsim_time_ns = {{ nope = 1 }}\n")).unwrap_err();
    assert!(e.to_string().contains("unknown cost item \"nope\" of `sim_time_ns`; accepted: vmgexit"), "{e}");
    let ok = parse_scenario("t.toml", &format!("{base}[expect]\nsim_time_ns = {{ guest_access_4k = 0 }}\n"));
    assert!(ok.is_ok());
}

#[test]
fn workload_phases_parse() {
    let text = scenario_text(
        "gmem",
        "gmem-2m",
        "1GiB",
        "",
        "{ kind = \"boot\" }, { kind = \"steady\", duration = \"1ms\", touch = \"hotset\" }, \
         { kind = \"balloon\", size = \"64MiB\" }",
    );
    let s = parse_scenario("t.toml", &text).unwrap();
    let phases = &s.workload.as_ref().unwrap().phases;
    assert!(
        matches!(phases[1], Phase::Steady(p) if p.touch == TouchPattern::Hotset && p.working_set == 1 << 30)
    );
    assert!(matches!(phases[2], Phase::Balloon(b) if b.size == 64 * MIB));
    let bad = scenario_text("gmem", "gmem-2m", "1GiB", "", "{ kind = \"kexec\" }");
    let e = parse_scenario("t.toml", &bad).unwrap_err();
    assert!(e.to_string().contains("accepted: boot, steady, balloon"), "{e}");
    let bad = scenario_text(
        "gmem",
        "gmem-2m",
        "1GiB",
        "",
        "{ kind = \"steady\", duration = \"1ms\", touch = \"zigzag\" }",
    );
    let e = parse_scenario("t.toml", &bad).unwrap_err();
    assert!(e.to_string().contains("accepted: sequential, random, hotset"), "{e}");
}

/// A workload's generated actions, written out as `[[step]]`s and run as a scripted scenario, give
/// identical metrics.
#[test]
fn generated_actions_replay_as_steps_with_identical_metrics() {
    for (policy, backing, guest) in [
        ("gmem", "gmem-4k", "preset = \"linux\""),
        ("npt-demote", "hugetlbfs-2m", "preset = \"linux\"\nrecoalesce = \"save-restore\""),
        ("rfc-host-split", "thp", "preset = \"linux-2021\""),
    ] {
        let text = scenario_text(
            policy,
            backing,
            "256MiB",
            guest,
            "{ kind = \"boot\" }, { kind = \"steady\", duration = \"2ms\", working_set = \"64MiB\", \
             conversions_per_s = 4000, host_writes_per_s = 20000, touch = \"random\" }, \
             { kind = \"balloon\", size = \"32MiB\" }",
        );
        let (generated, actions) = run_recorded(&text);
        // The steady phase alone plans 2 ms × 8 000 000/s = 16 000 touches, 8 conversions and 40
        // host writes; the bound only makes sure the replay has a real workload to reproduce.
        assert!(actions.len() > 500, "{policy}: only {} actions", actions.len());
        let replay = text.split("[workload]").next().unwrap().to_string() + &steps_toml(&actions);
        let s = parse_scenario("replay.toml", &replay).unwrap_or_else(|e| panic!("{e}"));
        assert!(s.workload.is_none());
        let scripted = run_scenario(&s, CheckMode::Incremental).unwrap();
        assert_eq!(scripted.result.metrics, generated.metrics, "{policy} {backing}");
        assert_eq!(scripted.result.outcome, generated.outcome);
        assert!(generated.violations.is_empty(), "{:?}", generated.violations);
    }
}

#[test]
fn the_seed_decides_the_run() {
    let text = |seed: u64| {
        scenario_text(
            "gmem",
            "gmem-2m",
            "256MiB",
            "",
            "{ kind = \"boot\" }, { kind = \"steady\", duration = \"1ms\", conversions_per_s = 5000, \
             host_writes_per_s = 5000 }",
        )
        .replace("seed = 5", &format!("seed = {seed}"))
    };
    let a = run_recorded(&text(1));
    let b = run_recorded(&text(1));
    let c = run_recorded(&text(2));
    assert_eq!(a.1, b.1);
    assert_eq!(a.0.metrics, b.0.metrics);
    assert_ne!(a.1, c.1);
}

/// Every preset boots on every policy and backing without breaking an invariant; refusals end the
/// run the way the policy says.
#[test]
fn every_preset_boots_invariant_clean_on_every_policy() {
    for &preset in Preset::all() {
        for &policy in snpsim_scenario::policies() {
            for backing in Backing::of_policy(policy) {
                let memory =
                    if backing.page_size() == snpsim_defs::PageSize::Size1G { "1GiB" } else { "128MiB" };
                let text = scenario_text(
                    policy.name(),
                    backing.name(),
                    memory,
                    &format!("preset = \"{}\"", preset.name()),
                    "{ kind = \"boot\" }",
                );
                let s = parse_scenario("t.toml", &text).unwrap();
                let run = run_scenario(&s, CheckMode::Full).unwrap();
                let what = format!("{} on {} / {}", preset.name(), policy.name(), backing.name());
                assert!(run.result.violations.is_empty(), "{what}: {:?}", run.result.violations);
                assert_eq!(run.result.metrics.false_negatives, 0, "{what}");
                assert_eq!(run.result.metrics.data_loss_pages, 0, "{what}");
                let expected = match (policy.name(), backing.is_hugetlbfs()) {
                    ("refuse-hugetlbfs", true) => "vm_rejected",
                    ("fail-psc-hugetlbfs", true) => "guest_terminated",
                    _ => "completed",
                };
                assert_eq!(run.result.outcome.name(), expected, "{what}: {}", run.result.detail);
                let report = run.workload.unwrap();
                if expected == "completed" {
                    assert!(report.time_to_ready_ns.unwrap() > report.phases[0].end_ns, "{what}");
                }
            }
        }
    }
}

/// Lazy acceptance accepts exactly the edges, the firmware/kernel footprint, the memmap and the
/// SWIOTLB buffer at boot, then one 4 MiB chunk per first touch of unaccepted memory.
#[test]
fn lazy_boot_accepts_what_linux_accepts() {
    use snpsim_guest::BootLayout;
    let memory = 512 * MIB + 3 * 4096; // a tail that is not 2M-aligned
    let text = scenario_text(
        "gmem",
        "gmem-4k",
        &format!("{memory}"),
        "preset = \"linux\"",
        "{ kind = \"boot\" }, { kind = \"steady\", duration = \"20us\", working_set = \"256MiB\", touch = \"sequential\" }",
    );
    let (run, actions) = run_recorded(&text);
    assert_eq!(run.outcome.name(), "completed", "{}", run.detail);
    let layout = BootLayout::new(snpsim_hw::Geometry::X86, memory / 4096);
    let accepts: Vec<(u64, u64)> = actions
        .iter()
        .filter_map(|a| match *a {
            Action::Accept { gpa, pages, .. } => Some((gpa.raw() / 4096, pages)),
            _ => None,
        })
        .collect();
    let unit = 512;
    let pages = memory / 4096;
    // The EFI stub's tail, then memblock's ranges widened to 2M units, then 4 MiB chunks.
    assert_eq!(accepts[0], (pages / unit * unit, 3));
    assert_eq!(accepts[1], (0, layout.footprint.div_ceil(unit) * unit));
    let memmap_start = layout.memmap / unit * unit;
    assert_eq!(accepts[2], (memmap_start, pages / unit * unit - memmap_start));
    let swiotlb_start = layout.swiotlb / unit * unit;
    assert_eq!(accepts[3], (swiotlb_start, memmap_start - swiotlb_start));
    // Sequential touches start in the footprint (accepted) and reach unaccepted memory a chunk at a
    // time.
    for &(start, n) in &accepts[4..] {
        assert_eq!(start % (2 * unit), 0);
        assert_eq!(n, 2 * unit);
    }
    let accepted: u64 = accepts.iter().map(|&(_, n)| n).sum();
    assert_eq!(run.metrics.psc_pages, accepted + layout.swiotlb_pages);
}

/// An eager guest accepts all its memory in one go and never again.
#[test]
fn eager_boot_accepts_everything_once() {
    let text = scenario_text(
        "npt-demote",
        "thp",
        "256MiB",
        "preset = \"coconut-svsm\"",
        "{ kind = \"boot\" }, { kind = \"steady\", duration = \"50us\" }",
    );
    let (run, actions) = run_recorded(&text);
    let accepts: Vec<&Action> = actions.iter().filter(|a| matches!(a, Action::Accept { .. })).collect();
    assert_eq!(accepts.len(), 1);
    // All of guest memory: 256 MiB / 4 KiB = 65 536 pages.
    assert!(matches!(accepts[0], Action::Accept { pages, .. } if *pages == 65536));
    assert_eq!(run.outcome.name(), "completed");
}

const BASE: u64 = 0x0020_0000;

fn recoalesce_text(backing: &str, policy: &str, written: &[u64], shared: u64, mode: &str) -> String {
    let mut t = format!(
        "name = \"r\"\n[machine]\nhost_memory = \"256MiB\"\n[vm]\nmemory = \"64MiB\"\npolicy = \"{policy}\"\n\
         backing = \"{backing}\"\n[guest]\npsc_granularity = \"2m\"\n\
         [[step]]\nop = \"accept\"\ngpa = \"0x200000\"\nsize = \"2MiB\"\n"
    );
    for &p in written {
        let _ = write!(t, "[[step]]\nop = \"access\"\ngpa = \"{:#x}\"\nkind = \"write\"\n", BASE + p * 4096);
    }
    let _ = write!(
        t,
        "[[step]]\nop = \"psc\"\ngpa = \"{:#x}\"\nto = \"shared\"\n[[step]]\nop = \"psc\"\ngpa = \"{:#x}\"\nto = \"private\"\n\
         [[step]]\nop = \"recoalesce\"\ngpa = \"0x200000\"\nmode = \"{mode}\"\n",
        BASE + shared * 4096,
        BASE + shared * 4096
    );
    for &p in written {
        let _ = write!(t, "[[step]]\nop = \"access\"\ngpa = \"{:#x}\"\nkind = \"read\"\n", BASE + p * 4096);
    }
    t
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Re-coalescing a PSMASHed region: `save-restore` never loses data; `naive` loses every page
    /// the region held data in (except the one the guest itself converted, whose data its own PSC
    /// ended).
    #[test]
    fn save_restore_never_loses_data_and_naive_always_does(
        written in proptest::collection::btree_set(0u64..512, 1..12),
        shared in 0u64..512,
        which in 0usize..3,
    ) {
        let (backing, policy) = [("hugetlbfs-2m", "npt-demote"), ("thp", "npt-demote"), ("gmem-2m", "gmem")][which];
        let written: Vec<u64> = written.into_iter().collect();
        let held = written.iter().filter(|&&p| p != shared).count() as u64;
        for (mode, lost) in [("save-restore", 0), ("naive", held)] {
            let s = parse_scenario("r.toml", &recoalesce_text(backing, policy, &written, shared, mode)).unwrap();
            let run = run_scenario(&s, CheckMode::Incremental).unwrap();
            prop_assert_eq!(run.result.outcome.name(), "completed", "{}", run.result.detail);
            prop_assert_eq!(run.result.metrics.recoalesced, 1);
            prop_assert_eq!(run.result.metrics.data_loss_pages, lost, "{} {} {}", mode, backing, policy);
            prop_assert!(run.result.violations.is_empty(), "{:?}", run.result.violations);
        }
    }
}

/// The benchmark scenarios of `bench/` (BENCHMARKS.md; 64 GiB guests, timed by hand, never here)
/// parse.
#[test]
fn benchmark_scenarios_parse() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let s = snpsim_scenario::load_scenario(&p).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(s.vm.memory, 64 << 30, "{}", p.display());
            n += 1;
        }
    }
    // bench/01 to 06, the suite of BENCHMARKS.md; more may be added.
    assert!(n >= 6);
}

/// A traced run with `[cost]` overrides and a generated workload replays: the trace's header names
/// the overridden parameters.
#[test]
fn a_traced_workload_with_cost_overrides_replays() {
    let text = scenario_text(
        "npt-demote",
        "thp",
        "64MiB",
        "preset = \"linux\"",
        "{ kind = \"boot\" }, { kind = \"steady\", duration = \"200us\", conversions_per_s = 20000, \
         host_writes_per_s = 50000 }",
    ) + "[cost]\nnpf_exit = 2500\nguest_access_2m = 100\n";
    let s = parse_scenario("t.toml", &text).unwrap();
    let meta = snpsim_trace::TraceMeta::for_scenario(&s, "t.toml", 0);
    let run = snpsim_scenario::run::run_scenario_traced(&s, CheckMode::Incremental, Some(&meta)).unwrap();
    let trace = String::from_utf8(run.result.trace.clone().unwrap()).unwrap();
    assert!(trace.lines().next().unwrap().contains("\"costs\":{\"guest_access_2m\":100,\"npf_exit\":2500}"));
    let summary = snpsim_trace::replay::replay(&trace).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(summary.runs, 1);
    // The steady phase alone is 200 µs × 8 000 000/s = 1600 touches (plus 4 conversions and 10
    // host writes): the bound says the replay went through the generated steps, not just the header.
    assert!(summary.steps > 100);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    /// Lazy acceptance over guest sizes with unaligned tails and random touches: no page is
    /// accepted twice, every page the guest touches privately was accepted before, and the PSCs
    /// named exactly the accepted pages plus the SWIOTLB buffer (made shared at boot).
    #[test]
    fn lazy_acceptance_covers_exactly_what_is_touched(
        extra_pages in 0u64..1024,
        seed in 0u64..1000,
        touch in prop_oneof![Just("sequential"), Just("random"), Just("hotset")],
    ) {
        let memory = 96 * MIB + extra_pages * 4096;
        let text = scenario_text(
            "npt-demote",
            "thp",
            &format!("{memory}"),
            "preset = \"linux\"",
            &format!("{{ kind = \"boot\" }}, {{ kind = \"steady\", duration = \"40us\", touch = \"{touch}\" }}"),
        )
        .replace("seed = 5", &format!("seed = {seed}"));
        let (run, actions) = run_recorded(&text);
        prop_assert_eq!(run.outcome.name(), "completed", "{}", run.detail);
        let mut accepted = std::collections::BTreeSet::new();
        let layout = snpsim_guest::BootLayout::new(snpsim_hw::Geometry::X86, memory / 4096);
        for a in &actions {
            match *a {
                Action::Accept { gpa, pages, .. } => {
                    for p in gpa.raw() / 4096..gpa.raw() / 4096 + pages {
                        prop_assert!(accepted.insert(p), "page {:#x} accepted twice", p);
                    }
                }
                Action::Access { gpa, private: true, .. } => {
                    let page = gpa.raw() / 4096;
                    let chunk = page / 1024 * 1024;
                    // A touch of unaccepted memory is preceded by the acceptance of its chunk.
                    prop_assert!(accepted.contains(&page) || accepted.contains(&chunk), "page {:#x} touched unaccepted", page);
                }
                _ => {}
            }
        }
        let touched = actions.iter().filter(|a| matches!(a, Action::Access { private: true, .. })).count();
        prop_assert!(touched > 0 && !accepted.is_empty(), "{} touches, {} accepted", touched, accepted.len());
        prop_assert_eq!(run.metrics.psc_pages, accepted.len() as u64 + layout.swiotlb_pages);
    }
}

/// The exit reasons of a traced run's page-state changes, in order.
fn psc_exit_reasons(trace: &str) -> Vec<String> {
    trace
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["ev"] == "exit")
        .filter_map(|v| v["reason"].as_str().map(str::to_owned))
        .filter(|r| r.starts_with("vmgexit_psc"))
        .collect()
}

#[test]
fn the_2021_guest_boots_over_msr_then_in_253_entry_ghcb_requests() {
    // A 128 MiB eager guest of the 2021 series: the footprint (a quarter of a guest under
    // 256 MiB: 32 MiB = 8192 pages) is accepted before the GHCB exists, one MSR exit per page;
    // the remaining 32768 - 8192 = 24576 pages go in 4K entries, 253 per request: 97 full
    // requests and one of 24576 - 97 × 253 = 35 entries = 98; the SWIOTLB buffer (a quarter of
    // a guest under 4 × 64 MiB: 8192 pages) is made shared in ceil(8192 / 253) = 33 requests.
    let text =
        scenario_text("npt-demote", "anon-4k", "128MiB", "preset = \"linux-2021\"", "{ kind = \"boot\" }");
    let s = parse_scenario("t.toml", &text).unwrap();
    let meta = snpsim_trace::TraceMeta::for_scenario(&s, "t.toml", 0);
    let run = snpsim_scenario::run::run_scenario_traced(&s, CheckMode::Incremental, Some(&meta)).unwrap();
    let m = &run.result.metrics;
    assert_eq!(run.result.outcome.name(), "completed");
    let exits = |k: &str| m.exits.get(k).copied().unwrap_or(0);
    assert_eq!(exits("vmgexit_psc_msr"), 8192);
    assert_eq!(exits("vmgexit_psc"), 98 + 33);
    // Every page validated once at 4K (32768) and the SWIOTLB's rescinded (8192).
    assert_eq!(m.pvalidate, 32768 + 8192);
    let reasons = psc_exit_reasons(&String::from_utf8(run.result.trace.clone().unwrap()).unwrap());
    let first_ghcb = reasons.iter().position(|r| r == "vmgexit_psc").unwrap();
    assert_eq!(first_ghcb, 8192, "all MSR exits come first");
    assert!(reasons[first_ghcb..].iter().all(|r| r == "vmgexit_psc"));

    // Overriding the protocol makes every change MSR: 32768 + 8192 exits.
    let text = text.replace("preset = \"linux-2021\"", "preset = \"linux-2021\"\npsc_protocol = \"msr\"");
    let run = run_scenario(&parse_scenario("t.toml", &text).unwrap(), CheckMode::Incremental).unwrap();
    let m = &run.result.metrics;
    assert_eq!(m.exits.get("vmgexit_psc_msr"), Some(&(32768 + 8192)));
    assert_eq!(m.exits.get("vmgexit_psc").copied().unwrap_or(0), 0);
}

/// Run a scenario's steps and workload with checking off, recording the issued actions; returns the
/// result, the workload report and the actions.
fn run_with_report(
    s: &snpsim_scenario::Scenario,
) -> (snpsim_engine::RunResult, snpsim_scenario::workload::WorkloadReport, Vec<Action>) {
    let mut sim = Simulation::new(sim_config(s, CheckMode::Off)).unwrap();
    sim.set_costs(s.cost);
    let mut actions = Vec::new();
    let (result, report) = run_steps_and_workload(sim, s, Some(&mut actions));
    (result, report.expect("a workload"), actions)
}

/// The debate's realistic workload plans, in every row, `duration` × the nominal rates: 2 ms ×
/// 8 000 000 touches/s = 16 000 touches, 2 ms × 20 000/s = 40 conversions, 2 ms × 50 000/s = 100
/// host writes (`debate::workload_scenario`).
const DEBATE_PLAN: snpsim_scenario::workload::ActionCounts =
    snpsim_scenario::workload::ActionCounts { touches: 16_000, conversions: 40, host_writes: 100 };

/// Every (policy, backing) row of the debate's realistic workload, for each guest preset, performs
/// the same guest actions: the same counts and the same sequence of issued actions, whatever the
/// policy and backing; a row whose run stopped early performed a prefix of that sequence and
/// reports the rest as not performed.
#[test]
fn every_row_of_the_debate_workload_performs_the_same_guest_actions() {
    use snpsim_debate::debate::{WORKLOAD_PAIRS, WORKLOAD_PRESETS, workload_scenario};
    for &preset in WORKLOAD_PRESETS {
        let mut reference: Option<(String, Vec<Action>)> = None;
        let mut stopped = Vec::new();
        for &(policy, backing) in WORKLOAD_PAIRS {
            let what = format!("{}/{}/{}", policy.name(), backing.name(), preset.name());
            let s = parse_scenario(&what, &workload_scenario(policy, backing, preset)).unwrap();
            let (result, report, actions) = run_with_report(&s);
            assert_eq!(report.planned, DEBATE_PLAN, "{what}");
            assert_eq!(report.not_performed.total() + report.actions.total(), DEBATE_PLAN.total(), "{what}");
            if result.outcome.name() == "completed" {
                // The SWIOTLB buffer is always shared and the working set has free places: every
                // planned action had a target and was performed.
                assert_eq!(report.actions, DEBATE_PLAN, "{what}");
                assert_eq!(report.not_performed.total(), 0, "{what}");
                assert_eq!(report.no_target.total(), 0, "{what}");
                assert_eq!(report.phases_not_run, 0, "{what}");
                match &reference {
                    None => reference = Some((what, actions)),
                    Some((first, expected)) => {
                        assert_eq!(actions.len(), expected.len(), "{what} vs {first}");
                        assert!(actions == *expected, "{what} issued other actions than {first}");
                    }
                }
            } else {
                assert!(report.not_performed.total() > 0, "{what} stopped yet performed everything");
                stopped.push((what, actions));
            }
        }
        let (first, expected) = reference.expect("some row completes");
        for (what, actions) in stopped {
            assert!(expected.starts_with(&actions), "{what} is not a prefix of {first}'s actions");
        }
    }
}

/// A configuration whose steady phase is a thousand times slower performs exactly the same guest
/// actions: `duration` sizes the sequence, it does not cut it. (Before, the phase ran until
/// `duration` of simulated time had passed: with 169 µs accesses, about a dozen touches.)
#[test]
fn a_slow_configuration_performs_as_many_actions_as_a_fast_one() {
    let base = scenario_text(
        "gmem",
        "gmem-4k",
        "64MiB",
        "preset = \"linux\"\naccept = \"eager\"",
        "{ kind = \"boot\" }, { kind = \"steady\", duration = \"200us\", working_set = \"32MiB\", \
         conversions_per_s = 20000, host_writes_per_s = 50000 }",
    );
    // 200 µs × 8 000 000/s = 1600 touches, × 20 000/s = 4 conversions, × 50 000/s = 10 host writes.
    let plan = snpsim_scenario::workload::ActionCounts { touches: 1600, conversions: 4, host_writes: 10 };
    let fast = parse_scenario("fast.toml", &base).unwrap();
    // Every access through a 4K leaf (all of gmem-4k) costs 1000 × the measured 169 ns.
    let slow = parse_scenario("slow.toml", &format!("{base}[cost]\nguest_access_4k = 169000\n")).unwrap();
    let (fast_run, fast_report, fast_actions) = run_with_report(&fast);
    let (slow_run, slow_report, slow_actions) = run_with_report(&slow);
    for (run, report) in [(&fast_run, &fast_report), (&slow_run, &slow_report)] {
        assert_eq!(run.outcome.name(), "completed", "{}", run.detail);
        assert_eq!(report.planned, plan);
        assert_eq!(report.actions, plan);
    }
    assert!(fast_actions == slow_actions, "the slow run issued other actions");
    let steady = |r: &snpsim_scenario::workload::WorkloadReport| {
        let p = r.phases.iter().find(|p| p.kind == "steady").unwrap();
        p.end_ns - p.start_ns
    };
    // The slow phase lasts at least its 1600 touches × 169 µs = 270.4 ms, far beyond 200 µs.
    assert!(steady(&slow_report) >= 1600 * 169_000, "{}", steady(&slow_report));
    // Both phases also pay for the same 4 conversions (≈ 0.1 ms) and 10 host writes, whose first
    // touches of the shared VMA populate its 2M units (204.8 µs each; 7 units, 1.43 ms, with seed
    // 5): the fast phase takes 0.27 + 1.53 = 1.80 ms, the slow one 270.4 + 1.53 ms, over 100 × as
    // long (the population cost is what keeps the ratio from 1000).
    assert!(steady(&slow_report) > 100 * steady(&fast_report));
    // The time a policy and backing take does not change what the guest does either: the same
    // workload on npt-demote over anon-4k (4K leaves everywhere) and over thp.
    let legacy = |backing: &str| {
        let text =
            base.replace("\"gmem\"", "\"npt-demote\"").replace("\"gmem-4k\"", &format!("\"{backing}\""));
        run_with_report(&parse_scenario("legacy.toml", &text).unwrap())
    };
    let (_, anon, anon_actions) = legacy("anon-4k");
    let (_, thp, thp_actions) = legacy("thp");
    assert_ne!(steady(&anon), steady(&thp));
    assert_eq!(anon.actions, plan);
    assert_eq!(thp.actions, plan);
    assert!(anon_actions == thp_actions && thp_actions == fast_actions);
}

/// A run that stops counts what it did not do: a VM the policy refuses performs none of the
/// planned actions and runs none of the phases.
#[test]
fn a_stopped_run_reports_its_actions_as_not_performed() {
    let text = scenario_text(
        "refuse-hugetlbfs",
        "hugetlbfs-2m",
        "64MiB",
        "preset = \"linux\"",
        "{ kind = \"boot\" }, { kind = \"steady\", duration = \"100us\", conversions_per_s = 10000, \
         host_writes_per_s = 10000 }, { kind = \"balloon\", size = \"8MiB\" }",
    );
    let (run, report, actions) = run_with_report(&parse_scenario("t.toml", &text).unwrap());
    assert_eq!(run.outcome.name(), "vm_rejected");
    // 100 µs × 8 000 000/s = 800 touches, × 10 000/s = 1 conversion and 1 host write.
    let plan = snpsim_scenario::workload::ActionCounts { touches: 800, conversions: 1, host_writes: 1 };
    assert_eq!(report.planned, plan);
    assert_eq!(report.not_performed, plan);
    assert_eq!(report.actions.total(), 0);
    assert_eq!(report.no_target.total(), 0);
    assert!(actions.is_empty());
    // All three phases: the VM was rejected before the first.
    assert_eq!(report.phases_not_run, 3);
    assert!(report.phases.is_empty());
    assert_eq!(report.time_to_ready_ns, None);
}

/// Actions without a target are counted, not dropped: with a one-page working set, the first
/// driver buffer (if it is a 4K one) takes the only page, and it stays shared (fewer than sixteen
/// buffers are live), so the other conversions find no free place.
#[test]
fn actions_without_a_target_are_counted() {
    let text = scenario_text(
        "gmem",
        "gmem-2m",
        "64MiB",
        "preset = \"linux\"",
        "{ kind = \"boot\" }, { kind = \"steady\", duration = \"100us\", working_set = \"4KiB\", \
         conversions_per_s = 30000 }",
    );
    let (run, report, actions) = run_with_report(&parse_scenario("t.toml", &text).unwrap());
    assert_eq!(run.outcome.name(), "completed", "{}", run.detail);
    // 100 µs × 30 000/s = 3 conversions, at most one of which finds a place; 800 touches.
    assert_eq!(report.planned.conversions, 3);
    assert!(report.actions.conversions <= 1, "{:?}", report.actions);
    assert_eq!(report.actions.conversions + report.no_target.conversions, 3);
    assert_eq!(report.not_performed, report.no_target, "the run did not stop");
    assert_eq!(report.actions.touches, 800);
    let buffers =
        actions.iter().filter(|a| matches!(a, Action::Psc { private: false, pages: 1, .. })).count();
    assert_eq!(buffers as u64, report.actions.conversions);
}

/// The host clears every page it hands the guest, in both eras: a legacy VMA is preallocated at VM
/// start, so a VM that has done nothing yet has paid for clearing all of guest memory; a gmem VM
/// pays for nothing until memory is allocated; the gmem era's shared side pays when a host
/// access first populates a 2M unit of it.
#[test]
fn population_is_charged_in_both_eras() {
    let item = |m: &snpsim_engine::Metrics| m.sim_time_by_item["page_clear_kib"];
    let run = |policy: &str, backing: &str, steps: &str| {
        let text = format!(
            "name = \"p\"\n[machine]\nhost_memory = \"1GiB\"\n[vm]\nmemory = \"64MiB\"\npolicy = \"{policy}\"\n\
             backing = \"{backing}\"\n{steps}"
        );
        let r = run_scenario(&parse_scenario("p.toml", &text).unwrap(), CheckMode::Incremental).unwrap();
        assert_eq!(r.result.outcome.name(), "completed", "{}", r.result.detail);
        r.result.metrics
    };
    // A step that touches nothing the host must populate: a read of shared page 0 by the host.
    let idle = "[[step]]\nop = \"host_read\"\ngpa = \"0x0\"\nvia = \"kernel\"\n";
    // 64 MiB = 16384 pages × 4 KiB = 65536 KiB, cleared at 100 ns/KiB: 6 553 600 ns.
    for backing in ["anon-4k", "thp", "hugetlbfs-2m"] {
        let m = run("npt-demote", backing, idle);
        assert_eq!(item(&m), 16384 * 4 * 100, "{backing}");
        assert_eq!(m.sim_time_ns, item(&m), "{backing}: nothing else happened");
    }
    assert_eq!(item(&run("gmem", "gmem-2m", idle)), 0, "gmem: nothing allocated yet");
    // A VMM write to a shared page populates the 2M unit of the VMA holding it: 512 pages × 4 KiB
    // × 100 ns/KiB = 204 800 ns (the write itself allocates no guest_memfd folio).
    let write = "[[step]]\nop = \"host_write\"\ngpa = \"0x201000\"\nvia = \"vmm\"\n";
    assert_eq!(item(&run("gmem", "gmem-2m", write)), 512 * 4 * 100);
}

/// In an interleaved run the scheduler draws from the run's generator as often as the
/// configuration's busy vCPUs need; the guest actions draw from their own stream, so they stay the
/// same under every policy and backing (the vCPU each goes to included).
#[test]
fn interleaved_rows_perform_the_same_guest_actions() {
    let text = |policy: &str, backing: &str| {
        format!(
            "name = \"i\"\nseed = 3\n[machine]\nhost_memory = \"256MiB\"\n[vm]\nmemory = \"16MiB\"\nvcpus = 4\n\
             policy = \"{policy}\"\nbacking = \"{backing}\"\ninterleave = true\n[guest]\npreset = \"linux\"\n\
             [workload]\nphases = [ {{ kind = \"boot\" }}, {{ kind = \"steady\", duration = \"100us\", \
             working_set = \"8MiB\", conversions_per_s = 40000, host_writes_per_s = 50000 }} ]\n"
        )
    };
    // 100 µs × 8 000 000/s = 800 touches, × 40 000/s = 4 conversions, × 50 000/s = 5 host writes.
    let plan = snpsim_scenario::workload::ActionCounts { touches: 800, conversions: 4, host_writes: 5 };
    let mut first: Option<Vec<Action>> = None;
    for (policy, backing) in [("gmem", "gmem-2m"), ("gmem", "gmem-4k"), ("npt-demote", "thp")] {
        let (run, report, actions) =
            run_with_report(&parse_scenario("i.toml", &text(policy, backing)).unwrap());
        assert_eq!(run.outcome.name(), "completed", "{policy}/{backing}: {}", run.detail);
        assert_eq!(report.actions, plan, "{policy}/{backing}");
        // Ticks are the scheduler's, not guest actions.
        let guest: Vec<Action> = actions.into_iter().filter(|a| !matches!(a, Action::Tick { .. })).collect();
        match &first {
            None => first = Some(guest),
            Some(f) => assert!(*f == guest, "{policy}/{backing} issued other actions"),
        }
    }
}
