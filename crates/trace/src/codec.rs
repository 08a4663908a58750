//! The trace's JSON codec: the engine's configuration, actions and cost overrides as the objects
//! of a trace's `run` header and `step` lines, read back with every field checked (replay must not
//! drive the engine outside what a scenario could).

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};
use snpsim_defs::{Gpa, PageSize, RmpPageSize};
use snpsim_engine::backing::Backing;
use snpsim_engine::engine::{Action, CheckMode, MemoryBacking, Op, SimConfig};
use snpsim_guest::{Granularity, GuestConfig, Protocol, PscOrder, Recoalesce};
use snpsim_host::{HostVia, VmaBacking};
use snpsim_hw::{AccessKind, Geometry};

use crate::error::CodecError;
use crate::fields::{F, object};
use crate::names::{parse_perms, perms_name, rmp_size_name};
use crate::{FORMAT_VERSION, TraceMeta};
use snpsim_engine::names::Named;

/// An action as the `action` object of a `step` line.
pub fn action_json(a: &Action) -> Value {
    object(action_fields(a))
}

/// The fields of an action's `action` object ([`action_json`]), for writing straight into a line.
pub(crate) fn action_fields(a: &Action) -> Vec<(&'static str, F<'static>)> {
    let gran = |g: Option<Granularity>| F::opt_str(g.map(Named::name));
    let to = |private: bool| F::Str(if private { "private" } else { "shared" });
    let op = ("op", F::Str(a.op().name()));
    match *a {
        Action::Psc { vcpu, gpa, pages, private, granularity } => vec![
            op,
            ("vcpu", F::Uint(vcpu.into())),
            ("gpa", F::Hex(gpa.raw())),
            ("pages", F::Uint(pages)),
            ("to", to(private)),
            ("granularity", gran(granularity)),
        ],
        Action::Accept { vcpu, gpa, pages, granularity } => vec![
            op,
            ("vcpu", F::Uint(vcpu.into())),
            ("gpa", F::Hex(gpa.raw())),
            ("pages", F::Uint(pages)),
            ("granularity", gran(granularity)),
        ],
        Action::Pvalidate { vcpu, gpa, size, validate } => vec![
            op,
            ("vcpu", F::Uint(vcpu.into())),
            ("gpa", F::Hex(gpa.raw())),
            ("size", F::Str(rmp_size_name(size))),
            ("validate", F::Bool(validate)),
        ],
        Action::PscRequest { vcpu, gpa, size, private, cur_page } => vec![
            op,
            ("vcpu", F::Uint(vcpu.into())),
            ("gpa", F::Hex(gpa.raw())),
            ("size", F::Str(rmp_size_name(size))),
            ("to", to(private)),
            ("cur_page", F::Uint(cur_page.into())),
        ],
        Action::Rmpadjust { vcpu, gpa, size, vmpl, perms, vmsa } => vec![
            op,
            ("vcpu", F::Uint(vcpu.into())),
            ("gpa", F::Hex(gpa.raw())),
            ("size", F::Str(rmp_size_name(size))),
            ("vmpl", F::Uint(vmpl.into())),
            ("perms", F::Text(perms_name(perms))),
            ("vmsa", F::Bool(vmsa)),
        ],
        Action::Access { vcpu, gpa, kind, private } => vec![
            op,
            ("vcpu", F::Uint(vcpu.into())),
            ("gpa", F::Hex(gpa.raw())),
            ("kind", F::Str(kind.name())),
            ("private", F::Bool(private)),
        ],
        Action::Recoalesce { vcpu, gpa, mode } => {
            vec![
                op,
                ("vcpu", F::Uint(vcpu.into())),
                ("gpa", F::Hex(gpa.raw())),
                ("mode", F::Str(mode.name())),
            ]
        }
        Action::HostWrite { gpa, via } | Action::HostRead { gpa, via } => {
            vec![op, ("gpa", F::Hex(gpa.raw())), ("via", F::Str(via.name()))]
        }
        Action::HostPin { gpa, .. } | Action::HostSplit { gpa } | Action::HostCollapse { gpa } => {
            vec![op, ("gpa", F::Hex(gpa.raw()))]
        }
        Action::PunchHole { gpa, pages } => vec![op, ("gpa", F::Hex(gpa.raw())), ("pages", F::Uint(pages))],
        Action::Tick { vcpu } => vec![op, ("vcpu", F::Uint(vcpu.into()))],
        Action::Teardown => vec![op],
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
    fn new(v: &'a Value, what: &'a str) -> Result<Self, CodecError> {
        let obj = v.as_object().ok_or_else(|| CodecError::NotObject { what: what.to_owned() })?;
        Ok(Fields { obj, what, seen: BTreeSet::new() })
    }

    fn get(&mut self, key: &'a str) -> Result<&'a Value, CodecError> {
        self.seen.insert(key);
        self.obj.get(key).ok_or_else(|| self.err(key, |what, key| CodecError::Missing { what, key }))
    }

    /// An error about `key` of this object.
    fn err(&self, key: &str, make: impl FnOnce(String, String) -> CodecError) -> CodecError {
        make(self.what.to_owned(), key.to_owned())
    }

    /// `key` holds a value of the wrong type; `expected` says what it must be.
    fn wrong(&self, key: &str, expected: &'static str) -> CodecError {
        self.err(key, |what, key| CodecError::WrongType { what, key, expected })
    }

    /// Whether the object has `key` (for fields later versions of the format added).
    fn has(&self, key: &str) -> bool {
        self.obj.contains_key(key)
    }

    fn u64(&mut self, key: &'a str) -> Result<u64, CodecError> {
        self.get(key)?.as_u64().ok_or_else(|| self.wrong(key, "a non-negative integer"))
    }

    fn opt_u64(&mut self, key: &'a str) -> Result<Option<u64>, CodecError> {
        match self.get(key)? {
            Value::Null => Ok(None),
            v => v.as_u64().map(Some).ok_or_else(|| self.wrong(key, "null or an integer")),
        }
    }

    fn bool(&mut self, key: &'a str) -> Result<bool, CodecError> {
        self.get(key)?.as_bool().ok_or_else(|| self.wrong(key, "true or false"))
    }

    fn opt_bool(&mut self, key: &'a str) -> Result<Option<bool>, CodecError> {
        match self.get(key)? {
            Value::Null => Ok(None),
            v => v.as_bool().map(Some).ok_or_else(|| self.wrong(key, "null, true or false")),
        }
    }

    fn str(&mut self, key: &'a str) -> Result<&'a str, CodecError> {
        self.get(key)?.as_str().ok_or_else(|| self.wrong(key, "a string"))
    }

    fn hex(&mut self, key: &'a str) -> Result<u64, CodecError> {
        let s = self.str(key)?;
        s.strip_prefix("0x")
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .ok_or_else(|| self.err(key, |what, key| CodecError::NotHex { what, key, value: s.to_owned() }))
    }

    fn choice<T: Copy>(&mut self, key: &'a str, options: &[(&str, T)]) -> Result<T, CodecError> {
        let s = self.str(key)?;
        options.iter().find(|(n, _)| *n == s).map(|&(_, v)| v).ok_or_else(|| {
            let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            self.err(key, |what, key| CodecError::Unknown {
                what,
                key,
                value: s.to_owned(),
                accepted: names.join(", "),
            })
        })
    }

    /// Read a field holding one of a closed set of names (a [`Named`] type's).
    fn named<T: Named>(&mut self, key: &'a str) -> Result<T, CodecError> {
        let options: Vec<(&str, T)> = T::all().iter().map(|&v| (v.name(), v)).collect();
        self.choice(key, &options)
    }

    fn u32(&mut self, key: &'a str) -> Result<u32, CodecError> {
        u32::try_from(self.u64(key)?)
            .map_err(|_| self.err(key, |what, key| CodecError::TooLarge { what, key }))
    }

    /// Fail on any field not read.
    fn done(self) -> Result<(), CodecError> {
        match self.obj.keys().find(|k| !self.seen.contains(k.as_str())) {
            Some(k) => Err(CodecError::UnknownField { what: self.what.to_owned(), key: k.clone() }),
            None => Ok(()),
        }
    }
}

const SIZES_4K_2M: [(&str, RmpPageSize); 2] = [("4k", RmpPageSize::Size4K), ("2m", RmpPageSize::Size2M)];

/// Read an action back from a `step` line's `action` object and check that it fits `config`
/// (vCPU index, range inside guest memory, operand ranges), so that replaying it cannot drive the
/// engine outside what a scenario could.
pub fn action_from_json(v: &Value, config: &SimConfig) -> Result<Action, CodecError> {
    let mut f = Fields::new(v, "action")?;
    let op: Op = f.named("op")?;
    if op == Op::Tick {
        return tick_from(f, config);
    }
    if op == Op::Teardown {
        f.done()?;
        return Ok(Action::Teardown);
    }
    let gpa = Gpa::new(f.hex("gpa")?);
    let guest_bytes = config.guest_pages.saturating_mul(4096);
    let mut vcpu = || -> Result<u32, CodecError> {
        let v = f.u32("vcpu")?;
        if v >= config.vcpus {
            return Err(CodecError::NoSuchVcpu { vcpu: v, vcpus: config.vcpus });
        }
        Ok(v)
    };
    let vcpu_val = match op {
        Op::Psc
        | Op::Accept
        | Op::Pvalidate
        | Op::PscRequest
        | Op::Rmpadjust
        | Op::Access
        | Op::Recoalesce => Some(vcpu()?),
        _ => None,
    };
    let vcpu = vcpu_val.unwrap_or(0);
    let gran = |f: &mut Fields<'_>| -> Result<Option<Granularity>, CodecError> {
        match f.get("granularity")? {
            Value::Null => Ok(None),
            _ => f.named("granularity").map(Some),
        }
    };
    let pages = |f: &mut Fields<'_>| -> Result<u64, CodecError> {
        let n = f.u64("pages")?;
        if n == 0 || !gpa.raw().is_multiple_of(4096) || gpa.raw() / 4096 + n > config.guest_pages {
            return Err(CodecError::BadRange { gpa: gpa.raw(), pages: n, guest_bytes });
        }
        Ok(n)
    };
    if gpa.raw() >= guest_bytes {
        return Err(CodecError::OutsideGuest { gpa: gpa.raw(), guest_bytes });
    }
    let action = match op {
        Op::Psc => {
            let pages = pages(&mut f)?;
            let private = f.choice("to", &[("private", true), ("shared", false)])?;
            Action::Psc { vcpu, gpa, pages, private, granularity: gran(&mut f)? }
        }
        Op::Accept => {
            let pages = pages(&mut f)?;
            Action::Accept { vcpu, gpa, pages, granularity: gran(&mut f)? }
        }
        Op::Pvalidate => Action::Pvalidate {
            vcpu,
            gpa,
            size: f.choice("size", &SIZES_4K_2M)?,
            validate: f.bool("validate")?,
        },
        Op::Rmpadjust => rmpadjust_from(&mut f, vcpu, gpa)?,
        Op::PscRequest => psc_request_from(&mut f, vcpu, gpa, config)?,
        Op::Access => {
            Action::Access { vcpu, gpa, kind: f.named::<AccessKind>("kind")?, private: f.bool("private")? }
        }
        Op::Recoalesce => {
            if !gpa.raw().is_multiple_of(config.geometry.bytes(PageSize::Size2M)) {
                return Err(CodecError::Unaligned2m { gpa: gpa.raw() });
            }
            Action::Recoalesce { vcpu, gpa, mode: f.named::<Recoalesce>("mode")? }
        }
        Op::HostWrite => Action::HostWrite { gpa, via: f.named::<HostVia>("via")? },
        Op::HostRead => Action::HostRead { gpa, via: f.named::<HostVia>("via")? },
        Op::HostPin => Action::HostPin { gpa, pin: true },
        Op::HostUnpin => Action::HostPin { gpa, pin: false },
        Op::HostSplit => Action::HostSplit { gpa },
        Op::HostCollapse => Action::HostCollapse { gpa },
        Op::PunchHole => {
            let pages = pages(&mut f)?;
            Action::PunchHole { gpa, pages }
        }
        Op::Tick | Op::Teardown => unreachable!("read above"),
    };
    f.done()?;
    Ok(action)
}

fn psc_request_from(
    f: &mut Fields<'_>,
    vcpu: u32,
    gpa: Gpa,
    config: &SimConfig,
) -> Result<Action, CodecError> {
    let size = f.choice("size", &SIZES_4K_2M)?;
    let private = f.choice("to", &[("private", true), ("shared", false)])?;
    let cur_page = f.u64("cur_page")?;
    let cur_page = u16::try_from(cur_page).ok().filter(|&c| c < 1 << 12).ok_or(CodecError::OutOfRange {
        field: "action.cur_page",
        value: cur_page,
        accepted: "0..=4095 (12 bits)",
    })?;
    if gpa.raw() + config.geometry.bytes(size.page_size()) > config.guest_pages.saturating_mul(4096) {
        return Err(CodecError::EntryOutside { gpa: gpa.raw() });
    }
    Ok(Action::PscRequest { vcpu, gpa, size, private, cur_page })
}

fn rmpadjust_from(f: &mut Fields<'_>, vcpu: u32, gpa: Gpa) -> Result<Action, CodecError> {
    let size = f.choice("size", &SIZES_4K_2M)?;
    let vmpl = f.u64("vmpl")?;
    if !(1..=3).contains(&vmpl) {
        return Err(CodecError::OutOfRange { field: "action.vmpl", value: vmpl, accepted: "1, 2, 3" });
    }
    let p = f.str("perms")?;
    let perms = parse_perms(p).ok_or_else(|| CodecError::BadPerms { value: p.to_owned() })?;
    Ok(Action::Rmpadjust { vcpu, gpa, size, vmpl: vmpl as u8, perms, vmsa: f.bool("vmsa")? })
}

/// A `tick` action: a vCPU of an interleaved run.
fn tick_from(mut f: Fields<'_>, config: &SimConfig) -> Result<Action, CodecError> {
    let vcpu = f.u32("vcpu")?;
    if vcpu >= config.vcpus || !config.interleave {
        return Err(CodecError::BadTick { vcpu, vcpus: config.vcpus, interleave: config.interleave });
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
        rmpopt,
        allocation,
    } = *c;
    let GuestConfig { granularity, protocol, ghcb_entries, validation_tracking, order, msr_until_ghcb } =
        guest;
    let shared = match backing {
        // A legacy VMA is the shared side itself; the in-place file holds shared memory too.
        MemoryBacking::Vma(_) | MemoryBacking::GmemHugetlb(_) => Value::Null,
        MemoryBacking::Gmem { shared, .. } => Value::from(shared.name()),
    };
    let backing = backing.backing().name();
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
            "psc_granularity": granularity.name(),
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
        "check": check.name(),
        "adversary": adversary.iter().map(snpsim_engine::adversary::Attack::name).collect::<Vec<_>>(),
    });
    if interleave {
        v["interleave"] = Value::Bool(true);
    }
    if rmpopt {
        v["rmpopt"] = Value::Bool(true);
    }
    if allocation != snpsim_host::Allocation::Contiguous {
        v["allocation"] = Value::from(allocation.name());
    }
    v
}

/// Largest host memory a trace may ask for (1 PiB in 4 KiB pages).
const MAX_PAGES: u64 = 1 << 38;

/// Read the `guest` object of a `run` header's `config`.
fn guest_from_json(gv: &Value) -> Result<GuestConfig, CodecError> {
    let mut g = Fields::new(gv, "config.guest")?;
    let guest = GuestConfig {
        granularity: g.named::<Granularity>("psc_granularity")?,
        protocol: g.named::<Protocol>("psc_protocol")?,
        ghcb_entries: {
            let n = g.u64("ghcb_entries")?;
            if !(1..=253).contains(&n) {
                return Err(CodecError::OutOfRange {
                    field: "config.guest.ghcb_entries",
                    value: n,
                    accepted: "1-253",
                });
            }
            n as u16
        },
        validation_tracking: g.bool("validation_tracking")?,
        // Traces written before these two fields existed were run in whole-range order with
        // one protocol throughout.
        order: if g.has("psc_order") { g.named::<PscOrder>("psc_order")? } else { PscOrder::WholeRange },
        msr_until_ghcb: g.has("msr_until_ghcb") && g.bool("msr_until_ghcb")?,
    };
    g.done()?;
    Ok(guest)
}

/// Read the `adversary` array of a `run` header's `config`: attack names.
fn attacks_from(av: &Value) -> Result<Vec<snpsim_engine::adversary::Attack>, CodecError> {
    let mut attacks = Vec::new();
    for a in av.as_array().ok_or(CodecError::AdversaryNotArray)? {
        let name = a.as_str().unwrap_or_default();
        attacks.push(snpsim_engine::adversary::Attack::from_name(name).ok_or_else(|| {
            CodecError::UnknownAttack {
                name: a.to_string(),
                accepted: snpsim_engine::adversary::Attack::accepted(),
            }
        })?);
    }
    Ok(attacks)
}

/// Read the `config` object of a `run` header back, rejecting what no scenario could produce.
pub fn config_from_json(v: &Value) -> Result<SimConfig, CodecError> {
    let mut f = Fields::new(v, "config")?;
    let geometry = f.choice("geometry", &[("x86", Geometry::X86), ("tiny", Geometry::TINY)])?;
    let host_pages = f.u64("host_pages")?;
    let guest_pages = f.u64("guest_pages")?;
    if host_pages == 0 || host_pages > MAX_PAGES || guest_pages == 0 || guest_pages > host_pages {
        return Err(CodecError::BadMemory { host_pages, guest_pages, max: MAX_PAGES });
    }
    let vcpus = f.u32("vcpus")?;
    if !(1..=4096).contains(&vcpus) {
        return Err(CodecError::OutOfRange {
            field: "config.vcpus",
            value: u64::from(vcpus),
            accepted: "1-4096",
        });
    }
    let pname = f.str("policy")?;
    let policy = snpsim_kvm::policy::by_name(pname).ok_or_else(|| {
        let names: Vec<&str> = snpsim_kvm::policy::ALL.iter().map(|p| p.name()).collect();
        CodecError::Unknown {
            what: "config".into(),
            key: "policy".into(),
            value: pname.to_owned(),
            accepted: names.join(", "),
        }
    })?;
    let backing: Backing = f.named("backing")?;
    let backing = if backing.hugetlb_folio().is_some() {
        if !f.get("shared_backing")?.is_null() {
            return Err(CodecError::SharedBackingOnLegacy);
        }
        backing.memory(VmaBacking::Thp)
    } else if backing.is_gmem() {
        backing.memory(f.named::<VmaBacking>("shared_backing")?)
    } else {
        if !f.get("shared_backing")?.is_null() {
            return Err(CodecError::SharedBackingOnLegacy);
        }
        // A legacy backing is its VMA alone: no shared side to read.
        backing.memory(VmaBacking::Thp)
    };
    let prefault_on_psc = f.bool("prefault_on_psc")?;
    let npt_level_follows_rmp = f.opt_bool("npt_level_follows_rmp")?;
    let smaller_npt_faults = f.bool("smaller_npt_faults")?;
    let khugepaged = f.bool("khugepaged")?;
    let guest = guest_from_json(f.get("guest")?)?;
    let step_budget = f.opt_u64("step_budget")?;
    if step_budget == Some(0) {
        return Err(CodecError::ZeroStepBudget);
    }
    let check = f.named::<CheckMode>("check")?;
    let attacks = attacks_from(f.get("adversary")?)?;
    // Written only for interleaved runs: traces of sequential runs keep their form.
    let interleave = match f.obj.get("interleave") {
        None => false,
        Some(_) => f.bool("interleave")?,
    };
    // Written only for runs with RMPOPT (`[machine] rmpopt`): other traces keep their form.
    let rmpopt = match f.obj.get("rmpopt") {
        None => false,
        Some(_) => f.bool("rmpopt")?,
    };
    // Written only for a scattered host (`[machine] allocation`): other traces keep their form.
    let allocation = match f.obj.get("allocation") {
        None => snpsim_host::Allocation::Contiguous,
        Some(_) => f.named::<snpsim_host::Allocation>("allocation")?,
    };
    f.done()?;
    Ok(SimConfig {
        interleave,
        rmpopt,
        allocation,
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
        adversary: snpsim_engine::adversary::Attacks::of(&attacks),
    })
}

/// The `run` header line of a trace.
pub fn header_json(meta: &TraceMeta, config: &SimConfig, costs: &snpsim_engine::cost::CostTable) -> Value {
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
    let defaults = snpsim_engine::cost::CostTable::default();
    let changed: Map<String, Value> = (0..snpsim_engine::cost::COUNT)
        .filter(|&i| costs.get(i) != defaults.get(i))
        .map(|i| (snpsim_engine::cost::ALL[i].name.to_string(), Value::from(costs.get(i))))
        .collect();
    if let (false, Some(obj)) = (changed.is_empty(), header.as_object_mut()) {
        obj.insert("costs".into(), Value::Object(changed));
    }
    header
}

/// The cost parameters a `run` header names (`costs`, absent for the defaults).
pub fn costs_from_json(header: &Value) -> Result<snpsim_engine::cost::CostTable, CodecError> {
    let mut table = snpsim_engine::cost::CostTable::default();
    let Some(costs) = header.get("costs") else { return Ok(table) };
    let Some(obj) = costs.as_object() else { return Err(CodecError::CostsNotObject) };
    for (name, v) in obj {
        let ns = v.as_u64().ok_or_else(|| CodecError::CostNotInteger { name: name.clone() })?;
        if !table.set(name, ns) {
            return Err(CodecError::UnknownCost {
                name: name.clone(),
                accepted: snpsim_engine::cost::accepted_names(),
            });
        }
    }
    Ok(table)
}
