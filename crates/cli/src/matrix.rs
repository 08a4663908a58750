//! The first screen of the default run: who wins, as a policy × backing grid for each guest
//! granularity, each cell saying in a few words what happened to the debate's workload.
//!
//! A cell is computed from a run's outcome, reason and metrics only (the names `--json` and
//! `results.json` carry), so the terminal and the HTML report show the same words.

use snpsim_scenario::Named;
use snpsim_scenario::{Backing, Era, Granularity};

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
    /// The cause name of a `vm_error` (`unresolvable`, `instruction_failed`).
    pub cause: Option<&'a str>,
    /// A count metric by its `[expect]` name (0 when absent).
    pub metric: Box<dyn Fn(&str) -> f64 + 'a>,
}

/// A count as text, with `one` or `many` after it (counts are whole numbers, exact in an `f64`).
fn count(n: f64, one: &str, many: &str) -> String {
    format!("{n} {}", if n.to_bits() == 1.0_f64.to_bits() { one } else { many })
}

/// Whether a cell is good news for the guest and the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    /// The run completed and every host and guest access that had to succeed did.
    Ok,
    /// The run stopped, or some access failed or lost data.
    Bad,
    /// The results hold no such run (shown as `-`).
    Missing,
}

/// The metric names a cell reads (a test checks each is one `[expect]` accepts, so a misspelt
/// name cannot read as 0 and turn a failure into `ok`).
pub const CELL_METRICS: &[&str] = &[
    "false_negatives",
    "invariant_violations",
    "host_splits_needless",
    "sigbus",
    "efault",
    "kernel_oops",
    "data_loss_pages",
];

/// What happened in a few words, and whether it is good news: the failure if the run stopped;
/// else the failures of accesses that did not stop it (a host write that took SIGBUS or -EFAULT,
/// a kernel oops, lost data pages), or `ok` with the debate's cost (needless host splits). A
/// false negative or a broken invariant overrides everything: it must never be missed on the
/// first screen.
pub fn cell(r: &RunView<'_>) -> (String, Tone) {
    let m = |k: &str| {
        debug_assert!(CELL_METRICS.contains(&k), "{k} is not in CELL_METRICS");
        (r.metric)(k)
    };
    let bad = |s: String| (s, Tone::Bad);
    if m("false_negatives") > 0.0 {
        return bad("WRONGLY ALLOWED".into());
    }
    if m("invariant_violations") > 0.0 {
        return bad("INVARIANT BROKEN".into());
    }
    match (r.outcome, r.cause, r.reason) {
        ("completed", ..) => {}
        (_, Some("instruction_failed"), _) => return bad("BUG: RMP insn failed".into()),
        ("vm_rejected", ..) => return bad("rejected".into()),
        ("guest_terminated", _, Some("psc-failed") | None) => return bad("guest killed".into()),
        ("guest_terminated", _, Some(reason)) => return bad(format!("guest killed: {reason}")),
        ("host_hang", ..) => return bad("host hang".into()),
        ("step_budget_exceeded", ..) => return bad("step budget hit".into()),
        ("vm_error", _, Some("host-split-impossible")) => return bad("VM error: can't split".into()),
        ("vm_error", _, Some(reason)) => return bad(format!("VM error: {reason}")),
        (other, ..) => return bad(other.to_owned()),
    }
    let mut failed = Vec::new();
    if m("sigbus") > 0.0 {
        failed.push("SIGBUS on host write".to_owned());
    }
    if m("efault") > 0.0 {
        failed.push(if failed.is_empty() { "EFAULT on host write" } else { "EFAULT" }.to_owned());
    }
    if m("kernel_oops") > 0.0 {
        failed.push("kernel oops".to_owned());
    }
    let lost = m("data_loss_pages");
    if lost > 0.0 {
        failed.push(count(lost, "page lost", "pages lost"));
    }
    if !failed.is_empty() {
        return bad(failed.join(", "));
    }
    let needless = m("host_splits_needless");
    if needless > 0.0 {
        return (format!("ok, {}", count(needless, "needless split", "needless splits")), Tone::Ok);
    }
    ("ok".into(), Tone::Ok)
}

/// One grid: the rows of every policy at its default `npt_level_follows_rmp` for one granularity.
fn grid(runs: &[RunView<'_>], g: Granularity) -> Vec<Vec<(String, Option<Tone>)>> {
    let mut rows = Vec::new();
    for era in [Era::Legacy, Era::Gmem] {
        let backings: Vec<Backing> = Backing::of_era(era).collect();
        if era == Era::Gmem {
            // The gmem backings head their own columns.
            let mut head = vec![(String::new(), None)];
            head.extend(backings.iter().map(|b| (b.name().to_owned(), None)));
            rows.push(head);
        }
        for &p in snpsim_scenario::policies().iter().filter(|p| p.era() == era) {
            let mut row = vec![(p.name().to_owned(), None)];
            for b in &backings {
                let found = runs.iter().find(|r| {
                    r.policy == p.name()
                        && r.backing == b.name()
                        && r.granularity == g.name()
                        && r.follows == p.npt_level_follows_rmp()
                });
                row.push(found.map_or_else(
                    || ("-".to_owned(), Some(Tone::Missing)),
                    |r| {
                        let (text, tone) = cell(r);
                        (text, Some(tone))
                    },
                ));
            }
            rows.push(row);
        }
    }
    rows
}

/// A grid's rows: each cell its text and, for a run's cell, its tone (`None` for the headers).
pub type Rows = Vec<Vec<(String, Option<Tone>)>>;

/// The grids, one per granularity: a title and rows of cells, the first row the backings of the
/// legacy era (its first cell empty), a later row the gmem backings.
pub fn grids(runs: &[RunView<'_>]) -> Vec<(&'static str, Rows)> {
    Granularity::all()
        .iter()
        .map(|&g| {
            let what = match g {
                Granularity::K4 => "4K guest (page-state changes of 4K pages)",
                Granularity::M2 => "2M guest (page-state changes in 2M chunks)",
            };
            let mut head = vec![(String::new(), None)];
            head.extend(Backing::of_era(Era::Legacy).map(|b| (b.name().to_owned(), None)));
            let mut rows = vec![head];
            rows.extend(grid(runs, g));
            (what, rows)
        })
        .collect()
}

/// The grids as text, columns padded to their widest cell, fitted to the terminal's width
/// ([`crate::term::width`]).
pub fn render(runs: &[RunView<'_>]) -> String {
    render_at(runs, crate::term::width())
}

/// The grids as text fitted to `width` columns: a grid too wide is dealt into panels that repeat
/// the policy column ([`crate::table::panels`]); a row with no cell in a panel is left out of it.
/// The gmem era's block (from its header row on) is padded to its own cells, so that its extra
/// backings do not widen the legacy block; the policy column lines up across both.
pub fn render_at(runs: &[RunView<'_>], width: usize) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    for (what, rows) in grids(runs) {
        let _ = writeln!(s, "{what}:");
        // The gmem block starts at the first header row after the first (its policy cell empty).
        let split = rows
            .iter()
            .skip(1)
            .position(|r| r.first().is_some_and(|(t, _)| t.is_empty()))
            .map_or(rows.len(), |i| i + 1);
        let policy_width =
            rows.iter().filter_map(|r| r.first()).map(|(t, _)| t.chars().count()).max().unwrap_or(0);
        let mut panelled = false;
        for block in [&rows[..split], &rows[split..]] {
            let cols = block.iter().map(Vec::len).max().unwrap_or(0);
            let mut widths: Vec<usize> = (0..cols)
                .map(|c| {
                    block.iter().filter_map(|r| r.get(c)).map(|(t, _)| t.chars().count()).max().unwrap_or(0)
                })
                .collect();
            if let Some(w) = widths.first_mut() {
                *w = policy_width;
            }
            // Two columns of indent; a block after a block dealt into panels starts its own.
            let panels = crate::table::panels(&widths, 1, width.saturating_sub(2));
            if std::mem::replace(&mut panelled, panels.len() > 1) && !block.is_empty() {
                s.push('\n');
            }
            for (i, panel) in panels.iter().enumerate() {
                if i > 0 {
                    s.push('\n');
                }
                for row in block {
                    if !panel.iter().any(|&c| c > 0 && c < row.len()) {
                        continue;
                    }
                    let cells: Vec<String> = panel
                        .iter()
                        .filter_map(|&c| row.get(c).map(|(t, _)| format!("{t:<w$}", w = widths[c])))
                        .collect();
                    let _ = writeln!(s, "  {}", cells.join("  ").trim_end());
                }
            }
        }
        s.push('\n');
    }
    s
}

/// The `npt_level_follows_rmp` defaults in words: the policies whose default is `true`.
pub fn follows_defaults() -> String {
    let on: Vec<&str> =
        snpsim_scenario::policies().iter().filter(|p| p.npt_level_follows_rmp()).map(|p| p.name()).collect();
    // "a and b", "a, b and c".
    let list = match on.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => on.join(""),
    };
    format!("true for {list}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(outcome: &'a str, reason: Option<&'a str>, metrics: &'a [(&'a str, f64)]) -> RunView<'a> {
        let cause = match (outcome, reason) {
            ("vm_error", Some("rmpupdate-failed" | "psmash-failed")) => Some("instruction_failed"),
            ("vm_error", _) => Some("unresolvable"),
            _ => None,
        };
        RunView {
            policy: "npt-demote",
            backing: "thp",
            granularity: "4k",
            follows: false,
            outcome,
            reason,
            cause,
            metric: Box::new(move |k| metrics.iter().find(|(n, _)| *n == k).map_or(0.0, |(_, v)| *v)),
        }
    }

    fn text(v: &RunView<'_>) -> String {
        cell(v).0
    }

    #[test]
    fn cells_say_what_happened() {
        assert_eq!(cell(&view("completed", None, &[])), ("ok".into(), Tone::Ok));
        assert_eq!(text(&view("completed", None, &[("host_splits_needless", 1.0)])), "ok, 1 needless split");
        // A host write that failed is not ok, whatever else the run did.
        assert_eq!(
            cell(&view(
                "completed",
                None,
                &[("host_splits_needless", 2.0), ("sigbus", 1.0), ("efault", 1.0)]
            )),
            ("SIGBUS on host write, EFAULT".into(), Tone::Bad)
        );
        assert_eq!(text(&view("completed", None, &[("efault", 1.0)])), "EFAULT on host write");
        assert_eq!(
            cell(&view("completed", None, &[("data_loss_pages", 4.0)])),
            ("4 pages lost".into(), Tone::Bad)
        );
        assert_eq!(text(&view("vm_error", Some("host-split-impossible"), &[])), "VM error: can't split");
        assert_eq!(text(&view("vm_error", Some("livelock"), &[])), "VM error: livelock");
        assert_eq!(text(&view("vm_error", Some("rmpupdate-failed"), &[])), "BUG: RMP insn failed");
        assert_eq!(text(&view("vm_rejected", Some("backing-refused"), &[])), "rejected");
        assert_eq!(text(&view("guest_terminated", Some("psc-failed"), &[])), "guest killed");
        assert_eq!(
            text(&view("guest_terminated", Some("page-not-validated"), &[])),
            "guest killed: page-not-validated"
        );
        assert_eq!(text(&view("host_hang", Some("host-fault-loop"), &[])), "host hang");
        // A wrongly allowed access is never hidden behind a completed run.
        assert_eq!(text(&view("completed", None, &[("false_negatives", 1.0)])), "WRONGLY ALLOWED");
        assert_eq!(text(&view("completed", None, &[("invariant_violations", 3.0)])), "INVARIANT BROKEN");
    }

    #[test]
    fn grids_too_wide_are_dealt_into_panels_that_repeat_the_policy() {
        // No runs: every cell `-`, the columns as wide as the backing names (hugetlbfs-2m: 12).
        let whole = render_at(&[], 200);
        let narrow = render_at(&[], 40);
        // The grid's lines (indented; a grid's title is a sentence, not a table row).
        let rows = |t: &str| t.lines().filter(|l| l.starts_with("  ")).map(|l| l.chars().count()).max();
        assert!(rows(&narrow) <= Some(40), "{narrow}");
        assert!(rows(&whole) > Some(40), "{whole}");
        // Every policy row appears once per panel, and every backing heads a column somewhere.
        let count = |t: &str, w: &str| t.lines().filter(|l| l.trim_start().starts_with(w)).count();
        assert_eq!(count(&whole, "npt-demote "), 2, "one per granularity: {whole}");
        assert!(count(&narrow, "npt-demote ") > 2, "{narrow}");
        for b in Backing::all() {
            assert!(narrow.contains(b.name()), "{}: {narrow}", b.name());
        }
    }

    #[test]
    fn every_metric_a_cell_reads_exists() {
        for name in CELL_METRICS {
            assert_eq!(snpsim_scenario::check_metric_name(name), Ok(()), "{name}");
        }
    }
}
