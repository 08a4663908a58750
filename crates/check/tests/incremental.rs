//! `--check incremental` finds what `--check full` finds: with every planted bug of the mutant
//! catalogue (and none), on every policy and backing of the tiny machine, random action sequences
//! are run twice in lockstep; after every step the invariants the incremental check has reported
//! so far must be those the whole-state check has.

use std::collections::BTreeSet;

use snpsim_check::run::backings;
use snpsim_check::{menu, tiny_config};
use snpsim_guest::Granularity;
use snpsim_hw::Mutant;
use snpsim_kvm::Era;
use snpsim_sim::engine::{CheckMode, Simulation};

/// Steps per sequence, and sequences per configuration.
const STEPS: usize = 24;
const SEQUENCES: u64 = 6;

/// The invariants named in `sim`'s violations so far ("invariant 3", ...).
fn broken(sim: &Simulation) -> BTreeSet<String> {
    sim.violations().filter_map(|v| v.split(':').next()).map(str::to_string).collect()
}

/// SplitMix64.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[test]
fn incremental_and_full_checks_find_the_same_invariants_broken_at_the_same_step() {
    let mut runs_with_violations = 0;
    let mutants: Vec<Option<Mutant>> =
        std::iter::once(None).chain(Mutant::ALL.into_iter().map(Some)).collect();
    for mutant in mutants {
        for policy in snpsim_kvm::policy::ALL {
            for (backing_name, backing) in backings(policy.era()) {
                for gran in [Granularity::K4, Granularity::M2] {
                    let config = tiny_config(policy, backing, gran);
                    let actions = menu(config.geometry, policy.era() == Era::Gmem);
                    for seq in 0..SEQUENCES {
                        let mut rng = seq + 1;
                        let full_config = config;
                        let incr_config = snpsim_sim::SimConfig { check: CheckMode::Incremental, ..config };
                        let (Ok(mut full), Ok(mut incr)) = (
                            Simulation::with_mutant(full_config, mutant),
                            Simulation::with_mutant(incr_config, mutant),
                        ) else {
                            continue;
                        };
                        for step in 0..STEPS {
                            if full.outcome().is_some() {
                                break;
                            }
                            let a = &actions[(next(&mut rng) % actions.len() as u64) as usize];
                            full.step(a);
                            incr.step(a);
                            assert_eq!(
                                broken(&incr),
                                broken(&full),
                                "{mutant:?} {} {backing_name} {gran:?} sequence {seq} step {step} ({a:?})",
                                policy.name()
                            );
                        }
                        if !broken(&full).is_empty() {
                            runs_with_violations += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(runs_with_violations > 10, "only {runs_with_violations} runs broke an invariant");
}
