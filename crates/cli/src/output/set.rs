//! A result set: the files of one `--out DIR`, written into a fresh temporary directory beside
//! DIR and moved into place whole.
//!
//! The rules, and why:
//! - A non-empty DIR is refused unless `--force`: its files would otherwise sit beside the new
//!   ones (a stale `verdicts.json` read as this run's). With `--force` DIR's whole contents are
//!   replaced.
//! - The new set replaces DIR in one rename (or, with `--force` over an existing DIR, one atomic
//!   exchange, then the old set is removed): readers, a second writer, an error or a signal see
//!   the old set or the new one, never a mix. A second writer that finds DIR changed fails
//!   (exit 3) rather than mixing its files in.
//! - Shards of one sweep join a shared DIR file by file instead ([`Policy::Join`]): each file is
//!   replaced whole, and the shards' files have different names.

use std::fs::{File, Permissions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use rustix::fs::{CWD, RenameFlags};

use crate::cleanup::{self, Temp};
use crate::fail;

/// What to do with what DIR holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// DIR must be absent or empty; the set replaces it whole.
    Fresh,
    /// `--force`: the set replaces DIR and everything in it.
    Force,
    /// Add the files one by one, each replaced whole (a sweep shard's shared directory).
    Join,
}

/// An output directory, checked before anything runs.
#[derive(Debug, Clone)]
pub struct OutDir {
    /// `--out`.
    pub flag: String,
    /// The path as the user gave it.
    pub shown: PathBuf,
    /// Absolute, a symbolic link to a directory followed.
    dir: PathBuf,
    policy: Policy,
}

/// The names of up to three entries of `dir`, and how many it has.
fn entries(dir: &Path) -> std::io::Result<(usize, Vec<String>)> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    names.sort();
    let n = names.len();
    names.truncate(3);
    Ok((n, names))
}

impl OutDir {
    /// Check `dir` before anything runs: a directory or nothing (whose nearest existing ancestor
    /// is a directory), not the root, not holding the current directory, and empty unless
    /// `policy` is [`Policy::Force`] or [`Policy::Join`].
    pub fn check(flag: &str, dir: &Path, policy: Policy) -> Result<Self> {
        let shown = dir.display();
        let exists = match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => true,
            Ok(_) => bail!("{flag} {shown}: exists and is not a directory"),
            Err(_) if dir.symlink_metadata().is_ok() => {
                bail!("{flag} {shown}: a symbolic link to a directory that does not exist")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => bail!("{flag} {shown}: {e}"),
        };
        let resolved = super::paths::resolve(dir).map_err(|e| anyhow::anyhow!("{flag} {shown}: {e}"))?;
        if !exists {
            let mut up = resolved.parent();
            while let Some(p) = up {
                if let Ok(m) = std::fs::metadata(p) {
                    if !m.is_dir() {
                        bail!("{flag} {shown}: {} is not a directory", p.display());
                    }
                    break;
                }
                up = p.parent();
            }
        }
        if resolved.parent().is_none() || resolved.file_name().is_none() {
            bail!("{flag} {shown}: cannot replace the root directory; name a directory inside it");
        }
        if let Ok(cwd) = std::env::current_dir().and_then(std::fs::canonicalize)
            && cwd.starts_with(&resolved)
        {
            bail!(
                "{flag} {shown}: is the current directory or holds it; its contents are replaced as a whole, so name \
                 another directory"
            );
        }
        if exists && policy == Policy::Fresh {
            let (n, first) =
                entries(dir).map_err(|e| anyhow::anyhow!("{flag} {shown}: cannot read it: {e}"))?;
            if n > 0 {
                bail!(
                    "{flag} {shown}: is not empty ({n} entr{}: {}{}); the new outputs replace a directory as a \
                     whole, so give --force to replace everything in it, or name a new or empty directory",
                    if n == 1 { "y" } else { "ies" },
                    first.join(", "),
                    if n > first.len() { ", ..." } else { "" }
                );
            }
        }
        Ok(OutDir { flag: flag.to_string(), shown: dir.to_path_buf(), dir: resolved, policy })
    }

    /// The directory, absolute and resolved.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Write the set: `files` are (name in DIR, bytes).
    pub fn write(&self, files: Vec<(String, Vec<u8>)>) -> Result<()> {
        let shown = self.shown.display();
        let parent = self.dir.parent().unwrap_or(Path::new("/"));
        if self.policy == Policy::Join {
            std::fs::create_dir_all(&self.dir)
                .map_err(|e| fail::io(format!("{} {shown}: cannot create the directory", self.flag), e))?;
            for (name, bytes) in files {
                super::file::replace(&self.dir.join(&name), &bytes)
                    .map_err(|e| fail::io(format!("{} {shown}: cannot write {name}", self.flag), e))?;
            }
            return Ok(());
        }
        std::fs::create_dir_all(parent)
            .map_err(|e| fail::io(format!("{} {shown}: cannot create {}", self.flag, parent.display()), e))?;
        let temp = self.fill(parent, files)?;
        self.place(temp)
    }

    /// A new temporary directory beside DIR holding `files`.
    fn fill(&self, parent: &Path, files: Vec<(String, Vec<u8>)>) -> Result<Temp> {
        let shown = self.shown.display();
        let name = self.dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let temp = {
            let mut temps = cleanup::lock();
            let made = tempfile::Builder::new()
                .prefix(&format!(".{name}."))
                .suffix(".tmp")
                .permissions(Permissions::from_mode(0o777))
                .tempdir_in(parent)
                .map_err(|e| {
                    fail::io(format!("{} {shown}: cannot create a directory beside it", self.flag), e)
                })?;
            Temp::register(&mut temps, made.keep())
        };
        for (file, bytes) in files {
            let path = temp.path().join(&file);
            let cannot = |e| fail::io(format!("{} {shown}: cannot write {file}", self.flag), e);
            let f = {
                let _temps = cleanup::lock();
                File::create_new(&path).map_err(cannot)?
            };
            super::fill(f, &bytes).map_err(cannot)?;
        }
        Ok(temp)
    }

    /// Move the filled `temp` into place: a rename, or with `--force` over an existing DIR an
    /// atomic exchange followed by the removal of the old set (now at `temp`'s path).
    fn place(&self, temp: Temp) -> Result<()> {
        let shown = self.shown.display();
        let flag = &self.flag;
        let mut temps = cleanup::lock();
        let exists = self.dir.symlink_metadata().is_ok();
        if self.policy == Policy::Force && exists {
            match rustix::fs::renameat_with(CWD, temp.path(), CWD, &self.dir, RenameFlags::EXCHANGE) {
                Ok(()) => {
                    drop(temps);
                    drop(temp); // removes the old set, now at the temporary's path
                    return Ok(());
                }
                Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
                    // No atomic exchange on this file system: move the old set aside first.
                    let aside = temp.path().with_extension("old");
                    std::fs::rename(&self.dir, &aside).map_err(|e| {
                        fail::io(format!("{flag} {shown}: cannot move the old outputs aside"), e)
                    })?;
                    let old = Temp::register(&mut temps, aside);
                    if let Err(e) = std::fs::rename(temp.path(), &self.dir) {
                        let _ = std::fs::rename(old.path(), &self.dir);
                        drop(temps);
                        return Err(fail::io(
                            format!("{flag} {shown}: cannot move the new outputs into place"),
                            e,
                        ));
                    }
                    temp.placed(&mut temps);
                    drop(temps);
                    drop(old);
                    return Ok(());
                }
                Err(e) => {
                    drop(temps);
                    return Err(fail::io(
                        format!("{flag} {shown}: cannot move the new outputs into place"),
                        e.into(),
                    ));
                }
            }
        }
        match std::fs::rename(temp.path(), &self.dir) {
            Ok(()) => {
                temp.placed(&mut temps);
                Ok(())
            }
            Err(e) => {
                drop(temps);
                let raced = matches!(e.raw_os_error(), Some(c) if c == rustix::io::Errno::NOTEMPTY.raw_os_error()
                    || c == rustix::io::Errno::EXIST.raw_os_error());
                let what = if raced {
                    format!(
                        "{flag} {shown}: another process wrote to it while this command ran; nothing was replaced \
                         (give --force to replace it)"
                    )
                } else {
                    format!("{flag} {shown}: cannot move the new outputs into place")
                };
                Err(fail::io(what, e))
            }
        }
    }
}
