//! `snpsim compare`: one scenario under a matrix of policies, backings and guests, run in parallel
//! (rayon, one task per independent run), reported in a stable order.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use serde_json::Value;
use snpsim_scenario::Named;
use snpsim_scenario::run::ScenarioRun;
use snpsim_scenario::{Backing, Granularity, Policy, Preset, Scenario, parse_scenario_with_overrides};

use crate::{Job, OutputOpts, ScenarioOpts, check_mode, emit, overrides, repro_command, run_one, table};

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The scenario file (`-`: standard input).
    scenario: PathBuf,
    /// Policies (comma-separated, or `all`); default: the scenario's.
    #[arg(long, value_name = "LIST")]
    policies: Option<String>,
    /// Backings (comma-separated, or `all`); default: the scenario's.
    #[arg(long, value_name = "LIST")]
    backings: Option<String>,
    /// Guests: presets or PSC granularities (comma-separated, or `all` = every preset); default:
    /// the scenario's guest.
    #[arg(long, value_name = "LIST")]
    guests: Option<String>,
    /// Runs at a time (default: one per CPU; at most 4 per CPU); results do not depend on it.
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
    #[command(flatten)]
    scenario_opts: ScenarioOpts,
    #[command(flatten)]
    output: OutputOpts,
}

/// One column of the guest axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GuestChoice {
    /// A preset replacing the scenario's whole `[guest]`.
    Preset(Preset),
    /// Only `guest.psc_granularity` changes.
    Granularity(Granularity),
}

impl GuestChoice {
    fn name(self) -> &'static str {
        match self {
            GuestChoice::Preset(p) => p.name(),
            GuestChoice::Granularity(g) => g.name(),
        }
    }

    /// The overrides that select this guest: a preset sets every guest field to its own value, so
    /// explicit fields of the file do not leak into it.
    fn overrides(self) -> Vec<(String, String)> {
        match self {
            GuestChoice::Granularity(g) => vec![("guest.psc_granularity".into(), g.name().into())],
            GuestChoice::Preset(p) => {
                let v = p.params();
                vec![
                    ("guest.preset".into(), p.name().into()),
                    ("guest.psc_granularity".into(), v.psc_granularity.name().into()),
                    ("guest.psc_protocol".into(), v.psc_protocol.name().into()),
                    ("guest.ghcb_entries".into(), v.ghcb_entries.to_string()),
                    ("guest.accept".into(), v.accept.name().into()),
                    ("guest.validation_tracking".into(), v.validation_tracking.to_string()),
                    ("guest.recoalesce".into(), v.recoalesce.name().into()),
                ]
            }
        }
    }
}

/// A parsed list option: the values and whether they came from `all`.
fn parse_list<T: Copy + PartialEq>(
    flag: &str,
    arg: Option<&str>,
    all: &[T],
    accepted: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Option<(Vec<T>, bool)>> {
    let Some(arg) = arg else { return Ok(None) };
    if arg.trim() == "all" {
        return Ok(Some((all.to_vec(), true)));
    }
    let mut out = Vec::new();
    for (i, item) in arg.split(',').enumerate() {
        let item = item.trim();
        let Some(v) = parse(item) else {
            bail!(
                "--{flag}: item {} is {item:?}; accepted: all, or a comma-separated list of {accepted}",
                i + 1
            );
        };
        if out.contains(&v) {
            bail!("--{flag}: {item:?} is listed twice");
        }
        out.push(v);
    }
    Ok(Some((out, false)))
}

struct Combo {
    scenario: Scenario,
    guest: String,
    overrides: Vec<(String, String)>,
}

/// `snpsim compare`; `Ok(false)` when an invariant failed.
pub fn compare(args: &CompareArgs) -> Result<bool> {
    let file = crate::input::display(&args.scenario);
    let user = overrides(&args.scenario_opts)?;
    let check = check_mode(args.scenario_opts.check);
    let threads = crate::jobs(args.jobs)?;
    let policies = parse_list(
        "policies",
        args.policies.as_deref(),
        snpsim_scenario::policies(),
        &snpsim_scenario::accepted_policies(),
        snpsim_kvm::policy::by_name,
    )?;
    let backings =
        parse_list("backings", args.backings.as_deref(), Backing::all(), &Backing::accepted(), |s| {
            s.parse().ok()
        })?;
    let all_presets: Vec<GuestChoice> = Preset::all().iter().map(|&p| GuestChoice::Preset(p)).collect();
    let guests = parse_list(
        "guests",
        args.guests.as_deref(),
        &all_presets,
        &format!("{} (presets) or {} (granularities)", Preset::accepted(), Granularity::accepted()),
        |s| {
            s.parse::<Preset>()
                .map(GuestChoice::Preset)
                .or_else(|_| s.parse::<Granularity>().map(GuestChoice::Granularity))
                .ok()
        },
    )?;
    let plan = args.output.plan(&[("the scenario", &args.scenario)])?;
    let text = read_text(&args.scenario, &file)?;
    let base = parse(&file, &text, &user)?;
    let (policies, all_p) = policies.unwrap_or((vec![base.vm.policy], false));
    let (backings, all_b) = backings.unwrap_or((vec![base.vm.backing], false));
    let guests: Vec<Option<GuestChoice>> = match guests {
        Some((g, _)) => g.into_iter().map(Some).collect(),
        None => vec![None],
    };
    let all_g = args.guests.as_deref().is_some_and(|g| g.trim() == "all");
    let axes = Axes { policies, backings, guests, any_all: all_p || all_b || all_g };
    let (combos, notes) = combinations(&file, &text, &user, &base, &axes)?;
    if combos.is_empty() {
        bail!(
            "{file}: no combination of the given policies, backings and guests can run:\n  {}\n\
             (give --backings of the policies' era as well: `snpsim list` names each backing's era)",
            notes.join("\n  ")
        );
    }
    let traced = args.output.traced();
    for c in &combos {
        crate::check_budget(&c.scenario, args.scenario_opts.memory_budget, traced)?;
    }
    let progress = crate::progress::Progress::new(combos.len() as u64, "runs", args.output.quiet);
    let runs = crate::in_order(threads, combos.len(), |i| {
        let r = run_one(&combos[i].scenario, &file, i as u64, check, traced);
        progress.inc();
        r
    })?;
    let mut jobs = Vec::new();
    for (c, mut r) in combos.iter().zip(runs) {
        // [expect] describes one configuration; a comparison checks only the invariants.
        r.failures.retain(|f| f.starts_with("invariant violated"));
        jobs.push(Job {
            run: r,
            seed: c.scenario.seed,
            repro: repro_command(&file, &c.overrides, c.scenario.seed, args.scenario_opts.check),
        });
    }
    let labels: Vec<String> = combos.iter().map(|c| c.guest.clone()).collect();
    let with_guests = |runs: &[&ScenarioRun]| -> Value {
        let mut v = table::json(runs);
        if let Value::Array(items) = &mut v {
            for (item, g) in items.iter_mut().zip(&labels) {
                if let Value::Object(o) = item {
                    o.insert("guest".into(), g.clone().into());
                }
            }
        }
        v
    };
    let refs: Vec<&ScenarioRun> = jobs.iter().map(|j| &j.run).collect();
    let stdout = if args.output.json {
        format!("{}\n", serde_json::to_string_pretty(&with_guests(&refs))?)
    } else if args.output.csv {
        table::csv_with(&refs, Some(&labels))
    } else {
        format!(
            "snpsim compare: {} ({file}), {} runs\n\n{}",
            base.name,
            refs.len(),
            table::render_with(&refs, false, "guest", Some(&labels))
        )
    };
    drop(refs);
    for n in &notes {
        crate::term::eprint(&format!("note: {n}"));
    }
    emit(jobs, &args.output, &plan, with_guests, None, &stdout)
}

/// The scenario's text, read within the scenario size limit; text that is not UTF-8 is an error
/// at the line and column of its first bad byte.
fn read_text(path: &std::path::Path, file: &str) -> Result<String> {
    let bytes = crate::input::read(path, "the scenario", crate::input::SCENARIO)?;
    String::from_utf8(bytes).map_err(|e| {
        let located = snpsim_scenario::parse_scenario_bytes(file, e.as_bytes(), &[]).err();
        located.map_or_else(|| anyhow::anyhow!("{file}: the file is not UTF-8 text"), Into::into)
    })
}

/// The axes of a comparison.
struct Axes {
    policies: Vec<Policy>,
    backings: Vec<Backing>,
    guests: Vec<Option<GuestChoice>>,
    /// Some axis was given as `all`: combinations that do not parse are skipped, not errors.
    any_all: bool,
}

/// Every runnable combination in a stable order (policy, then backing, then guest, each in the
/// order given), and a note for each one skipped.
fn combinations(
    file: &str,
    text: &str,
    user: &[(String, String)],
    base: &Scenario,
    axes: &Axes,
) -> Result<(Vec<Combo>, Vec<String>)> {
    let mut combos = Vec::new();
    let mut notes = Vec::new();
    for &p in &axes.policies {
        for &b in &axes.backings {
            if p.era() != b.era() {
                notes.push(format!(
                    "skipped {} on {}: the policy is of the {} era, the backing of the {} era",
                    p,
                    b,
                    p.era(),
                    b.era()
                ));
                continue;
            }
            for &g in &axes.guests {
                let mut extra = vec![
                    ("vm.policy".to_string(), p.name().to_string()),
                    ("vm.backing".to_string(), b.name().to_string()),
                ];
                if let Some(g) = g {
                    extra.extend(g.overrides());
                }
                let combo_ov: Vec<(String, String)> = user.iter().chain(&extra).cloned().collect();
                match parse(file, text, &combo_ov) {
                    Ok(s) => combos.push(Combo {
                        scenario: s,
                        guest: g.map_or_else(
                            || base.guest.resolved().psc_granularity.name().to_string(),
                            |g| g.name().to_string(),
                        ),
                        overrides: combo_ov,
                    }),
                    Err(e) if axes.any_all => {
                        notes.push(format!(
                            "skipped {p} on {b}{}: {e:#}",
                            g.map(|g| format!(" with guest {}", g.name())).unwrap_or_default()
                        ));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok((combos, notes))
}

fn parse(file: &str, text: &str, ov: &[(String, String)]) -> Result<Scenario> {
    let refs: Vec<(&str, &str)> = ov.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Ok(parse_scenario_with_overrides(file, text, &refs)?)
}
