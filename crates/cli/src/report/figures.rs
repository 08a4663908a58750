//! The per-run charts: bar charts of counts and simulated time, and NPT coverage over time.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde_json::Value;

use super::charts;
use super::charts::{Component, Rows, esc, fmt_num};
use super::inputs::{Report, Run, distinct_scenarios};

/// Row labels and groups for per-run bar charts.
pub(super) fn rows(r: &Report) -> Rows {
    let groups = distinct_scenarios(r);
    let labels = r
        .runs
        .iter()
        .map(|run| {
            let label = if let Some(sw) = &r.sweep {
                let mut l: Vec<String> = sw
                    .axes
                    .iter()
                    .filter_map(|a| run.params.iter().find(|(k, _)| *k == a.name))
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                if let Some(seed) = run.seed {
                    l.push(format!("seed {seed}"));
                }
                l.join(" · ")
            } else {
                format!("{} · {} · {}{}", run.policy, run.backing, run.guest, run.setting_suffix())
            };
            // A run that stopped is marked: its bars count only what happened before it stopped.
            if run.outcome == "completed" { label } else { format!("{label} ✕ {}", run.outcome) }
        })
        .collect();
    let group =
        r.runs.iter().map(|run| groups.iter().position(|g| *g == run.scenario).unwrap_or(0)).collect();
    Rows { labels, group, group_names: groups }
}

pub(super) fn comp(r: &Report, name: &str, f: impl Fn(&Run) -> f64) -> Component {
    Component { name: name.to_string(), values: r.runs.iter().map(f).collect() }
}

/// A figure: the SVG, an HTML legend for stacked charts, a caption and the numbers as a table.
pub(super) fn figure(
    id: &str,
    svg: &str,
    legend: &[String],
    caption: &str,
    data: &str,
    wide: bool,
) -> String {
    let mut s = format!("<figure class=\"chart{}\" id=\"{id}\">", if wide { " wide" } else { "" });
    if legend.len() > 1 {
        let entries: Vec<(String, plotters::style::RGBColor)> =
            legend.iter().enumerate().map(|(i, n)| (n.clone(), charts::colour(i))).collect();
        s.push_str(&charts::legend_html(&entries));
    }
    s.push_str(svg);
    let _ = write!(s, "<figcaption>{}</figcaption>", esc(caption));
    if !data.is_empty() {
        let _ =
            write!(s, "<details><summary>the numbers</summary><div class=\"scroll\">{data}</div></details>");
    }
    s.push_str("</figure>");
    s
}

/// The numbers of a bar chart as a table.
pub(super) fn bar_data(rows: &Rows, comps: &[Component]) -> String {
    let mut s = String::from("<table><thead><tr><th scope=\"col\">run</th>");
    for c in comps {
        let _ = write!(s, "<th scope=\"col\" class=\"num\">{}</th>", esc(&c.name));
    }
    s.push_str("</tr></thead><tbody>");
    for (i, label) in rows.labels.iter().enumerate() {
        let group = rows.group_names.get(rows.group[i]).filter(|_| rows.group_names.len() > 1);
        let label = match group {
            Some(g) => format!("{g}: {label}"),
            None => label.clone(),
        };
        let _ = write!(s, "<tr><td>{}</td>", esc(&label));
        for c in comps {
            let _ = write!(s, "<td class=\"num\">{}</td>", fmt_num(c.values.get(i).copied().unwrap_or(0.0)));
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table>");
    s
}

pub(super) fn bar_figure(
    r: &Report,
    id: &str,
    title: &str,
    x_desc: &str,
    comps: &[Component],
    caption: &str,
) -> String {
    let rows = rows(r);
    let all_zero = comps.iter().all(|c| c.values.iter().all(|v| *v == 0.0));
    let caption = if all_zero { format!("{caption} Zero in every run.") } else { caption.to_string() };
    let svg = charts::hbar(title, x_desc, &rows, comps);
    let names: Vec<String> = comps.iter().map(|c| c.name.clone()).collect();
    figure(id, &svg, &names, &caption, &bar_data(&rows, comps), false)
}

/// Members of a metric family that are non-zero in some run, in name order.
pub(super) fn family_members(r: &Report, family: &str) -> Vec<String> {
    let mut names = BTreeSet::new();
    for run in &r.runs {
        if let Some(Value::Object(m)) = run.metrics.get(family) {
            for (k, v) in m {
                if v.as_f64().is_some_and(|x| x != 0.0) {
                    names.insert(k.clone());
                }
            }
        }
    }
    names.into_iter().collect()
}

pub(super) fn counts_html(r: &Report) -> String {
    let mut s = String::from(
        "<section id=\"counts\"><h2>Faults, exits and splits by run</h2><p class=\"note\">One bar per run that no \
         policy × backing grid holds (policy · backing · guest); the number at the end of a bar is its total.</p><div class=\"charts bars\">",
    );
    s.push_str(&bar_figure(
        r,
        "chart-rmp-npf",
        "RMP nested page faults",
        "#NPF exits with the RMP bit (count)",
        &[
            comp(r, "with SIZEM (page-size mismatch)", |x| x.m("rmp_npf_sizem")),
            comp(r, "without SIZEM", |x| (x.m("rmp_npf") - x.m("rmp_npf_sizem")).max(0.0)),
        ],
        "rmp_npf split into rmp_npf_sizem and the rest.",
    ));
    let reasons = family_members(r, "exits");
    let exit_comps: Vec<Component> = if reasons.is_empty() {
        vec![comp(r, "exits", |x| x.m("exits"))]
    } else {
        reasons.iter().map(|k| comp(r, k, |x| x.m(&format!("exits.{k}")))).collect()
    };
    s.push_str(&bar_figure(
        r,
        "chart-exits",
        "VM exits by reason",
        "exits (count)",
        &exit_comps,
        "The exits metric by reason (npf = every #NPF exit).",
    ));
    s.push_str(&bar_figure(
        r,
        "chart-splits",
        "Host huge-page splits: needed vs needless",
        "host huge mappings split (count)",
        &[
            comp(r, "needed (a host write would have faulted through the old mapping)", |x| {
                x.m("host_splits_needed")
            }),
            comp(r, "needless (no access needed it)", |x| x.m("host_splits_needless")),
        ],
        "host_splits, of which host_splits_needless.",
    ));
    let kinds = family_members(r, "npt_demotions");
    let demote: Vec<Component> = if kinds.is_empty() {
        vec![comp(r, "demotions", |x| x.m("npt_demotions"))]
    } else {
        kinds
            .iter()
            .map(|k| comp(r, &k.replace('_', " → "), |x| x.m(&format!("npt_demotions.{k}"))))
            .collect()
    };
    s.push_str(&bar_figure(
        r,
        "chart-demotions",
        "NPT demotions by level",
        "NPT leaves demoted or zapped (count)",
        &demote,
        "npt_demotions by from → to level.",
    ));
    s.push_str(&bar_figure(
        r,
        "chart-psmash",
        "PSMASH",
        "PSMASH instructions (count)",
        &[comp(r, "PSMASH", |x| x.m("psmash"))],
        "2M RMP entries smashed to 4K (one-way).",
    ));
    s.push_str(&bar_figure(
        r,
        "chart-host-faults",
        "Failed host writes: SIGBUS and -EFAULT",
        "host writes that failed (count)",
        &[
            comp(r, "SIGBUS (VMM user access)", |x| x.m("sigbus")),
            comp(r, "-EFAULT (kernel get/put_user)", |x| x.m("efault")),
        ],
        "sigbus and efault: host writes that hit an RMP #PF the host could not resolve.",
    ));
    s.push_str("</div></section>\n");
    s
}

pub(super) fn time_html(r: &Report) -> String {
    // The items with time in some run, largest total first; past seven, the rest are one "other".
    let items = family_members(r, "sim_time_by_item");
    let mut totals: Vec<(String, f64)> = items
        .iter()
        .map(|k| (k.clone(), r.runs.iter().map(|x| x.m(&format!("sim_time_ns.{k}"))).sum()))
        .collect();
    totals.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let (top, rest) = totals.split_at(totals.len().min(7));
    let mut comps: Vec<Component> =
        top.iter().map(|(k, _)| comp(r, k, |x| x.m(&format!("sim_time_ns.{k}")) / 1000.0)).collect();
    if !rest.is_empty() {
        let rest: Vec<String> = rest.iter().map(|(k, _)| k.clone()).collect();
        comps.push(comp(r, &format!("other ({})", rest.join(", ")), |x| {
            rest.iter().map(|k| x.m(&format!("sim_time_ns.{k}"))).sum::<f64>() / 1000.0
        }));
    }
    if comps.is_empty() {
        comps.push(comp(r, "sim_time_ns", |x| x.m("sim_time_ns") / 1000.0));
    }
    let mut s = String::from(
        "<section id=\"time\"><h2>Simulated time by cost item</h2><p class=\"note\">sim_time_ns broken down by \
         sim_time_by_item, in microseconds of simulated time.</p><div class=\"charts bars\">",
    );
    let mut fig = bar_figure(
        r,
        "chart-time",
        "Simulated time by cost item",
        "simulated time (µs)",
        &comps,
        "Each cost item's count priced by the cost model.",
    );
    fig = fig.replacen("class=\"chart\"", "class=\"chart wide\"", 1);
    s.push_str(&fig);
    s.push_str("</div></section>\n");
    s
}

pub(super) const COVERAGE_NAMES: [&str; 4] = ["4K leaves", "2M leaves", "1G leaves", "unmapped"];

pub(super) fn coverage_colours() -> [plotters::style::RGBColor; 4] {
    [charts::PALETTE[3], charts::PALETTE[0], charts::PALETTE[2], charts::PALETTE[7]]
}

pub(super) fn coverage_html(r: &Report) -> String {
    let cols = coverage_colours();
    let legend: Vec<(String, plotters::style::RGBColor)> =
        COVERAGE_NAMES.iter().zip(cols).map(|(n, c)| ((*n).to_string(), c)).collect();
    let mut s = String::from(
        "<section id=\"coverage\"><h2>NPT coverage over simulated time</h2><p class=\"note\">The share of \
         guest memory that KVM's nested page table maps with 4K, 2M and 1G leaves, and the share it does not \
         map (stacked to 100%), after the steps that changed it (long runs are thinned) and at the end of \
         the run, from the end of the first step. Huge-capable memory is the share that could still be \
         mapped at 2M or more (its host page and RMP entry are still huge).</p>",
    );
    s.push_str(&charts::legend_html(&legend));
    let rows = rows(r);
    let multi = rows.group_names.len() > 1;
    let mut current = usize::MAX;
    for (i, run) in r.runs.iter().enumerate() {
        let g = rows.group[i];
        if g != current {
            if current != usize::MAX {
                s.push_str("</div>");
            }
            if multi {
                let _ = write!(s, "<h3>{}</h3>", esc(&rows.group_names[g]));
            }
            s.push_str("<div class=\"charts small\">");
            current = g;
        }
        let series = run.series.clone().unwrap_or_default();
        let t_us: Vec<f64> = series.t_ns.iter().map(|t| t / 1000.0).collect();
        let shares: Vec<[f64; 4]> = series
            .pages
            .iter()
            .map(|p| {
                let total: f64 = p.iter().sum();
                if total > 0.0 { p.map(|x| 100.0 * x / total) } else { [0.0, 0.0, 0.0, 100.0] }
            })
            .collect();
        let title = rows.labels[i].clone();
        let empty =
            if run.outcome == "vm_rejected" { "no VM: registration refused" } else { "no coverage recorded" };
        let svg = charts::coverage(&title, &t_us, &shares, cols, empty);
        let end = &run.metrics.get("npt_coverage").cloned().unwrap_or(Value::Null);
        let pct = |k: &str| 100.0 * end.get(k).and_then(Value::as_f64).unwrap_or(0.0);
        let caption = match series.t_ns.first() {
            None => format!("{}: {empty}.", run.outcome),
            Some(t0) => format!(
                "{}: at the end {:.1}% of guest memory mapped at 4K, {:.1}% at 2M, {:.1}% at 1G, {:.1}% \
                 unmapped; {:.1}% huge-capable. {} points from the end of the first step ({} µs).",
                run.outcome,
                pct("4k"),
                pct("2m"),
                pct("1g"),
                pct("unmapped"),
                100.0 * run.m("huge_capable"),
                series.t_ns.len(),
                fmt_num((t0 / 100.0).round() / 10.0)
            ),
        };
        s.push_str(&figure(&format!("chart-coverage-{i}"), &svg, &[], &caption, "", false));
    }
    if current != usize::MAX {
        s.push_str("</div>");
    }
    s.push_str("</section>\n");
    s
}
