//! Which guest memory KVM could still map with a leaf of 2M or more: the `huge_capable` metric.
//!
//! A host split or a PSMASH can make a range 4K for good (nothing re-forms a 2M RMP entry but a
//! whole-2M conversion, and guest_memfd never merges split folios), so the NPT coverage alone does
//! not say whether a policy preserved what large leaves need.

use snpsim_defs::{Gfn, PageSize, Pfn};
use snpsim_host::{Host, RangeBacking};
use snpsim_hw::RmpModel;

use super::Kvm;

impl Kvm {
    /// Guest pages in 2M-aligned ranges that could still be mapped by a leaf of 2M or more (see
    /// [`Kvm::huge_capable`]); a partial last range never can. One visit per 2M range, each a few
    /// lookups in the region-indexed stores, so a terabyte guest costs half a million visits,
    /// not its pages.
    pub fn huge_capable_pages(&self, host: &Host, rmp: &dyn RmpModel) -> u64 {
        let per_2m = self.geometry.pages_per_2m();
        (0..self.pages / per_2m).filter(|r| self.huge_capable(host, rmp, Gfn::new(r * per_2m))).count() as u64
            * per_2m
    }

    /// Whether the 2M-aligned GFN range from `start` could still be mapped by a leaf ≥ 2M: its
    /// backing can still hold one and the RMP does not forbid one.
    ///
    /// Backing, as [`Kvm::fault_in`] picks the level: legacy era, the VMA's mapping level ≥ 2M (a
    /// THP split to 4K is not); gmem era, the range's memory attributes are uniform (KVM never maps
    /// a mixed range huge: `KVM_LPAGE_MIXED_FLAG`), and for private GFNs one guest_memfd folio ≥ 2M
    /// holds the range, or none is allocated yet and first use would allocate one (a partial
    /// punch splits a folio for good); for shared GFNs the VMA's mapping level ≥ 2M. A GFN an
    /// adversarial host rebound maps at 4K only.
    ///
    /// RMP, read on the 2M region of the frames the range is bound to (none yet: a fresh region):
    /// private memory (and all legacy memory, where one frame serves both states) needs a 2M entry
    /// or a region with no assigned page, which a 2M RMPUPDATE can still make a 2M entry (legacy
    /// 2M PSC; `sev_gmem_prepare` for a ≥ 2M folio) — a 4K entry of an assigned region caps private
    /// mappings at 4K (`sev_gmem_max_mapping_level`, RFC v4 27/40 `sev_get_tdp_max_page_level`:
    /// the NPT level is at most the RMP level). Shared memory needs a region with no assigned page
    /// (a shared access through a large leaf over an assigned page takes an RMP|SIZEM #NPF).
    pub fn huge_capable(&self, host: &Host, rmp: &dyn RmpModel, start: Gfn) -> bool {
        let n = self.geometry.pages_per_2m();
        if start.raw().saturating_add(n) > self.pages || self.rebound.range(start..start + n).next().is_some()
        {
            return false;
        }
        if !self.policy.leaf_allowed(&self.attrs, start, n) {
            return false;
        }
        // Uniform attributes (where the policy has them): the range is in guest_memfd iff private.
        let in_gmem = self.policy.in_gmem(&self.attrs, start);
        let private = in_gmem || self.policy.shared_maps_private_frames();
        let frame = if in_gmem {
            match host.gmem_range_backing(start.raw(), n) {
                Some(RangeBacking::Folio(pfn)) => pfn,
                Some(RangeBacking::Unallocated) => return true,
                Some(RangeBacking::Smaller) | None => return false,
            }
        } else {
            if host.vma.level(start.raw()) < PageSize::Size2M {
                return false;
            }
            match host.vma.pfn(start.raw()) {
                Some(pfn) => pfn,
                // The gmem era's shared side, never touched: first use populates fresh frames.
                None => return true,
            }
        };
        rmp_allows_huge(rmp, self.geometry.region_of(frame), private)
    }
}

/// Whether the RMP lets a leaf ≥ 2M map the 2M region at `region` for `private` (or shared)
/// accesses: no page of it assigned, or (private) a 2M entry. RMPREAD's region status counts only
/// the other pages, so the aligned page's own bit is read too ([`RmpModel::region_has_assigned`]).
fn rmp_allows_huge(rmp: &dyn RmpModel, region: Pfn, private: bool) -> bool {
    match rmp.rmpread(region) {
        Ok(e) => !rmp.region_has_assigned(region) || (private && e.assigned() && e.page_size()),
        Err(_) => false,
    }
}
