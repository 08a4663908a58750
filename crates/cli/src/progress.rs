//! Progress bars for long commands (`run`, `compare`, `sweep`, `check`): drawn on standard error
//! only when it is a terminal, never with `--quiet`, and cleared when the work is done, so
//! redirected output, pipes and CI logs never see them.

use std::io::IsTerminal as _;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A progress bar, or nothing when it must stay quiet.
#[derive(Debug)]
pub struct Progress(Option<ProgressBar>);

impl Progress {
    /// A bar for `len` units of work described by `what` (`runs`, `configurations`), shown only
    /// when standard error is a terminal and `quiet` is off.
    pub fn new(len: u64, what: &str, quiet: bool) -> Self {
        if quiet || len == 0 || !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] [{bar:32}] {pos}/{len} {msg} (eta {eta})",
        )
        .map_or_else(|_| ProgressStyle::default_bar(), |s| s.progress_chars("=> "));
        bar.set_style(style);
        bar.set_message(what.to_string());
        bar.enable_steady_tick(std::time::Duration::from_millis(200));
        Progress(Some(bar))
    }

    /// One unit done (callable from worker threads).
    pub fn inc(&self) {
        if let Some(b) = &self.0 {
            b.inc(1);
        }
    }

    /// Say what is running now.
    pub fn set_message(&self, msg: impl Into<String>) {
        if let Some(b) = &self.0 {
            b.set_message(msg.into());
        }
    }

    /// Whether a bar is drawn.
    #[cfg(test)]
    pub fn is_shown(&self) -> bool {
        self.0.is_some()
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(b) = &self.0 {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_or_empty_draws_nothing() {
        assert!(!Progress::new(10, "runs", true).is_shown());
        assert!(!Progress::new(0, "runs", false).is_shown());
    }
}
