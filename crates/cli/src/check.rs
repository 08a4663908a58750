//! `snpsim check`: exhaustive model checking on the tiny geometry.

use std::path::PathBuf;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context as _, Result, bail};
use clap::Args;
use rayon::prelude::*;
use snpsim_check::run::{ConfigReport, backings, backings_of, check_config, follows_settings};
use snpsim_check::{CheckSetup, initial_simulation};
use snpsim_hw::Mutant;
use snpsim_trace::TraceMeta;

use crate::output::write_file;

/// `snpsim check` options.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Only this policy (default: every policy).
    #[arg(long)]
    policy: Option<String>,
    /// Only this backing (default: every backing of each policy's era).
    #[arg(long)]
    backing: Option<String>,
    /// Most actions on a path, in both models: operations of the one-vCPU model (default 8; a
    /// path of N actions visits N + 1 states: the table's `depth` column counts states) and ticks
    /// of the race model (default 12, unless --race-depth says otherwise).
    #[arg(long)]
    depth: Option<u32>,
    /// Most actions on a path of the two-vCPU race model, where every action is one tick of one
    /// vCPU (an operation takes several); overrides --depth there. 12 reaches both PSMASH races.
    #[arg(long)]
    race_depth: Option<u32>,
    /// 1: one vCPU, every operation to completion (to --depth); 2: two interleaved vCPUs racing
    /// in one 2M region (to --race-depth). Default: both.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=2))]
    vcpus: Option<u32>,
    /// Plant a bug from the mutant catalogue (docs/mutants.md) to see the checker catch it.
    #[arg(long)]
    mutant: Option<String>,
    /// Directory for counterexample traces (default: the current directory).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Configurations checked at a time (default: one per CPU; at most 4 per CPU); the results
    /// and their order do not depend on it.
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    /// Stop at the first configuration, in table order, with a violation: the table ends there.
    #[arg(long)]
    fail_fast: bool,
    /// No progress bar (it is drawn only when standard error is a terminal anyway).
    #[arg(long, short = 'q')]
    quiet: bool,
}

impl CheckArgs {
    /// The one-vCPU model's bound: --depth, else 8.
    fn depth(&self) -> u32 {
        self.depth.unwrap_or(8)
    }

    /// The race model's bound: --race-depth, else --depth, else 12.
    fn race_depth(&self) -> u32 {
        self.race_depth.or(self.depth).unwrap_or(12)
    }
}

fn validate(args: &CheckArgs) -> Result<Option<Mutant>> {
    let policies: Vec<&str> = snpsim_kvm::policy::ALL.iter().map(|p| p.name()).collect();
    if let Some(p) = &args.policy
        && !policies.contains(&p.as_str())
    {
        bail!("--policy {p}: unknown policy; accepted: {}", policies.join(", "));
    }
    let all_backings: Vec<&str> = [snpsim_kvm::Era::Legacy, snpsim_kvm::Era::Gmem]
        .into_iter()
        .flat_map(|e| backings(e).into_iter().map(|(n, _)| n))
        .collect();
    if let Some(b) = &args.backing
        && !all_backings.contains(&b.as_str())
    {
        bail!("--backing {b}: unknown backing; accepted: {}", all_backings.join(", "));
    }
    if let Some(d) = args.depth
        && (d == 0 || d > 16)
    {
        bail!("--depth {d}: out of range; accepted: 1 to 16");
    }
    if let Some(d) = args.race_depth
        && (d == 0 || d > 24)
    {
        bail!("--race-depth {d}: out of range; accepted: 1 to 24");
    }
    match &args.mutant {
        None => Ok(None),
        Some(m) => {
            let mutant = Mutant::from_name(m).ok_or_else(|| {
                let names: Vec<&str> = Mutant::ALL.iter().map(|m| m.name()).collect();
                anyhow::anyhow!("--mutant {m}: unknown mutant; accepted: {}", names.join(", "))
            })?;
            if !snpsim_hw::mutant::HOOKS {
                bail!("--mutant {m}: this snpsim was built without the mutant hooks (the `mutants` feature)");
            }
            Ok(Some(mutant))
        }
    }
}

/// The trace of a counterexample: the actions re-run with tracing on, replayable by `snpsim replay`.
/// The report names its policy and backing; a name the checker does not know, or a configuration
/// that cannot be built again, is an error rather than a trace of some other configuration (or an
/// empty file).
fn counterexample_trace(
    r: &ConfigReport,
    actions: &[snpsim_engine::engine::Action],
    mutant: Option<Mutant>,
) -> Result<Vec<u8>> {
    let Some(policy) = snpsim_kvm::policy::by_name(r.policy) else {
        bail!("counterexample of an unknown policy {:?}", r.policy);
    };
    let Some(backing) = backings_of(policy).into_iter().find(|(n, _)| *n == r.backing).map(|(_, b)| b) else {
        bail!("counterexample of {} on an unknown backing {:?}", r.policy, r.backing);
    };
    let meta = TraceMeta {
        run: 0,
        scenario: format!("counterexample: {} on {}", r.policy, r.backing),
        source: "<snpsim check>".into(),
        seed: 0,
        mutant,
    };
    let setup = CheckSetup {
        policy,
        backing,
        granularity: r.granularity,
        depth: 0,
        mutant,
        vcpus: r.vcpus,
        npt_level_follows_rmp: Some(r.npt_level_follows_rmp),
    };
    let Some(mut sim) = initial_simulation(&setup, Some(&meta)) else {
        bail!("counterexample of {} on {}: the configuration could not be built again", r.policy, r.backing);
    };
    let mut bytes = sim.take_trace();
    for a in actions {
        sim.step(a);
        bytes.extend(sim.take_trace());
    }
    let result = sim.finish();
    bytes.extend(result.trace.unwrap_or_default());
    Ok(bytes)
}

/// The configurations of `snpsim_check::run::check_all`, `--jobs` at a time, with a progress bar,
/// in table order. With `--fail-fast` a configuration after one found violated is not started,
/// and the table ends at the first violated configuration in table order (every one before it
/// has run), so what is printed does not depend on the number of jobs.
fn check_each(args: &CheckArgs, mutant: Option<Mutant>) -> Result<Vec<ConfigReport>> {
    let mut configs = Vec::new();
    for p in snpsim_kvm::policy::ALL {
        if args.policy.as_deref().is_some_and(|want| want != p.name()) {
            continue;
        }
        for b in backings_of(p) {
            if args.backing.as_deref().is_some_and(|want| want != b.0) {
                continue;
            }
            for vcpus in args.vcpus.map_or(vec![1, 2], |v| vec![v]) {
                for f in follows_settings(p) {
                    for g in [snpsim_guest::Granularity::K4, snpsim_guest::Granularity::M2] {
                        configs.push((p, b, g, f, vcpus));
                    }
                }
            }
        }
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(crate::jobs(args.jobs)?)
        .build()
        .context("cannot start the worker threads")?;
    let progress = crate::progress::Progress::new(configs.len() as u64, "configurations", args.quiet);
    let first_violated = AtomicUsize::new(usize::MAX);
    let reports: Vec<Option<ConfigReport>> = pool.install(|| {
        configs
            .par_iter()
            .with_max_len(1)
            .enumerate()
            .map(|(i, &(p, b, g, f, vcpus))| {
                if args.fail_fast && i > first_violated.load(Ordering::Relaxed) {
                    return None;
                }
                progress.set_message(format!("{} on {}", p.name(), b.0));
                let depth = if vcpus > 1 { args.race_depth() } else { args.depth() };
                let r = check_config(p, b, g, f, depth, mutant, vcpus);
                if r.violation.is_some() {
                    first_violated.fetch_min(i, Ordering::Relaxed);
                }
                progress.inc();
                Some(r)
            })
            .collect()
    });
    let end = if args.fail_fast { first_violated.into_inner().saturating_add(1) } else { usize::MAX };
    Ok(reports.into_iter().take(end).flatten().collect())
}

/// This process's peak resident memory (`VmHWM` of `/proc/self/status`) in bytes, if readable.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.split_whitespace().next()?;
    kb.parse::<u64>().ok().map(|kb| kb * 1024)
}

/// Run the checker; `Ok(false)` when a property failed.
pub fn check(args: &CheckArgs) -> Result<bool> {
    let mutant = validate(args)?;
    if let Some(d) = &args.out
        && d.exists()
        && !d.is_dir()
    {
        bail!("--out {}: exists and is not a directory", d.display());
    }
    let started = Instant::now();
    let reports = check_each(args, mutant)?;
    let wall = started.elapsed();
    if reports.is_empty() {
        bail!("--policy and --backing select no configuration (a policy runs only with backings of its era)");
    }
    // KVM's GHCB page-state-change decoder on the buffers no modelled guest sends (an unaligned 2M
    // entry, a partly done entry): the table of `snp_begin_psc`'s rules.
    let conformance = snpsim_check::mutants::psc_conformance(mutant);
    if conformance.is_empty() {
        crate::stdout::text("PSC protocol conformance: ok\n")?;
    } else {
        crate::stdout::text("PSC protocol conformance: VIOLATED\n")?;
        for f in &conformance {
            crate::term::eprint(&format!("PSC protocol conformance: {f}"));
        }
    }
    crate::stdout::text(&format!(
        "{:<20} {:<13} {:<4} {:<7} {:>5} {:>8} {:>5} {:>8} {:>7}  result\n",
        "policy", "backing", "gran", "npt≤rmp", "vcpus", "states", "depth", "time", "memory"
    ))?;
    let mut ok = conformance.is_empty();
    for r in &reports {
        let gran = match r.granularity {
            snpsim_guest::Granularity::K4 => "4k",
            snpsim_guest::Granularity::M2 => "2m",
        };
        let result = match &r.violation {
            None => format!("ok ({} goals reached)", r.reached.len()),
            Some((p, _)) => format!("VIOLATED: {p}"),
        };
        crate::stdout::text(&format!(
            "{:<20} {:<13} {:<4} {:<7} {:>5} {:>8} {:>5} {:>7.2}s {:>5.0}MB  {result}\n",
            r.policy,
            r.backing,
            gran,
            if r.npt_level_follows_rmp { "yes" } else { "no" },
            r.vcpus,
            r.states,
            r.max_depth,
            r.elapsed.as_secs_f64(),
            r.peak_bytes as f64 / 1e6
        ))?;
    }
    let states: usize = reports.iter().map(|r| r.states).sum();
    let rss = peak_rss().map_or_else(|| "unknown".to_string(), |b| format!("{:.0} MB", b as f64 / 1e6));
    crate::stdout::text(&format!(
        "total: {states} states in {} configurations, {:.1} s wall, peak RSS {rss}\n",
        reports.len(),
        wall.as_secs_f64()
    ))?;
    for r in reports.iter().filter(|r| r.violation.is_some()) {
        ok = false;
        let Some((property, actions)) = &r.violation else { continue };
        crate::term::eprint(&format!(
            "\n{} on {} ({:?} guest, npt_level_follows_rmp = {}): \"{property}\" fails after {} actions:",
            r.policy,
            r.backing,
            r.granularity,
            r.npt_level_follows_rmp,
            actions.len()
        ));
        for (i, a) in actions.iter().enumerate() {
            crate::term::eprint(&format!("  {}. {a:?}", i + 1));
        }
        let dir = args.out.clone().unwrap_or_else(|| PathBuf::from("."));
        if !dir.exists() {
            std::fs::create_dir_all(&dir).map_err(|e| {
                crate::fail::io(format!("--out {}: cannot create the directory", dir.display()), e)
            })?;
        }
        let path = dir.join(
            format!(
                "counterexample-{}-{}-{:?}-{}-{}vcpu.jsonl",
                r.policy,
                r.backing,
                r.granularity,
                if r.npt_level_follows_rmp { "follows" } else { "host-level" },
                r.vcpus
            )
            .to_lowercase(),
        );
        write_file("--out", &path, &counterexample_trace(r, actions, mutant)?)?;
        crate::term::eprint(&format!(
            "  trace: {}  (re-run it: snpsim replay {})",
            path.display(),
            path.display()
        ));
    }
    Ok(ok)
}
