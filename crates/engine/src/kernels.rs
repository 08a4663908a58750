//! Benchmark kernels (BENCHMARKS.md, `snpsim bench`, `cargo bench`): the RMP instruction sequence
//! of an eager acceptance, driven straight into any [`RmpModel`], so that the region-structured RMP
//! and the dense oracle (`snpsim_hw::reference::DenseRmp`) do the same work. Nothing here reads a
//! clock (determinism rule): the callers time it.

use snpsim_defs::{Gpa, PAGE_SHIFT, Pfn, ReturnCode, RmpArchEntry, RmpPageSize};
use snpsim_hw::{GuestContext, GuestOutcome, RmpModel};

/// Accept `pages` pages (a whole number of 2M regions) from frame 0 at GPA 0 as a gmem-era guest
/// does on 2M guest_memfd: per region one 2M RMPUPDATE (`sev_gmem_prepare`), then either one 2M
/// PVALIDATE or, for a 4K-granular guest, the PSMASH its first 4K PVALIDATE forces and one 4K
/// PVALIDATE per page. Returns the instructions executed, or the first one that failed.
pub fn accept(
    rmp: &mut dyn RmpModel,
    asid: u16,
    pages: u64,
    granularity: RmpPageSize,
) -> Result<u64, String> {
    let per_2m = rmp.config().geometry.pages_per_2m();
    let guest = GuestContext { asid, vmpl: 0 };
    let mut ops = 0;
    let mut region = 0;
    while region + per_2m <= pages {
        let gpa = |page: u64| Gpa(page << PAGE_SHIFT);
        let entry = RmpArchEntry::new()
            .with_assigned(true)
            .with_asid(u32::from(asid))
            .with_gpa(gpa(region).raw())
            .with_page_size(RmpPageSize::Size2M.bit());
        expect(rmp.rmpupdate(Pfn(region), entry), "RMPUPDATE", region)?;
        ops += 1;
        if granularity == RmpPageSize::Size2M {
            validated(&rmp.pvalidate(guest, gpa(region), Pfn(region), RmpPageSize::Size2M, true), region)?;
            ops += 1;
        } else {
            expect(rmp.psmash(Pfn(region)), "PSMASH", region)?;
            ops += 1;
            for page in region..region + per_2m {
                validated(&rmp.pvalidate(guest, gpa(page), Pfn(page), RmpPageSize::Size4K, true), page)?;
            }
            ops += per_2m;
        }
        region += per_2m;
    }
    Ok(ops)
}

fn expect(rc: ReturnCode, what: &str, page: u64) -> Result<(), String> {
    if rc == ReturnCode::Success { Ok(()) } else { Err(format!("{what} of frame {page:#x}: {rc:?}")) }
}

fn validated<T: core::fmt::Debug>(outcome: &GuestOutcome<T>, page: u64) -> Result<(), String> {
    if outcome.is_done() { Ok(()) } else { Err(format!("PVALIDATE of frame {page:#x}: {outcome:?}")) }
}

#[cfg(test)]
mod tests {
    use snpsim_hw::reference::DenseRmp;
    use snpsim_hw::rmp::Rmp;
    use snpsim_hw::{Geometry, RmpConfig};

    use super::*;

    #[test]
    fn the_region_rmp_and_the_dense_oracle_end_in_the_same_state() {
        for gran in [RmpPageSize::Size2M, RmpPageSize::Size4K] {
            let pages = 4 * Geometry::X86.pages_per_2m();
            let mut rmp = Rmp::new(RmpConfig::x86(pages + 512));
            let mut dense = DenseRmp::new(RmpConfig::x86(pages + 512));
            let ops = accept(&mut rmp, 1, pages, gran).unwrap();
            assert_eq!(accept(&mut dense, 1, pages, gran).unwrap(), ops);
            // Per region: RMPUPDATE + a 2M PVALIDATE (2), or RMPUPDATE + PSMASH + 512 4K
            // PVALIDATEs (514); 4 regions.
            assert_eq!(ops, if gran == RmpPageSize::Size2M { 8 } else { 4 * 514 });
            for p in 0..pages + 512 {
                assert_eq!(rmp.raw_entry(Pfn(p)), dense.raw_entry(Pfn(p)), "frame {p}");
            }
            assert_eq!(rmp.asid_assigned_pages(1), pages);
        }
    }
}
