//! The metrics of a run. Field names are the contract: JSON output uses them as keys, and
//! scenario expectations name them (nested ones with a dot: `exits.npf`, `npt_coverage.2m`).

use std::collections::BTreeMap;

use serde::Serialize;
use snpsim_guest::Guest;

use snpsim_kvm::stats::exit;

use crate::cost::{self, CostTable, Counts};
use crate::machine::Machine;

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

/// The `races` metric's members.
fn races(r: snpsim_kvm::Races) -> BTreeMap<String, u64> {
    r.members().into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

/// Gather the metrics of a run (`machine` is `None` when the VM was never created), priced with the
/// default cost parameters.
pub fn collect(machine: Option<&Machine>, guest: &Guest, invariant_violations: u64) -> Metrics {
    collect_with(machine, guest, invariant_violations, &CostTable::default())
}

/// The events the cost model prices, counted from the machine and the guest.
pub fn cost_counts(mc: &Machine, guest: &Guest) -> Counts {
    use cost::item;
    let k = &mc.kvm.stats;
    let h = &mc.host.stats;
    let insn = &mc.rmp.counts;
    let npt = &mc.kvm.npt.stats;
    let mut c = Counts::default();
    // One pass over the (five) exit reasons: this runs after every generated action.
    for (&reason, &n) in &k.exits {
        // #NPF exits are priced from `k.npf` below (the same count).
        if reason != exit::NPF
            && let Some(i) = cost::exit_item(reason)
        {
            c.add(i, n);
        }
    }
    c.add(item::NPF_EXIT, k.npf);
    c.add(item::RMPUPDATE_4K, insn.rmpupdate_4k);
    c.add(item::RMPUPDATE_2M, insn.rmpupdate_2m);
    c.add(item::PSMASH, insn.psmash);
    c.add(item::PVALIDATE_4K, insn.pvalidate_4k);
    c.add(item::PVALIDATE_2M, insn.pvalidate_2m);
    c.add(item::RMPADJUST, insn.rmpadjust);
    c.add(item::NPT_MAP, npt.mapped);
    c.add(item::NPT_ZAP, npt.zapped + npt.split);
    c.add(item::TLB_SHOOTDOWN, npt.flushes + h.host_splits + h.direct_map_flushes);
    c.add(item::HOST_SPLIT, h.host_splits);
    c.add(item::DIRECT_MAP_SPLIT, h.direct_map_splits);
    let kib_per_page = snpsim_defs::PAGE_SIZE_4K / 1024;
    // The host clears every page it hands the guest, in every era, when it first populates it:
    // guest_memfd folios on allocation (`clear_highpage` of a folio not yet up to date,
    // virt/kvm/guest_memfd.c), the VMM's VMA when preallocated at VM start (legacy:
    // `-mem-prealloc`, hugetlbfs, THP "always") or on first touch (the gmem era's shared side:
    // `do_anonymous_page`, `clear_huge_page`). Pricing only guest_memfd would make `sim_time`
    // incomparable across eras.
    let allocated = mc.host.gmem.as_ref().map_or(0, |g| g.allocated_pages);
    let populated = mc.host.vma.populated_pages();
    c.add(item::PAGE_CLEAR_KIB, (allocated + populated) * kib_per_page);
    // save-restore copies each data page out and back.
    c.add(item::PAGE_COPY_KIB, guest.stats.pages_saved * 2 * kib_per_page);
    c.add(item::GUEST_ACCESS_4K, mc.accesses[0]);
    c.add(item::GUEST_ACCESS_2M, mc.accesses[1]);
    c.add(item::GUEST_ACCESS_1G, mc.accesses[2]);
    c.add(item::HOST_WRITE, mc.host_writes);
    c
}

/// Simulated time so far: [`cost_counts`] priced with `costs`, without building the metrics.
pub fn sim_time_ns(machine: Option<&Machine>, guest: &Guest, costs: &CostTable) -> u64 {
    machine.map_or(0, |mc| costs.total(&cost_counts(mc, guest)))
}

/// [`collect`] with the cost parameters `costs` (a scenario's `[cost]` overrides applied).
pub fn collect_with(
    machine: Option<&Machine>,
    guest: &Guest,
    invariant_violations: u64,
    costs: &CostTable,
) -> Metrics {
    let mut m = Metrics {
        pvalidate: guest.stats.pvalidate,
        rmpadjust: guest.stats.rmpadjust,
        data_loss_pages: guest.stats.data_loss_pages,
        recoalesced: guest.stats.recoalesced,
        invariant_violations,
        // Every member of every family is present (zeros, not absent), so that a table built from
        // the JSON has the same columns for every run.
        exits: exit::ALL.iter().map(|r| ((*r).to_string(), 0)).collect(),
        npt_demotions: snpsim_kvm::stats::demotion_names().map(|n| (n, 0)).collect(),
        races: races(snpsim_kvm::Races::default()),
        ..Metrics::default()
    };
    let Some(mc) = machine else {
        m.sim_time_by_item = cost::ALL[..cost::PRICED].iter().map(|c| (c.name.to_string(), 0)).collect();
        return m;
    };
    let k = &mc.kvm.stats;
    let h = &mc.host.stats;
    m.rmp_npf = k.rmp_npf;
    m.rmp_npf_sizem = k.rmp_npf_sizem;
    m.npf = k.npf;
    m.npt_demotions.extend(k.npt_demotions.iter().map(|(pair, n)| (pair.clone(), *n)));
    m.npt_demotions_needless = k.npt_demotions_needless;
    m.host_splits = h.host_splits;
    m.host_splits_needed = h.host_splits_needed;
    m.host_splits_needless = h.host_splits_needless;
    m.direct_map_splits = h.direct_map_splits;
    m.psmash = k.psmash;
    m.rmpupdate = k.rmpupdate;
    m.psc_requests = k.psc_requests;
    m.psc_pages = k.psc_pages;
    m.psc_failed = k.psc_failed;
    m.implicit_conversions = k.implicit_conversions;
    m.exits = k.exits.iter().map(|(r, n)| ((*r).to_string(), *n)).collect();
    m.races = races(k.races);
    m.sigbus = h.sigbus;
    m.efault = h.efault;
    m.kernel_oops = h.kernel_oops;
    m.host_fault_loops = h.host_fault_loops;
    m.kvm_warnings = k.kvm_warnings;
    m.false_negatives = mc.findings.false_negatives;
    m.npt_coverage = Coverage::from_pages(mc.kvm.npt.coverage(), mc.kvm.pages());
    m.huge_capable = huge_capable(mc);
    let (total, by_item) = costs.price(&cost_counts(mc, guest));
    m.sim_time_ns = total;
    m.sim_time_by_item = by_item.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    m
}

/// The share of guest memory that could still be mapped at 2M or more (0 for a guest without
/// memory).
pub fn huge_capable(mc: &Machine) -> f64 {
    let pages = mc.kvm.pages();
    if pages == 0 {
        return 0.0;
    }
    mc.kvm.huge_capable_pages(&mc.host, mc.rmp.inner()) as f64 / pages as f64
}
