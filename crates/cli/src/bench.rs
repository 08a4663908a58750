//! `snpsim bench`: the performance suite of BENCHMARKS.md (issue 9).
//!
//! Each benchmark runs in a child process (`snpsim bench --child NAME`) so that its peak resident
//! memory (`VmHWM`) is its own. Wall-clock time is read here and only here: the simulator never
//! sees it, and it never appears in a run's results.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};
use snpsim_hw::reference::DenseRmp;
use snpsim_hw::rmp::Rmp;
use snpsim_hw::{RmpConfig, RmpModel};
use snpsim_sim::engine::{Action, CheckMode, Simulation};
use snpsim_sim::metrics::Metrics;
use snpsim_sim::prelude::{Gpa, RmpPageSize};
use snpsim_sim::run::{actions, run_scenario, sim_config};
use snpsim_sim::scenario::{Scenario, parse_scenario};

use crate::{Check, check_mode};

/// `snpsim bench --help` epilogue.
pub const BENCH_HELP: &str = "Runs the performance suite of BENCHMARKS.md, each benchmark in its own \
process: wall time, simulated page operations (RMPUPDATE, PVALIDATE, RMPADJUST, PSMASH, PSC pages and \
#NPF exits) per second, peak resident memory, and for the acceptance benchmarks the same RMP \
instructions on the dense oracle RMP (16 bytes per 4K page) at 64 GiB, scaled to the benchmark's size. \
Timings vary with the machine and its load; nothing here is deterministic, unlike every other \
command.\n\nBenchmarks: accept-1t-2m, accept-1t-4k, fragment-1t, steady-64g, sweep-1000 (the files are \
in bench/suite/).\n\nExamples:\n  snpsim bench\n  snpsim bench --only accept-1t-2m --json";

/// `snpsim bench` options.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Run only the benchmark NAME (repeatable).
    #[arg(long, value_name = "NAME")]
    only: Vec<String>,
    /// Print one JSON document (an array with one object per benchmark) and nothing else.
    #[arg(long)]
    json: bool,
    /// Invariant checking after each step.
    #[arg(long, value_enum, default_value = "incremental")]
    check: Check,
    /// Run one benchmark in this process and print its JSON object (used by the suite itself).
    #[arg(long, value_name = "NAME", hide = true)]
    child: Option<String>,
}

/// What a benchmark runs.
#[derive(Clone, Copy)]
enum Kind {
    /// A scenario file; with `dense`, the acceptance kernel at this granularity is also run on the
    /// dense oracle.
    Scenario { text: &'static str, dense: Option<RmpPageSize> },
    /// The fragmentation benchmark: the scenario's acceptance, then every other 4K page shared.
    Fragment { text: &'static str },
    /// A sweep file and its base scenario.
    Sweep { text: &'static str, base: &'static str },
}

/// The suite.
const SUITE: [(&str, Kind); 5] = [
    (
        "accept-1t-2m",
        Kind::Scenario {
            text: include_str!("../../../bench/suite/accept-1t-2m.toml"),
            dense: Some(RmpPageSize::Size2M),
        },
    ),
    (
        "accept-1t-4k",
        Kind::Scenario {
            text: include_str!("../../../bench/suite/accept-1t-4k.toml"),
            dense: Some(RmpPageSize::Size4K),
        },
    ),
    ("fragment-1t", Kind::Fragment { text: include_str!("../../../bench/suite/fragment-1t.toml") }),
    (
        "steady-64g",
        Kind::Scenario { text: include_str!("../../../bench/suite/steady-64g.toml"), dense: None },
    ),
    (
        "sweep-1000",
        Kind::Sweep {
            text: include_str!("../../../bench/suite/sweep-1000.toml"),
            base: include_str!("../../../bench/suite/sweep-1000.base.toml"),
        },
    ),
];

/// Guest pages the dense oracle is measured at (64 GiB: a 256 MiB dense RMP).
const DENSE_PAGES: u64 = 16 << 20;

/// The hardware's published eager-acceptance rate per vCPU (`docs/calibration.md` §2): about 1.5 GiB/s.
const HW_ACCEPT_BYTES_PER_S: f64 = 1.5 * (1u64 << 30) as f64;

/// `snpsim bench`; `Ok(false)` when a benchmark did not complete as its file expects.
pub fn bench(args: &BenchArgs) -> Result<bool> {
    if let Some(name) = &args.child {
        let (_, kind) = find(name)?;
        let out = run_child(name, kind, check_mode(args.check))?;
        println!("{out}");
        return Ok(true);
    }
    for name in &args.only {
        find(name)?;
    }
    let exe = std::env::current_exe().context("cannot find the snpsim executable")?;
    let mut results = Vec::new();
    for (name, _) in SUITE.iter().filter(|(n, _)| args.only.is_empty() || args.only.iter().any(|o| o == n)) {
        if !args.json {
            eprintln!("snpsim bench: {name} ...");
        }
        let out = Command::new(&exe)
            .args(["bench", "--child", name, "--check", crate::check_name(args.check)])
            .output()
            .with_context(|| format!("{name}: cannot start {}", exe.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "{name}: the benchmark process failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // The result is the last line (a sweep prints its own summary first).
        let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
        let v: Value = serde_json::from_str(last).with_context(|| format!("{name}: bad result {text}"))?;
        results.push(v);
    }
    let ok = results.iter().all(|r| r["passed"] == true);
    if args.json {
        println!("{}", Value::Array(results));
    } else {
        print!("{}", table(&results));
    }
    Ok(ok)
}

fn find(name: &str) -> Result<(&'static str, Kind)> {
    SUITE.iter().copied().find(|(n, _)| *n == name).ok_or_else(|| {
        let names: Vec<&str> = SUITE.iter().map(|(n, _)| *n).collect();
        anyhow::anyhow!("--only: unknown benchmark {name:?}; the suite has {}", names.join(", "))
    })
}

/// Simulated page operations: RMP instructions, PSC pages and #NPF exits.
fn page_ops(m: &Metrics) -> u64 {
    m.rmpupdate + m.pvalidate + m.rmpadjust + m.psmash + m.psc_pages + m.npf
}

fn page_ops_json(v: &Value) -> u64 {
    ["rmpupdate", "pvalidate", "rmpadjust", "psmash", "psc_pages", "npf"]
        .iter()
        .map(|k| v[*k].as_u64().unwrap_or(0))
        .sum()
}

/// Peak and current resident memory of this process, in bytes (`/proc/self/status`).
fn memory_status() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn scenario(name: &str, text: &str) -> Result<Scenario> {
    Ok(parse_scenario(&format!("bench/suite/{name}.toml"), text)?)
}

/// Run one benchmark in this process; its JSON object.
fn run_child(name: &str, kind: Kind, check: CheckMode) -> Result<Value> {
    match kind {
        Kind::Scenario { text, dense } => {
            let s = scenario(name, text)?;
            let start = Instant::now();
            let run = run_scenario(&s, check).with_context(|| format!("{name}: cannot build the machine"))?;
            let wall = start.elapsed().as_secs_f64();
            let (peak, _) = memory_status();
            let m = &run.result.metrics;
            let ops = page_ops(m);
            let mut v = json!({
                "name": name, "outcome": run.result.outcome.name(), "passed": run.passed(),
                "failures": run.failures, "wall_s": wall, "page_ops": ops, "page_ops_per_s": ops as f64 / wall,
                "peak_rss_bytes": peak, "guest_bytes": s.vm.memory, "sim_time_ns": m.sim_time_ns,
            });
            if let Some(gran) = dense {
                v["accept_bytes_per_s"] = json!(s.vm.memory as f64 / wall);
                v["vs_hardware"] = json!(s.vm.memory as f64 / wall / HW_ACCEPT_BYTES_PER_S);
                v["dense"] = dense_comparison(s.vm.pages(), gran, wall)?;
            }
            Ok(v)
        }
        Kind::Fragment { text } => fragment(name, text, check),
        Kind::Sweep { text, base } => sweep(name, text, base, check),
    }
}

/// The acceptance kernel on the dense oracle and on the region RMP at [`DENSE_PAGES`], and on the
/// region RMP at the benchmark's size; the oracle's time scaled to `pages` (it is linear in pages).
fn dense_comparison(pages: u64, gran: RmpPageSize, sim_wall: f64) -> Result<Value> {
    let small = DENSE_PAGES.min(pages);
    let time = |rmp: &mut dyn RmpModel, n: u64| -> Result<(f64, u64)> {
        let start = Instant::now();
        let ops = snpsim_sim::kernels::accept(rmp, 1, n, gran).map_err(anyhow::Error::msg)?;
        Ok((start.elapsed().as_secs_f64(), ops))
    };
    let config = RmpConfig::x86(small);
    let (dense_s, dense_ops) = time(&mut DenseRmp::new(config), small)?;
    let (region_small_s, _) = time(&mut Rmp::new(config), small)?;
    let (region_s, region_ops) = time(&mut Rmp::new(RmpConfig::x86(pages)), pages)?;
    let scale = pages as f64 / small as f64;
    let dense_scaled = dense_s * scale;
    Ok(json!({
        "pages": small, "dense_s": dense_s, "dense_ops": dense_ops, "region_s": region_small_s,
        "dense_scaled_s": dense_scaled, "region_full_s": region_s, "region_full_ops": region_ops,
        "kernel_speedup": dense_scaled / region_s, "simulation_speedup": dense_scaled / sim_wall,
    }))
}

/// Accept the scenario's memory at 4K (every region PSMASHed), share every other page, and report
/// the resident memory the state takes per 4K guest page.
fn fragment(name: &str, text: &str, check: CheckMode) -> Result<Value> {
    let s = scenario(name, text)?;
    let (_, before) = memory_status();
    let start = Instant::now();
    let mut sim = Simulation::new(sim_config(&s, check)).with_context(|| format!("{name}: cannot build"))?;
    sim.set_costs(s.cost);
    for a in actions(&s) {
        sim.step(&a);
    }
    for page in (1..s.vm.pages()).step_by(2) {
        if sim.outcome().is_some() {
            break;
        }
        sim.step(&Action::Psc { vcpu: 0, gpa: Gpa(page << 12), pages: 1, private: false, granularity: None });
    }
    let (_, after) = memory_status();
    let result = sim.finish();
    let wall = start.elapsed().as_secs_f64();
    let (peak, _) = memory_status();
    let ops = page_ops(&result.metrics);
    let completed = result.outcome == snpsim_sim::Outcome::Completed && result.violations.is_empty();
    Ok(json!({
        "name": name, "outcome": result.outcome.name(), "passed": completed, "failures": result.violations,
        "wall_s": wall, "page_ops": ops, "page_ops_per_s": ops as f64 / wall, "peak_rss_bytes": peak,
        "guest_bytes": s.vm.memory, "sim_time_ns": result.metrics.sim_time_ns,
        "state_bytes_per_4k_page": after.saturating_sub(before) as f64 / s.vm.pages() as f64,
        "psmash": result.metrics.psmash,
    }))
}

/// `snpsim sweep --jobs 2` of the suite's sweep, in this process.
fn sweep(name: &str, text: &str, base: &str, check: CheckMode) -> Result<Value> {
    let dir = std::env::temp_dir().join(format!("snpsim-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(&file, text).with_context(|| format!("{}: cannot write", file.display()))?;
    std::fs::write(dir.join(format!("{name}.base.toml")), base).context("cannot write the base scenario")?;
    let out = dir.join("out");
    let mode = match check {
        CheckMode::Full => Check::Full,
        CheckMode::Incremental => Check::Incremental,
        CheckMode::Off => Check::Off,
    };
    let start = Instant::now();
    let passed = crate::sweep::sweep(&crate::sweep::SweepArgs::quiet(file, 2, out.clone(), mode))?;
    let wall = start.elapsed().as_secs_f64();
    let (peak, _) = memory_status();
    let (runs, ops) = sweep_ops(&out.join("runs.jsonl"))?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(json!({
        "name": name, "outcome": "completed", "passed": passed, "failures": [], "runs": runs,
        "wall_s": wall, "page_ops": ops, "page_ops_per_s": ops as f64 / wall, "peak_rss_bytes": peak,
    }))
}

fn sweep_ops(runs: &Path) -> Result<(u64, u64)> {
    let text = std::fs::read_to_string(runs).with_context(|| format!("{}: cannot read", runs.display()))?;
    let mut n = 0;
    let mut ops = 0;
    for line in text.lines() {
        let v: Value = serde_json::from_str(line)?;
        n += 1;
        ops += page_ops_json(&v["metrics"]);
    }
    Ok((n, ops))
}

fn mib(bytes: &Value) -> String {
    format!("{:.0} MiB", bytes.as_f64().unwrap_or(0.0) / f64::from(1u32 << 20))
}

/// The terminal table.
fn table(results: &[Value]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<14} {:<10} {:>9} {:>14} {:>13} {:>10}  notes",
        "benchmark", "outcome", "wall", "page ops", "page ops/s", "peak RSS"
    );
    let _ = writeln!(out, "{}", "-".repeat(100));
    for r in results {
        let mut notes = Vec::new();
        if let Some(rate) = r["accept_bytes_per_s"].as_f64() {
            notes.push(format!(
                "accepts {:.0} GiB/s ({:.0}x hardware's 1.5 GiB/s per vCPU)",
                rate / f64::from(1u32 << 30),
                r["vs_hardware"].as_f64().unwrap_or(0.0)
            ));
        }
        if let Some(d) = r.get("dense") {
            notes.push(format!(
                "dense oracle kernel scaled {:.1} s: {:.2}x this run's time, {:.1}x the region RMP kernel's",
                d["dense_scaled_s"].as_f64().unwrap_or(0.0),
                d["simulation_speedup"].as_f64().unwrap_or(0.0),
                d["kernel_speedup"].as_f64().unwrap_or(0.0)
            ));
        }
        if let Some(b) = r["state_bytes_per_4k_page"].as_f64() {
            notes.push(format!("{b:.1} bytes of state per 4K page"));
        }
        if let Some(n) = r["runs"].as_u64() {
            notes.push(format!("{n} runs"));
        }
        let _ = writeln!(
            out,
            "{:<14} {:<10} {:>7.2} s {:>14} {:>13.3e} {:>10}  {}",
            r["name"].as_str().unwrap_or("?"),
            r["outcome"].as_str().unwrap_or("?"),
            r["wall_s"].as_f64().unwrap_or(0.0),
            r["page_ops"].as_u64().unwrap_or(0),
            r["page_ops_per_s"].as_f64().unwrap_or(0.0),
            mib(&r["peak_rss_bytes"]),
            notes.join("; ")
        );
        for f in r["failures"].as_array().into_iter().flatten() {
            let _ = writeln!(out, "  FAILED: {}", f.as_str().unwrap_or("?"));
        }
    }
    out
}
