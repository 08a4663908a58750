//! The one error type of scenario loading, and the mapping from byte spans to line and column.

use core::fmt;

/// What kind of input error a [`ScenarioError`] is (for callers that classify; the message says
/// the rest).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The file could not be read.
    Io,
    /// The file is not UTF-8.
    NotUtf8,
    /// TOML syntax (including duplicate keys), or a malformed `--set KEY=VALUE`.
    Syntax,
    /// A field the format does not have.
    UnknownField,
    /// A value that is not one of the accepted names (or not a well-formed size, address,
    /// duration or comparison).
    UnknownValue,
    /// A value of the wrong TOML type.
    WrongType,
    /// A required field is absent.
    Missing,
    /// A number outside its accepted range.
    OutOfRange,
    /// A `gpa` or `size` that is not a multiple of the page size it must be aligned to.
    Unaligned,
    /// A guest range that extends beyond guest memory.
    OutsideMemory,
    /// Fields that are each valid but do not go together (policy and backing era, steps and
    /// workload, guest memory larger than host memory).
    Conflict,
}

/// An input error: where it is (file, 1-based line and column), which field, and what is wrong.
///
/// Displays as `FILE:LINE:COLUMN: field `vm.policy`: unknown value "foo"; accepted: ...`. A
/// problem with no field (an unreadable file) omits the `field ...:` part; a TOML syntax error
/// names the key or header it is on. Columns count Unicode characters. For a `--set KEY=VALUE` override the file is `--set`, the line is
/// the 1-based index of the override among those given, and the column points into `KEY=VALUE`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {}{message}", field_prefix(.field.as_deref()))]
pub struct ScenarioError {
    /// The file as named by the caller (or `--set` for an override).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// The dotted path of the field (`vm.policy`, `step[2].gpa`, `expect.exits.npf`), if any.
    pub field: Option<String>,
    /// The class of error.
    pub kind: ErrorKind,
    /// What is wrong, and the accepted values where there is a list.
    pub message: String,
}

fn field_prefix(field: Option<&str>) -> FieldPrefix<'_> {
    FieldPrefix(field)
}

struct FieldPrefix<'a>(Option<&'a str>);

impl fmt::Display for FieldPrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(field) => write!(f, "field `{field}`: "),
            None => Ok(()),
        }
    }
}

/// A byte range in one of the texts a scenario is read from: source 0 is the file, source `i ≥ 1`
/// the `i`-th `--set` override (as the string `KEY=VALUE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Span {
    /// 0 for the file, `i` for the `i`-th `--set` override.
    pub src: usize,
    /// Byte offset in that text.
    pub start: usize,
}

impl Span {
    /// The span at byte `start` of source `src`.
    pub const fn new(src: usize, start: usize) -> Self {
        Span { src, start }
    }
}

/// The texts a scenario is read from, to turn spans into `FILE:LINE:COLUMN`.
#[derive(Debug)]
pub struct Sources<'a> {
    /// The file as named by the caller.
    pub file: &'a str,
    /// Its text.
    pub text: &'a str,
    /// The `--set` overrides, each as `KEY=VALUE`.
    pub overrides: Vec<String>,
    /// Where each line of `text` starts, so that locating a span costs a binary search and the
    /// span's own line, not a rescan of the file (every step asks for its line).
    lines: LineIndex,
}

impl<'a> Sources<'a> {
    /// The sources of `file` with `text` and `overrides`.
    pub fn new(file: &'a str, text: &'a str, overrides: Vec<String>) -> Self {
        Sources { file, text, overrides, lines: LineIndex::new(text) }
    }

    /// 1-based line and column (in characters) of byte offset `offset` in the file's text.
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        self.lines.line_column(self.text, offset)
    }

    /// 1-based line of byte offset `offset` in the file's text (a step's line, without the
    /// column's character count).
    pub fn line(&self, offset: usize) -> usize {
        self.lines.line(offset)
    }

    /// The error at `span`.
    pub fn error(
        &self,
        span: Span,
        field: Option<&str>,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> ScenarioError {
        let (file, line, column) = if span.src == 0 {
            let (line, column) = self.line_column(span.start);
            (self.file.to_owned(), line, column)
        } else {
            let text = self.overrides.get(span.src - 1).map_or("", String::as_str);
            let (_, column) = line_column(text, span.start);
            ("--set".to_owned(), span.src, column)
        };
        ScenarioError { file, line, column, field: field.map(str::to_owned), kind, message: message.into() }
    }
}

/// The byte offset at which each line of a text starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    /// Index `text` in one pass.
    pub(crate) fn new(text: &str) -> Self {
        let mut starts = vec![0];
        starts.extend(memchr::memchr_iter(b'\n', text.as_bytes()).map(|i| i + 1));
        LineIndex { starts }
    }

    /// 1-based line of byte offset `offset` (past the end: the last line).
    pub(crate) fn line(&self, offset: usize) -> usize {
        // The last line start at or before `offset`; `starts[0] == 0`, so there is one.
        self.starts.partition_point(|&s| s <= offset).max(1)
    }

    /// 1-based line and column (in characters) of byte offset `offset` in `text` (the text this
    /// index was built from); an offset past the end or inside a character is moved back to the
    /// nearest character boundary.
    pub(crate) fn line_column(&self, text: &str, offset: usize) -> (usize, usize) {
        let mut end = offset.min(text.len());
        while end > 0 && !text.is_char_boundary(end) {
            end -= 1;
        }
        let line = self.line(end);
        let line_start = self.starts[line - 1];
        let column = text.get(line_start..end).map_or(0, |t| t.chars().count()) + 1;
        (line, column)
    }
}

/// 1-based line and column (in characters) of byte offset `offset` in `text`; an offset past the
/// end or inside a character is moved back to the nearest character boundary. Scans `text`: for
/// one lookup; [`Sources::line_column`] serves many.
pub(crate) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    LineIndex::new(text).line_column(text, offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_from_one_in_characters() {
        let text = "ab\ncé\nx";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 2), (1, 3));
        assert_eq!(line_column(text, 3), (2, 1));
        // 'é' is two bytes; offset 6 is after it.
        assert_eq!(line_column(text, 6), (2, 3));
        // Inside 'é' moves back to its start.
        assert_eq!(line_column(text, 5), (2, 2));
        assert_eq!(line_column(text, 999), (3, 2));
        // The index agrees with a scan at every offset.
        let index = LineIndex::new(text);
        for offset in 0..=text.len() + 1 {
            let mut end = offset.min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            let before = &text[..end];
            let line = before.matches('\n').count() + 1;
            let col = before[before.rfind('\n').map_or(0, |i| i + 1)..].chars().count() + 1;
            assert_eq!(index.line_column(text, offset), (line, col), "offset {offset}");
        }
    }

    #[test]
    fn display_has_location_and_field() {
        let s = Sources::new("a.toml", "x\ny = 1", vec!["vm.x=1".into()]);
        let e = s.error(Span::new(0, 2), Some("y"), ErrorKind::WrongType, "bad");
        assert_eq!(e.to_string(), "a.toml:2:1: field `y`: bad");
        let e = s.error(Span::new(1, 5), None, ErrorKind::Syntax, "oops");
        assert_eq!(e.to_string(), "--set:1:6: oops");
    }
}
