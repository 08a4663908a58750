//! In-place guest_memfd conversion (`gmem-inplace`, `docs/semantics.md` K10): the refcount check,
//! the file's shareability with KVM's attributes, the unmap and the folio split in that order, the
//! RMP updates, and the merge — as two steps an engine or the model checker can interleave with
//! other vCPUs ([`Kvm::begin_convert_in_place`], [`Kvm::finish_convert_in_place`]).

use snpsim_defs::{Gfn, PageSize};
use snpsim_host::Host;
use snpsim_hw::{Mutant, RmpModel};

use super::Kvm;
use crate::error::{KvmError, unbacked};
use crate::psc::PscRange;

/// An in-place conversion between its two steps: which of the unmap and the split already ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InPlaceConversion {
    /// The range converted.
    pub range: PscRange,
    /// Whether any page's shareability changed (nothing to unmap or split otherwise).
    changed: bool,
    /// Whether KVM unmapped the range's folios.
    unmapped: bool,
    /// Whether the file split the range's folios.
    split: bool,
}

impl Kvm {
    /// The whole in-place conversion of `range` ([`crate::policy::VmOps::convert_in_place`]).
    pub(super) fn convert_in_place(
        &mut self,
        host: &mut Host,
        rmp: &mut dyn RmpModel,
        range: PscRange,
    ) -> Result<(), KvmError> {
        if let Some(earlier) = self.in_place.pending.take() {
            // Two conversions in one tick: the earlier one finishes first.
            self.finish_convert_in_place(host, rmp, earlier)?;
        }
        let step = self.begin_convert_in_place(host, range)?;
        if self.in_place.split && !range.private {
            // Interleaved: the engine finishes it on the vCPU's next tick.
            self.in_place.pending = Some(step);
            return Ok(());
        }
        self.finish_convert_in_place(host, rmp, step)
    }

    /// Interleaved runs: make in-place conversions to shared stop after their first step (the
    /// refcount check, the attributes and the unmap) while `on`, leaving the rest to
    /// [`Kvm::finish_convert_in_place`] — the engine sets it around a vCPU's page-state-change
    /// tick and finishes the conversion on that vCPU's next tick, so that the model checker
    /// explores every ordering of other vCPUs' work between the unmap and the split.
    pub fn set_split_in_place(&mut self, on: bool) {
        self.in_place.split = on;
    }

    /// The in-place conversion left after its first step, if any (taken: the caller finishes it).
    pub fn take_pending_in_place(&mut self) -> Option<InPlaceConversion> {
        self.in_place.pending.take()
    }

    /// The first step of an in-place conversion. The file refuses a range holding an extra
    /// reference ([`snpsim_host::HostError::ExtraReference`], counted in `conversions_refused`;
    /// nothing changes). Otherwise the file's shareability and KVM's attributes change together
    /// (`KVM_SET_MEMORY_ATTRIBUTES2`), and the first of the two ordered steps runs: KVM unmaps the
    /// range's folios — whole, while they are unsplit, since a leaf may cover any part of a folio
    /// — and only then ([`Kvm::finish_convert_in_place`]) does the file split them, so that at no
    /// point does an NPT leaf map more than its folio. The mutant `split-before-unmap` reverses
    /// the order: the split runs first, and the unmap after it covers the split pages only.
    pub fn begin_convert_in_place(
        &mut self,
        host: &mut Host,
        range: PscRange,
    ) -> Result<InPlaceConversion, KvmError> {
        let file =
            host.gmem_hugetlb.as_mut().ok_or_else(|| unbacked(range.gfn, "no in-place guest_memfd"))?;
        let (start, pages) = (range.gfn.raw(), range.pages);
        file.check_convertible(start, pages)?;
        file.set_shared(start, pages, !range.private);
        let changed = self.attrs.set(range.gfn, pages, range.private) > 0;
        let mut step = InPlaceConversion { range, changed, unmapped: false, split: false };
        if !range.private && Mutant::SplitBeforeUnmap.planted(self.mutant) {
            Self::split_for_conversion(host, &mut step);
        } else {
            self.unmap_for_conversion(host, &mut step);
        }
        Ok(step)
    }

    /// The second step of an in-place conversion: to shared, whichever of the unmap and the split
    /// has not run, then the pages made shared go back to the hypervisor in the RMP
    /// (`sev_gmem_invalidate` over the converted range, PSMASH first inside a 2M entry) without
    /// being freed — their data stays in place; to private, the folios whose pages are all private
    /// again merge, and with `prefault_on_psc` the range is pre-faulted. A private page becomes
    /// guest-owned when KVM next maps it (no preparation tracking).
    pub fn finish_convert_in_place(
        &mut self,
        host: &mut Host,
        rmp: &mut dyn RmpModel,
        mut step: InPlaceConversion,
    ) -> Result<(), KvmError> {
        let range = step.range;
        let (start, pages) = (range.gfn.raw(), range.pages);
        if range.private {
            if let Some(file) = host.gmem_hugetlb.as_mut() {
                file.merge_private(start, pages);
            }
            if self.config.prefault_on_psc {
                self.prefault(host, rmp, range.gfn, pages)?;
            }
            return Ok(());
        }
        if !step.unmapped {
            self.unmap_for_conversion(host, &mut step);
        }
        if !step.split {
            Self::split_for_conversion(host, &mut step);
        }
        let runs = host.gmem_hugetlb.as_ref().map(|f| f.frame_runs(start, pages)).unwrap_or_default();
        for (pfn, n) in runs {
            self.gmem_invalidate(host, rmp, pfn, n)?;
        }
        Ok(())
    }

    /// Unmap the NPT over the folios of the conversion's range as the file maps them now (whole
    /// folios while unsplit) — KVM's invalidation on an attribute change.
    fn unmap_for_conversion(&mut self, host: &Host, step: &mut InPlaceConversion) {
        step.unmapped = true;
        if !step.changed || Mutant::NoZapOnAttributeChange.planted(self.mutant) {
            return;
        }
        let Some(file) = host.gmem_hugetlb.as_ref() else { return };
        let (first, end) = file.folio_span(step.range.gfn.raw(), step.range.pages);
        self.npt.zap(Gfn::new(first), end - first);
        self.demotions.zapped_elsewhere(self.geometry, Gfn::new(first), end - first);
    }

    /// Split the folios of a conversion to shared (the file's step).
    fn split_for_conversion(host: &mut Host, step: &mut InPlaceConversion) {
        step.split = true;
        if !step.changed {
            return;
        }
        if let Some(file) = host.gmem_hugetlb.as_mut() {
            file.split_for_shared(step.range.gfn.raw(), step.range.pages);
        }
    }

    /// NPT leaves of guest_memfd GFNs larger than the size their folio may be mapped at (a split
    /// folio's pages: 4K), with their first GFN and size. KVM never maps larger than the folio, so
    /// this is empty at every point of a run, between the two steps of a conversion included.
    pub fn leaves_larger_than_folio(&self, host: &Host) -> Vec<(Gfn, PageSize)> {
        self.npt
            .leaves()
            .filter(|(g, _)| self.policy.in_gmem(&self.attrs, *g) && !self.rebound.contains_key(g))
            .filter(|(g, leaf)| host.gmem_frame(g.raw()).is_some_and(|(_, size)| leaf.size > size))
            .map(|(g, leaf)| (g, leaf.size))
            .collect()
    }
}
