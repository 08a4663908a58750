//! The canonical form of a simulation's state: everything that can change what happens next, and
//! nothing that only records how the state was reached (counters, sequence numbers, versions).
//!
//! The checker compares states by this whole form ([`crate::explore`] keys its visited set by
//! it), never by a hash of it: two states are merged only when their canonical forms are equal.

use std::fmt::Write as _;

use snpsim_guest::Platform;
use snpsim_sim::Simulation;

/// The canonical form of `sim`'s state: the outcome, the RMP, the NPT (leaves and uncapped
/// leaves), KVM's memory attributes, the host's VMA, direct map, guest_memfd and memory, the
/// validation counts of invariant 6, the guest's validated set and running operations, and for
/// each page the guest holds data in whether its frame still holds that data. Each component is
/// rendered in its canonical text form (`Debug`, which the stores define over their contents,
/// not their storage: `PageSet` prints runs, `Npt` leaves, whatever the representation).
/// Two states with equal forms behave the same from here on, up to the counters, which no
/// property reads except through the flags [`crate::State`] adds.
pub fn canonical(sim: &Simulation) -> Vec<u8> {
    let mut s = String::new();
    let _ = write!(s, "{:?}|", sim.outcome().map(|(o, _)| o));
    if let Some(m) = sim.machine() {
        let _ = write!(
            s,
            "{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|",
            m.rmp.inner(),
            m.kvm.npt,
            m.kvm.attrs,
            m.host.vma,
            m.host.direct_map,
            m.host.gmem,
            m.host.memory,
            m.validation_counts()
        );
        let g = sim.guest();
        let _ = write!(s, "{:?}|{:?}|", g.validated_set(), sim.running());
        for (gfn, version) in g.held_pages() {
            let _ = write!(s, "{gfn}:{},", m.read_version(gfn) == Some(version));
        }
    }
    s.into_bytes()
}
