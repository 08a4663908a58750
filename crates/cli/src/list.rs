//! `snpsim list`: what is built in, one line each.

use snpsim_debate::debate::CLAIM_SCENARIOS;
use snpsim_scenario::Named;
use snpsim_scenario::{Backing, METRICS, Preset, StepKind, family_members};

fn backing_line(b: Backing) -> &'static str {
    match b {
        Backing::Anon4k => "anonymous memory, 4K host mappings only",
        Backing::Thp => "transparent huge pages: 2M host mappings the host can split to 4K",
        Backing::Hugetlbfs2m => "hugetlbfs 2M pages: never split",
        Backing::Hugetlbfs1g => "hugetlbfs 1G pages: never split",
        Backing::Gmem4k => "guest_memfd with 4K folios (upstream); shared side from shared_backing",
        Backing::Gmem2m => "guest_memfd with 2M folios (THP RFC), split on partial invalidation",
        Backing::Gmem1g => "guest_memfd with 1G folios (HugeTLB RFC), split on partial invalidation",
        Backing::GmemHugetlb2m => {
            "in-place guest_memfd on 2M HugeTLB folios (gmem-inplace only): split on share, merged when private"
        }
        Backing::GmemHugetlb1g => {
            "in-place guest_memfd on 1G HugeTLB folios (gmem-inplace only): split on share, merged when private"
        }
    }
}

fn preset_line(p: Preset) -> &'static str {
    match p {
        Preset::Linux => "current Linux: 2M PSC over GHCB (64 entries), lazy acceptance, validation tracking",
        Preset::Linux2021 => {
            "Linux of the 2021 series: 4K PSC, MSR before the GHCB then GHCB (253 entries), eager"
        }
        Preset::CoconutSvsm => "COCONUT-SVSM: 2M PSC over GHCB (253 entries), eager, validation tracking",
        Preset::OakStage0 => "Oak stage0: explicit 2M PSC then 2M PVALIDATE, eager, no tracking",
    }
}

/// docs/metrics.md, whose table ("| metric | unit | what it counts |") describes every metric:
/// the one description of each, which `snpsim list` prints rather than keep a second.
const METRICS_DOC: &str = include_str!("../../../docs/metrics.md");

/// docs/user-guide.md, whose `[[step]]` tables ("| op | fields (default) | what it does |")
/// describe every step op.
const GUIDE_DOC: &str = include_str!("../../../docs/user-guide.md");

/// The rows of every Markdown table of `doc` whose header line is `header`: their cells, trimmed,
/// without backticks.
fn table_rows(doc: &str, header: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if line != header {
            continue;
        }
        lines.next(); // the |---| rule
        for row in lines.by_ref().take_while(|l| l.starts_with('|')) {
            let row = row.trim().trim_start_matches('|').trim_end_matches('|');
            rows.push(row.split(" | ").map(|c| c.trim().replace('`', "")).collect());
        }
    }
    rows
}

/// Each metric's name, unit and what it counts, from docs/metrics.md.
fn metric_rows() -> Vec<Vec<String>> {
    table_rows(METRICS_DOC, "| metric | unit | what it counts |")
}

/// Each step op's name, fields and what it does, from docs/user-guide.md.
fn step_rows() -> Vec<Vec<String>> {
    table_rows(GUIDE_DOC, "| op | fields (default) | what it does |")
}

/// The lists, as `snpsim list` prints them.
pub fn text() -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    macro_rules! w {
        ($($arg:tt)*) => {{ let _ = writeln!(out, $($arg)*); }};
    }
    w!("Embedded scenarios:");
    w!("  {:<52} the debate matrix: every policy x backing x guest granularity", "(default run)");
    w!("  {:<52} a realistic generated workload per policy x backing x guest preset", "(default run)");
    for (file, text) in CLAIM_SCENARIOS {
        let name = text.lines().find_map(|l| l.strip_prefix("name = ")).unwrap_or("").trim_matches('"');
        w!("  {file:<52} {name}");
    }
    w!("\nPolicies:");
    for p in snpsim_kvm::policy::ALL {
        w!("  {:<20} [{}] {}", p.name(), p.reading().label(), p.summary());
    }
    w!("\nBackings:");
    for &b in Backing::all() {
        w!("  {:<20} {} era: {}", b.name(), b.era(), backing_line(b));
    }
    w!("\nGuest presets:");
    for &p in Preset::all() {
        w!("  {:<20} {}", p.name(), preset_line(p));
    }
    w!("\nMetrics (JSON keys; [expect] names; docs/metrics.md), with their unit:");
    w!(
        "  {:<28} the run's outcome and, for a run that stops, its cause and reason",
        "outcome, cause, reason"
    );
    let described = metric_rows();
    for m in METRICS.iter().filter(|m| !matches!(**m, "outcome" | "cause" | "reason")) {
        match described.iter().find(|r| r.first().is_some_and(|n| n == m)) {
            Some(r) => w!("  {m:<22} {:<5} {}", r[1], r[2]),
            None => w!("  {m}"),
        }
        // The members `[expect]` accepts as FAMILY.MEMBER (cost items are listed below).
        if let Some((what, members)) =
            family_members(m).filter(|_| !matches!(*m, "npt_coverage" | "sim_time_ns"))
        {
            w!("  {:<28} by {what}: {}", "", members.join(", "));
        }
    }
    w!("\nStep ops ([[step]] op; fields besides op and vcpu; docs/user-guide.md):");
    let steps = step_rows();
    for &k in StepKind::all() {
        let what =
            steps.iter().find(|r| r.first().is_some_and(|n| n == k.name())).map_or("", |r| r[2].as_str());
        w!("  {:<14} {:<36} {what}", k.name(), k.fields().join(", "));
    }
    w!("\nCost parameters ([cost] names; sim_time_ns.NAME; docs/calibration.md):");
    for c in snpsim_engine::cost::ALL {
        let source = c.provenance.split(':').next().unwrap_or("");
        w!("  {:<18} {:>13} {:<7} {:<10} {}", c.name, c.ns, c.unit.name(), source, c.what);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The docs' tables are the descriptions `snpsim list` prints: each metric (but the outcome
    /// names) and each step op has exactly one row, with a unit and a description.
    #[test]
    fn the_docs_describe_every_metric_and_step_op_once() {
        let metrics = metric_rows();
        for m in METRICS.iter().filter(|m| !matches!(**m, "outcome" | "cause" | "reason")) {
            let rows: Vec<_> = metrics.iter().filter(|r| r[0] == *m).collect();
            assert_eq!(rows.len(), 1, "docs/metrics.md: {m}");
            assert_eq!(rows[0].len(), 3, "{m}: name, unit, what");
            assert!(["count", "share", "ns"].contains(&rows[0][1].as_str()), "{m}: unit {}", rows[0][1]);
        }
        assert_eq!(metrics.len(), METRICS.len() - 3, "a row for a metric that does not exist");
        let steps = step_rows();
        for k in StepKind::all() {
            let rows: Vec<_> = steps.iter().filter(|r| r[0] == k.name()).collect();
            assert_eq!(rows.len(), 1, "docs/user-guide.md: op {}", k.name());
            assert!(rows[0].len() == 3 && !rows[0][2].is_empty(), "{}", k.name());
        }
        assert_eq!(steps.len(), StepKind::all().len());
    }

    #[test]
    fn list_prints_a_unit_and_description_for_each() {
        let t = text();
        assert!(t.contains("  rmp_npf                count #NPF exits with the RMP bit\n"), "{t}");
        assert!(t.contains("  sim_time_ns            ns    simulated time"), "{t}");
        assert!(t.contains("  host_split     gpa"), "{t}");
    }
}
