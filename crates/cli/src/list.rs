//! `snpsim list`: what is built in, one line each.

use snpsim_debate::debate::CLAIM_SCENARIOS;
use snpsim_scenario::Named;
use snpsim_scenario::{Backing, METRICS, Preset, family_members};

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

/// What the metrics whose name does not say it are (docs/semantics.md E5a).
fn metric_note(m: &str) -> &'static str {
    match m {
        "npt_coverage" => {
            "shares of guest memory mapped by 4K/2M/1G NPT leaves and unmapped: .4k .2m .1g .unmapped (sum 1)"
        }
        "huge_capable" => {
            "share of guest memory that could still be mapped at >= 2M (host page and RMP entry still huge)"
        }
        _ => "",
    }
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
    w!("\nMetrics (JSON keys; [expect] names):");
    for m in METRICS {
        match metric_note(m) {
            "" => w!("  {m}"),
            note => w!("  {m:<20} {note}"),
        }
        // The members `[expect]` accepts as FAMILY.MEMBER (cost items are listed below).
        if let Some((what, members)) =
            family_members(m).filter(|_| !matches!(*m, "npt_coverage" | "sim_time_ns"))
        {
            w!("  {:<20} by {what}: {}", "", members.join(", "));
        }
    }
    w!("\nCost parameters ([cost] names; sim_time_ns.NAME; docs/calibration.md):");
    for c in snpsim_engine::cost::ALL {
        let source = c.provenance.split(':').next().unwrap_or("");
        w!("  {:<18} {:>13} {:<7} {:<10} {}", c.name, c.ns, c.unit.name(), source, c.what);
    }
    out
}
