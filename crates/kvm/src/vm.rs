//! KVM's per-VM state, and its handlers one concept a file under `vm/`: #NPF (`fault.rs`),
//! page-state-change VMGEXITs (`psc.rs`), conversions (`convert.rs`), guest_memfd (`gmem.rs`),
//! in-place guest_memfd conversion (`inplace.rs`), zaps and the MMU notifier (`zap.rs`), the
//! huge-capable metric (`capable.rs`) and the mechanisms policies act through (`ops.rs`).

use snpsim_defs::{Gfn, PageSize, Pfn};
use snpsim_host::{Host, VmaBacking};
use snpsim_hw::{Geometry, Mutant};

use crate::attributes::MemoryAttributes;
use crate::error::{KvmError, PscRefusal};
use crate::npt::Npt;
use crate::policy::{Era, Policy};
use crate::stats::KvmStats;

mod capable;
mod convert;
mod fault;
mod gmem;
mod inplace;

pub use inplace::InPlaceConversion;
mod ops;
mod psc;
mod range;
mod zap;

/// Per-VM settings: a scenario's `[vm]` table, with the policy's defaults (`docs/semantics.md` K1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KvmConfig {
    /// The guest's ASID.
    pub asid: u16,
    /// The VMM pre-faults every range a PSC makes private (KVM_PRE_FAULT_MEMORY; gmem era).
    pub prefault_on_psc: bool,
    /// NPT level of a private page ≤ its RMP level.
    pub npt_level_follows_rmp: bool,
}

/// KVM's state for one SNP VM whose single memslot maps GFN 0.. onto the VMM's VMA (and, in the
/// gmem era, onto guest_memfd for private GFNs).
#[derive(Clone, Debug)]
pub struct Kvm {
    geometry: Geometry,
    /// Settings.
    pub config: KvmConfig,
    policy: &'static dyn Policy,
    /// The nested page table.
    pub npt: Npt,
    /// Memory attributes (gmem era).
    pub attrs: MemoryAttributes,
    /// Counters.
    pub stats: KvmStats,
    /// The zaps no fault has required in full yet.
    pub demotions: crate::demotions::DemotionLedger,
    pages: u64,
    backing: VmaBacking,
    mutant: Option<Mutant>,
    psc_adversary: PscAdversary,
    /// GFNs an adversarial host bound to other frames than the memslot's (`rebind`).
    rebound: std::collections::BTreeMap<Gfn, Pfn>,
    /// Why KVM refused a range of the page-state change it is handling, if it did: the guest
    /// only sees an error code, the report says why.
    psc_refusal: Option<PscRefusal>,
    /// Pre-fault runs of uniform 4K fault-ins as range operations (`range.rs`); off, page by
    /// page (the oracle).
    pub ranges: bool,
    /// GFNs mapped by pre-fault runs (not state: how much took the range path).
    pub range_mapped: u64,
    /// Of those, fresh guest_memfd pages allocated and made private by runs of 4K RMPUPDATEs.
    pub range_prepared: u64,
    /// GFNs a legacy page-state change made private by runs of 4K RMPUPDATEs (not state).
    pub range_converted: u64,
    /// Interleaved runs: an in-place conversion to shared stops after its first step
    /// ([`Kvm::begin_convert_in_place`]) and waits here for the engine to finish it on the vCPU's
    /// next tick, so that other vCPUs run between the unmap and the split.
    in_place: InPlaceSteps,
}

/// Whether in-place conversions run in two steps, and the one between them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
struct InPlaceSteps {
    split: bool,
    pending: Option<inplace::InPlaceConversion>,
}

/// What the first part of #NPF handling left to do ([`Kvm::begin_npf`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NpfStep {
    /// The fault is resolved; the instruction can be retried.
    Handled,
    /// KVM looked up a 2M RMP entry and will PSMASH it ([`Kvm::finish_psmash`]).
    Psmash(PsmashPlan),
}

/// A PSMASH KVM decided on: the faulting GFN and the frame its NPT leaf maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PsmashPlan {
    /// The faulting GFN.
    pub gfn: Gfn,
    /// Its frame.
    pub pfn: Pfn,
}

/// An adversarial page-state-change handler (`snpsim_engine::adversary`): what a malicious
/// hypervisor does with the guest's requests. All off for an honest KVM.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PscAdversary {
    /// Answer every request with success and convert nothing.
    pub ack_without_action: bool,
    /// Mark the second half of each NAE buffer done without converting it.
    pub lie_cur_page: bool,
    /// Process half of each NAE buffer and return success with `cur_entry` half-way.
    pub drop_halfway: bool,
}

impl PscAdversary {
    /// Whether the handler leaves pages unconverted while claiming success; KVM then also refuses
    /// to fix up the faults that follow (no implicit conversion).
    const fn lies(self) -> bool {
        self.ack_without_action || self.lie_cur_page
    }
}

impl Kvm {
    /// Create the VM and register its memory; the policy may refuse the backing, a policy that
    /// converts in place needs the host's in-place guest_memfd, and one that does not cannot use
    /// it (upstream's `gmem` has no HugeTLB folios nor shared pages in guest_memfd).
    pub fn new(config: KvmConfig, policy: &'static dyn Policy, host: &Host) -> Result<Self, KvmError> {
        let backing = host.vma.backing();
        policy.register_memslot(backing)?;
        if policy.in_place_conversion() != host.gmem_hugetlb.is_some() {
            return Err(KvmError::Rejected { policy: policy.name(), backing });
        }
        let geometry = host.memory.geometry();
        Ok(Kvm {
            geometry,
            config,
            policy,
            npt: Npt::new(geometry),
            attrs: MemoryAttributes::new(),
            stats: KvmStats::default(),
            pages: host.vma.pages(),
            backing,
            mutant: None,
            psc_adversary: PscAdversary::default(),
            rebound: std::collections::BTreeMap::new(),
            demotions: crate::demotions::DemotionLedger::default(),
            psc_refusal: None,
            ranges: false,
            range_mapped: 0,
            range_prepared: 0,
            range_converted: 0,
            in_place: InPlaceSteps::default(),
        })
    }

    /// An adversarial host binds `gfn` to `pfn` instead of its memslot frame (it swaps the page
    /// behind the GPA, as page migration would, without the guest's consent) and remaps it. Honest
    /// KVM code then maps the GFN to that frame, at 4K.
    pub fn rebind(&mut self, gfn: Gfn, pfn: Pfn) {
        self.rebound.insert(gfn, pfn);
        self.npt.demote(gfn, PageSize::Size4K);
        self.npt.zap(gfn, 1);
        self.demotions.zapped_elsewhere(self.geometry, gfn, 1);
        self.npt.map(gfn, PageSize::Size4K, pfn);
    }

    /// Whether an adversarial host rebound some GFN to another frame ([`Kvm::rebind`]): the only
    /// way two GPAs can be bound to one frame.
    pub fn has_rebound(&self) -> bool {
        !self.rebound.is_empty()
    }

    /// The GFNs an adversarial host rebound ([`Kvm::rebind`]), in order.
    pub fn rebound_gfns(&self) -> impl Iterator<Item = Gfn> + '_ {
        self.rebound.keys().copied()
    }

    /// Make the page-state-change handler adversarial.
    pub fn set_psc_adversary(&mut self, adversary: PscAdversary) {
        self.psc_adversary = adversary;
    }

    /// Plant a bug (checker tests only; see [`Mutant`]).
    pub fn set_mutant(&mut self, mutant: Option<Mutant>) {
        self.mutant = mutant;
    }

    /// Why KVM refused part of the page-state change it handled last, if it did (reset at each
    /// page-state-change VMGEXIT).
    pub fn psc_refusal(&self) -> Option<PscRefusal> {
        self.psc_refusal
    }

    /// The planted bug, if any.
    pub fn mutant(&self) -> Option<Mutant> {
        self.mutant
    }

    /// The policy.
    pub fn policy(&self) -> &'static dyn Policy {
        self.policy
    }

    /// The era of the policy.
    pub fn era(&self) -> Era {
        self.policy.era()
    }

    /// Guest pages in the memslot.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// The page geometry.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// The host frame `gfn` must map to when mapped (the memslot / gmem binding), if it has one.
    pub fn bound_pfn(&self, host: &Host, gfn: Gfn) -> Option<Pfn> {
        if let Some(&pfn) = self.rebound.get(&gfn) {
            return Some(pfn);
        }
        // [`Kvm::bound_frame`]'s frame, without the VMA's mapping level.
        if self.policy.in_gmem(&self.attrs, gfn) {
            host.gmem_frame(gfn.raw()).map(|(p, _)| p)
        } else {
            host.vma.pfn(gfn.raw())
        }
    }

    /// [`Kvm::bound_pfn`] and [`Kvm::backing_level`] of `gfn` from one look at its backing (the
    /// whole-state check asks both of every leaf): a rebound GFN's frame at 4K, a guest_memfd
    /// page's frame and the size it is mapped at (its folio's; the in-place file's mapping
    /// size), a VMA page's frame and host mapping level.
    pub fn bound_frame(&self, host: &Host, gfn: Gfn) -> Option<(Pfn, PageSize)> {
        if let Some(&pfn) = self.rebound.get(&gfn) {
            return Some((pfn, PageSize::Size4K));
        }
        if self.policy.in_gmem(&self.attrs, gfn) {
            host.gmem_frame(gfn.raw())
        } else {
            host.vma.translate(gfn.raw())
        }
    }

    /// The frame whose RMP entry a conversion of `gfn` rewrites: its guest_memfd page in the gmem
    /// era (when allocated), its VMA page in the legacy era.
    pub fn conversion_pfn(&self, host: &Host, gfn: Gfn) -> Option<Pfn> {
        if self.policy.converts_gmem_frames() {
            host.gmem_frame(gfn.raw()).map(|(p, _)| p)
        } else {
            self.bound_pfn(host, gfn)
        }
    }

    /// The largest leaf KVM may use for `gfn` given its backing: host mapping level (legacy, or a
    /// shared GFN in the gmem era) or gmem folio size (private, gmem era).
    pub fn backing_level(&self, host: &Host, gfn: Gfn) -> Option<PageSize> {
        self.bound_frame(host, gfn).map(|(_, s)| s)
    }
}
