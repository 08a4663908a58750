//! Temporary outputs and signals.
//!
//! Every temporary file or directory an output is written through is registered here for as long
//! as it exists. SIGINT, SIGTERM and SIGHUP remove them and then end the process as the signal
//! would, so an interrupted command leaves the previous outputs or the new ones, and no temporary.
//! The registry's lock is held while a temporary is created or moved into place, so a signal
//! never meets one half-created or half-moved. SIGXFSZ (a file-size limit, `ulimit -f`) is caught
//! so that the write fails with EFBIG and is reported as an I/O failure instead of killing the
//! process with a core dump and a temporary left behind.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::{Context, Result};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGXFSZ};
use signal_hook::iterator::Signals;

/// The temporaries that exist now.
static TEMPS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// The registry, locked. A panic while it was held does not stop the cleanup.
pub fn lock() -> MutexGuard<'static, Vec<PathBuf>> {
    TEMPS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Remove a file or a directory tree, whichever `path` is; a missing one is already gone.
fn remove(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            let _ = std::fs::remove_dir_all(path);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(path);
        }
        Err(_) => {}
    }
}

/// Catch the signals: on the first of SIGINT, SIGTERM or SIGHUP, remove every temporary and end
/// the process as that signal does (the shell sees an interrupted command).
pub fn install() -> Result<()> {
    signal_hook::flag::register(SIGXFSZ, Arc::new(AtomicBool::new(false)))
        .context("cannot install the SIGXFSZ handler")?;
    let mut signals =
        Signals::new([SIGINT, SIGTERM, SIGHUP]).context("cannot install the signal handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                let temps = lock();
                for p in temps.iter() {
                    remove(p);
                }
                // Keep the lock: nothing may create or move a temporary any more.
                let _ = signal_hook::low_level::emulate_default_handler(signal);
                std::process::exit(128 + signal);
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// A registered temporary: removed (and unregistered) when dropped, unless it was moved into
/// place with [`Temp::placed`].
#[derive(Debug)]
pub struct Temp {
    path: PathBuf,
}

impl Temp {
    /// Register `path`; call with the registry locked (`temps`), right after creating it.
    pub fn register(temps: &mut MutexGuard<'static, Vec<PathBuf>>, path: PathBuf) -> Temp {
        temps.push(path.clone());
        Temp { path }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// It was renamed into place: nothing is left at its path to remove. Call with the registry
    /// locked, in the same critical section as the rename.
    pub fn placed(self, temps: &mut MutexGuard<'static, Vec<PathBuf>>) {
        temps.retain(|p| p != &self.path);
        std::mem::forget(self);
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        let mut temps = lock();
        remove(&self.path);
        temps.retain(|p| p != &self.path);
    }
}
