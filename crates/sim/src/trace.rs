//! Traces (`docs/semantics.md` E6): one JSON object per line per architectural event, with the simulated time
//! and the vCPU or host actor, between a `run` header line that carries everything replay needs
//! (the normalized configuration and the seed) and a final `{"state_hash": "<hex>"}` line over a
//! canonical digest of the whole machine state. `docs/trace-format.md` documents every field.
//!
//! Recording is off unless [`crate::Simulation::enable_trace`] is called: the hooks in
//! [`crate::observed`], [`crate::machine`] and [`crate::engine`] test an `Option` and do nothing
//! else when it is `None`.
//!
//! Events are gathered per engine step and written when the step ends, when their times are known:
//! each event starts when the previous one's cost has elapsed, priced by the run's own cost table
//! (the defaults with a scenario's `[cost]` overrides, as `sim_time_ns` is), counted from the
//! step's start, capped at the step's end, which is the run's `sim_time_ns` after the step. An
//! event is priced exactly as `sim_time_ns` prices it (a PVALIDATE or RMPADJUST that faults costs
//! its #NPF exit, not an instruction), so the cap binds only if the two disagree. KVM-internal effects (exits to the VMM, NPT demotions, host and direct-map splits,
//! implicit conversions) are derived from counter differences around each KVM call and recorded
//! right after it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde_json::{Map, Value, json};
use snpsim_defs::{
    Gpa, NpfErrorCode, PageSize, PfErrorCode, Pfn, ReturnCode, RmpAdjustOperand, RmpArchEntry, RmpPageSize,
    VmplPerms,
};
use snpsim_guest::{Granularity, GuestConfig, Protocol, PscOrder, Recoalesce};
use snpsim_host::{HostVia, HostWriteOutcome, VmaBacking};
use snpsim_hw::{AccessKind, Geometry, GuestOutcome, PvalidateStatus, RmpModel};

use crate::cost;
use crate::engine::{Action, CheckMode, MemoryBacking, SimConfig};
use crate::machine::Machine;

/// The trace format version written in every `run` header.
pub const FORMAT_VERSION: u64 = 3;

/// Every value of `ev` a trace line can carry (the last line of a run has `state_hash` instead).
pub const EVENTS: &[&str] = &[
    "run",
    "step",
    "step_end",
    "rmpupdate",
    "psmash",
    "pvalidate",
    "rmpadjust",
    "npf",
    "exit",
    "psc",
    "access",
    "host_write",
    "host_pf",
    "host_collapse",
    "implicit_conversion",
    "npt_demotion",
    "npt_demotion_needless",
    "npt_demotion_needed",
    "host_split",
    "host_split_needed",
    "direct_map_split",
    "violation",
    "end",
];

/// What a trace says about the run besides its configuration: shown by tools, checked by replay.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceMeta {
    /// Index of the run in its trace file (0 for the first).
    pub run: u64,
    /// The scenario's name.
    pub scenario: String,
    /// Where the scenario came from (a file, `<embedded ...>`, `<library>`).
    pub source: String,
    /// The scenario's seed.
    pub seed: u64,
    /// A planted bug the run carries (`snpsim check --mutant`), so that replay plants it too.
    pub mutant: Option<snpsim_hw::Mutant>,
}

impl TraceMeta {
    /// The metadata of run `run` of a trace file for scenario `s` read from `source`.
    pub fn for_scenario(s: &crate::scenario::Scenario, source: &str, run: u64) -> Self {
        TraceMeta { run, scenario: s.name.clone(), source: source.to_string(), seed: s.seed, mutant: None }
    }
}

/// FNV-1a, 128 bits: a fixed, portable hash for the state digest.
#[derive(Clone, Copy, Debug)]
pub struct Fnv128(u128);

impl Default for Fnv128 {
    fn default() -> Self {
        Fnv128(0x6c62_272e_07bb_0142_62b8_2175_6295_c58d)
    }
}

impl Fnv128 {
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;

    /// Feed bytes.
    pub fn bytes(&mut self, data: &[u8]) {
        for &b in data {
            self.0 ^= u128::from(b);
            self.0 = self.0.wrapping_mul(Self::PRIME);
        }
    }

    /// Feed a tagged, length-prefixed piece (so concatenations cannot collide).
    pub fn piece(&mut self, tag: &str, data: &[u8]) {
        self.bytes(tag.as_bytes());
        self.bytes(&(data.len() as u64).to_le_bytes());
        self.bytes(data);
    }

    /// Feed one integer.
    pub fn u64(&mut self, v: u64) {
        self.bytes(&v.to_le_bytes());
    }

    /// The digest as 32 hex digits.
    pub fn hex(self) -> String {
        format!("{:032x}", self.0)
    }
}

/// One event waiting for its time.
#[derive(Clone, Debug)]
struct Pending {
    ev: &'static str,
    vcpu: Option<u32>,
    actor: &'static str,
    fields: Map<String, Value>,
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
    actor: &'static str,
    /// The vCPU and actor of the current step.
    step_who: (Option<u32>, &'static str),
    /// The vCPUs and actors to return to when the open exits (an exit hands the vCPU to `kvm`)
    /// and the work entered with [`Recorder::enter`] end.
    actor_stack: Vec<(Option<u32>, &'static str)>,
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

/// The name of a page size in traces (`4k`, `2m`, `1g`).
pub fn size_name(s: PageSize) -> &'static str {
    s.name()
}

fn hex(v: u64) -> Value {
    Value::String(format!("{v:#x}"))
}

/// The `|`-joined names of the set bits of an #NPF error code (`P|W|RMP|SIZEM|ENC`).
pub fn npf_bits(code: NpfErrorCode) -> String {
    let bits = [
        (code.present(), "P"),
        (code.write(), "W"),
        (code.user(), "U"),
        (code.reserved_bit(), "RSV"),
        (code.fetch(), "ID"),
        (code.shadow_stack(), "SS"),
        (code.rmp(), "RMP"),
        (code.guest_final(), "FINAL"),
        (code.guest_page(), "GPT"),
        (code.enc(), "ENC"),
        (code.sizem(), "SIZEM"),
        (code.vmpl(), "VMPL"),
        (code.supervisor_shadow_stack(), "SSS"),
        (code.not_restartable(), "NR"),
    ];
    bits.iter().filter(|(on, _)| *on).map(|(_, n)| *n).collect::<Vec<_>>().join("|")
}

/// A guest instruction's or access's result as traces write it: `done`, `unchanged` (PVALIDATE
/// CF=1), a failure code name, `npf:0x...` or `vc:0x...` ([`GuestOutcome::name_with`]).
pub fn outcome_name<T>(o: &GuestOutcome<T>, done: impl Fn(&T) -> &'static str) -> String {
    o.name_with(done)
}

fn rmp_size_name(s: RmpPageSize) -> &'static str {
    s.page_size().name()
}

fn kind_name(k: AccessKind) -> &'static str {
    match k {
        AccessKind::Read => "read",
        AccessKind::Write => "write",
        AccessKind::Exec => "exec",
    }
}

/// The trace name of a host access path (`vmm`, `uaccess`, `kernel`).
pub fn via_name(v: HostVia) -> &'static str {
    match v {
        HostVia::Vmm => "vmm",
        HostVia::Uaccess => "uaccess",
        HostVia::Kernel => "kernel",
    }
}

/// The host actor performing a host access: the VMM process, vhost (a kernel thread using
/// get/put_user on the VMM's mapping) or the kernel through its direct map.
fn via_actor(v: HostVia) -> &'static str {
    match v {
        HostVia::Vmm => "vmm",
        HostVia::Uaccess => "vhost",
        HostVia::Kernel => "kernel",
    }
}

/// The trace name of a host write's result.
pub fn host_write_name(o: HostWriteOutcome) -> &'static str {
    match o {
        HostWriteOutcome::Done => "done",
        HostWriteOutcome::Sigbus => "sigbus",
        HostWriteOutcome::Efault => "efault",
        HostWriteOutcome::KernelOops => "kernel_oops",
        HostWriteOutcome::Hang => "hang",
    }
}

fn perms_name(p: VmplPerms) -> String {
    let mut s = String::new();
    for (on, c) in [
        (p.read(), 'r'),
        (p.write(), 'w'),
        (p.exec_user(), 'x'),
        (p.exec_supervisor(), 's'),
        (p.supervisor_shadow_stack(), 'S'),
    ] {
        if on {
            s.push(c);
        }
    }
    s
}

fn parse_perms(s: &str) -> Option<VmplPerms> {
    let mut p = VmplPerms::new();
    for c in s.chars() {
        p = match c {
            'r' if !p.read() => p.with_read(true),
            'w' if !p.write() => p.with_write(true),
            'x' if !p.exec_user() => p.with_exec_user(true),
            's' if !p.exec_supervisor() => p.with_exec_supervisor(true),
            'S' if !p.supervisor_shadow_stack() => p.with_supervisor_shadow_stack(true),
            _ => return None,
        };
    }
    Some(p)
}

fn gran_name(g: Granularity) -> &'static str {
    match g {
        Granularity::K4 => "4k",
        Granularity::M2 => "2m",
    }
}

fn recoalesce_name(r: Recoalesce) -> &'static str {
    match r {
        Recoalesce::None => "none",
        Recoalesce::SaveRestore => "save-restore",
        Recoalesce::Naive => "naive",
    }
}

fn vma_name(b: VmaBacking) -> &'static str {
    match b {
        VmaBacking::Anon4k => "anon-4k",
        VmaBacking::Thp => "thp",
        VmaBacking::Hugetlbfs2m => "hugetlbfs-2m",
        VmaBacking::Hugetlbfs1g => "hugetlbfs-1g",
    }
}

fn check_name(c: CheckMode) -> &'static str {
    match c {
        CheckMode::Full => "full",
        CheckMode::Incremental => "incremental",
        CheckMode::Off => "off",
    }
}

/// The vCPU and host actor an action runs on: guest operations on their vCPU, host operations on
/// the host actor that performs them (`vmm`, `vhost`, `kernel`, `host-mm`).
pub fn action_actor(a: &Action) -> (Option<u32>, &'static str) {
    match *a {
        Action::Psc { vcpu, .. }
        | Action::Accept { vcpu, .. }
        | Action::Pvalidate { vcpu, .. }
        | Action::Rmpadjust { vcpu, .. }
        | Action::PscRequest { vcpu, .. }
        | Action::Access { vcpu, .. }
        | Action::Recoalesce { vcpu, .. }
        | Action::Tick { vcpu } => (Some(vcpu), "guest"),
        Action::HostWrite { via, .. } | Action::HostRead { via, .. } => (None, via_actor(via)),
        Action::HostSplit { .. } | Action::HostCollapse { .. } => (None, "host-mm"),
        Action::PunchHole { .. } => (None, "vmm"),
    }
}

/// An action as the `action` object of a `step` line.
pub fn action_json(a: &Action) -> Value {
    let gran = |g: Option<Granularity>| g.map_or(Value::Null, |g| Value::from(gran_name(g)));
    match *a {
        Action::Psc { vcpu, gpa, pages, private, granularity } => json!({
            "op": "psc", "vcpu": vcpu, "gpa": hex(gpa.raw()), "pages": pages,
            "to": if private { "private" } else { "shared" }, "granularity": gran(granularity),
        }),
        Action::Accept { vcpu, gpa, pages, granularity } => json!({
            "op": "accept", "vcpu": vcpu, "gpa": hex(gpa.raw()), "pages": pages, "granularity": gran(granularity),
        }),
        Action::Pvalidate { vcpu, gpa, size, validate } => json!({
            "op": "pvalidate", "vcpu": vcpu, "gpa": hex(gpa.raw()), "size": rmp_size_name(size), "validate": validate,
        }),
        Action::PscRequest { vcpu, gpa, size, private, cur_page } => json!({
            "op": "psc_request", "vcpu": vcpu, "gpa": hex(gpa.raw()), "size": rmp_size_name(size),
            "to": if private { "private" } else { "shared" }, "cur_page": cur_page,
        }),
        Action::Rmpadjust { vcpu, gpa, size, vmpl, perms, vmsa } => json!({
            "op": "rmpadjust", "vcpu": vcpu, "gpa": hex(gpa.raw()), "size": rmp_size_name(size),
            "vmpl": vmpl, "perms": perms_name(perms), "vmsa": vmsa,
        }),
        Action::Access { vcpu, gpa, kind, private } => json!({
            "op": "access", "vcpu": vcpu, "gpa": hex(gpa.raw()), "kind": kind_name(kind), "private": private,
        }),
        Action::Recoalesce { vcpu, gpa, mode } => json!({
            "op": "recoalesce", "vcpu": vcpu, "gpa": hex(gpa.raw()), "mode": recoalesce_name(mode),
        }),
        Action::HostWrite { gpa, via } => {
            json!({ "op": "host_write", "gpa": hex(gpa.raw()), "via": via_name(via) })
        }
        Action::HostRead { gpa, via } => {
            json!({ "op": "host_read", "gpa": hex(gpa.raw()), "via": via_name(via) })
        }
        Action::HostSplit { gpa } => json!({ "op": "host_split", "gpa": hex(gpa.raw()) }),
        Action::HostCollapse { gpa } => json!({ "op": "host_collapse", "gpa": hex(gpa.raw()) }),
        Action::PunchHole { gpa, pages } => {
            json!({ "op": "punch_hole", "gpa": hex(gpa.raw()), "pages": pages })
        }
        Action::Tick { vcpu } => json!({ "op": "tick", "vcpu": vcpu }),
    }
}

/// Reads the fields of one JSON object, naming the field and what it accepts on failure, and
/// rejecting fields it was not asked for.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    what: &'a str,
    seen: BTreeSet<&'a str>,
}

impl<'a> Fields<'a> {
    fn new(v: &'a Value, what: &'a str) -> Result<Self, String> {
        let obj = v.as_object().ok_or_else(|| format!("`{what}` must be a JSON object"))?;
        Ok(Fields { obj, what, seen: BTreeSet::new() })
    }

    fn get(&mut self, key: &'a str) -> Result<&'a Value, String> {
        self.seen.insert(key);
        self.obj.get(key).ok_or_else(|| format!("`{}.{key}` is missing", self.what))
    }

    /// Whether the object has `key` (for fields later versions of the format added).
    fn has(&self, key: &str) -> bool {
        self.obj.contains_key(key)
    }

    fn u64(&mut self, key: &'a str) -> Result<u64, String> {
        let what = self.what;
        self.get(key)?.as_u64().ok_or_else(|| format!("`{what}.{key}` must be a non-negative integer"))
    }

    fn opt_u64(&mut self, key: &'a str) -> Result<Option<u64>, String> {
        let what = self.what;
        match self.get(key)? {
            Value::Null => Ok(None),
            v => v.as_u64().map(Some).ok_or_else(|| format!("`{what}.{key}` must be null or an integer")),
        }
    }

    fn bool(&mut self, key: &'a str) -> Result<bool, String> {
        let what = self.what;
        self.get(key)?.as_bool().ok_or_else(|| format!("`{what}.{key}` must be true or false"))
    }

    fn opt_bool(&mut self, key: &'a str) -> Result<Option<bool>, String> {
        let what = self.what;
        match self.get(key)? {
            Value::Null => Ok(None),
            v => v.as_bool().map(Some).ok_or_else(|| format!("`{what}.{key}` must be null, true or false")),
        }
    }

    fn str(&mut self, key: &'a str) -> Result<&'a str, String> {
        let what = self.what;
        self.get(key)?.as_str().ok_or_else(|| format!("`{what}.{key}` must be a string"))
    }

    fn hex(&mut self, key: &'a str) -> Result<u64, String> {
        let what = self.what;
        let s = self.str(key)?;
        s.strip_prefix("0x")
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .ok_or_else(|| format!("`{what}.{key}` must be a hex string like \"0x200000\", not {s:?}"))
    }

    fn choice<T: Copy>(&mut self, key: &'a str, options: &[(&str, T)]) -> Result<T, String> {
        let what = self.what;
        let s = self.str(key)?;
        options.iter().find(|(n, _)| *n == s).map(|&(_, v)| v).ok_or_else(|| {
            let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            format!("`{what}.{key}` is {s:?}; accepted: {}", names.join(", "))
        })
    }

    fn u32(&mut self, key: &'a str) -> Result<u32, String> {
        let what = self.what;
        u32::try_from(self.u64(key)?).map_err(|_| format!("`{what}.{key}` is too large"))
    }

    /// Fail on any field not read.
    fn done(self) -> Result<(), String> {
        match self.obj.keys().find(|k| !self.seen.contains(k.as_str())) {
            Some(k) => Err(format!("`{}` has an unknown field `{k}`", self.what)),
            None => Ok(()),
        }
    }
}

const SIZES_4K_2M: [(&str, RmpPageSize); 2] = [("4k", RmpPageSize::Size4K), ("2m", RmpPageSize::Size2M)];
const VIAS: [(&str, HostVia); 3] =
    [("vmm", HostVia::Vmm), ("uaccess", HostVia::Uaccess), ("kernel", HostVia::Kernel)];

/// Read an action back from a `step` line's `action` object and check that it fits `config`
/// (vCPU index, range inside guest memory, operand ranges), so that replaying it cannot drive the
/// engine outside what a scenario could.
pub fn action_from_json(v: &Value, config: &SimConfig) -> Result<Action, String> {
    let mut f = Fields::new(v, "action")?;
    let op = f.str("op")?;
    if op == "tick" {
        return tick_from(f, config);
    }
    let gpa = Gpa(f.hex("gpa")?);
    let guest_bytes = config.guest_pages.saturating_mul(4096);
    let mut vcpu = || -> Result<u32, String> {
        let v = f.u32("vcpu")?;
        if v >= config.vcpus {
            return Err(format!("`action.vcpu` is {v}; the run has {} vCPUs", config.vcpus));
        }
        Ok(v)
    };
    let vcpu_val = match op {
        "psc" | "accept" | "pvalidate" | "psc_request" | "rmpadjust" | "access" | "recoalesce" => {
            Some(vcpu()?)
        }
        _ => None,
    };
    let vcpu = vcpu_val.unwrap_or(0);
    let gran = |f: &mut Fields<'_>| -> Result<Option<Granularity>, String> {
        match f.get("granularity")? {
            Value::Null => Ok(None),
            _ => f.choice("granularity", &[("4k", Granularity::K4), ("2m", Granularity::M2)]).map(Some),
        }
    };
    let pages = |f: &mut Fields<'_>| -> Result<u64, String> {
        let n = f.u64("pages")?;
        if n == 0 || !gpa.raw().is_multiple_of(4096) || gpa.raw() / 4096 + n > config.guest_pages {
            return Err(format!(
                "`action` range {:#x} + {n} pages is not 4 KiB-aligned inside guest memory ({:#x} bytes)",
                gpa.raw(),
                guest_bytes
            ));
        }
        Ok(n)
    };
    if gpa.raw() >= guest_bytes {
        return Err(format!(
            "`action.gpa` {:#x} is outside guest memory ({guest_bytes:#x} bytes)",
            gpa.raw()
        ));
    }
    let action = match op {
        "psc" => {
            let pages = pages(&mut f)?;
            let private = f.choice("to", &[("private", true), ("shared", false)])?;
            Action::Psc { vcpu, gpa, pages, private, granularity: gran(&mut f)? }
        }
        "accept" => {
            let pages = pages(&mut f)?;
            Action::Accept { vcpu, gpa, pages, granularity: gran(&mut f)? }
        }
        "pvalidate" => Action::Pvalidate {
            vcpu,
            gpa,
            size: f.choice("size", &SIZES_4K_2M)?,
            validate: f.bool("validate")?,
        },
        "rmpadjust" => rmpadjust_from(&mut f, vcpu, gpa)?,
        "psc_request" => psc_request_from(&mut f, vcpu, gpa, config)?,
        "access" => Action::Access {
            vcpu,
            gpa,
            kind: f.choice(
                "kind",
                &[("read", AccessKind::Read), ("write", AccessKind::Write), ("exec", AccessKind::Exec)],
            )?,
            private: f.bool("private")?,
        },
        "recoalesce" => {
            if !gpa.raw().is_multiple_of(config.geometry.bytes(PageSize::Size2M)) {
                return Err(format!("`action.gpa` {:#x} of a recoalesce must be 2M-aligned", gpa.raw()));
            }
            let modes = [
                ("none", Recoalesce::None),
                ("save-restore", Recoalesce::SaveRestore),
                ("naive", Recoalesce::Naive),
            ];
            Action::Recoalesce { vcpu, gpa, mode: f.choice("mode", &modes)? }
        }
        "host_write" => Action::HostWrite { gpa, via: f.choice("via", &VIAS)? },
        "host_read" => Action::HostRead { gpa, via: f.choice("via", &VIAS)? },
        "host_split" => Action::HostSplit { gpa },
        "host_collapse" => Action::HostCollapse { gpa },
        "punch_hole" => {
            let pages = pages(&mut f)?;
            Action::PunchHole { gpa, pages }
        }
        other => {
            return Err(format!(
                "`action.op` is {other:?}; accepted: psc, accept, pvalidate, psc_request, rmpadjust, access, recoalesce, \
                 host_write, host_read, host_split, host_collapse, punch_hole, tick"
            ));
        }
    };
    f.done()?;
    Ok(action)
}

fn psc_request_from(f: &mut Fields<'_>, vcpu: u32, gpa: Gpa, config: &SimConfig) -> Result<Action, String> {
    let size = f.choice("size", &SIZES_4K_2M)?;
    let private = f.choice("to", &[("private", true), ("shared", false)])?;
    let cur_page = f.u64("cur_page")?;
    let cur_page = u16::try_from(cur_page)
        .ok()
        .filter(|&c| c < 1 << 12)
        .ok_or_else(|| format!("`action.cur_page` is {cur_page}; accepted: 0..=4095 (12 bits)"))?;
    if gpa.raw() + config.geometry.bytes(size.page_size()) > config.guest_pages.saturating_mul(4096) {
        return Err(format!("`action` entry at {:#x} ends outside guest memory", gpa.raw()));
    }
    Ok(Action::PscRequest { vcpu, gpa, size, private, cur_page })
}

fn rmpadjust_from(f: &mut Fields<'_>, vcpu: u32, gpa: Gpa) -> Result<Action, String> {
    let size = f.choice("size", &SIZES_4K_2M)?;
    let vmpl = f.u64("vmpl")?;
    if !(1..=3).contains(&vmpl) {
        return Err(format!("`action.vmpl` is {vmpl}; accepted: 1, 2, 3"));
    }
    let p = f.str("perms")?;
    let perms =
        parse_perms(p).ok_or_else(|| format!("`action.perms` is {p:?}; accepted: a subset of \"rwxsS\""))?;
    Ok(Action::Rmpadjust { vcpu, gpa, size, vmpl: vmpl as u8, perms, vmsa: f.bool("vmsa")? })
}

/// A `tick` action: a vCPU of an interleaved run.
fn tick_from(mut f: Fields<'_>, config: &SimConfig) -> Result<Action, String> {
    let vcpu = f.u32("vcpu")?;
    if vcpu >= config.vcpus || !config.interleave {
        return Err(format!(
            "`action` is a tick of vCPU {vcpu}, but the run has {} vCPUs and interleave = {}",
            config.vcpus, config.interleave
        ));
    }
    f.done()?;
    Ok(Action::Tick { vcpu })
}

/// The normalized configuration as the `config` object of a `run` header.
pub fn config_json(c: &SimConfig) -> Value {
    // Destructured so that a new field cannot be forgotten here (replay needs all of them).
    let SimConfig {
        geometry,
        host_pages,
        guest_pages,
        vcpus,
        policy,
        backing,
        prefault_on_psc,
        npt_level_follows_rmp,
        smaller_npt_faults,
        khugepaged,
        guest,
        step_budget,
        check,
        adversary,
        interleave,
    } = *c;
    let GuestConfig { granularity, protocol, ghcb_entries, validation_tracking, order, msr_until_ghcb } =
        guest;
    let (backing, shared) = match backing {
        MemoryBacking::Vma(b) => (vma_name(b).to_string(), Value::Null),
        MemoryBacking::Gmem { folio, shared } => {
            (format!("gmem-{}", folio.name()), Value::from(vma_name(shared)))
        }
    };
    let mut v = json!({
        "geometry": geometry.name(),
        "host_pages": host_pages,
        "guest_pages": guest_pages,
        "vcpus": vcpus,
        "policy": policy.name(),
        "backing": backing,
        "shared_backing": shared,
        "prefault_on_psc": prefault_on_psc,
        "npt_level_follows_rmp": npt_level_follows_rmp,
        "smaller_npt_faults": smaller_npt_faults,
        "khugepaged": khugepaged,
        "guest": {
            "psc_granularity": gran_name(granularity),
            "psc_protocol": match protocol { Protocol::Msr => "msr", Protocol::Ghcb => "ghcb" },
            "ghcb_entries": ghcb_entries,
            "validation_tracking": validation_tracking,
            "psc_order": match order {
                PscOrder::PerRequest => "per-request",
                PscOrder::WholeRange => "whole-range",
            },
            "msr_until_ghcb": msr_until_ghcb,
        },
        "step_budget": step_budget,
        "check": check_name(check),
        "adversary": adversary.iter().map(crate::adversary::Attack::name).collect::<Vec<_>>(),
    });
    if interleave {
        v["interleave"] = Value::Bool(true);
    }
    v
}

/// Largest host memory a trace may ask for (1 PiB in 4 KiB pages).
const MAX_PAGES: u64 = 1 << 38;

/// Read the `guest` object of a `run` header's `config`.
fn guest_from_json(gv: &Value) -> Result<GuestConfig, String> {
    let mut g = Fields::new(gv, "config.guest")?;
    let guest = GuestConfig {
        granularity: g.choice("psc_granularity", &[("4k", Granularity::K4), ("2m", Granularity::M2)])?,
        protocol: g.choice("psc_protocol", &[("msr", Protocol::Msr), ("ghcb", Protocol::Ghcb)])?,
        ghcb_entries: {
            let n = g.u64("ghcb_entries")?;
            if !(1..=253).contains(&n) {
                return Err(format!("`config.guest.ghcb_entries` is {n}; accepted: 1-253"));
            }
            n as u16
        },
        validation_tracking: g.bool("validation_tracking")?,
        // Traces written before these two fields existed were run in whole-range order with
        // one protocol throughout.
        order: if g.has("psc_order") {
            g.choice(
                "psc_order",
                &[("per-request", PscOrder::PerRequest), ("whole-range", PscOrder::WholeRange)],
            )?
        } else {
            PscOrder::WholeRange
        },
        msr_until_ghcb: g.has("msr_until_ghcb") && g.bool("msr_until_ghcb")?,
    };
    g.done()?;
    Ok(guest)
}

/// Read the `config` object of a `run` header back, rejecting what no scenario could produce.
pub fn config_from_json(v: &Value) -> Result<SimConfig, String> {
    let vmas = [
        ("anon-4k", VmaBacking::Anon4k),
        ("thp", VmaBacking::Thp),
        ("hugetlbfs-2m", VmaBacking::Hugetlbfs2m),
        ("hugetlbfs-1g", VmaBacking::Hugetlbfs1g),
    ];
    let mut f = Fields::new(v, "config")?;
    let geometry = f.choice("geometry", &[("x86", Geometry::X86), ("tiny", Geometry::TINY)])?;
    let host_pages = f.u64("host_pages")?;
    let guest_pages = f.u64("guest_pages")?;
    if host_pages == 0 || host_pages > MAX_PAGES || guest_pages == 0 || guest_pages > host_pages {
        return Err(format!(
            "`config.host_pages` ({host_pages}) and `config.guest_pages` ({guest_pages}) must satisfy \
             1 <= guest_pages <= host_pages <= {MAX_PAGES}"
        ));
    }
    let vcpus = f.u32("vcpus")?;
    if !(1..=4096).contains(&vcpus) {
        return Err(format!("`config.vcpus` is {vcpus}; accepted: 1-4096"));
    }
    let pname = f.str("policy")?;
    let policy = snpsim_kvm::policy::by_name(pname).ok_or_else(|| {
        let names: Vec<&str> = snpsim_kvm::policy::ALL.iter().map(|p| p.name()).collect();
        format!("`config.policy` is {pname:?}; accepted: {}", names.join(", "))
    })?;
    let bname = f.str("backing")?;
    let backing = match bname {
        "gmem-4k" | "gmem-2m" | "gmem-1g" => {
            let folio = match bname {
                "gmem-4k" => PageSize::Size4K,
                "gmem-2m" => PageSize::Size2M,
                _ => PageSize::Size1G,
            };
            MemoryBacking::Gmem { folio, shared: f.choice("shared_backing", &vmas)? }
        }
        _ => {
            let b = f.choice("backing", &vmas).map_err(|e| format!("{e}, gmem-4k, gmem-2m, gmem-1g"))?;
            if !f.get("shared_backing")?.is_null() {
                return Err("`config.shared_backing` must be null for a legacy backing".into());
            }
            MemoryBacking::Vma(b)
        }
    };
    let prefault_on_psc = f.bool("prefault_on_psc")?;
    let npt_level_follows_rmp = f.opt_bool("npt_level_follows_rmp")?;
    let smaller_npt_faults = f.bool("smaller_npt_faults")?;
    let khugepaged = f.bool("khugepaged")?;
    let guest = guest_from_json(f.get("guest")?)?;
    let step_budget = f.opt_u64("step_budget")?;
    if step_budget == Some(0) {
        return Err("`config.step_budget` must be null or at least 1".into());
    }
    let check = f.choice(
        "check",
        &[("full", CheckMode::Full), ("incremental", CheckMode::Incremental), ("off", CheckMode::Off)],
    )?;
    let mut attacks = Vec::new();
    let av = f.get("adversary")?;
    for a in av.as_array().ok_or("`config.adversary` must be an array of attack names")? {
        let name = a.as_str().unwrap_or_default();
        attacks.push(crate::adversary::Attack::from_name(name).ok_or_else(|| {
            format!("`config.adversary` names {a}; accepted: {}", crate::adversary::Attack::accepted())
        })?);
    }
    // Written only for interleaved runs: traces of sequential runs keep their form.
    let interleave = match f.obj.get("interleave") {
        None => false,
        Some(_) => f.bool("interleave")?,
    };
    f.done()?;
    Ok(SimConfig {
        interleave,
        geometry,
        host_pages,
        guest_pages,
        vcpus,
        policy,
        backing,
        prefault_on_psc,
        npt_level_follows_rmp,
        smaller_npt_faults,
        khugepaged,
        guest,
        step_budget,
        check,
        adversary: crate::adversary::Attacks::of(&attacks),
    })
}

/// The `run` header line of a trace.
pub fn header_json(meta: &TraceMeta, config: &SimConfig, costs: &crate::cost::CostTable) -> Value {
    let mut header = json!({
        "ev": "run",
        "format": FORMAT_VERSION,
        "run": meta.run,
        "scenario": meta.scenario,
        "source": meta.source,
        "seed": meta.seed,
        "config": config_json(config),
    });
    if let (Some(m), Some(obj)) = (meta.mutant, header.as_object_mut()) {
        obj.insert("mutant".into(), Value::String(m.name().into()));
    }
    // A scenario's `[cost]` overrides: the parameters that differ from the defaults, by name.
    let defaults = crate::cost::CostTable::default();
    let changed: Map<String, Value> = (0..crate::cost::COUNT)
        .filter(|&i| costs.get(i) != defaults.get(i))
        .map(|i| (crate::cost::ALL[i].name.to_string(), Value::from(costs.get(i))))
        .collect();
    if let (false, Some(obj)) = (changed.is_empty(), header.as_object_mut()) {
        obj.insert("costs".into(), Value::Object(changed));
    }
    header
}

/// The cost parameters a `run` header names (`costs`, absent for the defaults).
pub fn costs_from_json(header: &Value) -> Result<crate::cost::CostTable, String> {
    let mut table = crate::cost::CostTable::default();
    let Some(costs) = header.get("costs") else { return Ok(table) };
    let Some(obj) = costs.as_object() else { return Err("field `costs` must be an object".into()) };
    for (name, v) in obj {
        let ns = v.as_u64().ok_or_else(|| format!("field `costs.{name}` must be a non-negative integer"))?;
        if !table.set(name, ns) {
            return Err(format!(
                "field `costs.{name}`: unknown cost parameter; accepted: {}",
                crate::cost::accepted_names()
            ));
        }
    }
    Ok(table)
}

/// Counters whose differences around a KVM or host call become derived events.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    hypercall: u64,
    memory_fault: u64,
    demotions: BTreeMap<String, u64>,
    demotions_needless: u64,
    host_splits: u64,
    host_splits_needed: u64,
    direct_map_splits: u64,
    implicit_conversions: u64,
}

impl Counters {
    pub(crate) fn of(m: &Machine) -> Self {
        let k = &m.kvm.stats;
        let h = &m.host.stats;
        let exits = |r: &str| k.exits.get(r).copied().unwrap_or(0);
        Counters {
            hypercall: exits(snpsim_kvm::stats::exit::HYPERCALL),
            memory_fault: exits(snpsim_kvm::stats::exit::MEMORY_FAULT),
            demotions: k.npt_demotions.clone(),
            demotions_needless: k.npt_demotions_needless,
            host_splits: h.host_splits,
            host_splits_needed: h.host_splits_needed,
            direct_map_splits: h.direct_map_splits,
            implicit_conversions: k.implicit_conversions,
        }
    }
}

impl Recorder {
    /// A recorder for a machine of `geometry`, its header line already written.
    pub fn new(
        geometry: Geometry,
        meta: &TraceMeta,
        config: &SimConfig,
        costs: &crate::cost::CostTable,
    ) -> Self {
        let mut r = Recorder {
            out: Vec::new(),
            pending: Vec::new(),
            regions: BTreeSet::new(),
            per_2m: geometry.pages_per_2m(),
            vcpu: None,
            actor: "vmm",
            step_who: (None, "vmm"),
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
    pub(crate) fn header(&self) -> &[u8] {
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

    /// Take the lines written so far.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
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

    /// Record an event on the current vCPU or actor; returns its index in the step.
    pub(crate) fn push(&mut self, ev: &'static str, fields: Value, cost: u64) -> usize {
        let fields = match fields {
            Value::Object(m) => m,
            _ => Map::new(),
        };
        self.pending.push(Pending { ev, vcpu: self.vcpu, actor: self.actor, fields, cost, span_end: None });
        self.pending.len() - 1
    }

    /// Set a field of an event already recorded in this step (an exit's result).
    pub(crate) fn set(&mut self, index: usize, key: &str, v: Value) {
        if let Some(p) = self.pending.get_mut(index) {
            p.fields.insert(key.to_string(), v);
        }
    }

    /// Close the slice of the exit at `index`: its handling ends here.
    pub(crate) fn close(&mut self, index: usize) {
        let end = self.pending.len();
        if let Some(p) = self.pending.get_mut(index) {
            p.span_end = Some(end);
        }
        self.leave();
    }

    /// What follows until [`Recorder::leave`] is executed by `actor` on `vcpu`: KVM's work on a
    /// vCPU that no exit of this step opened (a PSMASH or page-state-change tick of an interleaved
    /// run, `sev_gmem_invalidate` under a punch_hole), the adversary's attacks. Every event's actor
    /// is the one who executed it.
    pub(crate) fn enter(&mut self, vcpu: Option<u32>, actor: &'static str) {
        self.actor_stack.push((self.vcpu, self.actor));
        self.set_actor(vcpu, actor);
    }

    /// Return to the vCPU and actor before the last [`Recorder::enter`] or exit.
    pub(crate) fn leave(&mut self) {
        if let Some((vcpu, actor)) = self.actor_stack.pop() {
            self.set_actor(vcpu, actor);
        }
    }

    /// Run what follows on `actor` (host work outside a guest step, such as khugepaged).
    pub(crate) fn set_actor(&mut self, vcpu: Option<u32>, actor: &'static str) {
        self.vcpu = vcpu;
        self.actor = actor;
    }

    fn touch(&mut self, pfn: Pfn) {
        self.regions.insert(pfn.raw() / self.per_2m * self.per_2m);
    }

    /// A step begins.
    pub(crate) fn begin_step(&mut self, action: &Action) {
        let (vcpu, actor) = action_actor(action);
        self.step_who = (vcpu, actor);
        self.set_actor(vcpu, actor);
        let i = self.steps;
        self.steps += 1;
        self.push("step", json!({ "i": i, "action": action_json(action) }), 0);
    }

    /// A step ends at simulated time `t_end`: give every event of the step its time and write it.
    pub(crate) fn end_step(
        &mut self,
        result: &str,
        ending: Option<&crate::outcome::Ending>,
        violations: &[String],
    ) {
        let i = self.steps.saturating_sub(1);
        self.actor_stack.clear();
        self.set_actor(self.step_who.0, self.step_who.1);
        for v in violations {
            self.push("violation", json!({ "what": v }), 0);
        }
        let o = ending.map(|e| e.outcome().name());
        let cause = ending.and_then(crate::outcome::Ending::cause).map(crate::outcome::Cause::name);
        let (reason, detail) = (ending.map(|e| e.reason.name()), ending.map(|e| e.detail.as_str()));
        self.push(
            "step_end",
            json!({ "i": i, "result": result, "outcome": o, "cause": cause, "reason": reason, "detail": detail }),
            0,
        );
    }

    /// Write the events of the step, the last ending at `t_end`.
    pub(crate) fn flush(&mut self, t_end: u64) {
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
        let mut line = String::new();
        for (idx, p) in pending.into_iter().enumerate() {
            line.clear();
            let _ = write!(line, "{{\"ev\":\"{}\",\"t\":{}", p.ev, times[idx]);
            match p.vcpu {
                Some(v) => {
                    let _ = write!(line, ",\"vcpu\":{v}");
                }
                None => line.push_str(",\"vcpu\":null"),
            }
            let _ = write!(line, ",\"actor\":\"{}\"", p.actor);
            let mut fields = p.fields;
            if let Some(end) = p.span_end {
                let end_t = if end >= n { t_end } else { times[end] };
                fields.insert("dur".into(), Value::from(end_t - times[idx]));
            }
            for (k, v) in &fields {
                let _ = write!(line, ",{}:{}", Value::String(k.clone()), v);
            }
            line.push_str("}\n");
            self.out.extend_from_slice(line.as_bytes());
        }
        self.clock = t_end;
    }

    /// The run ends: the `end` line and the `state_hash` line.
    pub(crate) fn finish(&mut self, end: &Value, hash: &str) {
        self.flush(self.clock);
        self.write_value(end);
        self.write_value(&json!({ "state_hash": hash }));
    }

    // ---- RMP instructions (from `Observed`) ----

    pub(crate) fn rmpupdate(&mut self, pfn: Pfn, new: RmpArchEntry, rc: ReturnCode) {
        self.touch(pfn);
        self.push(
            "rmpupdate",
            json!({
                "pfn": hex(pfn.raw()), "assigned": new.assigned(), "asid": new.asid(), "gpa": hex(new.gpa()),
                "size": if new.page_size() { "2m" } else { "4k" }, "immutable": new.immutable(), "rc": rc.name(),
            }),
            self.cost(if new.page_size() { cost::item::RMPUPDATE_2M } else { cost::item::RMPUPDATE_4K }),
        );
    }

    pub(crate) fn psmash(&mut self, pfn: Pfn, rc: ReturnCode) {
        self.touch(pfn);
        self.push("psmash", json!({ "pfn": hex(pfn.raw()), "rc": rc.name() }), self.cost(cost::item::PSMASH));
    }

    pub(crate) fn pvalidate(
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
        let cost = if crate::observed::retired(r) { self.cost(item) } else { 0 };
        let result = outcome_name(r, |s| match s {
            PvalidateStatus::Changed => "done",
            PvalidateStatus::Unchanged => "unchanged",
        });
        self.push(
            "pvalidate",
            json!({
                "gpa": hex(gpa.raw()), "pfn": hex(pfn.raw()), "size": rmp_size_name(size),
                "validate": validate, "result": result,
            }),
            cost,
        );
    }

    pub(crate) fn rmpadjust(
        &mut self,
        gpa: Gpa,
        pfn: Pfn,
        size: RmpPageSize,
        op: RmpAdjustOperand,
        r: &GuestOutcome<()>,
    ) {
        self.touch(pfn);
        let cost = if crate::observed::retired(r) { self.cost(cost::item::RMPADJUST) } else { 0 };
        self.push(
            "rmpadjust",
            json!({
                "gpa": hex(gpa.raw()), "pfn": hex(pfn.raw()), "size": rmp_size_name(size),
                "vmpl": op.target_vmpl(), "perms": perms_name(op.perms()), "vmsa": op.vmsa(),
                "result": outcome_name(r, |()| "done"),
            }),
            cost,
        );
    }

    // ---- Machine events ----

    /// An #NPF (the fault as the CPU reports it) and the exit it causes; returns the exit's index
    /// (close it when KVM returns).
    pub(crate) fn npf(&mut self, gpa: Gpa, code: NpfErrorCode, leaf: Option<PageSize>) -> usize {
        self.push(
            "npf",
            json!({
                "gpa": hex(gpa.raw()), "code": hex(code.into_bits()), "bits": npf_bits(code),
                "leaf": leaf.map(PageSize::name),
            }),
            0,
        );
        self.exit("npf")
    }

    /// An exit of `reason` (an `exits` metric key); returns its index.
    pub(crate) fn exit(&mut self, reason: &'static str) -> usize {
        // Every reason KVM counts has an item (`cost::tests::every_exit_reason_is_priced`).
        let cost = cost::exit_item(reason).map_or(0, |i| self.cost(i));
        let i = self.push("exit", json!({ "reason": reason }), cost);
        self.enter(self.vcpu, "kvm");
        i
    }

    /// One page-state-change entry as the guest sent it.
    pub(crate) fn psc_entry(
        &mut self,
        protocol: &str,
        entry: Option<usize>,
        gpa: u64,
        op: u8,
        size_2m: bool,
        cur_page: u16,
    ) {
        let op = match snpsim_defs::ghcb::PscOp::from_raw(op) {
            Some(snpsim_defs::ghcb::PscOp::Private) => "private".to_string(),
            Some(snpsim_defs::ghcb::PscOp::Shared) => "shared".to_string(),
            Some(snpsim_defs::ghcb::PscOp::Psmash) => "psmash".to_string(),
            Some(snpsim_defs::ghcb::PscOp::Unsmash) => "unsmash".to_string(),
            None => format!("invalid:{op}"),
        };
        self.push(
            "psc",
            json!({
                "protocol": protocol, "entry": entry, "gpa": hex(gpa), "op": op,
                "size": if size_2m { "2m" } else { "4k" }, "cur_page": cur_page,
            }),
            0,
        );
    }

    /// A guest access's final result (after every #NPF it took).
    pub(crate) fn access(
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
            json!({
                "gpa": hex(gpa.raw()), "kind": kind_name(kind), "private": private,
                "pfn": hex(pfn.raw()), "leaf": leaf.name(), "result": outcome_name(r, |()| "done"),
            }),
            0,
        );
    }

    /// A host write's result.
    pub(crate) fn host_write(
        &mut self,
        gpa: Gpa,
        via: HostVia,
        target: Option<(Pfn, PageSize)>,
        r: HostWriteOutcome,
    ) {
        let (pfn, mapping) =
            target.map_or((Value::Null, Value::Null), |(p, s)| (hex(p.raw()), s.name().into()));
        self.push(
            "host_write",
            json!({
                "gpa": hex(gpa.raw()), "via": via_name(via), "pfn": pfn, "mapping": mapping,
                "result": host_write_name(r),
            }),
            0,
        );
    }

    /// A host #PF taken by a host write (before the RMP #PF handler runs).
    pub(crate) fn host_pf(&mut self, gpa: Gpa, pfn: Pfn, mapping: PageSize, code: PfErrorCode) {
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
            json!({
                "gpa": hex(gpa.raw()), "pfn": hex(pfn.raw()), "mapping": mapping.name(),
                "code": hex(u64::from(code.into_bits())), "bits": bits.join("|"),
            }),
            0,
        );
    }

    /// khugepaged (or a `host_collapse`) collapsed the THP range from VMA page `offset`.
    pub(crate) fn host_collapse(&mut self, offset: u64, pages: u64) {
        self.push("host_collapse", json!({ "gpa": hex(offset * 4096), "pages": pages }), 0);
    }

    /// A guest access at `gpa` required the last unrequired part of a zapped leaf: that
    /// demotion is needed after all.
    pub(crate) fn demotion_needed(&mut self, gpa: Gpa) {
        self.push("npt_demotion_needed", json!({ "gpa": hex(gpa.raw()), "count": 1 }), 0);
    }

    /// Derived events: what changed in the counters between `before` and `after`.
    pub(crate) fn derived(&mut self, before: &Counters, after: &Counters) {
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
                json!({ "count": after.implicit_conversions - before.implicit_conversions }),
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
                    json!({ "from": from, "to": to, "count": d }),
                    d.saturating_mul(self.cost(cost::item::NPT_ZAP)),
                );
            }
        }
        if needless > 0 {
            self.push("npt_demotion_needless", json!({ "count": needless }), 0);
        }
        let splits = after.host_splits - before.host_splits;
        if splits > 0 {
            self.push(
                "host_split",
                json!({ "count": splits }),
                splits.saturating_mul(self.cost(cost::item::HOST_SPLIT)),
            );
        }
        let needed = after.host_splits_needed - before.host_splits_needed;
        if needed > 0 {
            self.push("host_split_needed", json!({ "count": needed }), 0);
        }
        let dm = after.direct_map_splits - before.direct_map_splits;
        if dm > 0 {
            self.push(
                "direct_map_split",
                json!({ "count": dm }),
                dm.saturating_mul(self.cost(cost::item::DIRECT_MAP_SPLIT)),
            );
        }
    }
}

/// The canonical digest of a run's state: the raw RMP entries of every region a recorded
/// instruction named (and the ASID's assigned-page count), the NPT leaves, the host's mappings,
/// direct map, allocator and guest_memfd, KVM's memory attributes, the machine's content and
/// validation bookkeeping, the guest's tracking, the outcome and the metrics, and the run's
/// `header` line, so that replay also verifies what the header says (seed, scenario, source, run
/// number, format). Everything is kept in ordered maps, so the digest is the same on every machine.
pub fn state_hash(
    header: &[u8],
    machine: Option<&Machine>,
    guest: &snpsim_guest::Guest,
    regions: &BTreeSet<u64>,
    outcome: &str,
    metrics: &crate::Metrics,
) -> String {
    let mut h = Fnv128::default();
    h.piece("header", header);
    h.piece("outcome", outcome.as_bytes());
    if let Some(m) = machine {
        let per_2m = m.rmp.config().geometry.pages_per_2m();
        for &r in regions {
            h.u64(r);
            for p in r..r + per_2m {
                match m.rmp.raw_entry(Pfn(p)) {
                    Some(e) => h.bytes(&e.to_u128().to_le_bytes()),
                    None => h.bytes(b"-"),
                }
            }
        }
        h.piece("asid_pages", &m.rmp.asid_assigned_pages(m.asid).to_le_bytes());
        h.bytes(b"npt");
        for (gfn, leaf) in m.kvm.npt.leaves() {
            h.u64(gfn.raw());
            h.u64(u64::from(leaf.size.level()));
            h.u64(leaf.pfn.raw());
        }
        h.piece("host", format!("{:?}", m.host).as_bytes());
        h.piece("attrs", format!("{:?}", m.kvm.attrs).as_bytes());
        m.digest_bookkeeping(&mut h);
    }
    h.piece("guest", format!("{guest:?}").as_bytes());
    h.piece("metrics", serde_json::to_string(metrics).unwrap_or_default().as_bytes());
    h.hex()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv128_known_answers() {
        // Published FNV-1a 128 test vectors.
        assert_eq!(Fnv128::default().hex(), "6c62272e07bb014262b821756295c58d");
        let mut h = Fnv128::default();
        h.bytes(b"a");
        assert_eq!(h.hex(), "d228cb696f1a8caf78912b704e4a8964");
    }

    #[test]
    fn perms_round_trip() {
        for bits in 0u8..32 {
            let p = VmplPerms::from_bits(bits);
            assert_eq!(parse_perms(&perms_name(p)), Some(p));
        }
        assert_eq!(parse_perms("rr"), None);
        assert_eq!(parse_perms("q"), None);
    }
}
