//! The canonical form of a simulation's state: everything that can change what happens next, and
//! nothing that only records how the state was reached (counters, sequence numbers, versions).
//!
//! The checker identifies a state by the 128-bit XXH3 digest of this form ([`digest`]); the
//! form is written to a reused buffer, so nothing is allocated per state for it.

use std::fmt;

use snpsim_engine::Simulation;
use snpsim_guest::Platform;

/// The canonical form being written: text (`Debug`) and binary pieces.
struct Form<'a>(&'a mut Vec<u8>);

impl fmt::Write for Form<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Append the canonical form of `sim`'s state to `out`: the outcome, the RMP (its binary form,
/// [`snpsim_hw::rmp::Rmp::write_canonical`]), the NPT (leaves and uncapped leaves), KVM's memory
/// attributes, the host's VMA, direct map, guest_memfd and memory, the validation counts of
/// invariant 6, the guest's validated set and running operations, and for each page the guest
/// holds data in whether its frame still holds that data. The other components are rendered in
/// their canonical text form (`Debug`, which the stores define over their contents, not their
/// storage: `PageSet` prints runs, `Npt` leaves, whatever the representation).
/// Two states with equal forms behave the same from here on, up to the counters, which no
/// property reads except through the flags [`crate::State`] adds.
pub fn write_canonical(sim: &Simulation, out: &mut Vec<u8>) {
    use fmt::Write as _;
    let _ = write!(Form(out), "{:?}|", sim.outcome().map(|(o, _)| o));
    if let Some(m) = sim.machine() {
        m.rmp.inner().write_canonical(out);
        let _ = write!(
            Form(out),
            "|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|{:?}|",
            m.kvm.npt,
            m.kvm.attrs,
            m.host.vma,
            m.host.direct_map,
            m.host.gmem,
            m.host.memory,
            m.validation_counts()
        );
        let g = sim.guest();
        let _ = write!(Form(out), "{:?}|{:?}|", g.validated_set(), sim.running());
        for (gfn, version) in g.held_pages() {
            let _ = write!(Form(out), "{gfn}:{},", m.read_version(gfn) == Some(version));
        }
    }
}

/// The canonical form of `sim`'s state ([`write_canonical`]).
pub fn canonical(sim: &Simulation) -> Vec<u8> {
    let mut out = Vec::new();
    write_canonical(sim, &mut out);
    out
}

/// The XXH3-128 digest of the canonical form of `sim`'s state followed by `flags`: equal for
/// equal forms; for distinct forms equal with probability 2⁻¹²⁸ per pair (a check of 10⁶
/// states has a chance under 10⁻²⁶ of merging any two). The form is written to a buffer kept
/// per thread, then hashed in one call.
pub fn digest(sim: &Simulation, flags: u8) -> u128 {
    thread_local! {
        static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUFFER.with_borrow_mut(|out| {
        out.clear();
        write_canonical(sim, out);
        out.push(flags);
        xxhash_rust::xxh3::xxh3_128(out)
    })
}

#[cfg(test)]
mod tests {
    use snpsim_engine::engine::MemoryBacking;
    use snpsim_guest::Granularity;
    use snpsim_host::VmaBacking;

    use super::*;
    use crate::{CheckSetup, initial_simulation};

    #[test]
    fn the_streamed_digest_is_the_digest_of_the_canonical_bytes() {
        let setup = CheckSetup {
            policy: snpsim_kvm::policy::by_name("npt-demote").unwrap(),
            backing: MemoryBacking::Vma(VmaBacking::Thp),
            granularity: Granularity::K4,
            depth: 1,
            mutant: None,
            vcpus: 2,
            npt_level_follows_rmp: None,
        };
        let sim = initial_simulation(&setup, None).unwrap();
        let mut bytes = canonical(&sim);
        assert!(bytes.len() > 100, "{} bytes", bytes.len());
        bytes.push(5);
        assert_eq!(digest(&sim, 5), xxhash_rust::xxh3::xxh3_128(&bytes));
        assert_ne!(digest(&sim, 5), digest(&sim, 4));
    }
}
