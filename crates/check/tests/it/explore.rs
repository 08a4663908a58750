//! Exhaustive exploration of small configurations: every correct policy keeps every invariant,
//! reaches its goals, and the state space has the size pinned here (so a change is noticed).

use snpsim_check::{CheckSetup, SnpModel};
use snpsim_defs::PageSize;
use snpsim_engine::engine::MemoryBacking;
use snpsim_guest::Granularity;
use snpsim_host::VmaBacking;
use snpsim_kvm::policy::by_name;

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
    let e = snpsim_check::explore(&SnpModel::new(setup));
    let mut found: Vec<&'static str> = e.discoveries.iter().map(|d| d.property).collect();
    found.sort_unstable();
    (e.unique_states, found)
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
        ("rfc-v4", thp),
        ("rfc-v4", MemoryBacking::Vma(VmaBacking::Hugetlbfs2m)),
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
    // Regression pins, not derivations: a change here means the reachable state space changed,
    // which a change of the model must explain. 65 → 70: the NPT's set of uncapped leaves (leaves a
    // legacy PSC shrank the RMP under) is part of the state. 66 → 93: npt-demote no longer zaps
    // after a PVALIDATE PSMASH (it splits a 1G leaf into 2M parts in place and keeps them), so more
    // distinct NPTs are reachable, and the uncapped set is part of the state. Unchanged when states
    // became compared by their whole canonical form instead of a 64-bit hash of it: no two
    // distinct states had collided.
    assert_eq!(counts, [70, 93]);
}

#[test]
fn check_all_covers_every_policy_and_backing_without_violation() {
    let reports = snpsim_check::run::check_all(None, None, 2, None, 1);
    // Every policy × each backing of its era × each NPT-level setting it is checked under × two
    // granularities (derived from the lists, so a new policy needs no edit here).
    let expected: usize = snpsim_kvm::policy::ALL
        .iter()
        .map(|p| snpsim_check::run::backings_of(*p).len() * snpsim_check::run::follows_settings(*p).len() * 2)
        .sum();
    assert_eq!(reports.len(), expected);
    // Both settings for every legacy policy, upstream's for gmem.
    for p in snpsim_kvm::policy::ALL {
        let settings: std::collections::BTreeSet<bool> =
            reports.iter().filter(|r| r.policy == p.name()).map(|r| r.npt_level_follows_rmp).collect();
        let want = if p.era() == snpsim_kvm::Era::Legacy { 2 } else { 1 };
        assert_eq!(settings.len(), want, "{}", p.name());
    }
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
        // Depth 12 reaches at least the depth-8 state sets pinned in pinned_race_state_counts
        // (1598 and 933); the bound only says the interleavings were explored at all.
        assert!(states > 100, "{policy}: {states} states");
        for bad in ["no false negative", "invariants hold", "KVM's RMP instructions never fail"] {
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
    // Regression pins, as in pinned_state_counts: the sizes of exhaustive searches, which no
    // comment can derive; a change means the reachable interleavings changed, which the model
    // change must explain. 1606 → 1598: upstream's `sev_handle_rmp_fault` ends without a zap
    // when its PSMASH lost the race to the other vCPU's (the entry is assigned at 4K on
    // re-lookup). 1050 → 933: npt-demote no longer zaps after a PSMASH, so fewer refault
    // interleavings exist. Unchanged under exact state identity (no hash collision had merged two
    // states).
    assert_eq!(counts, [1598, 933]);
}

/// A plain sequential breadth-first search of `model`, as the explorer was before it expanded
/// states in parallel: unique states, deepest level, and each property with its first path.
fn sequential(model: &SnpModel) -> (usize, usize, Vec<(&'static str, Vec<snpsim_engine::engine::Action>)>) {
    use stateright::{Expectation, Model};
    let mut seen = std::collections::HashSet::new();
    let mut pending = std::collections::VecDeque::new();
    for s in model.init_states() {
        if seen.insert(*s.key()) {
            pending.push_back((s, Vec::new()));
        }
    }
    let (mut found, mut max_depth) = (Vec::new(), 0);
    let mut actions = Vec::new();
    while let Some((state, path)) = pending.pop_front() {
        max_depth = max_depth.max(path.len() + 1);
        let mut all = true;
        for p in model.properties() {
            let hit = (p.condition)(model, &state) != (p.expectation == Expectation::Always);
            all &= hit;
            if hit && !found.iter().any(|(n, _)| *n == p.name) {
                found.push((p.name, path.clone()));
            }
        }
        if all {
            break;
        }
        model.actions(&state, &mut actions);
        for a in actions.drain(..) {
            let Some(next) = model.next_state(&state, a) else { continue };
            if seen.insert(*next.key()) {
                let mut p = path.clone();
                p.push(a);
                pending.push_back((next, p));
            }
        }
    }
    found.sort_by(|a, b| (a.1.len(), a.0).cmp(&(b.1.len(), b.0)));
    (seen.len(), max_depth, found)
}

#[test]
fn the_parallel_explorer_finds_what_a_sequential_search_does() {
    let thp = MemoryBacking::Vma(VmaBacking::Thp);
    let gmem = MemoryBacking::Gmem { folio: PageSize::Size2M, shared: VmaBacking::Thp };
    for (policy, backing, depth, vcpus, mutant) in [
        ("npt-demote", thp, 6, 2, None),
        ("gmem", gmem, 3, 1, None),
        ("gmem", gmem, 3, 1, Some(snpsim_hw::Mutant::NoZapAfterPsmash)),
    ] {
        let setup = CheckSetup {
            policy: by_name(policy).unwrap(),
            backing,
            granularity: Granularity::K4,
            depth,
            mutant,
            vcpus,
            npt_level_follows_rmp: None,
        };
        let model = SnpModel::new(setup);
        let e = snpsim_check::explore(&model);
        let found: Vec<_> = e.discoveries.into_iter().map(|d| (d.property, d.actions)).collect();
        assert_eq!(
            (e.unique_states, e.max_depth, found),
            sequential(&model),
            "{policy} {backing:?} {mutant:?}"
        );
    }
}

/// The split-before-unmap race as an ordering the checker explores: on gmem-inplace with a 1G
/// HugeTLB folio (16 pages on the tiny machine) and two vCPUs, vCPU 0's conversion of page 1 to
/// shared stops between its unmap and its split (two ticks), and vCPU 1's access to its own page
/// of the same folio may run in between. With the real order no leaf is larger than its folio at
/// that point and the access waits for the invalidation; with the mutant a 2M leaf survives over
/// the split folio, and the race model's search finds it.
#[test]
fn the_in_place_conversion_is_two_ticks_and_the_mutant_is_caught_between_them() {
    use snpsim_engine::engine::{Action, Simulation};
    use snpsim_hw::AccessKind;
    let backing = MemoryBacking::GmemHugetlb(snpsim_host::HugetlbFolio::Size1G);
    for mutant in [None, Some(snpsim_hw::Mutant::SplitBeforeUnmap)] {
        let setup = CheckSetup {
            policy: by_name("gmem-inplace").unwrap(),
            backing,
            granularity: Granularity::K4,
            depth: 0,
            mutant,
            vcpus: 2,
            npt_level_follows_rmp: None,
        };
        // The race model's start under in-place conversion: regions 0 (pages 0..4) and 1
        // (4..8) private and validated at 2M, two 2M leaves in the one 1G folio.
        let mut sim: Simulation = snpsim_check::initial_simulation(&setup, None).unwrap();
        let page = |p: u64| snpsim_defs::Gfn::new(p).gpa();
        let leaf_2m = |sim: &Simulation, first: u64| {
            let m = sim.machine().unwrap();
            m.kvm.npt.leaves().any(|(g, l)| g.raw() == first && l.size == PageSize::Size2M)
        };
        assert!(leaf_2m(&sim, 0) && leaf_2m(&sim, 4), "{mutant:?}: the accepted regions are mapped at 2M");
        // vCPU 0 converts page 1 to shared. The guest rescinds it first, and that #NPF's PSMASH
        // zaps the leaves of the 1G range; vCPU 1 then writes page 5, mapping region 1 at 2M
        // again, before vCPU 0's page-state change reaches KVM.
        sim.step(&Action::Psc {
            vcpu: 0,
            gpa: page(1),
            pages: 1,
            private: false,
            granularity: Some(Granularity::K4),
        });
        let mut ticks = 0;
        while leaf_2m(&sim, 4) {
            assert!(sim.is_busy(0) && ticks < 64, "{mutant:?}: the rescind never zapped region 1");
            sim.step(&Action::Tick { vcpu: 0 });
            ticks += 1;
        }
        let finish = |sim: &mut Simulation, vcpu: u32| {
            let mut n = 0;
            while sim.is_busy(vcpu) && n < 64 && sim.outcome().is_none() {
                sim.step(&Action::Tick { vcpu });
                n += 1;
            }
        };
        sim.step(&Action::Access { vcpu: 1, gpa: page(5), kind: AccessKind::Write, private: true });
        finish(&mut sim, 1);
        assert!(leaf_2m(&sim, 4), "{mutant:?}: vCPU 1's write maps region 1 at 2M");
        // vCPU 0 ticks until its conversion waits between its two steps.
        while sim.running()[0]
            .as_ref()
            .and_then(|r| r.exec.as_ref())
            .and_then(snpsim_engine::vcpu::Exec::in_place)
            .is_none()
        {
            assert!(
                sim.is_busy(0) && ticks < 128,
                "{mutant:?}: the conversion never stopped between its steps"
            );
            sim.step(&Action::Tick { vcpu: 0 });
            ticks += 1;
        }
        let stale = sim.machine().unwrap().kvm.leaves_larger_than_folio(&sim.machine().unwrap().host);
        // vCPU 1 writes page 5 again between vCPU 0's two steps (with the real order it waits for the
        // invalidation: vCPU 0's window), then both finish.
        sim.step(&Action::Access { vcpu: 1, gpa: page(5), kind: AccessKind::Write, private: true });
        for vcpu in [1, 0, 1] {
            finish(&mut sim, vcpu);
        }
        let violations: Vec<String> = sim.violations().map(str::to_owned).collect();
        if mutant.is_none() {
            // Unmapped before the split: no leaf over the folio at all, and none larger than its
            // pages at the end.
            assert_eq!(stale, vec![], "between the steps");
            assert_eq!(violations, Vec::<String>::new());
            assert!(!sim.is_busy(0) && !sim.is_busy(1));
        } else {
            // Split first, and the unmap still to come covers page 1 only: the 2M leaf over pages
            // 4..8 outlives the split.
            assert_eq!(stale, vec![(snpsim_defs::Gfn::new(4), PageSize::Size2M)]);
            assert!(violations.iter().any(|v| v.starts_with("invariant 1:")), "{violations:?}");
        }
        // The race model's exhaustive search agrees: the mutant is caught, the real order is not.
        let e = snpsim_check::explore(&SnpModel::new(CheckSetup {
            depth: snpsim_check::mutants::RACE_DEPTH,
            ..setup
        }));
        let caught: Vec<&str> = e.discoveries.iter().filter(|d| d.always).map(|d| d.property).collect();
        let want: Vec<&str> = if mutant.is_some() { vec!["invariants hold"] } else { vec![] };
        assert_eq!(caught, want, "{mutant:?}");
    }
}
