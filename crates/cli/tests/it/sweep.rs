//! `snpsim sweep` and `snpsim merge` as a user runs them: local and sharded sweeps give the same
//! merged bytes whatever the number of shards or jobs, merge refuses missing and duplicated runs
//! and shards of another sweep, bad sweep files are `FILE:LINE:COLUMN` errors with nothing written,
//! and the example sweep runs.

use crate::common::*;

use std::path::{Path, PathBuf};
use std::process::Command;

const SWEEP: &str = r#"name = "tiny sweep"
scenario = "base.toml"
seeds = [1, 2]
[[axis]]
name = "config"
keys = ["vm.policy", "vm.backing"]
values = [["rfc-host-split", "thp"], ["npt-demote", "thp"], ["npt-demote", "hugetlbfs-2m"], ["gmem", "gmem-2m"]]
[[axis]]
key = "step.2.size"
range = { from = 4096, to = 16384, step = 4096 }
"#;

fn setup(d: &Path, sweep: &str) -> PathBuf {
    std::fs::write(d.join("base.toml"), TINY_BASE).unwrap();
    let f = d.join("s.toml");
    std::fs::write(&f, sweep).unwrap();
    f
}

#[test]
fn sharded_runs_merge_to_the_local_sweep_byte_for_byte() {
    let d = temp_dir("shards");
    let f = setup(&d, SWEEP);
    let local = d.join("local");
    let r = snpsim(&["sweep", s(&f), "--out", s(&local), "--jobs", "1"]);
    assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
    assert_eq!(files_in(&local), ["report.html", "runs.jsonl", "sweep.json"]);
    let runs = std::fs::read_to_string(local.join("runs.jsonl")).unwrap();
    // 4 configurations × 4 sizes (4096, 8192, 12288, 16384) × 2 seeds.
    assert_eq!(runs.lines().count(), 4 * 4 * 2);
    for (i, line) in runs.lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["index"], i);
        assert!(v["params"]["config"].is_array() && v["params"]["step.2.size"].is_number());
        assert!(v["metrics"]["npt_coverage"]["2m"].is_number());
        let series = &v["npt_coverage_series"];
        let len = |k: &str| series[k].as_array().unwrap_or_else(|| panic!("series {k}")).len();
        assert!(len("t_ns") > 0, "every run that created its VM has a point: the end");
        for k in ["4k", "2m", "1g", "unmapped"] {
            assert_eq!(len("t_ns"), len(k), "{k}");
        }
    }
    // N shards into one shared directory, any N, any --jobs: merged bytes equal the local run's.
    for n in [1usize, 3, 5] {
        let shards = d.join(format!("shards-{n}"));
        for i in 0..n {
            let jobs = if i % 2 == 0 { "1" } else { "2" };
            let r = snpsim(&[
                "sweep",
                s(&f),
                "--shard",
                &format!("{i}/{n}"),
                "--jobs",
                jobs,
                "--out",
                s(&shards),
            ]);
            assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
        }
        let merged = d.join(format!("merged-{n}"));
        let m = snpsim(&["merge", s(&shards), "--out", s(&merged)]);
        assert_eq!(m.status.code(), Some(0), "{}", text(&m.stderr));
        for file in ["runs.jsonl", "sweep.json", "report.html"] {
            assert_eq!(
                std::fs::read(merged.join(file)).unwrap(),
                std::fs::read(local.join(file)).unwrap(),
                "{file} with {n} shards"
            );
        }
    }
    // Shards in separate directories merge too; `report` reads a merged directory.
    let (a, b) = (d.join("a"), d.join("b"));
    for (i, dir) in [(0, &a), (1, &b)] {
        let r = snpsim(&["sweep", s(&f), "--shard", &format!("{i}/2"), "--out", s(dir)]);
        assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
        assert_eq!(files_in(dir), [format!("shard-{i}-of-2.jsonl"), "sweep.json".into()]);
    }
    let merged = d.join("merged-ab");
    assert_eq!(snpsim(&["merge", s(&a), s(&b), "--out", s(&merged)]).status.code(), Some(0));
    let page = d.join("page.html");
    let r = snpsim(&["report", s(&merged), "--html", s(&page)]);
    assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
    assert_eq!(std::fs::read(&page).unwrap(), std::fs::read(local.join("report.html")).unwrap());
}

#[test]
fn merge_rejects_missing_duplicate_and_foreign_runs() {
    let d = temp_dir("reject");
    let f = setup(&d, SWEEP);
    let shards = d.join("shards");
    for i in 0..3 {
        let r = snpsim(&["sweep", s(&f), "--shard", &format!("{i}/3"), "--out", s(&shards), "-q"]);
        assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
    }
    // A missing shard: exit 2, the runs and the shard named, nothing written.
    let partial = d.join("partial");
    std::fs::create_dir_all(&partial).unwrap();
    for file in ["sweep.json", "shard-0-of-3.jsonl", "shard-2-of-3.jsonl"] {
        std::fs::copy(shards.join(file), partial.join(file)).unwrap();
    }
    let out = d.join("out");
    let r = snpsim(&["merge", s(&partial), "--out", s(&out)]);
    assert_eq!(r.status.code(), Some(2));
    let err = text(&r.stderr);
    // Shard 1 of 3 holds the runs i with i mod 3 = 1: 1, 4, ..., 31, 11 of the 32.
    assert!(err.contains("11 of 32 runs missing: 1, 4, 7,"), "{err}");
    assert!(err.contains("they belong to shard(s) 1"), "{err}");
    assert!(!out.exists(), "nothing written");
    // One run removed from a shard file.
    let lines = std::fs::read_to_string(shards.join("shard-1-of-3.jsonl")).unwrap();
    let cut: String = lines.lines().skip(1).flat_map(|l| [l, "\n"]).collect();
    std::fs::write(partial.join("shard-1-of-3.jsonl"), cut).unwrap();
    let r = snpsim(&["merge", s(&partial), "--out", s(&out)]);
    assert_eq!(r.status.code(), Some(2));
    assert!(text(&r.stderr).contains("1 of 32 runs missing: 1;"), "{}", text(&r.stderr));
    // The same directory twice: every run twice.
    let r = snpsim(&["merge", s(&shards), s(&shards), "--out", s(&out)]);
    assert_eq!(r.status.code(), Some(2));
    let err = text(&r.stderr);
    assert!(err.contains("32 run(s) present more than once"), "{err}");
    assert!(err.contains("run 0: ") && err.contains("shard-0-of-3.jsonl:1"), "{err}");
    assert!(!out.exists());
    // A shard run twice under another N.
    let extra = d.join("extra");
    std::fs::create_dir_all(&extra).unwrap();
    assert_eq!(snpsim(&["sweep", s(&f), "--shard", "0/2", "--out", s(&extra)]).status.code(), Some(0));
    let r = snpsim(&["merge", s(&shards), s(&extra), "--out", s(&out)]);
    assert_eq!(r.status.code(), Some(2));
    // Shard 0 of 2 is the 16 even-numbered runs, each already in the three shards.
    assert!(text(&r.stderr).contains("16 run(s) present more than once"), "{}", text(&r.stderr));
    // Shards of an edited scenario are another sweep.
    std::fs::write(d.join("base.toml"), TINY_BASE.replace("seed = 3", "seed = 4")).unwrap();
    let other = d.join("other");
    assert_eq!(snpsim(&["sweep", s(&f), "--shard", "1/3", "--out", s(&other)]).status.code(), Some(0));
    let r = snpsim(&["merge", s(&partial), s(&other), "--out", s(&out)]);
    assert_eq!(r.status.code(), Some(2));
    assert!(text(&r.stderr).contains("is not the sweep of"), "{}", text(&r.stderr));
    assert!(!out.exists());
}

#[test]
fn bad_sweeps_are_file_line_column_errors_and_write_nothing() {
    let d = temp_dir("bad");
    let cases: &[(&str, &str)] = &[
        // A value the scenario rejects is reported where the sweep writes it.
        (
            "name = 'x'\nscenario = 'base.toml'\n[[axis]]\nkey = 'vm.policy'\nvalues = ['npt-demote', 'npt-promote']\n",
            "s.toml:5:25: field `vm.policy` = \"npt-promote\" (run 1: vm.policy=npt-promote): unknown value \"npt-promote\"",
        ),
        (
            "name = 'x'\nscenario = 'base.toml'\n[set]\n'vm.memory' = 'lots'\n",
            "s.toml:4:15: field `vm.memory` = \"lots\" (run 0: the base scenario):",
        ),
        (
            "name = 'x'\nscenario = 'base.toml'\n[[axis]]\nkey = 'vm.policy'\nvalues = ['gmem']\n",
            "(set `skip_invalid = true` to leave such combinations out)",
        ),
        ("name = 'x'\nscenario = 'nope.toml'\n", "nope.toml: cannot read"),
        (
            "name = 'x'\nscenario = 'base.toml'\n[[axis]]\nkey = 'vm.policy'\nvalue = ['gmem']\n",
            "s.toml:5:1: field `axis[0].value`: unknown field",
        ),
        (
            "name = 'x'\nscenario = 'base.toml'\nseeds = 'many'\n",
            "s.toml:3:9: field `seeds`: expected an array",
        ),
    ];
    for (sweep, want) in cases {
        let f = setup(&d, sweep);
        let out = d.join("out");
        let r = snpsim(&["sweep", s(&f), "--out", s(&out)]);
        assert_eq!(r.status.code(), Some(2), "{sweep}");
        let err = text(&r.stderr);
        assert!(err.contains(want), "{sweep}\n got: {err}\nwant: {want}");
        assert!(err.starts_with("snpsim: "), "{err}");
        assert!(!out.exists(), "nothing written for {sweep}");
    }
    // skip_invalid leaves the other era's combinations out, with a note.
    let f = setup(
        &d,
        "name = 'x'\nscenario = 'base.toml'\nskip_invalid = true\n[[axis]]\nkey = 'vm.policy'\nvalues = ['gmem', 'npt-demote']\n",
    );
    let out = d.join("skip");
    let r = snpsim(&["sweep", s(&f), "--out", s(&out)]);
    assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
    assert!(text(&r.stderr).contains("note: skipped vm.policy=gmem"), "{}", text(&r.stderr));
    // gmem cannot take the base's thp backing: only the npt-demote run is left.
    assert_eq!(std::fs::read_to_string(out.join("runs.jsonl")).unwrap().lines().count(), 1);
    for bad in ["2/2", "x", "1/0"] {
        let r = snpsim(&["sweep", s(&f), "--shard", bad, "--out", s(&d.join("never"))]);
        assert_eq!(r.status.code(), Some(2), "{bad}");
        assert!(text(&r.stderr).contains("expected I/N"), "{}", text(&r.stderr));
    }
    assert!(!d.join("never").exists());
}

#[test]
fn the_example_sweep_runs_sharded() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/sweeps/conversion-rate.toml");
    let d = temp_dir("example");
    // Every shard checks the whole grid before running its part; run two of the 25 shards. The
    // grid: 5 policy/backing pairs × 2 guest presets × 5 rates (0 to 2000 by 500) × 2 seeds = 100
    // runs, 4 per shard.
    for i in [0, 24] {
        let r = snpsim(&["sweep", example, "--shard", &format!("{i}/25"), "--out", s(&d)]);
        assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
        assert!(text(&r.stdout).contains(&format!("shard {i}/25: 4 of 100 runs")), "{}", text(&r.stdout));
    }
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("sweep.json")).unwrap()).unwrap();
    assert_eq!(m["total"], 100);
    assert_eq!(m["x"], "conversions_per_s");
}

#[test]
fn progress_bars_only_on_a_terminal_and_never_with_quiet() {
    let d = temp_dir("progress");
    let f = setup(&d, SWEEP);
    // Not a terminal (captured): no bar.
    let r = snpsim(&["sweep", s(&f), "--out", s(&d.join("plain"))]);
    assert_eq!(r.status.code(), Some(0));
    assert!(!text(&r.stderr).contains("eta"), "{}", text(&r.stderr));
    // A terminal: `script` (util-linux) gives the command a pseudo-terminal.
    let has_script = Command::new("script").arg("--version").output().is_ok_and(|o| o.status.success());
    if !has_script {
        eprintln!("SKIPPED the terminal half: no `script` (util-linux) to make a pseudo-terminal");
        return;
    }
    let bin = env!("CARGO_BIN_EXE_snpsim");
    let on_tty = |extra: &str, out: &str| -> String {
        let cmd = format!("{bin} sweep {} --out {} --jobs 1 {extra}", s(&f), s(&d.join(out)));
        let o = Command::new("script").args(["-qec", &cmd, "/dev/null"]).output().unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
        text(&o.stdout)
    };
    // SWEEP's 4 × 4 × 2 = 32 runs.
    let shown = on_tty("", "tty");
    assert!(shown.contains("/32 runs"), "a bar on a terminal: {shown:?}");
    let quiet = on_tty("--quiet", "tty-quiet");
    assert!(!quiet.contains("/32 runs"), "no bar with --quiet: {quiet:?}");
    assert!(quiet.contains("32 of 32 runs"), "{quiet:?}");
}

#[test]
fn the_slurm_script_of_docs_scale_out_runs_every_shard() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/scale-out.md")).unwrap();
    let after = &doc[doc.find("`sweep.sbatch`").expect("the Slurm script")..];
    let start = after.find("```bash\n").unwrap() + "```bash\n".len();
    let script = &after[start..start + after[start..].find("```").unwrap()];
    assert!(
        script.contains("#SBATCH --array=0-15")
            && script.contains("SHARDS=${SHARDS:-16}")
            && script.contains("--shard \"${SLURM_ARRAY_TASK_ID}/${SHARDS}\"")
    );
    let d = temp_dir("slurm");
    let f = setup(&d, SWEEP);
    std::fs::write(d.join("sweep.sbatch"), script).unwrap();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_snpsim")).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let results = d.join("results");
    // Slurm runs the script once per array task with these variables set (an array of 4, so
    // SHARDS=4); `task_count` is the size of the array submitted.
    let task = |task: u32, task_count: u32| {
        let o = Command::new("bash")
            .arg(d.join("sweep.sbatch"))
            .env("PATH", &path)
            .env("SLURM_ARRAY_TASK_ID", task.to_string())
            .env("SLURM_ARRAY_TASK_COUNT", task_count.to_string())
            .env("SLURM_CPUS_PER_TASK", "1")
            .env("SHARDS", "4")
            .env("SWEEP", &f)
            .env("OUT", &results)
            .output()
            .unwrap();
        assert!(o.status.success(), "task {task}: {}", text(&o.stderr));
    };
    for t in 0..4 {
        task(t, 4);
    }
    assert_eq!(files_in(&results).len(), 5, "four shards and the manifest");
    // Re-running one task as the doc says (`sbatch --array=2`: an array of one) writes shard 2 of
    // 4 again, the same bytes.
    let shard = results.join("shard-2-of-4.jsonl");
    let before = std::fs::read(&shard).unwrap();
    std::fs::remove_file(&shard).unwrap();
    task(2, 1);
    assert_eq!(std::fs::read(&shard).unwrap(), before);
    assert_eq!(files_in(&results).len(), 5);
    let merged = d.join("merged");
    let m = snpsim(&["merge", s(&results), "--out", s(&merged)]);
    assert_eq!(m.status.code(), Some(0), "{}", text(&m.stderr));
    let local = d.join("local");
    assert_eq!(snpsim(&["sweep", s(&f), "--out", s(&local)]).status.code(), Some(0));
    assert_eq!(
        std::fs::read(merged.join("runs.jsonl")).unwrap(),
        std::fs::read(local.join("runs.jsonl")).unwrap()
    );
}

#[test]
fn adversary_runs_do_not_depend_on_jobs_or_shards() {
    // Every attack against both guests (examples/sweeps/attacks.toml), at 1 and 3 jobs and in
    // 3 shards merged: the same bytes; and a traced comparison of one attack under every legacy
    // policy and backing, at 1 and 4 jobs.
    let d = temp_dir("adversary-jobs");
    let sweep = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/sweeps/attacks.toml");
    let mut outs = Vec::new();
    for jobs in ["1", "3"] {
        let o = d.join(format!("j{jobs}"));
        let r = snpsim(&["sweep", sweep, "--jobs", jobs, "--out", s(&o)]);
        assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
        outs.push((
            std::fs::read(o.join("runs.jsonl")).unwrap(),
            std::fs::read(o.join("report.html")).unwrap(),
        ));
    }
    let shards = d.join("shards");
    for i in 0..3 {
        let r = snpsim(&["sweep", sweep, "--shard", &format!("{i}/3"), "--jobs", "2", "--out", s(&shards)]);
        assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
    }
    let merged = d.join("merged");
    assert_eq!(snpsim(&["merge", s(&shards), "--out", s(&merged)]).status.code(), Some(0));
    outs.push((
        std::fs::read(merged.join("runs.jsonl")).unwrap(),
        std::fs::read(merged.join("report.html")).unwrap(),
    ));
    assert!(outs.windows(2).all(|w| w[0] == w[1]), "adversary sweep output depends on --jobs or shards");
    let attack = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/attacks/04-reform-2m.toml");
    let mut cmps = Vec::new();
    for jobs in ["1", "4"] {
        let o = d.join(format!("cmp{jobs}"));
        let r = snpsim(&[
            "compare",
            attack,
            "--policies",
            "rfc-host-split,npt-demote",
            "--backings",
            "thp,hugetlbfs-2m",
            "--jobs",
            jobs,
            "--out",
            s(&o),
            "--with-trace",
        ]);
        assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
        cmps.push((
            r.stdout,
            std::fs::read(o.join("results.json")).unwrap(),
            std::fs::read(o.join("trace.jsonl")).unwrap(),
        ));
    }
    assert!(cmps[0] == cmps[1], "adversary comparison depends on --jobs");
    let rp = snpsim(&["replay", s(&d.join("cmp4/trace.jsonl"))]);
    assert_eq!(rp.status.code(), Some(0), "{}", text(&rp.stderr));
}

#[test]
fn sweep_csv_has_the_columns_of_run_csv_then_the_sweep_s_own() {
    let d = temp_dir("csv");
    let f = setup(&d, SWEEP);
    // Without --out, the CSV alone: nothing is written.
    let r = snpsim(&["sweep", s(&f), "--csv", "-q"]);
    assert_eq!(r.status.code(), Some(0), "{}", text(&r.stderr));
    assert_eq!(files_in(&d), ["base.toml", "s.toml"]);
    let csv = text(&r.stdout);
    let lines: Vec<&str> = csv.lines().collect();
    // SWEEP: 4 configurations × 4 sizes × 2 seeds = 32 runs, and the header.
    assert_eq!(lines.len(), 33, "{csv}");
    let head: Vec<&str> = lines[0].split(',').collect();
    assert_eq!(head[head.len() - 4..], ["index", "seed", "params.config", "params.step.2.size"]);
    // Run 0 is the first configuration, the first size and the first seed (seeds vary fastest):
    // `run --csv` of the same scenario gives the same values under the same column names.
    let one = snpsim(&[
        "run",
        s(&d.join("base.toml")),
        "--set",
        "vm.policy=rfc-host-split",
        "--set",
        "vm.backing=thp",
        "--set",
        "step.2.size=4096",
        "--seed",
        "1",
        "--csv",
        "--no-expect",
    ]);
    assert_eq!(one.status.code(), Some(0), "{}", text(&one.stderr));
    let one = text(&one.stdout);
    let (one_head, one_row) = one.split_once('\n').unwrap();
    let one_head: Vec<&str> = one_head.split(',').collect();
    assert_eq!(head[..head.len() - 4], one_head[..], "the columns of run --csv, in its order");
    // The same values after the scenario's name (`run` adds its file's name to it), then its
    // index, seed and parameters (an array parameter as JSON, CSV-quoted).
    let (name, values) = one_row.trim_end().split_once(',').unwrap();
    assert_eq!(name, format!("tiny ({})", s(&d.join("base.toml"))));
    let rest =
        lines[1].strip_prefix("tiny,").unwrap().strip_prefix(values).expect("run --csv's values first");
    assert_eq!(rest, r#",0,1,"[""rfc-host-split"",""thp""]",4096"#);
    // With --out as well: the same CSV, and the usual outputs.
    let r2 = snpsim(&["sweep", s(&f), "--csv", "-q", "--out", s(&d.join("o"))]);
    assert_eq!(r2.status.code(), Some(0), "{}", text(&r2.stderr));
    assert_eq!(r2.stdout, r.stdout);
    assert_eq!(files_in(&d.join("o")), ["report.html", "runs.jsonl", "sweep.json"]);
    // Neither --out nor --csv: bad input.
    assert_eq!(snpsim(&["sweep", s(&f)]).status.code(), Some(2));
}
