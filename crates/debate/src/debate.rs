//! The embedded default run: the 2021 debate as a matrix of policy × backing × guest granularity
//! on one scripted workload, the dedicated claim scenarios of `examples/debate/`, a realistic
//! generated workload (boot and steady state with driver conversions and host writes) per policy ×
//! backing × guest preset, and a verdict per claim of the seed computed from the runs.

use rayon::prelude::*;
use snpsim_defs::PageSize;
use snpsim_engine::engine::{CheckMode, SimError};
use snpsim_kvm::policy as k;
use snpsim_scenario::run::{ScenarioRun, run_scenario};
use snpsim_scenario::{Backing, Granularity, Named, Policy, Preset, Scenario, ScenarioError, parse_scenario};

/// The claim scenarios, embedded from `examples/debate/` (file name, text).
pub const CLAIM_SCENARIOS: &[(&str, &str)] = &[
    (
        "examples/debate/07-npt-demote-hugetlbfs-1g-minimal.toml",
        include_str!("../../../examples/debate/07-npt-demote-hugetlbfs-1g-minimal.toml"),
    ),
    (
        "examples/debate/14-npt-demote-1g-pvalidate-minimal.toml",
        include_str!("../../../examples/debate/14-npt-demote-1g-pvalidate-minimal.toml"),
    ),
    (
        "examples/debate/10-recoalesce-naive.toml",
        include_str!("../../../examples/debate/10-recoalesce-naive.toml"),
    ),
    (
        "examples/debate/11-recoalesce-save-restore.toml",
        include_str!("../../../examples/debate/11-recoalesce-save-restore.toml"),
    ),
    (
        "examples/debate/12-gmem-4k-no-prefault.toml",
        include_str!("../../../examples/debate/12-gmem-4k-no-prefault.toml"),
    ),
    (
        "examples/debate/13-gmem-4k-prefault.toml",
        include_str!("../../../examples/debate/13-gmem-4k-prefault.toml"),
    ),
    (
        "examples/upstream-2026/01-host-write-private-inplace.toml",
        include_str!("../../../examples/upstream-2026/01-host-write-private-inplace.toml"),
    ),
    (
        "examples/upstream-2026/02-host-write-private-rfc-host-split.toml",
        include_str!("../../../examples/upstream-2026/02-host-write-private-rfc-host-split.toml"),
    ),
    (
        "examples/upstream-2026/03-inplace-conversions-split-and-merge.toml",
        include_str!("../../../examples/upstream-2026/03-inplace-conversions-split-and-merge.toml"),
    ),
    (
        "examples/upstream-2026/06-rmpopt-gmem-hugetlb-1g.toml",
        include_str!("../../../examples/upstream-2026/06-rmpopt-gmem-hugetlb-1g.toml"),
    ),
    (
        "examples/upstream-2026/08-rmpopt-teardown-remarks.toml",
        include_str!("../../../examples/upstream-2026/08-rmpopt-teardown-remarks.toml"),
    ),
    (
        "examples/upstream-2026/09-rmpopt-gmem-4k-scattered.toml",
        include_str!("../../../examples/upstream-2026/09-rmpopt-gmem-4k-scattered.toml"),
    ),
];

/// The matrix workload for one policy, backing and granularity: a guest accepts 64 MiB, writes
/// data, shares a driver buffer of one granule (4 KiB or 2 MiB), writes private memory next to
/// it, lets the VMM and the kernel (get/put_user) write the buffer, reads its data back and
/// writes the buffer itself.
pub fn matrix_scenario(policy: Policy, backing: Backing, granularity: Granularity, follows: bool) -> String {
    let (buf, next) = match granularity {
        Granularity::K4 => ("4KiB", "0x401000"),
        Granularity::M2 => ("2MiB", "0x600000"),
    };
    let shared = shared_backing(policy, backing);
    format!(
        r#"name = "{MATRIX_SCENARIO_NAME}"
seed = 1

[machine]
host_memory = "4GiB"

[vm]
memory = "1GiB"
policy = "{policy}"
backing = "{backing}"
npt_level_follows_rmp = {follows}
{shared}
[guest]
psc_granularity = "{granularity}"

[[step]]
op = "accept"
gpa = "0x0"
size = "64MiB"

[[step]]
op = "access"
gpa = "0x200000"
size = "16KiB"
kind = "write"

[[step]]
op = "psc"
gpa = "0x400000"
size = "{buf}"
to = "shared"

[[step]]
op = "access"
gpa = "{next}"
kind = "write"

[[step]]
op = "host_write"
gpa = "0x400000"
via = "vmm"

[[step]]
op = "host_write"
gpa = "0x400000"
via = "uaccess"

[[step]]
op = "access"
gpa = "0x200000"
size = "16KiB"
kind = "read"

[[step]]
op = "access"
gpa = "0x400000"
kind = "write"
private = false
"#,
        policy = policy.name(),
        backing = backing.name(),
        granularity = granularity.name(),
    )
}

/// The `name` of every matrix run's scenario (how results files tell matrix runs apart).
pub const MATRIX_SCENARIO_NAME: &str = "debate matrix";

/// The name a matrix run's scenario is parsed under (what its errors and its trace's `source`
/// show).
pub fn matrix_source(policy: Policy, backing: Backing, granularity: Granularity, follows: bool) -> String {
    format!(
        "<embedded {}/{}/{}/npt_level_follows_rmp={follows}>",
        policy.name(),
        backing.name(),
        granularity.name()
    )
}

/// The `npt_level_follows_rmp` settings the matrix runs a policy with: both for a legacy policy
/// (whether the NPT is capped at the RMP level decides several claims, and the RFC's own code
/// capped it while the seed's reading did not), upstream's `true` for `gmem`.
pub fn follows_settings(policy: Policy) -> &'static [bool] {
    match policy.era() {
        snpsim_scenario::Era::Legacy => &[false, true],
        snpsim_scenario::Era::Gmem => &[true],
    }
}

/// Every (policy, backing, granularity, `npt_level_follows_rmp`) of the matrix, in report order:
/// each policy with every backing it runs on ([`Backing::of_policy`]) and each of its
/// [`follows_settings`].
pub fn matrix() -> Vec<(Policy, Backing, Granularity, bool)> {
    let mut out = Vec::new();
    for &p in snpsim_scenario::policies() {
        for b in Backing::of_policy(p) {
            for &f in follows_settings(p) {
                for &g in Granularity::all() {
                    out.push((p, b, g, f));
                }
            }
        }
    }
    out
}

/// The guests of the realistic workload: every preset — today's Linux (2M page-state changes over
/// the GHCB, lazy acceptance), the Linux of the 2021 series (4K, over MSR before its GHCB and in
/// 253-entry GHCB requests after, eager acceptance), COCONUT-SVSM and Oak stage0 (2M, eager).
pub const WORKLOAD_PRESETS: &[Preset] =
    &[Preset::Linux, Preset::Linux2021, Preset::CoconutSvsm, Preset::OakStage0];

/// What the realistic workload does, for the report.
pub const WORKLOAD_SUMMARY: &str = "a 256 MiB guest boots (accepting memory as its preset does, \
    SWIOTLB shared), then performs the same steady-state actions in every row\n(2 ms at nominal rates, \
    seed 1): 16000 touches of a 128 MiB working set (hotset), 40 driver buffers (4K, one in eight 64K) \
    converted\nshared and back, 100 host writes (VMM and vhost) to the guest's shared pages; `actions` \
    shows performed/planned when the run\nstopped first. refuse-hugetlbfs and fail-psc-hugetlbfs are \
    rfc-host-split off hugetlbfs; the legacy 1G backings need 1 GiB guests (see the matrix above).\n\
    gmem-inplace runs the Linux guest on each of its backings, a 1 GiB guest on the 1G ones (whole pages).";

/// The `[vm]` line of a scenario's shared side: a gmem-era VM's is a THP VMA, except under
/// in-place conversion, where shared memory is guest_memfd's.
fn shared_backing(policy: Policy, backing: Backing) -> &'static str {
    if backing.is_gmem() && !policy.in_place_conversion() { "shared_backing = \"thp\"\n" } else { "" }
}

/// The realistic workload for one policy, backing and guest preset ([`WORKLOAD_SUMMARY`]).
pub fn workload_scenario(policy: Policy, backing: Backing, preset: Preset) -> String {
    let shared = shared_backing(policy, backing);
    // A 1G backing holds whole 1 GiB pages.
    let memory = if backing.page_size() == PageSize::Size1G { "1GiB" } else { "256MiB" };
    format!(
        r#"name = "realistic workload"
seed = 1

[machine]
host_memory = "4GiB"

[vm]
memory = "{memory}"
policy = "{policy}"
backing = "{backing}"
{shared}
[guest]
preset = "{preset}"

[workload]
phases = [ {{ kind = "boot" }},
           {{ kind = "steady", duration = "2ms", working_set = "128MiB", touch = "hotset",
             conversions_per_s = 20000, host_writes_per_s = 50000 }} ]
"#,
        policy = policy.name(),
        backing = backing.name(),
        preset = preset.name(),
    )
}

/// The (policy, backing) pairs of the realistic workload: every policy on the backings where it
/// differs from the others. `refuse-hugetlbfs` and `fail-psc-hugetlbfs` are `rfc-host-split` off
/// hugetlbfs, so they appear on `hugetlbfs-2m` only; the 1G backings are left out (their guests
/// are whole 1 GiB pages, and a 1 GiB guest booting with the 2021 preset makes the suite's traces
/// gigabytes; the scripted matrix covers them).
pub const WORKLOAD_PAIRS: &[(Policy, Backing)] = &[
    (&k::RfcHostSplit, Backing::Anon4k),
    (&k::RfcHostSplit, Backing::Thp),
    (&k::RfcHostSplit, Backing::Hugetlbfs2m),
    (&k::RfcV4, Backing::Thp),
    (&k::RfcV4, Backing::Hugetlbfs2m),
    (&k::RefuseHugetlbfs, Backing::Hugetlbfs2m),
    (&k::FailPscHugetlbfs, Backing::Hugetlbfs2m),
    (&k::NptDemote, Backing::Anon4k),
    (&k::NptDemote, Backing::Thp),
    (&k::NptDemote, Backing::Hugetlbfs2m),
    (&k::Gmem, Backing::Gmem4k),
    (&k::Gmem, Backing::Gmem2m),
];

/// Every (policy, backing, preset) of the realistic workload, in report order: [`WORKLOAD_PAIRS`]
/// with every preset, then `gmem-inplace` with the Linux guest on each of its backings (upstream's
/// 2026 answer, measured on the workload the 2021 proposals run).
pub fn workload_matrix() -> Vec<(Policy, Backing, Preset)> {
    let pairs = WORKLOAD_PAIRS.iter().flat_map(|&(p, b)| WORKLOAD_PRESETS.iter().map(move |&g| (p, b, g)));
    let in_place = Backing::of_policy(&k::GmemInplace).map(|b| (&k::GmemInplace as Policy, b, Preset::Linux));
    pairs.chain(in_place).collect()
}

/// Errors of the embedded suite (a bug in snpsim if they ever happen).
#[derive(Debug, thiserror::Error)]
pub enum DebateError {
    /// An embedded scenario does not parse.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// An embedded scenario cannot be built.
    #[error(transparent)]
    Sim(#[from] SimError),
}

/// The runs of the default suite.
#[derive(Debug)]
pub struct Debate {
    /// The matrix runs, in [`matrix`] order.
    pub matrix: Vec<ScenarioRun>,
    /// The claim scenario runs, in [`CLAIM_SCENARIOS`] order.
    pub claims: Vec<ScenarioRun>,
    /// The realistic workload runs, in [`workload_matrix`] order.
    pub workloads: Vec<ScenarioRun>,
}

/// Which part of the suite a run belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// A cell of the [`matrix`].
    Matrix,
    /// One of the [`CLAIM_SCENARIOS`].
    Claim,
    /// A realistic workload of the [`workload_matrix`].
    Workload,
}

/// One run of the suite, parsed: its part, the name its scenario was parsed under (what its
/// errors and its trace's `source` show), and the scenario.
#[derive(Debug)]
pub struct Entry {
    /// The part of the suite.
    pub part: Part,
    /// The scenario's source name.
    pub source: String,
    /// The scenario.
    pub scenario: Scenario,
}

/// Every run of the suite in report order: the matrix, the claims, the workloads. All are parsed
/// before any runs.
pub fn suite() -> Result<Vec<Entry>, ScenarioError> {
    let matrix = matrix()
        .into_iter()
        .map(|(p, b, g, f)| (Part::Matrix, matrix_source(p, b, g, f), matrix_scenario(p, b, g, f)));
    let claims =
        CLAIM_SCENARIOS.iter().map(|&(file, text)| (Part::Claim, file.to_string(), text.to_string()));
    let workloads = workload_matrix().into_iter().map(|(p, b, g)| {
        (
            Part::Workload,
            format!("<embedded workload {}/{}/{}>", p.name(), b.name(), g.name()),
            workload_scenario(p, b, g),
        )
    });
    matrix
        .chain(claims)
        .chain(workloads)
        .map(|(part, source, text)| Ok(Entry { scenario: parse_scenario(&source, &text)?, part, source }))
        .collect()
}

/// `run(i, entry)` for every entry of `entries`, as many at a time as the current rayon pool has
/// threads (wrap the call in `ThreadPool::install` to bound them); the results in the entries'
/// order whatever order the runs end in, and if runs fail, the error of the first in that order.
/// When each `run` depends on its entry alone (a simulation run is single-threaded and depends on
/// its scenario alone), nothing returned depends on the number of threads.
pub fn run_each<T: Send, E: Send>(
    entries: &[Entry],
    run: impl Fn(usize, &Entry) -> Result<T, E> + Sync,
) -> Result<Vec<T>, E> {
    // Every run ends before the errors are looked at, so the first in order wins, not the first
    // to happen.
    let all: Vec<Result<T, E>> = entries.par_iter().enumerate().map(|(i, e)| run(i, e)).collect();
    all.into_iter().collect()
}

impl Debate {
    /// The suite's results split into its parts: `runs[i]` is the run of `entries[i]`.
    pub fn from_runs(entries: &[Entry], runs: Vec<ScenarioRun>) -> Debate {
        debug_assert_eq!(entries.len(), runs.len(), "one run per entry");
        let mut d = Debate { matrix: Vec::new(), claims: Vec::new(), workloads: Vec::new() };
        for (e, r) in entries.iter().zip(runs) {
            match e.part {
                Part::Matrix => d.matrix.push(r),
                Part::Claim => d.claims.push(r),
                Part::Workload => d.workloads.push(r),
            }
        }
        d
    }
}

/// Run the whole default suite, every run (the generated workloads too) checked as `check` says.
pub fn run_debate(check: CheckMode) -> Result<Debate, DebateError> {
    run_debate_with(check, check)
}

/// Run the whole default suite, the scripted runs checked as `check` says and the generated
/// workloads (tens of thousands of steps each) as `workloads` says; the runs in parallel on the
/// current rayon pool (one thread per CPU unless the caller installs another: [`run_each`]).
pub fn run_debate_with(check: CheckMode, workloads_check: CheckMode) -> Result<Debate, DebateError> {
    let entries = suite()?;
    let runs = run_each(&entries, |_, e| {
        run_scenario(&e.scenario, if e.part == Part::Workload { workloads_check } else { check })
    })?;
    Ok(Debate::from_runs(&entries, runs))
}
