//! `snpsim`: run SEV-SNP memory-protection scenarios and the embedded 2021 debate, compare
//! configurations, record and replay traces.
//!
//! Exit codes (`fail`): 0 ok, 1 an expectation or invariant failed (or a replay diverged),
//! 2 bad input (scenario, trace, paths or arguments), 3 an I/O failure (an output or standard
//! output could not be written), 128 + N killed by signal N. Bad input is reported before anything
//! runs or is written; outputs are written whole or not at all (`output`).
//!
//! Why one long file: the command-line surface (every subcommand's options, help text and exit
//! code) is kept in one place so that it is reviewed as one; each command's work lives in its own
//! module (`report/`, `sweep/`, `list`, `table`, `output`, `input`).

mod bench;
mod bench_oracle;
mod bench_report;
mod check;
mod cleanup;
mod compare;
mod cputime;
mod fail;
mod input;
mod list;
mod matrix;
mod output;
mod progress;
mod report;
mod schema;
mod stdout;
mod sweep;
mod table;
mod term;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use serde_json::Value;
use snpsim_debate::debate::{Debate, Part, suite};
use snpsim_engine::engine::CheckMode;
use snpsim_scenario::Named;
use snpsim_scenario::TraceMetaExt;
use snpsim_scenario::run::{ScenarioRun, run_scenario_traced};
use snpsim_scenario::{Scenario, parse_scenario_bytes, split_override};
use snpsim_trace::TraceMeta;

use crate::output::set::Policy;
use crate::output::{OutDir, OutFile, TraceFormat};

/// `snpsim --version`: the package version, the commit the binary was built from and whether the
/// tracked sources differed from it (`crates/cli/build.rs`), so a result can be traced to its code.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("SNPSIM_BUILD_COMMIT"),
    ", tree ",
    env!("SNPSIM_BUILD_TREE"),
    ")"
);

/// A deterministic simulator of SEV-SNP memory protection: which faults occur, which host pages
/// are split (and which splits were needless), what fails, what is lost, and what it costs, for
/// any backing, hypervisor policy and guest.
#[derive(Debug, Parser)]
// `term_width = 0`: help keeps its source line breaks whatever the terminal, so the `--help`
// examples stay one command per line (a dev-dependency turns on clap's `wrap_help` in test builds).
#[command(name = "snpsim", version = VERSION, args_conflicts_with_subcommands = true, term_width = 0)]
#[command(after_help = "With no command, runs the embedded debate suite (same as `snpsim run`).\n\n\
Examples:\n  snpsim                                  the 2021 debate: who wins, and the verdicts\n  \
snpsim run examples/debate              every scenario in a directory\n  \
snpsim run s.toml --set vm.backing=thp  override a field\n  \
snpsim run --json > results.json        machine-readable results\n  \
snpsim compare s.toml --policies all --backings thp,hugetlbfs-2m --guests 4k,2m\n  \
snpsim run s.toml --out out --trace-format chrome   results, trace.jsonl and a Perfetto timeline\n  \
snpsim replay out/trace.jsonl           re-execute a trace and verify every event\n\n\
Exit codes: 0 ok, 1 an expectation or invariant failed (or a replay diverged), 2 bad input \
(nothing ran or was written), 3 an I/O error (an output could not be written; the old outputs \
are left as they were), 128+N killed by signal N (likewise).")]
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
snpsim run examples --set guest.psc_granularity=2m --check full\n  \
snpsim run examples/debate --out results --trace-format chrome\n  \
snpsim run s.toml --trace s.jsonl && snpsim replay s.jsonl"
    )]
    Run(RunArgs),
    /// Run one scenario under every combination of policies, backings and guests, in parallel.
    #[command(after_help = "Lists are comma-separated names or `all`; an option left out keeps the \
scenario's own value. --guests takes guest presets (linux, linux-2021, coconut-svsm, oak-stage0: the \
preset replaces the scenario's [guest]) or PSC granularities (4k, 2m: only guest.psc_granularity \
changes); `all` means every preset. Policy/backing pairs of different eras are skipped with a note. \
The scenario's [expect] describes one configuration and is not checked; invariants are.\n\n\
Examples:\n  snpsim compare examples/debate/05-npt-demote-thp.toml --policies all --backings all --guests 4k,2m\n  \
snpsim compare s.toml --policies npt-demote,gmem --backings thp,gmem-2m --csv > matrix.csv\n  \
snpsim compare s.toml --policies all --out cmp --jobs 8")]
    Compare(compare::CompareArgs),
    /// Re-execute a JSONL trace and verify every event, every result and the final state hash.
    #[command(after_help = "Exit codes: 0 every line matches, 1 the first divergence (its line is \
named), 2 the trace is malformed (file:line:column and what is wrong).\n\n\
Examples:\n  snpsim run examples/debate/05-npt-demote-thp.toml --trace t.jsonl\n  snpsim replay t.jsonl")]
    Replay(ReplayArgs),
    /// Model-check every policy and backing exhaustively on the tiny geometry (4 pages per level).
    #[command(after_help = "Explores every sequence of guest and host actions up to --depth with the \
simulator's own engine and checks the invariants (docs/semantics.md E8) in every state; then, with two \
interleaved vCPUs racing in one 2M region, every interleaving of their ticks up to --race-depth. A \
violation prints the shortest counterexample and writes it as a trace that `snpsim replay` \
re-executes. Exit 1 on a violation.\n\nExamples:\n  snpsim check\n  snpsim check --policy npt-demote \
--backing hugetlbfs-1g --depth 10\n  snpsim check --vcpus 2 --race-depth 16 --policy gmem\n  \
snpsim check --mutant no-zap-after-psmash --depth 3 --out cex")]
    Check(check::CheckArgs),
    /// Write a self-contained HTML report (tables, verdicts, SVG charts) from saved results.
    #[command(
        after_help = "RESULTS is a directory written by run/compare/sweep/merge --out, a results.json \
(or --json output), or a sweep's runs.jsonl. The page has no script and loads nothing: open it anywhere.\n\n\
Examples:\n  snpsim run --out out && snpsim report out --html debate.html\n  \
snpsim compare s.toml --policies all --json > r.json && snpsim report r.json --html r.html\n  \
snpsim sweep examples/sweeps/attacks.toml --out sweep && snpsim report sweep/runs.jsonl --html sweep.html"
    )]
    Report(report::ReportArgs),
    /// Run a parameter sweep (a base scenario x a grid of overrides x seeds), or one shard of it.
    #[command(after_help = sweep::SWEEP_HELP)]
    Sweep(sweep::SweepArgs),
    /// Join the outputs of a sweep's shards, checking that every run is there exactly once.
    #[command(after_help = sweep::MERGE_HELP)]
    Merge(sweep::MergeArgs),
    /// Run the performance suite of BENCHMARKS.md: wall and CPU time, RMP instructions, #NPF exits and
    /// PSC pages (each counted and rated separately), peak RSS.
    #[command(after_help = bench::BENCH_HELP)]
    Bench(bench::BenchArgs),
    /// List embedded scenarios, policies, backings, guest presets, metrics and step ops, or print
    /// the scenario format's JSON Schema.
    #[command(after_help = "Examples:\n  snpsim list\n  snpsim list --schema > snpsim-scenario.schema.json")]
    List {
        /// Print a JSON Schema (draft 2020-12) of the scenario format instead, for editors that
        /// complete and check TOML (with taplo: `#:schema snpsim-scenario.schema.json` at the top
        /// of a scenario).
        #[arg(long)]
        schema: bool,
    },
    /// Print a shell completion script for snpsim's commands and options.
    #[command(
        after_help = "Examples:\n  snpsim completions bash > ~/.local/share/bash-completion/completions/snpsim\n  \
snpsim completions zsh > \"${fpath[1]}/_snpsim\"\n  snpsim completions fish > ~/.config/fish/completions/snpsim.fish"
    )]
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print snpsim's manual page (roff), generated from the same definitions as --help.
    #[command(after_help = "Examples:\n  snpsim man | man -l -\n  snpsim man > snpsim.1")]
    Man,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Check {
    Full,
    Incremental,
    Off,
}

/// Options shared by `run` and `compare`: overrides and checking.
#[derive(Debug, Args)]
struct ScenarioOpts {
    /// Override a scenario field, validated like the file (`vm.backing=thp`); repeatable.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Override the scenario seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Invariant checking after each step: `incremental` over what the step changed, `full` over
    /// the whole state (every run, generated workloads included: minutes for one of the default
    /// suite's workloads of tens of thousands of steps), `off` only the per-access checks.
    #[arg(long, value_enum, default_value = "incremental")]
    check: Check,
    /// Refuse, before running anything, a scenario whose estimated simulator memory per run
    /// exceeds SIZE (`8GiB`, `512MiB`) or `unlimited`.
    #[arg(long, value_name = "SIZE", default_value = "8GiB", value_parser = parse_budget)]
    memory_budget: u64,
}

/// `--memory-budget`: a size (`8GiB`) or `unlimited`.
pub(crate) fn parse_budget(text: &str) -> std::result::Result<u64, String> {
    if text == "unlimited" {
        return Ok(u64::MAX);
    }
    match snpsim_scenario::parse_size(text) {
        Ok(0) => Err("must not be zero".into()),
        Ok(b) => Ok(b),
        Err(e) => Err(format!("{e}, or `unlimited`")),
    }
}

/// Refuse a scenario whose estimated memory exceeds `budget` (exit 2, naming the field).
pub(crate) fn check_budget(s: &Scenario, budget: u64, traced: bool) -> Result<()> {
    snpsim_scenario::budget::check(s, budget, traced)?;
    Ok(())
}

/// Where results go.
#[derive(Debug, Args)]
#[allow(clippy::struct_excessive_bools)] // independent command-line flags
pub(crate) struct OutputOpts {
    /// Print one JSON document (an array with one object per run) and nothing else on stdout.
    #[arg(long, conflicts_with = "csv")]
    json: bool,
    /// Print CSV, one row per run, every metric a column.
    #[arg(long)]
    csv: bool,
    /// Write DIR/results.json (as --json) and DIR/report.html (the HTML report); the default run
    /// adds DIR/verdicts.json. Traces only when asked (--with-trace or --trace-format): they are
    /// large (the default run's is 866 MB). DIR is replaced as a whole when the command ends: it
    /// must be new or empty, unless --force.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// With --out: also write DIR/trace.jsonl (every run's trace, which `snpsim replay`
    /// re-executes), and DIR/trace.json with `--trace-format chrome`.
    #[arg(long, requires = "out")]
    with_trace: bool,
    /// Replace a non-empty --out DIR: everything in it is replaced by this command's outputs.
    #[arg(long, requires = "out")]
    force: bool,
    /// Write the trace of every run to FILE (JSONL, or Chrome format with --trace-format chrome).
    /// A regular file is replaced whole; a FIFO, a device, `-` (standard output, instead of the
    /// table) or a process substitution is written as a stream.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Trace format for --trace (default jsonl). Given with --out, it asks for the traces as
    /// --with-trace does; `chrome` adds trace.json beside trace.jsonl.
    #[arg(long, value_enum)]
    trace_format: Option<TraceFormat>,
    /// No progress bar (it is drawn only when standard error is a terminal anyway).
    #[arg(long, short = 'q')]
    quiet: bool,
}

impl OutputOpts {
    /// Whether the runs record traces: for `--trace FILE`, or for `--out DIR` when its traces were
    /// asked for.
    fn traced(&self) -> bool {
        self.out_traces() || self.trace.is_some()
    }

    /// Whether `--out DIR` gets the traces: only when asked (`--with-trace` or an explicit
    /// `--trace-format`), since a trace is far larger and slower to write than the results.
    fn out_traces(&self) -> bool {
        self.out.is_some() && (self.with_trace || self.trace_format.is_some())
    }

    /// The trace format: `--trace-format`, JSONL by default.
    fn format(&self) -> TraceFormat {
        self.trace_format.unwrap_or(TraceFormat::Jsonl)
    }

    /// Check every destination before anything runs, against each other and the command's
    /// `inputs` ((what, path) pairs).
    pub(crate) fn plan(&self, inputs: &[(&str, &Path)]) -> Result<Plan> {
        let policy = if self.force { Policy::Force } else { Policy::Fresh };
        let out = self.out.as_deref().map(|d| OutDir::check("--out", d, policy)).transpose()?;
        // Said before whether the trace's directory exists: it may be the one --out creates.
        if let (Some(d), Some(t)) = (&out, &self.trace)
            && !input::is_stdin(t)
            && output::paths::inside(t, d.path())
        {
            bail!(
                "--trace {}: is inside --out {}, whose contents are replaced as a whole; write it elsewhere",
                t.display(),
                d.shown.display()
            );
        }
        let trace = self.trace.as_deref().map(|t| OutFile::check("--trace", t)).transpose()?;
        if trace.as_ref().is_some_and(OutFile::is_stdout) && (self.json || self.csv) {
            bail!("--trace -: standard output already carries --json or --csv; write the trace to a file");
        }
        output::paths::check(inputs, &trace.iter().collect::<Vec<_>>(), &out.iter().collect::<Vec<_>>())?;
        Ok(Plan { out, trace })
    }
}

/// The checked destinations of [`OutputOpts`].
#[derive(Debug)]
pub(crate) struct Plan {
    out: Option<OutDir>,
    trace: Option<OutFile>,
}

/// Most runs at a time per CPU: more threads only add memory and contention, and tens of
/// thousands exhaust the process's thread limit.
const JOBS_PER_CPU: usize = 4;

/// `--jobs`: `None` is one per CPU; 0 and more than [`JOBS_PER_CPU`] per CPU are refused.
pub(crate) fn jobs(arg: Option<usize>) -> Result<usize> {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    match arg {
        None => Ok(cpus),
        Some(0) => bail!("--jobs: must be at least 1"),
        Some(n) if n > JOBS_PER_CPU * cpus => bail!(
            "--jobs {n}: at most {} on this machine ({JOBS_PER_CPU} per CPU, {cpus} CPU{}); more threads only add \
             memory and contention",
            JOBS_PER_CPU * cpus,
            if cpus == 1 { "" } else { "s" }
        ),
        Some(n) => Ok(n),
    }
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Scenario files or directories (searched for *.toml); none = the embedded debate suite.
    paths: Vec<PathBuf>,
    /// With the embedded suite: after the first screen, the table of every run, why each that
    /// stopped did, and each verdict's settings, evidence and falsifier.
    #[arg(long)]
    details: bool,
    /// Do not check the scenarios' `[expect]` tables (invariants are still checked): for a
    /// scenario run with a `--set` or `--seed` its expectations were not written for.
    #[arg(long)]
    no_expect: bool,
    /// Runs at a time (default: one per CPU; at most 4 per CPU); results do not depend on it.
    /// Each run is held to --memory-budget on its own, so N runs may together need N times it
    /// (and every run's trace is kept until the command ends).
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    #[command(flatten)]
    scenario: ScenarioOpts,
    #[command(flatten)]
    output: OutputOpts,
}

#[derive(Debug, Args)]
struct ReplayArgs {
    /// The JSONL trace (from `--trace FILE`, or `--out DIR --with-trace`'s trace.jsonl); `-` reads
    /// standard input.
    trace: PathBuf,
    /// Refuse a trace larger than SIZE (replay holds it in memory), or a run whose machine (host
    /// and guest memory) needs an estimated simulator memory over SIZE (`8GiB`), or `unlimited`.
    #[arg(long, value_name = "SIZE", default_value = "8GiB", value_parser = parse_budget)]
    memory_budget: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = cleanup::install() {
        term::eprint(&format!("snpsim: {e:#}"));
        return ExitCode::from(fail::IO);
    }
    let result = match cli.command {
        Some(Command::List { schema: false }) => stdout::text(&list::text()).map(|()| true),
        Some(Command::List { schema: true }) => {
            // A Value always serializes.
            let doc = serde_json::to_string_pretty(&schema::scenario_schema()).unwrap_or_default();
            stdout::text(&format!("{doc}\n")).map(|()| true)
        }
        Some(Command::Completions { shell }) => completions(shell),
        Some(Command::Man) => man_page(),
        Some(Command::Run(args)) => run(&args),
        Some(Command::Compare(args)) => compare::compare(&args),
        Some(Command::Replay(args)) => replay(&args),
        Some(Command::Check(args)) => check::check(&args),
        Some(Command::Report(args)) => report::report(&args),
        Some(Command::Sweep(args)) => sweep::sweep(&args),
        Some(Command::Merge(args)) => sweep::merge(&args),
        Some(Command::Bench(args)) => bench::bench(&args),
        None => match unknown_command(&cli.run) {
            Some(e) => Err(e),
            None => run(&cli.run),
        },
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(fail::FAILED),
        Err(e) => {
            term::eprint(&format!("snpsim: {e:#}"));
            fail::status(&e)
        }
    }
}

/// `snpsim completions SHELL`: the completion script clap_complete generates from the command
/// definitions, so it cannot drift from them.
fn completions(shell: clap_complete::Shell) -> Result<bool> {
    use clap::CommandFactory as _;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "snpsim", &mut script);
    stdout::bytes(&script).map(|()| true)
}

/// `snpsim man`: the manual page clap_mangen renders from the command definitions.
fn man_page() -> Result<bool> {
    use clap::CommandFactory as _;
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .map_err(|e| fail::io("cannot render the manual page", e))?;
    stdout::bytes(&page).map(|()| true)
}

/// A first argument that is neither a file nor a command but close to a command's name (`snpsim
/// rnu`): bad input that names the command meant, rather than "no such file".
fn unknown_command(args: &RunArgs) -> Option<anyhow::Error> {
    use clap::CommandFactory as _;
    let first = args.paths.first()?.to_str()?;
    if first == "-" || std::path::Path::new(first).exists() || first.contains(['/', '.']) {
        return None;
    }
    let cli = Cli::command();
    let (best, distance) = cli
        .get_subcommands()
        .map(|c| (c.get_name().to_owned(), strsim::levenshtein(first, c.get_name())))
        .min_by_key(|(_, d)| *d)?;
    (distance <= 2).then(|| {
        anyhow::anyhow!(
            "`{}` is neither a command nor a file; did you mean `snpsim {best}`?",
            term::name(first)
        )
    })
}

fn check_mode(c: Check) -> CheckMode {
    match c {
        Check::Full => CheckMode::Full,
        Check::Incremental => CheckMode::Incremental,
        Check::Off => CheckMode::Off,
    }
}

fn check_name(c: Check) -> &'static str {
    match c {
        Check::Full => "full",
        Check::Incremental => "incremental",
        Check::Off => "off",
    }
}

/// `--set` and `--seed` as (KEY, VALUE) overrides.
fn overrides(opts: &ScenarioOpts) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (i, s) in opts.set.iter().enumerate() {
        let Some((k, v)) = split_override(s) else {
            bail!("--set:{}:1: expected KEY=VALUE (for example vm.backing=thp), got {s:?}", i + 1)
        };
        out.push((k.to_string(), v.to_string()));
    }
    if let Some(seed) = opts.seed {
        out.push(("seed".into(), seed.to_string()));
    }
    Ok(out)
}

/// Quote a shell word when it needs it.
fn shell_word(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// One run of a command, with what it takes to reproduce it.
#[derive(Debug)]
pub(crate) struct Job {
    pub run: ScenarioRun,
    pub seed: u64,
    /// The command line that re-runs exactly this run.
    pub repro: String,
}

/// A command line re-running `file` with `overrides` (which include the seed) and `check`.
pub(crate) fn repro_command(file: &str, overrides: &[(String, String)], seed: u64, check: Check) -> String {
    use std::fmt::Write as _;
    let mut cmd = format!("snpsim run {}", shell_word(file));
    for (k, v) in overrides.iter().filter(|(k, _)| k != "seed") {
        let _ = write!(cmd, " --set {}", shell_word(&format!("{k}={v}")));
    }
    let _ = write!(cmd, " --seed {seed} --check {}", check_name(check));
    cmd
}

/// Run one scenario, traced as run `index` when `traced`.
pub(crate) fn run_one(
    s: &Scenario,
    source: &str,
    index: u64,
    check: CheckMode,
    traced: bool,
) -> Result<ScenarioRun> {
    let meta = traced.then(|| TraceMeta::for_scenario(s, source, index));
    let mut r = run_scenario_traced(s, check, meta.as_ref())
        .with_context(|| format!("{source}: cannot build the machine"))?;
    source.clone_into(&mut r.source);
    r.run_index = index;
    Ok(r)
}

/// Run the arguments' scenarios; `Ok(false)` when an expectation or invariant failed.
fn run(args: &RunArgs) -> Result<bool> {
    let check = check_mode(args.scenario.check);
    let overrides = overrides(&args.scenario)?;
    if args.paths.is_empty() && !overrides.is_empty() {
        bail!("--set and --seed apply to scenario files; the embedded suite takes none");
    }
    let threads = jobs(args.jobs)?;
    let files = if args.paths.is_empty() { Vec::new() } else { input::scenario_files(&args.paths)? };
    if !args.paths.is_empty() && files.is_empty() {
        bail!("no scenario files (*.toml) found");
    }
    let inputs: Vec<(&str, &Path)> = files.iter().map(|f| ("the scenario", f.as_path())).collect();
    let plan = args.output.plan(&inputs)?;
    let traced = args.output.traced();
    let (jobs, debate) = if args.paths.is_empty() {
        let (jobs, d) = run_debate(check, args.scenario.check, traced, threads, args.output.quiet)?;
        (jobs, Some(d))
    } else {
        let ov: Vec<(&str, &str)> = overrides.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        // Parse everything before running anything: bad input must not produce partial results.
        let mut scenarios = Vec::new();
        for f in &files {
            let bytes = input::read(f, "the scenario", input::SCENARIO)?;
            scenarios.push(parse_scenario_bytes(&input::display(f), &bytes, &ov)?);
        }
        if args.no_expect {
            for s in &mut scenarios {
                s.expect = snpsim_scenario::Expectations::default();
            }
        }
        for s in &scenarios {
            check_budget(s, args.scenario.memory_budget, traced)?;
        }
        let progress = progress::Progress::new(files.len() as u64, "runs", args.output.quiet);
        let runs = in_order(threads, files.len(), |i| {
            let source = input::display(&files[i]);
            // The bar names what is running: one file only when one runs at a time.
            if threads == 1 {
                progress.set_message(term::name(&source).into_owned());
            }
            let r = run_one(&scenarios[i], &source, i as u64, check, traced);
            progress.inc();
            r
        })?;
        let mut jobs = Vec::new();
        for ((f, s), mut r) in files.iter().zip(&scenarios).zip(runs) {
            let source = input::display(f);
            r.name = format!("{} ({source})", s.name);
            jobs.push(Job {
                run: r,
                seed: s.seed,
                repro: repro_command(&source, &overrides, s.seed, args.scenario.check),
            });
        }
        (jobs, None)
    };
    let runs: Vec<&ScenarioRun> = jobs.iter().map(|j| &j.run).collect();
    let stdout = if args.output.json {
        format!("{}\n", serde_json::to_string_pretty(&table::json(&runs))?)
    } else if args.output.csv {
        table::csv(&runs)
    } else {
        match &debate {
            Some(d) => debate_text(d, &runs, args.details),
            None => table::render(&runs, true),
        }
    };
    let verdicts = debate.as_ref().map(verdicts_json);
    emit(jobs, &args.output, &plan, table::json, verdicts.as_ref(), &stdout)
}

/// `run(i)` for `i` in `0..n`, `threads` at a time; the results in that order, and if runs fail,
/// the error of the first in that order (every run ends before the errors are looked at): the
/// embedded suite's runs, the scenario files of `run` and the configurations of `compare`.
pub(crate) fn in_order<T: Send>(
    threads: usize,
    n: usize,
    run: impl Fn(usize) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    use rayon::prelude::*;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("cannot start the worker threads")?;
    let all: Vec<Result<T>> = pool.install(|| (0..n).into_par_iter().map(&run).collect());
    all.into_iter().collect()
}

/// The embedded suite, run as [`snpsim_debate::debate::run_debate`] does (`jobs` runs at a time,
/// the results in the suite's order), each run traced if asked.
fn run_debate(
    check: CheckMode,
    c: Check,
    traced: bool,
    jobs: usize,
    quiet: bool,
) -> Result<(Vec<Job>, Debate)> {
    let bug = "the embedded debate suite failed to run (a bug in snpsim)";
    let entries = suite().context(bug)?;
    let progress = progress::Progress::new(entries.len() as u64, "runs", quiet);
    let runs = in_order(jobs, entries.len(), |i| {
        let r = run_one(&entries[i].scenario, &entries[i].source, i as u64, check, traced);
        progress.inc();
        r
    })
    .context(bug)?;
    let mut jobs = Vec::new();
    let mut untraced = Vec::new();
    for (e, mut r) in entries.iter().zip(runs) {
        let trace = r.result.trace.take();
        untraced.push(r.clone());
        r.result.trace = trace;
        let repro = match e.part {
            Part::Claim => repro_command(&e.source, &[], e.scenario.seed, c),
            Part::Matrix | Part::Workload => format!("snpsim run --check {}", check_name(c)),
        };
        jobs.push(Job { run: r, seed: e.scenario.seed, repro });
    }
    Ok((jobs, Debate::from_runs(&entries, untraced)))
}

/// The debate's verdicts as `verdicts.json` holds them: one object per claim.
fn verdicts_json(d: &Debate) -> Value {
    Value::Array(
        d.verdicts()
            .into_iter()
            .map(|v| {
                serde_json::json!({
                    "headline": v.headline,
                    "claim": v.claim,
                    "settings": v.settings,
                    "supported": v.supported(),
                    "status": v.status.name(),
                    "falsifier": v.falsifier,
                    "by_construction": v.by_construction,
                    "evidence": v.evidence
                })
            })
            .collect(),
    )
}

/// Write the output files, print `stdout`, report failures; `Ok(false)` if any run failed.
/// With `--out DIR`, `verdicts` (the default run's) go to `DIR/verdicts.json`, and the report of
/// the results to `DIR/report.html`.
pub(crate) fn emit(
    mut jobs: Vec<Job>,
    output: &OutputOpts,
    plan: &Plan,
    results_json: impl Fn(&[&ScenarioRun]) -> Value,
    verdicts: Option<&Value>,
    stdout: &str,
) -> Result<bool> {
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut trace_text = Vec::new();
    if output.traced() {
        // The first run's trace is moved, not copied: a traced run's peak memory is its trace
        // once (what the memory budget counts), not twice.
        for j in &mut jobs {
            let t = j.run.result.trace.take().unwrap_or_default();
            if trace_text.is_empty() { trace_text = t } else { trace_text.extend_from_slice(&t) }
        }
    }
    // The Chrome document, built once if any destination wants it.
    let mut chrome = if output.traced() && output.format() == TraceFormat::Chrome {
        let text = String::from_utf8_lossy(&trace_text);
        // Each run's NPT coverage samples, by its number in the trace, for the counter track.
        let by_run: std::collections::BTreeMap<u64, &ScenarioRun> =
            jobs.iter().map(|j| (j.run.run_index, &j.run)).collect();
        let coverage = |run: u64| {
            by_run.get(&run).map(|r| snpsim_trace::chrome::CoverageSamples {
                pages: &r.result.coverage_series,
                t_ns: &r.result.coverage_time_ns,
                guest_pages: r.result.guest_pages,
            })
        };
        snpsim_trace::chrome::from_jsonl_with_coverage(&text, &coverage)
            .map_err(anyhow::Error::msg)?
            .into_bytes()
    } else {
        Vec::new()
    };
    // `--trace FILE` takes its copy last; `--out` copies only what `--trace` also needs.
    let trace_wants = output.trace.as_ref().map(|_| output.format());
    let mut replay_path = None;
    if let Some(dir) = &plan.out {
        let runs: Vec<&ScenarioRun> = jobs.iter().map(|j| &j.run).collect();
        let doc = results_json(&runs);
        let mut results = serde_json::to_vec_pretty(&doc)?;
        results.push(b'\n');
        files.push(("results.json".into(), results));
        let page = report::html(&report::Report::from_results(&doc, verdicts)?);
        files.push(("report.html".into(), page.into_bytes()));
        if let Some(v) = verdicts {
            let mut bytes = serde_json::to_vec_pretty(v)?;
            bytes.push(b'\n');
            files.push(("verdicts.json".into(), bytes));
        }
        if output.out_traces() {
            if output.format() == TraceFormat::Chrome {
                let doc = if trace_wants == Some(TraceFormat::Chrome) {
                    chrome.clone()
                } else {
                    std::mem::take(&mut chrome)
                };
                files.push(("trace.json".into(), doc));
            }
            let jsonl = if trace_wants == Some(TraceFormat::Jsonl) {
                trace_text.clone()
            } else {
                std::mem::take(&mut trace_text)
            };
            files.push(("trace.jsonl".into(), jsonl));
            replay_path = Some(dir.shown.join("trace.jsonl"));
        }
        dir.write(files)?;
    }
    if let Some(t) = &plan.trace {
        match output.format() {
            TraceFormat::Jsonl => {
                t.write(&trace_text)?;
                if !t.is_stdout() {
                    replay_path = Some(t.shown.clone());
                }
            }
            TraceFormat::Chrome => t.write(&chrome)?,
        }
    }
    // `--trace -` has standard output to itself.
    if !plan.trace.as_ref().is_some_and(OutFile::is_stdout) {
        if output.json { stdout::bytes(stdout.as_bytes())? } else { stdout::text(stdout)? }
    }
    let mut passed = true;
    for j in jobs.iter().filter(|j| !j.run.passed()) {
        passed = false;
        let r = &j.run;
        term::eprint(&format!(
            "FAILED {} [{} / {} / {}]:",
            term::name(&r.name),
            r.policy,
            r.backing,
            r.granularity
        ));
        for f in &r.failures {
            term::eprint(&format!("  {}", term::name(f)));
        }
        term::eprint(&format!("  seed {}; reproduce with: {}", j.seed, j.repro));
        if let Some(p) = &replay_path {
            term::eprint(&format!(
                "  or replay the recorded trace: snpsim replay {}",
                shell_word(&p.display().to_string())
            ));
        }
    }
    Ok(passed)
}

/// The default run's text: the first screen (who wins, the verdicts in a line each, a summary
/// line) and, with `--details`, the tables of every run and each verdict's evidence after it.
fn debate_text(d: &Debate, all: &[&ScenarioRun], details: bool) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    s.push_str("snpsim: the 2021 SNP debate (\"x86/fault: handle the RMP fault for user address\")\n");
    s.push_str(
        "Each cell: a 1 GiB guest accepts 64 MiB, shares a driver buffer, lets the VMM and vhost write it,\n",
    );
    let _ = writeln!(
        s,
        "and reads its data back (npt_level_follows_rmp at the policy's default: {}).",
        matrix::follows_defaults()
    );
    let views: Vec<matrix::RunView<'_>> = d.matrix.iter().map(run_view).collect();
    s.push_str(&matrix::render(&views));
    let verdicts = d.verdicts();
    s.push_str("Verdicts (each states what would have contradicted it: --details):\n");
    for v in &verdicts {
        let _ = writeln!(s, "  [{}] {}", v.status.name(), v.headline);
    }
    s.push('\n');
    s.push_str(&summary_line(all, &verdicts));
    if !details {
        s.push_str(
            "Every run's numbers: snpsim run --details; charts: snpsim run --out DIR (report.html).\n",
        );
        return s;
    }
    let matrix: Vec<&ScenarioRun> = d.matrix.iter().collect();
    let claims: Vec<&ScenarioRun> = d.claims.iter().collect();
    s.push_str("\nThe matrix at both NPT-level settings:\n");
    s.push_str(&table::render(&matrix, false));
    s.push_str("\nClaim scenarios (examples/debate, examples/upstream-2026):\n");
    s.push_str(&table::render(&claims, true));
    let workloads: Vec<&ScenarioRun> = d.workloads.iter().collect();
    let guests: Vec<String> = d.workloads.iter().map(|r| r.preset.to_string()).collect();
    let _ = writeln!(s, "\nRealistic workload: {}", snpsim_debate::debate::WORKLOAD_SUMMARY);
    s.push_str(&table::render_workloads(&workloads, &guests));
    s.push_str("\nVerdicts:\n");
    for v in &verdicts {
        let _ = writeln!(s, "  [{}] {}", v.status.name(), v.claim);
        let _ = writeln!(s, "        under: {}", v.settings);
        let _ = writeln!(s, "        {}", v.evidence);
        let _ = writeln!(s, "        would fail if: {}", v.falsifier);
        if let Some(part) = v.by_construction {
            let _ = writeln!(s, "        by construction: {part}");
        }
    }
    s
}

/// What a matrix cell reads of a run.
fn run_view(r: &ScenarioRun) -> matrix::RunView<'_> {
    matrix::RunView {
        policy: r.policy,
        backing: r.backing,
        granularity: r.granularity,
        follows: r.npt_level_follows_rmp,
        outcome: r.result.outcome.name(),
        reason: r.result.reason.map(snpsim_engine::outcome::Reason::name),
        cause: r.result.cause().map(snpsim_engine::outcome::Cause::name),
        metric: Box::new(|k| snpsim_scenario::run::metric_value(&r.result.metrics, k).unwrap_or(0.0)),
    }
}

/// Two lines in the style of `cargo test`: the runs by outcome; the verdicts supported and the
/// checks that failed (wrongly allowed accesses, invariant violations, runs that failed their
/// expectations).
fn summary_line(runs: &[&ScenarioRun], verdicts: &[snpsim_debate::Verdict]) -> String {
    let mut by_outcome = std::collections::BTreeMap::<&str, usize>::new();
    for r in runs {
        *by_outcome.entry(r.result.outcome.name()).or_default() += 1;
    }
    // Completed first, then the others by name.
    let completed = by_outcome.remove("completed").unwrap_or(0);
    let mut outcomes = vec![format!("{completed} completed")];
    outcomes.extend(by_outcome.iter().map(|(o, n)| format!("{n} {o}")));
    let supported = verdicts.iter().filter(|v| v.supported()).count();
    let wrongly: u64 = runs.iter().map(|r| r.result.metrics.false_negatives).sum();
    let violations: u64 = runs.iter().map(|r| r.result.metrics.invariant_violations).sum();
    let failed = runs.iter().filter(|r| !r.passed()).count();
    format!(
        "{} runs: {}\n{supported} of {} verdicts supported; {wrongly} accesses wrongly allowed, \
         {violations} invariant violations, {failed} runs failed their checks\n",
        runs.len(),
        outcomes.join(", "),
        verdicts.len()
    )
}

/// `snpsim replay TRACE`.
fn replay(args: &ReplayArgs) -> Result<bool> {
    let name = input::display(&args.trace);
    let bytes = input::read(&args.trace, "the trace", input::trace_limit(args.memory_budget))?;
    let Ok(text) = String::from_utf8(bytes) else { bail!("{name}:1:1: malformed trace: not UTF-8 text") };
    // A panic inside the engine is caught and reported as a malformed trace; keep its default
    // message off the terminal.
    std::panic::set_hook(Box::new(|_| {}));
    let result = snpsim_trace::replay::replay_with_budget(&text, args.memory_budget);
    let _ = std::panic::take_hook();
    match result {
        Ok(summary) => {
            use std::fmt::Write as _;
            let mut s = format!(
                "{name}: replayed {} run(s), {} step(s), {} line(s): every event and state hash matches\n",
                summary.runs, summary.steps, summary.lines
            );
            for (scenario, hash) in &summary.hashes {
                let _ = writeln!(s, "  {hash}  {}", term::name(scenario));
            }
            stdout::text(&s)?;
            Ok(true)
        }
        Err(e) if e.is_divergence() => {
            term::eprint(&format!("snpsim: {name}:{e}"));
            Ok(false)
        }
        Err(e) => bail!("{name}:{e}"),
    }
}
