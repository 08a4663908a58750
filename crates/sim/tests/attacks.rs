//! The adversarial-hypervisor catalogue: for every attack, what the hardware blocks, what a guest
//! that tracks its validated pages detects, and what a naive guest silently accepts.

use std::path::Path;

use snpsim_sim::adversary::Attack;
use snpsim_sim::engine::CheckMode;
use snpsim_sim::run::{ScenarioRun, run_scenario};
use snpsim_sim::scenario::parse_scenario_with_overrides;

fn run(attack: Attack, tracking: bool) -> ScenarioRun {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/attacks");
    let file = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.file_name().unwrap().to_string_lossy().ends_with(&format!("-{}.toml", attack.name())))
        .unwrap_or_else(|| panic!("no example for {}", attack.name()));
    let text = std::fs::read_to_string(&file).unwrap();
    let t = if tracking { "true" } else { "false" };
    let s = parse_scenario_with_overrides(
        &file.display().to_string(),
        &text,
        &[("guest.validation_tracking", t)],
    )
    .unwrap();
    run_scenario(&s, CheckMode::Full).unwrap()
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
    let doc =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/attacks.md")).unwrap();
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
                r.result.reason
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
    assert!(shown >= 3);
}

#[test]
fn the_hardware_blocks_host_writes_and_foreign_owners() {
    let w = run(Attack::HostWritePrivate, true);
    assert_eq!(w.result.metrics.kernel_oops, 1);
    for a in [Attack::AliasTwoGpas, Attack::ForeignAsid] {
        let r = run(a, true);
        assert!(r.result.metrics.rmp_npf > 0, "{}", a.name());
        assert!(r.result.reason.contains("unresolvable #NPF"), "{}: {}", a.name(), r.result.reason);
    }
}
