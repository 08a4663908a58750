//! `snpsim report`: one self-contained HTML page (no script, no network, no external font) with
//! the results table, the debate's verdicts, and SVG charts.
//!
//! The page is built from the JSON documents the other commands write, never from a live run, so
//! `snpsim report DIR` rebuilds exactly the `report.html` that `run`/`compare`/`sweep`/`merge
//! --out DIR` wrote: `results.json` (one object per run, with `npt_coverage_series`) and, for the
//! default debate run, `verdicts.json` beside it; or a sweep's `sweep.json` manifest and its
//! `runs.jsonl`. The page depends on nothing but those inputs (no date, no path), so the same
//! results give the same bytes.

pub mod attacks;
pub mod charts;
mod heatmap;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::Value;

use charts::{Component, Line, Rows, XAxis, esc, fmt_num};

use crate::output::OutFile;

/// `snpsim report` options.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Results: a directory written by `run`/`compare`/`sweep`/`merge --out`, a results.json
    /// (or `--json` output; `-` reads it from standard input), or a sweep's runs.jsonl.
    results: PathBuf,
    /// The HTML file to write (replaced whole; `-` writes standard output).
    #[arg(long, value_name = "FILE")]
    html: PathBuf,
}

/// NPT coverage over simulated time, as results.json carries it (`npt_coverage_series`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    /// Simulated time of each point, ns.
    pub t_ns: Vec<f64>,
    /// Pages mapped at 4K, 2M, 1G and not mapped at each point (results written before the
    /// `unmapped` column have 0 there).
    pub pages: Vec<[f64; 4]>,
}

/// One run, as the report reads it.
#[derive(Debug, Clone)]
pub struct Run {
    /// Scenario name.
    pub scenario: String,
    /// Policy.
    pub policy: String,
    /// Backing.
    pub backing: String,
    /// The guest (compare's `guest`, else the granularity).
    pub guest: String,
    /// Outcome.
    pub outcome: String,
    /// Whether an expectation or invariant failed.
    pub failed: bool,
    /// The `metrics` object.
    pub metrics: Value,
    /// NPT coverage over time, if recorded.
    pub series: Option<Series>,
    /// Sweep parameters (axis name, value as written) in axis order.
    pub params: Vec<(String, String)>,
    /// The seed, for sweep runs.
    pub seed: Option<u64>,
    /// Why the run did not complete (`reason`, a kebab-case name; empty for `completed`).
    pub reason: String,
    /// The cause of a `vm_error` (`cause`: `unresolvable` or `instruction_failed`; else empty).
    pub cause: String,
    /// The reason in words (`detail`; results written before it existed carry their text in
    /// `reason`, which is then taken as the detail).
    pub detail: String,
    /// Invariant violations (`violations`): in an adversary run, the attack's effects.
    pub violations: Vec<String>,
    /// The adversary's attacks (`adversary`; empty for an honest host).
    pub adversary: Vec<String>,
    /// What the adversary did (`attacks`), one line per attack.
    pub attacks: Vec<String>,
    /// Whether the guest tracks its validated pages (`validation_tracking`), if recorded.
    pub validation_tracking: Option<bool>,
    /// `npt_level_follows_rmp` in force (`npt_level_follows_rmp`), if recorded.
    pub npt_level_follows_rmp: Option<bool>,
}

impl Run {
    /// How a run's label marks an `npt_level_follows_rmp` other than its policy's default:
    /// ` · npt≤rmp` (capped at the RMP level) or ` · npt=host` (following the host level).
    fn setting_suffix(&self) -> &'static str {
        let default =
            snpsim_kvm::policy::by_name(&self.policy).map(snpsim_kvm::Policy::npt_level_follows_rmp);
        match (self.npt_level_follows_rmp, default) {
            (Some(f), Some(d)) if f != d => {
                if f {
                    " · npt≤rmp"
                } else {
                    " · npt=host"
                }
            }
            _ => "",
        }
    }
}

/// A claim of the debate and its verdict.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The claim.
    pub claim: String,
    /// The settings it was judged under.
    pub settings: String,
    /// What the runs say: `supported`, `mixed` or `not supported`.
    pub status: String,
    /// The result that would have contradicted the claim.
    pub falsifier: String,
    /// The part that holds by construction (empty if none).
    pub by_construction: String,
    /// The numbers.
    pub evidence: String,
}

/// A sweep axis as the manifest describes it.
#[derive(Debug, Clone)]
pub struct Axis {
    /// Name (the key, or a zipped axis's name).
    pub name: String,
    /// Label for charts.
    pub label: String,
    /// Values in order, as written.
    pub values: Vec<String>,
    /// Whether every value is a number.
    pub numeric: bool,
}

/// What a sweep's manifest tells the report.
#[derive(Debug, Clone)]
pub struct SweepInfo {
    /// The sweep's name.
    pub name: String,
    /// Axes in order.
    pub axes: Vec<Axis>,
    /// The axis on the x axis of the sweep charts, if chosen.
    pub x: Option<String>,
}

/// Everything on the page.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Runs in order.
    pub runs: Vec<Run>,
    /// The debate's verdicts (default run only).
    pub verdicts: Vec<Verdict>,
    /// Sweep description, for sweep results.
    pub sweep: Option<SweepInfo>,
}

/// Runs above this many get no per-run charts (a sweep's own charts summarise them). The default
/// run (every legacy policy at both NPT-level settings, the claim scenarios and the realistic
/// workloads) has about 140 runs and keeps its charts.
const PER_RUN_CHART_LIMIT: usize = 192;

/// A metric by name from a `metrics` object: `KEY`, `FAMILY.MEMBER` (0 if absent), a family's
/// total, `sim_time_ns.ITEM` (as [`snpsim_scenario::run::metric_value`] reads them).
pub fn metric(m: &Value, name: &str) -> f64 {
    let num = |x: &Value| x.as_f64();
    let v = match name.split_once('.') {
        Some(("sim_time_ns", item)) => m.get("sim_time_by_item").and_then(|f| f.get(item)).and_then(num),
        Some((family, member)) => m.get(family).map(|f| f.get(member).and_then(num).unwrap_or(0.0)),
        None => match m.get(name) {
            Some(Value::Object(members)) => Some(members.values().filter_map(num).sum()),
            Some(other) => num(other),
            None => None,
        },
    };
    v.unwrap_or(0.0)
}

fn str_field(o: &Value, key: &str) -> String {
    match o.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// An array of strings (absent or of another type: empty; other items as JSON text).
fn strings(o: &Value, key: &str) -> Vec<String> {
    o.get(key)
        .and_then(Value::as_array)
        .map(|a| a.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string)).collect())
        .unwrap_or_default()
}

/// The value of a sweep parameter as shown (strings without quotes).
pub fn param_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(param_text).collect::<Vec<_>>().join(" / "),
        other => other.to_string(),
    }
}

fn series_from(v: &Value) -> Option<Series> {
    let arr = |k: &str| -> Vec<f64> {
        v.get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default()
    };
    let t = arr("t_ns");
    let (k4, m2, g1) = (arr("4k"), arr("2m"), arr("1g"));
    let unmapped = if v.get("unmapped").is_some() { arr("unmapped") } else { vec![0.0; t.len()] };
    if t.len() != k4.len() || t.len() != m2.len() || t.len() != g1.len() || t.len() != unmapped.len() {
        return None;
    }
    let pages = (0..t.len()).map(|i| [k4[i], m2[i], g1[i], unmapped[i]]).collect();
    Some(Series { t_ns: t, pages })
}

impl Run {
    /// One run object of results.json (or a sweep's runs.jsonl line).
    pub fn from_json(o: &Value) -> Result<Run> {
        if !o.is_object() {
            bail!("expected an object per run, found {o}");
        }
        let Some(metrics) = o.get("metrics").filter(|m| m.is_object()) else {
            bail!("a run has no `metrics` object");
        };
        let guest = match o.get("guest") {
            Some(Value::String(g)) => g.clone(),
            _ => str_field(o, "granularity"),
        };
        let params = o
            .get("params")
            .and_then(Value::as_object)
            .map(|p| p.iter().map(|(k, v)| (k.clone(), param_text(v))).collect())
            .unwrap_or_default();
        Ok(Run {
            scenario: str_field(o, "scenario"),
            policy: str_field(o, "policy"),
            backing: str_field(o, "backing"),
            guest,
            outcome: str_field(o, "outcome"),
            failed: o.get("failures").and_then(Value::as_array).is_some_and(|f| !f.is_empty()),
            metrics: metrics.clone(),
            series: o.get("npt_coverage_series").and_then(series_from),
            params,
            seed: o.get("seed").and_then(Value::as_u64),
            reason: if o.get("detail").is_some() { str_field(o, "reason") } else { String::new() },
            cause: str_field(o, "cause"),
            detail: if o.get("detail").is_some() { str_field(o, "detail") } else { str_field(o, "reason") },
            violations: strings(o, "violations"),
            adversary: strings(o, "adversary"),
            attacks: strings(o, "attacks"),
            validation_tracking: o.get("validation_tracking").and_then(Value::as_bool),
            npt_level_follows_rmp: o.get("npt_level_follows_rmp").and_then(Value::as_bool),
        })
    }

    fn m(&self, name: &str) -> f64 {
        metric(&self.metrics, name)
    }
}

impl Report {
    /// From a results document (a JSON array of runs) and the verdicts, if any.
    pub fn from_results(results: &Value, verdicts: Option<&Value>) -> Result<Report> {
        let Some(items) = results.as_array() else { bail!("expected a JSON array of runs") };
        let runs = items.iter().map(Run::from_json).collect::<Result<Vec<_>>>()?;
        let verdicts = match verdicts {
            None => Vec::new(),
            Some(vs) => {
                let Some(vs) = vs.as_array() else { bail!("verdicts: expected a JSON array of verdicts") };
                vs.iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let status = str_field(v, "status");
                        if !["supported", "mixed", "not supported"].contains(&status.as_str()) {
                            bail!(
                                "verdicts[{i}].status: expected \"supported\", \"mixed\" or \"not supported\", got {:?}",
                                v.get("status")
                            );
                        }
                        Ok(Verdict {
                            claim: str_field(v, "claim"),
                            settings: str_field(v, "settings"),
                            status,
                            falsifier: str_field(v, "falsifier"),
                            by_construction: str_field(v, "by_construction"),
                            evidence: str_field(v, "evidence"),
                        })
                    })
                    .collect::<Result<Vec<_>>>()?
            }
        };
        Ok(Report { runs, verdicts, sweep: None })
    }

    /// From a sweep's manifest (`sweep.json`) and its run lines in index order.
    pub fn from_sweep(manifest: &Value, lines: &[Value]) -> Result<Report> {
        let axes = manifest
            .get("axes")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|ax| {
                        let values: Vec<Value> =
                            ax.get("values").and_then(Value::as_array).cloned().unwrap_or_default();
                        Axis {
                            name: str_field(ax, "name"),
                            label: str_field(ax, "label"),
                            numeric: !values.is_empty() && values.iter().all(Value::is_number),
                            values: values.iter().map(param_text).collect(),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let runs = lines.iter().map(Run::from_json).collect::<Result<Vec<_>>>()?;
        Ok(Report {
            runs,
            verdicts: Vec::new(),
            sweep: Some(SweepInfo {
                name: str_field(manifest, "name"),
                axes,
                x: manifest.get("x").and_then(Value::as_str).map(str::to_string),
            }),
        })
    }
}

/// Parse JSON text, naming `FILE:LINE:COLUMN` on error.
pub fn parse_json(file: &str, text: &str) -> Result<Value> {
    serde_json::from_str(text)
        .map_err(|e| anyhow::anyhow!("{file}:{}:{}: malformed JSON: {e}", e.line(), e.column()))
}

/// Parse JSON Lines, one value per non-empty line, naming `FILE:LINE:COLUMN` on error.
pub fn parse_jsonl(file: &str, text: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .map_err(|e| anyhow::anyhow!("{file}:{}:{}: malformed JSON line: {e}", i + 1, e.column()))?;
        out.push(v);
    }
    Ok(out)
}

fn read(path: &Path) -> Result<String> {
    let name = crate::input::display(path);
    let bytes = crate::input::read(path, "the results", crate::input::RESULTS)?;
    String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("{name}:1:1: not UTF-8 text"))
}

/// The files [`load`] may read for `path`, those that exist: what an output must not replace.
fn inputs_of(path: &Path) -> Vec<PathBuf> {
    if crate::input::is_stdin(path) {
        return Vec::new();
    }
    let dir = if path.is_dir() { path } else { crate::output::file::parent(path) };
    let mut v = vec![path.to_path_buf()];
    v.extend(["results.json", "verdicts.json", "runs.jsonl", "sweep.json"].map(|n| dir.join(n)));
    v.retain(|p| p.exists());
    v
}

/// Load what `report` reads from `path` (see [`ReportArgs::results`]).
pub fn load(path: &Path) -> Result<Report> {
    let name = crate::input::display(path);
    if crate::input::is_stdin(path) {
        let results = parse_json(&name, &read(path)?)?;
        return Report::from_results(&results, None).with_context(|| name.clone());
    }
    if path.is_dir() {
        if path.join("results.json").is_file() {
            return load(&path.join("results.json"));
        }
        if path.join("runs.jsonl").is_file() {
            return load(&path.join("runs.jsonl"));
        }
        if path.join("sweep.json").is_file() {
            bail!(
                "{name}: holds shard outputs only (shard-I-of-N.jsonl); join them first: snpsim merge {name} --out MERGED"
            );
        }
        bail!("{name}: no results.json or runs.jsonl in this directory");
    }
    if !path.exists() {
        bail!("{name}: no such file or directory");
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    if path.extension().is_some_and(|e| e == "jsonl") {
        let lines = parse_jsonl(&name, &read(path)?)?;
        let manifest_path = dir.join("sweep.json");
        let manifest = if manifest_path.is_file() {
            parse_json(&manifest_path.display().to_string(), &read(&manifest_path)?)?
        } else {
            Value::Null
        };
        return Report::from_sweep(&manifest, &lines).with_context(|| name.clone());
    }
    let results = parse_json(&name, &read(path)?)?;
    let verdicts_path = dir.join("verdicts.json");
    let verdicts = if path.file_name().is_some_and(|f| f == "results.json") && verdicts_path.is_file() {
        Some(parse_json(&verdicts_path.display().to_string(), &read(&verdicts_path)?)?)
    } else {
        None
    };
    Report::from_results(&results, verdicts.as_ref()).with_context(|| name.clone())
}

/// `snpsim report RESULTS --html FILE`.
pub fn report(args: &ReportArgs) -> Result<bool> {
    let out = OutFile::check("--html", &args.html)?;
    let inputs = inputs_of(&args.results);
    let named: Vec<(&str, &Path)> = inputs.iter().map(|p| ("the results", p.as_path())).collect();
    crate::output::paths::check(&named, &[&out], &[])?;
    let r = load(&args.results)?;
    out.write(html(&r).as_bytes())?;
    Ok(true)
}

// ---------------------------------------------------------------------------------------------
// The page.

const STYLE: &str = r#"
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
const TABLE_COLUMNS: &[(&str, &str)] = &[
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

fn summary(r: &Report) -> String {
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
fn who_wins_html(runs: &[Run]) -> Option<String> {
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

fn verdicts_html(vs: &[Verdict]) -> String {
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

fn distinct_scenarios(r: &Report) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for run in &r.runs {
        if !names.contains(&run.scenario) {
            names.push(run.scenario.clone());
        }
    }
    names
}

/// Under a run's outcome: its cause (for `vm_error`) and reason, e.g. `unresolvable:
/// host-split-impossible`; nothing for a completed run.
fn why_cell(run: &Run) -> String {
    if run.reason.is_empty() {
        return String::new();
    }
    let cause = if run.cause.is_empty() { String::new() } else { format!("{}: ", esc(&run.cause)) };
    format!("<br><span class=\"why\">{cause}{}</span>", esc(&run.reason))
}

/// One line per run that did not complete, under the table: which run, its outcome, cause and
/// reason, and the detail in words.
fn why_list(runs: &[Run], with_scenario: bool) -> String {
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

fn table_html(r: &Report) -> String {
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

/// Row labels and groups for per-run bar charts.
fn rows(r: &Report) -> Rows {
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

fn comp(r: &Report, name: &str, f: impl Fn(&Run) -> f64) -> Component {
    Component { name: name.to_string(), values: r.runs.iter().map(f).collect() }
}

/// A figure: the SVG, an HTML legend for stacked charts, a caption and the numbers as a table.
fn figure(id: &str, svg: &str, legend: &[String], caption: &str, data: &str, wide: bool) -> String {
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
fn bar_data(rows: &Rows, comps: &[Component]) -> String {
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

fn bar_figure(r: &Report, id: &str, title: &str, x_desc: &str, comps: &[Component], caption: &str) -> String {
    let rows = rows(r);
    let all_zero = comps.iter().all(|c| c.values.iter().all(|v| *v == 0.0));
    let caption = if all_zero { format!("{caption} Zero in every run.") } else { caption.to_string() };
    let svg = charts::hbar(title, x_desc, &rows, comps);
    let names: Vec<String> = comps.iter().map(|c| c.name.clone()).collect();
    figure(id, &svg, &names, &caption, &bar_data(&rows, comps), false)
}

/// Members of a metric family that are non-zero in some run, in name order.
fn family_members(r: &Report, family: &str) -> Vec<String> {
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

fn counts_html(r: &Report) -> String {
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

fn time_html(r: &Report) -> String {
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

const COVERAGE_NAMES: [&str; 4] = ["4K leaves", "2M leaves", "1G leaves", "unmapped"];

fn coverage_colours() -> [plotters::style::RGBColor; 4] {
    [charts::PALETTE[3], charts::PALETTE[0], charts::PALETTE[2], charts::PALETTE[7]]
}

fn coverage_html(r: &Report) -> String {
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

/// Metrics the sweep charts plot: name, title, y-axis description, scale.
const SWEEP_METRICS: &[(&str, &str, &str, f64)] = &[
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
fn x_axis(s: &SweepInfo) -> Option<&Axis> {
    if let Some(x) = &s.x
        && let Some(a) = s.axes.iter().find(|a| &a.name == x)
    {
        return Some(a);
    }
    s.axes.iter().find(|a| a.values.len() > 1).or(s.axes.first())
}

#[allow(clippy::too_many_lines)] // one section of the page, read top to bottom
fn sweep_html(r: &Report, s: &SweepInfo) -> String {
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
fn stopped_runs_note(r: &Report, x: &Axis) -> String {
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

fn line_data(x_name: &str, axis: &XAxis, legend: &[String], lines: &[Line]) -> String {
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

const GLOSSARY: &str = r#"<section id="glossary"><h2>Metrics</h2><dl class="metrics">
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
mod sweep_metric_tests {
    /// [`metric`] reads an absent name as 0: every charted name must be one `[expect]` accepts.
    #[test]
    fn every_sweep_chart_names_a_metric() {
        for (name, ..) in super::SWEEP_METRICS {
            assert_eq!(snpsim_scenario::check_metric_name(name), Ok(()), "{name}");
        }
    }
}

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
