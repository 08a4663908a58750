//! The host kernel's memory as snpsim models it.
//!
//! Host RAM and its allocator ([`memory`]), the VMM's guest-memory VMA with its backing and mapping
//! levels ([`vma`]), the kernel direct map ([`direct_map`]), guest_memfd ([`gmem`], and with in-place
//! conversion on HugeTLB folios [`gmem_hugetlb`]) and host writes
//! with the RMP #PF handling of the 2021 RFC ([`access`]). Hardware checks come from `snpsim-hw`;
//! nothing here knows KVM: mapping changes are reported as [`Invalidation`]s for an MMU-notifier
//! listener to act on.

pub mod access;
pub mod blocks;
pub mod direct_map;
pub mod dirty;
pub mod gmem;
pub mod gmem_hugetlb;
pub mod memory;
pub mod rmpopt;
pub mod splits;
pub mod vma;

pub use access::{HostVia, HostWriteOutcome, UnsplittableRmpFault};
pub use blocks::BlockMap;
pub use direct_map::DirectMap;
pub use dirty::DirtyLog;
pub use gmem::{Folio, Gmem, RangeBacking};
pub use gmem_hugetlb::{GmemHugetlb, GmemHugetlbStats, HugetlbFolio, PrivateAccess};
pub use memory::{Allocation, HostMemory};
pub use splits::SplitLedger;
pub use vma::{GuestVma, Invalidation, VmaBacking};

use snpsim_defs::{Hva, PageSize, Pfn};
use snpsim_hw::Geometry;

/// Errors of host memory operations. A step's result in a trace names the error in snake case
/// (`out_of_memory`), derived from the variant's name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum HostError {
    /// Host memory cannot satisfy an allocation.
    #[error("host memory exhausted allocating {requested} pages")]
    OutOfMemory {
        /// Pages requested.
        requested: u64,
    },
    /// A frame was freed twice (it would be handed out twice).
    #[error("frame {pfn} freed twice")]
    DoubleFree {
        /// The frame.
        pfn: Pfn,
    },
    /// hugetlbfs memory must be a whole number of its pages.
    #[error("hugetlbfs VMA of {pages} pages is not a multiple of its {unit}-page huge page")]
    HugetlbfsSize {
        /// VMA pages.
        pages: u64,
        /// Pages per huge page.
        unit: u64,
    },
    /// The backing cannot split a huge mapping.
    #[error("{} mappings cannot be split", backing.name())]
    Unsplittable {
        /// The backing.
        backing: VmaBacking,
    },
    /// A page offset outside the VMA.
    #[error("page offset {offset} is outside the guest VMA")]
    OutsideVma {
        /// The offset.
        offset: u64,
    },
    /// A page offset outside the guest_memfd file.
    #[error("page offset {offset} is outside the guest_memfd file")]
    OutsideGmem {
        /// The offset.
        offset: u64,
    },
    /// An in-place conversion was refused: a page of the range holds an unexpected extra
    /// reference (the in-place conversion series' refcount check; the ioctl fails).
    #[error("guest_memfd page {offset} holds {refs} extra reference(s): conversion refused")]
    ExtraReference {
        /// The first referenced offset.
        offset: u64,
        /// Its extra references.
        refs: u32,
    },
    /// An extra reference was dropped that was never taken.
    #[error("guest_memfd page {offset} holds no extra reference to drop")]
    NoReference {
        /// The offset.
        offset: u64,
    },
    /// A host fault on a private page of an in-place guest_memfd (VM_FAULT_SIGBUS).
    #[error("guest_memfd page {offset} is private: the host's fault on it is SIGBUS")]
    PrivateGmemPage {
        /// The offset.
        offset: u64,
    },
}

/// Counters of host-side events, named as the metrics that report them.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct HostStats {
    /// Huge host mappings split to 4K, for any reason.
    pub host_splits: u64,
    /// Host splits an access needed: it would have taken an RMP #PF through the old mapping
    /// ([`SplitLedger`]).
    pub host_splits_needed: u64,
    /// Host splits no access has needed (so far; final at the end of a run): `host_splits` minus
    /// `host_splits_needed`.
    pub host_splits_needless: u64,
    /// Direct-map leaves split before 4K RMPUPDATEs.
    pub direct_map_splits: u64,
    /// Direct-map split operations (each splits one or two leaves and flushes the TLB once).
    pub direct_map_flushes: u64,
    /// VMM writes that ended in SIGBUS.
    pub sigbus: u64,
    /// Kernel uaccess writes that returned -EFAULT.
    pub efault: u64,
    /// Kernel direct-map writes that took an RMP #PF.
    pub kernel_oops: u64,
    /// Host writes whose RMP #PF re-faulted without progress ([`HostWriteOutcome::Hang`]).
    pub host_fault_loops: u64,
    /// With RMPOPT enabled, host write attempts RMP-checked: the frame is in the RMP and its
    /// region not marked (S8; each retry after a split counts again).
    pub rmp_checks: u64,
    /// With RMPOPT enabled, host write attempts whose RMP check was skipped: the frame's region
    /// is marked (S8, O6).
    pub rmp_checks_skipped: u64,
    /// RMPOPT whole-memory scans run by the guest_memfd teardown hook (S8, O7).
    pub rmpopt_rescans: u64,
}

/// The derived form, with the RMPOPT counters printed only once RMPOPT has counted something:
/// they stay zero while RMPOPT is disabled (S8), so such a run prints, and its trace's
/// `state_hash` fingerprints, exactly as before RMPOPT existed.
impl core::fmt::Debug for HostStats {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut d = f.debug_struct("HostStats");
        d.field("host_splits", &self.host_splits)
            .field("host_splits_needed", &self.host_splits_needed)
            .field("host_splits_needless", &self.host_splits_needless)
            .field("direct_map_splits", &self.direct_map_splits)
            .field("direct_map_flushes", &self.direct_map_flushes)
            .field("sigbus", &self.sigbus)
            .field("efault", &self.efault)
            .field("kernel_oops", &self.kernel_oops)
            .field("host_fault_loops", &self.host_fault_loops);
        if self.rmp_checks != 0 || self.rmp_checks_skipped != 0 || self.rmpopt_rescans != 0 {
            d.field("rmp_checks", &self.rmp_checks)
                .field("rmp_checks_skipped", &self.rmp_checks_skipped)
                .field("rmpopt_rescans", &self.rmpopt_rescans);
        }
        d.finish()
    }
}

/// The host side of one VM: RAM, direct map, the VMM's guest-memory VMA and, in the gmem era, the
/// guest_memfd file holding private memory. Its `Debug` form (which state hashes read) shows the
/// in-place file only when there is one, so a host without it prints as before that file existed.
#[derive(Clone)]
pub struct Host {
    /// Host RAM.
    pub memory: HostMemory,
    /// The kernel direct map.
    pub direct_map: DirectMap,
    /// The VMM's guest-memory VMA (in the gmem era: the shared side).
    pub vma: GuestVma,
    /// guest_memfd (gmem era only).
    pub gmem: Option<Gmem>,
    /// guest_memfd with in-place conversion, holding shared and private memory (in place of
    /// `gmem`; [`Host::new_in_place`]).
    pub gmem_hugetlb: Option<GmemHugetlb>,
    /// Event counters.
    pub stats: HostStats,
    /// The splits no access has needed yet.
    pub splits: SplitLedger,
    /// A planted bug, for checker tests (`snpsim_hw::Mutant`).
    pub mutant: Option<snpsim_hw::Mutant>,
    /// What the RMP #PF handler does with a mapping it cannot split (set from the policy).
    pub unsplittable_rmp_fault: UnsplittableRmpFault,
}

impl core::fmt::Debug for Host {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut d = f.debug_struct("Host");
        d.field("memory", &self.memory)
            .field("direct_map", &self.direct_map)
            .field("vma", &self.vma)
            .field("gmem", &self.gmem);
        if let Some(file) = &self.gmem_hugetlb {
            d.field("gmem_hugetlb", file);
        }
        d.field("stats", &self.stats)
            .field("splits", &self.splits)
            .field("mutant", &self.mutant)
            .field("unsplittable_rmp_fault", &self.unsplittable_rmp_fault)
            .finish()
    }
}

impl Host {
    /// A host of `host_pages` frames running one VM of `guest_pages` pages whose VMA is backed by
    /// `backing` (placed at an HVA and HPA aligned to the backing's largest page,
    /// `docs/semantics.md` S1), plus a guest_memfd with `gmem_folio` folios in the gmem era. The
    /// legacy VMA is populated at VM start; the gmem era's shared-side VMA on first touch
    /// (docs/semantics.md).
    pub fn new(
        geometry: Geometry,
        host_pages: u64,
        guest_pages: u64,
        backing: VmaBacking,
        gmem_folio: Option<PageSize>,
    ) -> Result<Self, HostError> {
        let mut memory = HostMemory::new(geometry, host_pages);
        let hva = Hva::new(geometry.bytes(PageSize::Size1G) * 64);
        let vma = if gmem_folio.is_some() {
            GuestVma::on_demand(geometry, backing, hva, guest_pages)?
        } else {
            let align = backing.page_size().max(PageSize::Size2M);
            let pfn = memory.alloc_pages(align, guest_pages)?;
            GuestVma::new(geometry, backing, hva, pfn, guest_pages)?
        };
        let gmem = gmem_folio.map(|size| Gmem::new(geometry, size, guest_pages));
        Ok(Host {
            memory,
            direct_map: DirectMap::new(geometry, host_pages),
            vma,
            gmem,
            gmem_hugetlb: None,
            stats: HostStats::default(),
            splits: SplitLedger::default(),
            mutant: None,
            unsplittable_rmp_fault: UnsplittableRmpFault::Sigbus,
        })
    }

    /// Bytes of memory the host model's state takes.
    pub fn state_bytes(&self) -> usize {
        self.memory.state_bytes()
            + self.direct_map.state_bytes()
            + self.vma.state_bytes()
            + self.gmem.as_ref().map_or(0, Gmem::state_bytes)
            + self.gmem_hugetlb.as_ref().map_or(0, GmemHugetlb::state_bytes)
    }

    /// Fault in the VMA page `offset` (a no-op when the VMA is populated at VM start).
    pub fn populate_vma(&mut self, offset: u64) -> Result<(), HostError> {
        self.vma.populate(&mut self.memory, offset).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::{HostError, VmaBacking};
    use snpsim_defs::Pfn;

    /// The names traces carry (a step's result): users' scripts match them, so they must not
    /// move with a rename of a variant.
    #[test]
    fn host_errors_keep_their_trace_names() {
        let named = [
            (HostError::OutOfMemory { requested: 1 }, "out_of_memory"),
            (HostError::DoubleFree { pfn: Pfn::new(1) }, "double_free"),
            (HostError::HugetlbfsSize { pages: 1, unit: 512 }, "hugetlbfs_size"),
            (HostError::Unsplittable { backing: VmaBacking::Hugetlbfs2m }, "unsplittable"),
            (HostError::OutsideVma { offset: 1 }, "outside_vma"),
            (HostError::OutsideGmem { offset: 1 }, "outside_gmem"),
            (HostError::ExtraReference { offset: 1, refs: 1 }, "extra_reference"),
            (HostError::NoReference { offset: 1 }, "no_reference"),
            (HostError::PrivateGmemPage { offset: 1 }, "private_gmem_page"),
        ];
        for (e, name) in named {
            assert_eq!(<&str>::from(&e), name);
        }
    }
}
