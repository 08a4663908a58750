//! Stamps the build with the commit it was built from, whether the tracked sources differed from
//! it, and the compiler, so that `snpsim bench --json` can say which code it measured (a binary
//! run after a later commit still reports the commit it was built from).

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn rerun_if_exists(path: &str) {
    if Path::new(path).exists() {
        println!("cargo:rerun-if-changed={path}");
    }
}

fn main() {
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".to_owned());
    let dirty = match git(&["status", "--porcelain", "--untracked-files=no"]) {
        Some(s) if s.is_empty() => "clean",
        Some(_) => "dirty",
        None => "unknown",
    };
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let version = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .map_or_else(|| "unknown".to_owned(), |o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    println!("cargo:rustc-env=SNPSIM_BUILD_COMMIT={commit}");
    println!("cargo:rustc-env=SNPSIM_BUILD_TREE={dirty}");
    println!("cargo:rustc-env=SNPSIM_BUILD_RUSTC={version}");
    // Re-stamp when HEAD moves (a commit, a checkout) or the tracked sources change.
    for p in ["HEAD", "index", "packed-refs"] {
        if let Some(path) = git(&["rev-parse", "--git-path", p]) {
            rerun_if_exists(&path);
        }
    }
    if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"])
        && let Some(path) = git(&["rev-parse", "--git-path", &head_ref])
    {
        rerun_if_exists(&path);
    }
    for dir in ["../../crates", "../../bench", "../../Cargo.toml", "../../Cargo.lock"] {
        rerun_if_exists(dir);
    }
}
