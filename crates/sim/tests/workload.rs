//! Generated workloads (`[workload]`, `docs/semantics.md` G8), guest presets, the `[cost]` table and data
//! integrity across re-coalescing.

use std::fmt::Write as _;

use proptest::prelude::*;
use snpsim_sim::engine::CheckMode;
use snpsim_sim::run::{run_scenario, run_steps_and_workload, sim_config};
use snpsim_sim::scenario::{Backing, Phase, Policy, Preset, TouchPattern, parse_scenario};
use snpsim_sim::workload::steps_toml;
use snpsim_sim::{Action, Simulation};

const MIB: u64 = 1 << 20;

fn scenario_text(policy: &str, backing: &str, memory: &str, guest: &str, workload: &str) -> String {
    format!(
        "name = \"t\"\nseed = 5\n[machine]\nhost_memory = \"8GiB\"\n[vm]\nmemory = \"{memory}\"\n\
         policy = \"{policy}\"\nbacking = \"{backing}\"\n[guest]\n{guest}\n[workload]\nphases = [{workload}]\n"
    )
}

/// Run a scenario's steps and workload, recording the generated actions.
fn run_recorded(text: &str) -> (snpsim_sim::RunResult, Vec<Action>) {
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
    let i = snpsim_sim::cost::index_of("pvalidate_4k").unwrap();
    assert_eq!(s.cost.get(i), 7);
    assert_eq!(s.cost.get(snpsim_sim::cost::index_of("page_clear_kib").unwrap()), 1);
    let e = parse_scenario("t.toml", &format!("{base}[cost]\npvalidate = 7\n")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("t.toml:9:1: field `cost.pvalidate`: unknown cost parameter; accepted: vmgexit,")
    );
    let e = parse_scenario("t.toml", &format!("{base}[cost]\nnpf_exit = -1\n")).unwrap_err();
    assert!(e.to_string().contains("a cost is a number >= 0 (ns)"), "{e}");
    let e = parse_scenario("t.toml", &format!("{base}[expect]\nsim_time_ns = {{ nope = 1 }}\n")).unwrap_err();
    assert!(e.to_string().contains("unknown cost item \"nope\" of sim_time_ns; accepted: vmgexit"), "{e}");
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
    for &preset in Preset::ALL {
        for &policy in Policy::ALL {
            for backing in Backing::of_era(policy.era()) {
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
                let expected = match (policy, backing.is_hugetlbfs()) {
                    (Policy::RefuseHugetlbfs, true) => "vm_rejected",
                    (Policy::FailPscHugetlbfs, true) => "guest_terminated",
                    _ => "completed",
                };
                assert_eq!(run.result.outcome.name(), expected, "{what}: {}", run.result.reason);
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
    assert_eq!(run.outcome.name(), "completed", "{}", run.reason);
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
            prop_assert_eq!(run.result.outcome.name(), "completed", "{}", run.result.reason);
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
            let s = snpsim_sim::scenario::load_scenario(&p).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(s.vm.memory, 64 << 30, "{}", p.display());
            n += 1;
        }
    }
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
    let meta = snpsim_sim::trace::TraceMeta::for_scenario(&s, "t.toml", 0);
    let run = snpsim_sim::run::run_scenario_traced(&s, CheckMode::Incremental, Some(&meta)).unwrap();
    let trace = String::from_utf8(run.result.trace.clone().unwrap()).unwrap();
    assert!(trace.lines().next().unwrap().contains("\"costs\":{\"guest_access_2m\":100,\"npf_exit\":2500}"));
    let summary = snpsim_sim::replay::replay(&trace).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(summary.runs, 1);
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
        prop_assert_eq!(run.outcome.name(), "completed", "{}", run.reason);
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
    let meta = snpsim_sim::trace::TraceMeta::for_scenario(&s, "t.toml", 0);
    let run = snpsim_sim::run::run_scenario_traced(&s, CheckMode::Incremental, Some(&meta)).unwrap();
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
