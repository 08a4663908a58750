//! Reading a sweep file's values from the scenario format's spanned tree: located errors, fields,
//! strings, numbers and `{ from, to, step }` ranges, and each value as `--set` TOML text and as
//! JSON for results.

use anyhow::Result;
use serde_json::Value as Json;
use snpsim_scenario::Sources;
use snpsim_scenario::tree::{Node, Table, Val};

/// Most runs one sweep may expand to.
pub const MAX_RUNS: usize = 1_000_000;

/// A place in the sweep file: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Loc {
    /// Line.
    pub line: usize,
    /// Column (characters).
    pub column: usize,
}

/// The sweep file's text and its line index (the scenario format's spanned tree is read from it).
pub(super) struct Cx<'a> {
    pub(super) src: Sources<'a>,
}

impl Cx<'_> {
    pub(super) fn loc(&self, offset: usize) -> Loc {
        let (line, column) = self.src.line_column(offset);
        Loc { line, column }
    }

    pub(super) fn err(&self, at: usize, field: &str, msg: impl std::fmt::Display) -> anyhow::Error {
        let l = self.loc(at);
        let file = self.src.file;
        if field.is_empty() {
            anyhow::anyhow!("{file}:{}:{}: {msg}", l.line, l.column)
        } else {
            anyhow::anyhow!("{file}:{}:{}: field `{field}`: {msg}", l.line, l.column)
        }
    }

    /// Every float of the file is finite (TOML's `inf` and `nan` make no sweep value).
    pub(super) fn finite(&self, n: &Node) -> Result<()> {
        match &n.val {
            Val::Float(f) if !f.is_finite() => {
                Err(self.err(n.span.start, "", format!("float {f} is not a finite number")))
            }
            Val::Array(items) => items.iter().try_for_each(|i| self.finite(i)),
            Val::Table(t) => t.entries.iter().try_for_each(|e| self.finite(&e.node)),
            _ => Ok(()),
        }
    }
}

pub(super) fn accepted(cx: &Cx<'_>, path: &str, table: &Table, keys: &[&str]) -> Result<()> {
    match table.entries.iter().find(|e| !keys.contains(&e.key.as_str())) {
        None => Ok(()),
        Some(e) => {
            let k = &e.key;
            let field = if path.is_empty() { k.to_string() } else { format!("{path}.{k}") };
            Err(cx.err(e.key_span.start, &field, format!("unknown field; accepted: {}", keys.join(", "))))
        }
    }
}

pub(super) fn get<'a>(table: &'a Table, key: &str) -> Option<&'a Node> {
    table.get(key).map(|e| &e.node)
}

pub(super) fn as_str<'a>(cx: &Cx<'_>, n: &'a Node, field: &str) -> Result<&'a str> {
    match &n.val {
        Val::Str(s) => Ok(s),
        other => Err(cx.err(n.span.start, field, format!("expected a string, found {}", other.type_name()))),
    }
}

/// The TOML text `--set` reads back as this value.
pub(super) fn toml_text(n: &Node) -> String {
    toml_value(n).to_string()
}

fn toml_value(n: &Node) -> toml::Value {
    match &n.val {
        Val::Str(s) | Val::Datetime(s) => toml::Value::String(s.to_string()),
        Val::Int(i) => toml::Value::Integer(*i),
        Val::Float(f) => toml::Value::Float(*f),
        Val::Bool(b) => toml::Value::Boolean(*b),
        Val::Array(a) => toml::Value::Array(a.iter().map(toml_value).collect()),
        Val::Table(t) => {
            toml::Value::Table(t.entries.iter().map(|e| (e.key.to_string(), toml_value(&e.node))).collect())
        }
    }
}

pub(super) fn json(n: &Node) -> Json {
    match &n.val {
        Val::Str(s) | Val::Datetime(s) => Json::String(s.to_string()),
        Val::Int(i) => Json::from(*i),
        Val::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Val::Bool(b) => Json::Bool(*b),
        Val::Array(a) => Json::Array(a.iter().map(json).collect()),
        Val::Table(t) => Json::Object(t.entries.iter().map(|e| (e.key.to_string(), json(&e.node))).collect()),
    }
}

/// A number of a range: integer or float.
#[derive(Debug, Clone, Copy)]
pub(super) enum Num {
    I(i64),
    F(f64),
}

impl Num {
    fn f(self) -> f64 {
        match self {
            Num::I(i) => i as f64,
            Num::F(f) => f,
        }
    }
}

pub(super) fn num(cx: &Cx<'_>, n: &Node, field: &str) -> Result<Num> {
    match n.val {
        Val::Int(i) => Ok(Num::I(i)),
        Val::Float(f) => Ok(Num::F(f)),
        ref other => {
            Err(cx.err(n.span.start, field, format!("expected a number, found {}", other.type_name())))
        }
    }
}

/// `{ from, to, step }`, inclusive of `to` when a step lands on it.
pub(super) fn range(cx: &Cx<'_>, n: &Node, field: &str, default_step: Option<i64>) -> Result<Vec<Node>> {
    let Val::Table(entries) = &n.val else {
        return Err(cx.err(
            n.span.start,
            field,
            format!("expected a table {{ from, to, step }}, found {}", n.val.type_name()),
        ));
    };
    accepted(cx, field, entries, &["from", "to", "step"])?;
    let need = |k: &str| -> Result<Num> {
        let node = get(entries, k)
            .ok_or_else(|| cx.err(n.span.start, &format!("{field}.{k}"), "required field missing"))?;
        num(cx, node, &format!("{field}.{k}"))
    };
    let from = need("from")?;
    let to = need("to")?;
    let step = match (get(entries, "step"), default_step) {
        (Some(s), _) => num(cx, s, &format!("{field}.step"))?,
        (None, Some(d)) => Num::I(d),
        (None, None) => return Err(cx.err(n.span.start, &format!("{field}.step"), "required field missing")),
    };
    let step_at = get(entries, "step").map_or(n.span.start, |s| s.span.start);
    if step.f() <= 0.0 {
        return Err(cx.err(step_at, &format!("{field}.step"), "must be greater than 0"));
    }
    if to.f() < from.f() {
        return Err(cx.err(
            get(entries, "to").map_or(n.span.start, |s| s.span.start),
            &format!("{field}.to"),
            "must not be below `from`",
        ));
    }
    let count = ((to.f() - from.f()) / step.f() + 1e-9).floor() + 1.0;
    if count > MAX_RUNS as f64 {
        return Err(cx.err(n.span.start, field, format!("{count} values; at most {MAX_RUNS}")));
    }
    let count = count as i64;
    Ok(match (from, to, step) {
        (Num::I(a), Num::I(_), Num::I(s)) => {
            (0..count).map(|i| Node { span: n.span, val: Val::Int(a + i * s) }).collect()
        }
        _ => (0..count)
            .map(|i| {
                let v = from.f() + i as f64 * step.f();
                let v = (v * 1e9).round() / 1e9;
                Node { span: n.span, val: Val::Float(v) }
            })
            .collect(),
    })
}
