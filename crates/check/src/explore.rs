//! Breadth-first exploration of a [`SnpModel`].
//!
//! The visited set is keyed by each state's [`Key`]: the 128-bit digest of its canonical form
//! ([`crate::canonical`]) and the property flags. (stateright's own checkers keep a 64-bit
//! fingerprint of each state, which a collision among millions of states could silently merge;
//! the model keeps stateright's `Model` interface, and this explorer follows its breadth-first
//! checker's order and counts.)

use std::collections::{HashSet, VecDeque};

use snpsim_sim::engine::Action;
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
    /// their capacity, and each frontier state's model ([`snpsim_sim::Simulation::state_bytes`]
    /// plus the state's own size). Reporting only.
    pub peak_bytes: usize,
}

impl Exploration {
    /// Whether `property` was found.
    pub fn found(&self, property: &str) -> bool {
        self.discoveries.iter().any(|d| d.property == property)
    }
}

/// Explore every state `model` reaches within its depth bound, breadth first, checking every
/// property on every state. A property is reported once, with the first (so a shortest) path
/// found to it. As stateright's checker, the exploration stops early only at a state where every
/// property is found at once.
pub fn explore(model: &SnpModel) -> Exploration {
    let properties = model.properties();
    // Every state generated, by its exact key: its node. A node is the parent node and the
    // action from it (`None` for an initial state).
    let mut seen: HashSet<Key> = HashSet::new();
    let mut nodes: Vec<Option<(usize, Action)>> = Vec::new();
    let mut pending: VecDeque<(State, usize, usize)> = VecDeque::new();
    let (mut held, mut peak_bytes, mut peak_frontier) = (0, 0, 0);
    let state_bytes = |s: &State| size_of::<State>() + s.sim.state_bytes();
    for s in model.init_states() {
        if seen.insert(*s.key()) {
            held += state_bytes(&s);
            pending.push_back((s, nodes.len(), 1));
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
    let mut actions = Vec::new();
    while let Some((state, node, depth)) = pending.pop_front() {
        peak_frontier = peak_frontier.max(pending.len() + 1);
        let tables = seen.capacity() * (size_of::<Key>() + 1)
            + nodes.capacity() * size_of::<Option<(usize, Action)>>();
        peak_bytes = peak_bytes.max(held + tables);
        held -= state_bytes(&state);
        max_depth = max_depth.max(depth);
        let mut all_here = true;
        for p in &properties {
            let always = p.expectation == Expectation::Always;
            let hit = (p.condition)(model, &state) != always;
            all_here &= hit;
            if hit && !found.iter().any(|d| d.property == p.name) {
                found.push(Discovery { property: p.name, actions: path(&nodes, node), always });
            }
        }
        if all_here {
            break;
        }
        model.actions(&state, &mut actions);
        for a in actions.drain(..) {
            let Some(next) = model.next_state(&state, a) else { continue };
            if !seen.insert(*next.key()) {
                continue;
            }
            held += state_bytes(&next);
            pending.push_back((next, nodes.len(), depth + 1));
            nodes.push(Some((node, a)));
        }
    }
    found.sort_by(|a, b| (a.actions.len(), a.property).cmp(&(b.actions.len(), b.property)));
    Exploration { unique_states: seen.len(), max_depth, discoveries: found, peak_frontier, peak_bytes }
}
