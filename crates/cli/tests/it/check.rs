//! `snpsim check`: exit codes, the counterexample trace, and its replay.

use crate::common::*;

#[test]
fn a_correct_configuration_passes_and_reports_its_states() {
    let out = snpsim(&[
        "check",
        "--policy",
        "npt-demote",
        "--backing",
        "hugetlbfs-2m",
        "--depth",
        "3",
        "--race-depth",
        "12",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    // Both granularities and both NPT-level settings (a legacy policy), with one vCPU and in the
    // two-vCPU race model: 2 × 2 × 2 rows.
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("npt-demote")).collect();
    assert_eq!(rows.len(), 8, "{text}");
    assert!(rows.iter().all(|r| r.contains("ok (")), "{text}");
    // Half the rows run with the NPT not capped at the RMP level (the npt≤rmp column's "no").
    assert_eq!(rows.iter().filter(|r| r.contains(" no ")).count(), 4, "{text}");
    // A race row's goals: both PSMASH races and a resolved #NPF (all four rows reach 3 today).
    assert!(rows.iter().filter(|r| r.contains("ok (3 goals")).count() >= 2, "both races reached: {text}");
}

#[test]
fn a_mutant_is_caught_with_a_replayable_counterexample() {
    let dir = temp_dir("mutant");
    let d = dir.to_str().unwrap();
    let out = snpsim(&[
        "check",
        "--policy",
        "gmem",
        "--backing",
        "gmem-2m",
        "--depth",
        "3",
        "--mutant",
        "no-zap-after-psmash",
        "--vcpus",
        "1",
        "--out",
        d,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    // The shortest counterexample (breadth first) on the tiny geometry: one 4K PSC to private, whose
    // 4K PVALIDATE inside the prefaulted folio's 2M entry is resolved by PSMASH; the mutant leaves
    // the 2M leaf over the 4K entries, which breaks invariant 3 at once.
    assert!(err.contains("\"invariants hold\" fails after 1 actions"), "{err}");
    let trace = dir.join("counterexample-gmem-gmem-2m-k4-follows-1vcpu.jsonl");
    let replay = snpsim(&["replay", trace.to_str().unwrap()]);
    assert_eq!(replay.status.code(), Some(0), "{}", String::from_utf8_lossy(&replay.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_race_mutant_is_caught_by_the_two_vcpu_model_with_a_replayable_trace() {
    let dir = temp_dir("race-mutant");
    let d = dir.to_str().unwrap();
    let out = snpsim(&[
        "check",
        "--policy",
        "npt-demote",
        "--backing",
        "hugetlbfs-2m",
        "--vcpus",
        "2",
        "--race-depth",
        "8",
        "--mutant",
        "psmash-race-fatal",
        "--out",
        d,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    // The shortest race: each vCPU starts rescinding its page (2 actions: each 4K PVALIDATE takes
    // SIZEM and KVM looks up the 2M entry), vCPU 0's PSMASH opens its window and completes (2
    // ticks), vCPU 1's opens its own and finds the entry 4K (2 ticks), which the mutant treats as
    // fatal: 6.
    assert!(err.contains("\"KVM's RMP instructions never fail\" fails after 6 actions"), "{err}");
    assert!(err.contains("Tick { vcpu: 1 }"), "{err}");
    let trace = dir.join("counterexample-npt-demote-hugetlbfs-2m-k4-host-level-2vcpu.jsonl");
    let replay = snpsim(&["replay", trace.to_str().unwrap()]);
    assert_eq!(replay.status.code(), Some(0), "{}", String::from_utf8_lossy(&replay.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The table's rows without their time and memory columns (what depends on the machine).
fn rows(stdout: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .filter(|l| l.starts_with("gmem ") || l.starts_with("npt-demote "))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            [&f[..7], &f[9..]].concat().join(" ")
        })
        .collect()
}

#[test]
fn the_table_does_not_depend_on_the_number_of_jobs_and_ends_with_a_total() {
    let args =
        ["check", "--policy", "npt-demote", "--backing", "hugetlbfs-2m", "--depth", "3", "--race-depth", "8"];
    let one = snpsim(&[&args[..], &["--jobs", "1"]].concat());
    let two = snpsim(&[&args[..], &["--jobs", "2"]].concat());
    assert_eq!(one.status.code(), Some(0), "{}", String::from_utf8_lossy(&one.stderr));
    assert_eq!(rows(&one.stdout), rows(&two.stdout));
    assert_eq!(rows(&one.stdout).len(), 8);
    let text = String::from_utf8_lossy(&two.stdout);
    let total = text.lines().last().unwrap_or_default();
    let states: usize =
        rows(&two.stdout).iter().map(|r| r.split(' ').nth(5).unwrap().parse::<usize>().unwrap()).sum();
    assert!(total.starts_with(&format!("total: {states} states in 8 configurations, ")), "{text}");
    assert!(total.contains(" s wall, peak RSS "), "{text}");
}

#[test]
fn fail_fast_ends_the_table_at_the_first_violated_configuration_whatever_the_jobs() {
    let dir = temp_dir("fail-fast");
    let d = dir.to_str().unwrap();
    let args = [
        "check",
        "--policy",
        "gmem",
        "--mutant",
        "no-zap-after-psmash",
        "--vcpus",
        "1",
        "--depth",
        "3",
        "--out",
        d,
    ];
    let all = rows(&snpsim(&args).stdout);
    let first = all.iter().position(|r| r.contains("VIOLATED")).expect("the mutant is caught");
    assert!(first + 1 < all.len(), "a configuration after the first violated one: {all:?}");
    for jobs in ["1", "2"] {
        let out = snpsim(&[&args[..], &["--fail-fast", "--jobs", jobs]].concat());
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(rows(&out.stdout), all[..=first], "--jobs {jobs}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_arguments_exit_2_naming_the_accepted_values() {
    for (args, fragment) in [
        (vec!["check", "--mutant", "bogus"], "accepted: psmash-clears-validated"),
        (vec!["check", "--policy", "kvm"], "accepted: rfc-host-split"),
        (vec!["check", "--backing", "gmem-3m"], "accepted: anon-4k"),
        (vec!["check", "--depth", "0"], "accepted: 1 to 16"),
        (vec!["check", "--race-depth", "99"], "accepted: 1 to 24"),
        (vec!["check", "--vcpus", "3"], "1..=2"),
        (vec!["check", "--policy", "gmem", "--backing", "thp"], "select no configuration"),
        (vec!["check", "--jobs", "0"], "at least 1"),
    ] {
        let out = snpsim(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(fragment), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn check_exits_non_zero_for_every_catalogued_mutant() {
    // Each mutant with the configuration and depth of its shortest counterexample in
    // docs/mutants.md (the PSC decoder's two are caught by the conformance table, whatever the
    // configuration): `snpsim check --mutant` must exit 1 for every one.
    let table: [(&str, &str, &str, &str, &str); 16] = [
        ("psmash-clears-validated", "npt-demote", "hugetlbfs-2m", "1", "2"),
        ("host-write-ignores-large-mapping", "npt-demote", "hugetlbfs-2m", "1", "2"),
        ("skip-direct-map-split", "npt-demote", "hugetlbfs-2m", "1", "2"),
        ("npt-ignores-host-level", "npt-demote", "hugetlbfs-2m", "1", "1"),
        ("npt-ignores-rmp-level", "gmem", "gmem-2m", "1", "1"),
        ("no-zap-after-psmash", "gmem", "gmem-2m", "1", "1"),
        ("no-psmash-before-4k-shared", "rfc-host-split", "thp", "1", "3"),
        ("psc-accepts-unaligned-2m", "npt-demote", "anon-4k", "1", "1"),
        ("psc-ignores-cur-page", "npt-demote", "anon-4k", "1", "1"),
        ("no-zap-on-attribute-change", "gmem", "gmem-2m", "1", "2"),
        ("punch-hole-skips-invalidate", "gmem", "gmem-2m", "1", "2"),
        ("mmu-notifier-ignored", "rfc-host-split", "thp", "1", "2"),
        ("guest-keeps-tracking-shared", "npt-demote", "hugetlbfs-2m", "1", "2"),
        ("psmash-race-fatal", "npt-demote", "hugetlbfs-2m", "2", "6"),
        ("fail-inuse-fatal", "npt-demote", "hugetlbfs-2m", "2", "3"),
        ("split-before-unmap", "gmem-inplace", "gmem-hugetlb-1g", "1", "2"),
    ];
    let names: Vec<&str> = table.iter().map(|t| t.0).collect();
    let catalogue =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/mutants.md")).unwrap();
    let documented: Vec<&str> = catalogue.lines().filter_map(|l| l.strip_prefix("## ")).collect();
    assert_eq!(names, documented, "the table follows docs/mutants.md");
    let dir = temp_dir("every-mutant");
    for (mutant, policy, backing, vcpus, depth) in table {
        let out = snpsim(&[
            "check",
            "--mutant",
            mutant,
            "--policy",
            policy,
            "--backing",
            backing,
            "--vcpus",
            vcpus,
            "--depth",
            depth,
            "--race-depth",
            depth,
            "--out",
            dir.to_str().unwrap(),
            "-q",
        ]);
        assert_eq!(out.status.code(), Some(1), "{mutant}: {}", String::from_utf8_lossy(&out.stdout));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn depth_bounds_the_race_model_too_unless_race_depth_is_given() {
    // The race model's paths, in ticks: --depth 3 alone bounds them (a path of 3 ticks visits at
    // most 4 states: the depth column), --race-depth overrides it there.
    let depth = |extra: &[&str]| -> Vec<u64> {
        let args =
            [&["check", "--policy", "npt-demote", "--backing", "hugetlbfs-2m", "--vcpus", "2", "-q"], extra]
                .concat();
        let out = snpsim(&args);
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("npt-demote "))
            .map(|l| l.split_whitespace().nth(6).and_then(|d| d.parse().ok()).expect("a depth column"))
            .collect()
    };
    let bounded = depth(&["--depth", "3"]);
    assert_eq!(bounded.len(), 4, "2 granularities x 2 NPT-level settings");
    assert!(bounded.iter().all(|&d| d <= 4), "{bounded:?}");
    let deeper = depth(&["--depth", "3", "--race-depth", "5"]);
    assert!(deeper.iter().all(|&d| d <= 6) && deeper.iter().any(|&d| d > 4), "{deeper:?}");
}
