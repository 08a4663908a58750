//! KVM-side event counters, named as the metrics that report them.

use std::collections::BTreeMap;

use snpsim_defs::PageSize;

/// Exit reasons counted in `exits` (keys of the `exits` metric).
pub mod exit {
    /// A nested page fault (#VMEXIT NPF), RMP or not.
    pub const NPF: &str = "npf";
    /// A VMGEXIT carrying an MSR-protocol page-state change.
    pub const VMGEXIT_PSC_MSR: &str = "vmgexit_psc_msr";
    /// A VMGEXIT carrying an NAE page-state-change buffer.
    pub const VMGEXIT_PSC: &str = "vmgexit_psc";
    /// KVM_EXIT_HYPERCALL (KVM_HC_MAP_GPA_RANGE) to the VMM.
    pub const HYPERCALL: &str = "hypercall";
    /// KVM_EXIT_MEMORY_FAULT to the VMM (an implicit conversion in the gmem era).
    pub const MEMORY_FAULT: &str = "memory_fault";
    /// Every reason, in report order.
    pub const ALL: [&str; 5] = [NPF, VMGEXIT_PSC_MSR, VMGEXIT_PSC, HYPERCALL, MEMORY_FAULT];
}

/// The key of an NPT demotion from a leaf of `from` to leaves of `to` in `npt_demotions`
/// (`1g_2m`, `2m_4k`, `1g_4k`): a demotion always goes to a smaller level.
pub fn demotion_name(from: PageSize, to: PageSize) -> String {
    format!("{}_{}", from.name(), to.name())
}

/// Every key [`KvmStats::demotion`] can count: each pair of levels from a larger to a smaller one
/// (the members of the `npt_demotions` metric).
pub fn demotion_names() -> impl Iterator<Item = String> {
    PageSize::ALL
        .into_iter()
        .flat_map(|from| PageSize::ALL.into_iter().filter(move |&to| to < from).map(move |to| (from, to)))
        .map(|(from, to)| demotion_name(from, to))
}

/// Counters kept by KVM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvmStats {
    /// #NPF exits of any kind.
    pub npf: u64,
    /// #NPF exits with the RMP bit.
    pub rmp_npf: u64,
    /// #NPF exits with the RMP and SIZEM bits.
    pub rmp_npf_sizem: u64,
    /// NPT leaves of ≥ 2M removed or split while resolving an RMP #NPF, by `from_to` size
    /// (`1g_2m`, `2m_4k`, `1g_4k`).
    pub npt_demotions: BTreeMap<String, u64>,
    /// Demotions deeper than the fault needed (`docs/semantics.md` K3).
    pub npt_demotions_needless: u64,
    /// PSMASH instructions executed.
    pub psmash: u64,
    /// RMPUPDATE instructions executed.
    pub rmpupdate: u64,
    /// Page-state-change requests received (one per VMGEXIT).
    pub psc_requests: u64,
    /// Pages whose state a PSC asked to change.
    pub psc_pages: u64,
    /// PSC requests answered with an error.
    pub psc_failed: u64,
    /// Conversions done because the guest accessed a page in the other state.
    pub implicit_conversions: u64,
    /// Exits by reason ([`exit`]).
    pub exits: BTreeMap<&'static str, u64>,
    /// Races between vCPUs that KVM's retry loops absorbed (interleaved runs only).
    pub races: Races,
    /// Conditions upstream KVM only WARNs about and goes on from (a failed PSMASH in
    /// `sev_handle_rmp_fault`, a failed PSMASH or RMPUPDATE in `sev_gmem_invalidate`).
    pub kvm_warnings: u64,
}

/// Races between vCPUs that KVM tolerates (the `races` metric; all zero in sequential runs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Races {
    /// PSMASH returned FAIL_INUSE (another CPU's instruction in the region was in flight) and was
    /// retried (Linux `snp_rmptable_psmash` loops on `PSMASH_FAIL_INUSE`).
    pub psmash_fail_inuse: u64,
    /// A page-state-change range whose RMPUPDATE met another CPU's in-flight instruction
    /// (FAIL_INUSE) and was retried (Linux `rmpupdate` loops on `RMPUPDATE_FAIL_OVERLAP`).
    pub rmpupdate_fail_inuse: u64,
    /// PSMASH failed because another vCPU had already smashed the entry, and the re-lookup found
    /// it 4K (`sev_handle_rmp_fault`: "the PSMASH may have raced with another process").
    pub psmash_already_4k: u64,
    /// #NPFs taken inside another CPU's in-flight window, resolved by retrying the instruction.
    pub spurious_npf: u64,
}

impl Races {
    /// The member names of the `races` metric, in report order (the field names).
    pub const NAMES: [&'static str; 4] =
        ["psmash_fail_inuse", "rmpupdate_fail_inuse", "psmash_already_4k", "spurious_npf"];

    /// Each counter with its member name, in [`Races::NAMES`] order.
    pub const fn members(&self) -> [(&'static str, u64); 4] {
        let Races { psmash_fail_inuse, rmpupdate_fail_inuse, psmash_already_4k, spurious_npf } = *self;
        [
            (Races::NAMES[0], psmash_fail_inuse),
            (Races::NAMES[1], rmpupdate_fail_inuse),
            (Races::NAMES[2], psmash_already_4k),
            (Races::NAMES[3], spurious_npf),
        ]
    }
}

impl Default for KvmStats {
    fn default() -> Self {
        KvmStats {
            npf: 0,
            rmp_npf: 0,
            rmp_npf_sizem: 0,
            npt_demotions: BTreeMap::new(),
            npt_demotions_needless: 0,
            psmash: 0,
            rmpupdate: 0,
            psc_requests: 0,
            psc_pages: 0,
            psc_failed: 0,
            implicit_conversions: 0,
            exits: exit::ALL.iter().map(|&r| (r, 0)).collect(),
            races: Races::default(),
            kvm_warnings: 0,
        }
    }
}

impl KvmStats {
    /// Count one exit.
    pub fn exit(&mut self, reason: &'static str) {
        *self.exits.entry(reason).or_default() += 1;
    }

    /// Count a demotion of a leaf from `from` to `to`.
    pub fn demotion(&mut self, from: PageSize, to: PageSize, needless: bool) {
        debug_assert!(to < from, "a demotion goes to a smaller level: {from:?} to {to:?}");
        *self.npt_demotions.entry(demotion_name(from, to)).or_default() += 1;
        if needless {
            self.npt_demotions_needless += 1;
        }
    }

    /// Total demotions.
    pub fn demotions_total(&self) -> u64 {
        self.npt_demotions.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demotion_names_are_the_three_downward_pairs() {
        // Three levels (4K, 2M, 1G) give three pairs from a larger to a smaller one.
        assert_eq!(demotion_names().collect::<Vec<_>>(), ["2m_4k", "1g_4k", "1g_2m"]);
        let mut s = KvmStats::default();
        s.demotion(PageSize::Size1G, PageSize::Size2M, false);
        assert!(demotion_names().any(|n| s.npt_demotions.contains_key(&n)));
    }

    #[test]
    fn race_members_follow_the_fields() {
        let r =
            Races { psmash_fail_inuse: 1, rmpupdate_fail_inuse: 2, psmash_already_4k: 3, spurious_npf: 4 };
        assert_eq!(
            r.members(),
            [
                ("psmash_fail_inuse", 1),
                ("rmpupdate_fail_inuse", 2),
                ("psmash_already_4k", 3),
                ("spurious_npf", 4)
            ]
        );
    }
}
