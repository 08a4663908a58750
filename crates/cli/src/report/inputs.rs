//! The report's inputs: results.json, a sweep's manifest and runs, and the verdicts, read into
//! runs, series, verdicts and sweep axes.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_json::Value;

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
    pub(super) fn setting_suffix(&self) -> &'static str {
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
pub(super) const PER_RUN_CHART_LIMIT: usize = 192;

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

pub(super) fn str_field(o: &Value, key: &str) -> String {
    match o.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// An array of strings (absent or of another type: empty; other items as JSON text).
pub(super) fn strings(o: &Value, key: &str) -> Vec<String> {
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

pub(super) fn series_from(v: &Value) -> Option<Series> {
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

    pub(super) fn m(&self, name: &str) -> f64 {
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

pub(super) fn read(path: &Path) -> Result<String> {
    let name = crate::input::display(path);
    let bytes = crate::input::read(path, "the results", crate::input::RESULTS)?;
    String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("{name}:1:1: not UTF-8 text"))
}

/// The files [`load`] may read for `path`, those that exist: what an output must not replace.
pub(super) fn inputs_of(path: &Path) -> Vec<PathBuf> {
    if crate::input::is_stdin(path) {
        return Vec::new();
    }
    let dir = if path.is_dir() { path } else { crate::output::file::parent(path) };
    let mut v = vec![path.to_path_buf()];
    v.extend(["results.json", "verdicts.json", "runs.jsonl", "sweep.json"].map(|n| dir.join(n)));
    v.retain(|p| p.exists());
    v
}

/// Load what `report` reads from `path` (see [`ReportArgs::results`](super::ReportArgs::results)).
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

/// The scenarios of the runs, each once, in the order of their first run.
pub(super) fn distinct_scenarios(r: &Report) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for run in &r.runs {
        if !names.contains(&run.scenario) {
            names.push(run.scenario.clone());
        }
    }
    names
}
