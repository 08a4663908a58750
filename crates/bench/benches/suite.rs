//! `cargo bench -p snpsim-bench`: the kernels of the performance suite (BENCHMARKS.md) with fixed
//! settings — the acceptance instruction sequence on the region RMP and on the dense oracle at
//! 16 GiB, the whole `accept-1t-2m` simulation, and `accept-1t-4k` cut to 2 GiB with runs of
//! PVALIDATEs and fault-ins as range operations against page by page (the oracle of the range
//! path, `run_scenario_per_page`). `snpsim bench` runs the full suite.

use divan::Bencher;
use snpsim_engine::engine::CheckMode;
use snpsim_engine::prelude::RmpPageSize;
use snpsim_hw::RmpConfig;
use snpsim_hw::reference::DenseRmp;
use snpsim_hw::rmp::Rmp;
use snpsim_scenario::parse_scenario;
use snpsim_scenario::run::{run_scenario, run_scenario_per_page};

/// 16 GiB of 4K pages.
const PAGES: u64 = 4 << 20;

const GRANULARITIES: [RmpPageSize; 2] = [RmpPageSize::Size2M, RmpPageSize::Size4K];

fn main() {
    divan::main();
}

#[divan::bench(args = GRANULARITIES, sample_count = 5, sample_size = 1)]
fn accept_16g_region_rmp(bencher: Bencher, gran: RmpPageSize) {
    bencher
        .with_inputs(|| Rmp::new(RmpConfig::x86(PAGES)))
        .bench_local_values(|mut rmp| snpsim_engine::kernels::accept(&mut rmp, 1, PAGES, gran));
}

#[divan::bench(args = GRANULARITIES, sample_count = 5, sample_size = 1)]
fn accept_16g_dense_oracle(bencher: Bencher, gran: RmpPageSize) {
    bencher
        .with_inputs(|| DenseRmp::new(RmpConfig::x86(PAGES)))
        .bench_local_values(|mut rmp| snpsim_engine::kernels::accept(&mut rmp, 1, PAGES, gran));
}

#[divan::bench(sample_count = 3, sample_size = 1)]
fn accept_1t_2m_simulation(bencher: Bencher) {
    let text = include_str!("../../../bench/suite/accept-1t-2m.toml");
    let s = parse_scenario("bench/suite/accept-1t-2m.toml", text).expect("the suite's scenario parses");
    bencher.bench_local(|| run_scenario(&s, CheckMode::Incremental).expect("the machine builds").passed());
}

/// `accept-1t-4k` cut to a 2 GiB guest on a 4 GiB host.
fn accept_4k_2g() -> snpsim_scenario::Scenario {
    let text = include_str!("../../../bench/suite/accept-1t-4k.toml")
        .replace("host_memory = \"80GiB\"", "host_memory = \"4GiB\"")
        .replace("memory = \"64GiB\"", "memory = \"2GiB\"");
    parse_scenario("bench/suite/accept-1t-4k.toml (2 GiB)", &text).expect("the cut scenario parses")
}

#[divan::bench(sample_count = 5, sample_size = 1)]
fn accept_4k_2g_ranges(bencher: Bencher) {
    let s = accept_4k_2g();
    bencher.bench_local(|| run_scenario(&s, CheckMode::Incremental).expect("the machine builds").passed());
}

#[divan::bench(sample_count = 5, sample_size = 1)]
fn accept_4k_2g_page_by_page(bencher: Bencher) {
    let s = accept_4k_2g();
    bencher.bench_local(|| {
        run_scenario_per_page(&s, CheckMode::Incremental, None).expect("the machine builds").passed()
    });
}
