//! Exit statuses, a user contract (docs/user-guide.md "Exit codes"), and the error type that selects the I/O
//! status. Errors are classified by type, never by their text.

use std::process::ExitCode;

/// An expectation or invariant failed, or a replay diverged: the outputs are written.
pub const FAILED: u8 = 1;
/// Bad input: a scenario, trace, sweep, results file, path or argument is wrong. Nothing ran and
/// nothing was written; running it again will not help.
pub const BAD_INPUT: u8 = 2;
/// An I/O failure that is not the input's fault: an output or standard output could not be
/// written (disk full, a file-size limit, a closed device, permissions), an input could not be
/// read part-way, or another process changed an output directory meanwhile. Outputs are left as
/// they were before the command; running it again may succeed.
pub const IO: u8 = 3;

/// A failure to read or write that is no fault of the input (exit [`IO`]).
#[derive(Debug, thiserror::Error)]
#[error("{what}")]
pub struct IoFailure {
    /// What could not be done, naming the file (`--out d: cannot write results.json`).
    pub what: String,
    /// The operating system's error.
    #[source]
    pub source: std::io::Error,
}

/// An [`IoFailure`] as an `anyhow` error.
pub fn io(what: impl Into<String>, source: std::io::Error) -> anyhow::Error {
    IoFailure { what: what.into(), source }.into()
}

/// The exit status of a command's error: [`IO`] if an [`IoFailure`] caused it, else [`BAD_INPUT`].
pub fn status(e: &anyhow::Error) -> ExitCode {
    if e.chain().any(<dyn std::error::Error>::is::<IoFailure>) {
        ExitCode::from(IO)
    } else {
        ExitCode::from(BAD_INPUT)
    }
}
