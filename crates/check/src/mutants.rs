//! The mutant catalogue: each planted bug of [`Mutant`] must be caught, by the model checker
//! (a property of [`SnpModel`] fails on some configuration) or by the PSC protocol conformance
//! table. `docs/mutants.md` names the catching property of each.

use snpsim_defs::ghcb::{PscBuffer, PscEntry, PscHeader, PscOp, VMGEXIT_PSC_ERROR_INVALID_ENTRY};
use snpsim_defs::{Gfn, PageSize};
use snpsim_engine::engine::MemoryBacking;
use snpsim_guest::Granularity;
use snpsim_host::{HugetlbFolio, VmaBacking};
use snpsim_hw::Mutant;
use snpsim_kvm::policy::by_name;
use snpsim_kvm::psc::{PscRange, process_ghcb_mutated};

use crate::{CheckSetup, SnpModel};

/// How a mutant was caught.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caught {
    /// The property or check that failed.
    pub by: String,
    /// Where: the configuration and the length of the shortest counterexample.
    pub how: String,
}

/// The configurations the catalogue explores, in order.
fn configurations() -> Vec<(&'static str, MemoryBacking)> {
    vec![
        ("npt-demote", MemoryBacking::Vma(VmaBacking::Hugetlbfs2m)),
        ("rfc-host-split", MemoryBacking::Vma(VmaBacking::Thp)),
        ("npt-demote", MemoryBacking::Vma(VmaBacking::Anon4k)),
        ("gmem", MemoryBacking::Gmem { folio: PageSize::Size2M, shared: VmaBacking::Thp }),
        ("gmem-inplace", MemoryBacking::GmemHugetlb(HugetlbFolio::Size1G)),
    ]
}

/// Explore every configuration with `mutant` planted, with iterative deepening up to `depth`
/// actions: the first property that fails at the smallest depth, with the configuration and that
/// shortest counterexample.
pub fn model_check(mutant: Option<Mutant>, depth: u32) -> Option<Caught> {
    (1..=depth)
        .find_map(|d| configurations().into_iter().find_map(|(p, b)| check_one(p, b, mutant, d, 1)))
        .or_else(|| {
            (1..=RACE_DEPTH).find_map(|d| {
                race_configurations().into_iter().find_map(|(p, b)| check_one(p, b, mutant, d, 2))
            })
        })
}

/// How deep the two-vCPU race model is explored for the catalogue (both PSMASH races are reachable).
pub const RACE_DEPTH: u32 = 12;

/// The configurations of the two-vCPU race model the catalogue explores.
fn race_configurations() -> Vec<(&'static str, MemoryBacking)> {
    vec![
        ("npt-demote", MemoryBacking::Vma(VmaBacking::Hugetlbfs2m)),
        ("gmem", MemoryBacking::Gmem { folio: PageSize::Size2M, shared: VmaBacking::Thp }),
        ("gmem-inplace", MemoryBacking::GmemHugetlb(HugetlbFolio::Size1G)),
    ]
}

fn check_one(
    policy: &str,
    backing: MemoryBacking,
    mutant: Option<Mutant>,
    depth: u32,
    vcpus: u32,
) -> Option<Caught> {
    let setup = CheckSetup {
        policy: by_name(policy)?,
        backing,
        granularity: Granularity::K4,
        depth,
        mutant,
        vcpus,
        npt_level_follows_rmp: None,
    };
    let e = crate::explore(&SnpModel::new(setup));
    let d = e.discoveries.into_iter().find(|d| d.always)?;
    Some(Caught {
        by: d.property.to_string(),
        how: format!(
            "{policy} on {backing:?}, {vcpus} vCPU(s): {} actions: {:?}",
            d.actions.len(),
            d.actions
        ),
    })
}

/// The PSC protocol conformance table (KVM `snp_begin_psc` rules): an unaligned 2M entry must be
/// refused with INVALID_ENTRY, and a partly done entry must resume at `cur_page`. Returns what
/// did not conform.
pub fn psc_conformance(mutant: Option<Mutant>) -> Vec<String> {
    let mut failures = Vec::new();
    let per_2m = 512;
    let entry = |gfn: u64, op: PscOp, big: bool| {
        PscEntry::new().with_gfn(Gfn::new(gfn)).with_op(op.raw()).with_page_size(big)
    };
    let mut unaligned =
        PscBuffer { header: PscHeader::new(), entries: vec![entry(0x201, PscOp::Private, true)] };
    let info2 = process_ghcb_mutated(&mut unaligned, per_2m, mutant, |_| true);
    if info2 != VMGEXIT_PSC_ERROR_INVALID_ENTRY {
        failures.push(format!("an unaligned 2M entry was answered {info2:#x}, not INVALID_ENTRY"));
    }
    let mut partial = PscBuffer {
        header: PscHeader::new(),
        entries: vec![entry(0x200, PscOp::Shared, true).with_cur_page(0x100)],
    };
    let mut ranges = Vec::new();
    process_ghcb_mutated(&mut partial, per_2m, mutant, |r| {
        ranges.push(r);
        true
    });
    let expected = vec![PscRange { gfn: Gfn::new(0x300), pages: 0x100, private: false, size_2m: false }];
    if ranges != expected {
        failures.push(format!("a partly done entry resumed as {ranges:?}, not {expected:?}"));
    }
    failures
}

/// Catch `mutant` by the conformance table or the model checker.
pub fn catch(mutant: Mutant, depth: u32) -> Option<Caught> {
    if let Some(f) = psc_conformance(Some(mutant)).into_iter().next() {
        return Some(Caught { by: "PSC protocol conformance".into(), how: f });
    }
    model_check(Some(mutant), depth)
}
