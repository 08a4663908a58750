//! The deterministic scheduler of interleaved runs (`[vm] interleave = true`): every vCPU and the
//! host each take their actions in order, and the run's one seeded generator picks which of them
//! makes the next step, so that same scenario and seed give the same interleaving on any machine.

use std::collections::VecDeque;

use crate::engine::{Action, Simulation};
use crate::rng::{Rng, below};

/// Run `actions` interleaved on `sim`: a FIFO per vCPU (the actions naming it) and one for the
/// host actions. At each step the runnable actors are the vCPUs running an operation or with
/// actions waiting, and the host while it has actions and no in-flight window is open (host
/// operations are not split into ticks); one of them is drawn uniformly. A busy vCPU makes a
/// [`Action::Tick`]; an idle one starts its next action. Ends when every queue is empty and every
/// vCPU idle, or the run has an outcome.
pub fn run_interleaved(sim: &mut Simulation, actions: &[Action], rng: &mut Rng) {
    let n = sim.config().vcpus as usize;
    let mut queues: Vec<VecDeque<Action>> = vec![VecDeque::new(); n + 1];
    for a in actions {
        let q = a.vcpu().map_or(n, |v| v as usize);
        queues[q.min(n)].push_back(*a);
    }
    let mut runnable = Vec::with_capacity(n + 1);
    while sim.outcome().is_none() {
        runnable.clear();
        for (i, q) in queues.iter().enumerate() {
            let ready = if i < n {
                sim.is_busy(i as u32) || !q.is_empty()
            } else {
                !q.is_empty() && !sim.windows_open()
            };
            if ready {
                runnable.push(i);
            }
        }
        if runnable.is_empty() {
            break;
        }
        let pick = runnable[below(rng, runnable.len() as u64) as usize];
        let action = if pick < n && sim.is_busy(pick as u32) {
            Action::Tick { vcpu: pick as u32 }
        } else {
            match queues[pick].pop_front() {
                Some(a) => a,
                None => break,
            }
        };
        sim.step(&action);
    }
}
