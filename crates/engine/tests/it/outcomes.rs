//! Typed outcomes: each cause of a `vm_error` produced by a real run, the reason fixing the
//! outcome, an RMP instruction failure counted as invariant 10, and `[expect]`'s `cause`/`reason`.

use snpsim_engine::engine::CheckMode;
use snpsim_engine::outcome::{Cause, Reason};
use snpsim_engine::prelude::*;
use snpsim_hw::Mutant;
use snpsim_scenario::run::run_scenario;
use snpsim_scenario::{Named, parse_scenario_with_overrides};

/// The second 2M region of guest memory (GPA 2 MiB).
const REGION: Gpa = Gpa(0x20_0000);

fn config(policy_name: &str, backing: VmaBacking, granularity: Granularity) -> SimConfig {
    // 16 MiB guest (4096 pages) on 64 MiB of host memory (16384 pages).
    let mut c = SimConfig::new(policy(policy_name).unwrap(), MemoryBacking::Vma(backing), 4096, 16384);
    c.guest.granularity = granularity;
    c.check = CheckMode::Full;
    c
}

/// A 2M guest makes the region at 2 MiB private with one 2M PSC (a 2M RMP entry), rescinds its
/// validation (so that its view stays true, invariant 8), then reads its first page as shared
/// without a PSC: an implicit conversion of that 4K page to shared, for which KVM must PSMASH the
/// 2M entry before the 4K RMPUPDATE.
fn share_4k_inside_a_2m_entry(mutant: Option<Mutant>) -> RunResult {
    let c = config("npt-demote", VmaBacking::Thp, Granularity::M2);
    let mut sim = Simulation::with_mutant(c, mutant).unwrap();
    sim.step(&Action::Psc { vcpu: 0, gpa: REGION, pages: 512, private: true, granularity: None });
    assert!(sim.outcome().is_none(), "the 2M conversion to private completes");
    sim.step(&Action::Pvalidate { vcpu: 0, gpa: REGION, size: RmpPageSize::Size2M, validate: false });
    sim.step(&Action::Access { vcpu: 0, gpa: REGION, kind: AccessKind::Read, private: false });
    // Invariant 10 is reported by the step that failed, as the other invariants are.
    let reported = sim.violations().any(|v| v.starts_with("invariant 10:"));
    assert_eq!(reported, mutant.is_some(), "{:?}", sim.violations().collect::<Vec<_>>());
    sim.finish()
}

#[test]
fn a_failed_rmp_instruction_is_instruction_failed_and_invariant_10() {
    // Control: with the PSMASH, the 4K conversion to shared succeeds and nothing is violated.
    let ok = share_4k_inside_a_2m_entry(None);
    assert_eq!(ok.outcome, Outcome::Completed, "{}", ok.detail);
    assert_eq!((ok.reason, ok.cause()), (None, None));
    assert!(ok.violations.is_empty(), "{:?}", ok.violations);
    assert_eq!(ok.metrics.invariant_violations, 0);

    // Without it, the 4K RMPUPDATE meets the 2M entry and fails (APM RMPUPDATE: a 4K update inside
    // an assigned 2M entry is FAIL_OVERLAP): KVM cannot go on, and that is a bug, not the policy.
    let bad = share_4k_inside_a_2m_entry(Some(Mutant::NoPsmashBefore4kShared));
    assert_eq!(bad.outcome, Outcome::VmError, "{}", bad.detail);
    assert_eq!(bad.reason, Some(Reason::RmpupdateFailed), "{}", bad.detail);
    assert_eq!(bad.cause(), Some(Cause::InstructionFailed));
    // One: the run stops at the first failed instruction, KVM's one 4K RMPUPDATE of the page.
    let inv10: Vec<&String> = bad.violations.iter().filter(|v| v.starts_with("invariant 10:")).collect();
    assert_eq!(inv10.len(), 1, "{:?}", bad.violations);
    // The metric counts every listed violation, invariant 10 among them.
    assert_eq!(bad.metrics.invariant_violations, bad.violations.len() as u64);
    assert!(bad.metrics.invariant_violations >= 1);
}

#[test]
fn an_unsplittable_host_page_is_unresolvable_and_no_invariant() {
    // The RFC's host split on hugetlbfs (the prelude's example): a private 4K page under the 2M
    // NPT leaf takes RMP|SIZEM, and hugetlbfs cannot split its page.
    let mut sim =
        Simulation::new(config("rfc-host-split", VmaBacking::Hugetlbfs2m, Granularity::K4)).unwrap();
    sim.step(&Action::Psc { vcpu: 0, gpa: REGION, pages: 1, private: true, granularity: None });
    sim.step(&Action::Access { vcpu: 0, gpa: REGION, kind: AccessKind::Write, private: true });
    let ending = sim.ending().cloned().expect("the VM stopped");
    assert_eq!(ending.reason, Reason::HostSplitImpossible, "{}", ending.detail);
    let r = sim.finish();
    assert_eq!(r.outcome, Outcome::VmError);
    assert_eq!(r.cause(), Some(Cause::Unresolvable));
    assert!(r.detail.contains("hugetlbfs-2m"), "the detail names the backing as the CLI does: {}", r.detail);
    assert!(r.violations.is_empty(), "{:?}", r.violations);
    assert_eq!(r.metrics.invariant_violations, 0);
}

#[test]
fn the_other_outcomes_have_their_reasons() {
    // refuse-hugetlbfs refuses the memslot: no VM.
    let sim = Simulation::new(config("refuse-hugetlbfs", VmaBacking::Hugetlbfs2m, Granularity::K4)).unwrap();
    let r = sim.finish();
    assert_eq!((r.outcome, r.reason, r.cause()), (Outcome::VmRejected, Some(Reason::BackingRefused), None));
    // fail-psc-hugetlbfs fails the guest's PSC to private: a Linux guest terminates itself.
    let mut sim =
        Simulation::new(config("fail-psc-hugetlbfs", VmaBacking::Hugetlbfs2m, Granularity::K4)).unwrap();
    sim.step(&Action::Psc { vcpu: 0, gpa: REGION, pages: 1, private: true, granularity: None });
    let r = sim.finish();
    assert_eq!((r.outcome, r.reason), (Outcome::GuestTerminated, Some(Reason::PscFailed)), "{}", r.detail);
    assert!(!r.detail.contains("Psc)"), "no Debug names in user output: {}", r.detail);
    // A step budget of one: the second step exceeds it.
    let mut c = config("npt-demote", VmaBacking::Thp, Granularity::K4);
    c.step_budget = Some(1);
    let mut sim = Simulation::new(c).unwrap();
    for _ in 0..2 {
        sim.step(&Action::Psc { vcpu: 0, gpa: REGION, pages: 1, private: true, granularity: None });
    }
    let r = sim.finish();
    assert_eq!((r.outcome, r.reason), (Outcome::StepBudgetExceeded, Some(Reason::StepBudget)));
}

const SCENARIO: &str = r#"name = "rfc-host-split on hugetlbfs"
[machine]
host_memory = "64MiB"
[vm]
memory = "16MiB"
policy = "rfc-host-split"
backing = "hugetlbfs-2m"
[guest]
psc_granularity = "4k"
[[step]]
op = "psc"
gpa = "0x200000"
to = "private"
[[step]]
op = "access"
gpa = "0x200000"
kind = "write"
[expect]
outcome = "vm_error"
cause = "unresolvable"
reason = "host-split-impossible"
"#;

#[test]
fn expect_checks_cause_and_reason() {
    let s = parse_scenario_with_overrides("s.toml", SCENARIO, &[]).unwrap();
    let run = run_scenario(&s, CheckMode::Full).unwrap();
    assert!(run.failures.is_empty(), "{:?}", run.failures);
    // Expecting the other cause fails, and says what the run had.
    let other = SCENARIO.replace("cause = \"unresolvable\"", "cause = \"instruction_failed\"");
    let s = parse_scenario_with_overrides("s.toml", &other, &[]).unwrap();
    let run = run_scenario(&s, CheckMode::Full).unwrap();
    assert_eq!(run.failures.len(), 1, "{:?}", run.failures);
    assert!(
        run.failures[0].starts_with("expected cause instruction_failed, got unresolvable"),
        "{:?}",
        run.failures
    );
}

#[test]
fn an_unknown_cause_or_reason_is_refused_with_its_location_and_the_accepted_names() {
    let bad = SCENARIO.replace("reason = \"host-split-impossible\"", "reason = \"Hugetlbfs2m\"");
    let e = parse_scenario_with_overrides("s.toml", &bad, &[]).unwrap_err().to_string();
    // `reason` is on line 21 of the scenario (after 17 lines of setup and steps, `[expect]`,
    // `outcome` and `cause`), its value at column 10 (after `reason = `, 9 characters).
    assert!(e.starts_with("s.toml:21:10: field `expect.reason`: unknown value \"Hugetlbfs2m\""), "{e}");
    assert!(e.contains(&Reason::accepted()), "{e}");
    let bad = SCENARIO.replace("cause = \"unresolvable\"", "cause = \"unresolved\"");
    let e = parse_scenario_with_overrides("s.toml", &bad, &[]).unwrap_err().to_string();
    // `cause` is on line 20, its value at column 9 (after `cause = `, 8 characters).
    assert!(e.starts_with("s.toml:20:9: field `expect.cause`"), "{e}");
    assert!(e.contains("accepted: unresolvable, instruction_failed"), "{e}");
}
