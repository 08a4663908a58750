//! The scenario document as a tree of values that remember where they came from.
//!
//! The file is parsed with `toml`'s spanned document parser (`toml::de::DeTable`), converted into
//! [`Node`]s whose spans name their source (file or `--set` override), and the overrides are then
//! written into the tree. Every later check reads this tree, so an overridden value is validated
//! exactly like a value in the file, and its errors point into the `--set` argument. Sweep files
//! are read into the same tree (`document::parse_document`, public for them).

use compact_str::CompactString;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::error::{ErrorKind, ScenarioError, Sources, Span};

/// A TOML value.
#[derive(Clone, Debug)]
pub enum Val {
    /// A string (inline when short: a scenario of a million steps holds millions of them).
    Str(CompactString),
    /// An integer that fits in 64 bits.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// A datetime, as written.
    Datetime(CompactString),
    /// An array.
    Array(Vec<Node>),
    /// A table.
    Table(Table),
}

impl Val {
    /// The TOML type name, for "expected X, found Y" messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Val::Str(_) => "a string",
            Val::Int(_) => "an integer",
            Val::Float(_) => "a float",
            Val::Bool(_) => "a boolean",
            Val::Datetime(_) => "a datetime",
            Val::Array(_) => "an array",
            Val::Table(_) => "a table",
        }
    }
}

/// A value and where it starts.
#[derive(Clone, Debug)]
pub struct Node {
    /// Where the value starts.
    pub span: Span,
    /// The value.
    pub val: Val,
}

/// A key, where the key is written, and its value.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The key.
    pub key: CompactString,
    /// Where the key is written.
    pub key_span: Span,
    /// Its value.
    pub node: Node,
}

/// A table; entries in source order (overrides last).
#[derive(Clone, Debug, Default)]
pub struct Table {
    /// The entries, in source order.
    pub entries: Vec<Entry>,
}

impl Table {
    /// The entry of `key`.
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == key)
    }

    fn get_mut(&mut self, key: &str) -> Option<&mut Entry> {
        self.entries.iter_mut().find(|e| e.key == key)
    }
}

/// Parse the file in one piece into a tree rooted at a table whose span is the start of the file
/// (`document::parse_document` takes a long file in pieces when that gives the same tree); every
/// syntax error comes from here.
pub(crate) fn parse_whole(sources: &Sources<'_>) -> Result<Node, ScenarioError> {
    let doc = DeTable::parse(sources.text).map_err(|e| {
        let start = e.span().map_or(0, |s| s.start);
        let field = syntax_field(sources.text, start);
        sources.error(
            Span::new(0, start),
            field.as_deref(),
            ErrorKind::Syntax,
            format!("TOML syntax: {}", e.message()),
        )
    })?;
    let span = doc.span();
    let root = Spanned::new(span, DeValue::Table(doc.into_inner()));
    convert(sources, 0, 0, root)
}

/// The field a TOML syntax error at byte `offset` is in, read from the text around it (the parser
/// gives none): the key on that line, inside the table or array-of-tables header above it
/// (`vm.memory`, `step[2].gpa`), or the header itself.
pub(crate) fn syntax_field(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("").trim();
    let header = |l: &str| -> Option<(String, bool)> {
        let l = l.trim();
        if let Some(name) = l.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            return Some((name.trim().to_string(), true));
        }
        l.strip_prefix('[').and_then(|r| r.split(']').next()).map(|n| (n.trim().to_string(), false))
    };
    if let Some((name, _)) = header(line) {
        return (!name.is_empty()).then_some(name);
    }
    let key = line.split('=').next().map(str::trim).filter(|k| !k.is_empty() && line.contains('='))?;
    let above = &text[..line_start];
    let table = above.lines().rev().find_map(header);
    Some(match table {
        None => key.to_string(),
        Some((name, false)) => format!("{name}.{key}"),
        Some((name, true)) => {
            let index = above.lines().filter(|l| header(l).is_some_and(|(n, arr)| arr && n == name)).count();
            format!("{name}[{}].{key}", index.saturating_sub(1))
        }
    })
}

/// The key of `--set` override number `src` (1-based).
fn override_key(sources: &Sources<'_>, src: usize) -> Option<String> {
    let text = sources.overrides.get(src.checked_sub(1)?)?;
    text.split_once('=').map(|(k, _)| k.to_string())
}

/// Convert a parsed value; `offset` is added to its spans (for a value parsed out of a larger
/// string).
pub(crate) fn convert(
    sources: &Sources<'_>,
    src: usize,
    offset: usize,
    value: Spanned<DeValue<'_>>,
) -> Result<Node, ScenarioError> {
    let span = Span::new(src, value.span().start + offset);
    // A number TOML reads but i64/f64 cannot hold, named by its key (or the override's).
    let out_of_range = |message: String| {
        let field =
            if src == 0 { syntax_field(sources.text, span.start) } else { override_key(sources, src) };
        sources.error(span, field.as_deref(), ErrorKind::OutOfRange, message)
    };
    let val = match value.into_inner() {
        DeValue::String(s) => Val::Str(CompactString::from(s.as_ref())),
        DeValue::Integer(i) => Val::Int(
            i64::from_str_radix(i.as_str(), i.radix())
                .map_err(|_| out_of_range(format!("integer {i} does not fit in 64 bits")))?,
        ),
        DeValue::Float(f) => Val::Float(
            f.as_str().parse::<f64>().map_err(|_| out_of_range(format!("float {f} is not representable")))?,
        ),
        DeValue::Boolean(b) => Val::Bool(b),
        DeValue::Datetime(d) => Val::Datetime(d.to_string().into()),
        DeValue::Array(a) => {
            let mut items = Vec::with_capacity(a.len());
            // Consumed, not cloned: a million steps are a million tables.
            for item in a {
                items.push(convert(sources, src, offset, item)?);
            }
            Val::Array(items)
        }
        DeValue::Table(t) => {
            let mut entries = Vec::with_capacity(t.len());
            for (k, v) in t {
                let key_span = Span::new(src, k.span().start + offset);
                let key = CompactString::from(k.get_ref().as_ref());
                entries.push(Entry { key, key_span, node: convert(sources, src, offset, v)? });
            }
            entries.sort_by_key(|e| (e.key_span.src, e.key_span.start));
            Val::Table(Table { entries })
        }
    };
    Ok(Node { span, val })
}

/// Write `--set KEY=VALUE` override number `index` (1-based; its source text is `KEY=VALUE`) into
/// the tree.
///
/// KEY is a dotted path (`vm.backing`, `expect.npt_coverage.2m`, `step.0.gpa`: a number indexes
/// an existing array). Missing tables are created. VALUE is read as a TOML value (`4`, `true`,
/// `"x"`, `[1, 2]`) and, if it is not one, as a plain string (`thp`, `4GiB`, `>0`).
pub(crate) fn apply_override(
    sources: &Sources<'_>,
    root: &mut Node,
    index: usize,
    key: &str,
    value: &str,
) -> Result<(), ScenarioError> {
    let value_offset = key.len() + 1 + (value.len() - value.trim_start().len());
    let value = value.trim();
    let node = match DeValue::parse(value) {
        Ok(parsed) => convert(sources, index, value_offset, parsed)?,
        Err(_) => Node { span: Span::new(index, value_offset), val: Val::Str(value.into()) },
    };

    // Split the key into segments with their offsets.
    let mut segments = Vec::new();
    let mut pos = 0;
    for seg in key.split('.') {
        segments.push((seg.trim(), pos + (seg.len() - seg.trim_start().len())));
        pos += seg.len() + 1;
    }
    if segments.iter().any(|(s, _)| s.is_empty()) {
        return Err(sources.error(
            Span::new(index, 0),
            None,
            ErrorKind::Syntax,
            format!("override key {key:?} has an empty part"),
        ));
    }

    let mut cur = root;
    let mut path = String::new();
    let last = segments.len() - 1;
    for (i, (seg, seg_pos)) in segments.into_iter().enumerate() {
        let seg_span = Span::new(index, seg_pos);
        let here = match &cur.val {
            Val::Array(_) => format!("{path}[{seg}]"),
            _ if path.is_empty() => seg.to_owned(),
            _ => format!("{path}.{seg}"),
        };
        match &mut cur.val {
            Val::Table(table) => {
                if i == last {
                    if let Some(entry) = table.get_mut(seg) {
                        entry.node = node;
                        entry.key_span = seg_span;
                    } else {
                        table.entries.push(Entry { key: seg.into(), key_span: seg_span, node });
                    }
                    return Ok(());
                }
                if table.get(seg).is_none() {
                    table.entries.push(Entry {
                        key: seg.into(),
                        key_span: seg_span,
                        node: Node { span: seg_span, val: Val::Table(Table::default()) },
                    });
                }
                let Some(entry) = table.get_mut(seg) else {
                    return Err(sources.error(seg_span, None, ErrorKind::Syntax, "internal"));
                };
                cur = &mut entry.node;
            }
            Val::Array(items) => {
                let len = items.len();
                let Some(item) = seg.parse::<usize>().ok().and_then(|n| items.get_mut(n)) else {
                    return Err(sources.error(
                        seg_span,
                        Some(&path),
                        ErrorKind::OutOfRange,
                        format!("{seg:?} is not an index of this array; accepted: 0..{len}"),
                    ));
                };
                if i == last {
                    *item = node;
                    return Ok(());
                }
                cur = item;
            }
            other => {
                return Err(sources.error(
                    seg_span,
                    Some(&path),
                    ErrorKind::WrongType,
                    format!("cannot set `{here}`: `{path}` is {}, not a table", other.type_name()),
                ));
            }
        }
        path = here;
    }
    Ok(())
}
