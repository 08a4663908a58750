//! Terminal tables, CSV and JSON for runs.
//!
//! Why over 600 lines: one table renderer for every table of the tool (alignment, units, width
//! fitting, panels), kept whole so every table looks and fits alike; the last 55 lines are unit
//! tests.

use std::fmt::Write as _;

use serde_json::{Value, json};
use snpsim_engine::RunResult;
use snpsim_scenario::Named;
use snpsim_scenario::run::{ScenarioRun, metric_value};

/// The metric columns of the terminal table, headed by their JSON and `[expect]` names. A column
/// that is 0 in every row is left out (a line under the table names them), so the table keeps to
/// what happened; `false_negatives` always shows, since its 0 is a result.
const COLUMNS: &[&str] = &[
    "rmp_npf",
    "rmp_npf_sizem",
    "exits.npf",
    "host_splits",
    "host_splits_needless",
    "npt_demotions",
    "psmash",
    "sigbus",
    "efault",
    "data_loss_pages",
    "false_negatives",
];

fn num(x: f64) -> String {
    // `+ 0.0` turns the -0.0 an empty float sum yields into 0.
    let x = x + 0.0;
    if x.fract() == 0.0 { format!("{x:.0}") } else { format!("{x:.3}") }
}

/// Nanoseconds in the largest unit that keeps a whole number before the point (`137 ms`,
/// `1.64 ms`, `25.3 µs`, `2.10 s`), three significant digits.
pub fn duration(ns: u64) -> String {
    let ns = ns as f64;
    let (v, unit) = if ns >= 1e9 {
        (ns / 1e9, "s")
    } else if ns >= 1e6 {
        (ns / 1e6, "ms")
    } else if ns >= 1e3 {
        (ns / 1e3, "µs")
    } else {
        (ns, "ns")
    };
    let digits = if v >= 100.0 || unit == "ns" {
        0
    } else if v >= 10.0 {
        1
    } else {
        2
    };
    format!("{v:.digits$} {unit}")
}

/// A run's short name for a table: its file's stem when it came from a file, else its scenario
/// name cut to 32 characters.
fn short_name(r: &ScenarioRun) -> String {
    let path = std::path::Path::new(&r.source);
    match path.file_stem() {
        Some(stem) if path.extension().is_some_and(|e| e == "toml") => {
            crate::term::name(&stem.to_string_lossy()).into_owned()
        }
        _ => crate::term::name(&r.name).chars().take(32).collect::<String>().trim_end().to_owned(),
    }
}

/// A header name broken after its `_` and `.` into lines no wider than `width` (or its longest
/// piece): `host_splits_needless` over a column of small counts reads `host_` / `splits_` /
/// `needless`, the JSON name when read down, in a column a third as wide.
fn header_lines(name: &str, width: usize) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut piece = String::new();
    for c in name.chars() {
        piece.push(c);
        if c == '_' || c == '.' {
            pieces.push(std::mem::take(&mut piece));
        }
    }
    if !piece.is_empty() {
        pieces.push(piece);
    }
    let width = width.max(pieces.iter().map(|p| p.chars().count()).max().unwrap_or(0));
    let mut lines: Vec<String> = vec![String::new()];
    for p in pieces {
        let last = lines.last_mut().map_or(0, |l| l.chars().count());
        if last > 0 && last + p.chars().count() > width {
            lines.push(String::new());
        }
        if let Some(l) = lines.last_mut() {
            l.push_str(&p);
        }
    }
    lines
}

/// The columns of each panel of a table whose column `c` is `widths[c]` wide, fitted to `width`
/// columns of text: the first `left` columns (the row's key) head every panel, and the others are
/// dealt in order to panels as long as they fit (two spaces between columns), at least one each.
/// One panel with every column when the table fits.
pub fn panels(widths: &[usize], left: usize, width: usize) -> Vec<Vec<usize>> {
    panels_keyed(widths, left, left, width)
}

/// [`panels`] whose later panels are headed by the first `id` key columns only (at most `left`):
/// a key column that alone names the row, such as a scenario's file stem, is enough to read a
/// row across panels, and leaves the width to the numbers.
pub fn panels_keyed(widths: &[usize], left: usize, id: usize, width: usize) -> Vec<Vec<usize>> {
    let left = left.min(widths.len());
    let id = id.min(left);
    let key = |n: usize| -> usize { widths[..n].iter().map(|w| w + 2).sum() };
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut used = usize::MAX;
    for (c, w) in widths.iter().enumerate().skip(left) {
        if used.saturating_add(w + 2) > width + 2 {
            let n = if out.is_empty() { left } else { id };
            out.push((0..n).collect());
            used = key(n);
        }
        used += w + 2;
        if let Some(p) = out.last_mut() {
            p.push(c);
        }
    }
    if out.is_empty() {
        out.push((0..left).collect());
    }
    out
}

/// Rows as fixed-width text fitted to `width` columns ([`panels`]; the panels are separated by a
/// blank line): the first row is the header, its names broken over lines to the width of their
/// column's values ([`header_lines`]), then a rule; the first `left` columns are left-aligned, the
/// rest right-aligned. The one table layout of the CLI's run tables.
pub fn aligned(rows: &[Vec<String>], left: usize, width: usize) -> String {
    aligned_keyed(rows, left, left, width)
}

/// [`aligned`] with the panels of [`panels_keyed`]: after the first panel, only the first `id`
/// key columns are repeated.
pub fn aligned_keyed(rows: &[Vec<String>], left: usize, id: usize, width: usize) -> String {
    let cols = rows[0].len();
    let value_width = |c: usize| rows.iter().skip(1).map(|r| r[c].chars().count()).max().unwrap_or(0);
    let heads: Vec<Vec<String>> = (0..cols)
        .map(|c| if c < left { vec![rows[0][c].clone()] } else { header_lines(&rows[0][c], value_width(c)) })
        .collect();
    let widths: Vec<usize> = (0..cols)
        .map(|c| value_width(c).max(heads[c].iter().map(|l| l.chars().count()).max().unwrap_or(0)))
        .collect();
    let mut out = String::new();
    for (i, panel) in panels_keyed(&widths, left, id, width).iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let depth = panel.iter().map(|&c| heads[c].len()).max().unwrap_or(1);
        let line = |cells: Vec<String>| {
            let cells: Vec<String> = panel
                .iter()
                .zip(cells)
                .map(|(&c, cell)| {
                    let w = widths[c];
                    if c < left { format!("{cell:<w$}") } else { format!("{cell:>w$}") }
                })
                .collect();
            cells.join("  ").trim_end().to_owned()
        };
        for d in 0..depth {
            // Header pieces sit on the bottom lines, so every name ends on the rule.
            let cells = panel
                .iter()
                .map(|&c| {
                    let skip = depth - heads[c].len();
                    if d < skip { String::new() } else { heads[c][d - skip].clone() }
                })
                .collect();
            let _ = writeln!(out, "{}", line(cells));
        }
        let rule = panel.iter().map(|&c| widths[c]).sum::<usize>() + 2 * (panel.len() - 1);
        let _ = writeln!(out, "{}", "-".repeat(rule));
        for row in rows.iter().skip(1) {
            let _ = writeln!(out, "{}", line(panel.iter().map(|&c| row[c].clone()).collect()));
        }
    }
    out
}

/// A fixed-width table, one row per run.
pub fn render(runs: &[&ScenarioRun], with_name: bool) -> String {
    render_with(runs, with_name, "gran", None)
}

/// A fixed-width table, one row per run, whose guest column is headed `guest_header` and holds
/// `guests` (one label per run) or else each run's granularity. A run that never started (its VM
/// was rejected) shows `-` for its metrics.
pub fn render_with(
    runs: &[&ScenarioRun],
    with_name: bool,
    guest_header: &str,
    guests: Option<&[String]>,
) -> String {
    let value = |r: &ScenarioRun, key: &str| metric_value(&r.result.metrics, key).unwrap_or(0.0);
    let (shown, zero): (Vec<&str>, Vec<&str>) = COLUMNS
        .iter()
        .partition(|&&key| key == "false_negatives" || runs.iter().any(|r| value(r, key) != 0.0));
    let mut header: Vec<String> = Vec::new();
    if with_name {
        header.push("scenario".into());
    }
    header.extend(["policy", "backing", "npt≤rmp", guest_header, "outcome"].map(String::from));
    header.extend(shown.iter().map(|h| (*h).to_string()));
    header.extend(["2M+ cover", "huge_capable", "sim_time_ns"].map(String::from));
    let mut rows = vec![header];
    for (i, r) in runs.iter().enumerate() {
        let m = &r.result.metrics;
        let mut row = Vec::new();
        if with_name {
            row.push(short_name(r));
        }
        row.push(r.policy.to_string());
        row.push(r.backing.to_string());
        row.push(if r.npt_level_follows_rmp { "yes" } else { "no" }.to_string());
        row.push(guests.and_then(|g| g.get(i)).map_or_else(|| r.granularity.to_string(), Clone::clone));
        row.push(if r.passed() {
            r.result.outcome.name().to_string()
        } else {
            format!("{}!", r.result.outcome)
        });
        let started = r.result.outcome != snpsim_engine::Outcome::VmRejected;
        for key in &shown {
            row.push(if started { num(value(r, key)) } else { "-".into() });
        }
        if started {
            row.push(format!("{:.1}%", 100.0 * (m.npt_coverage.m2 + m.npt_coverage.g1)));
            row.push(format!("{:.1}%", 100.0 * m.huge_capable));
            row.push(duration(m.sim_time_ns));
        } else {
            row.extend(["-", "-", "-"].map(String::from));
        }
        rows.push(row);
    }
    // With a scenario column, its file stem names the row: later panels repeat only it.
    let (left, id) = if with_name { (6, 1) } else { (5, 5) };
    let mut out = aligned_keyed(&rows, left, id, crate::term::width());
    if !zero.is_empty() {
        let _ = writeln!(out, "0 in every run (columns left out): {}", zero.join(", "));
    }
    out.push_str(&why_lines(runs, |i| {
        let r = runs[i];
        let guest = guests.and_then(|g| g.get(i)).map_or(r.granularity, String::as_str);
        let npt = if r.npt_level_follows_rmp { "yes" } else { "no" };
        let at = format!("npt≤rmp {npt}, {guest_header} {guest}");
        if with_name { format!("{} — {at}", short_name(r)) } else { at }
    }));
    for r in runs {
        if let Some(p) = &r.result.private_access {
            let _ = writeln!(out, "{} ({} / {}): {p}", short_name(r), r.policy, r.backing);
        }
    }
    out.push_str(&readings_legend(runs.iter().map(|r| r.policy)));
    out
}

/// One line per kind of run that did not complete, under a table: policy and backing, the
/// outcome, the cause of a `vm_error`, the reason and its detail; runs that differ only in the
/// `label` (the table's other columns) share a line that lists them.
pub fn why_lines(runs: &[&ScenarioRun], label: impl Fn(usize) -> String) -> String {
    let mut groups: Vec<(String, String, Vec<String>)> = Vec::new();
    for (i, r) in runs.iter().enumerate() {
        let Some(reason) = r.result.reason else { continue };
        let cause = r.result.cause().map(|c| format!(" {}", c.name())).unwrap_or_default();
        let head = format!("{} {}: {}{cause} {}", r.policy, r.backing, r.result.outcome, reason.name());
        match groups.iter_mut().find(|(h, d, _)| *h == head && *d == r.result.detail) {
            Some((_, _, labels)) => labels.push(label(i)),
            None => groups.push((head, r.result.detail.clone(), vec![label(i)])),
        }
    }
    if groups.is_empty() {
        return String::new();
    }
    let mut out = String::from("why (outcome, cause of a vm_error, reason: detail):\n");
    for (head, detail, labels) in groups {
        let _ = writeln!(out, "  {head} ({}): {detail}", labels.join("; "));
    }
    out
}

/// One line under a table naming what each policy row models: code as posted or a design as
/// described (a policy's `reading`); `npt≤rmp` is `vm.npt_level_follows_rmp`.
pub fn readings_legend<'a>(policies: impl IntoIterator<Item = &'a str>) -> String {
    let mut seen: Vec<&str> = Vec::new();
    for p in policies {
        if !seen.contains(&p) {
            seen.push(p);
        }
    }
    let of = |code: bool| -> Vec<&str> {
        seen.iter()
            .copied()
            .filter(|p| {
                snpsim_kvm::policy::by_name(p)
                    .is_some_and(|k| (k.reading() == snpsim_kvm::policy::Reading::Code) == code)
            })
            .collect()
    };
    let (code, described) = (of(true), of(false));
    let mut line = String::new();
    if !code.is_empty() {
        let _ = write!(line, "code as posted: {}", code.join(", "));
        if code.contains(&"rfc-v4") {
            line.push_str(" (rfc-v4 at npt≤rmp yes; no is the RFC without 27/40's cap)");
        }
    }
    if !described.is_empty() {
        let _ = write!(
            line,
            "{}as described (not a particular patch): {}",
            if line.is_empty() { "" } else { "; " },
            described.join(", ")
        );
    }
    if line.is_empty() {
        line
    } else {
        format!("{line}. npt≤rmp: the NPT level is capped at the RMP level.\n")
    }
}

/// Columns of the generated-workload table: header and metric.
const WORKLOAD_COLUMNS: &[(&str, &str)] = &[
    ("npf_exits", "exits.npf"),
    ("psc_exits", "psc_requests"),
    ("to_vmm", "exits.hypercall"),
    ("psmash", "psmash"),
    ("host_splits", "host_splits"),
    ("needless", "host_splits_needless"),
    ("npt_demote", "npt_demotions"),
    ("sigbus", "sigbus"),
    ("efault", "efault"),
    ("lost", "data_loss_pages"),
    ("FN", "false_negatives"),
];

/// The `actions` cell of a workload row: the guest actions performed (touches, conversions and
/// host writes together), and `/PLANNED` after them when some planned ones were not performed.
fn actions_cell(w: Option<&snpsim_scenario::workload::WorkloadReport>) -> String {
    match w {
        None => "-".into(),
        Some(w) if w.not_performed.total() == 0 => w.actions.total().to_string(),
        Some(w) => format!("{}/{}", w.actions.total(), w.planned.total()),
    }
}

/// A fixed-width table of generated-workload runs, one row per run: `guests` labels each run's
/// guest (its preset); `actions` the guest actions performed ([`actions_cell`]); times in
/// milliseconds, with the workload's time-to-ready.
pub fn render_workloads(runs: &[&ScenarioRun], guests: &[String]) -> String {
    let mut header: Vec<String> =
        ["policy", "backing", "guest", "outcome", "actions"].map(String::from).to_vec();
    header.extend(WORKLOAD_COLUMNS.iter().map(|(h, _)| (*h).to_string()));
    header.extend(["2M+ cover", "2M-able", "ready", "sim_time"].map(String::from));
    let ms = |ns: u64| format!("{:.1}ms", ns as f64 / 1e6);
    let mut rows = vec![header];
    for (i, r) in runs.iter().enumerate() {
        let m = &r.result.metrics;
        let mut row = vec![r.policy.to_string(), r.backing.to_string()];
        row.push(guests.get(i).cloned().unwrap_or_else(|| r.granularity.to_string()));
        row.push(if r.passed() {
            r.result.outcome.name().to_string()
        } else {
            format!("{}!", r.result.outcome)
        });
        row.push(actions_cell(r.workload.as_ref()));
        for (_, key) in WORKLOAD_COLUMNS {
            row.push(num(metric_value(m, key).unwrap_or(0.0)));
        }
        row.push(format!("{:.1}%", 100.0 * (m.npt_coverage.m2 + m.npt_coverage.g1)));
        row.push(format!("{:.1}%", 100.0 * m.huge_capable));
        let ready = r.workload.as_ref().and_then(|w| w.time_to_ready_ns);
        row.push(if r.result.outcome == snpsim_engine::Outcome::Completed {
            ready.map_or_else(|| "-".into(), ms)
        } else {
            "-".into()
        });
        row.push(ms(m.sim_time_ns));
        rows.push(row);
    }
    let mut out = aligned(&rows, 4, crate::term::width());
    out.push_str(&why_lines(runs, |i| {
        format!("guest {}", guests.get(i).map_or(runs[i].granularity, String::as_str))
    }));
    out
}

/// The `--json` document: an array with one object per run.
pub fn json(runs: &[&ScenarioRun]) -> Value {
    Value::Array(
        runs.iter()
            .map(|r| {
                let mut v = json!({
                    "scenario": r.name,
                    "source": r.source,
                    "run_index": r.run_index,
                    "seed": r.seed,
                    "preset": r.preset,
                    "snpsim_version": env!("CARGO_PKG_VERSION"),
                    "commit": env!("SNPSIM_BUILD_COMMIT"),
                    "policy": r.policy,
                    "backing": r.backing,
                    "granularity": r.granularity,
                    "npt_level_follows_rmp": r.npt_level_follows_rmp,
                    "outcome": r.result.outcome.name(),
                    "cause": r.result.cause().map(snpsim_engine::outcome::Cause::name),
                    "reason": r.result.reason.map(snpsim_engine::outcome::Reason::name),
                    "detail": r.result.detail,
                    "metrics": r.result.metrics,
                    "metrics_flat": metrics_flat(&r.result.metrics),
                    "violations": r.result.violations,
                    "failures": r.failures,
                    "workload": r.workload,
                    "npt_coverage_series": coverage_series(&r.result),
                    "validation_tracking": r.validation_tracking,
                    "adversary": r.adversary,
                    "attacks": r.result.attacks,
                });
                // Runs with RMPOPT only: other runs' objects keep their keys.
                if !r.result.rmpopt_series.is_empty() {
                    v["rmpopt_coverage_series"] = rmpopt_series(&r.result);
                }
                // In-place guest_memfd runs whose host touched private memory only.
                if let Some(p) = &r.result.private_access {
                    v["private_access"] = Value::from(p.clone());
                }
                v
            })
            .collect(),
    )
}

/// The metrics as one flat object, a family's members under `FAMILY.MEMBER` (the names `[expect]`
/// takes: `exits.npf`, `npt_coverage.2m`, `sim_time_ns.npf_exit` for `sim_time_by_item`), every key
/// present in every run, so that a data frame built from it has no missing cells.
pub fn metrics_flat(m: &snpsim_engine::Metrics) -> Value {
    let mut flat = serde_json::Map::new();
    if let Ok(Value::Object(fields)) = serde_json::to_value(m) {
        for (k, v) in fields {
            match v {
                Value::Object(members) => {
                    let family = if k == "sim_time_by_item" { "sim_time_ns" } else { k.as_str() };
                    for (member, n) in members {
                        flat.insert(format!("{family}.{member}"), n);
                    }
                }
                other => {
                    flat.insert(k, other);
                }
            }
        }
    }
    Value::Object(flat)
}

/// Most points of a run's `npt_coverage_series` in the JSON document.
const SERIES_POINTS: usize = 512;

/// The NPT coverage over simulated time, as the JSON document carries it: `t_ns` and the pages
/// mapped at `4k`/`2m`/`1g` and the pages of guest memory not mapped (`unmapped`; the four add up
/// to the guest's pages) at each point. Coverage is a step function, so only the points where it
/// changes are kept, and the last one (where the run ends); past [`SERIES_POINTS`] changes, every
/// k-th.
pub fn coverage_series(r: &RunResult) -> Value {
    let n = r.coverage_series.len().min(r.coverage_time_ns.len());
    let mut keep: Vec<usize> =
        (0..n).filter(|&i| i == 0 || r.coverage_series[i] != r.coverage_series[i - 1]).collect();
    if keep.len() > SERIES_POINTS {
        let k = keep.len().div_ceil(SERIES_POINTS - 1);
        keep = keep.into_iter().step_by(k).collect();
    }
    if n > 0 && keep.last() != Some(&(n - 1)) {
        keep.push(n - 1);
    }
    let col = |f: &dyn Fn(usize) -> u64| -> Vec<u64> { keep.iter().map(|&i| f(i)).collect() };
    let unmapped = |i: usize| r.guest_pages.saturating_sub(r.coverage_series[i].iter().sum::<u64>());
    json!({
        "t_ns": col(&|i| r.coverage_time_ns[i]),
        "4k": col(&|i| r.coverage_series[i][0]),
        "2m": col(&|i| r.coverage_series[i][1]),
        "1g": col(&|i| r.coverage_series[i][2]),
        "unmapped": col(&unmapped),
    })
}

/// RMPOPT's coverage over simulated time, as the JSON document carries it: `t_ns` and the share of
/// host memory marked at each point where it changed, and at the end (at most [`SERIES_POINTS`]).
pub fn rmpopt_series(r: &RunResult) -> Value {
    let n = r.rmpopt_series.len().min(r.rmpopt_time_ns.len());
    let mut keep: Vec<usize> =
        (0..n).filter(|&i| i == 0 || r.rmpopt_series[i] != r.rmpopt_series[i - 1]).collect();
    if keep.len() > SERIES_POINTS {
        let k = keep.len().div_ceil(SERIES_POINTS - 1);
        keep = keep.into_iter().step_by(k).collect();
    }
    if n > 0 && keep.last() != Some(&(n - 1)) {
        keep.push(n - 1);
    }
    let share =
        |i: usize| if r.host_pages == 0 { 0.0 } else { r.rmpopt_series[i] as f64 / r.host_pages as f64 };
    json!({
        "t_ns": keep.iter().map(|&i| r.rmpopt_time_ns[i]).collect::<Vec<_>>(),
        "coverage": keep.iter().map(|&i| share(i)).collect::<Vec<_>>(),
    })
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, x, out);
            }
        }
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

/// CSV with every metric as a column (nested ones dotted), and for runs with a generated
/// workload its guest actions per kind (`workload.planned.touches`, `workload.actions.*`,
/// `workload.not_performed.*`, `workload.no_target.*`).
pub fn csv(runs: &[&ScenarioRun]) -> String {
    csv_with(runs, None)
}

/// CSV as [`csv`], with a `guest` column after `granularity` when `guests` (one label per run)
/// is given.
pub fn csv_with(runs: &[&ScenarioRun], guests: Option<&[String]>) -> String {
    csv_extra(runs, guests, &[], &[])
}

/// CSV as [`csv_with`], followed by the columns `extra_names`, whose values for run `i` are
/// `extra[i]` (a sweep's run index, seed and parameters): the columns of `run --csv` come first
/// and unchanged, so the two concatenate.
pub fn csv_extra(
    runs: &[&ScenarioRun],
    guests: Option<&[String]>,
    extra_names: &[String],
    extra: &[Vec<String>],
) -> String {
    // Nested metrics (`npt_demotions`, `exits`, ...) have members only where they occurred: the
    // columns are the union over all runs, in name order, and a run without one reports 0.
    let rows: Vec<std::collections::BTreeMap<String, String>> = runs
        .iter()
        .map(|r| {
            let mut cols = Vec::new();
            flatten("", &serde_json::to_value(&r.result.metrics).unwrap_or(Value::Null), &mut cols);
            if let Some(w) = &r.workload {
                // A generated workload's guest actions, per kind: planned, performed, not
                // performed and, of those, without a target.
                for (key, counts) in [
                    ("workload.planned", &w.planned),
                    ("workload.actions", &w.actions),
                    ("workload.not_performed", &w.not_performed),
                    ("workload.no_target", &w.no_target),
                ] {
                    flatten(key, &serde_json::to_value(counts).unwrap_or(Value::Null), &mut cols);
                }
            }
            cols.into_iter().collect()
        })
        .collect();
    let names: std::collections::BTreeSet<&String> = rows.iter().flat_map(|r| r.keys()).collect();
    let mut out = String::new();
    let header: Vec<String> = names.iter().map(|k| csv_field(k)).collect();
    let guest_head = if guests.is_some() { ",guest" } else { "" };
    let tail = |cells: &[String]| {
        cells.iter().fold(String::new(), |mut t, c| {
            let _ = write!(t, ",{}", csv_field(c));
            t
        })
    };
    let _ = writeln!(
        out,
        "scenario,policy,backing,granularity{guest_head},outcome,{}{}",
        header.join(","),
        tail(extra_names)
    );
    for (i, (r, row)) in runs.iter().zip(&rows).enumerate() {
        let guest = guests.map(|g| format!(",{}", csv_field(g.get(i).map_or("", String::as_str))));
        let vals: Vec<String> =
            names.iter().map(|k| row.get(*k).map_or_else(|| "0".to_string(), |v| csv_field(v))).collect();
        let _ = writeln!(
            out,
            "{},{},{},{}{},{},{}{}",
            csv_field(&r.name),
            r.policy,
            r.backing,
            r.granularity,
            guest.unwrap_or_default(),
            r.result.outcome,
            vals.join(","),
            extra.get(i).map(|e| tail(e)).unwrap_or_default()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    /// A column reads its metric with `metric_value`, which has no value for a name `[expect]`
    /// would refuse: a misspelt key would print a blank-looking 0 in every row.
    #[test]
    fn every_column_names_a_metric() {
        for key in super::COLUMNS.iter().chain(super::WORKLOAD_COLUMNS.iter().map(|(_, k)| k)) {
            assert_eq!(snpsim_scenario::check_metric_name(key), Ok(()), "{key}");
        }
    }

    #[test]
    fn headers_break_after_their_separators_and_read_down_as_the_name() {
        assert_eq!(super::header_lines("host_splits_needless", 3), ["host_", "splits_", "needless"]);
        assert_eq!(super::header_lines("exits.npf", 3), ["exits.", "npf"]);
        // Wide values keep the name on one line.
        assert_eq!(super::header_lines("psmash", 9), ["psmash"]);
        assert_eq!(super::header_lines("rmp_npf_sizem", 8), ["rmp_npf_", "sizem"]);
    }

    #[test]
    fn tables_too_wide_are_dealt_into_panels_that_repeat_the_key() {
        // Key 3 + 2 wide; then 4 + 2, 5 + 2, 6 + 2: at 20 columns, 5 + 6 + 7 = 18 fits and the
        // third does not (26 > 22 with the trailing gap); it opens a second panel.
        assert_eq!(super::panels(&[3, 4, 5, 6], 1, 20), [vec![0, 1, 2], vec![0, 3]]);
        assert_eq!(super::panels(&[3, 4, 5, 6], 1, 24), [vec![0, 1, 2, 3]]);
        // A column wider than the width gets a panel of its own.
        assert_eq!(super::panels(&[3, 40, 5], 1, 20), [vec![0, 1], vec![0, 2]]);
        let rows: Vec<Vec<String>> = [["name", "a", "b"], ["x", "10", "200"]]
            .iter()
            .map(|r| r.iter().map(|c| (*c).to_string()).collect())
            .collect();
        assert_eq!(super::aligned(&rows, 1, 80), "name   a    b\n-------------\nx     10  200\n");
        assert_eq!(
            super::aligned(&rows, 1, 8),
            "name   a\n--------\nx     10\n\nname    b\n---------\nx     200\n"
        );
    }

    #[test]
    fn later_panels_may_repeat_only_the_row_s_id() {
        // Keys 3 and 8 (+ 2 each) head the first panel: 5 + 10 + 6 = 21 fits 22 with 4; 5 does
        // not. A later panel repeats the 3-wide id only: 5 + 7 + 8 = 20 holds both 5 and 6.
        assert_eq!(super::panels_keyed(&[3, 8, 4, 5, 6], 2, 1, 20), [vec![0, 1, 2], vec![0, 3, 4]]);
        // With the whole key repeated, 5 and 6 need a panel each (15 + 7 + 8 = 30 > 22).
        assert_eq!(super::panels(&[3, 8, 4, 5, 6], 2, 20), [vec![0, 1, 2], vec![0, 1, 3], vec![0, 1, 4]]);
    }

    #[test]
    fn durations_take_the_largest_unit() {
        assert_eq!(super::duration(136_985_100), "137 ms");
        assert_eq!(super::duration(1_639_400), "1.64 ms");
        assert_eq!(super::duration(25_300), "25.3 µs");
        assert_eq!(super::duration(2_100_000_000), "2.10 s");
        assert_eq!(super::duration(0), "0 ns");
    }
}
