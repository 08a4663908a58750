//! The embedded default run of snpsim: the 2021 debate on RFC v4 10/40 as a matrix of policy ×
//! backing × guest granularity, its claim scenarios, realistic workloads per policy × backing ×
//! guest preset ([`debate`]), and a verdict per claim of the seed computed from the runs
//! ([`verdict`]).

pub mod debate;
pub mod verdict;

pub use verdict::{Status, Verdict};
