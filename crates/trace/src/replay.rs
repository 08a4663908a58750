//! Replaying a trace (`docs/trace-format.md`): rebuild each run from its `run` header, re-execute
//! every `step` line's action, and compare every line the re-execution writes — each event, the
//! `end` line with the metrics, and the `state_hash` — with the trace, stopping at the first
//! difference.
//!
//! Two kinds of failure: a *malformed* trace (not JSON, a line that is no trace event, a header or
//! an action that does not describe a valid run, a run without its `end`) is bad input; a
//! *divergence* (a well-formed line whose contents differ from what the re-execution computes, or
//! a line where the re-execution writes none) means the trace does not describe what this snpsim
//! does. Both name the 1-based line.
//!
//! The header is verified too: runs must be numbered 0, 1, … in file order (a duplicated or
//! reordered run is malformed), and each run's `state_hash` digests its header line, so an edited
//! seed, scenario name, source or run number diverges at the `state_hash` line.
//!
//! ```
//! use snpsim_trace::replay::replay;
//! use snpsim_scenario::run::run_scenario_traced;
//! use snpsim_scenario::{TraceMetaExt, parse_scenario};
//! use snpsim_trace::TraceMeta;
//! use snpsim_engine::CheckMode;
//!
//! let s = parse_scenario("demo.toml", r#"
//!     name = "demo"
//!     [machine]
//!     host_memory = "64MiB"
//!     [vm]
//!     memory = "16MiB"
//!     policy = "npt-demote"
//!     backing = "thp"
//!     [[step]]
//!     op = "accept"
//!     gpa = "0x200000"
//!     size = "2MiB"
//! "#).unwrap();
//! let run = run_scenario_traced(&s, CheckMode::Full, Some(&TraceMeta::for_scenario(&s, "demo.toml", 0))).unwrap();
//! let text = String::from_utf8(run.result.trace.unwrap()).unwrap();
//! assert!(text.lines().last().unwrap().starts_with("{\"state_hash\":"));
//! let summary = replay(&text).unwrap();
//! assert_eq!(summary.runs, 1);
//!
//! // Change one result: replay names the line.
//! let bad = text.replacen("\"rc\":\"SUCCESS\"", "\"rc\":\"FAIL_INUSE\"", 1);
//! let line = bad.lines().position(|l| l.contains("FAIL_INUSE")).unwrap() + 1;
//! let err = replay(&bad).unwrap_err();
//! assert_eq!(err.line(), line);
//! assert!(err.is_divergence());
//! ```

use std::panic::{AssertUnwindSafe, catch_unwind};

use serde_json::Value;

use crate::{EVENTS, TraceExt, TraceMeta, action_from_json, config_from_json};
use snpsim_engine::engine::Simulation;

/// Why a replay failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The trace is not a valid trace (exit 2 in the CLI).
    #[error("{line}:{column}: malformed trace: {message}")]
    Malformed {
        /// 1-based line.
        line: usize,
        /// 1-based column (1 when the problem is a whole field).
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The re-execution differs from the trace (exit 1 in the CLI).
    #[error("{line}: divergence: {message}")]
    Diverged {
        /// 1-based line of the first difference.
        line: usize,
        /// What differs.
        message: String,
    },
}

impl ReplayError {
    /// The 1-based line of the problem.
    pub fn line(&self) -> usize {
        match self {
            ReplayError::Malformed { line, .. } | ReplayError::Diverged { line, .. } => *line,
        }
    }

    /// Whether the trace was well-formed but the re-execution differs.
    pub fn is_divergence(&self) -> bool {
        matches!(self, ReplayError::Diverged { .. })
    }
}

/// What a successful replay verified.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Runs replayed.
    pub runs: usize,
    /// Steps re-executed.
    pub steps: u64,
    /// Lines compared.
    pub lines: usize,
    /// Each run's scenario name and state hash.
    pub hashes: Vec<(String, String)>,
}

fn malformed(line: usize, column: usize, message: impl Into<String>) -> ReplayError {
    ReplayError::Malformed { line, column, message: message.into() }
}

fn chrome_hint(line: usize) -> ReplayError {
    malformed(
        line,
        1,
        "this is a Chrome/Perfetto trace (--trace-format chrome); replay reads the JSONL trace \
         (--trace FILE without --trace-format, or trace.jsonl beside it with --out)",
    )
}

/// Parse every line; anything that is not a trace line is malformed.
/// The lines of a trace, checked once and parsed again when replay reaches them (so a large trace
/// costs its text, not a tree of every line).
struct Lines<'a> {
    texts: Vec<&'a str>,
}

impl Lines<'_> {
    fn len(&self) -> usize {
        self.texts.len()
    }

    /// Line `i` (0-based) as it is in the trace (a trailing `\r` dropped).
    fn text(&self, i: usize) -> Option<&str> {
        self.texts.get(i).copied()
    }

    /// Line `i` (0-based), already known to parse.
    fn get(&self, i: usize) -> Option<Value> {
        self.texts.get(i).map(|l| serde_json::from_str(l).unwrap_or(Value::Null))
    }
}

fn parse_lines(text: &str) -> Result<Lines<'_>, ReplayError> {
    let mut lines: Vec<&str> = text.split('\n').collect();
    if lines.last() == Some(&"") {
        lines.pop();
    }
    if lines.is_empty() {
        return Err(malformed(1, 1, "the trace is empty"));
    }
    let mut out = Vec::with_capacity(lines.len());
    for (i, l) in lines.iter().enumerate() {
        let n = i + 1;
        let l = l.strip_suffix('\r').unwrap_or(l);
        if l.trim().is_empty() {
            return Err(malformed(n, 1, "empty line (a trace has one JSON object per line)"));
        }
        if n == 1 && l.contains("\"traceEvents\"") {
            return Err(chrome_hint(n));
        }
        let not_json = |e: serde_json::Error| malformed(n, e.column().max(1), format!("not JSON: {e}"));
        let head: LineHead = serde_json::from_str(l).map_err(|e| match e.classify() {
            // Every value inside an object is accepted, so a type error is the line's own type;
            // reading stopped there, so the line is parsed whole for what is wrong with it.
            serde_json::error::Category::Data => match serde_json::from_str::<Value>(l) {
                Err(e) => not_json(e),
                Ok(_) => malformed(n, 1, "not a JSON object"),
            },
            _ => not_json(e),
        })?;
        if head.chrome {
            return Err(chrome_hint(n));
        }
        if let Some(h) = &head.state_hash {
            let ok = head.only_state_hash
                && h.as_str().is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()));
            if !ok {
                return Err(malformed(
                    n,
                    1,
                    "a state_hash line is {\"state_hash\": \"<32 hex digits>\"} and nothing else",
                ));
            }
        } else {
            match head.ev.as_ref().and_then(Value::as_str) {
                Some(ev) if EVENTS.contains(&ev) => {}
                Some(ev) => {
                    return Err(malformed(
                        n,
                        1,
                        format!("unknown event `ev` {ev:?}; accepted: {}", EVENTS.join(", ")),
                    ));
                }
                None => {
                    return Err(malformed(
                        n,
                        1,
                        "a trace line needs a string field `ev` (or is a state_hash line)",
                    ));
                }
            }
        }
        out.push(l);
    }
    Ok(Lines { texts: out })
}

/// What [`parse_lines`] checks of a line, read without building the whole line as a
/// [`Value`]: its `ev` and `state_hash` values, whether `state_hash` is its only field, and whether
/// it has a Chrome trace's top-level field. Only an object deserializes; every field's value is
/// accepted (the others are read as [`Checked`], as strictly as into a [`Value`]).
struct LineHead {
    ev: Option<Value>,
    state_hash: Option<Value>,
    only_state_hash: bool,
    chrome: bool,
}

/// Any JSON value, read as strictly as into a [`Value`] (strings decoded, numbers in range, the
/// nesting limit) but kept nowhere: the fields [`LineHead`] does not need.
struct Checked;

impl<'de> serde::Deserialize<'de> for Checked {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Checked;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_unit<E>(self) -> Result<Checked, E> {
                Ok(Checked)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
                while seq.next_element::<Checked>()?.is_some() {}
                Ok(Checked)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
                while map.next_entry::<Checked, Checked>()?.is_some() {}
                Ok(Checked)
            }
        }
        d.deserialize_any(V)
    }
}

/// A field name of a trace line, as [`LineHead`] tells them apart (without allocating).
#[derive(serde::Deserialize)]
enum Key {
    #[serde(rename = "ev")]
    Ev,
    #[serde(rename = "state_hash")]
    StateHash,
    #[serde(rename = "traceEvents", alias = "displayTimeUnit")]
    Chrome,
    #[serde(other)]
    Other,
}

impl<'de> serde::Deserialize<'de> for LineHead {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = LineHead;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<LineHead, A::Error> {
                let mut head = LineHead { ev: None, state_hash: None, only_state_hash: true, chrome: false };
                while let Some(key) = map.next_key::<Key>()? {
                    // A repeated field keeps its last value, as [`Value`] does.
                    match key {
                        Key::StateHash => head.state_hash = Some(map.next_value()?),
                        Key::Ev => {
                            head.only_state_hash = false;
                            head.ev = Some(map.next_value()?);
                        }
                        Key::Chrome | Key::Other => {
                            head.only_state_hash = false;
                            head.chrome |= matches!(key, Key::Chrome);
                            map.next_value::<Checked>()?;
                        }
                    }
                }
                Ok(head)
            }
        }
        d.deserialize_map(V)
    }
}

fn ev(v: &Value) -> &str {
    v.get("ev").and_then(Value::as_str).unwrap_or("state_hash")
}

/// Describe the first difference between what the trace says and what replay computed.
fn diff(path: &str, trace: &Value, computed: &Value) -> Option<String> {
    match (trace, computed) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => {
                        if let Some(d) = diff(&p, x, y) {
                            return Some(d);
                        }
                    }
                    (Some(x), None) => {
                        return Some(format!("field `{p}` is {x} in the trace; replay has no such field"));
                    }
                    (None, Some(y)) => {
                        return Some(format!("field `{p}` is missing from the trace; replay computed {y}"));
                    }
                    (None, None) => {}
                }
            }
            None
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            a.iter().zip(b).enumerate().find_map(|(i, (x, y))| diff(&format!("{path}[{i}]"), x, y))
        }
        _ if trace == computed => None,
        _ => {
            let p = if path.is_empty() { "line".to_string() } else { format!("field `{path}`") };
            Some(format!("{p} is {trace} in the trace; replay computed {computed}"))
        }
    }
}

/// Compare the lines the re-execution wrote with the trace's lines from index `pos`.
fn compare(lines: &Lines<'_>, pos: usize, produced: &[u8]) -> Result<usize, ReplayError> {
    let text = String::from_utf8_lossy(produced);
    let mut n = 0;
    for (k, l) in text.lines().enumerate() {
        let at = pos + k;
        // The same bytes are the same JSON: only a line that differs is parsed and compared field
        // by field (which names the first field that differs).
        if lines.text(at) == Some(l) {
            n += 1;
            continue;
        }
        let computed: Value = serde_json::from_str(l).unwrap_or(Value::Null);
        // A trace that stops where the run goes on is truncated: malformed, not a divergence.
        let Some(trace) = lines.get(at) else {
            return Err(malformed(
                at + 1,
                1,
                format!("the trace ends here (truncated?); replay computed a `{}` line: {l}", ev(&computed)),
            ));
        };
        if let Some(d) = diff("", &trace, &computed) {
            let (te, ce) = (ev(&trace), ev(&computed));
            let what = if te == ce && te == "state_hash" {
                format!(
                    "`state_hash` line: {d} (the hash covers the run's `run` header too: an edited \
                     seed, scenario, source or run number changes it)"
                )
            } else if te == ce {
                format!("`{te}` line: {d}")
            } else {
                format!("the trace has a `{te}` line where replay computed a `{ce}` line: {l}")
            };
            return Err(ReplayError::Diverged { line: at + 1, message: what });
        }
        n += 1;
    }
    Ok(n)
}

fn meta_from(header: &Value, line: usize) -> Result<TraceMeta, ReplayError> {
    let field =
        |k: &str| header.get(k).ok_or_else(|| malformed(line, 1, format!("the `run` header has no `{k}`")));
    let u = |k: &str| -> Result<u64, ReplayError> {
        field(k)?.as_u64().ok_or_else(|| malformed(line, 1, format!("`{k}` must be a non-negative integer")))
    };
    let s = |k: &str| -> Result<String, ReplayError> {
        field(k)?
            .as_str()
            .map(String::from)
            .ok_or_else(|| malformed(line, 1, format!("`{k}` must be a string")))
    };
    let format = u("format")?;
    if format != crate::FORMAT_VERSION {
        return Err(malformed(
            line,
            1,
            format!("trace format {format}; this snpsim reads format {}", crate::FORMAT_VERSION),
        ));
    }
    let mutant = match header.get("mutant") {
        None => None,
        Some(v) => Some(v.as_str().and_then(snpsim_hw::Mutant::from_name).ok_or_else(|| {
            let names: Vec<&str> = snpsim_hw::Mutant::ALL.iter().map(|m| m.name()).collect();
            malformed(line, 1, format!("field `mutant`: unknown mutant {v}; accepted: {}", names.join(", ")))
        })?),
    };
    Ok(TraceMeta { run: u("run")?, scenario: s("scenario")?, source: s("source")?, seed: u("seed")?, mutant })
}

/// Runs are numbered 0, 1, … in file order: a header whose `run` is not its place in the file
/// belongs to a duplicated, reordered or pasted run.
fn check_run_number(meta: &TraceMeta, place: usize, line: usize) -> Result<(), ReplayError> {
    if meta.run == place as u64 {
        return Ok(());
    }
    Err(malformed(
        line,
        1,
        format!(
            "field `run`: the header says run {} where run {place} of the trace begins; runs are numbered 0, 1, \
             ... in file order (a run duplicated, reordered or taken from another trace?)",
            meta.run
        ),
    ))
}

/// Replay every run of a trace (the text of a `.jsonl` file), refusing a run whose machine
/// exceeds the default memory budget ([`snpsim_engine::footprint::DEFAULT_MEMORY_BUDGET`]).
pub fn replay(text: &str) -> Result<ReplaySummary, ReplayError> {
    replay_with_budget(text, snpsim_engine::footprint::DEFAULT_MEMORY_BUDGET)
}

/// [`replay`], refusing (as malformed input, before building it) a run whose host and guest
/// memory alone need more than `budget` bytes of simulator memory
/// ([`snpsim_engine::footprint::machine_bytes`]).
pub fn replay_with_budget(text: &str, budget: u64) -> Result<ReplaySummary, ReplayError> {
    let lines = parse_lines(text)?;
    let mut summary = ReplaySummary::default();
    let mut pos = 0;
    while pos < lines.len() {
        let Some(header) = lines.get(pos) else { break };
        let header = &header;
        let hl = pos + 1;
        if ev(header) != "run" {
            return Err(malformed(
                hl,
                1,
                format!("expected a `run` header line, found a `{}` line", ev(header)),
            ));
        }
        let meta = meta_from(header, hl)?;
        check_run_number(&meta, summary.runs, hl)?;
        let config = config_from_json(header.get("config").unwrap_or(&Value::Null))
            .map_err(|e| malformed(hl, 1, e.to_string()))?;
        let costs = crate::costs_from_json(header).map_err(|e| malformed(hl, 1, e.to_string()))?;
        let need =
            snpsim_engine::footprint::machine_bytes(config.geometry, config.host_pages, config.guest_pages);
        if need > budget {
            return Err(malformed(
                hl,
                1,
                format!(
                    "run {}: its host and guest memory need an estimated {} of simulator memory, over the \
                     memory budget of {} (--memory-budget)",
                    meta.run,
                    snpsim_engine::footprint::human(need),
                    snpsim_engine::footprint::human(budget)
                ),
            ));
        }
        let mut sim = Simulation::with_mutant(config, meta.mutant)
            .map_err(|e| malformed(hl, 1, format!("the run cannot be built: {e}")))?;
        sim.set_costs(costs);
        sim.enable_trace(&meta);
        pos += compare(&lines, pos, &sim.take_trace())?;
        loop {
            let Some(line) = lines.get(pos) else {
                return Err(malformed(
                    lines.len(),
                    1,
                    format!("run {} ends without its `end` and `state_hash` lines", meta.run),
                ));
            };
            match ev(&line) {
                "step" => {
                    let action_v = line.get("action").unwrap_or(&Value::Null);
                    let action = action_from_json(action_v, &config)
                        .map_err(|e| malformed(pos + 1, 1, e.to_string()))?;
                    let stepped = catch_unwind(AssertUnwindSafe(|| {
                        sim.step(&action);
                        sim.take_trace()
                    }));
                    let produced = stepped.map_err(|_| {
                        malformed(
                            pos + 1,
                            1,
                            "re-executing this action panicked (a bug in snpsim; please report it)",
                        )
                    })?;
                    pos += compare(&lines, pos, &produced)?;
                    summary.steps += 1;
                }
                "end" => {
                    let result = catch_unwind(AssertUnwindSafe(|| sim.finish()))
                        .map_err(|_| malformed(pos + 1, 1, "finishing the run panicked (a bug in snpsim)"))?;
                    let produced = result.trace.unwrap_or_default();
                    let n = compare(&lines, pos, &produced)?;
                    let hash = lines
                        .get(pos + n - 1)
                        .and_then(|l| l.get("state_hash").and_then(Value::as_str).map(String::from))
                        .unwrap_or_default();
                    summary.hashes.push((meta.scenario.clone(), hash));
                    pos += n;
                    summary.runs += 1;
                    break;
                }
                other => {
                    return Err(ReplayError::Diverged {
                        line: pos + 1,
                        message: format!(
                            "the trace has a `{other}` line where the replayed step had ended (a `step` or `end` line comes next)"
                        ),
                    });
                }
            }
        }
    }
    summary.lines = pos;
    Ok(summary)
}
