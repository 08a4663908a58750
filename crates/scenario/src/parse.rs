//! From the spanned tree to a validated [`Scenario`].
//!
//! Why one long file: it reads the format's tables in the order `docs/user-guide.md` documents
//! them, one validated field after another, so a reviewer checks the reader against the reference
//! top to bottom; the shared machinery (spanned tree, names, units, steps, expectations) lives in
//! its own modules.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::rc::Rc;

use snpsim_defs::{Gpa, PAGE_SIZE_4K, PageSize, RmpPageSize};
use snpsim_hw::Geometry;

use super::error::{ErrorKind, ScenarioError, Sources, Span};
use super::expect::{
    Expect, ExpectError, Expectations, METRIC_FAMILIES, check_expect_value, check_metric_name,
};
use super::names::{Backing, Cause, Era, Outcome, Policy, Reason, Recoalesce, TouchPattern, accepted_list};
use super::step::{Step, StepKind, StepOp, parse_perms};
use super::tree::{Node, Table, Val};
use super::units::{Size, UnitError, parse_duration, parse_gpa, parse_size};
use super::{BalloonPhase, GuestConfig, Machine, Phase, Scenario, Site, Sites, SteadyPhase, Vm, Workload};
use snpsim_engine::cost::CostTable;

type Result<T> = std::result::Result<T, ScenarioError>;

pub use snpsim_engine::names::Named;

/// `KiB` etc. for messages.
fn size(bytes: u64) -> Size {
    Size(bytes)
}

/// `path.key` (or `key` at the top). Built by hand: every field read makes one, a million steps
/// make millions, and `format!` was a tenth of parsing them.
fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        return key.to_owned();
    }
    let mut out = String::with_capacity(path.len() + 1 + key.len());
    out.push_str(path);
    out.push('.');
    out.push_str(key);
    out
}

/// A table being read: its path, where it starts, and its entries.
struct Obj<'a> {
    path: Rc<str>,
    span: Span,
    table: &'a Table,
}

/// A value being read, with its dotted path: the path of the table it is in and its key there,
/// joined only when a message needs them (a million steps read millions of fields).
struct Field<'a> {
    parent: Rc<str>,
    key: Option<&'a str>,
    node: &'a Node,
}

impl<'a> Field<'a> {
    /// The value at `path`.
    fn at(path: String, node: &'a Node) -> Self {
        Field { parent: path.into(), key: None, node }
    }

    /// Its dotted path.
    fn path(&self) -> String {
        match self.key {
            None => self.parent.to_string(),
            Some(key) => join(&self.parent, key),
        }
    }
}

struct Cx<'s> {
    src: &'s Sources<'s>,
}

impl Cx<'_> {
    fn err(&self, span: Span, field: &str, kind: ErrorKind, message: impl Into<String>) -> ScenarioError {
        self.src.error(span, Some(field), kind, message)
    }
}

impl<'a> Obj<'a> {
    fn of(cx: &Cx<'_>, path: Rc<str>, node: &'a Node, what: &str) -> Result<Obj<'a>> {
        match &node.val {
            Val::Table(table) => Ok(Obj { path, span: node.span, table }),
            other => Err(cx.err(
                node.span,
                &path,
                ErrorKind::WrongType,
                format!("expected {what}, found {}", other.type_name()),
            )),
        }
    }

    /// Reject any key not in `accepted`.
    fn allow(&self, cx: &Cx<'_>, accepted: &[&str]) -> Result<()> {
        self.allow_either(cx, accepted, &[])
    }

    /// Reject any key in neither `accepted` nor `more` (two lists, so that a step need not
    /// build one for each of a million steps).
    fn allow_either(&self, cx: &Cx<'_>, accepted: &[&str], more: &[&str]) -> Result<()> {
        let known = |k: &str| accepted.contains(&k) || more.contains(&k);
        match self.table.entries.iter().find(|e| !known(e.key.as_str())) {
            None => Ok(()),
            Some(e) => Err(cx.err(
                e.key_span,
                &join(&self.path, &e.key),
                ErrorKind::UnknownField,
                format!("unknown field; accepted: {}", [accepted, more].concat().join(", ")),
            )),
        }
    }

    fn opt(&self, key: &str) -> Option<Field<'a>> {
        self.table.get(key).map(|e| Field { parent: Rc::clone(&self.path), key: Some(&e.key), node: &e.node })
    }

    fn req(&self, cx: &Cx<'_>, key: &str) -> Result<Field<'a>> {
        self.opt(key).ok_or_else(|| {
            let path = join(&self.path, key);
            let place = if self.path.is_empty() { "the file".to_owned() } else { format!("`{}`", self.path) };
            cx.err(self.span, &path, ErrorKind::Missing, format!("required field missing in {place}"))
        })
    }
}

impl<'a> Field<'a> {
    fn err(&self, cx: &Cx<'_>, kind: ErrorKind, message: impl Into<String>) -> ScenarioError {
        cx.err(self.node.span, &self.path(), kind, message)
    }

    fn wrong_type(&self, cx: &Cx<'_>, expected: &str) -> ScenarioError {
        self.err(
            cx,
            ErrorKind::WrongType,
            format!("expected {expected}, found {}", self.node.val.type_name()),
        )
    }

    fn str(&self, cx: &Cx<'_>) -> Result<&'a str> {
        match &self.node.val {
            Val::Str(s) => Ok(s),
            _ => Err(self.wrong_type(cx, "a string")),
        }
    }

    fn bool(&self, cx: &Cx<'_>) -> Result<bool> {
        match self.node.val {
            Val::Bool(b) => Ok(b),
            _ => Err(self.wrong_type(cx, "a boolean (true or false)")),
        }
    }

    fn int(&self, cx: &Cx<'_>, range: RangeInclusive<u64>) -> Result<u64> {
        let Val::Int(v) = self.node.val else {
            return Err(self.wrong_type(cx, "an integer"));
        };
        match u64::try_from(v) {
            Ok(v) if range.contains(&v) => Ok(v),
            _ => Err(self.err(
                cx,
                ErrorKind::OutOfRange,
                format!("{v} is out of range; accepted: {}..={}", range.start(), range.end()),
            )),
        }
    }

    fn unit_error(&self, cx: &Cx<'_>, e: &UnitError) -> ScenarioError {
        let kind = match e {
            UnitError::Malformed(_) => ErrorKind::UnknownValue,
            UnitError::Overflow(_) => ErrorKind::OutOfRange,
        };
        self.err(cx, kind, e.to_string())
    }

    /// A size in bytes: a string with a unit, or an integer.
    fn size(&self, cx: &Cx<'_>) -> Result<u64> {
        match &self.node.val {
            Val::Str(s) => parse_size(s).map_err(|e| self.unit_error(cx, &e)),
            Val::Int(v) => u64::try_from(*v)
                .map_err(|_| self.err(cx, ErrorKind::OutOfRange, format!("{v} is negative; a size is >= 0"))),
            _ => Err(self.wrong_type(cx, "a size (a string like \"4KiB\", or an integer of bytes)")),
        }
    }

    /// A guest-physical address: a hex string, or an integer.
    fn gpa(&self, cx: &Cx<'_>) -> Result<Gpa> {
        match &self.node.val {
            Val::Str(s) => parse_gpa(s).map_err(|e| self.unit_error(cx, &e)),
            Val::Int(v) => u64::try_from(*v).map(Gpa::new).map_err(|_| {
                self.err(cx, ErrorKind::OutOfRange, format!("{v} is negative; an address is >= 0"))
            }),
            _ => Err(self.wrong_type(cx, "an address (a hex string like \"0x200000\")")),
        }
    }

    fn duration(&self, cx: &Cx<'_>) -> Result<u64> {
        match &self.node.val {
            Val::Str(s) => parse_duration(s).map_err(|e| self.unit_error(cx, &e)),
            _ => Err(self.wrong_type(cx, "a duration (a string like \"10s\" or \"500ms\")")),
        }
    }

    fn named<T: Named>(&self, cx: &Cx<'_>) -> Result<T> {
        // The list is for the messages only: built on an error, not for every value read.
        let accepted = || accepted_list(T::all(), T::name);
        let Val::Str(s) = &self.node.val else {
            return Err(self.wrong_type(cx, &format!("a string (one of: {})", accepted())));
        };
        T::all().iter().copied().find(|v| v.name() == s).ok_or_else(|| {
            self.err(cx, ErrorKind::UnknownValue, format!("unknown value {s:?}; accepted: {}", accepted()))
        })
    }

    /// A policy of KVM's registry, by name.
    fn policy(&self, cx: &Cx<'_>) -> Result<Policy> {
        let accepted = super::names::accepted_policies();
        let Val::Str(s) = &self.node.val else {
            return Err(self.wrong_type(cx, &format!("a string (one of: {accepted})")));
        };
        snpsim_kvm::policy::by_name(s).ok_or_else(|| {
            self.err(cx, ErrorKind::UnknownValue, format!("unknown value {s:?}; accepted: {accepted}"))
        })
    }

    fn obj(&self, cx: &Cx<'_>, what: &str) -> Result<Obj<'a>> {
        let path = match self.key {
            None => Rc::clone(&self.parent),
            Some(_) => self.path().into(),
        };
        Obj::of(cx, path, self.node, what)
    }
}

/// Read an optional field with `read`, or `default`.
fn opt_or<'a, T>(
    obj: &Obj<'a>,
    key: &str,
    default: T,
    read: impl FnOnce(&Field<'a>) -> Result<T>,
) -> Result<T> {
    match obj.opt(key) {
        Some(f) => read(&f),
        None => Ok(default),
    }
}

/// Read an optional field with `read`.
fn opt<'a, T>(obj: &Obj<'a>, key: &str, read: impl FnOnce(&Field<'a>) -> Result<T>) -> Result<Option<T>> {
    obj.opt(key).map(|f| read(&f)).transpose()
}

pub(crate) fn scenario(src: &Sources<'_>, root: &Node) -> Result<Scenario> {
    let cx = Cx { src };
    let top = Obj::of(&cx, Rc::from(""), root, "a table")?;
    top.allow(&cx, &["name", "seed", "machine", "vm", "guest", "step", "workload", "expect", "cost"])?;

    let name_field = top.req(&cx, "name")?;
    let name = name_field.str(&cx)?.to_owned();
    if name.trim().is_empty() {
        return Err(name_field.err(&cx, ErrorKind::UnknownValue, "the name must not be empty"));
    }
    let seed = opt_or(&top, "seed", 0, |f| f.int(&cx, 0..=u64::MAX))?;

    let machine = machine(&cx, &top.req(&cx, "machine")?)?;
    let vm = vm(&cx, &top.req(&cx, "vm")?, &machine)?;
    let guest = match top.opt("guest") {
        Some(f) => guest(&cx, &f)?,
        None => GuestConfig::default(),
    };

    let steps = match top.opt("step") {
        Some(f) => steps(&cx, &f, &machine, &vm, &guest, top.opt("workload").is_some())?,
        None => Vec::new(),
    };
    let workload = opt(&top, "workload", |f| workload(&cx, f, &vm))?;
    let expect = opt_or(&top, "expect", Expectations::default(), |f| expectations(&cx, f))?;
    let cost = opt_or(&top, "cost", CostTable::default(), |f| cost_table(&cx, f))?;

    let site = |table: &str, key: &str| -> Result<Site> {
        let f = top.req(&cx, table)?.obj(&cx, "a table")?.req(&cx, key)?;
        let e = f.err(&cx, ErrorKind::OutOfRange, "");
        Ok(Site { file: e.file, line: e.line, column: e.column, field: f.path() })
    };
    let sites = Sites { host_memory: site("machine", "host_memory")?, memory: site("vm", "memory")? };
    Ok(Scenario { name, seed, machine, vm, guest, steps, workload, expect, cost, sites })
}

fn machine(cx: &Cx<'_>, f: &Field<'_>) -> Result<Machine> {
    let m = f.obj(cx, "a table ([machine])")?;
    m.allow(cx, &["geometry", "host_memory", "rmpopt", "allocation"])?;
    let geometry = opt_or(&m, "geometry", Geometry::X86, |f| {
        let name = f.str(cx)?;
        Geometry::from_name(name).ok_or_else(|| {
            f.err(cx, ErrorKind::UnknownValue, format!("unknown value {name:?}; accepted: x86, tiny"))
        })
    })?;
    let hm = m.req(cx, "host_memory")?;
    let host_memory = hm.size(cx)?;
    check_memory_size(cx, &hm, host_memory, PAGE_SIZE_4K)?;
    let rmpopt = opt_or(&m, "rmpopt", false, |f| f.bool(cx))?;
    let allocation = opt_or(&m, "allocation", crate::Allocation::Contiguous, |f| f.named(cx))?;
    Ok(Machine { geometry, host_memory, rmpopt, allocation })
}

/// A non-zero multiple of `unit` bytes.
fn check_memory_size(cx: &Cx<'_>, f: &Field<'_>, bytes: u64, unit: u64) -> Result<()> {
    if bytes == 0 {
        return Err(f.err(cx, ErrorKind::OutOfRange, "must not be zero"));
    }
    if !bytes.is_multiple_of(unit) {
        return Err(f.err(
            cx,
            ErrorKind::Unaligned,
            format!("{} is not a multiple of {}", size(bytes), size(unit)),
        ));
    }
    Ok(())
}

/// `vm.shared_backing`: a VMA backing, refused under a policy that converts in place (its shared
/// memory is guest_memfd's).
fn shared_backing(cx: &Cx<'_>, v: &Obj<'_>, policy: Policy) -> Result<Option<Backing>> {
    opt(v, "shared_backing", |f| {
        let b: Backing = f.named(cx)?;
        if b.is_gmem() {
            let accepted = accepted_list(&Backing::of_era(Era::Legacy).collect::<Vec<_>>(), Backing::name);
            return Err(f.err(
                cx,
                ErrorKind::Conflict,
                format!("the shared side is a VMA, not guest_memfd; accepted: {accepted}"),
            ));
        }
        if policy.in_place_conversion() {
            return Err(f.err(
                cx,
                ErrorKind::Conflict,
                format!(
                    "policy {:?} converts in place: shared memory is guest_memfd's, there is no shared backing",
                    policy.name()
                ),
            ));
        }
        Ok(b)
    })
}

fn vm(cx: &Cx<'_>, f: &Field<'_>, machine: &Machine) -> Result<Vm> {
    let v = f.obj(cx, "a table ([vm])")?;
    v.allow(
        cx,
        &[
            "memory",
            "vcpus",
            "policy",
            "backing",
            "shared_backing",
            "prefault_on_psc",
            "npt_level_follows_rmp",
            "smaller_npt_faults",
            "khugepaged",
            "adversary",
            "step_budget",
            "interleave",
        ],
    )?;
    let memory_f = v.req(cx, "memory")?;
    let memory = memory_f.size(cx)?;
    check_memory_size(cx, &memory_f, memory, PAGE_SIZE_4K)?;
    if memory > machine.host_memory {
        return Err(memory_f.err(
            cx,
            ErrorKind::Conflict,
            format!(
                "guest memory {} is larger than host memory {} (`machine.host_memory`)",
                size(memory),
                size(machine.host_memory)
            ),
        ));
    }
    let vcpus = opt_or(&v, "vcpus", 1, |f| f.int(cx, 1..=4096))?;
    let policy_f = v.req(cx, "policy")?;
    let policy: Policy = policy_f.policy(cx)?;
    let backing_f = v.req(cx, "backing")?;
    let backing: Backing = backing_f.named(cx)?;
    if !backing.fits(policy) {
        let accepted = accepted_list(&Backing::of_policy(policy).collect::<Vec<_>>(), Backing::name);
        return Err(backing_f.err(
            cx,
            ErrorKind::Conflict,
            format!(
                "backing {:?} does not go with policy {:?} ({} era); accepted: {accepted}",
                backing.name(),
                policy.name(),
                policy.era()
            ),
        ));
    }
    // hugetlbfs files and huge-folio guest_memfd files are made of whole pages.
    if backing.is_hugetlbfs()
        || backing.hugetlb_folio().is_some()
        || matches!(backing, Backing::Gmem2m | Backing::Gmem1g)
    {
        let page = machine.geometry.bytes(backing.page_size());
        if !memory.is_multiple_of(page) {
            return Err(memory_f.err(
                cx,
                ErrorKind::Unaligned,
                format!(
                    "{} is not a multiple of {} (a {} backing holds whole pages)",
                    size(memory),
                    size(page),
                    backing.name()
                ),
            ));
        }
    }
    let shared = shared_backing(cx, &v, policy)?;
    let shared_backing = match policy.era() {
        Era::Gmem => Some(shared.unwrap_or(Backing::Thp)),
        Era::Legacy => shared,
    };
    let adversary = opt_or(&v, "adversary", Vec::new(), |f| adversary(cx, f))?;
    let step_budget = opt(&v, "step_budget", |f| f.int(cx, 1..=u64::MAX))?;
    let interleave = opt(&v, "interleave", |f| interleave(cx, f, &adversary))?.unwrap_or(false);
    Ok(Vm {
        memory,
        vcpus: u32::try_from(vcpus).unwrap_or(u32::MAX),
        policy,
        backing,
        shared_backing,
        prefault_on_psc: opt_or(&v, "prefault_on_psc", true, |f| f.bool(cx))?,
        npt_level_follows_rmp: opt(&v, "npt_level_follows_rmp", |f| f.bool(cx))?,
        smaller_npt_faults: opt_or(&v, "smaller_npt_faults", true, |f| f.bool(cx))?,
        khugepaged: opt_or(&v, "khugepaged", false, |f| f.bool(cx))?,
        adversary,
        step_budget,
        interleave,
    })
}

/// `vm.interleave`: a bool, and not with an adversary (its PSC behaviours act on whole requests).
fn interleave(cx: &Cx<'_>, f: &Field<'_>, adversary: &[snpsim_engine::adversary::Attack]) -> Result<bool> {
    let on = f.bool(cx)?;
    if on && !adversary.is_empty() {
        return Err(f.err(
            cx,
            ErrorKind::Conflict,
            "interleaved runs have an honest hypervisor; accepted: false with `vm.adversary`",
        ));
    }
    Ok(on)
}

fn adversary(cx: &Cx<'_>, f: &Field<'_>) -> Result<Vec<snpsim_engine::adversary::Attack>> {
    let one = |f: &Field<'_>| -> Result<snpsim_engine::adversary::Attack> {
        let s = f.str(cx)?;
        snpsim_engine::adversary::Attack::from_name(s).ok_or_else(|| {
            f.err(
                cx,
                ErrorKind::UnknownValue,
                format!("unknown attack {s:?}; accepted: {}", snpsim_engine::adversary::Attack::accepted()),
            )
        })
    };
    match &f.node.val {
        Val::Str(_) => Ok(vec![one(f)?]),
        Val::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, node)| one(&Field::at(format!("{}[{i}]", f.path()), node)))
            .collect(),
        _ => Err(f.wrong_type(cx, "an attack name or an array of attack names")),
    }
}

fn guest(cx: &Cx<'_>, f: &Field<'_>) -> Result<GuestConfig> {
    let g = f.obj(cx, "a table ([guest])")?;
    g.allow(
        cx,
        &[
            "preset",
            "psc_granularity",
            "psc_protocol",
            "ghcb_entries",
            "accept",
            "validation_tracking",
            "recoalesce",
        ],
    )?;
    Ok(GuestConfig {
        preset: opt_or(&g, "preset", GuestConfig::default().preset, |f| f.named(cx))?,
        psc_granularity: opt(&g, "psc_granularity", |f| f.named(cx))?,
        psc_protocol: opt(&g, "psc_protocol", |f| f.named(cx))?,
        ghcb_entries: opt(&g, "ghcb_entries", |f| {
            f.int(cx, 1..=253).map(|n| u16::try_from(n).unwrap_or(253))
        })?,
        accept: opt(&g, "accept", |f| f.named(cx))?,
        validation_tracking: opt(&g, "validation_tracking", |f| f.bool(cx))?,
        recoalesce: opt(&g, "recoalesce", |f| f.named(cx))?,
    })
}

/// What step validation needs to know about the rest of the scenario.
struct StepCx<'c> {
    cx: &'c Cx<'c>,
    geometry: Geometry,
    memory: u64,
    vcpus: u32,
    era: Era,
    recoalesce: Recoalesce,
}

/// The `[[step]]` array; `workload` says whether a `[workload]` runs after the steps.
fn steps(
    cx: &Cx<'_>,
    f: &Field<'_>,
    machine: &Machine,
    vm: &Vm,
    guest: &GuestConfig,
    workload: bool,
) -> Result<Vec<Step>> {
    let Val::Array(items) = &f.node.val else {
        return Err(f.wrong_type(cx, "an array of tables ([[step]])"));
    };
    let scx = StepCx {
        cx,
        geometry: machine.geometry,
        memory: vm.memory,
        vcpus: vm.vcpus,
        era: vm.era(),
        recoalesce: guest.resolved().recoalesce,
    };
    items
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let last = i + 1 == items.len() && !workload;
            let mut path = String::with_capacity(16);
            path.push_str("step[");
            path.push_str(itoa::Buffer::new().format(i));
            path.push(']');
            step(&scx, &Field::at(path, node), last)
        })
        .collect()
}

impl StepCx<'_> {
    /// `gpa` of a step: 4 KiB-aligned.
    fn gpa(&self, f: &Field<'_>) -> Result<Gpa> {
        let gpa = f.gpa(self.cx)?;
        if !gpa.is_aligned(PAGE_SIZE_4K) {
            return Err(f.err(self.cx, ErrorKind::Unaligned, format!("{gpa} is not 4KiB-aligned")));
        }
        Ok(gpa)
    }

    /// `[gpa, gpa + bytes)` lies in guest memory; errors point at `at`.
    fn in_memory(&self, at: &Field<'_>, gpa: Gpa, bytes: u64) -> Result<()> {
        match gpa.raw().checked_add(bytes) {
            Some(end) if end <= self.memory => Ok(()),
            _ => Err(at.err(
                self.cx,
                ErrorKind::OutsideMemory,
                format!(
                    "the range {gpa}..{gpa}+{} is outside guest memory (0x0..{:#x}, {})",
                    size(bytes),
                    self.memory,
                    size(self.memory)
                ),
            )),
        }
    }

    /// `size` of a range step: a non-zero multiple of 4 KiB (default 4 KiB).
    fn range_size(&self, s: &Obj<'_>) -> Result<u64> {
        let Some(f) = s.opt("size") else { return Ok(PAGE_SIZE_4K) };
        let bytes = f.size(self.cx)?;
        if bytes == 0 {
            return Err(f.err(self.cx, ErrorKind::OutOfRange, "a range size must not be zero"));
        }
        if !bytes.is_multiple_of(PAGE_SIZE_4K) {
            return Err(f.err(
                self.cx,
                ErrorKind::Unaligned,
                format!("{} is not a multiple of 4KiB", size(bytes)),
            ));
        }
        Ok(bytes)
    }

    /// `size` of one instruction: the geometry's 4K or 2M page (default 4K).
    fn insn_size(&self, s: &Obj<'_>) -> Result<RmpPageSize> {
        let Some(f) = s.opt("size") else { return Ok(RmpPageSize::Size4K) };
        let bytes = f.size(self.cx)?;
        let two_m = self.geometry.bytes(PageSize::Size2M);
        if bytes == PAGE_SIZE_4K {
            Ok(RmpPageSize::Size4K)
        } else if bytes == two_m {
            Ok(RmpPageSize::Size2M)
        } else {
            Err(f.err(
                self.cx,
                ErrorKind::UnknownValue,
                format!(
                    "one instruction covers {} or {}, not {}; accepted: \"{}\", \"{}\"",
                    size(PAGE_SIZE_4K),
                    size(two_m),
                    size(bytes),
                    size(PAGE_SIZE_4K),
                    size(two_m)
                ),
            ))
        }
    }
}

/// One step; `last` says whether nothing runs after it (no later step, no `[workload]`).
fn step(scx: &StepCx<'_>, f: &Field<'_>, last: bool) -> Result<Step> {
    let cx = scx.cx;
    let s = f.obj(cx, "a table ([[step]])")?;
    let kind: StepKind = s.req(cx, "op")?.named(cx)?;
    s.allow_either(cx, &["op", "vcpu"], kind.fields())?;

    let line = if s.span.src == 0 { cx.src.line(s.span.start) } else { s.span.src };
    let vcpu = step_vcpu(scx, &s)?;
    if kind == StepKind::Barrier {
        return Ok(Step { line, vcpu, op: StepOp::Barrier });
    }
    if kind == StepKind::Teardown {
        teardown_allowed(scx, &s, last)?;
        return Ok(Step { line, vcpu, op: StepOp::Teardown });
    }

    let gpa_f = s.req(cx, "gpa")?;
    let gpa = scx.gpa(&gpa_f)?;
    let range = |scx: &StepCx<'_>| -> Result<u64> {
        let bytes = scx.range_size(&s)?;
        scx.in_memory(&gpa_f, gpa, bytes)?;
        Ok(bytes)
    };
    let page = |scx: &StepCx<'_>| scx.in_memory(&gpa_f, gpa, PAGE_SIZE_4K);
    let insn = |scx: &StepCx<'_>| -> Result<RmpPageSize> {
        let sz = scx.insn_size(&s)?;
        let bytes = match sz {
            RmpPageSize::Size4K => PAGE_SIZE_4K,
            RmpPageSize::Size2M => scx.geometry.bytes(PageSize::Size2M),
        };
        scx.in_memory(&gpa_f, gpa, bytes)?;
        Ok(sz)
    };

    let op = match kind {
        StepKind::Psc => StepOp::Psc {
            gpa,
            size: range(scx)?,
            to: s.req(cx, "to")?.named(cx)?,
            granularity: opt(&s, "granularity", |f| f.named(cx))?,
        },
        StepKind::Pvalidate => StepOp::Pvalidate {
            gpa,
            size: insn(scx)?,
            validate: opt_or(&s, "validate", true, |f| f.bool(cx))?,
        },
        StepKind::PscRequest => StepOp::PscRequest {
            gpa,
            size: insn(scx)?,
            to: s.req(cx, "to")?.named(cx)?,
            cur_page: opt_or(&s, "cur_page", 0, |f| f.int(cx, 0..=0xfff))?.try_into().unwrap_or(0),
        },
        StepKind::Rmpadjust => rmpadjust_step(cx, &s, gpa, insn(scx)?)?,
        StepKind::Access => StepOp::Access {
            gpa,
            size: range(scx)?,
            kind: s.req(cx, "kind")?.named(cx)?,
            private: opt_or(&s, "private", true, |f| f.bool(cx))?,
        },
        StepKind::Accept => {
            StepOp::Accept { gpa, size: range(scx)?, granularity: opt(&s, "granularity", |f| f.named(cx))? }
        }
        StepKind::Recoalesce => recoalesce_step(scx, &s, &gpa_f, gpa)?,
        StepKind::HostWrite | StepKind::HostRead => {
            page(scx)?;
            let via = opt_or(&s, "via", super::names::HostVia::Vmm, |f| f.named(cx))?;
            if kind == StepKind::HostWrite {
                StepOp::HostWrite { gpa, via }
            } else {
                StepOp::HostRead { gpa, via }
            }
        }
        StepKind::HostSplit => {
            page(scx)?;
            StepOp::HostSplit { gpa }
        }
        StepKind::HostPin | StepKind::HostUnpin => {
            page(scx)?;
            StepOp::HostPin { gpa, pin: kind == StepKind::HostPin }
        }
        StepKind::HostCollapse => {
            page(scx)?;
            StepOp::HostCollapse { gpa }
        }
        StepKind::PunchHole => {
            if scx.era != Era::Gmem {
                let op = s.req(cx, "op")?;
                return Err(op.err(
                    cx,
                    ErrorKind::Conflict,
                    "punch_hole is a guest_memfd operation; it needs policy \"gmem\"",
                ));
            }
            StepOp::PunchHole { gpa, size: range(scx)? }
        }
        StepKind::Barrier | StepKind::Teardown => unreachable!("handled above"),
    };
    Ok(Step { line, vcpu, op })
}

/// A `teardown` step ends a guest_memfd VM: refused under a legacy policy (its reclaim is not
/// modelled) and anywhere but last (`last`: no later step, no `[workload]`).
fn teardown_allowed(scx: &StepCx<'_>, s: &Obj<'_>, last: bool) -> Result<()> {
    let (cx, op) = (scx.cx, s.req(scx.cx, "op")?);
    if scx.era != Era::Gmem {
        return Err(op.err(
            cx,
            ErrorKind::Conflict,
            "teardown releases the VM's guest_memfd; it needs policy \"gmem\" or \"gmem-inplace\"",
        ));
    }
    if !last {
        return Err(op.err(
            cx,
            ErrorKind::Conflict,
            "teardown must be the last step, with no [workload] after it: the VM is gone",
        ));
    }
    Ok(())
}

/// An `rmpadjust` step's operand fields.
fn rmpadjust_step(cx: &Cx<'_>, s: &Obj<'_>, gpa: Gpa, size: RmpPageSize) -> Result<StepOp> {
    let vmpl = s.req(cx, "vmpl")?.int(cx, 1..=3)?;
    let perms_f = s.req(cx, "perms")?;
    let perms = parse_perms(perms_f.str(cx)?).map_err(|m| perms_f.err(cx, ErrorKind::UnknownValue, m))?;
    Ok(StepOp::Rmpadjust {
        gpa,
        size,
        vmpl: u8::try_from(vmpl).unwrap_or(3),
        perms,
        vmsa: opt_or(s, "vmsa", false, |f| f.bool(cx))?,
    })
}

/// A `recoalesce` step: a 2M-aligned region inside memory, and a mode that is not `none`.
/// A step's `vcpu`: below `vm.vcpus` (default 0).
fn step_vcpu(scx: &StepCx<'_>, s: &Obj<'_>) -> Result<u32> {
    let cx = scx.cx;
    Ok(match s.opt("vcpu") {
        None => 0,
        Some(v) => {
            let n = v.int(cx, 0..=u64::from(u32::MAX))?;
            if n >= u64::from(scx.vcpus) {
                return Err(v.err(
                    cx,
                    ErrorKind::OutOfRange,
                    format!(
                        "vcpu {n} does not exist; accepted: 0..={} (`vm.vcpus` = {})",
                        scx.vcpus - 1,
                        scx.vcpus
                    ),
                ));
            }
            u32::try_from(n).unwrap_or(0)
        }
    })
}

fn recoalesce_step(scx: &StepCx<'_>, s: &Obj<'_>, gpa_f: &Field<'_>, gpa: Gpa) -> Result<StepOp> {
    let cx = scx.cx;
    let two_m = scx.geometry.bytes(PageSize::Size2M);
    if !gpa.is_aligned(two_m) {
        return Err(gpa_f.err(
            cx,
            ErrorKind::Unaligned,
            format!("{gpa} is not {}-aligned (a recoalesce names a 2M region)", size(two_m)),
        ));
    }
    scx.in_memory(gpa_f, gpa, two_m)?;
    let mode = match s.opt("mode") {
        Some(m) => {
            let mode: Recoalesce = m.named(cx)?;
            if mode == Recoalesce::None {
                return Err(m.err(
                    cx,
                    ErrorKind::UnknownValue,
                    "unknown value \"none\" for a recoalesce step; accepted: save-restore, naive",
                ));
            }
            mode
        }
        None if scx.recoalesce != Recoalesce::None => scx.recoalesce,
        None => {
            return Err(cx.err(
                s.span,
                &join(&s.path, "mode"),
                ErrorKind::Missing,
                "required field missing (`guest.recoalesce` is \"none\"); accepted: \
                 save-restore, naive",
            ));
        }
    };
    Ok(StepOp::Recoalesce { gpa, mode })
}

fn workload(cx: &Cx<'_>, f: &Field<'_>, vm: &Vm) -> Result<Workload> {
    let w = f.obj(cx, "a table ([workload])")?;
    w.allow(cx, &["phases"])?;
    let pf = w.req(cx, "phases")?;
    let Val::Array(items) = &pf.node.val else {
        return Err(pf.wrong_type(cx, "an array of phase tables"));
    };
    if items.is_empty() {
        return Err(pf.err(cx, ErrorKind::OutOfRange, "a workload needs at least one phase"));
    }
    let mut phases = Vec::with_capacity(items.len());
    for (i, node) in items.iter().enumerate() {
        let p = Field::at(format!("{}[{i}]", pf.path()), node).obj(cx, "a phase table")?;
        let kind = p.req(cx, "kind")?;
        let kind_name = kind.str(cx)?;
        let phase = match kind_name {
            "boot" => {
                p.allow(cx, &["kind"])?;
                Phase::Boot
            }
            "steady" => {
                p.allow(
                    cx,
                    &["kind", "duration", "working_set", "conversions_per_s", "host_writes_per_s", "touch"],
                )?;
                let duration_ns = p.req(cx, "duration")?.duration(cx)?;
                let working_set = match p.opt("working_set") {
                    None => vm.memory,
                    Some(ws) => {
                        let bytes = ws.size(cx)?;
                        if bytes == 0 || bytes > vm.memory {
                            return Err(ws.err(
                                cx,
                                ErrorKind::OutOfRange,
                                format!(
                                    "{} is out of range; accepted: 1B..={} (`vm.memory`)",
                                    size(bytes),
                                    size(vm.memory)
                                ),
                            ));
                        }
                        bytes
                    }
                };
                let rate = |key| opt_or(&p, key, 0, |f| f.int(cx, 0..=1_000_000_000));
                Phase::Steady(SteadyPhase {
                    duration_ns,
                    working_set,
                    conversions_per_s: rate("conversions_per_s")?,
                    host_writes_per_s: rate("host_writes_per_s")?,
                    touch: opt_or(&p, "touch", TouchPattern::default(), |f| f.named(cx))?,
                })
            }
            "balloon" => {
                p.allow(cx, &["kind", "size"])?;
                let sf = p.req(cx, "size")?;
                let bytes = sf.size(cx)?;
                check_memory_size(cx, &sf, bytes, PAGE_SIZE_4K)?;
                if bytes > vm.memory {
                    return Err(sf.err(
                        cx,
                        ErrorKind::OutOfRange,
                        format!(
                            "{} is out of range; accepted: 4KiB..={} (`vm.memory`)",
                            size(bytes),
                            size(vm.memory)
                        ),
                    ));
                }
                Phase::Balloon(BalloonPhase { size: bytes })
            }
            other => {
                return Err(kind.err(
                    cx,
                    ErrorKind::UnknownValue,
                    format!("unknown value {other:?}; accepted: boot, steady, balloon"),
                ));
            }
        };
        phases.push(phase);
    }
    Ok(Workload { phases })
}

/// `[cost]`: parameter name → a non-negative number in the parameter's unit (`ns`, `ns/KiB`, ...);
/// a fractional value is rounded to the nearest integer.
fn cost_table(cx: &Cx<'_>, f: &Field<'_>) -> Result<CostTable> {
    let t = f.obj(cx, "a table ([cost])")?;
    let mut table = CostTable::default();
    for entry in &t.table.entries {
        let path = join(&t.path, &entry.key);
        let Some(item) = snpsim_engine::cost::index_of(&entry.key) else {
            return Err(cx.err(
                entry.key_span,
                &path,
                ErrorKind::UnknownField,
                format!("unknown cost parameter; accepted: {}", snpsim_engine::cost::accepted_names()),
            ));
        };
        let field = Field::at(path, &entry.node);
        let unit = snpsim_engine::cost::ALL[item].unit.name();
        let ns = match entry.node.val {
            Val::Int(v) => u64::try_from(v).ok(),
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // checked: finite, >= 0
            Val::Float(v) if (0.0..1e18).contains(&v) => Some(v.round() as u64),
            Val::Float(_) => None,
            _ => return Err(field.wrong_type(cx, &format!("a number of {unit}"))),
        };
        let Some(ns) = ns else {
            return Err(field.err(cx, ErrorKind::OutOfRange, format!("a cost is a number >= 0 ({unit})")));
        };
        table.set(&entry.key, ns);
    }
    Ok(table)
}

fn expectations(cx: &Cx<'_>, f: &Field<'_>) -> Result<Expectations> {
    let e = f.obj(cx, "a table ([expect])")?;
    let mut entries = BTreeMap::new();
    for entry in &e.table.entries {
        match &entry.node.val {
            Val::Table(members) if METRIC_FAMILIES.contains(&entry.key.as_str()) => {
                for m in &members.entries {
                    let name = format!("{}.{}", entry.key, m.key);
                    expect_one(cx, &mut entries, &name, m.key_span, &m.node)?;
                }
            }
            _ => expect_one(cx, &mut entries, &entry.key, entry.key_span, &entry.node)?,
        }
    }
    Ok(Expectations { entries })
}

#[allow(clippy::cast_precision_loss)] // expected counts are far below 2^53
fn expect_one(
    cx: &Cx<'_>,
    entries: &mut BTreeMap<String, Expect>,
    name: &str,
    key_span: Span,
    node: &Node,
) -> Result<()> {
    let path = format!("expect.{name}");
    if let Err(e) = check_metric_name(name) {
        return Err(cx.err(key_span, &path, ErrorKind::UnknownField, e.to_string()));
    }
    let f = Field::at(path, node);
    let value_error = |e: &ExpectError| {
        let kind = match e {
            ExpectError::NotComparison { .. } | ExpectError::NotRange { .. } => ErrorKind::UnknownValue,
            _ => ErrorKind::OutOfRange,
        };
        f.err(cx, kind, e.to_string())
    };
    let expect = if name == "outcome" {
        Expect::Outcome(f.named::<Outcome>(cx)?)
    } else if name == "cause" {
        Expect::Cause(f.named::<Cause>(cx)?)
    } else if name == "reason" {
        Expect::Reason(f.named::<Reason>(cx)?)
    } else {
        match &node.val {
            Val::Int(v) => Expect::Compare { op: super::expect::CmpOp::Eq, value: *v as f64 },
            Val::Float(v) if v.is_finite() => Expect::Compare { op: super::expect::CmpOp::Eq, value: *v },
            Val::Str(s) => Expect::parse_comparison(s).map_err(|e| value_error(&e))?,
            Val::Float(_) => {
                return Err(f.err(cx, ErrorKind::OutOfRange, "expected a finite number"));
            }
            _ => {
                return Err(f.wrong_type(
                    cx,
                    "an integer (exact) or a comparison string like \">0\", \">=1024\", \"<=4\"",
                ));
            }
        }
    };
    check_expect_value(name, &expect).map_err(|e| value_error(&e))?;
    if entries.insert(name.to_owned(), expect).is_some() {
        return Err(f.err(cx, ErrorKind::Syntax, format!("`{name}` is expected twice")));
    }
    Ok(())
}
