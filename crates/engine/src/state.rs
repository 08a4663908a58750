//! The canonical digest of a run's state, which a trace's last line carries so that replay can
//! verify a re-execution ended in the same state: a fixed, ordered rendering of the machine, the
//! guest, the outcome, the metrics and the trace's own header, hashed with [`Fnv128`].

use std::collections::BTreeSet;

use snpsim_defs::Pfn;
use snpsim_guest::Guest;
use snpsim_hw::RmpModel;

use crate::digest::Fnv128;
use crate::events::StateDigest;
use crate::machine::Machine;
use crate::metrics::Metrics;
use crate::outcome::Outcome;

/// The state a run ended in, as a sink digests it ([`StateDigest`]).
#[derive(Clone, Copy, Debug)]
pub struct RunState<'a> {
    /// The machine (`None` when the VM was refused).
    pub machine: Option<&'a Machine>,
    /// The guest.
    pub guest: &'a Guest,
    /// The run's outcome.
    pub outcome: Outcome,
    /// The run's metrics.
    pub metrics: &'a Metrics,
}

impl StateDigest for RunState<'_> {
    fn state_hash(&self, header: &[u8], regions: &BTreeSet<u64>) -> String {
        state_hash(header, self.machine, self.guest, regions, self.outcome.name(), self.metrics)
    }
}

/// The canonical digest of a run's state: the raw RMP entries of every region a recorded
/// instruction named (and the ASID's assigned-page count), the NPT leaves, the host's mappings,
/// direct map, allocator and guest_memfd, KVM's memory attributes, the machine's content and
/// validation bookkeeping, the guest's tracking, the outcome and the metrics, and the run's
/// `header` line, so that replay also verifies what the header says (seed, scenario, source, run
/// number, format). Everything is kept in ordered maps, so the digest is the same on every machine.
pub fn state_hash(
    header: &[u8],
    machine: Option<&Machine>,
    guest: &snpsim_guest::Guest,
    regions: &BTreeSet<u64>,
    outcome: &str,
    metrics: &Metrics,
) -> String {
    let mut h = Fnv128::default();
    h.piece("header", header);
    h.piece("outcome", outcome.as_bytes());
    if let Some(m) = machine {
        let per_2m = m.rmp.config().geometry.pages_per_2m();
        for &r in regions {
            h.u64(r);
            for p in r..r + per_2m {
                match m.rmp.raw_entry(Pfn(p)) {
                    Some(e) => h.bytes(&e.to_u128().to_le_bytes()),
                    None => h.bytes(b"-"),
                }
            }
        }
        h.piece("asid_pages", &m.rmp.asid_assigned_pages(m.asid).to_le_bytes());
        h.bytes(b"npt");
        for (gfn, leaf) in m.kvm.npt.leaves() {
            h.u64(gfn.raw());
            h.u64(u64::from(leaf.size.level()));
            h.u64(leaf.pfn.raw());
        }
        h.piece("host", format!("{:?}", m.host).as_bytes());
        h.piece("attrs", format!("{:?}", m.kvm.attrs).as_bytes());
        m.digest_bookkeeping(&mut h);
    }
    h.piece("guest", format!("{guest:?}").as_bytes());
    h.piece("metrics", serde_json::to_string(metrics).unwrap_or_default().as_bytes());
    h.hex()
}
