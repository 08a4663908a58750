//! Writing outputs so that nothing is lost or mixed.
//!
//! - A result set (`--out DIR`) is written into a fresh temporary directory beside DIR and moved
//!   into place whole ([`set`]): readers see the old set or the new one, never a mix, and an
//!   interrupted or failed command leaves the old one.
//! - A single file (`--trace FILE`, `--html FILE`) is written to a temporary file beside it and
//!   renamed over it; a FIFO, a device, `/dev/fd/N` (process substitution) or `-` (standard
//!   output) is written in place as a stream ([`mod@file`]).
//! - Temporaries are created exclusively (never through a planted symbolic link) under random
//!   names, registered for removal on SIGINT/SIGTERM ([`crate::cleanup`]).
//! - Every destination is checked before anything runs ([`paths`]): an output that is an input,
//!   or another output, is bad input.
//!
//! A failed write is an I/O failure (exit 3), not bad input.

pub mod file;
pub mod paths;
pub mod set;

use std::fs::File;
use std::io::Write as _;
use std::path::Path;

use anyhow::Result;
use clap::ValueEnum;

pub use file::OutFile;
pub use set::OutDir;

/// The format of `--trace FILE` (and whether `--out DIR` also gets `trace.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TraceFormat {
    /// JSON Lines, one architectural event per line (docs/trace-format.md); `snpsim replay` reads it.
    Jsonl,
    /// The Trace Event format that Perfetto (ui.perfetto.dev) and chrome://tracing open.
    Chrome,
}

/// Write `bytes` to a file just created, and flush it to disk.
fn fill(mut f: File, bytes: &[u8]) -> std::io::Result<()> {
    f.write_all(bytes)?;
    f.sync_all()
}

/// Check and write one file, as `check`'s counterexamples are written.
pub fn write_file(flag: &str, path: &Path, bytes: &[u8]) -> Result<()> {
    OutFile::check(flag, path)?.write(bytes)
}
