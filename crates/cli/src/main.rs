//! `snpsim`: run SEV-SNP memory-protection scenarios and the embedded 2021 debate.
//!
//! Exit codes (design §11): 0 ok, 1 an expectation or invariant failed, 2 bad input.

mod list;
mod table;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use snpsim_sim::debate::{Debate, run_debate};
use snpsim_sim::engine::CheckMode;
use snpsim_sim::run::{ScenarioRun, run_scenario};
use snpsim_sim::scenario::{load_scenario_with_overrides, split_override};

/// A deterministic simulator of SEV-SNP memory protection: which faults occur, which host pages
/// are split (and which splits were needless), what fails, what is lost, and what it costs, for
/// any backing, hypervisor policy and guest.
#[derive(Debug, Parser)]
#[command(name = "snpsim", version, args_conflicts_with_subcommands = true)]
#[command(after_help = "With no command, runs the embedded debate suite (same as `snpsim run`).\n\n\
Examples:\n  snpsim                                  the 2021 debate: table and verdicts\n  \
snpsim run examples/debate              every scenario in a directory\n  \
snpsim run s.toml --set vm.backing=thp  override a field\n  \
snpsim run --json > results.json        machine-readable results")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run scenario files or directories (default: the embedded debate suite).
    #[command(
        after_help = "Examples:\n  snpsim run\n  snpsim run examples/debate/05-npt-demote-thp.toml --json\n  \
snpsim run examples --set guest.psc_granularity=2m --check full"
    )]
    Run(RunArgs),
    /// List embedded scenarios, policies, backings, guest presets and metrics.
    #[command(after_help = "Example:\n  snpsim list")]
    List,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Check {
    Full,
    Incremental,
    Off,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Scenario files or directories (searched for *.toml); none = the embedded debate suite.
    paths: Vec<PathBuf>,
    /// Print one JSON document (an array with one object per run) and nothing else on stdout.
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// Print CSV, one row per run, every metric a column.
    #[arg(long)]
    csv: bool,
    /// Override a scenario field, validated like the file (`vm.backing=thp`); repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Override the scenario seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Invariant checking after each step.
    #[arg(long, value_enum, default_value = "incremental")]
    check: Check,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::List) => {
            list::print();
            Ok(true)
        }
        Some(Command::Run(args)) => run(&args),
        None => run(&cli.run),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("snpsim: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn check_mode(c: Check) -> CheckMode {
    match c {
        Check::Full => CheckMode::Full,
        Check::Incremental => CheckMode::Incremental,
        Check::Off => CheckMode::Off,
    }
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("{}: cannot read directory", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() || p.extension().is_some_and(|e| e == "toml") {
                collect_files(&p, out)?;
            }
        }
    } else if path.exists() {
        out.push(path.to_path_buf());
    } else {
        bail!("{}: no such file or directory", path.display());
    }
    Ok(())
}

/// Run the arguments' scenarios; `Ok(false)` when an expectation or invariant failed.
fn run(args: &RunArgs) -> Result<bool> {
    let check = check_mode(args.check);
    let mut overrides: Vec<(String, String)> = Vec::new();
    for s in &args.set {
        let Some((k, v)) = split_override(s) else { bail!("--set {s}: expected KEY=VALUE") };
        overrides.push((k.to_string(), v.to_string()));
    }
    if let Some(seed) = args.seed {
        overrides.push(("seed".into(), seed.to_string()));
    }
    if args.paths.is_empty() && !overrides.is_empty() {
        bail!("--set and --seed apply to scenario files; the embedded suite takes none");
    }
    let (runs, debate) = if args.paths.is_empty() {
        let d = run_debate(check).context("the embedded debate suite failed to run (a bug in snpsim)")?;
        let runs: Vec<ScenarioRun> = d.matrix.iter().chain(&d.claims).cloned().collect();
        (runs, Some(d))
    } else {
        let mut files = Vec::new();
        for p in &args.paths {
            collect_files(p, &mut files)?;
        }
        if files.is_empty() {
            bail!("no scenario files (*.toml) found");
        }
        let ov: Vec<(&str, &str)> = overrides.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        // Parse everything before running anything: bad input must not produce partial results.
        let mut scenarios = Vec::new();
        for f in &files {
            scenarios.push(load_scenario_with_overrides(f, &ov)?);
        }
        let mut runs = Vec::new();
        for (f, s) in files.iter().zip(&scenarios) {
            let mut r = run_scenario(s, check)
                .with_context(|| format!("{}: cannot build the machine", f.display()))?;
            r.name = format!("{} ({})", s.name, f.display());
            runs.push(r);
        }
        (runs, None)
    };
    let passed = runs.iter().all(ScenarioRun::passed);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&table::json(&runs))?);
    } else if args.csv {
        print!("{}", table::csv(&runs));
    } else {
        match &debate {
            Some(d) => print_debate(d),
            None => print!("{}", table::render(&runs, true)),
        }
        for r in runs.iter().filter(|r| !r.passed()) {
            eprintln!("FAILED {} [{} / {} / {}]:", r.name, r.policy, r.backing, r.granularity);
            for f in &r.failures {
                eprintln!("  {f}");
            }
        }
    }
    Ok(passed)
}

fn print_debate(d: &Debate) {
    println!("snpsim: the 2021 SNP debate (\"x86/fault: handle the RMP fault for user address\")");
    println!("Workload: a guest accepts 64 MiB, writes data, shares one driver buffer of its granule,");
    println!("writes next to it, lets the VMM and vhost write the buffer, reads its data back.\n");
    print!("{}", table::render(&d.matrix, false));
    println!("\nClaim scenarios (examples/debate):");
    print!("{}", table::render(&d.claims, true));
    println!("\nVerdicts:");
    for v in d.verdicts() {
        println!("  [{}] {}", if v.supported { "supported" } else { "NOT SUPPORTED" }, v.claim);
        println!("        {}", v.evidence);
    }
}
