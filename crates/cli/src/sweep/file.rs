//! Sweep files: a base scenario, fixed overrides, axes of values, seeds; expanded into runs in a
//! fixed order, and sliced into shards.
//!
//! ```toml
//! name = "needless host splits vs shared buffer size"
//! scenario = "base.toml"            # relative to this file
//! seeds = [1, 2]                    # or { from = 1, to = 8 }; default: the scenario's seed
//! x = "step.2.size"                 # optional: the axis the report plots metrics against
//! skip_invalid = false              # true: leave out combinations the scenario rejects
//!
//! [set]                             # optional: overrides for every run
//! "guest.psc_granularity" = "4k"
//!
//! [[axis]]                          # one key, a list of values
//! key = "vm.policy"
//! values = ["rfc-host-split", "npt-demote"]
//!
//! [[axis]]                          # one key, a range (inclusive; integers or floats)
//! key = "workload.phases.1.conversions_per_s"
//! range = { from = 0, to = 1000, step = 250 }
//! label = "conversions per second"
//!
//! [[axis]]                          # several keys varying together
//! name = "backing"
//! keys = ["vm.backing", "vm.shared_backing"]
//! values = [["thp", "thp"], ["hugetlbfs-2m", "thp"]]
//! ```
//!
//! Keys are `--set` keys: every value goes through the scenario parser's own override path, so it
//! is validated exactly like the same value written in the scenario, and an error in it is
//! reported at the value in the sweep file.
//!
//! Expansion is the cartesian product of the axes, the first axis varying slowest and the seeds
//! fastest; run `i` of that order is run `i` on every machine. Shard `I` of `N` is the runs whose
//! index is `I` modulo `N` (neighbouring runs differ in the fastest axes, so round-robin spreads
//! expensive corners of the grid over the shards).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde_json::Value as Json;
use snpsim_scenario::Sources;
use snpsim_scenario::tree::{Node, Val};

use super::values::{Cx, accepted, as_str, get, json, range, toml_text};
pub use super::values::{Loc, MAX_RUNS};

/// Most axes in a sweep.
pub const MAX_AXES: usize = 16;

/// One `KEY=VALUE` override and where its value is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// The `--set` key.
    pub key: String,
    /// The value as TOML text, as `--set` reads it.
    pub value: String,
    /// Where the value is in the sweep file.
    pub loc: Loc,
}

/// One value of an axis: a TOML text per key of the axis, the value as JSON for results, and
/// where it is written.
#[derive(Debug, Clone, PartialEq)]
pub struct AxisValue {
    /// TOML text per key.
    pub texts: Vec<String>,
    /// The value (an array for an axis of several keys).
    pub json: Json,
    /// Where it is written.
    pub loc: Loc,
}

/// An axis of the grid.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    /// `name` (default: the key, or the keys joined with `+`).
    pub name: String,
    /// `label` for charts (default: empty, the name is used).
    pub label: String,
    /// The keys it sets.
    pub keys: Vec<String>,
    /// Its values, in order.
    pub values: Vec<AxisValue>,
}

/// A parsed sweep file.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepDef {
    /// The sweep file, as named on the command line.
    pub file: String,
    /// `name`.
    pub name: String,
    /// `scenario` as written.
    pub scenario: String,
    /// The scenario's path (relative to the sweep file's directory).
    pub scenario_path: PathBuf,
    /// Seeds (empty: the scenario's own seed).
    pub seeds: Vec<u64>,
    /// Where `seeds` is written.
    pub seeds_loc: Loc,
    /// `[set]`.
    pub fixed: Vec<Override>,
    /// `[[axis]]`.
    pub axes: Vec<Axis>,
    /// `x`.
    pub x: Option<String>,
    /// `skip_invalid`.
    pub skip_invalid: bool,
}

/// Parse a sweep file's text; `file` names it in messages (and locates the scenario).
#[allow(clippy::too_many_lines)] // a flat reader, one field after the other, as the format reads
pub fn parse(file: &str, text: &str) -> Result<SweepDef> {
    let cx = Cx { src: Sources::new(file, text, Vec::new()) };
    let root = snpsim_scenario::document::parse_document(&cx.src)?;
    cx.finite(&root)?;
    let Val::Table(top) = &root.val else { bail!("{file}:1:1: expected a table") };
    accepted(&cx, "", top, &["name", "scenario", "seeds", "x", "skip_invalid", "set", "axis"])?;
    let name = match get(top, "name") {
        Some(n) => as_str(&cx, n, "name")?.to_string(),
        None => return Err(cx.err(0, "name", "required field missing in the file")),
    };
    let scenario = match get(top, "scenario") {
        Some(n) => as_str(&cx, n, "scenario")?.to_string(),
        None => {
            return Err(cx.err(
                0,
                "scenario",
                "required field missing in the file (the base scenario's path)",
            ));
        }
    };
    let dir = Path::new(file).parent().unwrap_or(Path::new(""));
    let scenario_path = dir.join(&scenario);

    let mut seeds = Vec::new();
    let mut seeds_loc = Loc::default();
    if let Some(n) = get(top, "seeds") {
        seeds_loc = cx.loc(n.span.start);
        let items = match &n.val {
            Val::Array(a) => a.clone(),
            Val::Table(_) => range(&cx, n, "seeds", Some(1))?,
            other => {
                return Err(cx.err(
                    n.span.start,
                    "seeds",
                    format!("expected an array of integers or {{ from, to }}, found {}", other.type_name()),
                ));
            }
        };
        if items.is_empty() {
            return Err(cx.err(
                n.span.start,
                "seeds",
                "must not be empty (leave it out for the scenario's own seed)",
            ));
        }
        for item in &items {
            match item.val {
                Val::Int(i) if i >= 0 => {
                    if seeds.contains(&i.cast_unsigned()) {
                        return Err(cx.err(item.span.start, "seeds", format!("seed {i} is listed twice")));
                    }
                    seeds.push(i.cast_unsigned());
                }
                Val::Int(i) => return Err(cx.err(item.span.start, "seeds", format!("seed {i} is negative"))),
                ref other => {
                    return Err(cx.err(
                        item.span.start,
                        "seeds",
                        format!("expected an integer, found {}", other.type_name()),
                    ));
                }
            }
        }
    }

    let mut fixed = Vec::new();
    if let Some(n) = get(top, "set") {
        let Val::Table(entries) = &n.val else {
            return Err(cx.err(
                n.span.start,
                "set",
                format!("expected a table of KEY = VALUE, found {}", n.val.type_name()),
            ));
        };
        for e in &entries.entries {
            fixed.push(Override {
                key: e.key.to_string(),
                value: toml_text(&e.node),
                loc: cx.loc(e.node.span.start),
            });
        }
    }

    let mut axes: Vec<Axis> = Vec::new();
    if let Some(n) = get(top, "axis") {
        let Val::Array(items) = &n.val else {
            return Err(cx.err(
                n.span.start,
                "axis",
                format!("expected [[axis]] tables, found {}", n.val.type_name()),
            ));
        };
        for (i, item) in items.iter().enumerate() {
            let path = format!("axis[{i}]");
            let Val::Table(e) = &item.val else {
                return Err(cx.err(
                    item.span.start,
                    &path,
                    format!("expected a table, found {}", item.val.type_name()),
                ));
            };
            accepted(&cx, &path, e, &["key", "keys", "name", "label", "values", "range"])?;
            let keys: Vec<String> = match (get(e, "key"), get(e, "keys")) {
                (Some(k), None) => vec![as_str(&cx, k, &format!("{path}.key"))?.to_string()],
                (None, Some(ks)) => {
                    let Val::Array(a) = &ks.val else {
                        return Err(cx.err(
                            ks.span.start,
                            &format!("{path}.keys"),
                            "expected an array of keys",
                        ));
                    };
                    if a.len() < 2 {
                        return Err(cx.err(
                            ks.span.start,
                            &format!("{path}.keys"),
                            "give at least two keys (or one `key`)",
                        ));
                    }
                    a.iter()
                        .map(|k| as_str(&cx, k, &format!("{path}.keys")).map(str::to_string))
                        .collect::<Result<_>>()?
                }
                (Some(_), Some(ks)) => {
                    return Err(cx.err(
                        ks.span.start,
                        &format!("{path}.keys"),
                        "give `key` or `keys`, not both",
                    ));
                }
                (None, None) => {
                    return Err(cx.err(
                        item.span.start,
                        &format!("{path}.key"),
                        "required field missing (or `keys`)",
                    ));
                }
            };
            for k in &keys {
                if k.trim().is_empty() || k == "seed" {
                    let at =
                        get(e, "key").or_else(|| get(e, "keys")).map_or(item.span.start, |n| n.span.start);
                    return Err(cx.err(
                        at,
                        &format!("{path}.key"),
                        format!("{k:?} cannot be swept here (use `seeds` for seeds)"),
                    ));
                }
            }
            let name = match get(e, "name") {
                Some(n) => as_str(&cx, n, &format!("{path}.name"))?.to_string(),
                None => keys.join("+"),
            };
            if axes.iter().any(|a| a.name == name) {
                let at = get(e, "name").or_else(|| get(e, "key")).map_or(item.span.start, |n| n.span.start);
                return Err(cx.err(
                    at,
                    &path,
                    format!("a second axis named {name:?}; give it another `name`"),
                ));
            }
            let label = match get(e, "label") {
                Some(n) => as_str(&cx, n, &format!("{path}.label"))?.to_string(),
                None => String::new(),
            };
            let raw: Vec<Node> = match (get(e, "values"), get(e, "range")) {
                (Some(v), None) => match &v.val {
                    Val::Array(a) => a.clone(),
                    other => {
                        return Err(cx.err(
                            v.span.start,
                            &format!("{path}.values"),
                            format!("expected an array, found {}", other.type_name()),
                        ));
                    }
                },
                (None, Some(r)) if keys.len() == 1 => range(&cx, r, &format!("{path}.range"), None)?,
                (None, Some(r)) => {
                    return Err(cx.err(
                        r.span.start,
                        &format!("{path}.range"),
                        "a range sets one `key`; give `values` for `keys`",
                    ));
                }
                (Some(_), Some(r)) => {
                    return Err(cx.err(
                        r.span.start,
                        &format!("{path}.range"),
                        "give `values` or `range`, not both",
                    ));
                }
                (None, None) => {
                    return Err(cx.err(
                        item.span.start,
                        &format!("{path}.values"),
                        "required field missing (or `range`)",
                    ));
                }
            };
            if raw.is_empty() {
                let at = get(e, "values").map_or(item.span.start, |n| n.span.start);
                return Err(cx.err(at, &format!("{path}.values"), "must not be empty"));
            }
            let mut values = Vec::new();
            for (j, v) in raw.iter().enumerate() {
                let field = format!("{path}.values[{j}]");
                let texts = if keys.len() == 1 {
                    vec![toml_text(v)]
                } else {
                    match &v.val {
                        Val::Array(parts) if parts.len() == keys.len() => {
                            parts.iter().map(toml_text).collect()
                        }
                        _ => {
                            return Err(cx.err(
                                v.span.start,
                                &field,
                                format!("expected an array of {} values, one per key", keys.len()),
                            ));
                        }
                    }
                };
                let json = json(v);
                if values.iter().any(|x: &AxisValue| x.json == json) {
                    return Err(cx.err(v.span.start, &field, "this value is listed twice"));
                }
                values.push(AxisValue { texts, json, loc: cx.loc(v.span.start) });
            }
            axes.push(Axis { name, label, keys, values });
        }
    }
    if axes.len() > MAX_AXES {
        return Err(cx.err(
            get(top, "axis").map_or(0, |n| n.span.start),
            "axis",
            format!("{} axes; at most {MAX_AXES}", axes.len()),
        ));
    }
    let x = match get(top, "x") {
        Some(n) => {
            let x = as_str(&cx, n, "x")?.to_string();
            if !axes.iter().any(|a| a.name == x) {
                let names: Vec<&str> = axes.iter().map(|a| a.name.as_str()).collect();
                return Err(cx.err(
                    n.span.start,
                    "x",
                    format!("no axis named {x:?}; accepted: {}", names.join(", ")),
                ));
            }
            Some(x)
        }
        None => None,
    };
    let skip_invalid = match get(top, "skip_invalid") {
        Some(Node { val: Val::Bool(b), .. }) => *b,
        Some(n) => {
            return Err(cx.err(
                n.span.start,
                "skip_invalid",
                format!("expected a boolean, found {}", n.val.type_name()),
            ));
        }
        None => false,
    };
    let def = SweepDef {
        file: file.to_string(),
        name,
        scenario,
        scenario_path,
        seeds,
        seeds_loc,
        fixed,
        axes,
        x,
        skip_invalid,
    };
    let total = def.size();
    if total > MAX_RUNS as u128 {
        return Err(cx.err(0, "", format!("the sweep expands to {total} runs; at most {MAX_RUNS}")));
    }
    Ok(def)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"
name = "demo"
scenario = "base.toml"
seeds = { from = 1, to = 3 }
x = "size"

[set]
"guest.psc_granularity" = "4k"

[[axis]]
key = "vm.policy"
values = ["rfc-host-split", "npt-demote"]

[[axis]]
name = "size"
key = "step.1.size"
range = { from = 4096, to = 16384, step = 4096 }
label = "buffer (bytes)"

[[axis]]
name = "backing"
keys = ["vm.backing", "vm.shared_backing"]
values = [["thp", "thp"], ["hugetlbfs-2m", "thp"]]
"#;

    #[test]
    fn parses_and_expands_in_order() {
        let d = parse("dir/s.toml", OK).unwrap();
        assert_eq!(d.scenario_path, Path::new("dir/base.toml"));
        assert_eq!(d.seeds, [1, 2, 3]);
        assert_eq!(d.axes.len(), 3);
        assert_eq!(
            d.axes[1].values.iter().map(|v| v.texts[0].as_str()).collect::<Vec<_>>(),
            ["4096", "8192", "12288", "16384"]
        );
        assert_eq!(d.axes[2].values[1].texts, ["\"hugetlbfs-2m\"", "\"thp\""]);
        assert_eq!(d.size(), 2 * 4 * 2 * 3);
        let pts = d.expand();
        assert_eq!(pts.len(), 48);
        // Seeds fastest, first axis slowest.
        assert_eq!((pts[0].value[..3].to_vec(), pts[0].seed), (vec![0, 0, 0], 0));
        assert_eq!((pts[1].value[..3].to_vec(), pts[1].seed), (vec![0, 0, 0], 1));
        assert_eq!((pts[3].value[..3].to_vec(), pts[3].seed), (vec![0, 0, 1], 0));
        assert_eq!((pts[47].value[..3].to_vec(), pts[47].seed), (vec![1, 3, 1], 2));
        let ov = d.overrides(&pts[47]);
        let kv: Vec<(&str, &str)> = ov.iter().map(|(k, v, _)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            kv,
            [
                ("guest.psc_granularity", "\"4k\""),
                ("vm.policy", "\"npt-demote\""),
                ("step.1.size", "16384"),
                ("vm.backing", "\"hugetlbfs-2m\""),
                ("vm.shared_backing", "\"thp\""),
                ("seed", "3")
            ]
        );
        assert_eq!(
            serde_json::Value::Object(d.params(&pts[47])).to_string(),
            r#"{"backing":["hugetlbfs-2m","thp"],"size":16384,"vm.policy":"npt-demote"}"#
        );
    }

    #[test]
    fn float_ranges_land_on_round_values() {
        let d = parse(
            "s.toml",
            "name='f'\nscenario='b.toml'\n[[axis]]\nkey='a'\nrange={from=0.0, to=0.3, step=0.1}\n",
        )
        .unwrap();
        let v: Vec<&str> = d.axes[0].values.iter().map(|v| v.texts[0].as_str()).collect();
        assert_eq!(v, ["0.0", "0.1", "0.2", "0.3"]);
    }

    #[test]
    fn errors_name_file_line_column_and_field() {
        let cases: &[(&str, &str)] = &[
            (
                "name = 'x'\nscenario = 'b.toml'\nbogus = 1\n",
                "s.toml:3:1: field `bogus`: unknown field; accepted: name, scenario, seeds, x, skip_invalid, set, axis",
            ),
            ("scenario = 'b.toml'\n", "s.toml:1:1: field `name`: required field missing"),
            (
                "name = 'x'\nscenario = 'b.toml'\n[[axis]]\nkey = 'vm.policy'\nvalues = []\n",
                "s.toml:5:10: field `axis[0].values`: must not be empty",
            ),
            (
                "name = 'x'\nscenario = 'b.toml'\n[[axis]]\nkey = 'a'\nrange = { from = 1, to = 0, step = 1 }\n",
                "s.toml:5:26: field `axis[0].range.to`: must not be below `from`",
            ),
            (
                "name = 'x'\nscenario = 'b.toml'\n[[axis]]\nkey = 'a'\nrange = { from = 1, to = 3, step = 0 }\n",
                "s.toml:5:36: field `axis[0].range.step`: must be greater than 0",
            ),
            (
                "name = 'x'\nscenario = 'b.toml'\nseeds = [1, 1]\n",
                "s.toml:3:13: field `seeds`: seed 1 is listed twice",
            ),
            (
                "name = 'x'\nscenario = 'b.toml'\nx = 'nope'\n",
                "s.toml:3:5: field `x`: no axis named \"nope\"",
            ),
            (
                "name = 'x'\nscenario = 'b.toml'\n[[axis]]\nkeys = ['a', 'b']\nvalues = [['1', '2'], '3']\n",
                "s.toml:5:23: field `axis[0].values[1]`: expected an array of 2 values, one per key",
            ),
            // A syntax error names the key it is on, as in scenario files (the same spanned reader).
            ("name = 'x\n", "s.toml:1:10: field `name`: TOML syntax"),
            (
                "name = 'x'\nscenario = 'b.toml'\nseeds = [nan]\n",
                "s.toml:3:10: float NaN is not a finite number",
            ),
            (
                "name = 'x'\nscenario = 'b.toml'\n[[axis]]\nkey = 'seed'\nvalues = [1]\n",
                "s.toml:4:7: field `axis[0].key`: \"seed\" cannot be swept here",
            ),
        ];
        for (text, want) in cases {
            let e = parse("s.toml", text).unwrap_err().to_string();
            assert!(e.starts_with(want), "{text:?}\n got: {e}\nwant: {want}");
        }
    }
}
