//! The cost model: simulated time per architectural event.
//!
//! No public per-instruction cycle counts exist for the SNP instructions (see
//! `sev-snp-semantics.md` §6), so every default is marked `unmeasured`; the defaults are of the
//! order of published exit and instruction costs and are meant to be calibrated against the
//! end-to-end figures of design §9. Every parameter is named so a scenario can override it.

use std::collections::BTreeMap;

/// One cost parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CostItem {
    /// The name (a metric key under `sim_time_by_item` and a scenario override key).
    pub name: &'static str,
    /// Nanoseconds per event.
    pub ns: u64,
    /// Where the default comes from.
    pub provenance: &'static str,
}

/// The default cost parameters.
pub const DEFAULTS: &[CostItem] = &[
    CostItem {
        name: "npf_exit",
        ns: 1_500,
        provenance: "unmeasured: VMEXIT+VMRUN round trip plus KVM MMU fault",
    },
    CostItem { name: "vmgexit", ns: 1_000, provenance: "unmeasured: GHCB VMGEXIT round trip" },
    CostItem {
        name: "userspace_exit",
        ns: 10_000,
        provenance: "unmeasured: KVM_RUN return to the VMM and back",
    },
    CostItem { name: "rmpupdate", ns: 500, provenance: "unmeasured" },
    CostItem { name: "psmash", ns: 500, provenance: "unmeasured" },
    CostItem { name: "pvalidate", ns: 300, provenance: "unmeasured" },
    CostItem { name: "rmpadjust", ns: 300, provenance: "unmeasured" },
    CostItem { name: "host_split", ns: 5_000, provenance: "unmeasured: __split_huge_pmd plus TLB shootdown" },
    CostItem { name: "direct_map_split", ns: 5_000, provenance: "unmeasured: set_memory_4k plus TLB flush" },
    CostItem { name: "npt_demotion", ns: 2_000, provenance: "unmeasured: NPT split or zap plus TLB flush" },
];

/// Event counts to price, by cost item name.
pub type Counts = BTreeMap<&'static str, u64>;

/// Price `counts`: total nanoseconds and the breakdown by item.
pub fn price(counts: &Counts) -> (u64, BTreeMap<&'static str, u64>) {
    let mut by_item = BTreeMap::new();
    let mut total = 0u64;
    for item in DEFAULTS {
        let ns = counts.get(item.name).copied().unwrap_or(0).saturating_mul(item.ns);
        total = total.saturating_add(ns);
        by_item.insert(item.name, ns);
    }
    (total, by_item)
}
