//! A sweep's charts: each metric against the sweep's x axis, one line per other setting, with a
//! note naming the runs that stopped.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::charts;
use super::charts::{Line, XAxis, esc, fmt_num};
use super::figures::figure;
use super::inputs::{Axis, Report, Run, SweepInfo};

/// Metrics the sweep charts plot: name, title, y-axis description, scale.
pub(super) const SWEEP_METRICS: &[(&str, &str, &str, f64)] = &[
    ("host_splits_needless", "Needless host splits", "host splits (count)", 1.0),
    ("host_splits", "Host splits", "host splits (count)", 1.0),
    ("npt_coverage.2m", "NPT coverage at 2M", "guest memory at 2M (%)", 100.0),
    ("npt_coverage.4k", "NPT coverage at 4K", "guest memory at 4K (%)", 100.0),
    ("npt_coverage.1g", "NPT coverage at 1G", "guest memory at 1G (%)", 100.0),
    ("npt_coverage.unmapped", "Guest memory not in the NPT", "guest memory unmapped (%)", 100.0),
    ("huge_capable", "Huge-capable guest memory", "guest memory mappable at ≥2M (%)", 100.0),
    ("rmp_npf", "RMP nested page faults", "#NPF with RMP (count)", 1.0),
    ("rmp_npf_sizem", "RMP size-mismatch faults", "#NPF with RMP|SIZEM (count)", 1.0),
    ("npf", "All #NPF exits", "#NPF exits (count)", 1.0),
    ("npt_demotions", "NPT demotions", "demotions (count)", 1.0),
    ("npt_demotions_needless", "Needless NPT demotions", "demotions (count)", 1.0),
    ("psmash", "PSMASH", "PSMASH (count)", 1.0),
    ("implicit_conversions", "Implicit conversions", "conversions (count)", 1.0),
    ("sigbus", "SIGBUS", "SIGBUS (count)", 1.0),
    ("efault", "-EFAULT", "-EFAULT (count)", 1.0),
    ("data_loss_pages", "Data loss", "pages lost (count)", 1.0),
    ("false_negatives", "False negatives", "accesses wrongly allowed (count)", 1.0),
    ("sim_time_ns", "Simulated time", "simulated time", 0.0),
];

/// The axis on the x axis: the one named `x`, else the first axis with more than one value.
pub(super) fn x_axis(s: &SweepInfo) -> Option<&Axis> {
    if let Some(x) = &s.x
        && let Some(a) = s.axes.iter().find(|a| &a.name == x)
    {
        return Some(a);
    }
    s.axes.iter().find(|a| a.values.len() > 1).or(s.axes.first())
}

#[allow(clippy::too_many_lines)] // one section of the page, read top to bottom
pub(super) fn sweep_html(r: &Report, s: &SweepInfo) -> String {
    let mut out = String::from("<section id=\"sweep\"><h2>Metrics against the swept parameter</h2>");
    let Some(x) = x_axis(s) else {
        out.push_str("<p class=\"note\">The sweep has no axis: nothing to plot against.</p></section>");
        return out;
    };
    let mut others: Vec<&Axis> = s.axes.iter().filter(|a| a.name != x.name && a.values.len() > 1).collect();
    // Past eight lines a chart is unreadable: facet by the other axis with the fewest values (one
    // chart per value, side by side, on one y scale), the rest are lines.
    let lines_of = |axes: &[&Axis]| axes.iter().map(|a| a.values.len()).product::<usize>();
    let facet: Option<&Axis> = if lines_of(&others) > charts::PALETTE.len() && others.len() >= 2 {
        let (i, _) =
            others.iter().enumerate().rev().min_by_key(|(_, a)| a.values.len()).unwrap_or((0, &others[0]));
        Some(others.remove(i))
    } else {
        None
    };
    let seeds: BTreeSet<u64> = r.runs.iter().filter_map(|x| x.seed).collect();
    let _ = write!(
        out,
        "<p class=\"note\">x: <b>{}</b>; one line per {}{}; {}</p>",
        esc(&x.label_or_name()),
        if others.is_empty() {
            "run set".to_string()
        } else {
            others.iter().map(|a| esc(&a.name)).collect::<Vec<_>>().join(" × ")
        },
        facet.map(|f| format!(", one chart per {}", esc(&f.name))).unwrap_or_default(),
        if seeds.len() > 1 {
            format!(
                "each point is the mean over {} seeds, the bar from their minimum to their maximum.",
                seeds.len()
            )
        } else {
            "one seed.".to_string()
        }
    );
    out.push_str(
        "<p class=\"note\">Lines with the same values lie on top of each other; the numbers beneath each chart \
         list every line.</p>",
    );
    out.push_str(&stopped_runs_note(r, x));
    let param = |run: &Run, a: &Axis| -> String {
        run.params.iter().find(|(k, _)| *k == a.name).map_or(String::new(), |p| p.1.clone())
    };
    let line_key = |run: &Run| -> String {
        let parts: Vec<String> = others
            .iter()
            .map(|a| if others.len() == 1 { param(run, a) } else { format!("{}={}", a.name, param(run, a)) })
            .collect();
        parts.join(", ")
    };
    let mut line_keys: Vec<String> = Vec::new();
    for run in &r.runs {
        let k = line_key(run);
        if !line_keys.contains(&k) {
            line_keys.push(k);
        }
    }
    let facets: Vec<Option<String>> = match facet {
        Some(f) => f.values.iter().cloned().map(Some).collect(),
        None => vec![None],
    };
    let xpos = |run: &Run| -> Option<f64> {
        let v = param(run, x);
        if x.numeric { v.parse().ok() } else { x.values.iter().position(|c| *c == v).map(|i| i as f64) }
    };
    let axis = if x.numeric { XAxis::Numeric } else { XAxis::Categories(x.values.clone()) };
    let legend: Vec<String> =
        line_keys.iter().map(|k| if k.is_empty() { "all runs".to_string() } else { k.clone() }).collect();
    let entries: Vec<(String, plotters::style::RGBColor)> =
        legend.iter().enumerate().map(|(i, n)| (n.clone(), charts::colour(i))).collect();
    out.push_str(&charts::legend_html(&entries));
    if line_keys.len() > charts::PALETTE.len() {
        out.push_str("<p class=\"note\">More lines than colours: lines repeat a colour with a different marker (●, ▲, ✕).</p>");
    }
    let _ = write!(out, "<div class=\"charts{}\">", if facet.is_some() { " bars" } else { "" });
    let mut zero = Vec::new();
    // Simulated time in the unit that suits the sweep's largest run.
    let longest = r.runs.iter().map(|x| x.m("sim_time_ns")).fold(0.0_f64, f64::max);
    let time_unit = [("s", 1e9), ("ms", 1e6), ("µs", 1e3)]
        .into_iter()
        .find(|(_, ns)| longest >= *ns)
        .unwrap_or(("ns", 1.0));
    let time_desc = format!("simulated time ({})", time_unit.0);
    for (i, &(name, title, y_desc, scale)) in SWEEP_METRICS.iter().enumerate() {
        let (y_desc, scale) =
            if name == "sim_time_ns" { (time_desc.as_str(), 1.0 / time_unit.1) } else { (y_desc, scale) };
        // Lines per facet, and whether anything is non-zero.
        let mut per_facet: Vec<Vec<Line>> = Vec::new();
        let mut any = false;
        for fv in &facets {
            let mut lines = Vec::new();
            for lk in &line_keys {
                let mut pts: Vec<(f64, Vec<f64>)> = Vec::new();
                let in_line = |run: &&Run| {
                    line_key(run) == *lk
                        && match (facet, fv) {
                            (Some(f), Some(v)) => param(run, f) == *v,
                            _ => true,
                        }
                };
                for run in r.runs.iter().filter(in_line).filter(|run| run.outcome == "completed") {
                    let Some(px) = xpos(run) else { continue };
                    let v = run.m(name) * scale;
                    any |= v != 0.0;
                    match pts.iter_mut().find(|(p, _)| p.to_bits() == px.to_bits()) {
                        Some((_, vs)) => vs.push(v),
                        None => pts.push((px, vec![v])),
                    }
                }
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                let points = pts
                    .into_iter()
                    .map(|(px, vs)| {
                        let mean = vs.iter().sum::<f64>() / vs.len() as f64;
                        let lo = vs.iter().copied().fold(f64::INFINITY, f64::min);
                        let hi = vs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                        (px, mean, lo, hi)
                    })
                    .collect();
                lines.push(Line { points });
            }
            per_facet.push(lines);
        }
        if !any {
            zero.push(name);
            continue;
        }
        let y_max =
            per_facet.iter().flatten().flat_map(|l| l.points.iter().map(|p| p.3)).fold(0.0_f64, f64::max);
        let y_min =
            per_facet.iter().flatten().flat_map(|l| l.points.iter().map(|p| p.2)).fold(0.0_f64, f64::min);
        let mut svgs = String::new();
        let mut data = String::new();
        for (fv, lines) in facets.iter().zip(&per_facet) {
            let chart_title = match (facet, fv) {
                (Some(f), Some(v)) => format!("{title}, {}={v}", f.name),
                _ => format!("{title} vs {}", x.label_or_name()),
            };
            svgs.push_str(&charts::lines(
                &chart_title,
                &x.label_or_name(),
                y_desc,
                &axis,
                lines,
                (y_min, y_max),
            ));
            if let Some(v) = fv {
                let _ = write!(
                    data,
                    "<p>{}={}</p>",
                    esc(&facet.map(|f| f.name.clone()).unwrap_or_default()),
                    esc(v)
                );
            }
            data.push_str(&line_data(&x.label_or_name(), &axis, &legend, lines));
        }
        let svgs = format!("<div class=\"facets\">{svgs}</div>");
        out.push_str(&figure(
            &format!("chart-sweep-{i}"),
            &svgs,
            &[],
            &format!("{name} against {}.", x.name),
            &data,
            false,
        ));
    }
    out.push_str("</div>");
    if !zero.is_empty() {
        let _ = write!(out, "<p class=\"note\">Zero in every run (not drawn): {}.</p>", zero.join(", "));
    }
    out.push_str("</section>\n");
    out
}

/// The sweep's runs that did not complete, which its charts leave out (their metrics stop where
/// the run stopped, so a `vm_error` run would plot as if its guest had kept its huge pages): by
/// outcome and reason, with the x values at which they stopped. Empty when every run completed.
pub(super) fn stopped_runs_note(r: &Report, x: &Axis) -> String {
    // (outcome and reason, runs, the x values in the order first seen)
    let mut by: Vec<(String, usize, Vec<String>)> = Vec::new();
    for run in r.runs.iter().filter(|run| run.outcome != "completed") {
        let what = if run.reason.is_empty() {
            run.outcome.clone()
        } else {
            format!("{} ({})", run.outcome, run.reason)
        };
        let at =
            run.params.iter().find(|(k, _)| *k == x.name).map_or_else(|| "?".to_string(), |p| p.1.clone());
        match by.iter_mut().find(|(w, _, _)| *w == what) {
            Some((_, n, xs)) => {
                *n += 1;
                if !xs.contains(&at) {
                    xs.push(at);
                }
            }
            None => by.push((what, 1, vec![at])),
        }
    }
    if by.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = by
        .into_iter()
        .map(|(what, n, mut xs)| {
            // In the axis's own order.
            xs.sort_by_key(|v| x.values.iter().position(|a| a == v).unwrap_or(usize::MAX));
            format!("{n} × {} at {}={}", esc(&what), esc(&x.name), esc(&xs.join(", ")))
        })
        .collect();
    format!(
        "<p class=\"note stopped\" id=\"sweep-stopped\">Not plotted: runs that did not complete (their metrics stop where \
         the run stopped): {}. The table below lists them.</p>",
        parts.join("; ")
    )
}

pub(super) fn line_data(x_name: &str, axis: &XAxis, legend: &[String], lines: &[Line]) -> String {
    let mut s =
        format!("<table><thead><tr><th scope=\"col\">line</th><th scope=\"col\">{}</th>", esc(x_name));
    s.push_str("<th scope=\"col\" class=\"num\">mean</th><th scope=\"col\" class=\"num\">min</th><th scope=\"col\" class=\"num\">max</th></tr></thead><tbody>");
    for (l, name) in lines.iter().zip(legend) {
        for &(x, mean, lo, hi) in &l.points {
            let xs = match axis {
                XAxis::Numeric => fmt_num(x),
                XAxis::Categories(c) => charts::index(x).and_then(|i| c.get(i)).cloned().unwrap_or_default(),
            };
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                esc(name),
                esc(&xs),
                fmt_num(mean),
                fmt_num(lo),
                fmt_num(hi)
            );
        }
    }
    s.push_str("</tbody></table>");
    s
}

impl Axis {
    fn label_or_name(&self) -> String {
        if self.label.is_empty() { self.name.clone() } else { self.label.clone() }
    }
}

#[cfg(test)]
mod sweep_metric_tests {
    /// [`metric`] reads an absent name as 0: every charted name must be one `[expect]` accepts.
    #[test]
    fn every_sweep_chart_names_a_metric() {
        for (name, ..) in super::SWEEP_METRICS {
            assert_eq!(snpsim_scenario::check_metric_name(name), Ok(()), "{name}");
        }
    }
}
