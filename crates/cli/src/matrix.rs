//! The first screen of the default run: who wins, as a policy × backing grid for each guest
//! granularity, each cell saying in a few words what happened to the debate's workload.
//!
//! A cell is computed from a run's outcome, reason and metrics only (the names `--json` and
//! `results.json` carry), so the terminal and the HTML report show the same words.

use snpsim_sim::scenario::{Backing, Era, Granularity, Policy};

/// What a cell reads of one run: its outcome and reason names and its metrics by name.
pub struct RunView<'a> {
    /// The policy name.
    pub policy: &'a str,
    /// The backing name.
    pub backing: &'a str,
    /// The granularity name (`4k`, `2m`).
    pub granularity: &'a str,
    /// `npt_level_follows_rmp` in force.
    pub follows: bool,
    /// The outcome name.
    pub outcome: &'a str,
    /// The reason name of a run that did not complete.
    pub reason: Option<&'a str>,
    /// A count metric by its `[expect]` name (0 when absent).
    pub metric: Box<dyn Fn(&str) -> f64 + 'a>,
}

/// A count as text, with `one` or `many` after it (counts are whole numbers, exact in an `f64`).
fn count(n: f64, one: &str, many: &str) -> String {
    format!("{n} {}", if n.to_bits() == 1.0_f64.to_bits() { one } else { many })
}

/// What happened in a few words: the failure if the run stopped, else `ok` and the costs that
/// matter to the debate (needless host splits, faulting host writes, lost data). A false negative
/// or a broken invariant overrides everything: it must never be missed on the first screen.
pub fn cell(r: &RunView<'_>) -> String {
    let m = |k: &str| (r.metric)(k);
    if m("false_negatives") > 0.0 {
        return "WRONGLY ALLOWED".into();
    }
    if m("invariant_violations") > 0.0 {
        return "INVARIANT BROKEN".into();
    }
    let stopped = match (r.outcome, r.reason) {
        ("completed", _) => None,
        ("vm_rejected", _) => Some("rejected".to_owned()),
        ("guest_terminated", _) => Some("guest killed".to_owned()),
        ("host_hang", _) => Some("host hang".to_owned()),
        ("step_budget_exceeded", _) => Some("step budget hit".to_owned()),
        ("vm_error", Some("rmpupdate-failed" | "psmash-failed")) => Some("BUG: RMP insn failed".to_owned()),
        ("vm_error", Some("host-split-impossible")) => Some("VM error: can't split".to_owned()),
        ("vm_error", Some(reason)) => Some(format!("VM error: {reason}")),
        (other, _) => Some(other.to_owned()),
    };
    if let Some(s) = stopped {
        return s;
    }
    let mut parts = vec!["ok".to_owned()];
    let needless = m("host_splits_needless");
    if needless > 0.0 {
        parts.push(count(needless, "needless split", "needless splits"));
    }
    if m("sigbus") + m("efault") > 0.0 {
        parts.push("host writes fault".into());
    }
    let lost = m("data_loss_pages");
    if lost > 0.0 {
        parts.push(count(lost, "page lost", "pages lost"));
    }
    parts.join(", ")
}

/// One grid: the rows of every policy at its default `npt_level_follows_rmp` for one granularity.
fn grid(runs: &[RunView<'_>], g: Granularity) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for era in [Era::Legacy, Era::Gmem] {
        let backings: Vec<Backing> = Backing::of_era(era).collect();
        if era == Era::Gmem {
            // The gmem backings head their own columns.
            let mut head = vec![String::new()];
            head.extend(backings.iter().map(|b| b.name().to_owned()));
            rows.push(head);
        }
        for &p in Policy::ALL.iter().filter(|p| p.era() == era) {
            let mut row = vec![p.name().to_owned()];
            for b in &backings {
                let found = runs.iter().find(|r| {
                    r.policy == p.name()
                        && r.backing == b.name()
                        && r.granularity == g.name()
                        && r.follows == p.default_npt_level_follows_rmp()
                });
                row.push(found.map_or_else(|| "-".to_owned(), cell));
            }
            rows.push(row);
        }
    }
    rows
}

/// The grids, one per granularity: a title and rows of cells, the first row the backings of the
/// legacy era (its first cell empty), a later row the gmem backings.
pub fn grids(runs: &[RunView<'_>]) -> Vec<(&'static str, Vec<Vec<String>>)> {
    Granularity::ALL
        .iter()
        .map(|&g| {
            let what = match g {
                Granularity::Size4K => "4K guest (page-state changes of 4K pages)",
                Granularity::Size2M => "2M guest (page-state changes in 2M chunks)",
            };
            let mut head = vec![String::new()];
            head.extend(Backing::of_era(Era::Legacy).map(|b| b.name().to_owned()));
            let mut rows = vec![head];
            rows.extend(grid(runs, g));
            (what, rows)
        })
        .collect()
}

/// The grids as text, columns padded to their widest cell.
pub fn render(runs: &[RunView<'_>]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    for (what, rows) in grids(runs) {
        let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..cols)
            .map(|c| rows.iter().filter_map(|r| r.get(c)).map(String::len).max().unwrap_or(0) + 2)
            .collect();
        let _ = writeln!(s, "{what}:");
        for row in &rows {
            let mut line = String::new();
            for (c, w) in row.iter().zip(&widths) {
                let _ = write!(line, "{c:<w$}");
            }
            let _ = writeln!(s, "  {}", line.trim_end());
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(outcome: &'a str, reason: Option<&'a str>, metrics: &'a [(&'a str, f64)]) -> RunView<'a> {
        RunView {
            policy: "npt-demote",
            backing: "thp",
            granularity: "4k",
            follows: false,
            outcome,
            reason,
            metric: Box::new(move |k| metrics.iter().find(|(n, _)| *n == k).map_or(0.0, |(_, v)| *v)),
        }
    }

    #[test]
    fn cells_say_what_happened() {
        assert_eq!(cell(&view("completed", None, &[])), "ok");
        assert_eq!(cell(&view("completed", None, &[("host_splits_needless", 1.0)])), "ok, 1 needless split");
        assert_eq!(
            cell(&view("completed", None, &[("host_splits_needless", 2.0), ("sigbus", 1.0)])),
            "ok, 2 needless splits, host writes fault"
        );
        assert_eq!(cell(&view("vm_error", Some("host-split-impossible"), &[])), "VM error: can't split");
        assert_eq!(cell(&view("vm_error", Some("livelock"), &[])), "VM error: livelock");
        assert_eq!(cell(&view("vm_error", Some("rmpupdate-failed"), &[])), "BUG: RMP insn failed");
        assert_eq!(cell(&view("vm_rejected", Some("backing-refused"), &[])), "rejected");
        assert_eq!(cell(&view("guest_terminated", Some("psc-failed"), &[])), "guest killed");
        assert_eq!(cell(&view("host_hang", Some("host-fault-loop"), &[])), "host hang");
        // A wrongly allowed access is never hidden behind a completed run.
        assert_eq!(cell(&view("completed", None, &[("false_negatives", 1.0)])), "WRONGLY ALLOWED");
        assert_eq!(cell(&view("completed", None, &[("invariant_violations", 3.0)])), "INVARIANT BROKEN");
    }
}
