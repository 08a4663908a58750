//! Text for the terminal: names and messages may carry any character a scenario or trace holds,
//! and control characters (escape sequences) must not reach the terminal raw.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` is written escaped: C0 controls, DEL and C1 controls; `keep_lines` keeps newline
/// and tab, which multi-line text needs.
fn escaped(c: char, keep_lines: bool) -> bool {
    if keep_lines && (c == '\n' || c == '\t') {
        return false;
    }
    c.is_control()
}

fn escape(s: &str, keep_lines: bool) -> Cow<'_, str> {
    if !s.chars().any(|c| escaped(c, keep_lines)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if escaped(c, keep_lines) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Text (a table, a message) with control characters other than newline and tab written as
/// `\u{1b}`.
pub fn text(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

/// A name inside a line (a table cell, a scenario name): every control character escaped,
/// newline and tab too.
pub fn name(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// Print a line to standard error, escaped as [`text`]. A failing standard error is ignored:
/// there is nowhere left to report it.
pub fn eprint(s: &str) {
    use std::io::Write as _;
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{}", text(s));
}

/// The width, in columns, that tables are fitted to: `COLUMNS` when it is a positive number (as
/// shells set it, and as a user may to ask for another width), else the width of the terminal
/// standard output is, else 100 (output to a file or a pipe, read later at an unknown width).
pub fn width() -> usize {
    width_from(std::env::var("COLUMNS").ok().as_deref(), terminal_width())
}

/// The width of the terminal standard output is, if it is one.
fn terminal_width() -> Option<usize> {
    use std::io::IsTerminal as _;
    let out = std::io::stdout();
    if !out.is_terminal() {
        return None;
    }
    rustix::termios::tcgetwinsize(&out).ok().map(|w| usize::from(w.ws_col)).filter(|&w| w > 0)
}

/// [`width`] from the value of `COLUMNS` and the terminal's width.
fn width_from(columns: Option<&str>, terminal: Option<usize>) -> usize {
    columns.and_then(|c| c.trim().parse::<usize>().ok()).filter(|&c| c > 0).or(terminal).unwrap_or(100)
}

#[cfg(test)]
mod tests {
    #[test]
    fn width_is_columns_then_the_terminal_then_100() {
        assert_eq!(super::width_from(Some("132"), Some(80)), 132);
        assert_eq!(super::width_from(Some("0"), Some(80)), 80);
        assert_eq!(super::width_from(Some("wide"), None), 100);
        assert_eq!(super::width_from(None, None), 100);
    }

    use super::*;

    #[test]
    fn controls_are_escaped() {
        assert_eq!(name("a\u{1b}[2Jb\nc"), "a\\u{1b}[2Jb\\u{a}c");
        assert_eq!(text("a\u{1b}]0;x\u{7}\n\tb\u{9b}"), "a\\u{1b}]0;x\\u{7}\n\tb\\u{9b}");
        assert!(matches!(text("plain é\n"), Cow::Borrowed(_)));
    }
}
