//! The page: its style, summary, who-wins grids, verdicts, the explanation of each stopped run,
//! the results table and the metric glossary, around the charts.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::charts::{esc, fmt_num};
use super::figures::{counts_html, coverage_html, time_html};
use super::inputs::{PER_RUN_CHART_LIMIT, Report, Run, Verdict, distinct_scenarios};
use super::sweep::sweep_html;
use super::{attacks, heatmap};

pub(super) const STYLE: &str = r#"
:root { color-scheme: light dark; --bg: #ffffff; --fg: #1b1b1f; --muted: #555a60; --rule: #d0d4d9;
  --zebra: #f3f5f7; --ok: #0b6b2e; --ok-bg: #dff3e6; --bad: #a1001c; --bad-bg: #fde3e7; --link: #0058a3; }
@media (prefers-color-scheme: dark) {
  :root { --bg: #15171a; --fg: #e7e9ec; --muted: #a9afb7; --rule: #3a3f45; --zebra: #1d2024;
    --ok: #7ee2a3; --ok-bg: #12351f; --bad: #ff9aab; --bad-bg: #3d1119; --link: #8cc4ff; }
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans", sans-serif; }
main { max-width: 1320px; margin: 0 auto; padding: 20px 24px 60px; }
h1 { font-size: 1.6rem; margin: 0.2em 0; }
h2 { font-size: 1.25rem; margin-top: 2em; border-bottom: 1px solid var(--rule); padding-bottom: 4px; }
h3 { font-size: 1.05rem; margin: 1.4em 0 0.4em; }
a { color: var(--link); }
p.lead, p.note, .muted, span.why { color: var(--muted); }
span.why { font-size: 11px; }
ul.why { font-size: 13px; color: var(--muted); }
nav ul { display: flex; flex-wrap: wrap; gap: 6px 18px; padding: 0; list-style: none; }
table { border-collapse: collapse; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { padding: 3px 8px; border-bottom: 1px solid var(--rule); white-space: nowrap; }
th { text-align: left; position: sticky; top: 0; background: var(--bg); }
td.num, th.num { text-align: right; }
td.wrap { white-space: normal; min-width: 12em; max-width: 24em; }
#attack-table td.wrap { min-width: 8em; max-width: 13em; }
tbody tr:nth-child(even) { background: var(--zebra); }
.scroll { overflow-x: auto; max-width: 100%; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; }
.badge.ok { color: var(--ok); background: var(--ok-bg); }
.badge.bad { color: var(--bad); background: var(--bad-bg); }
.badge.mixed { color: var(--muted); background: var(--ok-bg); border: 1px solid var(--muted); }
td.failed { color: var(--bad); font-weight: 600; }
table.grid { border-collapse: collapse; margin: 0.6em 0 1em; font-size: 13px; }
table.grid caption { text-align: left; font-weight: 600; padding-bottom: 4px; }
table.grid th, table.grid td { padding: 3px 10px; border: 1px solid var(--muted); text-align: left; }
table.grid td.ok { color: var(--ok); background: var(--ok-bg); }
table.grid td.bad { color: var(--bad); background: var(--bad-bg); }
ol.verdicts { padding-left: 1.2em; }
ol.verdicts li { margin: 0.6em 0; }
ol.verdicts .evidence { display: block; color: var(--muted); font-size: 13px; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 620px), 1fr)); gap: 18px; }
.charts.bars { grid-template-columns: 1fr; }
.facets { display: flex; flex-wrap: wrap; gap: 8px; }
.charts.small { grid-template-columns: repeat(auto-fill, minmax(min(100%, 330px), 1fr)); }
figure.chart { margin: 0; padding: 8px; border: 1px solid var(--rule); border-radius: 6px; min-width: 0; }
figure.chart svg { display: block; max-width: 100%; height: auto; }
caption { caption-side: top; text-align: left; padding: 4px 0; }
figure.chart figcaption { font-size: 13px; color: var(--muted); margin-top: 4px; }
figure.wide { grid-column: 1 / -1; }
ul.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; padding: 0; margin: 4px 0; list-style: none; font-size: 13px; }
.swatch { display: inline-block; width: 12px; height: 12px; margin-right: 5px; vertical-align: -1px;
  border: 1px solid var(--fg); }
details { margin-top: 4px; font-size: 13px; }
summary { cursor: pointer; color: var(--muted); }
dl.metrics dt { font-weight: 600; } dl.metrics dd { margin: 0 0 6px 16px; color: var(--muted); }
.heats { display: flex; flex-wrap: wrap; gap: 12px 18px; align-items: flex-start; }
figure.heat { margin: 0; }
table.heat { border-collapse: collapse; font-size: 12px; }
table.heat caption { font-weight: 600; }
table.heat th, table.heat td { padding: 2px 8px; border: 1px solid var(--rule); }
table.heat td.num { text-align: right; }
table.heat td.stopped { color: var(--bad); background: var(--bad-bg); white-space: nowrap; }
table.heat td.none { color: var(--muted); text-align: center; }
"#;

/// Terminal-table columns: header, metric, unit note.
pub(super) const TABLE_COLUMNS: &[(&str, &str)] = &[
    ("RMP #NPF", "rmp_npf"),
    ("SIZEM", "rmp_npf_sizem"),
    ("#NPF exits", "exits.npf"),
    ("host splits", "host_splits"),
    ("needless", "host_splits_needless"),
    ("NPT demotions", "npt_demotions"),
    ("PSMASH", "psmash"),
    ("SIGBUS", "sigbus"),
    ("-EFAULT", "efault"),
    ("lost pages", "data_loss_pages"),
    ("false neg.", "false_negatives"),
];

/// The report page.
pub fn html(r: &Report) -> String {
    let mut body = String::new();
    let mut toc: Vec<(&str, &str)> = Vec::new();
    let title = match &r.sweep {
        Some(s) if !s.name.is_empty() => format!("snpsim sweep: {}", s.name),
        Some(_) => "snpsim sweep".to_string(),
        None if !r.verdicts.is_empty() => "snpsim: the 2021 SNP debate".to_string(),
        None => "snpsim report".to_string(),
    };
    let _ = write!(body, "<header><h1>{}</h1>", esc(&title));
    let _ = write!(body, "<p class=\"lead\">{}</p></header>", esc(&summary(r)));

    if let Some(grids) = who_wins_html(&r.runs) {
        toc.push(("who-wins", "Who wins"));
        body.push_str(&grids);
    }
    if !r.verdicts.is_empty() {
        toc.push(("verdicts", "Verdicts"));
        body.push_str(&verdicts_html(&r.verdicts));
    }
    if r.runs.iter().any(|x| !x.adversary.is_empty()) {
        toc.push(("attacks", "Attacks"));
        body.push_str(&attacks::html(&r.runs));
    }
    if let Some(s) = &r.sweep {
        toc.push(("sweep", "Sweep"));
        body.push_str(&sweep_html(r, s));
    }
    // Runs that form a policy × backing matrix are drawn as heatmaps; the others keep a bar each.
    let matrices = heatmap::matrices(r);
    if !matrices.is_empty() {
        toc.push(("heatmaps", "Policy × backing"));
        body.push_str(&heatmap::html(r, &matrices));
    }
    let in_matrix: BTreeSet<usize> = matrices.iter().flat_map(|m| m.runs.iter().copied()).collect();
    let rest = Report {
        runs: r
            .runs
            .iter()
            .enumerate()
            .filter(|(i, _)| !in_matrix.contains(i))
            .map(|(_, x)| x.clone())
            .collect(),
        verdicts: Vec::new(),
        sweep: r.sweep.clone(),
    };
    if r.runs.len() <= PER_RUN_CHART_LIMIT {
        if !rest.runs.is_empty() {
            toc.push(("counts", "Faults, exits, splits"));
            body.push_str(&counts_html(&rest));
            toc.push(("time", "Simulated time"));
            body.push_str(&time_html(&rest));
        }
        toc.push(("coverage", "NPT coverage"));
        body.push_str(&coverage_html(r));
    } else {
        let _ = write!(
            body,
            "<p class=\"note\">{} runs: per-run charts are left out above {PER_RUN_CHART_LIMIT} runs; the table below \
             covers every run, the sweep charts every run that completed.</p>",
            r.runs.len()
        );
    }
    // The raw numbers last: the summary, the grids, the verdicts and the charts answer first.
    toc.push(("results", "Results"));
    body.push_str(&table_html(r));
    toc.push(("glossary", "Metrics"));
    body.push_str(GLOSSARY);

    let mut page = String::new();
    page.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    page.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    page.push_str("<meta name=\"color-scheme\" content=\"light dark\">\n");
    page.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\n",
    );
    let _ = writeln!(page, "<meta name=\"generator\" content=\"snpsim {}\">", env!("CARGO_PKG_VERSION"));
    let _ = writeln!(page, "<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>", esc(&title));
    page.push_str("<nav aria-label=\"Sections\"><ul>");
    for (id, name) in &toc {
        let _ = write!(page, "<li><a href=\"#{id}\">{name}</a></li>");
    }
    page.push_str("</ul></nav>\n");
    page.push_str(&body);
    let _ = write!(
        page,
        "\n<footer><p class=\"note\">Made by snpsim {} from the results alone; simulated time comes from the cost \
         model's (unmeasured, overridable) parameters.</p></footer>\n</main>\n</body>\n</html>\n",
        env!("CARGO_PKG_VERSION")
    );
    page
}

pub(super) fn summary(r: &Report) -> String {
    let mut outcomes: Vec<(String, usize)> = Vec::new();
    for run in &r.runs {
        match outcomes.iter_mut().find(|(o, _)| *o == run.outcome) {
            Some((_, n)) => *n += 1,
            None => outcomes.push((run.outcome.clone(), 1)),
        }
    }
    let failed = r.runs.iter().filter(|x| x.failed).count();
    let mut s = format!(
        "{} run{}: {}",
        r.runs.len(),
        if r.runs.len() == 1 { "" } else { "s" },
        outcomes.iter().map(|(o, n)| format!("{n} {o}")).collect::<Vec<_>>().join(", ")
    );
    if failed > 0 {
        let _ = write!(s, "; {failed} failed an expectation or invariant");
    }
    if !r.verdicts.is_empty() {
        let ok = r.verdicts.iter().filter(|v| v.status == "supported").count();
        let _ = write!(s, "; {ok} of {} claims supported", r.verdicts.len());
    }
    s.push('.');
    s
}

/// The default run's who-wins grids (the terminal's first screen), from its matrix runs (scenario
/// `debate matrix`); `None` when the results hold none.
pub(super) fn who_wins_html(runs: &[Run]) -> Option<String> {
    let views: Vec<crate::matrix::RunView<'_>> = runs
        .iter()
        .filter(|r| r.scenario == snpsim_debate::debate::MATRIX_SCENARIO_NAME)
        .map(|r| crate::matrix::RunView {
            policy: &r.policy,
            backing: &r.backing,
            granularity: &r.guest,
            follows: r.npt_level_follows_rmp.unwrap_or(false),
            outcome: &r.outcome,
            reason: (!r.reason.is_empty()).then_some(r.reason.as_str()),
            cause: (!r.cause.is_empty()).then_some(r.cause.as_str()),
            metric: Box::new(|k| r.m(k)),
        })
        .collect();
    if views.is_empty() {
        return None;
    }
    let mut s = String::from(
        "<section id=\"who-wins\"><h2>Who wins</h2><p class=\"note\">Each cell: a 1 GiB guest accepts 64 MiB, \
         shares a driver buffer, lets the VMM and vhost write it, and reads its data back, under the policy \
         (row) on the backing (column), with <code>npt_level_follows_rmp</code> at the policy's default. \
         <q>ok</q> is followed by what it cost; otherwise the cell says how the run stopped.</p>",
    );
    for (what, rows) in crate::matrix::grids(&views) {
        let _ = write!(s, "<table class=\"grid\"><caption>{}</caption>", esc(what));
        for row in &rows {
            s.push_str("<tr>");
            for (text, tone) in row {
                let (tag, class) = match tone {
                    None => ("th", ""),
                    Some(crate::matrix::Tone::Ok) => ("td", " class=\"ok\""),
                    Some(crate::matrix::Tone::Bad) => ("td", " class=\"bad\""),
                    Some(crate::matrix::Tone::Missing) => ("td", ""),
                };
                let _ = write!(s, "<{tag}{class}>{}</{tag}>", esc(text));
            }
            s.push_str("</tr>");
        }
        s.push_str("</table>");
    }
    s.push_str("</section>\n");
    Some(s)
}

pub(super) fn verdicts_html(vs: &[Verdict]) -> String {
    let mut s = String::from(
        "<section id=\"verdicts\"><h2>Verdicts on the seed's claims</h2><p class=\"note\">Each claim of the \
         2021 debate, judged from the runs below; the evidence names the numbers.</p><ol class=\"verdicts\">",
    );
    for v in vs {
        let class = match v.status.as_str() {
            "supported" => "ok",
            "mixed" => "mixed",
            _ => "bad",
        };
        let _ = write!(
            s,
            "<li><span class=\"badge {class}\">{}</span> {}<span class=\"evidence\">under: {}</span>\
             <span class=\"evidence\">{}</span><span class=\"evidence\">would fail if: {}</span>",
            esc(&v.status),
            esc(&v.claim),
            esc(&v.settings),
            esc(&v.evidence),
            esc(&v.falsifier)
        );
        if !v.by_construction.is_empty() {
            let _ = write!(s, "<span class=\"evidence\">by construction: {}</span>", esc(&v.by_construction));
        }
        s.push_str("</li>");
    }
    s.push_str("</ol></section>\n");
    s
}

/// Under a run's outcome: its cause (for `vm_error`) and reason, e.g. `unresolvable:
/// host-split-impossible`; nothing for a completed run.
pub(super) fn why_cell(run: &Run) -> String {
    if run.reason.is_empty() {
        return String::new();
    }
    let cause = if run.cause.is_empty() { String::new() } else { format!("{}: ", esc(&run.cause)) };
    format!("<br><span class=\"why\">{cause}{}</span>", esc(&run.reason))
}

/// One line per run that did not complete, under the table: which run, its outcome, cause and
/// reason, and the detail in words.
pub(super) fn why_list(runs: &[Run], with_scenario: bool) -> String {
    let lines: Vec<String> = runs
        .iter()
        .filter(|run| !run.detail.is_empty())
        .map(|run| {
            let who = if with_scenario {
                format!("{} ({}, {}, {})", run.scenario, run.policy, run.backing, run.guest)
            } else {
                format!("{}, {}, {}", run.policy, run.backing, run.guest)
            };
            let kind = [run.outcome.as_str(), run.cause.as_str(), run.reason.as_str()]
                .into_iter()
                .filter(|k| !k.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            format!("<li>{}: <code>{}</code>: {}</li>", esc(&who), esc(&kind), esc(&run.detail))
        })
        .collect();
    if lines.is_empty() {
        return String::new();
    }
    format!("<p class=\"note\">Why runs did not complete:</p><ul class=\"why\">{}</ul>", lines.concat())
}

pub(super) fn table_html(r: &Report) -> String {
    let with_scenario = distinct_scenarios(r).len() > 1;
    let params: Vec<String> =
        r.sweep.as_ref().map(|s| s.axes.iter().map(|a| a.name.clone()).collect()).unwrap_or_default();
    let with_seed = r.runs.iter().any(|x| x.seed.is_some());
    let mut s = String::from(
        "<section id=\"results\"><h2>Results</h2><div class=\"scroll\"><table id=\"results-table\">",
    );
    s.push_str("<caption class=\"muted\">One row per run; ! marks a run that failed an expectation or invariant.</caption><thead><tr>");
    if with_scenario {
        s.push_str("<th scope=\"col\">scenario</th>");
    }
    for p in &params {
        let _ = write!(s, "<th scope=\"col\">{}</th>", esc(p));
    }
    if with_seed {
        s.push_str("<th scope=\"col\" class=\"num\">seed</th>");
    }
    s.push_str("<th scope=\"col\">policy</th><th scope=\"col\">backing</th><th scope=\"col\" title=\"npt_level_follows_rmp\">npt≤rmp</th><th scope=\"col\">guest</th><th scope=\"col\">outcome</th>");
    for (h, _) in TABLE_COLUMNS {
        let _ = write!(s, "<th scope=\"col\" class=\"num\">{h}</th>");
    }
    s.push_str("<th scope=\"col\" class=\"num\">NPT 2M+ (%)</th><th scope=\"col\" class=\"num\">2M-able (%)</th><th scope=\"col\" class=\"num\">sim time (µs)</th></tr></thead><tbody>");
    for run in &r.runs {
        s.push_str("<tr>");
        if with_scenario {
            let _ = write!(s, "<td class=\"wrap\">{}</td>", esc(&run.scenario));
        }
        for p in &params {
            let v = run.params.iter().find(|(k, _)| k == p).map_or("", |(_, v)| v.as_str());
            let _ = write!(s, "<td>{}</td>", esc(v));
        }
        if with_seed {
            let _ =
                write!(s, "<td class=\"num\">{}</td>", run.seed.map(|x| x.to_string()).unwrap_or_default());
        }
        let follows = match run.npt_level_follows_rmp {
            Some(true) => "yes",
            Some(false) => "no",
            None => "",
        };
        let _ = write!(
            s,
            "<td>{}</td><td>{}</td><td>{follows}</td><td>{}</td><td{}>{}{}{}</td>",
            esc(&run.policy),
            esc(&run.backing),
            esc(&run.guest),
            if run.failed { " class=\"failed\"" } else { "" },
            esc(&run.outcome),
            if run.failed { "!" } else { "" },
            why_cell(run)
        );
        for (_, key) in TABLE_COLUMNS {
            let _ = write!(s, "<td class=\"num\">{}</td>", fmt_num(run.m(key)));
        }
        let cover = 100.0 * (run.m("npt_coverage.2m") + run.m("npt_coverage.1g"));
        let capable = 100.0 * run.m("huge_capable");
        let _ = write!(
            s,
            "<td class=\"num\">{cover:.1}</td><td class=\"num\">{capable:.1}</td><td class=\"num\">{}</td></tr>",
            fmt_num((run.m("sim_time_ns") / 100.0).round() / 10.0)
        );
    }
    s.push_str("</tbody></table></div>");
    s.push_str(&why_list(&r.runs, with_scenario));
    let legend = crate::table::readings_legend(r.runs.iter().map(|run| run.policy.as_str()));
    if !legend.is_empty() {
        let _ = write!(s, "<p class=\"note\">{}</p>", esc(legend.trim_end()));
    }
    s.push_str("</section>\n");
    s
}

pub(super) const GLOSSARY: &str = r#"<section id="glossary"><h2>Metrics</h2><dl class="metrics">
<dt>rmp_npf, rmp_npf_sizem</dt><dd>Nested page faults with the RMP bit, and those with the page-size-mismatch bit (an NPT leaf larger than the RMP entry, or the reverse).</dd>
<dt>exits</dt><dd>VM exits by reason; exits.npf counts every #NPF exit.</dd>
<dt>host_splits, host_splits_needed, host_splits_needless</dt><dd>Host huge mappings split; needed = a later host write completed through the 4K mapping but would have taken an RMP #PF through the huge mapping the split replaced; needless = the others (guest accesses go through the NPT, which KVM can demote, so they never need a host split).</dd>
<dt>npt_demotions</dt><dd>NPT leaves demoted or zapped to resolve a fault, by from → to level.</dd>
<dt>psmash</dt><dd>2M RMP entries smashed into 512 4K entries (one-way without a re-coalesce).</dd>
<dt>sigbus, efault</dt><dd>Host writes to guest memory that failed: SIGBUS for the VMM's user access, -EFAULT for the kernel's get/put_user.</dd>
<dt>data_loss_pages, false_negatives</dt><dd>Guest data pages found scrambled or stale; accesses that completed but should have faulted (always 0).</dd>
<dt>npt_coverage</dt><dd>The share of guest memory the NPT maps with 4K, 2M and 1G leaves, and the share it does not map (unmapped); the four sum to 1. The table's NPT 2M+ is 2m + 1g.</dd>
<dt>huge_capable</dt><dd>The share of guest memory that could still be mapped at 2M or more: its host page (VMA mapping or guest_memfd folio) and its RMP entry are still huge, or its RMP region is unassigned. A host split or a PSMASH can make a range permanently 4K. The table's 2M-able column.</dd>
<dt>sim_time_ns</dt><dd>Simulated time from the cost model, by cost item in sim_time_by_item.</dd>
</dl></section>
"#;

#[cfg(test)]
mod sweep_layout_tests {
    use serde_json::json;

    /// A sweep of four runs at x = 1, 3, 2, 4; those at 3 and 2 stopped with a vm_error, their
    /// host_splits 777 and 778 (values no completed run has).
    fn page() -> String {
        let run = |x: u64, outcome: &str, splits: u64| {
            let mut o = json!({
                "scenario": "s", "policy": "rfc-host-split", "backing": "hugetlbfs-2m", "guest": "4k",
                "outcome": outcome, "params": { "rate": x }, "seed": 1,
                "metrics": { "host_splits": splits, "host_splits_needless": splits, "sim_time_ns": 1000 * x },
            });
            if outcome != "completed" {
                o["reason"] = json!("host-split-impossible");
                o["cause"] = json!("unresolvable");
                o["detail"] = json!("unresolvable #NPF");
            }
            o
        };
        let manifest =
            json!({ "name": "t", "x": "rate", "axes": [{ "name": "rate", "values": [1, 2, 3, 4] }] });
        let lines = [
            run(1, "completed", 10),
            run(3, "vm_error", 777),
            run(2, "vm_error", 778),
            run(4, "completed", 30),
        ];
        super::html(&super::Report::from_sweep(&manifest, &lines).unwrap())
    }

    #[test]
    fn a_sweep_leaves_out_runs_that_stopped_and_says_so() {
        let html = page();
        let sweep = &html[html.find("id=\"sweep\"").unwrap()..html.find("id=\"counts\"").unwrap()];
        assert!(sweep.contains("id=\"chart-sweep-0\""), "{sweep}");
        // The stopped run is not a point of any sweep chart (nor of its numbers)...
        assert!(!sweep.contains("777") && !sweep.contains("778"), "{sweep}");
        assert!(sweep.contains(">10<") && sweep.contains(">30<"), "{sweep}");
        // ...but named above them, and kept in the table below.
        assert!(sweep.contains("Not plotted: runs that did not complete"), "{sweep}");
        // In the axis's order, though the run at 3 came first.
        assert!(sweep.contains("2 × vm_error (host-split-impossible) at rate=2, 3."), "{sweep}");
        let table = &html[html.find("id=\"results\"").unwrap()..];
        assert!(table.contains("777"), "the table lists every run");
    }

    #[test]
    fn charts_come_before_the_table_and_stopped_runs_are_marked() {
        let html = page();
        let at = |id: &str| html.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no {id}"));
        assert!(at("sweep") < at("results") && at("counts") < at("results"), "charts first");
        assert!(at("results") < at("glossary"));
        // The per-run bars mark the run that stopped.
        let counts = &html[at("counts")..at("time")];
        assert!(counts.contains("rate=2 · seed 1 ✕ vm_error"), "{counts}");
    }
}
