//! Writing results and traces: everything is built in memory first, then each file is written to a
//! temporary file beside it and renamed, so an error never leaves a half-written file.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::ValueEnum;

/// The format of `--trace FILE` (and whether `--out DIR` also gets `trace.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TraceFormat {
    /// JSON Lines, one architectural event per line (docs/trace-format.md); `snpsim replay` reads it.
    Jsonl,
    /// The Trace Event format that Perfetto (ui.perfetto.dev) and chrome://tracing open.
    Chrome,
}

/// Write `bytes` to `path` through a temporary file in the same directory and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if name.is_empty() {
        bail!("{}: not a file name", path.display());
    }
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("{}: cannot write", path.display()));
    }
    Ok(())
}

/// The files one command writes, gathered before any is written.
#[derive(Debug, Default)]
pub struct Files {
    files: Vec<(PathBuf, Vec<u8>)>,
}

impl Files {
    /// Add a file.
    pub fn add(&mut self, path: PathBuf, bytes: Vec<u8>) {
        self.files.push((path, bytes));
    }

    /// Check every destination before writing anything: a directory given with `--out` is created
    /// (or must be a directory), a file's directory must exist.
    pub fn prepare(out_dir: Option<&Path>, trace: Option<&Path>) -> Result<()> {
        if let Some(d) = out_dir
            && d.exists()
            && !d.is_dir()
        {
            bail!("--out {}: exists and is not a directory", d.display());
        }
        if let Some(t) = trace {
            if t.is_dir() {
                bail!("--trace {}: is a directory; give a file name such as trace.jsonl", t.display());
            }
            if let Some(p) = t.parent()
                && !p.as_os_str().is_empty()
                && !p.is_dir()
            {
                bail!("--trace {}: directory {} does not exist", t.display(), p.display());
            }
        }
        Ok(())
    }

    /// Write every file (creating `out_dir` first if given).
    pub fn write(self, out_dir: Option<&Path>) -> Result<Vec<PathBuf>> {
        if let Some(d) = out_dir {
            fs::create_dir_all(d)
                .with_context(|| format!("--out {}: cannot create the directory", d.display()))?;
        }
        let mut written = Vec::new();
        for (path, bytes) in self.files {
            write_atomic(&path, &bytes)?;
            written.push(path);
        }
        Ok(written)
    }
}
