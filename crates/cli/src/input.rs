//! Reading inputs within bounds.
//!
//! An input is a regular file (a symbolic link to one is fine) or, given explicitly as `-`,
//! standard input, read once. Anything else where a file is expected — a FIFO, a device, a socket
//! — is refused before a byte is read (opened non-blocking, so a FIFO without a writer cannot hang
//! the command), and every input is read up to a size limit of its kind, so `/dev/zero` or a huge
//! file is an error, not a process that grows until it is killed. Directories of scenarios are
//! walked without following a cycle.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Result, bail};
use rustix::fs::{Mode, OFlags};

/// The most bytes an input of some kind may have, and why (for the message).
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    /// Bytes.
    pub bytes: u64,
    /// What to do about it.
    pub hint: &'static str,
}

/// A scenario file: 256 MiB holds a few million scripted steps.
pub const SCENARIO: Limit = Limit { bytes: 256 << 20, hint: "a scenario file" };
/// A sweep file.
pub const SWEEP: Limit = Limit { bytes: 16 << 20, hint: "a sweep file" };
/// A results document (`results.json`, `runs.jsonl`, `sweep.json`, `verdicts.json`, a shard's
/// lines, a bench document).
pub const RESULTS: Limit = Limit { bytes: 1 << 30, hint: "a results file" };

/// A trace: replay holds the whole text in memory, so it must fit the memory budget.
pub fn trace_limit(budget: u64) -> Limit {
    Limit { bytes: budget, hint: "replay holds the whole trace in memory: see --memory-budget" }
}

/// Standard input was read already (it can be read only once).
static STDIN_TAKEN: AtomicBool = AtomicBool::new(false);

/// Whether `path` is the explicit `-` for standard input.
pub fn is_stdin(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// How an input is named in messages: its path, or `<stdin>`.
pub fn display(path: &Path) -> String {
    if is_stdin(path) { "<stdin>".to_string() } else { path.display().to_string() }
}

/// A size in messages (`256 MiB`).
pub fn human(bytes: u64) -> String {
    snpsim_scenario::budget::human(bytes)
}

fn kind(t: std::fs::FileType) -> &'static str {
    if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

fn too_large(name: &str, what: &str, size: Option<u64>, limit: Limit) -> anyhow::Error {
    let size = size.map_or_else(|| "larger than that".to_string(), human);
    anyhow::anyhow!("{name}: {what} is {size}, over the limit of {} ({})", human(limit.bytes), limit.hint)
}

/// Read at most `limit` bytes of `reader`; more is an error.
fn read_bounded(reader: impl Read, name: &str, what: &str, limit: Limit) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader
        .take(limit.bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| crate::fail::io(format!("{name}: cannot read {what}"), e))?;
    if bytes.len() as u64 > limit.bytes {
        return Err(too_large(name, what, None, limit));
    }
    Ok(bytes)
}

/// Read `path` (`-`: standard input), described as `what` ("the scenario") in messages, refusing
/// anything but a regular file and more than `limit` bytes.
pub fn read(path: &Path, what: &str, limit: Limit) -> Result<Vec<u8>> {
    let name = display(path);
    if is_stdin(path) {
        if STDIN_TAKEN.swap(true, Ordering::Relaxed) {
            bail!("-: standard input can be read once; give `-` for one input only");
        }
        return read_bounded(std::io::stdin().lock(), &name, what, limit);
    }
    let fd = match rustix::fs::open(path, OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC, Mode::empty())
    {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) if path.symlink_metadata().is_ok() => {
            bail!("{name}: cannot read {what}: a symbolic link to a file that does not exist")
        }
        Err(rustix::io::Errno::NOENT) => bail!("{name}: cannot read {what}: no such file or directory"),
        Err(e) => bail!("{name}: cannot read {what}: {}", std::io::Error::from(e)),
    };
    let file = File::from(fd);
    let meta = file.metadata().map_err(|e| crate::fail::io(format!("{name}: cannot read {what}"), e))?;
    if meta.is_dir() {
        bail!("{name}: cannot read {what}: is a directory");
    }
    if !meta.is_file() {
        bail!(
            "{name}: cannot read {what}: {}, not a regular file (give a regular file, or `-` to read standard input)",
            kind(meta.file_type())
        );
    }
    if meta.len() > limit.bytes {
        return Err(too_large(&name, what, Some(meta.len()), limit));
    }
    read_bounded(file, &name, what, limit)
}

/// The scenario files `paths` name: files as given (`-` too), directories searched for `*.toml`
/// in name order. A directory reached again inside itself (a symbolic link to it or to an
/// ancestor) is a cycle, and an error rather than the same files run again and again.
pub fn scenario_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if is_stdin(p) {
            if out.iter().any(|o: &PathBuf| is_stdin(o)) {
                bail!("-: standard input can be read once; give `-` for one input only");
            }
            out.push(p.clone());
        } else {
            walk(p, &mut Vec::new(), &mut out)?;
        }
    }
    Ok(out)
}

/// Whether `path` is a sweep file (`snpsim sweep`'s input: the `scenario` it varies and its
/// `[[axis]]` tables) rather than a scenario. A directory walk skips sweep files, saying so, so
/// that `snpsim run examples` runs the scenarios beside them; a sweep file named on its own is
/// still read as a scenario, and its error says what is wrong. A file that cannot be read or
/// parsed here is left to the scenario parser, which reports it with its location.
fn is_sweep_file(path: &Path) -> bool {
    const MAX: u64 = 16 << 20;
    if std::fs::metadata(path).map_or(true, |m| !m.is_file() || m.len() > MAX) {
        return false;
    }
    let Ok(text) = std::fs::read_to_string(path) else { return false };
    text.parse::<toml::Table>().is_ok_and(|t| t.contains_key("scenario") && t.contains_key("axis"))
}

/// A directory on the path from the walk's root: its device and inode, and its path.
type Ancestor = ((u64, u64), PathBuf);

fn walk(path: &Path, ancestors: &mut Vec<Ancestor>, out: &mut Vec<PathBuf>) -> Result<()> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(_) if path.symlink_metadata().is_ok() => {
            bail!("{}: a symbolic link to a file that does not exist", path.display())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("{}: no such file or directory", path.display())
        }
        Err(e) => bail!("{}: {e}", path.display()),
    };
    if !meta.is_dir() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    let id = (meta.dev(), meta.ino());
    if let Some((_, first)) = ancestors.iter().find(|(a, _)| *a == id) {
        bail!(
            "{}: a directory cycle: this is {} again (a symbolic link back up the tree?); remove the link or name the files",
            path.display(),
            first.display()
        );
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| anyhow::anyhow!("{}: cannot read directory: {e}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    ancestors.push((id, path.to_path_buf()));
    for p in entries {
        if p.is_dir() {
            walk(&p, ancestors, out)?;
        } else if p.extension().is_some_and(|e| e == "toml") {
            if is_sweep_file(&p) {
                let name = p.display().to_string();
                crate::term::eprint(&format!(
                    "snpsim: note: {name} is a sweep, not a scenario: skipped (run it with `snpsim sweep {name}`)"
                ));
                continue;
            }
            walk(&p, ancestors, out)?;
        }
    }
    ancestors.pop();
    Ok(())
}
