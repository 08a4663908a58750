//! Bad input everywhere (issue 10): one table of malformed scenarios, traces, sweeps, results and
//! arguments. Every row gives the exit code and the fragments the message must hold (file, line,
//! column and field where there is one); after every row the scratch directory holds exactly the
//! files the row wrote (no output, partial or temporary, was left behind), and nothing panicked.

mod common;

use common::*;

use std::path::Path;

/// A row: what is wrong, the files it writes (name, bytes; a name ending in `/` is an empty
/// directory), the arguments (`@` is the row's directory), the exit code, and message fragments.
struct Row {
    what: &'static str,
    files: Vec<(&'static str, Vec<u8>)>,
    args: &'static str,
    code: i32,
    says: &'static [&'static str],
}

/// `TINY_BASE` with `old` replaced by `new` (`old` must occur).
fn base_with(old: &str, new: &str) -> Vec<u8> {
    assert!(TINY_BASE.contains(old), "{old}");
    TINY_BASE.replacen(old, new, 1).into_bytes()
}

const SWEEP: &str = "name = \"s\"\nscenario = \"base.toml\"\n[[axis]]\nkey = \"vm.policy\"\nvalues = [\"npt-demote\", \"gmem\"]\n";

fn sweep_with(old: &str, new: &str) -> Vec<u8> {
    assert!(SWEEP.contains(old), "{old}");
    SWEEP.replacen(old, new, 1).into_bytes()
}

fn base() -> (&'static str, Vec<u8>) {
    ("base.toml", TINY_BASE.as_bytes().to_vec())
}

fn scenario(bytes: Vec<u8>) -> Vec<(&'static str, Vec<u8>)> {
    vec![("s.toml", bytes)]
}

/// A recorded trace of `TINY_BASE`, made once.
fn trace() -> Vec<u8> {
    let d = temp_dir("trace-source");
    std::fs::write(d.join("base.toml"), TINY_BASE).unwrap();
    let t = d.join("t.jsonl");
    let r = snpsim(&["run", s(&d.join("base.toml")), "--trace", s(&t)]);
    assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
    std::fs::read(&t).unwrap()
}

#[allow(clippy::too_many_lines)] // the table itself, one row per bad input
fn rows(trace: &[u8]) -> Vec<Row> {
    let half = &trace[..trace.len() / 2];
    let lines: Vec<&[u8]> = trace.split(|&b| b == b'\n').collect();
    let first_two: Vec<u8> = [lines[0], b"\n", lines[1], b"\n"].concat();
    let mut bad_value = first_two.clone();
    bad_value.extend(b"{\"ev\": 7}\n");
    let huge_host = String::from_utf8(trace.to_vec())
        .unwrap()
        .replacen("\"host_pages\":16384", "\"host_pages\":274877906944", 1)
        .into_bytes();
    assert_ne!(huge_host, trace);
    let mut non_utf8 = trace.to_vec();
    non_utf8.splice(10..10, [0xff, 0xfe]);
    vec![
        // Scenarios.
        Row {
            what: "empty scenario",
            files: scenario(vec![]),
            args: "run @/s.toml --out @/out",
            code: 2,
            says: &["s.toml:1:1", "`name`", "required"],
        },
        Row {
            what: "truncated scenario",
            files: scenario(TINY_BASE.as_bytes()[..TINY_BASE.find("policy").unwrap() + 12].to_vec()),
            args: "run @/s.toml --out @/out",
            code: 2,
            says: &["s.toml:7:", "TOML syntax"],
        },
        Row {
            what: "wrong type",
            files: scenario(base_with("seed = 3", "seed = \"three\"")),
            args: "run @/s.toml --out @/out",
            code: 2,
            says: &["s.toml:2:8", "`seed`", "expected an integer"],
        },
        Row {
            what: "float for a size",
            files: scenario(base_with("memory = \"16MiB\"", "memory = 16.5")),
            args: "run @/s.toml --out @/out",
            code: 2,
            says: &["s.toml:6:10", "`vm.memory`"],
        },
        Row {
            what: "size over guest memory",
            files: scenario(base_with("size = \"8MiB\"", "size = \"32MiB\"")),
            args: "run @/s.toml --out @/out",
            code: 2,
            says: &["s.toml:13:7", "step[0].gpa", "outside guest memory"],
        },
        Row {
            what: "zero memory",
            files: scenario(base_with("memory = \"16MiB\"", "memory = \"0KiB\"")),
            args: "run @/s.toml --out @/out",
            code: 2,
            says: &["s.toml:6:10", "`vm.memory`", "zero"],
        },
        Row {
            what: "unaligned gpa",
            files: scenario(base_with("gpa = \"0x200000\"", "gpa = \"0x200001\"")),
            args: "run @/s.toml --out @/out",
            code: 2,
            says: &["s.toml:17:7", "step[1].gpa"],
        },
        Row {
            what: "unaligned size",
            files: scenario(base_with("size = \"4KiB\"", "size = \"5000\"")),
            args: "run @/s.toml --out @/out",
            code: 2,
            says: &["s.toml:18:", "step[1].size"],
        },
        Row {
            what: "unknown policy",
            files: scenario(base_with("policy = \"npt-demote\"", "policy = \"split-everything\"")),
            args: "run @/s.toml --out @/out",
            code: 2,
            says: &["s.toml:7:10", "`vm.policy`", "unknown value", "npt-demote"],
        },
        Row {
            what: "unknown field",
            files: scenario(base_with("[guest]", "[guest]\ncolour = \"red\"")),
            args: "run @/s.toml --out @/out",
            code: 2,
            says: &["s.toml:10:1", "guest.colour", "unknown field"],
        },
        Row {
            what: "unknown adversary",
            files: scenario(base_with("backing = \"thp\"", "backing = \"thp\"\nadversary = \"steal-keys\"")),
            args: "run @/s.toml --out @/out",
            code: 2,
            says: &["s.toml:9:", "vm.adversary", "remap-validated-gpa"],
        },
        Row {
            what: "huge size",
            files: scenario(base_with("memory = \"16MiB\"", "memory = \"99999999TiB\"")),
            args: "run @/s.toml --out @/out",
            code: 2,
            says: &["s.toml:6:10", "`vm.memory`", "64 bits"],
        },
        Row {
            what: "integer over u64",
            files: scenario(base_with("seed = 3", "seed = 18446744073709551616")),
            args: "run @/s.toml --out @/out",
            code: 2,
            says: &["s.toml:2:8", "field `seed`", "64 bits"],
        },
        Row {
            what: "negative integer",
            files: scenario(base_with("seed = 3", "seed = -1")),
            args: "run @/s.toml --out @/out",
            code: 2,
            says: &["s.toml:2:8", "`seed`"],
        },
        Row {
            what: "huge step budget",
            files: scenario(base_with(
                "backing = \"thp\"",
                "backing = \"thp\"\nstep_budget = 99999999999999999999",
            )),
            args: "run @/s.toml --out @/out",
            code: 2,
            says: &["s.toml:9:15", "field `vm.step_budget`", "64 bits"],
        },
        Row {
            what: "guest larger than host",
            files: scenario(base_with("memory = \"16MiB\"", "memory = \"128MiB\"")),
            args: "run @/s.toml --out @/out",
            code: 2,
            says: &["s.toml:6:10", "`vm.memory`", "larger than host memory"],
        },
        Row {
            what: "over the memory budget",
            files: scenario(base_with("host_memory = \"64MiB\"", "host_memory = \"2TiB\"")),
            args: "run @/s.toml --memory-budget 16MiB --out @/out",
            code: 2,
            says: &["s.toml:4:", "machine.host_memory", "memory budget of 16 MiB"],
        },
        Row {
            what: "unknown expectation",
            files: scenario([TINY_BASE.as_bytes(), b"[expect]\nsplits = 0\n"].concat()),
            args: "run @/s.toml --out @/out",
            code: 2,
            says: &["s.toml:26:1", "expect.splits"],
        },
        // `[expect]` is line 25 of TINY_BASE + the table; `exits = { ` is 10 characters.
        Row {
            what: "unknown exit reason in [expect]",
            files: scenario([TINY_BASE.as_bytes(), b"[expect]\nexits = { npff = 0 }\n"].concat()),
            args: "run @/s.toml --out @/out",
            code: 2,
            says: &[
                "s.toml:26:11",
                "expect.exits.npff",
                "unknown exit reason \"npff\" of `exits`; accepted: npf, vmgexit_psc_msr, vmgexit_psc, hypercall, \
                 memory_fault",
            ],
        },
        Row {
            what: "negative expectation",
            files: scenario([TINY_BASE.as_bytes(), b"[expect]\nrmp_npf = -1\n"].concat()),
            args: "run @/s.toml --out @/out",
            code: 2,
            says: &["s.toml:26:11", "expect.rmp_npf", "-1 is negative"],
        },
        Row {
            what: "expectation that cannot fail",
            files: scenario([TINY_BASE.as_bytes(), b"[expect]\nsigbus = \">=0\"\n"].concat()),
            args: "run @/s.toml --out @/out",
            code: 2,
            says: &["s.toml:26:10", "expect.sigbus", "could never fail"],
        },
        Row {
            what: "--set of an unknown race kind",
            files: vec![base()],
            args: "run @/base.toml --set expect.races.psmash_inuse=0 --out @/out",
            code: 2,
            says: &["--set:1:14", "expect.races.psmash_inuse", "accepted: psmash_fail_inuse"],
        },
        Row {
            what: "non-UTF-8 scenario",
            files: scenario([b"name = \"\xff\"\n".as_slice(), TINY_BASE.as_bytes()].concat()),
            args: "run @/s.toml --out @/out",
            code: 2,
            says: &["s.toml:1:9", "not UTF-8"],
        },
        Row {
            what: "missing scenario",
            files: vec![],
            args: "run @/none.toml --out @/out",
            code: 2,
            says: &["none.toml", "no such file"],
        },
        Row {
            what: "directory without scenarios",
            files: vec![("empty/", vec![])],
            args: "run @/empty --out @/out",
            code: 2,
            says: &["no scenario files"],
        },
        Row {
            what: "one bad file among good ones",
            files: vec![
                ("d/a.toml", TINY_BASE.into()),
                ("d/b.toml", base_with("kind = \"write\"", "kind = \"scribble\"")),
            ],
            args: "run @/d --out @/out",
            code: 2,
            says: &["b.toml:24:8", "step[2].kind"],
        },
        Row {
            what: "compare, bad scenario",
            files: scenario(base_with("seed = 3", "seed = true")),
            args: "compare @/s.toml --policies all --out @/out",
            code: 2,
            says: &["s.toml:2:8", "seed"],
        },
        Row {
            what: "compare, non-UTF-8",
            files: scenario(b"\xc3\x28".to_vec()),
            args: "compare @/s.toml --out @/out",
            code: 2,
            says: &["s.toml", "UTF-8"],
        },
        // Arguments.
        Row {
            what: "--set without =",
            files: vec![base()],
            args: "run @/base.toml --set vm.memory --out @/out",
            code: 2,
            says: &["--set:1:1", "KEY=VALUE"],
        },
        Row {
            what: "--set of a bad value",
            files: vec![base()],
            args: "run @/base.toml --set vm.backing=floppy --out @/out",
            code: 2,
            says: &["--set:1:", "vm.backing", "floppy"],
        },
        Row {
            what: "--set of a huge number",
            files: vec![base()],
            args: "run @/base.toml --set vm.vcpus=99999999999999999999999 --out @/out",
            code: 2,
            says: &["--set:1:10", "field `vm.vcpus`", "64 bits"],
        },
        Row {
            what: "--seed over u64",
            files: vec![base()],
            args: "run @/base.toml --seed 18446744073709551616 --out @/out",
            code: 2,
            says: &["--seed"],
        },
        Row {
            what: "--check unknown",
            files: vec![base()],
            args: "run @/base.toml --check sometimes --out @/out",
            code: 2,
            says: &["--check", "sometimes"],
        },
        Row {
            what: "--memory-budget malformed",
            files: vec![base()],
            args: "run @/base.toml --memory-budget lots --out @/out",
            code: 2,
            says: &["--memory-budget", "unlimited"],
        },
        Row {
            what: "--jobs 0",
            files: vec![base()],
            args: "compare @/base.toml --jobs 0 --out @/out",
            code: 2,
            says: &["--jobs", "at least 1"],
        },
        Row {
            what: "compare, unknown policy",
            files: vec![base()],
            args: "compare @/base.toml --policies npt-demote,nope --out @/out",
            code: 2,
            says: &["--policies", "nope"],
        },
        Row {
            what: "--out is a file",
            files: vec![base(), ("out", b"x".to_vec())],
            args: "run @/base.toml --out @/out",
            code: 2,
            says: &["--out", "not a directory"],
        },
        Row {
            what: "--trace is a directory",
            files: vec![base(), ("t/", vec![])],
            args: "run @/base.toml --trace @/t",
            code: 2,
            says: &["--trace", "is a directory"],
        },
        Row { what: "unknown command", files: vec![], args: "frobnicate", code: 2, says: &["frobnicate"] },
        // Traces.
        Row {
            what: "empty trace",
            files: vec![("t.jsonl", vec![])],
            args: "replay @/t.jsonl",
            code: 2,
            says: &["t.jsonl:1:"],
        },
        Row {
            what: "truncated trace",
            files: vec![("t.jsonl", half.to_vec())],
            args: "replay @/t.jsonl",
            code: 2,
            says: &["t.jsonl:"],
        },
        Row {
            what: "trace without its end",
            files: vec![("t.jsonl", first_two)],
            args: "replay @/t.jsonl",
            code: 2,
            says: &["t.jsonl:"],
        },
        Row {
            what: "trace line of the wrong type",
            files: vec![("t.jsonl", bad_value)],
            args: "replay @/t.jsonl",
            code: 2,
            says: &["t.jsonl:3:"],
        },
        Row {
            what: "non-UTF-8 trace",
            files: vec![("t.jsonl", non_utf8)],
            args: "replay @/t.jsonl",
            code: 2,
            says: &["t.jsonl:1:1", "not UTF-8"],
        },
        Row {
            what: "trace of a machine over the memory budget",
            files: vec![("t.jsonl", huge_host)],
            args: "replay @/t.jsonl",
            code: 2,
            says: &["t.jsonl:1:1", "run 0", "memory budget of 8 GiB"],
        },
        Row {
            what: "trace is a directory",
            files: vec![("t/", vec![])],
            args: "replay @/t",
            code: 2,
            says: &["cannot read the trace"],
        },
        // Sweeps.
        Row {
            what: "empty sweep",
            files: vec![base(), ("w.toml", vec![])],
            args: "sweep @/w.toml --out @/out",
            code: 2,
            says: &["w.toml:1:1"],
        },
        Row {
            what: "truncated sweep",
            files: vec![base(), ("w.toml", SWEEP.as_bytes()[..SWEEP.len() - 12].to_vec())],
            args: "sweep @/w.toml --out @/out",
            code: 2,
            says: &["w.toml:5:"],
        },
        Row {
            what: "sweep value of the wrong type",
            files: vec![base(), ("w.toml", sweep_with("\"gmem\"", "7"))],
            args: "sweep @/w.toml --out @/out",
            code: 2,
            says: &["w.toml:5:", "vm.policy"],
        },
        Row {
            what: "sweep axis of an unknown key",
            files: vec![base(), ("w.toml", sweep_with("vm.policy", "vm.colour"))],
            args: "sweep @/w.toml --out @/out",
            code: 2,
            says: &["w.toml:", "vm.colour"],
        },
        Row {
            what: "sweep setting an unknown exit reason",
            files: vec![
                base(),
                (
                    "w.toml",
                    sweep_with(
                        "vm.policy\"\nvalues = [\"npt-demote\", \"gmem\"]",
                        "vm.policy\"\nvalues = [\"npt-demote\"]\n[set]\n\"expect.exits.npff\" = 0",
                    ),
                ),
            ],
            args: "sweep @/w.toml --out @/out",
            code: 2,
            says: &["w.toml:7:", "expect.exits.npff", "accepted: npf, vmgexit_psc_msr"],
        },
        Row {
            what: "sweep of an unknown policy",
            files: vec![base(), ("w.toml", sweep_with("\"gmem\"", "\"nope\""))],
            args: "sweep @/w.toml --out @/out",
            code: 2,
            says: &["w.toml:5:", "nope"],
        },
        Row {
            what: "sweep seed over u64",
            files: vec![base(), ("w.toml", [SWEEP.as_bytes(), b"seeds = [18446744073709551616]\n"].concat())],
            args: "sweep @/w.toml --out @/out",
            code: 2,
            says: &["w.toml:"],
        },
        Row {
            what: "sweep over the memory budget",
            files: vec![
                base(),
                (
                    "w.toml",
                    sweep_with(
                        "vm.policy\"\nvalues = [\"npt-demote\", \"gmem\"]",
                        "vm.policy\"\nvalues = [\"npt-demote\"]\n[set]\n\"machine.host_memory\" = \"2TiB\"",
                    ),
                ),
            ],
            args: "sweep @/w.toml --memory-budget 16MiB --out @/out",
            code: 2,
            says: &["memory budget"],
        },
        Row {
            what: "non-UTF-8 sweep",
            files: vec![base(), ("w.toml", b"name = \"\xff\"".to_vec())],
            args: "sweep @/w.toml --out @/out",
            code: 2,
            says: &["w.toml:1:1", "UTF-8"],
        },
        Row {
            what: "sweep of a missing scenario",
            files: vec![("w.toml", SWEEP.into())],
            args: "sweep @/w.toml --out @/out",
            code: 2,
            says: &["base.toml", "relative to the sweep file"],
        },
        Row {
            what: "sweep file is a directory",
            files: vec![("w/", vec![])],
            args: "sweep @/w --out @/out",
            code: 2,
            says: &["cannot read"],
        },
        Row {
            what: "--shard out of range",
            files: vec![base(), ("w.toml", SWEEP.into())],
            args: "sweep @/w.toml --shard 3/2 --out @/out",
            code: 2,
            says: &["--shard"],
        },
        Row {
            what: "merge of nothing",
            files: vec![("empty/", vec![])],
            args: "merge @/empty --out @/out",
            code: 2,
            says: &["empty"],
        },
        // Results given to `report`.
        Row {
            what: "results not JSON",
            files: vec![("r.json", b"[{\"metrics\": ".to_vec())],
            args: "report @/r.json --html @/r.html",
            code: 2,
            says: &["r.json:1:"],
        },
        Row {
            what: "results of the wrong shape",
            files: vec![("r.json", b"{\"runs\": 1}".to_vec())],
            args: "report @/r.json --html @/r.html",
            code: 2,
            says: &["r.json", "array"],
        },
        Row {
            what: "results without metrics",
            files: vec![("r.json", b"[{\"policy\": 3}]".to_vec())],
            args: "report @/r.json --html @/r.html",
            code: 2,
            says: &["r.json", "metrics"],
        },
        Row {
            what: "non-UTF-8 results",
            files: vec![("r.json", b"[\xff]".to_vec())],
            args: "report @/r.json --html @/r.html",
            code: 2,
            says: &["r.json:1:1", "UTF-8"],
        },
        Row {
            what: "results directory without results",
            files: vec![("empty/", vec![])],
            args: "report @/empty --html @/r.html",
            code: 2,
            says: &["no results.json"],
        },
        Row {
            what: "--html is a directory",
            files: vec![("r.json", b"[]".to_vec()), ("h/", vec![])],
            args: "report @/r.json --html @/h",
            code: 2,
            says: &["--html", "is a directory"],
        },
    ]
}

/// Every path under `d`, relative, sorted (directories end with `/`).
fn tree(d: &Path) -> Vec<String> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                out.push(format!("{rel}/"));
                walk(root, &p, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(d, d, &mut out);
    out.sort();
    out
}

#[test]
fn every_bad_input_gets_a_clear_error_and_leaves_no_output() {
    let trace = trace();
    let mut failures = Vec::new();
    for (i, row) in rows(&trace).iter().enumerate() {
        let d = temp_dir(&format!("row-{i}"));
        for (name, bytes) in &row.files {
            let p = d.join(name.trim_end_matches('/'));
            std::fs::create_dir_all(if name.ends_with('/') { &p } else { p.parent().unwrap() }).unwrap();
            if !name.ends_with('/') {
                std::fs::write(&p, bytes).unwrap();
            }
        }
        let before = tree(&d);
        let dir = s(&d).to_string();
        let args: Vec<String> = row.args.split(' ').map(|a| a.replace('@', &dir)).collect();
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = snpsim(&refs);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        let mut wrong = Vec::new();
        if out.status.code() != Some(row.code) {
            wrong.push(format!("exit {:?}, expected {}", out.status.code(), row.code));
        }
        if err.contains("panicked") || out.status.code() == Some(101) {
            wrong.push("panicked".to_string());
        }
        for f in row.says {
            if !err.contains(f) {
                wrong.push(format!("message lacks {f:?}"));
            }
        }
        if !out.stdout.is_empty() {
            wrong.push(format!("wrote to stdout: {}", String::from_utf8_lossy(&out.stdout)));
        }
        let after = tree(&d);
        if after != before {
            wrong.push(format!("files changed: {before:?} -> {after:?}"));
        }
        if !wrong.is_empty() {
            failures.push(format!(
                "{} (`snpsim {}`): {}\n    stderr: {}",
                row.what,
                row.args,
                wrong.join("; "),
                err.trim()
            ));
        }
        let _ = std::fs::remove_dir_all(&d);
    }
    assert!(failures.is_empty(), "{} rows failed:\n  {}", failures.len(), failures.join("\n  "));
}
