//! `snpsim bench`: the performance suite of BENCHMARKS.md (issue 9).
//!
//! Each benchmark runs in a child process (`snpsim bench --child NAME`) so that its peak resident
//! memory (`VmHWM`) is its own. Wall-clock time is read here and only here: the simulator never
//! sees it, and it never appears in a run's results.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};
use snpsim_engine::engine::{Action, CheckMode, Simulation};
use snpsim_engine::metrics::Metrics;
use snpsim_engine::prelude::{Gpa, RmpPageSize};
use snpsim_hw::reference::DenseRmp;
use snpsim_hw::rmp::Rmp;
use snpsim_hw::{RmpConfig, RmpModel};
use snpsim_scenario::run::{actions, run_scenario, sim_config};
use snpsim_scenario::{Scenario, parse_scenario};

use crate::cputime::cpu_seconds;
use crate::{Check, check_mode};

/// `snpsim bench --help` epilogue.
pub const BENCH_HELP: &str = "Runs the performance suite of BENCHMARKS.md, each benchmark in its own \
process, and reports per benchmark: wall time; the RMP instructions the simulation executed \
(RMPUPDATE, PVALIDATE, RMPADJUST, PSMASH), the #NPF exits it took and the 4K pages its \
page-state changes named, each counted and rated separately (a 2M PSC entry names 512 pages and \
costs one RMPUPDATE, so the three are not one unit); peak resident memory; and for the acceptance \
benchmarks the same RMP instructions on the dense oracle RMP (16 bytes per 4K page) at 64 GiB, \
scaled to the benchmark's size, the same scenario page by page (the oracle of the range \
operations), and the RMP instruction sequence the simulation issued recorded and executed on the \
dense oracle in the same process, with the ratios. --json stamps the document with the commit the binary was built \
from and the machine (cores, CPU model, memory, load average). --markdown FILE.json prints the \
BENCHMARKS.md tables from such a document, without running anything. Timings vary with the \
machine and its load; nothing here is deterministic, unlike every other command.\n\nBenchmarks: \
accept-1t-2m, accept-1t-4k, fragment-1t, steady-64g, sweep-1000 (the files are in \
bench/suite/), parse-1m (parsing a generated scenario of 1,000,000 scripted steps; target: under \
2 s).\n\nExamples:\n  snpsim bench\n  snpsim bench --only accept-1t-2m --json\n  \
snpsim bench --json > bench/results.json && snpsim bench --markdown bench/results.json";

/// `snpsim bench` options.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Run only the benchmark NAME (repeatable).
    #[arg(long, value_name = "NAME")]
    only: Vec<String>,
    /// Print one JSON document (the build's commit, the machine, and one object per benchmark)
    /// and nothing else.
    #[arg(long)]
    json: bool,
    /// Print the BENCHMARKS.md tables (Markdown) of a document `--json` wrote; runs nothing.
    #[arg(long, value_name = "FILE.json", conflicts_with_all = ["json", "only", "child"])]
    markdown: Option<std::path::PathBuf>,
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
    /// Parsing (not running) a generated scenario of this many scripted steps.
    Parse { steps: u64 },
}

/// The suite.
const SUITE: [(&str, Kind); 6] = [
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
    ("parse-1m", Kind::Parse { steps: 1_000_000 }),
];

/// Guest pages the dense oracle is measured at (64 GiB: a 256 MiB dense RMP).
const DENSE_PAGES: u64 = 16 << 20;

/// The hardware's published eager-acceptance rate per vCPU (`docs/calibration.md` §2): about 1.5 GiB/s.
const HW_ACCEPT_BYTES_PER_S: f64 = 1.5 * (1u64 << 30) as f64;

/// `snpsim bench`; `Ok(false)` when a benchmark did not complete as its file expects.
pub fn bench(args: &BenchArgs) -> Result<bool> {
    if let Some(file) = &args.markdown {
        let bytes = crate::input::read(file, "the bench document", crate::input::RESULTS)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| anyhow::anyhow!("{}:1:1: not UTF-8 text", file.display()))?;
        let doc: Value = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a `snpsim bench --json` document", file.display()))?;
        crate::stdout::text(
            &crate::bench_report::markdown(&doc).with_context(|| file.display().to_string())?,
        )?;
        return Ok(true);
    }
    if let Some(name) = &args.child {
        let (_, kind) = find(name)?;
        let out = run_child(name, kind, check_mode(args.check))?;
        crate::stdout::bytes(format!("{out}\n").as_bytes())?;
        return Ok(true);
    }
    for name in &args.only {
        find(name)?;
    }
    let exe = std::env::current_exe().context("cannot find the snpsim executable")?;
    // The machine as the suite starts (its load average is the noise the figures carry).
    let start_stamp = crate::bench_report::Stamp::now();
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
    let doc = crate::bench_report::document(crate::check_name(args.check), &start_stamp, &results);
    if args.json {
        crate::stdout::bytes(format!("{doc}\n").as_bytes())?;
    } else {
        crate::stdout::text(&crate::bench_report::text(&doc))?;
    }
    Ok(ok)
}

fn find(name: &str) -> Result<(&'static str, Kind)> {
    SUITE.iter().copied().find(|(n, _)| *n == name).ok_or_else(|| {
        let names: Vec<&str> = SUITE.iter().map(|(n, _)| *n).collect();
        anyhow::anyhow!("--only: unknown benchmark {name:?}; the suite has {}", names.join(", "))
    })
}

/// What a run simulated, counted separately because the units differ: an RMP instruction is one
/// RMPUPDATE, PVALIDATE, RMPADJUST or PSMASH whatever its page size; an #NPF exit is one exit; a PSC
/// page is a 4K page a page-state-change entry named (a 2M entry names 512 of them and costs one
/// 2M RMPUPDATE, so in a 2M acceptance PSC pages outnumber instructions 256 to 1).
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    rmpupdate: u64,
    pvalidate: u64,
    rmpadjust: u64,
    psmash: u64,
    npf_exits: u64,
    psc_pages: u64,
    psc_requests: u64,
}

impl Counts {
    fn of(m: &Metrics) -> Self {
        Counts {
            rmpupdate: m.rmpupdate,
            pvalidate: m.pvalidate,
            rmpadjust: m.rmpadjust,
            psmash: m.psmash,
            npf_exits: m.npf,
            psc_pages: m.psc_pages,
            psc_requests: m.psc_requests,
        }
    }

    /// The same counts from a run's `metrics` object in `runs.jsonl` (a missing field is an error:
    /// a sweep that stopped writing one would otherwise report zero).
    fn of_json(m: &Value) -> Result<Self> {
        let f = |k: &str| m[k].as_u64().with_context(|| format!("runs.jsonl: metrics.{k} missing"));
        Ok(Counts {
            rmpupdate: f("rmpupdate")?,
            pvalidate: f("pvalidate")?,
            rmpadjust: f("rmpadjust")?,
            psmash: f("psmash")?,
            npf_exits: f("npf")?,
            psc_pages: f("psc_pages")?,
            psc_requests: f("psc_requests")?,
        })
    }

    fn add(&mut self, o: Counts) {
        self.rmpupdate += o.rmpupdate;
        self.pvalidate += o.pvalidate;
        self.rmpadjust += o.rmpadjust;
        self.psmash += o.psmash;
        self.npf_exits += o.npf_exits;
        self.psc_pages += o.psc_pages;
        self.psc_requests += o.psc_requests;
    }

    fn instructions(&self) -> u64 {
        self.rmpupdate + self.pvalidate + self.rmpadjust + self.psmash
    }

    /// Adds the counts and their rates over `wall` seconds to a benchmark's JSON object.
    fn write(&self, v: &mut Value, wall: f64) {
        v["rmp_instructions"] = json!({
            "rmpupdate": self.rmpupdate, "pvalidate": self.pvalidate,
            "rmpadjust": self.rmpadjust, "psmash": self.psmash,
        });
        v["rmp_instructions_total"] = json!(self.instructions());
        v["rmp_instructions_per_s"] = json!(self.instructions() as f64 / wall);
        v["npf_exits"] = json!(self.npf_exits);
        v["npf_exits_per_s"] = json!(self.npf_exits as f64 / wall);
        v["psc_pages_4k"] = json!(self.psc_pages);
        v["psc_pages_4k_per_s"] = json!(self.psc_pages as f64 / wall);
        v["psc_requests"] = json!(self.psc_requests);
    }
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
            let (start, cpu0) = (Instant::now(), cpu_seconds());
            let run = run_scenario(&s, check).with_context(|| format!("{name}: cannot build the machine"))?;
            let wall = start.elapsed().as_secs_f64();
            let cpu = cpu_seconds() - cpu0;
            let (peak, _) = memory_status();
            let m = &run.result.metrics;
            let mut v = json!({
                "name": name, "outcome": run.result.outcome.name(), "passed": run.passed(),
                "failures": run.failures, "wall_s": wall, "cpu_s": cpu,
                "peak_rss_bytes": peak, "guest_bytes": s.vm.memory, "sim_time_ns": m.sim_time_ns,
            });
            Counts::of(m).write(&mut v, wall);
            if let Some(gran) = dense {
                v["accept_bytes_per_s"] = json!(s.vm.memory as f64 / wall);
                v["vs_hardware"] = json!(s.vm.memory as f64 / wall / HW_ACCEPT_BYTES_PER_S);
                v["dense"] = dense_comparison(s.vm.pages(), gran, wall)?;
                v["oracle"] = same_sequence(&s, check, &Timed { run: &run, cpu_s: cpu }, wall)?;
            }
            Ok(v)
        }
        Kind::Fragment { text } => fragment(name, text, check),
        Kind::Sweep { text, base } => sweep(name, text, base, check),
        Kind::Parse { steps } => parse(name, steps),
    }
}

/// A scenario of `steps` scripted 4K accesses over a 1 GiB guest.
fn many_steps(steps: u64) -> String {
    use std::fmt::Write as _;
    let mut text = String::from(
        "name = \"many steps\"\n[machine]\nhost_memory = \"4GiB\"\n[vm]\nmemory = \"1GiB\"\n\
         policy = \"npt-demote\"\nbacking = \"thp\"\n",
    );
    for i in 0..steps {
        let gpa = (i % 262_144) * 4096;
        let _ = write!(text, "[[step]]\nop = \"access\"\ngpa = \"{gpa:#x}\"\nkind = \"read\"\n");
    }
    text
}

/// Parse a generated scenario of `steps` steps: the time is the parser's alone (locating every
/// step's line must not rescan the file).
fn parse(name: &str, steps: u64) -> Result<Value> {
    let text = many_steps(steps);
    let (start, cpu0) = (Instant::now(), cpu_seconds());
    let s = parse_scenario(&format!("<generated {name}>"), &text)?;
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let (peak, _) = memory_status();
    let parsed = s.steps.len() as u64;
    let mut v = json!({
        "name": name, "outcome": "completed", "passed": parsed == steps,
        "failures": if parsed == steps { vec![] } else { vec![format!("parsed {parsed} of {steps} steps")] },
        "wall_s": wall, "cpu_s": cpu, "peak_rss_bytes": peak,
        "parse_steps": parsed, "parse_bytes": text.len(),
    });
    Counts::default().write(&mut v, wall);
    Ok(v)
}

/// A benchmark's run and the CPU time it took.
struct Timed<'a> {
    run: &'a snpsim_scenario::run::ScenarioRun,
    cpu_s: f64,
}

/// Frames of the dense oracle the same instruction sequence is replayed on (80 GiB of host: 320 MiB
/// of entries); a larger host's sequence is replayed on these frames and the time scaled.
const ORACLE_FRAMES: u64 = 20 << 20;

/// The same scenario page by page (the one-page oracle of the range operations, timed, its
/// metrics required equal), and its RMP instruction sequence recorded and executed on the dense
/// oracle RMP (`bench_oracle`): the time of each against the benchmark's `wall`.
fn same_sequence(s: &Scenario, check: CheckMode, run: &Timed<'_>, wall: f64) -> Result<Value> {
    let (start, cpu0) = (Instant::now(), cpu_seconds());
    let pages = snpsim_scenario::run::run_scenario_per_page(s, check, None)?;
    let per_page_s = start.elapsed().as_secs_f64();
    let per_page_cpu = cpu_seconds() - cpu0;
    if format!("{:?}", pages.result.metrics) != format!("{:?}", run.run.result.metrics) {
        bail!("{}: the page-by-page run's metrics differ from the range run's", s.name);
    }
    let replay = crate::bench_oracle::replay_on_dense(s, check, ORACLE_FRAMES)?;
    if replay.mismatches > 0 {
        bail!("{}: {} instructions gave another result on the dense oracle", s.name, replay.mismatches);
    }
    let scaled = replay.seconds * replay.instructions as f64 / replay.replayed.max(1) as f64;
    Ok(json!({
        "per_page_wall_s": per_page_s, "range_speedup": per_page_s / wall,
        "per_page_cpu_s": per_page_cpu, "range_speedup_cpu": per_page_cpu / run.cpu_s,
        "instructions": replay.instructions, "replayed": replay.replayed, "oracle_frames": replay.frames,
        "dense_s": replay.seconds, "dense_scaled_s": scaled, "vs_dense": scaled / wall,
        "dense_cpu_s": replay.cpu_seconds,
        "vs_dense_cpu": replay.cpu_seconds * replay.instructions as f64 / replay.replayed.max(1) as f64
            / run.cpu_s,
    }))
}

/// The acceptance kernel on the dense oracle and on the region RMP at [`DENSE_PAGES`], and on the
/// region RMP at the benchmark's size; the oracle's time scaled to `pages` (it is linear in pages).
fn dense_comparison(pages: u64, gran: RmpPageSize, sim_wall: f64) -> Result<Value> {
    let small = DENSE_PAGES.min(pages);
    let time = |rmp: &mut dyn RmpModel, n: u64| -> Result<(f64, u64)> {
        let start = Instant::now();
        let ops = snpsim_engine::kernels::accept(rmp, 1, n, gran).map_err(anyhow::Error::msg)?;
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
    let (start, cpu0) = (Instant::now(), cpu_seconds());
    let mut sim = Simulation::new(sim_config(&s, check)).with_context(|| format!("{name}: cannot build"))?;
    sim.set_costs(s.cost);
    for a in actions(&s) {
        sim.step(&a);
    }
    for page in (1..s.vm.pages()).step_by(2) {
        if sim.outcome().is_some() {
            break;
        }
        sim.step(&Action::Psc {
            vcpu: 0,
            gpa: Gpa::new(page << 12),
            pages: 1,
            private: false,
            granularity: None,
        });
    }
    let (_, after) = memory_status();
    let model = state_breakdown(&sim);
    let result = sim.finish();
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let (peak, _) = memory_status();
    let completed = result.outcome == snpsim_engine::Outcome::Completed && result.violations.is_empty();
    let mut v = json!({
        "name": name, "outcome": result.outcome.name(), "passed": completed, "failures": result.violations,
        "wall_s": wall, "cpu_s": cpu, "peak_rss_bytes": peak,
        "guest_bytes": s.vm.memory, "sim_time_ns": result.metrics.sim_time_ns,
        "state_bytes_per_4k_page": after.saturating_sub(before) as f64 / s.vm.pages() as f64,
        "model_state_bytes": model["total"], "model_state_bytes_per_4k_page": model["total"].as_f64().unwrap_or(0.0) / s.vm.pages() as f64,
        "model_state": model,
    });
    Counts::of(&result.metrics).write(&mut v, wall);
    Ok(v)
}

/// The model's own accounting of its state (`Simulation::state_bytes`) and its parts: the RMP,
/// the RMP change stamps, the host (allocator, VMA, direct map, guest_memfd), the NPT, the memory
/// attributes, the machine's page contents and validation counts together, and the guest.
fn state_breakdown(sim: &Simulation) -> Value {
    let mut v = json!({ "total": sim.state_bytes(), "guest": sim.guest().state_bytes() });
    if let Some(m) = sim.machine() {
        let (rmp, observed) = (m.rmp.inner().state_bytes(), m.rmp.state_bytes());
        let (host, npt, attrs) = (m.host.state_bytes(), m.kvm.npt.state_bytes(), m.kvm.attrs.state_bytes());
        v["rmp"] = json!(rmp);
        v["rmp_change_stamps"] = json!(observed - rmp);
        v["host"] = json!(host);
        v["npt"] = json!(npt);
        v["memory_attributes"] = json!(attrs);
        v["contents_and_validations"] = json!(m.state_bytes() - observed - host - npt - attrs);
    }
    v
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
    let (start, cpu0) = (Instant::now(), cpu_seconds());
    let passed = crate::sweep::sweep(&crate::sweep::SweepArgs::quiet(file, 2, out.clone(), mode))?;
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    let (peak, _) = memory_status();
    let (runs, counts) = sweep_counts(&out.join("runs.jsonl"))?;
    let _ = std::fs::remove_dir_all(&dir);
    let mut v = json!({
        "name": name, "outcome": "completed", "passed": passed, "failures": [], "runs": runs,
        "wall_s": wall, "cpu_s": cpu, "peak_rss_bytes": peak,
    });
    counts.write(&mut v, wall);
    Ok(v)
}

/// The number of runs in a sweep's `runs.jsonl` and their summed counts.
fn sweep_counts(runs: &Path) -> Result<(u64, Counts)> {
    let text = std::fs::read_to_string(runs).with_context(|| format!("{}: cannot read", runs.display()))?;
    let mut n = 0;
    let mut counts = Counts::default();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line)?;
        n += 1;
        counts.add(Counts::of_json(&v["metrics"])?);
    }
    Ok((n, counts))
}
