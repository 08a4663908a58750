//! One output file: replaced whole, or streamed into a FIFO, a device or standard output.

use std::fs::{OpenOptions, Permissions};
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::cleanup::{self, Temp};
use crate::fail;

/// Where an output file goes, decided before anything runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `-`: standard output.
    Stdout,
    /// A FIFO, a character or block device, or a socket (or a `/dev/fd/N` naming one): written
    /// in place, as a stream; it cannot be replaced and is not turned into a regular file.
    Stream(PathBuf),
    /// A regular file, new or existing (a symbolic link is followed to the file it names, and
    /// stays a link): replaced whole through a temporary file beside it.
    Replace(PathBuf),
}

/// An output file: the option that names it, the path as given, and where it goes.
#[derive(Debug, Clone)]
pub struct OutFile {
    /// `--trace`, `--html`, ...
    pub flag: String,
    /// The path as the user gave it.
    pub shown: PathBuf,
    /// Where the bytes go.
    pub target: Target,
}

impl OutFile {
    /// Check a destination before anything runs: not a directory, its directory exists, a
    /// symbolic link names something.
    pub fn check(flag: &str, path: &Path) -> Result<Self> {
        let shown = path.display();
        let target = if crate::input::is_stdin(path) {
            Target::Stdout
        } else {
            match std::fs::metadata(path) {
                Ok(m) if m.is_dir() => {
                    bail!("{flag} {shown}: is a directory; give a file name such as {}", example(flag))
                }
                Ok(m) if m.is_file() => {
                    let is_link = path.symlink_metadata().is_ok_and(|l| l.file_type().is_symlink());
                    let real = if is_link {
                        std::fs::canonicalize(path)
                            .map_err(|e| anyhow::anyhow!("{flag} {shown}: cannot resolve the link: {e}"))?
                    } else {
                        path.to_path_buf()
                    };
                    Target::Replace(real)
                }
                Ok(_) => Target::Stream(path.to_path_buf()),
                Err(_) if path.symlink_metadata().is_ok() => {
                    bail!("{flag} {shown}: a symbolic link to a file that does not exist")
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let dir = parent(path);
                    if !dir.is_dir() {
                        bail!("{flag} {shown}: directory {} does not exist", dir.display());
                    }
                    Target::Replace(path.to_path_buf())
                }
                Err(e) => bail!("{flag} {shown}: {e}"),
            }
        };
        Ok(OutFile { flag: flag.to_string(), shown: path.to_path_buf(), target })
    }

    /// Whether this goes to standard output.
    pub fn is_stdout(&self) -> bool {
        self.target == Target::Stdout
    }

    /// The file replaced, if it is replaced (for collision checks).
    pub fn replaced(&self) -> Option<&Path> {
        match &self.target {
            Target::Replace(p) => Some(p),
            _ => None,
        }
    }

    /// Write `bytes`.
    pub fn write(&self, bytes: &[u8]) -> Result<()> {
        let cannot = || format!("{} {}: cannot write", self.flag, self.shown.display());
        match &self.target {
            Target::Stdout => crate::stdout::bytes(bytes),
            Target::Stream(p) => {
                // No create, no truncate: a device or FIFO is written as it is.
                let mut f = OpenOptions::new().write(true).open(p).map_err(|e| fail::io(cannot(), e))?;
                f.write_all(bytes).and_then(|()| f.flush()).map_err(|e| fail::io(cannot(), e))
            }
            Target::Replace(p) => replace(p, bytes).map_err(|e| fail::io(cannot(), e)),
        }
    }
}

/// An example file name for `flag`'s messages.
fn example(flag: &str) -> &'static str {
    match flag {
        "--html" => "report.html",
        _ => "trace.jsonl",
    }
}

/// The directory a file is in (`.` for a bare name).
pub fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Replace the regular file `path` with `bytes`: a temporary file beside it, created
/// exclusively under a random name, written, flushed, and renamed over it. An existing file's
/// permissions carry over.
pub(super) fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mode = std::fs::metadata(path).map_or(0o666, |m| m.permissions().mode() & 0o7777);
    let (file, temp) = {
        let mut temps = cleanup::lock();
        let (file, tmp) = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .permissions(Permissions::from_mode(mode))
            .tempfile_in(parent(path))?
            .keep()
            .map_err(|e| e.error)?;
        (file, Temp::register(&mut temps, tmp))
    };
    super::fill(file, bytes)?;
    let mut temps = cleanup::lock();
    match std::fs::rename(temp.path(), path) {
        Ok(()) => {
            temp.placed(&mut temps);
            Ok(())
        }
        Err(e) => {
            drop(temps); // `temp`'s drop takes the lock to remove it
            Err(e)
        }
    }
}
