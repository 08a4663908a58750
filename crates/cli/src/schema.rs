//! `snpsim list --schema`: a JSON Schema (draft 2020-12) of the scenario format, for editors that
//! complete and check TOML against one (taplo and the editors built on it read a `#:schema FILE`
//! comment at the top of a file).
//!
//! The schema is made from the same names the parser accepts: every closed set of values (policies,
//! backings, presets, attacks, step ops, cost parameters, metrics and their members) is read from
//! its owner, and each step op's fields from [`StepKind::fields`]. What the schema adds are the
//! types and which fields are required; the tests below check both against the parser (each
//! table's fields are exactly those the parser's "unknown field" error accepts, a step of each op
//! with only its required fields parses and one without any of them does not) and validate every
//! scenario under `examples/` against the schema. Rules across fields (a backing of the policy's
//! era, sizes inside guest memory, alignment) are the parser's alone.

use serde_json::{Map, Value, json};
use snpsim_scenario::{
    AcceptMode, AccessKind, Backing, Era, Granularity, HostVia, METRIC_FAMILIES, METRICS, Named, Outcome,
    PageState, Preset, PscProtocol, Reason, Recoalesce, StepKind, TouchPattern, family_members,
};

/// The names of a closed set, as a JSON array.
fn names<T: Named>() -> Value {
    T::all().iter().map(|v| Value::from(v.name())).collect()
}

fn one_of_names(names: Value, description: &str) -> Value {
    let mut v = json!({ "description": description });
    v["enum"] = names;
    v
}

fn int(min: u64, max: Option<u64>, description: &str) -> Value {
    let mut v = json!({ "type": "integer", "minimum": min, "description": description });
    if let Some(max) = max {
        v["maximum"] = max.into();
    }
    v
}

fn boolean(description: &str) -> Value {
    json!({ "type": "boolean", "description": description })
}

fn reference(name: &str, description: &str) -> Value {
    json!({ "$ref": format!("#/$defs/{name}"), "description": description })
}

/// A table whose fields are `properties`, of which `required` must be present, and no other.
fn table(description: &str, properties: Value, required: &[&str]) -> Value {
    let mut v = json!({
        "type": "object",
        "description": description,
        "required": required,
        "additionalProperties": false,
    });
    v["properties"] = properties;
    v
}

/// The type of a step field, by its name (a name means the same in every op that has it).
fn step_field(name: &str) -> Value {
    match name {
        "gpa" => reference("gpa", "guest-physical address, 4 KiB-aligned"),
        "size" => reference(
            "size",
            "a range: a non-zero multiple of 4 KiB (default 4 KiB); one instruction: the 4K or 2M page",
        ),
        "to" => one_of_names(names::<PageState>(), "the state to change to"),
        "granularity" => {
            one_of_names(names::<Granularity>(), "page-state-change granularity (default: the guest's)")
        }
        "validate" => boolean("true validates (default), false rescinds"),
        "cur_page" => int(0, Some(0xfff), "the entry's cur_page (default 0)"),
        "vmpl" => int(1, Some(3), "the target VMPL"),
        "perms" => json!({
            "type": "string",
            "description": "any subset of r (read), w (write), x (user execute), s (supervisor execute), each at most once",
        }),
        "vmsa" => boolean("make the page a VMSA (default false)"),
        "kind" => one_of_names(names::<AccessKind>(), "the access"),
        "private" => boolean("C-bit set (default true)"),
        "mode" => json!({
            "enum": Recoalesce::all().iter().filter(|r| **r != Recoalesce::None).map(|r| r.name()).collect::<Vec<_>>(),
            "description": "how the guest re-coalesces (default: the guest's recoalesce; required when that is none)",
        }),
        "via" => one_of_names(names::<HostVia>(), "who writes or reads (default vmm)"),
        _ => json!({}),
    }
}

/// The fields a step of `kind` must have besides `op`.
pub(crate) fn required_step_fields(kind: StepKind) -> &'static [&'static str] {
    match kind {
        StepKind::Psc | StepKind::PscRequest => &["gpa", "to"],
        StepKind::Rmpadjust => &["gpa", "vmpl", "perms"],
        StepKind::Access => &["gpa", "kind"],
        StepKind::Barrier | StepKind::Teardown => &[],
        _ => &["gpa"],
    }
}

fn step_schema(kind: StepKind) -> Value {
    let mut props = Map::new();
    props.insert("op".into(), json!({ "const": kind.name() }));
    props.insert("vcpu".into(), int(0, None, "the vCPU (default 0; below vm.vcpus)"));
    for f in kind.fields() {
        props.insert((*f).into(), step_field(f));
    }
    let mut required = vec!["op"];
    required.extend_from_slice(required_step_fields(kind));
    table(&format!("a {} step", kind.name()), Value::Object(props), &required)
}

/// An `[expect]` value of a metric: an exact number, a comparison (`">=1024"`) or a range
/// (`"LO..HI"`).
fn expect_value() -> Value {
    json!({
        "anyOf": [{ "type": "number" }, { "type": "string" }],
        "description": "an exact number, a comparison (\"==\", \"!=\", \"<\", \"<=\", \">\", \">=\" and a number) or a range \"LO..HI\"",
    })
}

fn expect_schema() -> Value {
    let mut props = Map::new();
    props.insert("outcome".into(), one_of_names(names::<Outcome>(), "the run's outcome"));
    props.insert("cause".into(), one_of_names(names::<snpsim_scenario::Cause>(), "a vm_error's cause"));
    props.insert(
        "reason".into(),
        one_of_names(names::<Reason>(), "why the run stopped (docs/semantics.md E10)"),
    );
    for m in METRICS.iter().filter(|m| !matches!(**m, "outcome" | "cause" | "reason")) {
        let members = family_members(m).map(|(_, members)| members).unwrap_or_default();
        let value = if METRIC_FAMILIES.contains(m) {
            let by_member: Map<String, Value> = members.iter().map(|n| (n.clone(), expect_value())).collect();
            let members_table =
                json!({ "type": "object", "properties": by_member, "additionalProperties": false });
            // npt_coverage has no total: it is always named with a level.
            if *m == "npt_coverage" {
                members_table
            } else {
                json!({ "anyOf": [expect_value(), members_table] })
            }
        } else {
            expect_value()
        };
        props.insert((*m).into(), value);
    }
    table("the results a run must have (docs/user-guide.md)", Value::Object(props), &[])
}

fn cost_schema() -> Value {
    let props: Map<String, Value> = snpsim_engine::cost::ALL
        .iter()
        .map(|c| {
            let what = format!("{} ({}; default {})", c.what, c.unit.name(), c.ns);
            (c.name.to_string(), json!({ "type": "number", "minimum": 0, "description": what }))
        })
        .collect();
    table("cost model parameters (docs/calibration.md)", Value::Object(props), &[])
}

fn workload_schema() -> Value {
    let boot =
        table("boot: accept memory as the preset says", json!({ "kind": { "const": "boot" } }), &["kind"]);
    let steady = table(
        "steady: touches, conversions and host writes for a duration of simulated time",
        json!({
            "kind": { "const": "steady" },
            "duration": reference("duration", "simulated time"),
            "working_set": reference("size", "default all guest memory"),
            "conversions_per_s": int(0, Some(1_000_000_000), "driver-buffer conversions per second (default 0)"),
            "host_writes_per_s": int(0, Some(1_000_000_000), "host writes per second (default 0)"),
            "touch": one_of_names(names::<TouchPattern>(), "the touch pattern (default random)"),
        }),
        &["kind", "duration"],
    );
    let balloon = table(
        "balloon: the guest gives memory back",
        json!({ "kind": { "const": "balloon" }, "size": reference("size", "bytes given back") }),
        &["kind", "size"],
    );
    table(
        "a generated workload (docs/user-guide.md)",
        json!({ "phases": { "type": "array", "minItems": 1, "items": { "oneOf": [boot, steady, balloon] } } }),
        &["phases"],
    )
}

/// The JSON Schema of a scenario file.
pub fn scenario_schema() -> Value {
    let policies: Vec<&str> = snpsim_scenario::policies().iter().map(|p| p.name()).collect();
    let attacks: Vec<&str> = snpsim_engine::adversary::Attack::ALL.iter().map(|a| a.name()).collect();
    let vma_backings: Vec<&str> = Backing::of_era(Era::Legacy).map(Backing::name).collect();
    let machine = table(
        "the host machine",
        json!({
            "host_memory": reference("size", "host RAM: a non-zero multiple of 4 KiB"),
            "geometry": { "enum": ["x86", "tiny"], "description": "x86 (512 entries per level, default) or tiny (4)" },
            "rmpopt": boolean("RMPOPT: host writes to 1 GiB regions RMPOPT has marked skip the RMP check (default false)"),
            "allocation": one_of_names(names::<snpsim_host::Allocation>(), "where the host's single 4K blocks come from: contiguous (default) or scattered over every 1 GiB region"),
        }),
        &["host_memory"],
    );
    let vm = table(
        "the VM and the hypervisor",
        json!({
            "memory": reference("size", "guest memory from GPA 0"),
            "vcpus": int(1, Some(4096), "vCPUs (default 1)"),
            "policy": one_of_names(policies.into(), "KVM's policy (docs/debate.md)"),
            "backing": one_of_names(names::<Backing>(), "the backing of guest memory (of the policy's era)"),
            "shared_backing": one_of_names(vma_backings.into(), "gmem era: the shared side's VMA (default thp)"),
            "prefault_on_psc": boolean("gmem era: the VMM pre-faults after a conversion to private (default true)"),
            "npt_level_follows_rmp": boolean("cap the NPT level at the RMP level (default: the policy's)"),
            "smaller_npt_faults": boolean("an NPT leaf smaller than its 2M RMP entry takes #NPF SIZEM (default true)"),
            "khugepaged": boolean("collapse split THP ranges after every step (default false)"),
            "adversary": {
                "anyOf": [{ "enum": attacks }, { "type": "array", "items": { "enum": attacks } }],
                "description": "attacks of an adversarial hypervisor (docs/attacks.md)",
            },
            "step_budget": int(1, None, "steps after which the run stops"),
            "interleave": boolean("run the vCPUs and the host interleaved (default false)"),
        }),
        &["memory", "policy", "backing"],
    );
    let guest = table(
        "the guest: a preset with fields that override it",
        json!({
            "preset": one_of_names(names::<Preset>(), "the guest (default linux)"),
            "psc_granularity": one_of_names(names::<Granularity>(), "page-state-change granularity"),
            "psc_protocol": one_of_names(names::<PscProtocol>(), "MSR or GHCB page-state changes"),
            "ghcb_entries": int(1, Some(253), "entries per GHCB PSC request"),
            "accept": one_of_names(names::<AcceptMode>(), "eager or lazy acceptance"),
            "validation_tracking": boolean("the guest tracks the pages it validated"),
            "recoalesce": one_of_names(names::<Recoalesce>(), "how the guest regains 2M entries after PSMASH"),
        }),
        &[],
    );
    let steps: Vec<Value> = StepKind::all().iter().map(|k| step_schema(*k)).collect();
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "snpsim scenario",
        "description": format!("A snpsim {} scenario file (docs/user-guide.md, Scenario files)", env!("CARGO_PKG_VERSION")),
        "type": "object",
        "properties": {
            "name": { "type": "string", "minLength": 1, "description": "the scenario's name" },
            "seed": int(0, None, "the only source of randomness of a run (default 0)"),
            "machine": machine,
            "vm": vm,
            "guest": guest,
            "step": { "type": "array", "items": { "oneOf": steps }, "description": "scripted steps, in order" },
            "workload": workload_schema(),
            "expect": expect_schema(),
            "cost": cost_schema(),
        },
        "required": ["name", "machine", "vm"],
        "additionalProperties": false,
        "$defs": {
            "size": {
                "anyOf": [{ "type": "string" }, { "type": "integer", "minimum": 0 }],
                "description": "a size: a string with a unit (\"4KiB\", \"2MiB\", \"1GiB\") or an integer of bytes",
            },
            "gpa": {
                "anyOf": [{ "type": "string" }, { "type": "integer", "minimum": 0 }],
                "description": "an address: a hex string (\"0x200000\") or an integer",
            },
            "duration": { "type": "string", "description": "a duration (\"10s\", \"500ms\")" },
        },
    })
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;

    /// A validator for the part of JSON Schema this schema uses (type, enum, const, properties,
    /// required, additionalProperties, items, minItems, anyOf, oneOf, minimum, maximum, minLength,
    /// local $ref); `Err` names the first path that fails.
    fn validate(root: &Value, schema: &Value, v: &Value, path: &str) -> Result<(), String> {
        let fail = |what: &str| Err(format!("{path}: {what} ({v})"));
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            let name = r.strip_prefix("#/$defs/").expect("a local $ref");
            return validate(root, &root["$defs"][name], v, path);
        }
        if let Some(t) = schema.get("type").and_then(Value::as_str) {
            let ok = match t {
                "object" => v.is_object(),
                "array" => v.is_array(),
                "string" => v.is_string(),
                "integer" => v.is_i64() || v.is_u64(),
                "number" => v.is_number(),
                "boolean" => v.is_boolean(),
                other => panic!("type {other} not handled"),
            };
            if !ok {
                return fail(&format!("not of type {t}"));
            }
        }
        if let Some(e) = schema.get("enum").and_then(Value::as_array)
            && !e.contains(v)
        {
            return fail("not one of the enum");
        }
        if let Some(c) = schema.get("const")
            && c != v
        {
            return fail(&format!("not {c}"));
        }
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
            && v.as_f64().is_some_and(|x| x < min)
        {
            return fail("below the minimum");
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
            && v.as_f64().is_some_and(|x| x > max)
        {
            return fail("above the maximum");
        }
        if let Some(n) = schema.get("minLength").and_then(Value::as_u64)
            && v.as_str().is_some_and(|s| (s.chars().count() as u64) < n)
        {
            return fail("too short");
        }
        if let Some(alts) = schema.get("anyOf").and_then(Value::as_array)
            && !alts.iter().any(|a| validate(root, a, v, path).is_ok())
        {
            return fail("matches no anyOf alternative");
        }
        if let Some(alts) = schema.get("oneOf").and_then(Value::as_array) {
            let n = alts.iter().filter(|a| validate(root, a, v, path).is_ok()).count();
            if n != 1 {
                return fail(&format!("matches {n} oneOf alternatives"));
            }
        }
        if let Some(o) = v.as_object() {
            let props = schema.get("properties").and_then(Value::as_object);
            for r in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
                if !o.contains_key(r.as_str().unwrap()) {
                    return fail(&format!("no {r}"));
                }
            }
            for (k, x) in o {
                match props.and_then(|p| p.get(k)) {
                    Some(s) => validate(root, s, x, &format!("{path}.{k}"))?,
                    None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                        return fail(&format!("unknown field {k}"));
                    }
                    None => {}
                }
            }
        }
        if let Some(a) = v.as_array() {
            if let Some(n) = schema.get("minItems").and_then(Value::as_u64)
                && (a.len() as u64) < n
            {
                return fail("too few items");
            }
            if let Some(items) = schema.get("items") {
                for (i, x) in a.iter().enumerate() {
                    validate(root, items, x, &format!("{path}[{i}]"))?;
                }
            }
        }
        Ok(())
    }

    fn toml_json(text: &str) -> Value {
        toml::from_str(text).expect("TOML")
    }

    const BASE: &str = "name = \"t\"\n[machine]\nhost_memory = \"64MiB\"\n[vm]\nmemory = \"16MiB\"\n";

    /// A scenario with `vm` settings and `extra` after them, parsed by snpsim.
    fn parse(vm: &str, extra: &str) -> Result<snpsim_scenario::Scenario, String> {
        parse_text(&format!("{BASE}{vm}\n{extra}"))
    }

    fn parse_text(text: &str) -> Result<snpsim_scenario::Scenario, String> {
        snpsim_scenario::parse_scenario("t.toml", text).map_err(|e| e.to_string())
    }

    /// The fields the parser accepts in a table, from its error for an unknown one.
    fn accepted(vm: &str, extra: &str) -> Vec<String> {
        accepted_in(&format!("{BASE}{vm}\n{extra}"))
    }

    fn accepted_in(text: &str) -> Vec<String> {
        let err = parse_text(text).expect_err("an unknown field is refused");
        let list = err.split("accepted: ").nth(1).unwrap_or_else(|| panic!("no accepted list: {err}"));
        let mut names: Vec<String> = list.trim().split(", ").map(str::to_string).collect();
        names.sort();
        names
    }

    fn properties(schema: &Value) -> Vec<String> {
        let mut names: Vec<String> = schema["properties"].as_object().unwrap().keys().cloned().collect();
        names.sort();
        names
    }

    const LEGACY: &str = "policy = \"npt-demote\"\nbacking = \"thp\"";
    const GMEM: &str = "policy = \"gmem\"\nbacking = \"gmem-2m\"";

    /// A value of each step field that the parser accepts.
    fn sample(field: &str) -> &'static str {
        match field {
            "gpa" => "\"0x200000\"",
            "size" => "\"4KiB\"",
            "to" => "\"private\"",
            "granularity" => "\"4k\"",
            "cur_page" => "0",
            "vmpl" => "1",
            "perms" => "\"r\"",
            "kind" => "\"read\"",
            "mode" => "\"save-restore\"",
            "via" => "\"vmm\"",
            _ => "true",
        }
    }

    fn vm_for(kind: StepKind) -> &'static str {
        if matches!(kind, StepKind::PunchHole | StepKind::Teardown) { GMEM } else { LEGACY }
    }

    #[test]
    fn every_table_has_exactly_the_fields_the_parser_accepts() {
        let schema = scenario_schema();
        let p = &schema["properties"];
        let bogus = "zz_unknown = 1";
        assert_eq!(properties(&schema), accepted(&format!("{LEGACY}\n[zz]"), ""), "top level");
        let machine = format!(
            "name = \"t\"\n[machine]\nhost_memory = \"64MiB\"\n{bogus}\n[vm]\nmemory = \"16MiB\"\n{LEGACY}"
        );
        assert_eq!(properties(&p["machine"]), accepted_in(&machine));
        assert_eq!(properties(&p["vm"]), accepted(&format!("{LEGACY}\n{bogus}"), ""));
        assert_eq!(properties(&p["guest"]), accepted(LEGACY, &format!("[guest]\n{bogus}")));
        assert_eq!(properties(&p["workload"]), accepted(LEGACY, &format!("[workload]\n{bogus}")));
        for (i, phase) in
            p["workload"]["properties"]["phases"]["items"]["oneOf"].as_array().unwrap().iter().enumerate()
        {
            let kind = phase["properties"]["kind"]["const"].as_str().unwrap();
            let extra = format!("[workload]\nphases = [{{ kind = \"{kind}\", {bogus} }}]");
            assert_eq!(properties(phase), accepted(LEGACY, &extra), "phase {i}: {kind}");
        }
        for (kind, step) in StepKind::all().iter().zip(p["step"]["items"]["oneOf"].as_array().unwrap()) {
            let extra = format!("[[step]]\nop = \"{}\"\n{bogus}", kind.name());
            assert_eq!(properties(step), accepted(vm_for(*kind), &extra), "step {}", kind.name());
        }
        let costs = accepted(LEGACY, &format!("[cost]\n{bogus}"));
        assert_eq!(properties(&p["cost"]), costs);
    }

    #[test]
    fn a_step_needs_exactly_its_required_fields() {
        for &kind in StepKind::all() {
            let required = required_step_fields(kind);
            let step = |fields: &[&str]| {
                let mut s = format!("[[step]]\nop = \"{}\"\n", kind.name());
                for f in fields {
                    let _ = writeln!(s, "{f} = {}", sample(f));
                }
                s
            };
            // A recoalesce step needs its mode when the guest's recoalesce is none (the default).
            let guest = if kind == StepKind::Recoalesce { "[guest]\nrecoalesce = \"naive\"\n" } else { "" };
            let with_all = format!("{guest}{}", step(required));
            assert!(
                parse(vm_for(kind), &with_all).is_ok(),
                "{}: {:?}",
                kind.name(),
                parse(vm_for(kind), &with_all).err()
            );
            for missing in required {
                let fewer: Vec<&str> = required.iter().copied().filter(|f| f != missing).collect();
                let text = format!("{guest}{}", step(&fewer));
                assert!(parse(vm_for(kind), &text).is_err(), "{} without {missing} parsed", kind.name());
            }
        }
    }

    /// Every scenario of examples/ is valid under the schema, and a misspelt field is not.
    #[test]
    fn every_example_scenario_validates() {
        let schema = scenario_schema();
        let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples"));
        let mut files = Vec::new();
        let mut dirs = vec![root.to_path_buf()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.extension().is_some_and(|x| x == "toml") {
                    files.push(p);
                }
            }
        }
        files.sort();
        let mut scenarios = 0;
        for f in &files {
            let text = std::fs::read_to_string(f).unwrap();
            // A sweep file names its base scenario; it is no scenario itself.
            if text.lines().any(|l| l.starts_with("scenario = ")) {
                continue;
            }
            let v = toml_json(&text);
            validate(&schema, &schema, &v, "").unwrap_or_else(|e| panic!("{}: {e}", f.display()));
            scenarios += 1;
        }
        assert!(scenarios >= 40, "only {scenarios} scenarios found");
        let typo = toml_json(&format!("{BASE}{LEGACY}\nkhugepage = true\n"));
        assert!(validate(&schema, &schema, &typo, "").unwrap_err().contains("unknown field khugepage"));
        let bad_policy = toml_json(&format!("{BASE}policy = \"npt-demot\"\nbacking = \"thp\"\n"));
        assert!(validate(&schema, &schema, &bad_policy, "").is_err());
    }
}
