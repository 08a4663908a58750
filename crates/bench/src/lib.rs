//! The divan benchmarks of snpsim live in `benches/suite.rs` (`cargo bench -p snpsim-bench`); this
//! library is empty because a package needs a library or a binary. `snpsim bench` runs the whole
//! performance suite of BENCHMARKS.md.
