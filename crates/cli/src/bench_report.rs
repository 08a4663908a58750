//! The document `snpsim bench --json` prints, and the two renderings of it: the terminal table and
//! the Markdown tables of BENCHMARKS.md (`snpsim bench --markdown FILE.json`). Every figure the
//! renderings show is a field of the document; nothing is computed from a model of the machine.

use std::fmt::Write as _;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// The document's format; `--markdown` refuses any other.
pub const SCHEMA: &str = "snpsim-bench/2";

/// Where and when the suite ran, read as it starts.
#[derive(Debug)]
pub struct Stamp {
    /// Seconds since the Unix epoch.
    unix_s: u64,
    /// Processors listed in `/proc/cpuinfo`.
    cpus: u64,
    /// Processors this process may run on (`std::thread::available_parallelism`).
    available: u64,
    /// The first `model name` of `/proc/cpuinfo`.
    model: String,
    /// `MemTotal` of `/proc/meminfo`, in bytes.
    memory_bytes: u64,
    /// The 1-minute load average of `/proc/loadavg`.
    load_1m: f64,
}

impl Stamp {
    /// The machine now (fields the system does not expose are 0 or "unknown").
    pub fn now() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |line: &str| line.split_once(':').map(|(_, v)| v.trim().to_owned());
        let cpus = cpuinfo.lines().filter(|l| l.starts_with("processor")).count() as u64;
        let model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(field)
            .unwrap_or_else(|| "unknown".to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_bytes = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024);
        let load_1m = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
            .unwrap_or(0.0);
        let unix_s =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let available = std::thread::available_parallelism().map_or(0, |n| n.get() as u64);
        Stamp { unix_s, cpus, available, model, memory_bytes, load_1m }
    }
}

/// The suite's document: the build, the machine, the invariant checking, and the benchmarks.
pub fn document(check: &str, stamp: &Stamp, benchmarks: &[Value]) -> Value {
    json!({
        "schema": SCHEMA,
        "build": {
            "commit": env!("SNPSIM_BUILD_COMMIT"),
            "tree": env!("SNPSIM_BUILD_TREE"),
            "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
            "rustc": env!("SNPSIM_BUILD_RUSTC"),
        },
        "machine": {
            "cpus": stamp.cpus, "available_parallelism": stamp.available, "model_name": stamp.model,
            "memory_bytes": stamp.memory_bytes, "load_average_1m_at_start": stamp.load_1m,
        },
        "measured_at_unix_s": stamp.unix_s,
        "check": check,
        "benchmarks": benchmarks,
    })
}

/// `YYYY-MM-DD HH:MM UTC` for seconds since the epoch (H. Hinnant's `civil_from_days`).
fn utc(unix_s: u64) -> String {
    let days = (unix_s / 86_400).cast_signed();
    let secs = unix_s % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", secs / 3600, secs % 3600 / 60)
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn u(v: &Value) -> String {
    v.as_u64().map_or_else(|| "–".to_owned(), group)
}

/// An integer with thin thousands separators (`1,048,576`).
fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate in scientific notation with two significant decimals (`7.70e8/s`), or `–`.
fn rate(v: &Value) -> String {
    let x = f(v);
    if x.is_finite() { format!("{x:.2e}/s") } else { "–".to_owned() }
}

fn mib(v: &Value) -> String {
    format!("{:.0} MiB", f(v) / f64::from(1u32 << 20))
}

/// One line naming the build and the machine.
fn provenance(doc: &Value) -> String {
    let b = &doc["build"];
    let m = &doc["machine"];
    let commit = b["commit"].as_str().unwrap_or("unknown");
    let short = commit.get(..12).unwrap_or(commit);
    let tree = match b["tree"].as_str() {
        Some("clean") => "",
        Some("dirty") => " with uncommitted changes",
        _ => " (tree state unknown)",
    };
    format!(
        "commit {short}{tree}, {} build ({}); {} ({} CPUs, {} available to the suite, {:.0} GiB), \
         load average {:.2} at start; {}; --check {}",
        b["profile"].as_str().unwrap_or("?"),
        b["rustc"].as_str().unwrap_or("?"),
        m["model_name"].as_str().unwrap_or("?"),
        m["cpus"].as_u64().unwrap_or(0),
        m["available_parallelism"].as_u64().unwrap_or(0),
        f(&m["memory_bytes"]) / f64::from(1u32 << 30),
        f(&m["load_average_1m_at_start"]),
        doc["measured_at_unix_s"].as_u64().map_or_else(|| "time unknown".to_owned(), utc),
        doc["check"].as_str().unwrap_or("?"),
    )
}

fn benchmarks(doc: &Value) -> Result<&Vec<Value>> {
    if doc["schema"] != SCHEMA {
        bail!("schema {} is not {SCHEMA} (rerun `snpsim bench --json` with this build)", doc["schema"]);
    }
    doc["benchmarks"].as_array().context("no `benchmarks` array")
}

/// The terminal table of `snpsim bench` (the CLI's one table layout, [`crate::table::aligned`],
/// fitted to the terminal), then each benchmark's notes and failures.
pub fn text(doc: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", provenance(doc));
    let mut rows: Vec<Vec<String>> = vec![
        [
            "benchmark",
            "outcome",
            "wall",
            "cpu",
            "rmp_instructions",
            "instr/s",
            "npf_exits",
            "exits/s",
            "psc_pages_4k",
            "pages/s",
            "peak_rss",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let mut after = String::new();
    for r in doc["benchmarks"].as_array().into_iter().flatten() {
        let name = r["name"].as_str().unwrap_or("?");
        rows.push(vec![
            name.to_string(),
            r["outcome"].as_str().unwrap_or("?").to_string(),
            format!("{:.2} s", f(&r["wall_s"])),
            format!("{:.2} s", f(&r["cpu_s"])),
            u(&r["rmp_instructions_total"]),
            rate(&r["rmp_instructions_per_s"]),
            u(&r["npf_exits"]),
            rate(&r["npf_exits_per_s"]),
            u(&r["psc_pages_4k"]),
            rate(&r["psc_pages_4k_per_s"]),
            mib(&r["peak_rss_bytes"]),
        ]);
        let notes = notes(r);
        let fails: Vec<&str> =
            r["failures"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        if !notes.is_empty() || !fails.is_empty() {
            let _ = writeln!(after, "{name}:");
            for note in notes {
                let _ = writeln!(after, "    {note}");
            }
            for fail in fails {
                let _ = writeln!(after, "  FAILED: {fail}");
            }
        }
    }
    out.push_str(&crate::table::aligned(&rows, 2, crate::term::width()));
    out.push_str(&after);
    out
}

/// The fragmentation benchmark's memory: the resident growth per 4K page, and (in documents that
/// have it) the model's own accounting, `state_bytes()`, beside it and the peak RSS.
fn resident_note(r: &Value, resident: f64) -> String {
    let note = format!("{resident:.1} bytes of resident state per 4K guest page");
    match r["model_state_bytes_per_4k_page"].as_f64() {
        Some(model) => {
            let mib = |b: f64| b / f64::from(1u32 << 20);
            format!(
                "{note}; state_bytes() {model:.2} bytes per page ({:.1} MiB); peak RSS {:.0} MiB",
                mib(f(&r["model_state_bytes"])),
                mib(f(&r["peak_rss_bytes"]))
            )
        }
        None => note,
    }
}

/// What a benchmark measured beyond the counts.
fn notes(r: &Value) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(rate) = r["accept_bytes_per_s"].as_f64() {
        notes.push(format!(
            "simulates acceptance at {:.1} GiB/s of wall time, {:.1}x the hardware's 1.5 GiB/s per vCPU",
            rate / f64::from(1u32 << 30),
            f(&r["vs_hardware"])
        ));
    }
    if let Some(d) = r.get("dense") {
        notes.push(format!(
            "RMP kernel: dense oracle {:.3} s at {} pages, scaled {:.2} s; region RMP {:.3} s: {:.0}x; \
             whole simulation {:.2}x faster than the scaled oracle",
            f(&d["dense_s"]),
            u(&d["pages"]),
            f(&d["dense_scaled_s"]),
            f(&d["region_full_s"]),
            f(&d["kernel_speedup"]),
            f(&d["simulation_speedup"])
        ));
    }
    if let Some(o) = r.get("oracle") {
        notes.push(format!(
            "page by page {:.2} s ({:.2}x); dense oracle on the same {} RMP instructions {:.3} s: \
             simulation {:.2}x the oracle",
            f(&o["per_page_wall_s"]),
            f(&o["range_speedup"]),
            u(&o["instructions"]),
            f(&o["dense_scaled_s"]),
            f(&o["vs_dense"])
        ));
    }
    if let Some(b) = r["state_bytes_per_4k_page"].as_f64() {
        notes.push(resident_note(r, b));
    }
    if let Some(n) = r["runs"].as_u64() {
        notes.push(format!("{n} runs"));
    }
    if let (Some(n), Some(bytes)) = (r["parse_steps"].as_u64(), r["parse_bytes"].as_u64()) {
        notes.push(format!(
            "parsed {n} scripted steps ({:.0} MiB of TOML): {:.0} steps/s",
            bytes as f64 / f64::from(1u32 << 20),
            n as f64 / f(&r["wall_s"])
        ));
    }
    notes
}

/// The Markdown tables of BENCHMARKS.md, generated from a `--json` document.
pub fn markdown(doc: &Value) -> Result<String> {
    let list = benchmarks(doc)?;
    let mut out = String::new();
    let _ = writeln!(out, "<!-- generated by `snpsim bench --markdown`: do not edit by hand -->");
    let _ = writeln!(
        out,
        "**Measured**: {}. One run of each benchmark, each in its own process.\n",
        provenance(doc)
    );
    let _ = writeln!(
        out,
        "| benchmark | outcome | wall | CPU time (all threads) | RMP instructions | RMP instructions/s | #NPF exits | #NPF exits/s \
         | 4K pages named by PSC | PSC pages/s | peak RSS |"
    );
    let _ = writeln!(out, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for r in list {
        let _ = writeln!(
            out,
            "| `{}` | {} | {:.2} s | {:.2} s | {} | {} | {} | {} | {} | {} | {} |",
            r["name"].as_str().unwrap_or("?"),
            r["outcome"].as_str().unwrap_or("?"),
            f(&r["wall_s"]),
            f(&r["cpu_s"]),
            u(&r["rmp_instructions_total"]),
            rate(&r["rmp_instructions_per_s"]),
            u(&r["npf_exits"]),
            rate(&r["npf_exits_per_s"]),
            u(&r["psc_pages_4k"]),
            rate(&r["psc_pages_4k_per_s"]),
            mib(&r["peak_rss_bytes"]),
        );
    }
    let _ = writeln!(out, "\nThe RMP instructions by kind, and the page-state-change requests (VMGEXITs):\n");
    let _ = writeln!(out, "| benchmark | RMPUPDATE | PVALIDATE | RMPADJUST | PSMASH | PSC requests |");
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|");
    for r in list {
        let i = &r["rmp_instructions"];
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} |",
            r["name"].as_str().unwrap_or("?"),
            u(&i["rmpupdate"]),
            u(&i["pvalidate"]),
            u(&i["rmpadjust"]),
            u(&i["psmash"]),
            u(&r["psc_requests"]),
        );
    }
    dense_table(&mut out, list);
    oracle_table(&mut out, list);
    trailer(&mut out, list);
    let _ = writeln!(out, "<!-- end of generated tables -->");
    Ok(out)
}

/// The acceptance benchmarks against the dense oracle and the hardware.
fn dense_table(out: &mut String, list: &[Value]) {
    let dense: Vec<&Value> = list.iter().filter(|r| r.get("dense").is_some()).collect();
    if !dense.is_empty() {
        let _ = writeln!(
            out,
            "\nThe acceptance benchmarks against the dense oracle RMP (16 bytes per 4K page, timed at the \
             number of pages shown and scaled linearly to the guest) and against the hardware:\n"
        );
        let _ = writeln!(
            out,
            "| benchmark | guest | oracle kernel (pages, time) | oracle scaled | region RMP kernel | kernel ratio \
             | whole simulation vs scaled oracle | simulated acceptance rate | vs hardware (1.5 GiB/s per vCPU) |"
        );
        let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|");
        for r in dense {
            let d = &r["dense"];
            let _ = writeln!(
                out,
                "| `{}` | {:.0} GiB | {} pages, {:.3} s | {:.2} s | {:.3} s | {:.0}x | {:.2}x | {:.1} GiB/s | {:.1}x |",
                r["name"].as_str().unwrap_or("?"),
                f(&r["guest_bytes"]) / f64::from(1u32 << 30),
                u(&d["pages"]),
                f(&d["dense_s"]),
                f(&d["dense_scaled_s"]),
                f(&d["region_full_s"]),
                f(&d["kernel_speedup"]),
                f(&d["simulation_speedup"]),
                f(&r["accept_bytes_per_s"]) / f64::from(1u32 << 30),
                f(&r["vs_hardware"]),
            );
        }
    }
}

/// The acceptance benchmarks against the same simulation page by page and against the dense
/// oracle executing the same RMP instruction sequence (issue 20).
fn oracle_table(out: &mut String, list: &[Value]) {
    let runs: Vec<&Value> = list.iter().filter(|r| r.get("oracle").is_some()).collect();
    if runs.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\nThe acceptance benchmarks against themselves page by page (every PVALIDATE and fault-in \
         one at a time, the oracle of the range operations; same metrics required) and against the dense \
         oracle RMP executing the same RMP instruction sequence, recorded from the simulation and \
         replayed one instruction at a time in the same process (every result compared; a host larger \
         than the oracle's frames replayed on those frames and the time scaled by instructions), in CPU \
         time (wall time in the last column):\n"
    );
    let _ = writeln!(
        out,
        "| benchmark | CPU time | page by page | ranges vs page by page | RMP instructions | replayed on the \
         oracle | oracle | oracle scaled | oracle ÷ simulation | same, wall time |"
    );
    let _ = writeln!(out, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for r in runs {
        let o = &r["oracle"];
        let _ = writeln!(
            out,
            "| `{}` | {:.2} s | {:.2} s | {:.2}x | {} | {} | {:.3} s | {:.3} s | {:.2}x | {:.2}x |",
            r["name"].as_str().unwrap_or("?"),
            f(&r["cpu_s"]),
            f(&o["per_page_cpu_s"]),
            f(&o["range_speedup_cpu"]),
            u(&o["instructions"]),
            u(&o["replayed"]),
            f(&o["dense_cpu_s"]),
            f(&o["dense_cpu_s"]) * f(&o["instructions"]) / f(&o["replayed"]).max(1.0),
            f(&o["vs_dense_cpu"]),
            f(&o["vs_dense"]),
        );
    }
}

/// The other benchmarks' own figures, and every failure.
fn trailer(out: &mut String, list: &[Value]) {
    let others: Vec<String> = list
        .iter()
        .filter_map(|r| {
            let name = r["name"].as_str().unwrap_or("?");
            if let Some(b) = r["state_bytes_per_4k_page"].as_f64() {
                Some(format!("- `{name}`: {}.", resident_note(r, b)))
            } else {
                r["runs"].as_u64().map(|n| format!("- `{name}`: {n} runs."))
            }
        })
        .collect();
    if !others.is_empty() {
        let _ = writeln!(out);
        for line in others {
            let _ = writeln!(out, "{line}");
        }
    }
    let failed: Vec<String> = list
        .iter()
        .flat_map(|r| {
            let name = r["name"].as_str().unwrap_or("?").to_owned();
            r["failures"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |x| format!("- `{name}` FAILED: {}", x.as_str().unwrap_or("?")))
        })
        .collect();
    if !failed.is_empty() {
        let _ = writeln!(out);
        for line in failed {
            let _ = writeln!(out, "{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        // 2000-03-01 is day 11,017 since the epoch (30 years, 7 of them leap: 10,957 days, plus
        // January's 31 and leap February's 29).
        assert_eq!(utc(11_017 * 86_400 + 3_600 + 60), "2000-03-01 01:01 UTC");
    }

    #[test]
    fn group_separates_thousands() {
        assert_eq!(group(0), "0");
        assert_eq!(group(999), "999");
        assert_eq!(group(1_000), "1,000");
        assert_eq!(group(268_435_456), "268,435,456");
    }

    #[test]
    fn markdown_refuses_an_old_document() {
        // The first format was a bare array with one `page_ops` figure per benchmark (here
        // accept-1t-2m's: 1,049,600 RMP instructions + 268,697,600 PSC pages).
        let old = json!([{ "name": "accept-1t-2m", "page_ops": 269_747_200 }]);
        assert!(markdown(&old).is_err());
    }
}
