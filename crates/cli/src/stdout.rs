//! Standard output. A closed pipe (`snpsim … | head`) ends the output quietly; every other write
//! error (a full disk, a file-size limit, a closed device) is an I/O failure, so that truncated
//! output never exits 0.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;

/// Set once a write met a closed pipe: the reader is gone, later output is dropped.
static CLOSED: AtomicBool = AtomicBool::new(false);

/// Write `bytes` as they are (JSON, CSV, a trace).
pub fn bytes(bytes: &[u8]) -> Result<()> {
    if CLOSED.load(Ordering::Relaxed) {
        return Ok(());
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            CLOSED.store(true, Ordering::Relaxed);
            Ok(())
        }
        Err(e) => Err(crate::fail::io("standard output: cannot write", e)),
    }
}

/// Write human-readable text, its control characters escaped ([`crate::term::text`]).
pub fn text(s: &str) -> Result<()> {
    bytes(crate::term::text(s).as_bytes())
}
