//! Checking many configurations: the engine behind `snpsim check`.

use std::time::{Duration, Instant};

use snpsim_defs::PageSize;
use snpsim_guest::Granularity;
use snpsim_host::VmaBacking;
use snpsim_hw::Mutant;
use snpsim_kvm::{Era, Policy};
use snpsim_sim::engine::{Action, MemoryBacking};

use crate::{CheckSetup, SnpModel};

/// Every backing of an era, as the checker runs them.
pub fn backings(era: Era) -> Vec<(&'static str, MemoryBacking)> {
    match era {
        Era::Legacy => vec![
            ("anon-4k", MemoryBacking::Vma(VmaBacking::Anon4k)),
            ("thp", MemoryBacking::Vma(VmaBacking::Thp)),
            ("hugetlbfs-2m", MemoryBacking::Vma(VmaBacking::Hugetlbfs2m)),
            ("hugetlbfs-1g", MemoryBacking::Vma(VmaBacking::Hugetlbfs1g)),
        ],
        Era::Gmem => {
            [("gmem-4k", PageSize::Size4K), ("gmem-2m", PageSize::Size2M), ("gmem-1g", PageSize::Size1G)]
                .into_iter()
                .map(|(n, folio)| (n, MemoryBacking::Gmem { folio, shared: VmaBacking::Thp }))
                .collect()
        }
    }
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
    /// The first `always` property that failed and its shortest counterexample.
    pub violation: Option<(String, Vec<Action>)>,
    /// The `sometimes` properties reached.
    pub reached: Vec<&'static str>,
}

/// A property the checker found: its name, the path to it, whether it is an `always` (violated)
/// rather than a `sometimes` (reached).
type Discovery = (&'static str, Vec<Action>, bool);

fn explore(setup: CheckSetup) -> (usize, usize, Vec<Discovery>) {
    let e = crate::explore(&SnpModel::new(setup));
    let found = e.discoveries.into_iter().map(|d| (d.property, d.actions, d.always)).collect();
    (e.unique_states, e.max_depth, found)
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
    let (states, max_depth, found) = explore(setup(depth));
    let reached = found.iter().filter(|f| !f.2).map(|f| f.0).collect();
    let violation = found.iter().any(|f| f.2).then(|| {
        (1..=depth)
            .find_map(|d| explore(setup(d)).2.into_iter().find(|f| f.2))
            .map(|(name, actions, _)| (name.to_string(), actions))
    });
    ConfigReport {
        policy: policy.name(),
        backing: backing.0,
        granularity,
        npt_level_follows_rmp: follows.unwrap_or(policy.npt_level_follows_rmp()),
        vcpus,
        states,
        max_depth,
        elapsed: t.elapsed(),
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
        for b in backings(p.era()) {
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
