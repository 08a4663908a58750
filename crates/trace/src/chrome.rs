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
//! ```
//! let jsonl = "{\"ev\":\"run\",\"run\":0,\"scenario\":\"demo\",\"config\":{\"policy\":\"gmem\",\"backing\":\"gmem-4k\"}}\n\
//!              {\"ev\":\"step\",\"t\":0,\"vcpu\":0,\"actor\":\"guest\",\"i\":0,\"action\":{\"op\":\"access\",\"gpa\":\"0x0\"}}\n\
//!              {\"ev\":\"step_end\",\"t\":1500,\"vcpu\":0,\"actor\":\"guest\",\"i\":0,\"result\":\"done\"}\n";
//! let doc: serde_json::Value = serde_json::from_str(&snpsim_trace::chrome::from_jsonl(jsonl).unwrap()).unwrap();
//! let events = doc["traceEvents"].as_array().unwrap();
//! assert!(events.iter().any(|e| e["ph"] == "X" && e["name"] == "access 0x0" && e["dur"] == 1.5));
//! ```

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

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

struct Converter {
    /// The `traceEvents` array's elements, comma-separated, serialized as they come.
    events: String,
    pid: u64,
    named: BTreeSet<(u64, u64)>,
    /// Open step: (tid, start, name, args).
    step: Option<(u64, u64, String, Map<String, Value>)>,
    /// An #NPF waiting for its exit: (code bits, args).
    npf: Option<(String, Map<String, Value>)>,
}

impl Converter {
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

    fn emit(&mut self, v: &Value) {
        if !self.events.is_empty() {
            self.events.push_str(",\n");
        }
        self.events.push_str(&v.to_string());
    }

    fn slice(&mut self, name: &str, tid: u64, t: u64, dur: u64, args: Map<String, Value>) {
        self.emit(&json!({
            "name": name, "cat": "snpsim", "ph": "X", "ts": us(t), "dur": us(dur),
            "pid": self.pid, "tid": tid, "args": Value::Object(args),
        }));
    }

    fn instant(&mut self, name: &str, tid: u64, t: u64, args: Map<String, Value>) {
        self.emit(&json!({
            "name": name, "cat": "snpsim", "ph": "i", "s": "t", "ts": us(t),
            "pid": self.pid, "tid": tid, "args": Value::Object(args),
        }));
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
            "run" => {
                self.pid = line.get("run").and_then(Value::as_u64).unwrap_or(0) + 1;
                let c = line.get("config").cloned().unwrap_or(Value::Null);
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
                    }
                    _ => self.slice(&format!("exit {reason}"), tid, t, dur, args),
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
            _ => {
                let tid = self.track(line);
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
                    "psmash" => format!("PSMASH {}", s("pfn")),
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
    let mut c = Converter { events: String::new(), pid: 1, named: BTreeSet::new(), step: None, npf: None };
    for (i, l) in text.lines().enumerate() {
        let v: Value = serde_json::from_str(l).map_err(|e| format!("line {}: {e}", i + 1))?;
        let obj = v.as_object().ok_or_else(|| format!("line {}: not a JSON object", i + 1))?;
        c.line(obj);
    }
    let other = json!({ "generator": "snpsim", "time": "simulated (cost model), 1 us = 1000 simulated ns" });
    Ok(format!("{{\"displayTimeUnit\":\"ns\",\"otherData\":{other},\"traceEvents\":[\n{}\n]}}\n", c.events))
}
