//! `gmem`: upstream Linux since 6.11 (`sev_handle_rmp_fault`, guest_memfd).

use snpsim_defs::Gfn;
use snpsim_hw::Geometry;

use super::{Era, Policy, PsmashFailure, VmOps};
use crate::attributes::MemoryAttributes;
use crate::error::{KvmError, Unresolved};
use crate::psc::PscRange;
use crate::stats::exit;

/// Private memory lives in guest_memfd and the NPT level of a private page is capped at its RMP
/// level (`sev_gmem_max_mapping_level`), so an NPT leaf larger than the RMP entry is not created.
/// An RMP #NPF with a 2M RMP entry is resolved by PSMASH and `kvm_zap_gfn_range(gfn, gfn + 512)`
/// from the faulting GFN, not aligned down (common code with [`Policy::psmash_zap_start`]). An
/// RMP #NPF whose entry is already 4K is treated as spurious and nothing is done, so if one
/// arises anyway (`npt_level_follows_rmp = false`) the fault repeats: reported as unresolvable.
#[derive(Clone, Copy, Debug)]
pub struct Gmem;

impl Policy for Gmem {
    fn name(&self) -> &'static str {
        "gmem"
    }

    fn era(&self) -> Era {
        Era::Gmem
    }

    fn summary(&self) -> &'static str {
        "upstream (6.11+): guest_memfd private memory, NPT capped at RMP level, PSMASH + zap on SIZEM"
    }

    fn npt_level_follows_rmp(&self) -> bool {
        true
    }

    fn in_gmem(&self, attrs: &MemoryAttributes, gfn: Gfn) -> bool {
        attrs.is_private(gfn)
    }

    fn converts_gmem_frames(&self) -> bool {
        true
    }

    fn shared_maps_private_frames(&self) -> bool {
        false
    }

    fn leaf_allowed(&self, attrs: &MemoryAttributes, start: Gfn, pages: u64) -> bool {
        attrs.uniform(start, pages).is_some()
    }

    fn page_is_private(&self, attrs: &MemoryAttributes, gfn: Gfn, _rmp_assigned: bool) -> bool {
        attrs.is_private(gfn)
    }

    fn fault_needs_conversion(&self, attrs: &MemoryAttributes, gfn: Gfn, private: bool) -> bool {
        attrs.is_private(gfn) != private
    }

    fn implicit_conversion_exit(&self) -> Option<&'static str> {
        Some(exit::MEMORY_FAULT)
    }

    fn psc_range_exit(&self) -> Option<&'static str> {
        Some(exit::HYPERCALL)
    }

    fn convert(&self, vm: &mut dyn VmOps, range: PscRange) -> Result<(), KvmError> {
        vm.map_gpa_range(range)
    }

    fn psmash_failure(&self) -> PsmashFailure {
        PsmashFailure::WarnAndZap
    }

    fn psmash_on_any_rmp_fault(&self) -> bool {
        true
    }

    fn resolve_npt_larger(&self, _vm: &mut dyn VmOps, gfn: Gfn) -> Result<(), KvmError> {
        Err(KvmError::Unresolvable {
            gfn,
            why: Unresolved::RmpEntry4k,
            detail: "the RMP entry is already 4K: sev_handle_rmp_fault does nothing and the fault repeats"
                .into(),
        })
    }

    fn psmash_zap_start(&self, _geometry: Geometry, gfn: Gfn) -> Gfn {
        gfn
    }
}
