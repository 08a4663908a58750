//! Reading a document into a tree: a long one in pieces, cut where a line reads exactly
//! `[[step]]`, when that gives the tree one parse would.
//!
//! `toml` parses a whole document into tokens, then events, then a borrowed tree, all held at
//! once: a scenario of a million scripted steps (55 MB of text) peaked at 2.3 GB, and a third of
//! the parse time was the kernel clearing those pages. Parsed a piece at a time, only one piece's
//! intermediate forms are alive.
//!
//! The cut is only taken where it cannot change the result; otherwise the whole text is parsed
//! at once, which also gives every syntax error its message:
//! - A cut inside a multi-line string leaves the piece before it with an unterminated string, a
//!   syntax error, so the whole text is parsed instead. A comment ends at its line, and an array
//!   or inline table cannot hold a bare `[[step]]` line, so no other construct spans a cut.
//! - The first piece (before the first cut) must not define `step`: only then is every piece's
//!   `step` the array of tables its `[[step]]` headers build, and joining the pieces' arrays in
//!   order is what one parse would build.
//! - Any other top-level key may be defined in one piece only. Two pieces defining the same key
//!   (`[vm]` and `[vm.x]`, say) fall back to the whole parse, which merges or refuses them.
//!
//! A `[step.x]` header or a dotted key inside a piece refers to that piece's last step, which is
//! also the document's last step at that point, so it means the same in the piece and the whole.

use toml::de::DeTable;

use super::error::{ScenarioError, Sources};
use super::tree::{Entry, Node, Table, Val, convert, parse_whole};

/// The header a piece starts with.
const CUT: &str = "[[step]]";

/// Pieces are grown to at least this many bytes, so a million steps are not a million parses.
const PIECE_BYTES: usize = 64 << 10;

/// The byte offsets where a piece may start: each line that reads exactly `[[step]]` (a CRLF
/// line ending allowed), at least `piece_bytes` after the previous cut.
fn cuts(text: &str, piece_bytes: usize) -> Vec<usize> {
    let bytes = text.as_bytes();
    let mut cuts: Vec<usize> = Vec::new();
    for at in memchr::memmem::find_iter(bytes, CUT) {
        let line_start = at == 0 || bytes[at - 1] == b'\n';
        let rest = &bytes[at + CUT.len()..];
        let line_end = rest.is_empty() || rest.starts_with(b"\n") || rest.starts_with(b"\r\n");
        let far = cuts.last().is_none_or(|&last| at - last >= piece_bytes);
        if line_start && line_end && far {
            cuts.push(at);
        }
    }
    cuts
}

/// Parse the file into a tree rooted at a table whose span is the start of the file.
pub fn parse_document(sources: &Sources<'_>) -> Result<Node, ScenarioError> {
    match parse_cut(sources, PIECE_BYTES) {
        Some(root) => Ok(root),
        None => parse_whole(sources),
    }
}

/// The document from pieces of at least `piece_bytes` (tests cut at every `[[step]]` line), or
/// `None` when it has no cut or a piece cannot be taken on its own.
fn parse_cut(sources: &Sources<'_>, piece_bytes: usize) -> Option<Node> {
    let text = sources.text;
    let cuts = cuts(text, piece_bytes);
    if cuts.is_empty() {
        return None;
    }
    let mut bounds = Vec::with_capacity(cuts.len() + 1);
    bounds.push(0);
    bounds.extend_from_slice(&cuts);
    bounds.push(text.len());

    let mut root = Table::default();
    // The `step` entry of the first piece that has one; later pieces' steps are appended to it.
    let mut steps: Option<Entry> = None;
    for (i, pair) in bounds.windows(2).enumerate() {
        let (start, end) = (pair[0], pair[1]);
        let piece = DeTable::parse(&text[start..end]).ok()?;
        let span = piece.span();
        let node = convert(
            sources,
            0,
            start,
            toml::Spanned::new(span, toml::de::DeValue::Table(piece.into_inner())),
        )
        .ok()?;
        let Val::Table(table) = node.val else { return None };
        for entry in table.entries {
            if entry.key == "step" {
                // The first piece must not define `step` (see the module comment).
                if i == 0 {
                    return None;
                }
                let Val::Array(items) = entry.node.val else { return None };
                if let Some(Entry { node: Node { val: Val::Array(all), .. }, .. }) = &mut steps {
                    all.extend(items);
                } else {
                    steps = Some(Entry { node: Node { val: Val::Array(items), ..entry.node }, ..entry });
                }
            } else if root.get(&entry.key).is_some() {
                return None;
            } else {
                root.entries.push(entry);
            }
        }
    }
    root.entries.extend(steps);
    root.entries.sort_by_key(|e| (e.key_span.src, e.key_span.start));
    Some(Node { span: super::error::Span::new(0, 0), val: Val::Table(root) })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::super::error::Sources;
    use super::{parse_cut, parse_whole};

    /// The tree from pieces (if it is taken) is the tree from one parse, and whenever the whole
    /// text is refused, no pieces are taken (so the whole parse gives the error).
    fn same_as_whole(text: &str) {
        let sources = Sources::new("t.toml", text, Vec::new());
        let whole = parse_whole(&sources);
        for piece_bytes in [0, 1, 40, super::PIECE_BYTES] {
            if let Some(pieces) = parse_cut(&sources, piece_bytes) {
                let whole = whole.as_ref().map_err(ToString::to_string);
                assert_eq!(
                    format!("{pieces:?}"),
                    format!("{:?}", whole.expect("pieces were taken from a text one parse refuses")),
                    "pieces of {piece_bytes} bytes differ on:\n{text}"
                );
            }
        }
    }

    #[test]
    fn every_shipped_scenario_parses_the_same_in_pieces() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let mut seen = 0;
        let mut dirs = vec![root.join("examples"), root.join("bench"), root.join("fuzz/seeds")];
        while let Some(dir) = dirs.pop() {
            let mut paths: Vec<_> =
                std::fs::read_dir(&dir).expect("readable").map(|e| e.expect("an entry").path()).collect();
            paths.sort();
            for path in paths {
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "toml") {
                    same_as_whole(&std::fs::read_to_string(&path).expect("readable"));
                    seen += 1;
                }
            }
        }
        assert!(seen > 50, "only {seen} shipped scenarios found");
    }

    #[test]
    fn cuts_that_would_change_the_document_are_not_taken() {
        let head = "name = \"n\"\n";
        // Whether the pieces are taken: only where the whole text parses and no rule refuses them.
        for (what, body, taken_ok) in [
            (
                "a cut inside a multi-line string",
                "[[step]]\nx = \"\"\"\n[[step]]\n\"\"\"\n[[step]]\nop = \"a\"\n",
                false,
            ),
            ("a cut inside a literal one", "[[step]]\nx = '''\n[[step]]\n'''\n", false),
            (
                "a table defined in two pieces",
                "[[step]]\n[expect]\na = 1\n[[step]]\n[expect.b]\nc = 2\n",
                false,
            ),
            ("a table defined twice", "[[step]]\n[expect]\na = 1\n[[step]]\n[expect]\nc = 2\n", false),
            ("a step sub-table", "[[step]]\nop = \"a\"\n[step.x]\ny = 1\n[[step]]\nop = \"b\"\n", true),
            ("steps in the first piece", "step = []\n[[step]]\nop = \"a\"\n", false),
            ("a table of steps in the first piece", "[step]\nx = 1\n[[step]]\nop = \"a\"\n", false),
            ("CRLF line ends", "[[step]]\r\nop = \"a\"\r\n[[step]]\r\nop = \"b\"\r\n", true),
            (
                "headers that are not cuts",
                "[[step]] # one\nop = \"a\"\n  [[step]]\nop = \"b\"\n[[ step ]]\n",
                false,
            ),
            (
                "a table after the steps",
                "[[step]]\nop = \"a\"\n[[step]]\nop = \"b\"\n[expect]\nx = 1\n",
                true,
            ),
        ] {
            let text = format!("{head}{body}[vm]\nmemory = \"1GiB\"\n");
            // Each case parses the same from pieces and whole, or falls back.
            same_as_whole(&text);
            let sources = Sources::new("t.toml", &text, Vec::new());
            let whole_ok = parse_whole(&sources).is_ok();
            let taken = parse_cut(&sources, 0).is_some();
            assert!(whole_ok || !taken, "{what}: pieces taken from a refused text");
            assert_eq!(taken, taken_ok, "{what}: pieces taken: {taken}");
        }
    }

    #[test]
    fn a_long_scenario_is_parsed_in_more_than_one_piece() {
        // 2,000 steps of about 40 bytes: 80 KB, so at least two pieces of 64 KiB.
        let mut text = String::from("name = \"n\"\n");
        for i in 0..2000 {
            text += "[[step]]\nop = \"access\"\ngpa = ";
            text += &i.to_string();
            text += "\n";
        }
        assert!(super::cuts(&text, super::PIECE_BYTES).len() >= 2);
        same_as_whole(&text);
        let sources = Sources::new("t.toml", &text, Vec::new());
        assert!(parse_cut(&sources, super::PIECE_BYTES).is_some(), "the pieces were not taken");
    }

    /// Lines a document is assembled from: headers that cut and ones that do not, keys that
    /// collide across pieces, strings that span lines, arrays that span lines.
    const LINES: &[&str] = &[
        "[[step]]",
        "[[step]] # c",
        "  [[step]]",
        "[step.sub]",
        "[vm]",
        "[vm.x]",
        "[expect]",
        "[[other]]",
        "op = \"access\"",
        "gpa = 4096",
        "a.b = 2",
        "step = []",
        "x = \"\"\"",
        "\"\"\"",
        "y = '''",
        "'''",
        "k = [",
        "]",
        "# comment",
        "",
    ];

    proptest! {
        // Most random documents fall back (a line kind that fails alone); the cases above and
        // the shipped scenarios are where pieces are taken, asserted there.
        #[test]
        fn random_documents_parse_the_same_in_pieces(
            lines in prop::collection::vec(prop::sample::select(LINES), 0..24),
            crlf in any::<bool>(),
        ) {
            let end = if crlf { "\r\n" } else { "\n" };
            let text = lines.iter().fold(String::new(), |text, l| text + l + end);
            same_as_whole(&text);
        }
    }
}
