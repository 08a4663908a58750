//! The memory budget: every shipped scenario fits the default budget, traced or not (the 64 GiB
//! boots and every benchmark untraced), and its refusals come before the machine is built.

use snpsim_scenario::budget::{DEFAULT_MEMORY_BUDGET, check, estimate};
use snpsim_scenario::{load_scenario, parse_scenario};

use crate::common::{repo, toml_files};

#[test]
fn every_shipped_scenario_fits_the_default_budget() {
    let root = repo("");
    let mut files = Vec::new();
    toml_files(&root.join("examples"), &mut files);
    toml_files(&root.join("bench"), &mut files);
    files.sort();
    let mut checked = 0;
    for f in &files {
        // Sweep files are not scenarios.
        let Ok(s) = load_scenario(f) else { continue };
        let large = s.vm.memory >= 32 << 30 || f.starts_with(root.join("bench"));
        check(&s, DEFAULT_MEMORY_BUDGET, !large).unwrap_or_else(|e| panic!("{e}"));
        checked += 1;
    }
    // 43 scenarios under examples/ (16 debate, 10 attacks, 11 calibration, 3 checks, 2 races and
    // the sweep's base) and 6 under bench/ when this was written: the bound catches a walk that
    // lost a directory, and lets scenarios be added.
    assert!(checked >= 30, "only {checked} scenarios found");
}

/// A scripted 1 TiB acceptance at 2M by a 2M guest on 2M guest_memfd keeps 2M entries: it is
/// estimated per region (it was counted per 4K page, 32 GiB, and refused), while the same step
/// by a 4K guest is counted page by page, as a sweep: 256 Mi pages × 4 B + 512 Ki broken regions
/// × 1 KiB = 1.5 GiB (it runs in 814 MiB, BENCHMARKS.md).
#[test]
fn a_scripted_2m_acceptance_is_counted_per_region() {
    let text = |gran: &str| {
        format!(
            "name = \"accept\"\n[machine]\nhost_memory = \"1280GiB\"\n[vm]\nmemory = \"1TiB\"\npolicy = \"gmem\"\n\
             backing = \"gmem-2m\"\n[guest]\npsc_granularity = \"{gran}\"\n[[step]]\nop = \"accept\"\ngpa = \"0x0\"\n\
             size = \"1TiB\"\n"
        )
    };
    let at_2m = parse_scenario("a.toml", &text("2m")).unwrap();
    let e = estimate(&at_2m, false);
    assert!(e.bytes < 1 << 30 && e.pages_4k == 0, "{e:?}");
    check(&at_2m, DEFAULT_MEMORY_BUDGET, false).unwrap();
    let at_4k = parse_scenario("a.toml", &text("4k")).unwrap();
    let e = estimate(&at_4k, false);
    assert_eq!((e.swept_4k, e.regions_2m), (1 << 28, 0));
    assert!(e.bytes > 1 << 30 && e.bytes < 2 << 30, "{e:?}");
}
