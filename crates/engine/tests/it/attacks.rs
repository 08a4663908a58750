//! The adversarial-hypervisor catalogue: for every attack, what the hardware blocks, what a guest
//! that tracks its validated pages detects, and what a naive guest silently accepts.

use snpsim_engine::adversary::Attack;
use snpsim_engine::engine::CheckMode;
use snpsim_engine::outcome::{Cause, Reason};
use snpsim_scenario::run::{ScenarioRun, run_scenario, run_scenario_traced};
use snpsim_scenario::{Scenario, parse_scenario_with_overrides};
use snpsim_trace::TraceMeta;

fn run(attack: Attack, tracking: bool) -> ScenarioRun {
    run_scenario(&scenario(attack, tracking), CheckMode::Full).unwrap()
}

fn scenario(attack: Attack, tracking: bool) -> Scenario {
    let dir = crate::common::repo("examples/attacks");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().ends_with(&format!("-{}.toml", attack.name())))
        .unwrap_or_else(|| panic!("no example for {}", attack.name()));
    let text = std::fs::read_to_string(&file).unwrap();
    let t = if tracking { "true" } else { "false" };
    parse_scenario_with_overrides(&file.display().to_string(), &text, &[("guest.validation_tracking", t)])
        .unwrap()
}

/// (attack, tracking guest's outcome, naive guest's outcome, naive guest loses data).
const TABLE: &[(Attack, &str, &str, bool)] = &[
    (Attack::RemapValidatedGpa, "guest_terminated", "completed", true),
    (Attack::RmpupdateBehindBack, "guest_terminated", "completed", true),
    (Attack::AliasTwoGpas, "vm_error", "vm_error", false),
    (Attack::ReformTwoMeg, "guest_terminated", "completed", true),
    (Attack::PscAckWithoutAction, "vm_error", "vm_error", false),
    (Attack::PscLieCurPage, "vm_error", "vm_error", false),
    (Attack::DropPscHalfway, "completed", "completed", false),
    (Attack::VcStorm, "guest_terminated", "completed", false),
    (Attack::ForeignAsid, "vm_error", "vm_error", false),
    (Attack::HostWritePrivate, "completed", "completed", false),
];

#[test]
fn the_catalogue_has_every_attack_once() {
    let listed: Vec<Attack> = TABLE.iter().map(|r| r.0).collect();
    assert_eq!(listed, Attack::ALL);
    let doc = std::fs::read_to_string(crate::common::repo("docs/attacks.md")).unwrap();
    for a in Attack::ALL {
        assert!(doc.contains(&format!("\n## {}\n", a.name())), "docs/attacks.md lacks `## {}`", a.name());
    }
}

#[test]
fn each_attack_against_each_guest() {
    for &(attack, tracking_outcome, naive_outcome, naive_loses) in TABLE {
        let t = run(attack, true);
        let n = run(attack, false);
        for (who, r, outcome) in [("tracking", &t, tracking_outcome), ("naive", &n, naive_outcome)] {
            assert!(
                !r.result.attacks.is_empty(),
                "{}: the attack never ran against the {who} guest",
                attack.name()
            );
            assert_eq!(
                r.result.outcome.name(),
                outcome,
                "{} vs {who} guest: {}",
                attack.name(),
                r.result.detail
            );
            // The hardware guarantees hold whatever the host does.
            assert_eq!(r.result.metrics.false_negatives, 0, "{} vs {who} guest", attack.name());
        }
        assert_eq!(
            t.result.metrics.data_loss_pages,
            0,
            "{}: the tracking guest never reads lost data",
            attack.name()
        );
        assert_eq!(
            n.result.metrics.data_loss_pages > 0,
            naive_loses,
            "{}: naive guest data loss",
            attack.name()
        );
    }
}

#[test]
fn every_guest_defence_matters() {
    // Where the naive guest silently accepts an attack (it completes with data lost), the tracking
    // guest detects it (it stops rather than run on corrupted memory).
    let mut shown = 0;
    for &(attack, _, _, naive_loses) in TABLE {
        if naive_loses {
            assert_eq!(run(attack, true).result.outcome.name(), "guest_terminated", "{}", attack.name());
            shown += 1;
        }
    }
    // The three rows of TABLE whose naive guest loses data (remap, behind-back, reform-2m).
    assert!(shown >= 3);
}

#[test]
fn the_hardware_blocks_host_writes_and_foreign_owners() {
    let w = run(Attack::HostWritePrivate, true);
    // The attack runs once: its one kernel write into a private page is blocked, one oops.
    assert_eq!(w.result.metrics.kernel_oops, 1);
    for a in [Attack::AliasTwoGpas, Attack::ForeignAsid] {
        let r = run(a, true);
        assert!(r.result.metrics.rmp_npf > 0, "{}", a.name());
        // The foreign owner's RMP fault is neither a size mismatch nor an implicit conversion
        // (the C-bit agrees with the assignment): no handler resolves it.
        assert_eq!(r.result.reason, Some(Reason::UnhandledNpf), "{}: {}", a.name(), r.result.detail);
        assert_eq!(r.result.cause(), Some(Cause::Unresolvable), "{}", a.name());
    }
}

/// The `(ev, vcpu, actor, rc)` of every RMP instruction line of `attack`'s traced run.
fn instructions(
    attack: Attack,
    tracking: bool,
) -> Vec<(String, serde_json::Value, String, serde_json::Value)> {
    let meta = TraceMeta { scenario: attack.name().into(), source: "test".into(), ..TraceMeta::default() };
    let run = run_scenario_traced(&scenario(attack, tracking), CheckMode::Full, Some(&meta)).unwrap();
    let text = String::from_utf8(run.result.trace.unwrap()).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| ["rmpupdate", "psmash", "pvalidate", "rmpadjust"].iter().any(|e| v["ev"] == *e))
        .map(|v| {
            let ev = v["ev"].as_str().unwrap().to_string();
            (ev, v["vcpu"].clone(), v["actor"].as_str().unwrap().to_string(), v["rc"].clone())
        })
        .collect()
}

#[test]
fn the_adversary_s_rmp_instructions_are_its_own_in_the_trace() {
    // Every event's actor is the one who executed it: the host's RMPUPDATE and PSMASH are KVM's
    // or the adversary's (no vCPU), never the guest's; PVALIDATE and RMPADJUST are the guest's.
    for &(attack, ..) in TABLE {
        for tracking in [true, false] {
            for (ev, vcpu, actor, _) in instructions(attack, tracking) {
                let host = ev == "rmpupdate" || ev == "psmash";
                let ok = if host { actor == "kvm" || actor == "adversary" } else { actor == "guest" };
                assert!(ok, "{}: {ev} by {actor}", attack.name());
                assert_eq!(
                    actor == "adversary",
                    vcpu.is_null(),
                    "{}: {ev} by {actor} on {vcpu}",
                    attack.name()
                );
            }
        }
    }
    // rmpupdate-behind-back (examples/attacks/02): after the 16 KiB write at 0x200000 the target is
    // that page, inside a 2M entry (2M acceptance on THP): the adversary PSMASHes the region, then
    // makes the page shared and private again: PSMASH, RMPUPDATE, RMPUPDATE, all succeeding.
    let adv: Vec<_> = instructions(Attack::RmpupdateBehindBack, true)
        .into_iter()
        .filter(|(_, _, a, _)| a == "adversary")
        .map(|(ev, _, _, rc)| (ev, rc.as_str().unwrap().to_string()))
        .collect();
    let ok = |ev: &str| (ev.to_string(), "SUCCESS".to_string());
    assert_eq!(adv, [ok("psmash"), ok("rmpupdate"), ok("rmpupdate")]);
}

#[test]
fn a_naive_guest_executing_a_remapped_frame_loses_data_as_when_reading_it() {
    // examples/attacks/01-remap-validated-gpa.toml with a naive guest: the GPA the guest wrote is
    // remapped to another frame, which the guest validates on #VC and then reads. Fetching
    // instructions from it instead must count the same lost pages (an `exec` reads the page).
    let read = scenario(Attack::RemapValidatedGpa, false);
    let dir = crate::common::repo("examples/attacks/01-remap-validated-gpa.toml");
    let text = std::fs::read_to_string(&dir).unwrap().replace("kind = \"read\"", "kind = \"exec\"");
    let exec =
        parse_scenario_with_overrides("exec variant", &text, &[("guest.validation_tracking", "false")])
            .unwrap();
    let loss = |s: &Scenario| run_scenario(s, CheckMode::Full).unwrap().result.metrics.data_loss_pages;
    assert!(loss(&read) > 0, "the read variant loses data (the catalogue's table says so)");
    assert_eq!(loss(&exec), loss(&read));
}
