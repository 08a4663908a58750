//! `snpsim sweep` and `snpsim merge`: a base scenario × a grid of overrides × seeds, run locally
//! in parallel or one deterministic shard at a time (Slurm array, Kubernetes indexed Job), then
//! joined and checked.
//!
//! Outputs under `--out DIR`:
//! - `sweep.json`: the manifest (name, sweep id, total runs, axes and their values, seeds, skipped
//!   combinations). It is the same for every shard, so shards may share one directory.
//! - `runs.jsonl` (whole sweep) or `shard-I-of-N.jsonl` (one shard): one JSON object per run, in
//!   index order: `sweep`, `sweep_id`, `index`, `total`, `params` (axis → value), `seed`, and the
//!   fields of a results.json run (`scenario`, `policy`, `backing`, `granularity`, `outcome`,
//!   `reason`, `metrics`, `violations`, `failures`, `npt_coverage_series`).
//! - `report.html` for a whole sweep (and after `merge`).
//!
//! The sweep id hashes the snpsim version, the sweep's name and every run's scenario text and
//! overrides, so shards of different sweeps (or of an edited scenario) are never merged.
//!
//! Why over 600 lines: running, sharding and merging a sweep share its manifest and output set;
//! the file format is `file.rs`, the grid `grid.rs`, value reading `values.rs`.

pub mod file;
pub mod grid;
mod values;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use rayon::prelude::*;
use serde_json::{Value, json};
use snpsim_scenario::run::ScenarioRun;
use snpsim_scenario::{ErrorKind, Scenario, ScenarioError, parse_scenario_with_overrides};

use crate::input::Limit;
use crate::output::OutDir;
use crate::output::set::Policy;
use crate::{Check, check_mode, report, run_one, table};
use file::SweepDef;
use grid::{Point, in_shard, parse_shard};

/// `snpsim sweep --help` epilogue.
pub const SWEEP_HELP: &str = "A sweep file names a base scenario, fixed overrides ([set]), axes of values or \
ranges for any scenario field (the keys of --set, validated the same way) and seeds; see \
examples/sweeps/. Runs are numbered in a fixed order (first axis slowest, seeds fastest); --shard I/N runs \
those whose number is I modulo N, so N array tasks with I = 0..N-1 cover the sweep exactly once. Results \
do not depend on --jobs or on N. The base scenario's [expect] describes one configuration and is not \
checked; invariants are.\n\nOutput: DIR/sweep.json (the manifest), DIR/runs.jsonl (one JSON line per \
run) and DIR/report.html; a shard writes DIR/shard-I-of-N.jsonl instead, for `snpsim merge`. --csv prints one CSV row per \
run on standard output (with or without --out): the columns of `snpsim run --csv`, then index, seed and \
params.AXIS.\n\n\
Examples:\n  snpsim sweep examples/sweeps/conversion-rate.toml --out sweep\n  \
snpsim sweep examples/sweeps/attacks.toml --csv > attacks.csv\n  \
snpsim sweep examples/sweeps/conversion-rate.toml --shard $SLURM_ARRAY_TASK_ID/8 --out shards\n  \
snpsim sweep examples/sweeps/conversion-rate.toml --shard $JOB_COMPLETION_INDEX/8 --out /results\n\n\
Exit codes: 0 ok, 1 an invariant failed in some run (the output is written), 2 bad input (FILE:LINE:COLUMN; \
nothing is written).";

/// `snpsim merge --help` epilogue.
pub const MERGE_HELP: &str = "Reads sweep.json and every runs.jsonl / shard-I-of-N.jsonl in the given \
directories, checks that they belong to one sweep and that every run is present exactly once, and writes \
OUT/sweep.json, OUT/runs.jsonl (index order) and OUT/report.html. A missing or duplicated run is an error \
(exit 2, nothing written) naming the runs and the shard that should have produced them.\n\n\
Examples:\n  for i in 0 1 2; do snpsim sweep examples/sweeps/attacks.toml --shard $i/3 --out shards; done\n  \
snpsim merge shards --out merged\n  \
for i in 0 1 2; do snpsim sweep examples/sweeps/attacks.toml --shard $i/3 --out shard-$i; done\n  \
snpsim merge shard-0 shard-1 shard-2 --out merged-too";

/// `snpsim sweep` options.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// The sweep file (TOML).
    file: PathBuf,
    /// Run only shard I of N (0 <= I < N): the runs whose number is I modulo N.
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
    /// Runs at a time (default: one per CPU; at most 4 per CPU); results do not depend on it.
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// Output directory: new or empty (replaced as a whole when the sweep ends), or for a shard
    /// one holding only other shards' outputs of the same sweep. Required unless --csv.
    #[arg(long, value_name = "DIR", required_unless_present = "csv")]
    out: Option<PathBuf>,
    /// Replace a non-empty --out DIR: everything in it is replaced by this command's outputs.
    #[arg(long, requires = "out")]
    force: bool,
    /// Print CSV, one row per run in run order: the columns of `snpsim run --csv` (every metric a
    /// column), then `index`, `seed` and one `params.AXIS` column per axis.
    #[arg(long)]
    csv: bool,
    /// Invariant checking after each step.
    #[arg(long, value_enum, default_value = "incremental")]
    check: Check,
    /// No progress bar (it is drawn only when standard error is a terminal anyway).
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Refuse, before running anything, a sweep any of whose runs has an estimated simulator
    /// memory over SIZE (`8GiB`, `512MiB`) or `unlimited`.
    #[arg(long, value_name = "SIZE", default_value = "8GiB", value_parser = crate::parse_budget)]
    memory_budget: u64,
}

impl SweepArgs {
    /// The options of `snpsim sweep FILE --jobs JOBS --out OUT --quiet` (the bench suite's sweep).
    pub fn quiet(file: PathBuf, jobs: usize, out: PathBuf, check: Check) -> Self {
        SweepArgs {
            file,
            shard: None,
            jobs: Some(jobs),
            out: Some(out),
            force: false,
            csv: false,
            check,
            quiet: true,
            memory_budget: u64::MAX,
        }
    }
}

/// `snpsim merge` options.
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Directories holding shard outputs (`sweep --out`).
    #[arg(required = true)]
    dirs: Vec<PathBuf>,
    /// Output directory: new or empty; it is replaced as a whole when the merge ends.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Replace a non-empty --out DIR: everything in it is replaced by the merged outputs.
    #[arg(long)]
    force: bool,
}

/// A sweep whose every run parsed: the points kept and their scenarios.
struct Expanded {
    def: SweepDef,
    points: Vec<(Point, Scenario)>,
    skipped: Vec<String>,
    id: String,
}

fn read_text(path: &Path, what: &str, limit: Limit) -> Result<String> {
    let name = crate::input::display(path);
    let bytes = crate::input::read(path, what, limit)?;
    String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("{name}:1:1: the file is not UTF-8 text"))
}

/// How a sweep writes `--out`: `--force` replaces it; a shard joins a directory that holds
/// nothing but outputs of the same sweep (other shards may be writing there at the same time);
/// a whole sweep needs a new or empty one.
fn out_policy(args: &SweepArgs, dir: &Path, shards: usize, id: &str) -> Result<Policy> {
    if args.force {
        return Ok(Policy::Force);
    }
    if shards == 1 || !dir.is_dir() {
        return Ok(if shards == 1 { Policy::Fresh } else { Policy::Join });
    }
    let shown = dir.display();
    let foreign = |what: String| {
        anyhow::anyhow!(
            "--out {shown}: {what}; a shard joins only a directory of its own sweep's shards: give --force to replace \
             everything in it, or name another directory"
        )
    };
    let entries =
        std::fs::read_dir(dir).map_err(|e| anyhow::anyhow!("--out {shown}: cannot read it: {e}"))?;
    for e in entries.filter_map(std::result::Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        // Dot files: other shards' temporaries, being written now.
        if name.starts_with('.') || shard_name(&name).is_some() {
            continue;
        }
        if name != "sweep.json" {
            return Err(foreign(format!("holds {name}, which is not a shard's output")));
        }
        let m = report::parse_json(&name, &read_text(&e.path(), "the manifest", crate::input::RESULTS)?)?;
        if m.get("sweep_id").and_then(Value::as_str) != Some(id) {
            return Err(foreign("holds the sweep.json of another sweep (its sweep_id differs)".into()));
        }
    }
    Ok(Policy::Join)
}

/// An error in the scenario of point `p`: an error in an override the sweep made is reported where
/// the sweep file writes its value.
fn point_error(
    file: &str,
    def: &SweepDef,
    p: &Point,
    ov: &[(String, String, file::Loc)],
    e: &ScenarioError,
    hint: &str,
) -> anyhow::Error {
    if e.file == "--set" && !ov.is_empty() {
        // Override number e.line (1-based) is ov[e.line - 1].
        let (key, value, loc) = &ov[e.line.saturating_sub(1).min(ov.len() - 1)];
        let field = e.field.as_deref().unwrap_or(key);
        return anyhow::anyhow!(
            "{file}:{}:{}: field `{field}` = {value} (run {}: {}): {}{hint}",
            loc.line,
            loc.column,
            p.index,
            describe(def, p),
            e.message
        );
    }
    anyhow::anyhow!("{e} (run {} of sweep {file}: {}){hint}", p.index, describe(def, p))
}

/// Refuse the sweep if any run's scenario exceeds the memory budget (every run, whatever the
/// shard, so that every shard agrees).
fn check_budgets(file: &str, x: &Expanded, budget: u64) -> Result<()> {
    for (p, s) in &x.points {
        if let Err(e) = snpsim_scenario::budget::check(s, budget, false) {
            return Err(point_error(file, &x.def, p, &x.def.overrides(p), &e, ""));
        }
    }
    Ok(())
}

/// Parse the sweep file and every run's scenario (all of them, whatever the shard: bad input is
/// found before anything runs, and every shard agrees on the runs).
fn expand(path: &Path) -> Result<Expanded> {
    let file = crate::input::display(path);
    let def = file::parse(&file, &read_text(path, "the sweep", crate::input::SWEEP)?)?;
    let scenario_file = def.scenario_path.display().to_string();
    let text = read_text(&def.scenario_path, "the scenario", crate::input::SCENARIO).map_err(|e| {
        anyhow::anyhow!("{e} (the sweep's `scenario = {:?}` is relative to the sweep file)", def.scenario)
    })?;
    let mut hash = snpsim_engine::digest::Digest64::default();
    hash.bytes(env!("CARGO_PKG_VERSION").as_bytes());
    hash.bytes(def.name.as_bytes());
    hash.bytes(text.as_bytes());
    let mut points = Vec::new();
    let mut skipped = Vec::new();
    for p in def.expand() {
        let ov = def.overrides(&p);
        let refs: Vec<(&str, &str)> = ov.iter().map(|(k, v, _)| (k.as_str(), v.as_str())).collect();
        match parse_scenario_with_overrides(&scenario_file, &text, &refs) {
            Ok(s) => {
                for (k, v) in &refs {
                    hash.bytes(k.as_bytes());
                    hash.bytes(b"=");
                    hash.bytes(v.as_bytes());
                    hash.bytes(b"\n");
                }
                hash.bytes(b"\x1e");
                points.push((p, s));
            }
            Err(e)
                if def.skip_invalid
                    && matches!(
                        e.kind,
                        ErrorKind::Conflict | ErrorKind::Unaligned | ErrorKind::OutsideMemory
                    ) =>
            {
                skipped.push(format!("{}: {}", describe(&def, &p), e.message));
            }
            Err(e) => {
                let hint = if matches!(
                    e.kind,
                    ErrorKind::Conflict | ErrorKind::Unaligned | ErrorKind::OutsideMemory
                ) {
                    " (set `skip_invalid = true` to leave such combinations out)"
                } else {
                    ""
                };
                return Err(point_error(&file, &def, &p, &ov, &e, hint));
            }
        }
    }
    if points.is_empty() {
        bail!("{file}: every combination was skipped:\n  {}", skipped.join("\n  "));
    }
    Ok(Expanded { def, points, skipped, id: hash.hex() })
}

/// `axis=value, ..., seed=S` of a point.
fn describe(def: &SweepDef, p: &Point) -> String {
    let mut parts: Vec<String> = def
        .axes
        .iter()
        .enumerate()
        .map(|(a, axis)| {
            format!("{}={}", axis.name, report::param_text(&axis.values[p.value[a] as usize].json))
        })
        .collect();
    if let Some(s) = def.seeds.get(p.seed as usize) {
        parts.push(format!("seed={s}"));
    }
    if parts.is_empty() { "the base scenario".into() } else { parts.join(", ") }
}

fn manifest(x: &Expanded) -> Value {
    let d = &x.def;
    json!({
        "sweep": d.name,
        "name": d.name,
        "sweep_id": x.id,
        "snpsim": env!("CARGO_PKG_VERSION"),
        "scenario": d.scenario,
        "total": x.points.len(),
        "axes": d.axes.iter().map(|a| json!({
            "name": a.name,
            "label": a.label,
            "keys": a.keys,
            "values": a.values.iter().map(|v| v.json.clone()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "seeds": d.seeds,
        "x": d.x,
        "skipped": x.skipped,
    })
}

fn run_line(x: &Expanded, number: usize, p: &Point, run: &ScenarioRun, seed: u64) -> String {
    let mut obj = serde_json::Map::new();
    obj.insert("sweep".into(), json!(x.def.name));
    obj.insert("sweep_id".into(), json!(x.id));
    obj.insert("index".into(), json!(number));
    obj.insert("total".into(), json!(x.points.len()));
    obj.insert("params".into(), Value::Object(x.def.params(p)));
    obj.insert("seed".into(), json!(seed));
    if let Value::Array(mut items) = table::json(&[run])
        && let Some(Value::Object(fields)) = items.pop()
    {
        obj.extend(fields);
    }
    Value::Object(obj).to_string()
}

/// `snpsim sweep`; `Ok(false)` when an invariant failed in some run.
pub fn sweep(args: &SweepArgs) -> Result<bool> {
    let (shard, shards) = match &args.shard {
        Some(s) => parse_shard(s)?,
        None => (0, 1),
    };
    let threads = crate::jobs(args.jobs)?;
    let x = expand(&args.file)?;
    let out = match &args.out {
        Some(dir) => Some(OutDir::check("--out", dir, out_policy(args, dir, shards, &x.id)?)?),
        None => None,
    };
    crate::output::paths::check(
        &[("the sweep", &args.file), ("the sweep's scenario", &x.def.scenario_path)],
        &[],
        &out.iter().collect::<Vec<_>>(),
    )?;
    check_budgets(&crate::input::display(&args.file), &x, args.memory_budget)?;
    let check = check_mode(args.check);
    // Run numbers count the points kept, so skipped combinations leave no hole.
    let mine: Vec<(usize, &(Point, Scenario))> =
        x.points.iter().enumerate().filter(|(n, _)| in_shard(*n, shard, shards)).collect();
    let source = x.def.scenario_path.display().to_string();
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("cannot start the worker threads")?;
    let progress = crate::progress::Progress::new(mine.len() as u64, "runs", args.quiet);
    let runs: Vec<Result<ScenarioRun>> = pool.install(|| {
        mine.par_iter()
            .map(|(n, (_, s))| {
                let r = run_one(s, &source, *n as u64, check, false);
                progress.inc();
                r
            })
            .collect()
    });
    drop(progress);
    let mut lines = String::new();
    let mut failed = Vec::new();
    let mut report_runs = Vec::new();
    let mut csv_runs = Vec::new();
    let mut csv_extra = Vec::new();
    for ((n, (p, s)), r) in mine.iter().zip(runs) {
        let mut r = r?;
        // [expect] describes one configuration; a sweep checks only the invariants.
        r.failures.retain(|f| f.starts_with("invariant violated"));
        if !r.passed() {
            failed.push(format!("run {n} ({}): {}", describe(&x.def, p), r.failures.join("; ")));
        }
        let line = run_line(&x, *n, p, &r, s.seed);
        if shards == 1 && out.is_some() {
            report_runs.push(serde_json::from_str::<Value>(&line)?);
        }
        lines.push_str(&line);
        lines.push('\n');
        if args.csv {
            let mut extra = vec![n.to_string(), s.seed.to_string()];
            extra.extend(x.def.params(p).values().map(|v| match v {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            }));
            csv_extra.push(extra);
            csv_runs.push(r);
        }
    }
    let mut files = Vec::new();
    let mut m = serde_json::to_string_pretty(&manifest(&x))?;
    m.push('\n');
    let name =
        if shards == 1 { "runs.jsonl".to_string() } else { format!("shard-{shard}-of-{shards}.jsonl") };
    if shards == 1 && out.is_some() {
        let page = report::html(&report::Report::from_sweep(&manifest(&x), &report_runs)?);
        files.push(("report.html".to_string(), page.into_bytes()));
    }
    files.push(("sweep.json".to_string(), m.into_bytes()));
    files.push((name.clone(), lines.into_bytes()));
    if let (Some(out), Some(dir)) = (out, &args.out) {
        out.write(files)?;
        let what = if shards == 1 { String::new() } else { format!(" shard {shard}/{shards}:") };
        let line = format!(
            "sweep {:?}:{what} {} of {} runs -> {}",
            x.def.name,
            mine.len(),
            x.points.len(),
            dir.join(&name).display()
        );
        // With --csv, standard output carries the CSV alone.
        if args.csv { crate::term::eprint(&line) } else { crate::stdout::text(&format!("{line}\n"))? }
    }
    if args.csv {
        let mut names = vec!["index".to_string(), "seed".to_string()];
        names.extend(x.def.axes.iter().map(|a| format!("params.{}", a.name)));
        let refs: Vec<&ScenarioRun> = csv_runs.iter().collect();
        crate::stdout::text(&table::csv_extra(&refs, None, &names, &csv_extra))?;
    }
    for s in &x.skipped {
        crate::term::eprint(&format!("note: skipped {s}"));
    }
    for f in &failed {
        crate::term::eprint(&format!("FAILED {f}"));
    }
    Ok(failed.is_empty())
}

/// A run line read back: where it came from, its index and its text.
struct Found {
    file: String,
    line: usize,
    text: String,
}

fn shard_name(name: &str) -> Option<(usize, usize)> {
    let rest = name.strip_prefix("shard-")?.strip_suffix(".jsonl")?;
    let (i, n) = rest.split_once("-of-")?;
    Some((i.parse().ok()?, n.parse().ok()?))
}

/// Runs `missing` as ranges, for messages: `3, 7-9`.
fn ranges(missing: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < missing.len() && parts.len() < 12 {
        let start = missing[i];
        let mut end = start;
        while i + 1 < missing.len() && missing[i + 1] == end + 1 {
            i += 1;
            end = missing[i];
        }
        parts.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
        i += 1;
    }
    if i < missing.len() {
        parts.push("...".into());
    }
    parts.join(", ")
}

/// Every run of `0..total` present exactly once, or an error naming what is duplicated or
/// missing (and which shard should have produced it).
fn check_complete(
    total: usize,
    by_index: &BTreeMap<usize, Vec<Found>>,
    shard_counts: &std::collections::BTreeSet<usize>,
) -> Result<()> {
    let dups: Vec<(&usize, &Vec<Found>)> = by_index.iter().filter(|(_, v)| v.len() > 1).collect();
    if !dups.is_empty() {
        let lines: Vec<String> = dups
            .iter()
            .take(10)
            .map(|(i, v)| {
                format!(
                    "run {i}: {}",
                    v.iter().map(|f| format!("{}:{}", f.file, f.line)).collect::<Vec<_>>().join(", ")
                )
            })
            .collect();
        bail!(
            "{} run(s) present more than once (was a shard run twice, or given twice?):\n  {}{}",
            dups.len(),
            lines.join("\n  "),
            if dups.len() > 10 { "\n  ..." } else { "" }
        );
    }
    let missing: Vec<usize> = (0..total).filter(|i| !by_index.contains_key(i)).collect();
    if !missing.is_empty() {
        let hint = match shard_counts.iter().next() {
            Some(&n) if shard_counts.len() == 1 => {
                let mut shards: Vec<usize> = missing.iter().map(|i| i % n).collect();
                shards.dedup();
                shards.sort_unstable();
                shards.dedup();
                format!(
                    "; with {n} shards they belong to shard(s) {} (re-run: snpsim sweep FILE --shard I/{n} --out DIR)",
                    shards.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                )
            }
            _ => String::new(),
        };
        bail!("{} of {total} runs missing: {}{hint}", missing.len(), ranges(&missing));
    }
    Ok(())
}

/// `snpsim merge`.
#[allow(clippy::too_many_lines)] // read, check, write: one pass over the inputs
pub fn merge(args: &MergeArgs) -> Result<bool> {
    let policy = if args.force { Policy::Force } else { Policy::Fresh };
    let out_canon = std::fs::canonicalize(&args.out).ok();
    let mut manifest: Option<(String, Value)> = None;
    let mut by_index: BTreeMap<usize, Vec<Found>> = BTreeMap::new();
    let mut shard_counts = std::collections::BTreeSet::new();
    for dir in &args.dirs {
        let dname = dir.display().to_string();
        if !dir.is_dir() {
            bail!("{dname}: not a directory (give the --out directories of the shards)");
        }
        if out_canon.is_some() && std::fs::canonicalize(dir).ok() == out_canon {
            bail!("--out {}: is also an input; merge into another directory", args.out.display());
        }
        let mpath = dir.join("sweep.json");
        if !mpath.is_file() {
            bail!("{dname}: no sweep.json (not the output of snpsim sweep)");
        }
        let m = report::parse_json(
            &mpath.display().to_string(),
            &read_text(&mpath, "the manifest", crate::input::RESULTS)?,
        )?;
        let id = m.get("sweep_id").and_then(Value::as_str).unwrap_or_default().to_string();
        match &manifest {
            None => manifest = Some((mpath.display().to_string(), m)),
            Some((first, m0)) => {
                let id0 = m0.get("sweep_id").and_then(Value::as_str).unwrap_or_default();
                if id0 != id {
                    bail!(
                        "{}: sweep {} (id {id}) is not the sweep of {first} ({}, id {id0}): shards of different sweeps or \
                         scenario texts cannot be merged",
                        mpath.display(),
                        m.get("name").unwrap_or(&Value::Null),
                        m0.get("name").unwrap_or(&Value::Null)
                    );
                }
            }
        }
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .with_context(|| format!("{dname}: cannot read the directory"))?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .filter(|n| n == "runs.jsonl" || shard_name(n).is_some())
            .collect();
        names.sort();
        for name in names {
            if let Some((_, n)) = shard_name(&name) {
                shard_counts.insert(n);
            }
            let path = dir.join(&name);
            let pname = path.display().to_string();
            let text = read_text(&path, "the shard's runs", crate::input::RESULTS)?;
            for (i, line) in text.lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let v: Value = serde_json::from_str(line).map_err(|e| {
                    anyhow::anyhow!("{pname}:{}:{}: malformed JSON line: {e}", i + 1, e.column())
                })?;
                if v.get("sweep_id").and_then(Value::as_str) != Some(id.as_str()) {
                    bail!(
                        "{pname}:{}:1: this run belongs to another sweep (sweep_id differs from sweep.json)",
                        i + 1
                    );
                }
                let Some(index) = v.get("index").and_then(Value::as_u64) else {
                    bail!("{pname}:{}:1: the run has no `index`", i + 1);
                };
                by_index.entry(index as usize).or_default().push(Found {
                    file: pname.clone(),
                    line: i + 1,
                    text: line.trim().to_string(),
                });
            }
        }
    }
    let Some((_, m)) = manifest else { bail!("no directories given") };
    let out = OutDir::check("--out", &args.out, policy)?;
    let inputs: Vec<(&str, &Path)> = args.dirs.iter().map(|d| ("the shard directory", d.as_path())).collect();
    crate::output::paths::check(&inputs, &[], &[&out])?;
    let total = m.get("total").and_then(Value::as_u64).unwrap_or(0) as usize;
    let beyond: Vec<usize> = by_index.keys().copied().filter(|&i| i >= total).collect();
    if let Some(&i) = beyond.first() {
        let f = &by_index[&i][0];
        bail!("{}:{}:1: run {i} is beyond the sweep's {total} runs", f.file, f.line);
    }
    check_complete(total, &by_index, &shard_counts)?;
    let mut runs = String::new();
    let mut values = Vec::with_capacity(total);
    for found in by_index.values() {
        runs.push_str(&found[0].text);
        runs.push('\n');
        values.push(serde_json::from_str::<Value>(&found[0].text)?);
    }
    let page = report::html(&report::Report::from_sweep(&m, &values)?);
    let mut mtext = serde_json::to_string_pretty(&m)?;
    mtext.push('\n');
    out.write(vec![
        ("sweep.json".to_string(), mtext.into_bytes()),
        ("runs.jsonl".to_string(), runs.into_bytes()),
        ("report.html".to_string(), page.into_bytes()),
    ])?;
    crate::stdout::text(&format!(
        "merged {total} runs of sweep {} from {} director{} -> {}\n",
        m.get("name").unwrap_or(&Value::Null),
        args.dirs.len(),
        if args.dirs.len() == 1 { "y" } else { "ies" },
        args.out.display()
    ))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_file_names_and_ranges() {
        assert_eq!(shard_name("shard-3-of-8.jsonl"), Some((3, 8)));
        assert_eq!(shard_name("runs.jsonl"), None);
        assert_eq!(ranges(&[1, 2, 3, 7, 9, 10]), "1-3, 7, 9-10");
    }
}
