//! The Trace Event format (the JSON that Perfetto and `chrome://tracing` open) from a JSONL trace.
//!
//! Each run is a process; each vCPU and each host actor (`vmm`, `vhost`, `kernel`, `host-mm`,
//! `khugepaged`, and `kvm` or `adversary` when they act on no vCPU) a thread, so each gets a
//! track. Steps, exits and faults are slices (`X` events, nested: a step holds the exits it took,
//! an #NPF slice spans the exit that resolved it);
//! instructions, page-state-change entries, accesses and derived events are instants (`i`) with
//! every trace field in `args`. Times are the trace's simulated nanoseconds, written in
//! microseconds as the format wants.
//!
//! Each #NPF has a flow arrow to each PSMASH, NPT demotion and host split that KVM did while
//! handling it (the events of its exit, `docs/trace-format.md`); those are zero-length slices, so
//! an arrow can end on them (a flow binds to slices, not instants). Each run has counter tracks:
//! the RMP entries marked assigned, by size (`RMP assigned entries`, followed from the trace's
//! successful RMPUPDATEs and PSMASHes), the host splits so far (`host splits`, the sum of the
//! `host_split` lines), and, where the caller passes the engine's samples
//! ([`from_jsonl_with_coverage`]), the NPT coverage in percent of guest memory. Within a run the
//! events are written in order of time, an enclosing slice before the slices it holds.
//!
//! ```
//! let jsonl = "{\"ev\":\"run\",\"run\":0,\"scenario\":\"demo\",\"config\":{\"policy\":\"gmem\",\"backing\":\"gmem-4k\"}}\n\
//!              {\"ev\":\"step\",\"t\":0,\"vcpu\":0,\"actor\":\"guest\",\"i\":0,\"action\":{\"op\":\"access\",\"gpa\":\"0x0\"}}\n\
//!              {\"ev\":\"step_end\",\"t\":1500,\"vcpu\":0,\"actor\":\"guest\",\"i\":0,\"result\":\"done\"}\n";
//! let doc: serde_json::Value = serde_json::from_str(&snpsim_trace::chrome::from_jsonl(jsonl).unwrap()).unwrap();
//! let events = doc["traceEvents"].as_array().unwrap();
//! assert!(events.iter().any(|e| e["ph"] == "X" && e["name"] == "access 0x0" && e["dur"] == 1.5));
//! ```

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

/// One run's NPT coverage as the engine sampled it (`RunResult::coverage_series`): the pages
/// mapped by 4K, 2M and 1G leaves after the steps that changed them, at simulated times `t_ns`.
#[derive(Clone, Copy, Debug)]
pub struct CoverageSamples<'a> {
    /// Pages mapped at `[4K, 2M, 1G]`, one entry per sample.
    pub pages: &'a [[u64; 3]],
    /// The simulated time of each sample.
    pub t_ns: &'a [u64],
    /// Guest memory in 4 KiB pages (the 100 % of the track).
    pub guest_pages: u64,
}

/// Where an event goes among those of the same time: enclosing slices first (longest first), then
/// flow starts, then flow ends, then the zero-length events (a flow end binds to the next slice
/// that begins on its track, so it must come just before its target).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Rank {
    Slice(std::cmp::Reverse<u64>),
    FlowStart,
    FlowEnd,
    Point,
}

/// The RMP entries marked assigned, by size, followed from the trace's successful instructions.
#[derive(Default)]
struct RmpEntries {
    /// Frames per 2M region (512 on `x86`, 4 on `tiny`).
    per_2m: u64,
    /// Each assigned entry's first frame, and whether it is a 2M entry.
    assigned: BTreeMap<u64, bool>,
    /// Assigned 2M and 4K entries.
    counts: [u64; 2],
}

impl RmpEntries {
    fn set(&mut self, pfn: u64, huge: bool, on: bool) {
        let old = if on { self.assigned.insert(pfn, huge) } else { self.assigned.remove(&pfn) };
        if let Some(h) = old {
            self.counts[usize::from(!h)] -= 1;
        }
        if on {
            self.counts[usize::from(!huge)] += 1;
        }
    }

    /// A successful RMPUPDATE: a 2M entry replaces (or, unassigned, clears) its region's entries.
    fn rmpupdate(&mut self, pfn: u64, huge: bool, assigned: bool) {
        if huge {
            let inside: Vec<u64> = self.assigned.range(pfn..pfn + self.per_2m).map(|(p, _)| *p).collect();
            for p in inside {
                self.set(p, false, false);
            }
        }
        self.set(pfn, huge, assigned);
    }

    /// A successful PSMASH: the assigned 2M entry becomes `per_2m` assigned 4K entries.
    fn psmash(&mut self, pfn: u64) {
        if self.assigned.get(&pfn) == Some(&true) {
            for p in pfn..pfn + self.per_2m {
                self.set(p, false, true);
            }
        }
    }
}

/// A hex string field (`"0x200"`) as a number.
fn hex(v: Option<&Value>) -> Option<u64> {
    let s = v?.as_str()?;
    u64::from_str_radix(s.strip_prefix("0x").unwrap_or(s), 16).ok()
}

/// The thread id of a host actor's track (vCPU `n` is thread `n + 1`).
fn actor_tid(actor: &str) -> u64 {
    match actor {
        "vmm" => 10_001,
        "vhost" => 10_002,
        "kernel" => 10_003,
        "host-mm" => 10_004,
        "khugepaged" => 10_005,
        "kvm" => 10_006,
        "adversary" => 10_007,
        _ => 10_099,
    }
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

struct Converter<'c> {
    /// The `traceEvents` array's elements, comma-separated, serialized as they come.
    events: String,
    /// The current run's events, written in order of time when the run ends: (time in ns, rank,
    /// arrival, the event).
    run_events: Vec<(u64, Rank, usize, Value)>,
    pid: u64,
    named: BTreeSet<(u64, u64)>,
    /// Open step: (tid, start, name, args).
    step: Option<(u64, u64, String, Map<String, Value>)>,
    /// An #NPF waiting for its exit: (code bits, args).
    npf: Option<(String, Map<String, Value>)>,
    /// The #NPF exit being handled: (its track, its start, its end).
    handling: Option<(u64, u64, u64)>,
    /// Flow ids given so far.
    flows: u64,
    rmp: RmpEntries,
    host_splits: u64,
    coverage: &'c dyn Fn(u64) -> Option<CoverageSamples<'c>>,
}

impl Converter<'_> {
    fn track(&mut self, line: &Map<String, Value>) -> u64 {
        let (tid, name) = if let Some(v) = line.get("vcpu").and_then(Value::as_u64) {
            (v + 1, format!("vCPU {v}"))
        } else {
            let a = line.get("actor").and_then(Value::as_str).unwrap_or("host");
            (actor_tid(a), a.to_string())
        };
        if self.named.insert((self.pid, tid)) {
            self.emit(&json!({
                "name": "thread_name", "ph": "M", "pid": self.pid, "tid": tid, "args": { "name": name },
            }));
            self.emit(&json!({
                "name": "thread_sort_index", "ph": "M", "pid": self.pid, "tid": tid, "args": { "sort_index": tid },
            }));
        }
        tid
    }

    /// Write an event now (metadata, which has no time).
    fn emit(&mut self, v: &Value) {
        if !self.events.is_empty() {
            self.events.push_str(",\n");
        }
        self.events.push_str(&v.to_string());
    }

    /// Keep an event of the current run, to be written in order of time.
    fn timed(&mut self, t: u64, rank: Rank, v: Value) {
        let n = self.run_events.len();
        self.run_events.push((t, rank, n, v));
    }

    /// Write the current run's events in order of time, then start the next run's counters.
    fn end_run(&mut self) {
        let mut events = std::mem::take(&mut self.run_events);
        events.sort_by_key(|e| (e.0, e.1, e.2));
        for (_, _, _, v) in &events {
            self.emit(v);
        }
        self.rmp = RmpEntries { per_2m: self.rmp.per_2m, ..RmpEntries::default() };
        self.host_splits = 0;
        self.handling = None;
    }

    fn slice(&mut self, name: &str, tid: u64, t: u64, dur: u64, args: Map<String, Value>) {
        let v = json!({
            "name": name, "cat": "snpsim", "ph": "X", "ts": us(t), "dur": us(dur),
            "pid": self.pid, "tid": tid, "args": Value::Object(args),
        });
        let rank = if dur == 0 { Rank::Point } else { Rank::Slice(std::cmp::Reverse(dur)) };
        self.timed(t, rank, v);
    }

    fn instant(&mut self, name: &str, tid: u64, t: u64, args: Map<String, Value>) {
        let v = json!({
            "name": name, "cat": "snpsim", "ph": "i", "s": "t", "ts": us(t),
            "pid": self.pid, "tid": tid, "args": Value::Object(args),
        });
        self.timed(t, Rank::Point, v);
    }

    fn counter(&mut self, name: &str, t: u64, args: Value) {
        let mut v = json!({ "name": name, "cat": "snpsim", "ph": "C", "ts": us(t), "pid": self.pid });
        v["args"] = args;
        self.timed(t, Rank::Point, v);
    }

    fn rmp_counter(&mut self, t: u64) {
        let [huge, small] = self.rmp.counts;
        self.counter("RMP assigned entries", t, json!({ "2m": huge, "4k": small }));
    }

    /// A zero-length slice that KVM's handling of the current #NPF did, with a flow arrow from
    /// the #NPF to it; an instant when it is no part of an #NPF's handling.
    fn resolution(&mut self, name: &str, tid: u64, t: u64, args: Map<String, Value>) {
        match self.handling {
            Some((npf_tid, start, end)) if npf_tid == tid && t >= start && t <= end => {
                self.flows += 1;
                let id = self.flows;
                let flow = |ph: &str, ts: u64| json!({ "name": "resolved by", "cat": "npf", "ph": ph, "id": id, "ts": us(ts), "pid": self.pid, "tid": tid });
                let (s, f) = (flow("s", start), flow("f", t));
                self.timed(start, Rank::FlowStart, s);
                self.timed(t, Rank::FlowEnd, f);
                self.slice(name, tid, t, 0, args);
            }
            _ => self.instant(name, tid, t, args),
        }
    }

    /// A run's header: the previous run's events are written, this run's process is named and
    /// its NPT coverage counter laid out.
    fn run_header(&mut self, line: &Map<String, Value>) {
        let s = |k: &str| line.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        self.end_run();
        let run = line.get("run").and_then(Value::as_u64).unwrap_or(0);
        self.pid = run + 1;
        let c = line.get("config").cloned().unwrap_or(Value::Null);
        self.rmp.per_2m = if c.get("geometry").and_then(Value::as_str) == Some("tiny") { 4 } else { 512 };
        if let Some(cov) = (self.coverage)(run) {
            let total = cov.guest_pages.max(1) as f64;
            for (pages, &t) in cov.pages.iter().zip(cov.t_ns) {
                let pct = |p: u64| (p as f64 * 100_000.0 / total).round() / 1000.0;
                let args = json!({ "4k": pct(pages[0]), "2m": pct(pages[1]), "1g": pct(pages[2]) });
                self.counter("NPT coverage (% of guest memory)", t, args);
            }
        }
        let name = format!(
            "run {}: {} [{} / {}]",
            self.pid - 1,
            s("scenario"),
            c.get("policy").and_then(Value::as_str).unwrap_or("?"),
            c.get("backing").and_then(Value::as_str).unwrap_or("?"),
        );
        self.emit(&json!({
            "name": "process_name", "ph": "M", "pid": self.pid, "tid": 0, "args": { "name": name },
        }));
        self.emit(&json!({
            "name": "process_sort_index", "ph": "M", "pid": self.pid, "tid": 0,
            "args": { "sort_index": self.pid },
        }));
    }

    /// A PSMASH, NPT demotion or host split: a flow's target when it is part of an #NPF's
    /// handling, and a step of the RMP or host-split counter.
    fn resolving_line(&mut self, ev: &str, line: &Map<String, Value>, t: u64, args: Map<String, Value>) {
        let s = |k: &str| line.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let tid = self.track(line);
        let ok = line.get("rc").and_then(Value::as_str).is_none_or(|rc| rc == "SUCCESS");
        let name = match ev {
            "psmash" => format!("PSMASH {}", s("pfn")),
            "npt_demotion" => format!("NPT demotion {}→{}", s("from"), s("to")),
            _ => "host split".to_string(),
        };
        if ok {
            self.resolution(&name, tid, t, args);
        } else {
            self.instant(&name, tid, t, args);
        }
        match ev {
            "psmash" if ok => {
                if let Some(pfn) = hex(line.get("pfn")) {
                    self.rmp.psmash(pfn);
                    self.rmp_counter(t);
                }
            }
            "host_split" => {
                self.host_splits += line.get("count").and_then(Value::as_u64).unwrap_or(0);
                let n = self.host_splits;
                self.counter("host splits", t, json!({ "count": n }));
            }
            _ => {}
        }
    }

    fn line(&mut self, line: &Map<String, Value>) {
        let ev = line.get("ev").and_then(Value::as_str).unwrap_or("state_hash");
        let t = line.get("t").and_then(Value::as_u64).unwrap_or(0);
        let s = |k: &str| line.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let mut args: Map<String, Value> = line
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "ev" | "t" | "vcpu" | "actor"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        match ev {
            "run" => self.run_header(line),
            "step" => {
                let tid = self.track(line);
                let a = line.get("action").cloned().unwrap_or(Value::Null);
                let op = a.get("op").and_then(Value::as_str).unwrap_or("step");
                let gpa = a.get("gpa").and_then(Value::as_str).unwrap_or("");
                self.step = Some((tid, t, format!("{op} {gpa}"), args));
            }
            "step_end" => {
                if let Some((tid, start, name, mut sargs)) = self.step.take() {
                    for k in ["result", "outcome", "cause", "reason", "detail"] {
                        if let Some(v) = line.get(k) {
                            sargs.insert(k.into(), v.clone());
                        }
                    }
                    self.slice(&name, tid, start, t.saturating_sub(start), sargs);
                }
            }
            "npf" => {
                self.npf = Some((s("bits"), args));
            }
            "exit" => {
                let tid = self.track(line);
                let dur = line.get("dur").and_then(Value::as_u64).unwrap_or(0);
                let reason = s("reason");
                match self.npf.take() {
                    Some((bits, mut fargs)) if reason == "npf" => {
                        fargs.insert("exit".into(), "npf".into());
                        self.slice(&format!("#NPF {bits}"), tid, t, dur, fargs);
                        self.handling = Some((tid, t, t + dur));
                    }
                    _ => {
                        self.handling = None;
                        self.slice(&format!("exit {reason}"), tid, t, dur, args);
                    }
                }
            }
            "host_write" => {
                let tid = self.track(line);
                let result = s("result");
                if result == "done" {
                    self.instant(&format!("host write {}", s("gpa")), tid, t, args);
                } else {
                    args.insert("fault".into(), "RMP #PF".into());
                    self.slice(&format!("#PF host write: {result}"), tid, t, 0, args);
                }
            }
            "end" | "state_hash" => {}
            "psmash" | "npt_demotion" | "host_split" => self.resolving_line(ev, line, t, args),
            _ => {
                let tid = self.track(line);
                if ev == "rmpupdate"
                    && line.get("rc").and_then(Value::as_str) == Some("SUCCESS")
                    && let Some(pfn) = hex(line.get("pfn"))
                {
                    let assigned = line.get("assigned").and_then(Value::as_bool) == Some(true);
                    self.rmp.rmpupdate(pfn, s("size") == "2m", assigned);
                    self.rmp_counter(t);
                }
                let name = match ev {
                    "rmpupdate" => format!(
                        "RMPUPDATE {} {} {}",
                        s("pfn"),
                        s("size"),
                        if line.get("assigned").and_then(Value::as_bool) == Some(true) {
                            "assigned"
                        } else {
                            "shared"
                        }
                    ),
                    "pvalidate" => format!("PVALIDATE {} {}", s("gpa"), s("size")),
                    "rmpadjust" => format!("RMPADJUST {} {}", s("gpa"), s("size")),
                    "psc" => format!("PSC {} {} {}", s("gpa"), s("size"), s("op")),
                    "host_pf" => format!("#PF {}", s("bits")),
                    "access" => format!("{} {}", s("kind"), s("gpa")),
                    "violation" => "invariant violation".to_string(),
                    other => other.replace('_', " "),
                };
                self.instant(&name, tid, t, args);
            }
        }
    }
}

/// Convert the text of a JSONL trace (one or more runs) into a Trace Event document. Lines that are
/// not JSON objects are an error naming the 1-based line. Returns the document's text.
pub fn from_jsonl(text: &str) -> Result<String, String> {
    from_jsonl_with_coverage(text, &|_| None)
}

/// [`from_jsonl`], with an NPT coverage counter track for each run that `coverage` (given the
/// run's `run` number) has samples of.
pub fn from_jsonl_with_coverage<'c>(
    text: &str,
    coverage: &'c dyn Fn(u64) -> Option<CoverageSamples<'c>>,
) -> Result<String, String> {
    let mut c = Converter {
        events: String::new(),
        run_events: Vec::new(),
        pid: 1,
        named: BTreeSet::new(),
        step: None,
        npf: None,
        handling: None,
        flows: 0,
        rmp: RmpEntries { per_2m: 512, ..RmpEntries::default() },
        host_splits: 0,
        coverage,
    };
    for (i, l) in text.lines().enumerate() {
        let v: Value = serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1))?;
        let obj = v.as_object().ok_or_else(|| format!("line {}: not a JSON object", i + 1))?;
        c.line(obj);
    }
    c.end_run();
    let other = json!({ "generator": "snpsim", "time": "simulated (cost model), 1 us = 1000 simulated ns" });
    Ok(format!("{{\"displayTimeUnit\":\"ns\",\"otherData\":{other},\"traceEvents\":[\n{}\n]}}\n", c.events))
}
