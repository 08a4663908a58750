//! The metrics of a run. Field names are the contract: JSON output uses them as keys, and
//! scenario expectations name them (nested ones with a dot: `exits.npf`, `npt_coverage.2m`).

use std::collections::BTreeMap;

use serde::Serialize;

/// The NPT coverage: the share of guest memory (the memslot's pages) mapped by NPT leaves of each
/// size, and the share not mapped; the four sum to 1. Shares of guest memory rather than of mapped
/// memory, so that a policy that zaps leaves (memory left unmapped until the guest touches it
/// again) does not look better than one that splits them in place.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Coverage {
    /// Share mapped by 4K leaves.
    #[serde(rename = "4k")]
    pub k4: f64,
    /// Share mapped by 2M leaves.
    #[serde(rename = "2m")]
    pub m2: f64,
    /// Share mapped by 1G leaves.
    #[serde(rename = "1g")]
    pub g1: f64,
    /// Share not mapped.
    pub unmapped: f64,
}

impl Default for Coverage {
    /// Nothing mapped.
    fn default() -> Self {
        Coverage { k4: 0.0, m2: 0.0, g1: 0.0, unmapped: 1.0 }
    }
}

impl Coverage {
    /// The member names of the `npt_coverage` metric (its serialized field names).
    pub const LEVELS: [&'static str; 4] = ["4k", "2m", "1g", "unmapped"];

    /// Shares of `guest_pages` from the pages mapped at `[4K, 2M, 1G]` (nothing mapped when the
    /// guest has no memory).
    pub fn from_pages(c: [u64; 3], guest_pages: u64) -> Self {
        if guest_pages == 0 {
            return Coverage::default();
        }
        let total = guest_pages as f64;
        let mapped = c[0].saturating_add(c[1]).saturating_add(c[2]);
        Coverage {
            k4: c[0] as f64 / total,
            m2: c[1] as f64 / total,
            g1: c[2] as f64 / total,
            unmapped: guest_pages.saturating_sub(mapped) as f64 / total,
        }
    }
}

/// Every metric of one run; every key is present even when zero.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Metrics {
    /// #NPF exits with the RMP bit.
    pub rmp_npf: u64,
    /// #NPF exits with RMP and SIZEM.
    pub rmp_npf_sizem: u64,
    /// #NPF exits of any kind.
    pub npf: u64,
    /// NPT demotions by `from_to` size.
    pub npt_demotions: BTreeMap<String, u64>,
    /// Demotions deeper than needed.
    pub npt_demotions_needless: u64,
    /// Host huge mappings split.
    pub host_splits: u64,
    /// Host splits an access needed: it would have taken an RMP #PF through the replaced mapping
    /// (measured by counterfactual, `snpsim_host::SplitLedger`).
    pub host_splits_needed: u64,
    /// Host splits no access needed: `host_splits` − `host_splits_needed`.
    pub host_splits_needless: u64,
    /// Direct-map leaves split.
    pub direct_map_splits: u64,
    /// PSMASH executed.
    pub psmash: u64,
    /// RMPUPDATE executed.
    pub rmpupdate: u64,
    /// PVALIDATE executed.
    pub pvalidate: u64,
    /// RMPADJUST executed.
    pub rmpadjust: u64,
    /// PSC requests (VMGEXITs).
    pub psc_requests: u64,
    /// Pages named by PSC requests.
    pub psc_pages: u64,
    /// PSC requests answered with an error.
    pub psc_failed: u64,
    /// Conversions caused by guest accesses in the other state.
    pub implicit_conversions: u64,
    /// Exits by reason.
    pub exits: BTreeMap<String, u64>,
    /// Races between vCPUs that KVM's retry loops absorbed (interleaved runs; all zero in
    /// sequential ones): `psmash_fail_inuse`, `rmpupdate_fail_inuse`, `psmash_already_4k`,
    /// `spurious_npf`.
    pub races: BTreeMap<String, u64>,
    /// VMM writes that got SIGBUS.
    pub sigbus: u64,
    /// Kernel uaccess writes that got -EFAULT.
    pub efault: u64,
    /// Kernel direct-map writes that took an RMP #PF (an oops in Linux).
    pub kernel_oops: u64,
    /// Host writes whose RMP #PF handler retried without progress (`host_hang`).
    pub host_fault_loops: u64,
    /// Conditions upstream KVM only WARNs about and goes on from (a failed PSMASH in
    /// `sev_handle_rmp_fault`, a failed PSMASH or RMPUPDATE in `sev_gmem_invalidate`).
    pub kvm_warnings: u64,
    /// Data pages found scrambled or stale on a guest read.
    pub data_loss_pages: u64,
    /// Accesses that completed but should have faulted.
    pub false_negatives: u64,
    /// Distinct invariant violations.
    pub invariant_violations: u64,
    /// 2M regions the guest re-coalesced.
    pub recoalesced: u64,
    /// NPT coverage at the end of the run (shares of guest memory).
    pub npt_coverage: Coverage,
    /// Share of guest memory that could still be mapped by NPT leaves of 2M or more at the end of
    /// the run: its backing can hold one and its RMP entry allows one
    /// (`snpsim_kvm::Kvm::huge_capable`).
    pub huge_capable: f64,
    /// Simulated time.
    pub sim_time_ns: u64,
    /// Simulated time by cost item.
    pub sim_time_by_item: BTreeMap<String, u64>,
}
