//! The cost model: simulated time per architectural event (`docs/semantics.md` E5).
//!
//! Every cost is a named parameter with a unit, a default and a provenance line. No public
//! per-instruction cycle counts exist for the SNP instructions, nor has a measured VMGEXIT or RMP
//! #NPF round trip been published, so most defaults are marked `unmeasured`;
//! four published end-to-end figures calibrate them (`docs/calibration.md`): 1024 extra #NPF exits
//! per 4 MiB accepted with 4K guest_memfd (a count), eager acceptance ≈ 1.5 GiB/s per vCPU,
//! lazy vs eager time-to-ready ≈ 2.5× at 4 GiB and ≈ 4× at 64 GiB, and ≈ +40 ns per memory access
//! with 4K instead of 2M private backing. Parameters marked `fitted` were chosen to reproduce one of
//! those figures; the calibration page says which and how.
//!
//! A scenario overrides any parameter in a `[cost]` table (`pvalidate_4k = 900`), in the unit the
//! parameter is listed with; unknown names are rejected with the accepted list.
//!
//! Simulated time (`sim_time_ns`) is the sum over [`PRICED`] items of count × cost: the time of the
//! events the model simulates — guest memory accesses (TLB-reach sensitive), exits, RMP
//! instructions, NPT and host page-table work, page clearing and copying. It excludes the guest's
//! own computation outside memory accesses, which is the same for every policy and backing. The
//! two [`READY`] items model that part of a boot (the kernel's work outside the memory model) and
//! enter only a workload's time-to-ready, never `sim_time_ns`.

use std::collections::BTreeMap;

/// What a parameter's count measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unit {
    /// Nanoseconds per event.
    PerEvent,
    /// Nanoseconds per KiB processed.
    PerKib,
    /// Nanoseconds, once per boot (time-to-ready only).
    PerBoot,
    /// Nanoseconds per GiB of guest memory, once per boot (time-to-ready only).
    PerGib,
}

impl Unit {
    /// The unit as written in listings: `ns`, `ns/KiB`, `ns/boot`, `ns/GiB`.
    pub const fn name(self) -> &'static str {
        match self {
            Unit::PerEvent => "ns",
            Unit::PerKib => "ns/KiB",
            Unit::PerBoot => "ns/boot",
            Unit::PerGib => "ns/GiB",
        }
    }
}

/// One cost parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CostItem {
    /// The name: a key of `sim_time_by_item`, `sim_time_ns.NAME` in expectations, and `[cost]`.
    pub name: &'static str,
    /// Default nanoseconds per unit.
    pub ns: u64,
    /// What one unit is.
    pub unit: Unit,
    /// What is priced.
    pub what: &'static str,
    /// Where the default comes from: `unmeasured: ...`, `measured: ...` or `fitted: ...`.
    pub provenance: &'static str,
}

/// The index of each parameter in [`ALL`] (and in a [`CostTable`]).
#[allow(missing_docs)]
pub mod item {
    pub const VMGEXIT: usize = 0;
    pub const NPF_EXIT: usize = 1;
    pub const USERSPACE_EXIT: usize = 2;
    pub const RMPUPDATE_4K: usize = 3;
    pub const RMPUPDATE_2M: usize = 4;
    pub const PSMASH: usize = 5;
    pub const PVALIDATE_4K: usize = 6;
    pub const PVALIDATE_2M: usize = 7;
    pub const RMPADJUST: usize = 8;
    pub const NPT_MAP: usize = 9;
    pub const NPT_ZAP: usize = 10;
    pub const TLB_SHOOTDOWN: usize = 11;
    pub const HOST_SPLIT: usize = 12;
    pub const DIRECT_MAP_SPLIT: usize = 13;
    pub const PAGE_CLEAR_KIB: usize = 14;
    pub const PAGE_COPY_KIB: usize = 15;
    pub const GUEST_ACCESS_4K: usize = 16;
    pub const GUEST_ACCESS_2M: usize = 17;
    pub const GUEST_ACCESS_1G: usize = 18;
    pub const HOST_WRITE: usize = 19;
    pub const HOST_WRITE_RMP_CHECK: usize = 20;
    pub const RMPUPDATE_GLOBAL_FLUSH: usize = 21;
    pub const BOOT_FIXED: usize = 22;
    pub const BOOT_PER_GIB: usize = 23;
}

/// How many parameters there are.
pub const COUNT: usize = 24;

/// The items priced into `sim_time_ns` (all but the time-to-ready ones).
pub const PRICED: usize = item::BOOT_FIXED;

/// Every parameter, in [`item`] order. The first [`PRICED`] make up `sim_time_ns`; the rest
/// ([`READY`]) only a workload's time-to-ready.
pub const ALL: [CostItem; COUNT] = [
    CostItem {
        name: "vmgexit",
        ns: 1_000,
        unit: Unit::PerEvent,
        what: "VMGEXIT round trip (guest → KVM → guest) carrying a page-state change (MSR or GHCB)",
        provenance: "unmeasured: no published SEV-SNP VMGEXIT latency; order of an SEV-ES \
                     world switch",
    },
    CostItem {
        name: "npf_exit",
        ns: 1_500,
        unit: Unit::PerEvent,
        what: "#NPF exit: VMEXIT, KVM's fault handling (excluding the work priced separately) and VMRUN",
        provenance: "unmeasured: no published RMP #NPF handling cost",
    },
    CostItem {
        name: "userspace_exit",
        ns: 10_000,
        unit: Unit::PerEvent,
        what: "exit to the VMM (KVM_HC_MAP_GPA_RANGE, KVM_EXIT_MEMORY_FAULT): KVM_RUN returns, the VMM \
               sets memory attributes and discards or pre-faults, KVM_RUN again",
        provenance: "unmeasured",
    },
    CostItem {
        name: "rmpupdate_4k",
        ns: 965,
        unit: Unit::PerEvent,
        what: "RMPUPDATE of a 4K entry (host)",
        provenance: "fitted: with pvalidate_4k, to eager acceptance at 1.5 GiB/s per vCPU on gmem-4k \
                     (docs/calibration.md); no per-instruction figure is public",
    },
    CostItem {
        name: "rmpupdate_2m",
        ns: 1_500,
        unit: Unit::PerEvent,
        what: "RMPUPDATE of a 2M entry (host)",
        provenance: "unmeasured: assumed 1.5× the 4K update (one entry written, the region checked)",
    },
    CostItem {
        name: "psmash",
        ns: 1_500,
        unit: Unit::PerEvent,
        what: "PSMASH of a 2M entry into 512 4K entries (host)",
        provenance: "unmeasured: assumed as a 2M RMPUPDATE",
    },
    CostItem {
        name: "pvalidate_4k",
        ns: 965,
        unit: Unit::PerEvent,
        what: "PVALIDATE of a 4K page that completes (a faulting attempt costs its #NPF exit instead)",
        provenance: "fitted: with rmpupdate_4k, to eager acceptance at 1.5 GiB/s per vCPU on gmem-4k \
                     (docs/calibration.md)",
    },
    CostItem {
        name: "pvalidate_2m",
        ns: 1_500,
        unit: Unit::PerEvent,
        what: "PVALIDATE of a 2M page that completes (FAIL_SIZEMISMATCH included)",
        provenance: "unmeasured: assumed 1.5× the 4K form (one entry validated, the region checked)",
    },
    CostItem {
        name: "rmpadjust",
        ns: 965,
        unit: Unit::PerEvent,
        what: "RMPADJUST that completes",
        provenance: "unmeasured: assumed as a 4K PVALIDATE",
    },
    CostItem {
        name: "npt_map",
        ns: 200,
        unit: Unit::PerEvent,
        what: "KVM installs one NPT leaf (on a fault or a pre-fault)",
        provenance: "unmeasured",
    },
    CostItem {
        name: "npt_zap",
        ns: 100,
        unit: Unit::PerEvent,
        what: "one NPT leaf zapped or split in place (conversion, MMU notifier, fault resolution)",
        provenance: "unmeasured",
    },
    CostItem {
        name: "tlb_shootdown",
        ns: 2_000,
        unit: Unit::PerEvent,
        what: "one TLB flush after an NPT zap or demotion, a THP split or a direct-map split",
        provenance: "unmeasured: order of a flush IPI round trip",
    },
    CostItem {
        name: "host_split",
        ns: 3_000,
        unit: Unit::PerEvent,
        what: "the host splits a THP mapping to 4K (__split_huge_pmd), flush excluded",
        provenance: "unmeasured",
    },
    CostItem {
        name: "direct_map_split",
        ns: 3_000,
        unit: Unit::PerEvent,
        what: "one kernel direct-map leaf split (set_memory_4k), flush excluded",
        provenance: "unmeasured",
    },
    CostItem {
        name: "page_clear_kib",
        ns: 100,
        unit: Unit::PerKib,
        what: "the host clears memory it hands to the guest, when first populated: guest_memfd folios \
               on allocation, the VMM's VMA at VM start (legacy preallocation) or on first touch \
               (the gmem era's shared side)",
        provenance: "unmeasured: ≈ 10 GB/s, the order of a server core's clear_page bandwidth",
    },
    CostItem {
        name: "page_copy_kib",
        ns: 200,
        unit: Unit::PerKib,
        what: "the guest copies data out and back around a save-restore re-coalesce",
        provenance: "unmeasured: ≈ 5 GB/s memcpy",
    },
    CostItem {
        name: "guest_access_4k",
        ns: 169,
        unit: Unit::PerEvent,
        what: "a guest memory access (one `access` step) through a 4K NPT leaf",
        provenance: "measured: MLC idle latency 169.3 ns in an SNP guest on 4K guest_memfd (AMDSEV issue \
                     225)",
    },
    CostItem {
        name: "guest_access_2m",
        ns: 129,
        unit: Unit::PerEvent,
        what: "a guest memory access through a 2M NPT leaf",
        provenance: "measured: ≈ 40 ns below the 4K figure with 2M THP backing (AMDSEV issue 225)",
    },
    CostItem {
        name: "guest_access_1g",
        ns: 125,
        unit: Unit::PerEvent,
        what: "a guest memory access through a 1G NPT leaf",
        provenance: "unmeasured: assumed slightly below the 2M figure (fewer nested walk levels)",
    },
    CostItem {
        name: "host_write",
        ns: 500,
        unit: Unit::PerEvent,
        what: "a host write to a guest page (VMM, get/put_user or the direct map), completed or not",
        provenance: "unmeasured",
    },
    CostItem {
        name: "host_write_rmp_check",
        ns: 100,
        unit: Unit::PerEvent,
        what: "with RMPOPT enabled ([machine] rmpopt), the RMP check of a host write attempt to a 1 GiB \
               region RMPOPT has not marked (writes to marked regions skip it: RMPOPT v2, A. Kalra, \
               2 Mar 2026); without RMPOPT every check is part of host_write and this item is zero",
        provenance: "unmeasured: assumed one uncached RMP-entry read (≈ 100 ns, a DRAM access); no \
                     per-check figure is public",
    },
    CostItem {
        name: "rmpupdate_global_flush",
        ns: 2_000,
        unit: Unit::PerEvent,
        what: "with RMPOPT enabled, the global TLB flush on all cores that every RMPUPDATE triggers \
               (Bagia et al. 2025, doi:10.1145/3768725.3768727), beyond the issuing core's own \
               latency (which the fitted rmpupdate_4k holds); zero without RMPOPT",
        provenance: "unmeasured: the flush is documented (Bagia et al. 2025) but not timed; assumed \
                     as tlb_shootdown",
    },
    CostItem {
        name: "boot_fixed",
        ns: 536_000_000,
        unit: Unit::PerBoot,
        what: "a boot's work outside the memory model (firmware, kernel, init to a shell): \
               time-to-ready only",
        provenance: "fitted: with boot_per_gib, to lazy vs eager time-to-ready 2.5× at 4 GiB and 4× at \
                     64 GiB (Shutemov, unaccepted memory v8 cover letter; docs/calibration.md)",
    },
    CostItem {
        name: "boot_per_gib",
        ns: 176_900_000,
        unit: Unit::PerGib,
        what: "a boot's work outside the memory model that grows with guest memory (memmap and \
               allocator setup): time-to-ready only",
        provenance: "fitted: with boot_fixed (docs/calibration.md)",
    },
];

/// The time-to-ready parameters (not part of `sim_time_ns`).
pub const READY: &[CostItem] = ALL.split_at(PRICED).1;

/// The default parameters (every item of [`ALL`]).
pub const DEFAULTS: &[CostItem] = &ALL;

/// Nanoseconds per unit for every parameter, in [`item`] order: the defaults with a scenario's
/// `[cost]` overrides applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CostTable {
    ns: [u64; COUNT],
}

impl Default for CostTable {
    fn default() -> Self {
        let mut ns = [0; COUNT];
        for (slot, item) in ns.iter_mut().zip(ALL.iter()) {
            *slot = item.ns;
        }
        CostTable { ns }
    }
}

/// The item pricing one exit of `reason` (a key of the `exits` metric,
/// `snpsim_kvm::stats::exit`): `npf_exit` for an #NPF, `vmgexit` for a page-state-change VMGEXIT
/// (MSR or GHCB), `userspace_exit` for an exit to the VMM. `None` for a name that is no exit
/// reason.
pub fn exit_item(reason: &str) -> Option<usize> {
    use snpsim_kvm::stats::exit;
    match reason {
        exit::NPF => Some(item::NPF_EXIT),
        exit::VMGEXIT_PSC | exit::VMGEXIT_PSC_MSR => Some(item::VMGEXIT),
        exit::HYPERCALL | exit::MEMORY_FAULT => Some(item::USERSPACE_EXIT),
        _ => None,
    }
}

/// The index of the parameter called `name`.
pub fn index_of(name: &str) -> Option<usize> {
    ALL.iter().position(|c| c.name == name)
}

/// The accepted parameter names, comma-separated, for messages.
pub fn accepted_names() -> String {
    ALL.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
}

impl CostTable {
    /// Nanoseconds per unit of item `i`.
    pub fn get(&self, i: usize) -> u64 {
        self.ns[i]
    }

    /// Set the parameter called `name`; `false` if there is none.
    pub fn set(&mut self, name: &str, ns: u64) -> bool {
        match index_of(name) {
            Some(i) => {
                self.ns[i] = ns;
                true
            }
            None => false,
        }
    }

    /// Nanoseconds of `counts` (one count per priced item).
    pub fn total(&self, counts: &Counts) -> u64 {
        counts.0.iter().zip(&self.ns).fold(0u64, |t, (&c, &ns)| t.saturating_add(c.saturating_mul(ns)))
    }

    /// Price `counts`: the total and the nanoseconds of every priced item, by name.
    pub fn price(&self, counts: &Counts) -> (u64, BTreeMap<&'static str, u64>) {
        let by_item: BTreeMap<&'static str, u64> = ALL[..PRICED]
            .iter()
            .zip(counts.0.iter().zip(&self.ns))
            .map(|(c, (&n, &ns))| (c.name, n.saturating_mul(ns)))
            .collect();
        (self.total(counts), by_item)
    }

    /// A boot's time outside the memory model for a guest of `guest_bytes` (time-to-ready only).
    pub fn boot_compute_ns(&self, guest_bytes: u64) -> u64 {
        let per_gib = (u128::from(self.ns[item::BOOT_PER_GIB]) * u128::from(guest_bytes)) >> 30;
        self.ns[item::BOOT_FIXED].saturating_add(u64::try_from(per_gib).unwrap_or(u64::MAX))
    }
}

/// Event counts, one per priced item (in [`item`] order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Counts(pub [u64; PRICED]);

impl Counts {
    /// Add `n` to item `i`.
    pub fn add(&mut self, i: usize, n: u64) {
        self.0[i] = self.0[i].saturating_add(n);
    }
}

/// Price `counts` with the default parameters: total nanoseconds and the breakdown by item.
pub fn price(counts: &Counts) -> (u64, BTreeMap<&'static str, u64>) {
    CostTable::default().price(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_exit_reason_is_priced() {
        for r in snpsim_kvm::stats::exit::ALL {
            assert!(exit_item(r).is_some_and(|i| i < PRICED), "{r}");
        }
        assert_eq!(exit_item("npf"), Some(item::NPF_EXIT));
        assert_eq!(exit_item("vmgexit_psc_msr"), Some(item::VMGEXIT));
        assert_eq!(exit_item("memory_fault"), Some(item::USERSPACE_EXIT));
        assert_eq!(exit_item("npff"), None);
    }

    #[test]
    fn indices_names_and_units_agree() {
        let names: Vec<&str> = ALL.iter().map(|c| c.name).collect();
        for (i, expected) in [
            (item::VMGEXIT, "vmgexit"),
            (item::NPF_EXIT, "npf_exit"),
            (item::USERSPACE_EXIT, "userspace_exit"),
            (item::RMPUPDATE_4K, "rmpupdate_4k"),
            (item::RMPUPDATE_2M, "rmpupdate_2m"),
            (item::PSMASH, "psmash"),
            (item::PVALIDATE_4K, "pvalidate_4k"),
            (item::PVALIDATE_2M, "pvalidate_2m"),
            (item::RMPADJUST, "rmpadjust"),
            (item::NPT_MAP, "npt_map"),
            (item::NPT_ZAP, "npt_zap"),
            (item::TLB_SHOOTDOWN, "tlb_shootdown"),
            (item::HOST_SPLIT, "host_split"),
            (item::DIRECT_MAP_SPLIT, "direct_map_split"),
            (item::PAGE_CLEAR_KIB, "page_clear_kib"),
            (item::PAGE_COPY_KIB, "page_copy_kib"),
            (item::GUEST_ACCESS_4K, "guest_access_4k"),
            (item::GUEST_ACCESS_2M, "guest_access_2m"),
            (item::GUEST_ACCESS_1G, "guest_access_1g"),
            (item::HOST_WRITE, "host_write"),
            (item::HOST_WRITE_RMP_CHECK, "host_write_rmp_check"),
            (item::RMPUPDATE_GLOBAL_FLUSH, "rmpupdate_global_flush"),
            (item::BOOT_FIXED, "boot_fixed"),
            (item::BOOT_PER_GIB, "boot_per_gib"),
        ] {
            assert_eq!(names[i], expected);
        }
        let mut sorted = names.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), COUNT, "names are unique");
        assert!(ALL[..PRICED].iter().all(|c| matches!(c.unit, Unit::PerEvent | Unit::PerKib)));
        assert!(READY.iter().all(|c| matches!(c.unit, Unit::PerBoot | Unit::PerGib)));
        assert!(
            ALL.iter()
                .all(|c| ["unmeasured", "measured", "fitted"].iter().any(|p| c.provenance.starts_with(p)))
        );
    }

    #[test]
    fn pricing_and_overrides() {
        let mut counts = Counts::default();
        counts.add(item::NPF_EXIT, 2);
        counts.add(item::PAGE_CLEAR_KIB, 8);
        let mut t = CostTable::default();
        assert_eq!(t.total(&counts), 2 * 1_500 + 8 * 100);
        assert!(t.set("npf_exit", 10));
        assert!(!t.set("nope", 1));
        let (total, by_item) = t.price(&counts);
        assert_eq!(total, 20 + 800);
        assert_eq!(by_item["npf_exit"], 20);
        assert_eq!(by_item.len(), PRICED);
        assert_eq!(t.boot_compute_ns(2 << 30), 536_000_000 + 2 * 176_900_000);
    }
}
