//! Every planted bug of the mutant catalogue is caught, and the real model passes the same checks.

use snpsim_check::mutants::{catch, model_check, psc_conformance};
use snpsim_hw::Mutant;

const DEPTH: u32 = 4;

#[test]
fn the_real_model_passes_every_check() {
    assert_eq!(psc_conformance(None), Vec::<String>::new());
    assert_eq!(model_check(None, DEPTH), None);
}

#[test]
fn every_mutant_is_caught() {
    let mut missed = Vec::new();
    for m in Mutant::ALL {
        match catch(m, DEPTH) {
            Some(c) => eprintln!("{}: caught by \"{}\" ({})", m.name(), c.by, c.how),
            None => missed.push(m.name()),
        }
    }
    assert!(missed.is_empty(), "mutants not caught: {missed:?}");
}
