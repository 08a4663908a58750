//! Policy × backing heatmaps: the runs of one scenario, guest and setting that form a matrix (each
//! policy and backing pair once) as small grids, one per metric, a cell per pair shaded by its
//! share of the grid's largest value. A run that did not complete is marked `✕ OUTCOME`, never
//! shaded as a number; a pair the results lack is `·`. The runs outside every matrix keep the
//! per-run bar charts.

use std::fmt::Write as _;

use super::charts::{esc, fmt_num};
use super::{Report, Run};

/// The metrics of the heatmaps: name, caption.
const METRICS: &[(&str, &str)] = &[
    ("rmp_npf", "RMP #NPF"),
    ("exits", "VM exits"),
    ("npt_demotions", "NPT demotions"),
    ("host_splits", "host splits"),
    ("host_splits_needless", "needless host splits"),
    ("psmash", "PSMASH"),
    ("sigbus", "SIGBUS"),
    ("efault", "-EFAULT"),
    ("data_loss_pages", "pages lost"),
    ("sim_time_ns", "simulated time (µs)"),
];

/// The fewest runs that make a matrix worth a grid.
const MIN_RUNS: usize = 4;

/// One matrix: its title and the indices of its runs.
pub struct Matrix {
    title: String,
    pub runs: Vec<usize>,
}

/// The runs' matrices, in the order of their first run; each run is in at most one. A sweep's
/// runs repeat policy and backing along their axes and form none.
pub fn matrices(r: &Report) -> Vec<Matrix> {
    // (scenario, guest, setting) and the runs.
    type Key = (String, String, &'static str);
    if r.sweep.is_some() {
        return Vec::new();
    }
    let mut groups: Vec<(Key, Vec<usize>)> = Vec::new();
    for (i, run) in r.runs.iter().enumerate() {
        let key = (run.scenario.clone(), run.guest.clone(), run.setting_suffix());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(i),
            None => groups.push((key, vec![i])),
        }
    }
    groups
        .into_iter()
        .filter(|(_, idx)| {
            let pairs: Vec<(&str, &str)> =
                idx.iter().map(|&i| (r.runs[i].policy.as_str(), r.runs[i].backing.as_str())).collect();
            let unique = pairs.iter().enumerate().all(|(n, p)| !pairs[..n].contains(p));
            idx.len() >= MIN_RUNS && unique
        })
        .map(|((scenario, guest, setting), runs)| Matrix {
            title: format!("{scenario} · {guest}{setting}"),
            runs,
        })
        .collect()
}

/// Distinct values in order of first appearance.
fn distinct<'a>(runs: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = Vec::new();
    for v in runs {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// One metric's grid over one matrix.
fn grid(r: &Report, m: &Matrix, metric: &str, caption: &str) -> String {
    let runs: Vec<&Run> = m.runs.iter().map(|&i| &r.runs[i]).collect();
    let policies = distinct(runs.iter().map(|x| x.policy.as_str()));
    let backings = distinct(runs.iter().map(|x| x.backing.as_str()));
    let scale = if metric == "sim_time_ns" { 1e-3 } else { 1.0 };
    let value = |x: &Run| x.m(metric) * scale;
    let max = runs.iter().filter(|x| x.outcome == "completed").map(|x| value(x)).fold(0.0_f64, f64::max);
    let mut s = format!(
        "<figure class=\"heat\" data-metric=\"{}\"><table class=\"heat\"><caption>{}</caption><thead><tr><th></th>",
        esc(metric),
        esc(caption)
    );
    for b in &backings {
        let _ = write!(s, "<th scope=\"col\">{}</th>", esc(b));
    }
    s.push_str("</tr></thead><tbody>");
    for p in &policies {
        let _ = write!(s, "<tr><th scope=\"row\">{}</th>", esc(p));
        for b in &backings {
            match runs.iter().find(|x| x.policy == *p && x.backing == *b) {
                None => s.push_str("<td class=\"none\">·</td>"),
                Some(x) if x.outcome != "completed" => {
                    let why = if x.reason.is_empty() { x.outcome.clone() } else { x.reason.clone() };
                    let _ =
                        write!(s, "<td class=\"stopped\" title=\"{}\">✕ {}</td>", esc(&why), esc(&x.outcome));
                }
                Some(x) => {
                    let v = value(x);
                    // The share of the grid's largest value, as the cell's shade.
                    let alpha = if v > 0.0 && max > 0.0 { 0.12 + 0.58 * v / max } else { 0.0 };
                    let _ = write!(
                        s,
                        "<td class=\"num\" style=\"background: rgba(0, 114, 178, {alpha:.2})\">{}</td>",
                        fmt_num(v)
                    );
                }
            }
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table></figure>");
    s
}

/// The heatmaps section, or nothing when the runs form no matrix.
pub fn html(r: &Report, ms: &[Matrix]) -> String {
    if ms.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "<section id=\"heatmaps\"><h2>Policy × backing</h2><p class=\"note\">For each set of runs that puts every \
         policy on every backing once (one scenario, guest and setting), one grid per metric: a cell per policy and \
         backing, darker for more (each grid on its own scale, from 0 to its largest value). ✕ marks a run that \
         did not complete (its reason on hover): its counts stop where it stopped and are not compared. \
         Metrics zero in every run of a set are listed under it.</p>",
    );
    for m in ms {
        let _ = write!(s, "<h3>{}</h3><div class=\"heats\">", esc(&m.title));
        let mut zero = Vec::new();
        for (metric, caption) in METRICS {
            if m.runs.iter().all(|&i| r.runs[i].outcome != "completed" || r.runs[i].m(metric) == 0.0) {
                zero.push(*metric);
                continue;
            }
            s.push_str(&grid(r, m, metric, caption));
        }
        s.push_str("</div>");
        if !zero.is_empty() {
            let _ = write!(s, "<p class=\"note\">Zero in every run that completed: {}.</p>", zero.join(", "));
        }
    }
    s.push_str("</section>\n");
    s
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::{Report, Run};

    fn run(policy: &str, backing: &str, outcome: &str, splits: u64) -> Run {
        Run::from_json(&json!({
            "scenario": "m", "policy": policy, "backing": backing, "guest": "4k", "outcome": outcome,
            "metrics": { "host_splits": splits, "rmp_npf": 1 },
        }))
        .unwrap()
    }

    #[test]
    fn a_matrix_is_one_grid_per_metric_and_stopped_runs_are_marked() {
        let r = Report {
            runs: vec![
                run("a", "thp", "completed", 4),
                run("a", "hugetlbfs-2m", "vm_error", 99),
                run("b", "thp", "completed", 0),
                run("b", "hugetlbfs-2m", "completed", 2),
                // Another scenario of one run: no matrix.
                Run::from_json(&json!({ "scenario": "x", "policy": "a", "backing": "thp", "outcome": "completed", "metrics": {} }))
                    .unwrap(),
            ],
            ..Report::default()
        };
        let ms = super::matrices(&r);
        assert_eq!(ms.len(), 1);
        assert_eq!(ms[0].runs, [0, 1, 2, 3]);
        let html = super::html(&r, &ms);
        // rmp_npf and host_splits are drawn; the other metrics are zero everywhere.
        assert_eq!(html.matches("<table class=\"heat\">").count(), 2, "{html}");
        assert!(html.contains("Zero in every run that completed: exits, npt_demotions"), "{html}");
        let splits = &html[html.find("data-metric=\"host_splits\"").unwrap()..];
        let splits = &splits[..splits.find("</figure>").unwrap()];
        // The largest value has the darkest shade (0.12 + 0.58), half of it 0.41, zero none.
        assert!(splits.contains("rgba(0, 114, 178, 0.70)\">4<"), "{splits}");
        assert!(splits.contains("rgba(0, 114, 178, 0.41)\">2<"), "{splits}");
        assert!(splits.contains("rgba(0, 114, 178, 0.00)\">0<"), "{splits}");
        // The vm_error run is marked, and its 99 is no cell.
        assert!(splits.contains("✕ vm_error") && !splits.contains("99"), "{splits}");
    }

    #[test]
    fn a_policy_backing_pair_twice_is_no_matrix() {
        let r = Report {
            runs: vec![
                run("a", "thp", "completed", 1),
                run("a", "thp", "completed", 2),
                run("b", "thp", "completed", 3),
                run("b", "hugetlbfs-2m", "completed", 4),
            ],
            ..Report::default()
        };
        assert!(super::matrices(&r).is_empty());
    }
}
