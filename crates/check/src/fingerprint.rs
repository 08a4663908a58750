//! A canonical digest of a simulation's state: everything that can change what happens next, and
//! nothing that only records how the state was reached (counters, sequence numbers, versions).

use std::fmt::Write as _;

use snpsim_guest::Platform;
use snpsim_sim::Simulation;

/// FNV-1a over the canonical text (stable across runs and machines).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The canonical digest of `sim`'s state. Two states with the same digest behave the same from
/// here on (up to the counters, which no property reads except through `always` checks done on
/// each state).
pub fn fingerprint(sim: &Simulation) -> u64 {
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
    fnv1a(s.as_bytes())
}
