//! The trace recorder: an event sink writing one JSON object per line per architectural event, with the simulated time
//! and the vCPU or host actor, between a `run` header line that carries everything replay needs
//! (the normalized configuration and the seed) and a final `{"state_hash": "<hex>"}` line over a
//! canonical digest of the whole machine state. `docs/trace-format.md` documents every field.
//!
//! Recording is off unless a run is given a recorder ([`crate::TraceExt::enable_trace`]): the
//! engine's hooks test an `Option` and do nothing else when it is `None`.
//!
//! Events are gathered per engine step and written when the step ends, when their times are known:
//! each event starts when the previous one's cost has elapsed, priced by the run's own cost table
//! (the defaults with a scenario's `[cost]` overrides, as `sim_time_ns` is), counted from the
//! step's start, capped at the step's end, which is the run's `sim_time_ns` after the step. An
//! event is priced exactly as `sim_time_ns` prices it (a PVALIDATE or RMPADJUST that faults costs
//! its #NPF exit, not an instruction), so the cap binds only if the two disagree. KVM-internal effects (exits to the VMM, NPT demotions, host and direct-map splits,
//! implicit conversions) are derived from counter differences around each KVM call and recorded
//! right after it.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde_json::{Value, json};
use snpsim_defs::{
    Gpa, NpfErrorCode, PageSize, PfErrorCode, Pfn, ReturnCode, RmpAdjustOperand, RmpArchEntry, RmpPageSize,
};
use snpsim_engine::cost;
use snpsim_engine::engine::{Action, SimConfig};
use snpsim_engine::events::{Actor, Counters, EventSink, ExitId, ExitResult, PscEntry, RunEnd};
use snpsim_engine::names::Named;
use snpsim_engine::outcome::{Cause, Ending};
use snpsim_host::{HostVia, HostWriteOutcome};
use snpsim_hw::{AccessKind, Geometry, GuestOutcome, PvalidateStatus};

use crate::TraceMeta;
use crate::codec::{action_fields, header_json};
use crate::fields::{F, write_fields, write_uint};
use crate::names::{npf_bits, outcome_name, perms_name, rmp_size_name};

/// An event's fields while it waits for its time: an exit's still open (its result and duration
/// are added when its handling ends), every other event's already written out, in the object's
/// key order (`,"k":v` each), so that a step of a million events holds their text, not a million
/// field lists (about a quarter of the memory; issue 19).
#[derive(Clone, Debug)]
enum Fields {
    Open(Vec<(&'static str, F<'static>)>),
    Text(Vec<u8>),
}

/// One event waiting for its time.
#[derive(Clone, Debug)]
struct Pending {
    ev: &'static str,
    vcpu: Option<u32>,
    actor: Actor,
    fields: Fields,
    /// Its own cost in ns (what it adds to the clock).
    cost: u64,
    /// For an exit: the index of the first event after its handling (its slice ends there).
    span_end: Option<usize>,
}

/// The event log of one run.
#[derive(Clone, Debug)]
pub struct Recorder {
    out: Vec<u8>,
    pending: Vec<Pending>,
    /// RMP regions (first frame) any recorded instruction named: the RMP part of the digest.
    regions: BTreeSet<u64>,
    per_2m: u64,
    vcpu: Option<u32>,
    actor: Actor,
    /// The vCPU and actor of the current step.
    step_who: (Option<u32>, Actor),
    /// The vCPUs and actors to return to when the open exits (an exit hands the vCPU to `kvm`)
    /// and the work entered with [`Recorder::enter`] end.
    actor_stack: Vec<(Option<u32>, Actor)>,
    /// Simulated time at the start of the current step.
    clock: u64,
    /// Steps recorded.
    steps: u64,
    /// The run's cost parameters: what each event adds to the clock.
    costs: cost::CostTable,
    /// The `run` header line as written: part of the state digest, so that an edited header
    /// (seed, scenario, source, run number) no longer matches its `state_hash`.
    header: Vec<u8>,
}

impl Recorder {
    /// A recorder for a machine of `geometry`, its header line already written.
    pub fn new(geometry: Geometry, meta: &TraceMeta, config: &SimConfig, costs: &cost::CostTable) -> Self {
        let mut r = Recorder {
            out: Vec::new(),
            pending: Vec::new(),
            regions: BTreeSet::new(),
            per_2m: geometry.pages_per_2m(),
            vcpu: None,
            actor: Actor::Vmm,
            step_who: (None, Actor::Vmm),
            actor_stack: Vec::new(),
            clock: 0,
            steps: 0,
            costs: *costs,
            header: Vec::new(),
        };
        r.write_value(&header_json(meta, config, costs));
        r.header.clone_from(&r.out);
        r
    }

    /// The `run` header line this recorder wrote (with its newline).
    pub fn header(&self) -> &[u8] {
        &self.header
    }

    /// Write one line: `ev` first (when the object has one), then the other keys in order.
    fn write_value(&mut self, v: &Value) {
        let mut line = String::new();
        if let Some(obj) = v.as_object()
            && let Some(ev) = obj.get("ev")
        {
            let _ = write!(line, "{{\"ev\":{ev}");
            for (k, x) in obj.iter().filter(|(k, _)| k.as_str() != "ev") {
                let _ = write!(line, ",{}:{x}", Value::String(k.clone()));
            }
            line.push('}');
        } else {
            line = v.to_string();
        }
        line.push('\n');
        self.out.extend_from_slice(line.as_bytes());
    }

    /// What one event of cost item `item` adds to the clock, in the run's cost table.
    fn cost(&self, item: usize) -> u64 {
        self.costs.get(item)
    }

    /// The RMP regions (first frames) named by recorded instructions.
    pub fn regions(&self) -> &BTreeSet<u64> {
        &self.regions
    }

    /// The simulated time at the start of the current step.
    pub fn clock(&self) -> u64 {
        self.clock
    }

    /// Steps recorded so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Record an event on the current vCPU or actor, its fields written out now; returns its
    /// index in the step.
    fn push(&mut self, ev: &'static str, mut fields: Vec<(&'static str, F<'_>)>, cost: u64) -> usize {
        let mut text = Vec::with_capacity(24 * fields.len());
        write_fields(&mut text, &mut fields);
        self.push_fields(ev, Fields::Text(text), cost)
    }

    fn push_fields(&mut self, ev: &'static str, fields: Fields, cost: u64) -> usize {
        self.pending.push(Pending { ev, vcpu: self.vcpu, actor: self.actor, fields, cost, span_end: None });
        self.pending.len() - 1
    }

    /// Set a field of an event still open in this step (an exit's result), replacing its value.
    fn set(&mut self, index: usize, key: &'static str, v: F<'static>) {
        if let Some(Pending { fields: Fields::Open(fields), .. }) = self.pending.get_mut(index) {
            match fields.iter_mut().find(|(k, _)| *k == key) {
                Some((_, old)) => *old = v,
                None => fields.push((key, v)),
            }
        }
    }

    fn touch(&mut self, pfn: Pfn) {
        self.regions.insert(pfn.raw() / self.per_2m * self.per_2m);
    }

    /// Write the events of the step, the last ending at `t_end`.
    fn flush(&mut self, t_end: u64) {
        let t_end = t_end.max(self.clock);
        let n = self.pending.len();
        let mut times = Vec::with_capacity(n + 1);
        let mut t = self.clock;
        for p in &self.pending {
            times.push(t.min(t_end));
            t = t.saturating_add(p.cost);
        }
        times.push(t.min(t_end));
        if let Some(last) = n.checked_sub(1) {
            // The step's end line is at the step's end.
            if self.pending[last].ev == "step_end" {
                times[last] = t_end;
            }
        }
        let pending = std::mem::take(&mut self.pending);
        let out = &mut self.out;
        for (idx, p) in pending.into_iter().enumerate() {
            // `{"ev":"…","t":…,"vcpu":…,"actor":"…"`: names of the engine's, none needing escapes.
            out.extend_from_slice(b"{\"ev\":\"");
            out.extend_from_slice(p.ev.as_bytes());
            out.extend_from_slice(b"\",\"t\":");
            write_uint(out, times[idx]);
            match p.vcpu {
                Some(v) => {
                    out.extend_from_slice(b",\"vcpu\":");
                    write_uint(out, v.into());
                }
                None => out.extend_from_slice(b",\"vcpu\":null"),
            }
            out.extend_from_slice(b",\"actor\":\"");
            out.extend_from_slice(p.actor.name().as_bytes());
            out.push(b'"');
            match p.fields {
                Fields::Open(mut fields) => {
                    if let Some(end) = p.span_end {
                        let end_t = if end >= n { t_end } else { times[end] };
                        fields.push(("dur", F::Uint(end_t - times[idx])));
                    }
                    write_fields(out, &mut fields);
                }
                Fields::Text(text) => out.extend_from_slice(&text),
            }
            out.extend_from_slice(b"}\n");
        }
        self.clock = t_end;
    }
}

impl EventSink for Recorder {
    fn clone_box(&self) -> Box<dyn EventSink> {
        Box::new(self.clone())
    }

    /// Take the lines written so far.
    fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// A step begins.
    fn begin_step(&mut self, action: &Action) {
        let (vcpu, actor) = Actor::of_action(action);
        self.step_who = (vcpu, actor);
        self.set_actor(vcpu, actor);
        let i = self.steps;
        self.steps += 1;
        self.push("step", vec![("i", F::Uint(i)), ("action", F::Obj(action_fields(action)))], 0);
    }

    /// A step ends at simulated time `t_end`: give every event of the step its time and write it.
    fn end_step(&mut self, result: &str, ending: Option<&Ending>, violations: &[String], t_end: u64) {
        let i = self.steps.saturating_sub(1);
        self.actor_stack.clear();
        self.set_actor(self.step_who.0, self.step_who.1);
        for v in violations {
            self.push("violation", vec![("what", F::Str(v))], 0);
        }
        let o = ending.map(|e| e.outcome().name());
        let cause = ending.and_then(Ending::cause).map(Cause::name);
        let (reason, detail) = (ending.map(|e| e.reason.name()), ending.map(|e| e.detail.as_str()));
        self.push(
            "step_end",
            vec![
                ("i", F::Uint(i)),
                ("result", F::Str(result)),
                ("outcome", F::opt_str(o)),
                ("cause", F::opt_str(cause)),
                ("reason", F::opt_str(reason)),
                ("detail", F::opt_str(detail)),
            ],
            0,
        );
        self.flush(t_end);
    }

    /// The run ends: the `end` line and the `state_hash` line.
    fn finish(&mut self, end: &RunEnd<'_>) {
        let hash = end.state.state_hash(&self.header, &self.regions);
        let ending = end.ending;
        let outcome = ending.map_or(snpsim_engine::Outcome::Completed, Ending::outcome);
        let line = json!({
            "ev": "end",
            "t": end.sim_time_ns,
            "steps": self.steps,
            "outcome": outcome.name(),
            "cause": ending.and_then(Ending::cause).map(Cause::name),
            "reason": ending.map(|e| e.reason.name()),
            "detail": ending.map(|e| e.detail.as_str()),
            "violations": end.violations,
            "metrics": end.metrics,
        });
        self.flush(self.clock);
        self.write_value(&line);
        self.write_value(&json!({ "state_hash": hash }));
    }

    /// What follows until [`Recorder::leave`] is executed by `actor` on `vcpu`: KVM's work on a
    /// vCPU that no exit of this step opened (a PSMASH or page-state-change tick of an interleaved
    /// run, `sev_gmem_invalidate` under a punch_hole), the adversary's attacks. Every event's actor
    /// is the one who executed it.
    fn enter(&mut self, vcpu: Option<u32>, actor: Actor) {
        self.actor_stack.push((self.vcpu, self.actor));
        self.set_actor(vcpu, actor);
    }

    /// Return to the vCPU and actor before the last [`Recorder::enter`] or exit.
    fn leave(&mut self) {
        if let Some((vcpu, actor)) = self.actor_stack.pop() {
            self.set_actor(vcpu, actor);
        }
    }

    /// Run what follows on `actor` (host work outside a guest step, such as khugepaged).
    fn set_actor(&mut self, vcpu: Option<u32>, actor: Actor) {
        self.vcpu = vcpu;
        self.actor = actor;
    }

    // ---- RMP instructions (from `Observed`) ----

    fn rmpupdate(&mut self, pfn: Pfn, new: RmpArchEntry, rc: ReturnCode) {
        self.touch(pfn);
        self.push(
            "rmpupdate",
            vec![
                ("pfn", F::Hex(pfn.raw())),
                ("assigned", F::Bool(new.assigned())),
                ("asid", F::Uint(new.asid().into())),
                ("gpa", F::Hex(new.gpa().raw())),
                ("size", F::Str(if new.page_size() { "2m" } else { "4k" })),
                ("immutable", F::Bool(new.immutable())),
                ("rc", F::Str(rc.name())),
            ],
            self.cost(if new.page_size() { cost::item::RMPUPDATE_2M } else { cost::item::RMPUPDATE_4K }),
        );
    }

    fn psmash(&mut self, pfn: Pfn, rc: ReturnCode) {
        self.touch(pfn);
        self.push(
            "psmash",
            vec![("pfn", F::Hex(pfn.raw())), ("rc", F::Str(rc.name()))],
            self.cost(cost::item::PSMASH),
        );
    }

    fn pvalidate(
        &mut self,
        gpa: Gpa,
        pfn: Pfn,
        size: RmpPageSize,
        validate: bool,
        r: &GuestOutcome<PvalidateStatus>,
    ) {
        self.touch(pfn);
        let item =
            if size == RmpPageSize::Size2M { cost::item::PVALIDATE_2M } else { cost::item::PVALIDATE_4K };
        let cost = if snpsim_engine::observed::retired(r) { self.cost(item) } else { 0 };
        let result = outcome_name(r, |s| match s {
            PvalidateStatus::Changed => "done",
            PvalidateStatus::Unchanged => "unchanged",
        });
        self.push(
            "pvalidate",
            vec![
                ("gpa", F::Hex(gpa.raw())),
                ("pfn", F::Hex(pfn.raw())),
                ("size", F::Str(rmp_size_name(size))),
                ("validate", F::Bool(validate)),
                ("result", F::Text(result)),
            ],
            cost,
        );
    }

    fn rmpadjust(
        &mut self,
        gpa: Gpa,
        pfn: Pfn,
        size: RmpPageSize,
        op: RmpAdjustOperand,
        r: &GuestOutcome<()>,
    ) {
        self.touch(pfn);
        let cost = if snpsim_engine::observed::retired(r) { self.cost(cost::item::RMPADJUST) } else { 0 };
        self.push(
            "rmpadjust",
            vec![
                ("gpa", F::Hex(gpa.raw())),
                ("pfn", F::Hex(pfn.raw())),
                ("size", F::Str(rmp_size_name(size))),
                ("vmpl", F::Uint(op.target_vmpl().into())),
                ("perms", F::Text(perms_name(op.perms()))),
                ("vmsa", F::Bool(op.vmsa())),
                ("result", F::Text(outcome_name(r, |()| "done"))),
            ],
            cost,
        );
    }

    // ---- Machine events ----

    /// An #NPF (the fault as the CPU reports it) and the exit it causes; returns the exit's index
    /// (close it when KVM returns).
    fn npf(&mut self, gpa: Gpa, code: NpfErrorCode, leaf: Option<PageSize>) -> ExitId {
        self.push(
            "npf",
            vec![
                ("gpa", F::Hex(gpa.raw())),
                ("code", F::Hex(code.into_bits())),
                ("bits", F::Text(npf_bits(code))),
                ("leaf", F::opt_str(leaf.map(PageSize::name))),
            ],
            0,
        );
        self.exit("npf")
    }

    /// An exit of `reason` (an `exits` metric key); returns its index.
    fn exit(&mut self, reason: &'static str) -> ExitId {
        // Every reason KVM counts has an item (`cost::tests::every_exit_reason_is_priced`).
        let cost = cost::exit_item(reason).map_or(0, |i| self.cost(i));
        // Open: its result and duration come when its handling ends.
        let i = self.push_fields("exit", Fields::Open(vec![("reason", F::Str(reason))]), cost);
        self.enter(self.vcpu, Actor::Kvm);
        ExitId(i)
    }

    /// Close the slice of the exit at `index`: its handling ends here.
    fn close(&mut self, exit: ExitId) {
        let end = self.pending.len();
        if let Some(p) = self.pending.get_mut(exit.0) {
            p.span_end = Some(end);
        }
        self.leave();
    }

    /// One page-state-change entry as the guest sent it.
    fn exit_result(&mut self, exit: ExitId, result: ExitResult) {
        match result {
            ExitResult::PscMsr { error } => self.set(exit.0, "result", F::Uint(error.into())),
            ExitResult::PscGhcb { info2, cur_entry } => {
                self.set(exit.0, "result", F::Hex(info2));
                self.set(exit.0, "cur_entry", F::Uint(cur_entry.into()));
            }
        }
    }

    fn psc_entry(&mut self, e: &PscEntry) {
        let op = match snpsim_defs::ghcb::PscOp::from_raw(e.op) {
            Some(snpsim_defs::ghcb::PscOp::Private) => F::Str("private"),
            Some(snpsim_defs::ghcb::PscOp::Shared) => F::Str("shared"),
            Some(snpsim_defs::ghcb::PscOp::Psmash) => F::Str("psmash"),
            Some(snpsim_defs::ghcb::PscOp::Unsmash) => F::Str("unsmash"),
            None => F::Text(format!("invalid:{}", e.op)),
        };
        self.push(
            "psc",
            vec![
                ("protocol", F::Str(e.protocol.name())),
                ("entry", e.entry.map_or(F::Null, |x| F::Uint(x as u64))),
                ("gpa", F::Hex(e.gpa.raw())),
                ("op", op),
                ("size", F::Str(if e.size_2m { "2m" } else { "4k" })),
                ("cur_page", F::Uint(e.cur_page.into())),
            ],
            0,
        );
    }

    /// A guest access's final result (after every #NPF it took).
    fn access(
        &mut self,
        gpa: Gpa,
        kind: AccessKind,
        private: bool,
        pfn: Pfn,
        leaf: PageSize,
        r: &GuestOutcome<()>,
    ) {
        self.push(
            "access",
            vec![
                ("gpa", F::Hex(gpa.raw())),
                ("kind", F::Str(kind.name())),
                ("private", F::Bool(private)),
                ("pfn", F::Hex(pfn.raw())),
                ("leaf", F::Str(leaf.name())),
                ("result", F::Text(outcome_name(r, |()| "done"))),
            ],
            0,
        );
    }

    /// A host write's result.
    fn host_write(&mut self, gpa: Gpa, via: HostVia, target: Option<(Pfn, PageSize)>, r: HostWriteOutcome) {
        let (pfn, mapping) = target.map_or((F::Null, F::Null), |(p, s)| (F::Hex(p.raw()), F::Str(s.name())));
        self.push(
            "host_write",
            vec![
                ("gpa", F::Hex(gpa.raw())),
                ("via", F::Str(via.name())),
                ("pfn", pfn),
                ("mapping", mapping),
                ("result", F::Str(r.name())),
            ],
            0,
        );
    }

    /// A host #PF taken by a host write (before the RMP #PF handler runs).
    fn host_pf(&mut self, gpa: Gpa, pfn: Pfn, mapping: PageSize, code: PfErrorCode) {
        let bits = [
            (code.present(), "P"),
            (code.write(), "W"),
            (code.user(), "U"),
            (code.reserved_bit(), "RSV"),
            (code.instr(), "I"),
            (code.pk(), "PK"),
            (code.shadow_stack(), "SS"),
            (code.sgx(), "SGX"),
            (code.rmp(), "RMP"),
        ];
        let bits: Vec<&str> = bits.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect();
        self.push(
            "host_pf",
            vec![
                ("gpa", F::Hex(gpa.raw())),
                ("pfn", F::Hex(pfn.raw())),
                ("mapping", F::Str(mapping.name())),
                ("code", F::Hex(u64::from(code.into_bits()))),
                ("bits", F::Text(bits.join("|"))),
            ],
            0,
        );
    }

    /// khugepaged (or a `host_collapse`) collapsed the THP range from VMA page `offset`.
    fn host_collapse(&mut self, offset: u64, pages: u64) {
        self.push("host_collapse", vec![("gpa", F::Hex(offset * 4096)), ("pages", F::Uint(pages))], 0);
    }

    /// A guest access at `gpa` required the last unrequired part of a zapped leaf: that
    /// demotion is needed after all.
    fn demotion_needed(&mut self, gpa: Gpa) {
        self.push("npt_demotion_needed", vec![("gpa", F::Hex(gpa.raw())), ("count", F::Uint(1))], 0);
    }

    /// Derived events: what changed in the counters between `before` and `after`.
    fn derived(&mut self, before: &Counters, after: &Counters) {
        if before == after {
            return;
        }
        for (reason, b, a) in [
            ("hypercall", before.hypercall, after.hypercall),
            ("memory_fault", before.memory_fault, after.memory_fault),
        ] {
            for _ in b..a {
                let i = self.exit(reason);
                self.close(i);
            }
        }
        if after.implicit_conversions > before.implicit_conversions {
            self.push(
                "implicit_conversion",
                vec![("count", F::Uint(after.implicit_conversions - before.implicit_conversions))],
                0,
            );
        }
        let needless = after.demotions_needless.saturating_sub(before.demotions_needless);
        for (key, &n) in &after.demotions {
            let d = n - before.demotions.get(key).copied().unwrap_or(0);
            if d > 0 {
                let (from, to) = key.split_once('_').unwrap_or((key, ""));
                self.push(
                    "npt_demotion",
                    vec![("from", F::Str(from)), ("to", F::Str(to)), ("count", F::Uint(d))],
                    d.saturating_mul(self.cost(cost::item::NPT_ZAP)),
                );
            }
        }
        if needless > 0 {
            self.push("npt_demotion_needless", vec![("count", F::Uint(needless))], 0);
        }
        let splits = after.host_splits - before.host_splits;
        if splits > 0 {
            self.push(
                "host_split",
                vec![("count", F::Uint(splits))],
                splits.saturating_mul(self.cost(cost::item::HOST_SPLIT)),
            );
        }
        let needed = after.host_splits_needed - before.host_splits_needed;
        if needed > 0 {
            self.push("host_split_needed", vec![("count", F::Uint(needed))], 0);
        }
        let dm = after.direct_map_splits - before.direct_map_splits;
        if dm > 0 {
            self.push(
                "direct_map_split",
                vec![("count", F::Uint(dm))],
                dm.saturating_mul(self.cost(cost::item::DIRECT_MAP_SPLIT)),
            );
        }
    }
}
