//! The memory a machine needs before any work, and the default budget runs and replays are held
//! to. `snpsim_scenario::budget` estimates a whole scenario from these; replay checks a trace's
//! machine against them before building it. The constants are peaks measured with `/usr/bin/time`
//! on the run-compressed stores (issue 19): a 64 TiB host with a 16 TiB guest booted lazily peaks
//! at 19 MB (under 1 B per region of either; 24 B per host region before the compressed stores),
//! the process alone at 5.7–6.9 MB.

/// The default budget: 8 GiB. Fixed rather than read from the machine, so a scenario is accepted
/// or refused the same everywhere.
pub const DEFAULT_MEMORY_BUDGET: u64 = 8 << 30;

/// Bytes per 2M region of host memory (the RMP's region slots, the direct map).
pub const BYTES_PER_HOST_REGION: u64 = 2;
/// Bytes per 2M region of guest memory the scenario never touches.
pub const BYTES_PER_UNTOUCHED_REGION: u64 = 2;
/// The process itself: code, tables, allocator.
pub const BASE_BYTES: u64 = 8 << 20;

/// Saturating product: the estimate of an absurd machine is `u64::MAX`, not a wrap.
fn mul(a: u64, b: u64) -> u64 {
    a.saturating_mul(b)
}

/// The memory a machine of `host_pages` and `guest_pages` 4K pages needs before any work: the
/// process, host memory's 2M regions and guest memory's (what a trace's `run` header fixes).
pub fn machine_bytes(geometry: snpsim_hw::Geometry, host_pages: u64, guest_pages: u64) -> u64 {
    let per = geometry.pages_per_2m();
    BASE_BYTES
        .saturating_add(mul(host_pages.div_ceil(per), BYTES_PER_HOST_REGION))
        .saturating_add(mul(guest_pages.div_ceil(per), BYTES_PER_UNTOUCHED_REGION))
}

/// A size for messages: whole units when exact, else one decimal.
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if bytes == u64::MAX {
        "more than 16 EiB".into()
    } else if v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
