//! The backings of guest memory by name: `vm.backing` and `vm.shared_backing` of a scenario,
//! the `backing` of a trace's configuration, the columns of reports. The VMA's backings are the
//! host's ([`VmaBacking`]); a `gmem-*` backing names a guest_memfd folio size, whose shared side
//! is a VMA ([`MemoryBacking::Gmem`]).

use snpsim_defs::PageSize;
use snpsim_host::VmaBacking;
use snpsim_kvm::Era;

use crate::engine::MemoryBacking;
use crate::names::Named;

/// The host side of guest memory (`docs/semantics.md` S1–S6). In the gmem era `backing` is the
/// private side (a `gmem-*` folio size) and `shared_backing` the VMA.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantArray,
    strum::Display,
)]
pub enum Backing {
    /// Anonymous memory mapped at 4K.
    #[strum(serialize = "anon-4k")]
    Anon4k,
    /// Transparent huge pages: 2M for every 2M-aligned range, else 4K; the host can split.
    #[strum(serialize = "thp")]
    Thp,
    /// hugetlbfs with 2M pages; never split.
    #[strum(serialize = "hugetlbfs-2m")]
    Hugetlbfs2m,
    /// hugetlbfs with 1G pages; never split.
    #[strum(serialize = "hugetlbfs-1g")]
    Hugetlbfs1g,
    /// guest_memfd with 4K folios (upstream).
    #[strum(serialize = "gmem-4k")]
    Gmem4k,
    /// guest_memfd with 2M folios (the THP RFC).
    #[strum(serialize = "gmem-2m")]
    Gmem2m,
    /// guest_memfd with 1G folios (the HugeTLB RFC).
    #[strum(serialize = "gmem-1g")]
    Gmem1g,
}

impl Backing {
    /// The era whose policies can use this backing as `vm.backing`.
    pub const fn era(self) -> Era {
        if self.is_gmem() { Era::Gmem } else { Era::Legacy }
    }

    /// A `gmem-*` backing.
    pub const fn is_gmem(self) -> bool {
        matches!(self, Backing::Gmem4k | Backing::Gmem2m | Backing::Gmem1g)
    }

    /// A `hugetlbfs-*` backing.
    pub const fn is_hugetlbfs(self) -> bool {
        matches!(self, Backing::Hugetlbfs2m | Backing::Hugetlbfs1g)
    }

    /// The largest page the backing maps (host mapping level, or gmem folio size).
    pub const fn page_size(self) -> PageSize {
        match self {
            Backing::Anon4k | Backing::Gmem4k => PageSize::Size4K,
            Backing::Thp | Backing::Hugetlbfs2m | Backing::Gmem2m => PageSize::Size2M,
            Backing::Hugetlbfs1g | Backing::Gmem1g => PageSize::Size1G,
        }
    }

    /// The VMA backing of a legacy backing (`None` for `gmem-*`).
    pub const fn vma(self) -> Option<VmaBacking> {
        match self {
            Backing::Anon4k => Some(VmaBacking::Anon4k),
            Backing::Thp => Some(VmaBacking::Thp),
            Backing::Hugetlbfs2m => Some(VmaBacking::Hugetlbfs2m),
            Backing::Hugetlbfs1g => Some(VmaBacking::Hugetlbfs1g),
            Backing::Gmem4k | Backing::Gmem2m | Backing::Gmem1g => None,
        }
    }

    /// The memory of a VM whose `vm.backing` is this one: the VMA alone for a legacy backing;
    /// guest_memfd folios of the backing's size and `shared` for the shared side for `gmem-*`.
    pub const fn memory(self, shared: VmaBacking) -> MemoryBacking {
        match self.vma() {
            Some(vma) => MemoryBacking::Vma(vma),
            None => MemoryBacking::Gmem { folio: self.page_size(), shared },
        }
    }

    /// The backings of an era.
    pub fn of_era(era: Era) -> impl Iterator<Item = Backing> {
        <Backing as Named>::all().iter().copied().filter(move |b| b.era() == era)
    }
}

impl MemoryBacking {
    /// The backing of the private side (the VMA's in the legacy era; guest_memfd's folio size in
    /// the gmem era).
    pub const fn backing(self) -> Backing {
        match self {
            MemoryBacking::Vma(VmaBacking::Anon4k) => Backing::Anon4k,
            MemoryBacking::Vma(VmaBacking::Thp) => Backing::Thp,
            MemoryBacking::Vma(VmaBacking::Hugetlbfs2m) => Backing::Hugetlbfs2m,
            MemoryBacking::Vma(VmaBacking::Hugetlbfs1g) => Backing::Hugetlbfs1g,
            MemoryBacking::Gmem { folio: PageSize::Size4K, .. } => Backing::Gmem4k,
            MemoryBacking::Gmem { folio: PageSize::Size2M, .. } => Backing::Gmem2m,
            MemoryBacking::Gmem { folio: PageSize::Size1G, .. } => Backing::Gmem1g,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_memory_round_trip() {
        // The VMA's backings keep the host's names; the gmem ones name their folio size.
        for &b in Backing::all() {
            let m = b.memory(VmaBacking::Thp);
            assert_eq!(m.backing(), b, "{b}");
            assert_eq!(b.vma().map(VmaBacking::name), b.vma().map(|_| b.name()));
            assert_eq!(Backing::from_name(b.name()), Some(b));
        }
        assert_eq!(
            Backing::accepted(),
            "anon-4k, thp, hugetlbfs-2m, hugetlbfs-1g, gmem-4k, gmem-2m, gmem-1g"
        );
        assert_eq!(Backing::of_era(Era::Gmem).count(), 3);
        assert_eq!(Backing::Hugetlbfs1g.page_size(), PageSize::Size1G);
    }
}
