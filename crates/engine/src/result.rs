//! How a run ended: its result, and the ending of a guest that terminated or a VM that stopped.

use snpsim_guest::GuestError;

use crate::machine::Machine;
use crate::metrics::Metrics;
use crate::outcome::{Cause, Ending, Outcome, Reason};

/// The ending of a guest that terminated itself; after a failed page-state change, the detail
/// adds why KVM refused it when it did (the guest only sees the error code).
pub(crate) fn terminated(m: &Machine, e: GuestError, reason: snpsim_guest::TermReason) -> Ending {
    let refusal = m.kvm.psc_refusal().filter(|_| reason == snpsim_guest::TermReason::Psc);
    let detail = match refusal {
        Some(r) => format!("{e}: KVM refused the page-state change: {r}"),
        None => e.to_string(),
    };
    Ending::new(Reason::of_termination(reason), detail)
}

/// The ending of a VM the machine stopped: the failure it recorded. A stop without one would be
/// a bug in snpsim; it is reported as such rather than given a plausible reason.
pub(crate) fn stopped(m: &Machine) -> Ending {
    debug_assert!(m.fatal.is_some(), "the machine stopped the VM without recording why");
    m.fatal.clone().unwrap_or_else(|| {
        Ending::new(Reason::UnhandledNpf, "the VM stopped without a recorded reason (a bug in snpsim)")
    })
}

/// The result of a finished run.
#[derive(Clone, Debug)]
pub struct RunResult {
    /// How it ended.
    pub outcome: Outcome,
    /// Why, for anything but `completed` (which also fixes the outcome and, for `vm_error`, the
    /// cause: [`Reason::outcome`], [`Reason::cause`]).
    pub reason: Option<Reason>,
    /// The reason in words, with the values involved (GFN or frame, the rule); empty for
    /// `completed`.
    pub detail: String,
    /// The run's metrics (see [`Metrics`]).
    pub metrics: Metrics,
    /// Invariant violations (each once).
    pub violations: Vec<String>,
    /// NPT pages mapped at 4K/2M/1G over the run: after the steps that changed them (at most one
    /// point every `Simulation::set_coverage_sampling` steps, thinned past 1024
    /// points), and at the end of the run; empty when the VM was never created.
    pub coverage_series: Vec<[u64; 3]>,
    /// The simulated time (`sim_time_ns`) at each point of `coverage_series`.
    pub coverage_time_ns: Vec<u64>,
    /// Guest memory in pages (what `coverage_series` does not map is unmapped).
    pub guest_pages: u64,
    /// Host pages in 1 GiB regions RMPOPT marked over the run (`rmpopt_coverage` over time), with
    /// the points taken as `coverage_series`'s; empty without RMPOPT (`[machine] rmpopt`).
    pub rmpopt_series: Vec<u64>,
    /// The simulated time at each point of `rmpopt_series`.
    pub rmpopt_time_ns: Vec<u64>,
    /// Host memory in pages (`rmpopt_series` is a share of it).
    pub host_pages: u64,
    /// Host accesses to private pages of an in-place guest_memfd, counted, with the first named
    /// (`docs/semantics.md` S9); `None` when there were none.
    pub private_access: Option<String>,
    /// The trace lines not yet taken with [`Simulation::take_trace`](crate::engine::Simulation::take_trace), ending with the `end` and
    /// `state_hash` lines (`None` when the run was not traced).
    pub trace: Option<Vec<u8>>,
    /// What the adversarial hypervisor did, one line per attack (empty for an honest host).
    pub attacks: Vec<String>,
}

impl RunResult {
    /// The cause of a `vm_error` (`None` for every other outcome).
    pub fn cause(&self) -> Option<Cause> {
        self.reason.and_then(Reason::cause)
    }
}
