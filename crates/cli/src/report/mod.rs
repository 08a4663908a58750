//! `snpsim report`: one self-contained HTML page (no script, no network, no external font) with
//! the results table, the debate's verdicts, and SVG charts.
//!
//! The page is built from the JSON documents the other commands write, never from a live run, so
//! `snpsim report DIR` rebuilds exactly the `report.html` that `run`/`compare`/`sweep`/`merge
//! --out DIR` wrote: `results.json` (one object per run, with `npt_coverage_series`) and, for the
//! default debate run, `verdicts.json` beside it; or a sweep's `sweep.json` manifest and its
//! `runs.jsonl`. The page depends on nothing but those inputs (no date, no path), so the same
//! results give the same bytes.

pub mod attacks;
pub mod charts;
mod figures;
mod heatmap;
mod inputs;
mod page;
mod sweep;

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;

use inputs::inputs_of;
pub use inputs::{Report, Run, load, param_text, parse_json};
pub use page::html;

use crate::output::OutFile;

/// `snpsim report` options.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Results: a directory written by `run`/`compare`/`sweep`/`merge --out`, a results.json
    /// (or `--json` output; `-` reads it from standard input), or a sweep's runs.jsonl.
    results: PathBuf,
    /// The HTML file to write (replaced whole; `-` writes standard output).
    #[arg(long, value_name = "FILE")]
    html: PathBuf,
}

/// `snpsim report RESULTS --html FILE`.
pub fn report(args: &ReportArgs) -> Result<bool> {
    let out = OutFile::check("--html", &args.html)?;
    let inputs = inputs_of(&args.results);
    let named: Vec<(&str, &Path)> = inputs.iter().map(|p| ("the results", p.as_path())).collect();
    crate::output::paths::check(&named, &[&out], &[])?;
    let r = load(&args.results)?;
    out.write(html(&r).as_bytes())?;
    Ok(true)
}
