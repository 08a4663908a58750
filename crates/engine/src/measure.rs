//! Measuring a run: the metrics gathered from the machine and the guest, and the simulated time
//! the cost model prices from their counts.

use std::collections::BTreeMap;

use snpsim_guest::Guest;
use snpsim_hw::RmpModel;
use snpsim_kvm::stats::exit;

use crate::cost::{self, CostTable, Counts};
use crate::machine::Machine;
use crate::metrics::{Coverage, Metrics};

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
    let allocated = mc.host.gmem.as_ref().map_or(0, |g| g.allocated_pages)
        + mc.host.gmem_hugetlb.as_ref().map_or(0, |g| g.allocated_pages);
    let populated = mc.host.vma.populated_pages();
    c.add(item::PAGE_CLEAR_KIB, (allocated + populated) * kib_per_page);
    // save-restore copies each data page out and back.
    c.add(item::PAGE_COPY_KIB, guest.stats.pages_saved * 2 * kib_per_page);
    c.add(item::GUEST_ACCESS_4K, mc.accesses[0]);
    c.add(item::GUEST_ACCESS_2M, mc.accesses[1]);
    c.add(item::GUEST_ACCESS_1G, mc.accesses[2]);
    c.add(item::HOST_WRITE, mc.host_writes);
    // RMPOPT runs only (`[machine] rmpopt`): the host counts RMP checks only then (S8), and the
    // global flush of every RMPUPDATE is charged only then, so runs without RMPOPT keep their
    // prices (`docs/calibration.md`, "RMPOPT items").
    if mc.rmp.rmpopt_enabled() {
        c.add(item::HOST_WRITE_RMP_CHECK, h.rmp_checks);
        c.add(item::RMPUPDATE_GLOBAL_FLUSH, insn.rmpupdate_4k + insn.rmpupdate_2m);
    }
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
    if let Some(file) = &mc.host.gmem_hugetlb {
        m.folio_splits = file.stats.folio_splits;
        m.folio_merges = file.stats.folio_merges;
        m.conversions_refused = file.stats.conversions_refused;
    }
    m.rmpopt_coverage = mc.rmp.rmpopt_coverage();
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
