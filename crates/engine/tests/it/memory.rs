//! Memory accounting: the simulated state costs O(2M regions), not O(4K pages), where memory is
//! uniform, and 4K detail only where it exists.

use snpsim_engine::prelude::*;

const GIB: u64 = 1 << 18;

/// A gmem-2m guest of `pages` pages on a host of 5/4 of that, after accepting all its memory with
/// 2M page-state changes (`granularity`) or 4K ones, then sharing every other page of the first
/// `fragment` pages: its simulated state in bytes.
fn accepted_then_shared(pages: u64, granularity: Granularity, fragment: u64) -> usize {
    let mut config = SimConfig::new(
        policy("gmem").unwrap(),
        MemoryBacking::Gmem { folio: PageSize::Size2M, shared: VmaBacking::Thp },
        pages,
        pages / 4 * 5,
    );
    config.guest.granularity = granularity;
    let mut sim = Simulation::new(config).unwrap();
    sim.step(&Action::Accept { vcpu: 0, gpa: Gpa(0), pages, granularity: None });
    for page in (1..fragment).step_by(2) {
        sim.step(&Action::Psc { vcpu: 0, gpa: Gpa(page << 12), pages: 1, private: false, granularity: None });
    }
    assert_eq!(sim.outcome(), None);
    assert_eq!(sim.violations().count(), 0);
    sim.state_bytes()
}

fn accepted(pages: u64, granularity: Granularity) -> usize {
    accepted_then_shared(pages, granularity, 0)
}

#[test]
fn a_uniform_terabyte_costs_per_region_what_a_uniform_gibibyte_does() {
    let small = accepted(GIB, Granularity::M2);
    let large = accepted(1024 * GIB, Granularity::M2);
    let (small_regions, large_regions) = (512, 512 * 1024);
    // Per 2M region the 1 TiB guest costs at most twice what the 1 GiB guest does (today 1.6 B
    // against 36.6 B: per-guest constants spread over more regions)...
    assert!(large / large_regions <= 2 * (small / small_regions), "{large} B vs {small} B");
    // ...and under a byte per 4K page: a sixteenth of the hardware RMP's own 16 bytes.
    assert!(large < (1024 * GIB) as usize, "{large} B for {} pages", 1024 * GIB);
}

#[test]
fn four_k_detail_costs_only_where_it_exists() {
    let uniform = accepted(GIB, Granularity::M2);
    let smashed = accepted(GIB, Granularity::K4);
    // Every region smashed by a 4K acceptance is stored as 4K entries, but they differ page by
    // page only by an address rising with the page (RMP GPAs, NPT and folio frames): each
    // region's per-page vector is stored as one progression, a header per table instead of a slot
    // per page. Today 240,936 B against 15,656 B (15×, under a byte per page): the lower bound says
    // the 4K entries are really stored (a header per smashed region and table, where uniform
    // regions cost one entry per chunk of 512), the upper one that they compress (an eighth of the
    // hardware RMP's 16 bytes per page).
    assert!(smashed > 8 * uniform, "{smashed} B vs {uniform} B");
    assert!(smashed < 2 * GIB as usize, "{smashed} B for {GIB} pages");
    // Sharing every other page of 64 MiB is real 4K detail, but regular: in each region the pages
    // kept and the pages shared each rise by their own step (entries, frames, change stamps), stored
    // as two interleaved progressions. It costs more than the smashed range (the shared pages'
    // change stamps are kept per page, no longer per region; the region tables' chunk holding the
    // 32 fragmented regions is stored slot by slot) but under 4 bytes per page of the fragmented
    // range, where a stamp stored value by value alone is 8. Today 277,624 B against 240,936 B:
    // 2.2 bytes per fragmented page, most of it the region slots, a cost per 512 regions.
    let fragment = 64 << 8;
    let fragmented = accepted_then_shared(GIB, Granularity::K4, fragment);
    assert!(fragmented > smashed, "{fragmented} B vs {smashed} B");
    assert!(fragmented < smashed + 4 * fragment as usize, "{fragmented} B vs {smashed} B");
}
