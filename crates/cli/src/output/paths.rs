//! Paths checked before anything runs: an output that is an input (`run s.toml --trace s.toml`),
//! two outputs that are one file, a file inside an output directory whose contents are replaced
//! as a whole (`--out d --trace d/results.json`), or an input inside such a directory, would
//! destroy data. Each is bad input.

use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{Result, bail};

use super::{OutDir, OutFile};

/// `path` made absolute, with the symbolic links of its existing part resolved and `.`/`..` of
/// the rest applied (a part that does not exist yet holds no link).
pub fn resolve(path: &Path) -> std::io::Result<PathBuf> {
    let abs = std::path::absolute(path)?;
    let parts: Vec<Component<'_>> = abs.components().collect();
    // The longest prefix that exists.
    let mut k = parts.len();
    while k > 1 && parts[..k].iter().collect::<PathBuf>().symlink_metadata().is_err() {
        k -= 1;
    }
    let existing: PathBuf = parts[..k].iter().collect();
    let mut out = std::fs::canonicalize(&existing).unwrap_or(existing);
    for part in &parts[k..] {
        match part {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    Ok(out)
}

/// Whether `a` and `b` are one file: by device and inode when both exist (hard links, symbolic
/// links), else by resolved path.
fn same(a: &Path, b: &Path) -> bool {
    if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
        return x.dev() == y.dev() && x.ino() == y.ino();
    }
    matches!((resolve(a), resolve(b)), (Ok(x), Ok(y)) if x == y)
}

/// Whether `path` is `dir` or inside it (`dir` resolved).
pub fn inside(path: &Path, dir: &Path) -> bool {
    resolve(path).is_ok_and(|p| p.starts_with(dir))
}

/// Refuse outputs that would destroy an input or each other. `inputs` are (what, path) pairs
/// (`-` is skipped); `files` and `dirs` the command's outputs.
pub fn check(inputs: &[(&str, &Path)], files: &[&OutFile], dirs: &[&OutDir]) -> Result<()> {
    let inputs: Vec<&(&str, &Path)> = inputs.iter().filter(|(_, p)| !crate::input::is_stdin(p)).collect();
    for d in dirs {
        for (what, p) in &inputs {
            if inside(p, d.path()) {
                bail!(
                    "{} {}: holds {what} {}, an input of this command; the directory's contents are replaced as a \
                     whole, so write the outputs to another directory",
                    d.flag,
                    d.shown.display(),
                    p.display()
                );
            }
        }
    }
    for (i, f) in files.iter().enumerate() {
        let Some(target) = f.replaced() else { continue };
        for (what, p) in &inputs {
            if same(target, p) {
                bail!(
                    "{} {}: is also {what}, an input of this command: writing it would destroy the input; \
                     name another file",
                    f.flag,
                    f.shown.display()
                );
            }
        }
        for d in dirs {
            if inside(target, d.path()) {
                bail!(
                    "{} {}: is inside {} {}, whose contents are replaced as a whole; write it elsewhere",
                    f.flag,
                    f.shown.display(),
                    d.flag,
                    d.shown.display()
                );
            }
        }
        for g in &files[i + 1..] {
            if g.replaced().is_some_and(|t| same(target, t)) {
                bail!(
                    "{} {} and {} {}: are the same file",
                    f.flag,
                    f.shown.display(),
                    g.flag,
                    g.shown.display()
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_applies_dots_of_the_missing_part() {
        let cwd = std::fs::canonicalize(".").unwrap();
        assert_eq!(resolve(Path::new("no-such-dir/x/../y")).unwrap(), cwd.join("no-such-dir/y"));
        assert_eq!(resolve(Path::new(".")).unwrap(), cwd);
    }
}
