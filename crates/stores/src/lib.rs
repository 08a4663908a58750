//! The run-compressed stores every table of snpsim is built on: [`RunVec`], a vector over `u64`
//! indices whose arithmetic progressions cost one entry per chunk; [`PageSet`], a set of page
//! numbers as bits in such a vector; [`PageMap`], a value per page kept per 2M region; and
//! [`RangeSet`], a set kept as disjoint runs.
//!
//! They know nothing of SEV-SNP: the CPU, host, KVM and guest models store their state in them,
//! so that a terabyte guest costs what its state holds, not a slot per page.

pub mod pagemap;
pub mod pageset;
pub mod ranges;
pub mod runs;

pub use pagemap::PageMap;
pub use pageset::PageSet;
pub use ranges::RangeSet;
pub use runs::{Progression, RegionVec, RunVec};

/// The estimated memory of one entry of a `BTreeMap` or `BTreeSet` with small keys and values
/// (the entry plus its share of a node), for the models' `state_bytes` accounting.
pub const BTREE_ENTRY_BYTES: usize = 40;
