//! Exhaustive exploration of small configurations: every correct policy keeps every invariant,
//! reaches its goals, and the state space has the size pinned here (so a change is noticed).

use snpsim_check::{CheckSetup, SnpModel};
use snpsim_defs::PageSize;
use snpsim_guest::Granularity;
use snpsim_host::VmaBacking;
use snpsim_kvm::policy::by_name;
use snpsim_sim::engine::MemoryBacking;
use stateright::{Checker, Model};

/// Unique states and the properties discovered, exploring `depth` actions with `vcpus` vCPUs.
fn explore_with(policy: &str, backing: MemoryBacking, depth: u32, vcpus: u32) -> (usize, Vec<&'static str>) {
    let setup = CheckSetup {
        policy: by_name(policy).unwrap(),
        backing,
        granularity: Granularity::K4,
        depth,
        mutant: None,
        vcpus,
        npt_level_follows_rmp: None,
    };
    let checker = SnpModel::new(setup).checker().spawn_bfs().join();
    let mut found: Vec<&'static str> = checker.discoveries().into_keys().collect();
    found.sort_unstable();
    (checker.unique_state_count(), found)
}

fn explore(policy: &str, backing: MemoryBacking, depth: u32) -> (usize, Vec<&'static str>) {
    explore_with(policy, backing, depth, 1)
}

const RESOLVED: &str = "an RMP #NPF is resolved and the guest goes on";
const RECOALESCED: &str = "a PSMASHed region is re-coalesced";

#[test]
fn correct_policies_keep_every_invariant_at_depth_4() {
    let thp = MemoryBacking::Vma(VmaBacking::Thp);
    let gmem = MemoryBacking::Gmem { folio: PageSize::Size2M, shared: VmaBacking::Thp };
    for (policy, backing) in [
        ("rfc-host-split", thp),
        ("rfc-host-split", MemoryBacking::Vma(VmaBacking::Hugetlbfs2m)),
        ("refuse-hugetlbfs", thp),
        ("fail-psc-hugetlbfs", MemoryBacking::Vma(VmaBacking::Hugetlbfs2m)),
        ("npt-demote", MemoryBacking::Vma(VmaBacking::Hugetlbfs1g)),
        ("npt-demote", MemoryBacking::Vma(VmaBacking::Anon4k)),
        ("gmem", gmem),
    ] {
        let (_, found) = explore(policy, backing, 4);
        assert!(!found.contains(&"no false negative"), "{policy} {backing:?}: false negative");
        assert!(!found.contains(&"invariants hold"), "{policy} {backing:?}: invariant violated");
    }
}

#[test]
fn goals_are_reachable() {
    let (_, found) = explore("npt-demote", MemoryBacking::Vma(VmaBacking::Hugetlbfs2m), 4);
    assert_eq!(found, vec![RECOALESCED, RESOLVED]);
}

#[test]
fn pinned_state_counts() {
    let counts = [
        explore("rfc-host-split", MemoryBacking::Vma(VmaBacking::Hugetlbfs2m), 3).0,
        explore("npt-demote", MemoryBacking::Vma(VmaBacking::Hugetlbfs1g), 3).0,
    ];
    assert_eq!(counts, [65, 66]);
}

#[test]
fn check_all_covers_every_policy_and_backing_without_violation() {
    let reports = snpsim_check::run::check_all(None, None, 2, None, 1);
    // 4 legacy policies x 4 backings + gmem x 3 backings, each at two granularities.
    assert_eq!(reports.len(), (4 * 4 + 3) * 2);
    for r in &reports {
        assert!(r.violation.is_none(), "{} {} {:?}: {:?}", r.policy, r.backing, r.granularity, r.violation);
        let rejected = r.policy == "refuse-hugetlbfs" && r.backing.starts_with("hugetlbfs");
        assert_eq!(r.states > 1, !rejected, "{} {}: {} states", r.policy, r.backing, r.states);
    }
    let refused =
        reports.iter().find(|r| r.policy == "refuse-hugetlbfs" && r.backing == "hugetlbfs-2m").unwrap();
    assert_eq!(refused.states, 1, "a rejected VM has no actions");
}

/// The two-vCPU race model: every interleaving of two vCPUs working on their own page of one 2M
/// region, to `depth` ticks.
fn explore_race(policy: &str, backing: MemoryBacking, depth: u32) -> (usize, Vec<&'static str>) {
    explore_with(policy, backing, depth, 2)
}

#[test]
fn two_vcpus_race_for_one_psmash_without_breaking_anything() {
    // Both PSMASH races are reachable (one vCPU's PSMASH meets the other's in flight; both look up
    // the 2M entry and the second finds it already 4K), and no interleaving breaks an invariant,
    // fails a KVM instruction or lets an access through wrongly.
    let gmem = MemoryBacking::Gmem { folio: PageSize::Size2M, shared: VmaBacking::Thp };
    for (policy, backing) in [("gmem", gmem), ("npt-demote", MemoryBacking::Vma(VmaBacking::Hugetlbfs2m))] {
        let (states, found) = explore_race(policy, backing, 12);
        assert!(states > 100, "{policy}: {states} states");
        for bad in [
            "no false negative",
            "invariants hold",
            "KVM's RMP instructions never fail",
            "the guest's validated pages are validated in the RMP",
        ] {
            assert!(!found.contains(&bad), "{policy}: {bad} violated");
        }
        assert!(found.contains(&"two vCPUs PSMASH one entry (already 4K)"), "{policy}: {found:?}");
        assert!(found.contains(&"a PSMASH meets another CPU's in-flight instruction"), "{policy}: {found:?}");
    }
}

#[test]
fn pinned_race_state_counts() {
    let gmem = MemoryBacking::Gmem { folio: PageSize::Size2M, shared: VmaBacking::Thp };
    let counts = [
        explore_race("gmem", gmem, 8).0,
        explore_race("npt-demote", MemoryBacking::Vma(VmaBacking::Hugetlbfs2m), 8).0,
    ];
    assert_eq!(counts, [1606, 1050]);
}
