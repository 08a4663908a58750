//! The backings of guest memory by name: `vm.backing` and `vm.shared_backing` of a scenario,
//! the `backing` of a trace's configuration, the columns of reports. The VMA's backings are the
//! host's ([`VmaBacking`]); a `gmem-*` backing names a guest_memfd folio size, whose shared side
//! is a VMA ([`MemoryBacking::Gmem`]), and a `gmem-hugetlb-*` backing the in-place guest_memfd on
//! HugeTLB folios, which holds shared memory too ([`MemoryBacking::GmemHugetlb`]).

use snpsim_defs::PageSize;
use snpsim_host::{HugetlbFolio, VmaBacking};
use snpsim_kvm::{Era, Policy};

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
    /// In-place guest_memfd on 2M HugeTLB folios (guestmem_hugetlb RFC v2, May 2025): shared and
    /// private memory in one file; `gmem-inplace` only (`docs/semantics.md` S9).
    #[strum(serialize = "gmem-hugetlb-2m")]
    GmemHugetlb2m,
    /// In-place guest_memfd on 1G HugeTLB folios; `gmem-inplace` only.
    #[strum(serialize = "gmem-hugetlb-1g")]
    GmemHugetlb1g,
}

impl Backing {
    /// The era whose policies can use this backing as `vm.backing`.
    pub const fn era(self) -> Era {
        if self.is_gmem() { Era::Gmem } else { Era::Legacy }
    }

    /// A `gmem-*` backing (`gmem-hugetlb-*` included).
    pub const fn is_gmem(self) -> bool {
        matches!(
            self,
            Backing::Gmem4k
                | Backing::Gmem2m
                | Backing::Gmem1g
                | Backing::GmemHugetlb2m
                | Backing::GmemHugetlb1g
        )
    }

    /// The HugeTLB folio size of a `gmem-hugetlb-*` backing: only a policy that converts in
    /// place ([`Policy::in_place_conversion`]) runs on one.
    pub const fn hugetlb_folio(self) -> Option<HugetlbFolio> {
        match self {
            Backing::GmemHugetlb2m => Some(HugetlbFolio::Size2M),
            Backing::GmemHugetlb1g => Some(HugetlbFolio::Size1G),
            _ => None,
        }
    }

    /// Whether `policy` can run on this backing: the same era, and a `gmem-hugetlb-*` backing
    /// only under in-place conversion (the in-place policy also runs on the `gmem-*` folio sizes).
    pub fn fits(self, policy: &dyn Policy) -> bool {
        self.era() == policy.era() && (self.hugetlb_folio().is_none() || policy.in_place_conversion())
    }

    /// The backings `policy` can run on, in report order.
    pub fn of_policy(policy: &dyn Policy) -> impl Iterator<Item = Backing> + '_ {
        <Backing as Named>::all().iter().copied().filter(move |b| b.fits(policy))
    }

    /// A `hugetlbfs-*` backing.
    pub const fn is_hugetlbfs(self) -> bool {
        matches!(self, Backing::Hugetlbfs2m | Backing::Hugetlbfs1g)
    }

    /// The largest page the backing maps (host mapping level, or gmem folio size).
    pub const fn page_size(self) -> PageSize {
        match self {
            Backing::Anon4k | Backing::Gmem4k => PageSize::Size4K,
            Backing::Thp | Backing::Hugetlbfs2m | Backing::Gmem2m | Backing::GmemHugetlb2m => {
                PageSize::Size2M
            }
            Backing::Hugetlbfs1g | Backing::Gmem1g | Backing::GmemHugetlb1g => PageSize::Size1G,
        }
    }

    /// The VMA backing of a legacy backing (`None` for `gmem-*`).
    pub const fn vma(self) -> Option<VmaBacking> {
        match self {
            Backing::Anon4k => Some(VmaBacking::Anon4k),
            Backing::Thp => Some(VmaBacking::Thp),
            Backing::Hugetlbfs2m => Some(VmaBacking::Hugetlbfs2m),
            Backing::Hugetlbfs1g => Some(VmaBacking::Hugetlbfs1g),
            Backing::Gmem4k
            | Backing::Gmem2m
            | Backing::Gmem1g
            | Backing::GmemHugetlb2m
            | Backing::GmemHugetlb1g => None,
        }
    }

    /// The memory of a VM whose `vm.backing` is this one: the VMA alone for a legacy backing;
    /// guest_memfd folios of the backing's size and `shared` for the shared side for `gmem-*`;
    /// the in-place file for `gmem-hugetlb-*` (no shared side).
    pub const fn memory(self, shared: VmaBacking) -> MemoryBacking {
        if let Some(folio) = self.hugetlb_folio() {
            return MemoryBacking::GmemHugetlb(folio);
        }
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
            MemoryBacking::GmemHugetlb(HugetlbFolio::Size2M) => Backing::GmemHugetlb2m,
            MemoryBacking::GmemHugetlb(HugetlbFolio::Size1G) => Backing::GmemHugetlb1g,
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
            "anon-4k, thp, hugetlbfs-2m, hugetlbfs-1g, gmem-4k, gmem-2m, gmem-1g, gmem-hugetlb-2m, gmem-hugetlb-1g"
        );
        assert_eq!(Backing::of_era(Era::Gmem).count(), 5);
        // The HugeTLB backings are the in-place policy's alone; it runs on every gmem folio size.
        let names = |p| Backing::of_policy(p).map(Backing::name).collect::<Vec<_>>();
        assert_eq!(names(&snpsim_kvm::policy::Gmem), ["gmem-4k", "gmem-2m", "gmem-1g"]);
        assert_eq!(
            names(&snpsim_kvm::policy::GmemInplace),
            ["gmem-4k", "gmem-2m", "gmem-1g", "gmem-hugetlb-2m", "gmem-hugetlb-1g"]
        );
        assert_eq!(
            Backing::GmemHugetlb1g.memory(VmaBacking::Thp),
            MemoryBacking::GmemHugetlb(HugetlbFolio::Size1G)
        );
        assert_eq!(Backing::Hugetlbfs1g.page_size(), PageSize::Size1G);
    }
}
