//! Checking many configurations: the engine behind `snpsim check`.

use std::time::{Duration, Instant};

use snpsim_engine::backing::Backing;
use snpsim_engine::engine::{Action, MemoryBacking};
use snpsim_engine::names::Named;
use snpsim_guest::Granularity;
use snpsim_host::VmaBacking;
use snpsim_hw::Mutant;
use snpsim_kvm::{Era, Policy};

use crate::{CheckSetup, SnpModel};

/// Every backing of an era, as the checker runs them.
pub fn backings(era: Era) -> Vec<(&'static str, MemoryBacking)> {
    Backing::of_era(era).map(|b| (b.name(), b.memory(VmaBacking::Thp))).collect()
}

/// Every backing `policy` runs on ([`Backing::of_policy`]), as the checker runs them.
pub fn backings_of(policy: &dyn Policy) -> Vec<(&'static str, MemoryBacking)> {
    Backing::of_policy(policy).map(|b| (b.name(), b.memory(VmaBacking::Thp))).collect()
}

/// What checking one configuration found.
#[derive(Clone, Debug)]
pub struct ConfigReport {
    /// Policy name.
    pub policy: &'static str,
    /// Backing name.
    pub backing: &'static str,
    /// The guest granularity.
    pub granularity: Granularity,
    /// `npt_level_follows_rmp` in force.
    pub npt_level_follows_rmp: bool,
    /// vCPUs (2: the interleaved race model).
    pub vcpus: u32,
    /// Unique states explored.
    pub states: usize,
    /// Deepest path explored.
    pub max_depth: usize,
    /// Wall time (reporting only; never part of a result).
    pub elapsed: Duration,
    /// The most memory the exploration held at once, estimated ([`crate::Exploration::peak_bytes`];
    /// reporting only).
    pub peak_bytes: usize,
    /// The first `always` property that failed and its shortest counterexample.
    pub violation: Option<(String, Vec<Action>)>,
    /// The `sometimes` properties reached.
    pub reached: Vec<&'static str>,
}

fn explore(setup: CheckSetup) -> crate::Exploration {
    crate::explore(&SnpModel::new(setup))
}

/// Check one configuration to `depth` actions. A violation is re-searched with iterative
/// deepening so the counterexample reported is a shortest one.
#[allow(clippy::too_many_arguments)]
pub fn check_config(
    policy: &'static dyn Policy,
    backing: (&'static str, MemoryBacking),
    granularity: Granularity,
    follows: Option<bool>,
    depth: u32,
    mutant: Option<Mutant>,
    vcpus: u32,
) -> ConfigReport {
    let t = Instant::now();
    let setup = |d| CheckSetup {
        policy,
        backing: backing.1,
        granularity,
        depth: d,
        mutant,
        vcpus,
        npt_level_follows_rmp: follows,
    };
    let e = explore(setup(depth));
    let reached = e.discoveries.iter().filter(|d| !d.always).map(|d| d.property).collect();
    let violation = e.discoveries.iter().any(|d| d.always).then(|| {
        (1..=depth)
            .find_map(|d| explore(setup(d)).discoveries.into_iter().find(|f| f.always))
            .map(|d| (d.property.to_string(), d.actions))
    });
    ConfigReport {
        policy: policy.name(),
        backing: backing.0,
        granularity,
        npt_level_follows_rmp: follows.unwrap_or(policy.npt_level_follows_rmp()),
        vcpus,
        states: e.unique_states,
        max_depth: e.max_depth,
        elapsed: t.elapsed(),
        peak_bytes: e.peak_bytes,
        violation: violation.flatten(),
        reached,
    }
}

/// The `npt_level_follows_rmp` settings checked for a policy: both for a legacy policy (the
/// setting is an axis of the debate), the policy's own for gmem (upstream always caps).
pub fn follows_settings(policy: &dyn Policy) -> Vec<Option<bool>> {
    match policy.era() {
        Era::Legacy => vec![Some(false), Some(true)],
        Era::Gmem => vec![None],
    }
}

/// Check every configuration matching the filters (each policy with each backing of its era,
/// guests at 4K and 2M granularity, both NPT-level settings for a legacy policy), with `vcpus`
/// vCPUs.
pub fn check_all(
    policy: Option<&str>,
    backing: Option<&str>,
    depth: u32,
    mutant: Option<Mutant>,
    vcpus: u32,
) -> Vec<ConfigReport> {
    let mut out = Vec::new();
    for p in snpsim_kvm::policy::ALL {
        if policy.is_some_and(|want| want != p.name()) {
            continue;
        }
        for b in backings_of(p) {
            if backing.is_some_and(|want| want != b.0) {
                continue;
            }
            for f in follows_settings(p) {
                for g in [Granularity::K4, Granularity::M2] {
                    out.push(check_config(p, b, g, f, depth, mutant, vcpus));
                }
            }
        }
    }
    out
}
