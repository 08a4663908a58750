//! Breadth-first exploration of a [`SnpModel`].
//!
//! The visited set is keyed by each state's [`Key`]: the 128-bit digest of its canonical form
//! ([`crate::canonical`]) and the property flags. (stateright's own checkers keep a 64-bit
//! fingerprint of each state, which a collision among millions of states could silently merge;
//! the model keeps stateright's `Model` interface, and this explorer follows its breadth-first
//! checker's order and counts.)

use std::collections::{HashSet, VecDeque};

use rayon::prelude::*;

use snpsim_engine::engine::Action;
use stateright::{Expectation, Model};

use crate::model::Key;
use crate::{SnpModel, State};

/// A property the exploration found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Discovery {
    /// The property's name.
    pub property: &'static str,
    /// The actions of a shortest path to a state where it was found.
    pub actions: Vec<Action>,
    /// An `always` property that failed (a violation), rather than a `sometimes` reached.
    pub always: bool,
}

/// What an exploration found.
#[derive(Clone, Debug)]
pub struct Exploration {
    /// Distinct states generated (initial states included).
    pub unique_states: usize,
    /// The most states on a path explored (an initial state is depth 1).
    pub max_depth: usize,
    /// Every property found, shortest path first (then by name).
    pub discoveries: Vec<Discovery>,
    /// The most states waiting in the breadth-first frontier at once.
    pub peak_frontier: usize,
    /// The most memory the exploration held at once, estimated: the visited set and the paths at
    /// their capacity, and each frontier state's model ([`snpsim_engine::Simulation::state_bytes`]
    /// plus the state's own size). Reporting only.
    pub peak_bytes: usize,
}

impl Exploration {
    /// Whether `property` was found.
    pub fn found(&self, property: &str) -> bool {
        self.discoveries.iter().any(|d| d.property == property)
    }
}

/// Parents expanded at a time: their successors are computed in parallel, then merged in order.
const BATCH: usize = 64;

/// Explore every state `model` reaches within its depth bound, breadth first, checking every
/// property on every state. A property is reported once, with the first (so a shortest) path
/// found to it. As stateright's checker, the exploration stops early only at a state where every
/// property is found at once.
///
/// A level of the search is expanded `BATCH` (64) states at a time, their successors computed in
/// parallel (rayon) and merged into the visited set in the order a sequential search would meet
/// them, so the states, their order, the paths and the discoveries do not depend on the threads.
pub fn explore(model: &SnpModel) -> Exploration {
    let properties = model.properties();
    // Every state generated, by its key, and its node: the parent node and the action from it
    // (`None` for an initial state).
    let mut seen: HashSet<Key> = HashSet::new();
    let mut nodes: Vec<Option<(usize, Action)>> = Vec::new();
    // The frontier: the rest of the level being expanded, then the next level.
    let mut pending: VecDeque<(State, usize)> = VecDeque::new();
    let (mut held, mut peak_bytes, mut peak_frontier) = (0, 0, 0);
    let state_bytes = |s: &State| size_of::<State>() + s.sim.state_bytes();
    for s in model.init_states() {
        if seen.insert(*s.key()) {
            held += state_bytes(&s);
            pending.push_back((s, nodes.len()));
            nodes.push(None);
        }
    }
    let path = |nodes: &[Option<(usize, Action)>], mut at: usize| {
        let mut actions = Vec::new();
        while let Some((parent, a)) = nodes[at] {
            actions.push(a);
            at = parent;
        }
        actions.reverse();
        actions
    };
    let mut found: Vec<Discovery> = Vec::new();
    let mut max_depth = 0;
    let mut all_found = false;
    while !pending.is_empty() && !all_found {
        max_depth += 1;
        // The properties of the whole level, in order, up to a state where all are found at once:
        // the search ends there, after expanding the states before it.
        let mut expand = pending.len();
        for (i, (state, node)) in pending.iter().enumerate() {
            let mut all_here = true;
            for p in &properties {
                let always = p.expectation == Expectation::Always;
                let hit = (p.condition)(model, state) != always;
                all_here &= hit;
                if hit && !found.iter().any(|d| d.property == p.name) {
                    found.push(Discovery { property: p.name, actions: path(&nodes, *node), always });
                }
            }
            if all_here {
                (expand, all_found) = (i, true);
                break;
            }
        }
        while expand > 0 {
            peak_frontier = peak_frontier.max(pending.len());
            let tables = seen.capacity() * (size_of::<Key>() + 1)
                + nodes.capacity() * size_of::<Option<(usize, Action)>>();
            peak_bytes = peak_bytes.max(held + tables);
            let batch: Vec<(State, usize)> = pending.drain(..expand.min(BATCH)).collect();
            expand -= batch.len();
            let successors: Vec<Vec<(Action, State)>> = batch
                .par_iter()
                .map(|(state, _)| {
                    let mut actions = Vec::new();
                    model.actions(state, &mut actions);
                    actions
                        .into_iter()
                        .filter_map(|a| model.next_state(state, a).map(|n| (a, n)))
                        .filter(|(_, n)| !seen.contains(n.key()))
                        .collect()
                })
                .collect();
            for ((state, node), succ) in batch.into_iter().zip(successors) {
                held -= state_bytes(&state);
                for (a, n) in succ {
                    if seen.insert(*n.key()) {
                        held += state_bytes(&n);
                        pending.push_back((n, nodes.len()));
                        nodes.push(Some((node, a)));
                    }
                }
            }
        }
    }
    found.sort_by(|a, b| (a.actions.len(), a.property).cmp(&(b.actions.len(), b.property)));
    Exploration { unique_states: seen.len(), max_depth, discoveries: found, peak_frontier, peak_bytes }
}
