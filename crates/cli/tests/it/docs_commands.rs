//! Every `snpsim` command the documentation gives runs as documented: each command of README.md
//! and docs/*.md and each example of every `--help` text is run, with bash, against the built
//! binary in a scratch directory, and must exit 0 unless listed in [`EXIT`].
//!
//! What counts as a command:
//! - in README.md and docs/*.md, every line of a shell code block (` ```sh `, ` ```bash `) that
//!   runs `snpsim` (or `cargo run --release`, which is `snpsim`: the test runs the binary it
//!   built), backslash continuations joined. Each block runs in a fresh scratch directory, its
//!   commands in order (a later one reads what an earlier one wrote). Blocks of other languages
//!   (`text` shows output, `toml`/`yaml`/`rust` are files) hold no commands. A shell block that is a
//!   script (`#!` first) is in [`SCRIPTS`], and a shell line that mentions `snpsim` without running
//!   it first is in [`NOT_RUN`]: the test fails on any other;
//! - every inline code span of that prose that starts with `snpsim ` or `cargo run --release`, in
//!   its own scratch directory. A span with a placeholder (an upper-case word such as `FILE`,
//!   `DIR...`, `…`, `[PATHS]`) or naming only a command (`snpsim replay`) is a synopsis, not a
//!   command: the test checks that its command exists (`snpsim COMMAND --help` exits 0);
//! - every line under `Examples:` in `snpsim --help` and each command's `--help`, a help text's
//!   examples in order in one scratch directory; the description after two spaces is not part of
//!   the command.
//!
//! The scratch directory holds what the documentation assumes: `examples/` (a copy of the
//! repository's, less [`SLOW_EXAMPLES`] and with the reduction of [`SWEEP_REDUCTION`]), `s.toml`
//! (the scenario the docs call `s.toml`: `examples/debate/05-npt-demote-thp.toml`), `bench/`, and a
//! home directory with the shell completion directories the examples write to. Commands that take
//! minutes run in the reduced form of [`REDUCED`]; nothing is skipped silently.

use crate::common::*;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// Commands documented to fail, with the exit code the documentation gives.
const EXIT: &[(&str, i32, &str)] = &[
    ("snpsim rnu", 2, "docs/user-guide.md: a typo of a command is bad input that names `run`"),
    (
        "snpsim check --mutant no-zap-after-psmash --depth 3 --vcpus 1 --out cex",
        1,
        "a planted bug, caught: `check` exits 1 on a violation",
    ),
];

/// Commands run in a reduced form: as documented, as run, and why.
const REDUCED: &[(&str, &str, &str)] = &[
    (
        "snpsim check",
        "snpsim check --depth 3 --race-depth 4",
        "the full model check takes minutes; its race model at 6 ticks over every policy (12 s of CPU in the \
         test profile, 3 s at 4) is what the next form explores",
    ),
    (
        "snpsim check --vcpus 2 --race-depth 16",
        "snpsim check --vcpus 2 --race-depth 6",
        "16 ticks over every policy takes minutes; 6 (8 s of CPU in the test profile) is the shortest depth with a \
         PSMASH race (check.rs), so every policy's race model is explored through one",
    ),
    (
        "snpsim check --vcpus 2 --race-depth 16 --policy gmem",
        "snpsim check --vcpus 2 --race-depth 8 --policy gmem",
        "16 ticks takes minutes",
    ),
    (
        "snpsim check --policy npt-demote --depth 10",
        "snpsim check --policy npt-demote --depth 4 --vcpus 1",
        "depth 10 over every backing takes minutes",
    ),
    (
        "snpsim check --policy npt-demote --backing hugetlbfs-1g --depth 10",
        "snpsim check --policy npt-demote --backing hugetlbfs-1g --depth 4",
        "depth 10 takes minutes",
    ),
    (
        "snpsim check --policy npt-demote --vcpus 2",
        "snpsim check --policy npt-demote --vcpus 2 --race-depth 6",
        "the race model at 12 ticks takes 1 min 43 s and 3 GB (docs/model-checking.md); 8 ticks 7 s of CPU in the \
         test profile, 6 ticks 2 s; crates/cli/tests/it/check.rs explores npt-demote on hugetlbfs-2m 8 deep",
    ),
    (
        "snpsim check --policy rfc-v4 --vcpus 1",
        "snpsim check --policy rfc-v4 --vcpus 1 --depth 4",
        "depth 8 takes minutes",
    ),
    (
        "snpsim check --mutant no-zap-after-psmash --depth 3 --out cex",
        "snpsim check --mutant no-zap-after-psmash --depth 3 --vcpus 1 --out cex",
        "the race model is not needed to catch it and takes 3 minutes; check.rs runs every mutant",
    ),
    ("snpsim bench", "snpsim bench --only accept-1t-2m", "the whole suite takes minutes"),
    (
        "snpsim bench --json > bench/results.json && snpsim bench --markdown bench/results.json",
        "snpsim bench --only parse-1m --json > bench/results.json && snpsim bench --markdown bench/results.json",
        "the whole suite takes minutes; accept-1t-2m runs as the two commands before it document (8 s of CPU each in \
         the test profile, parse-1m 4 s), and commands.rs checks the tables --markdown prints for every benchmark \
         of the committed bench/results.json",
    ),
    (
        "snpsim run examples --set guest.psc_granularity=2m --check full",
        "snpsim run examples/debate --set guest.psc_granularity=2m --check full",
        "full checking of the calibration scenarios (4 GiB guests) takes minutes",
    ),
    (
        "snpsim completions zsh > \"${fpath[1]}/_snpsim\"",
        "snpsim completions zsh > _snpsim",
        "`${fpath[1]}` is zsh's; the test runs bash",
    ),
    (
        "snpsim man | man -l -",
        "snpsim man | cat > /dev/null",
        "`man` need not be installed where the test runs",
    ),
    (
        "snpsim sweep examples/sweeps/conversion-rate.toml --shard $JOB_COMPLETION_INDEX/8 --out /results",
        "snpsim sweep examples/sweeps/conversion-rate.toml --shard $JOB_COMPLETION_INDEX/8 --out results",
        "`/results` is the Kubernetes volume: outside the scratch directory",
    ),
];

/// Scenarios of `examples/` left out of the scratch copy: (file, why).
const SLOW_EXAMPLES: &[(&str, &str)] = &[
    (
        "calibration/06-boot-64gib-eager.toml",
        "a 64 GiB eager boot, 24 s in release; crates/engine/tests/it/calibration.rs runs it",
    ),
    (
        "calibration/10-held-out-ohcl-64gib-accept-4k.toml",
        "a 64 GiB 4K acceptance, 20 s in release; crates/engine/tests/it/calibration.rs runs it",
    ),
];

/// The scratch copy of `examples/sweeps/conversion-rate.toml` has one seed and two rates instead
/// of two seeds and five: 20 runs instead of 100 (a minute in release, run five times by the docs).
/// crates/cli/tests/it/sweep.rs runs shards of the full sweep.
const SWEEP_REDUCTION: &[(&str, &str)] = &[
    ("seeds = [1, 2]", "seeds = [1]"),
    ("range = { from = 0, to = 2000, step = 500 }", "range = { from = 0, to = 500, step = 500 }"),
];

/// Shell scripts in the docs, run by another test: (doc, why).
const SCRIPTS: &[(&str, &str)] = &[(
    "docs/scale-out.md",
    "the Slurm array script: crates/cli/tests/it/sweep.rs (the_slurm_script_of_docs_scale_out_runs_every_shard) runs \
     it task by task and merges",
)];

/// Shell lines that mention `snpsim` without running it first: (doc, the line's start, why).
const NOT_RUN: &[(&str, &str, &str)] = &[(
    "docs/scale-out.md",
    "sbatch --dependency",
    "a Slurm submission; the merge it wraps is the Locally block's, run here",
)];

/// One command to run, and where it was found.
#[derive(Debug, Clone)]
struct Cmd {
    text: String,
    from: String,
}

/// What a source holds: groups of commands (each run in order in one scratch directory), and
/// synopses (whose command must exist).
#[derive(Debug, Default)]
struct Found {
    groups: Vec<Vec<Cmd>>,
    synopses: Vec<Cmd>,
}

/// `cargo run --release -- X` is `snpsim X`, and `cargo run --release` alone `snpsim`.
fn as_snpsim(line: &str) -> String {
    line.replace("cargo run --release -- ", "snpsim ").replace("cargo run --release", "snpsim")
}

/// A line without its trailing ` # comment` (a `#` after white space, outside quotes).
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    let bytes = line.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        match (quote, b) {
            (None, b'"' | b'\'') => quote = Some(b),
            (Some(q), _) if b == q => quote = None,
            (None, b'#') if i > 0 && bytes[i - 1].is_ascii_whitespace() => return line[..i].trim_end(),
            _ => {}
        }
    }
    line.trim_end()
}

/// Whether a span is a synopsis: it has a placeholder or names only a command.
fn is_synopsis(span: &str) -> bool {
    if span.contains('…') || span.contains("...") || span.contains('[') {
        return true;
    }
    // `$SWEEP` is a variable the environment sets, not a placeholder.
    let words = span.split(|c: char| c.is_whitespace() || "/=,".contains(c)).filter(|w| !w.contains('$'));
    let placeholder = words.into_iter().any(|w| {
        let w = w.trim_matches(|c: char| !c.is_alphanumeric());
        w.chars().filter(char::is_ascii_uppercase).count() >= 2
            && w.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' || c == '.')
    });
    // `snpsim rnu` is a command (an error example); `snpsim replay` in a sentence names one.
    let bare = span.split_whitespace().count() == 2
        && !span.contains(" -")
        && !EXIT.iter().any(|(c, _, _)| *c == span);
    placeholder || bare
}

/// The commands of one Markdown file.
fn markdown(name: &str, text: &str) -> Found {
    let mut found = Found::default();
    let mut prose = String::new();
    let mut lines = text.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let Some(lang) = line.strip_prefix("```") else {
            prose.push_str(line);
            prose.push('\n');
            continue;
        };
        let mut block: Vec<(usize, String)> = Vec::new();
        let mut pending = String::new();
        for (m, l) in lines.by_ref() {
            if l.starts_with("```") {
                break;
            }
            // Backslash continuations make one line.
            if let Some(part) = l.strip_suffix('\\') {
                pending.push_str(part);
            } else {
                pending.push_str(l);
                block.push((m + 1, std::mem::take(&mut pending)));
            }
        }
        if !matches!(lang.trim(), "sh" | "bash") {
            continue;
        }
        if block.first().is_some_and(|(_, l)| l.starts_with("#!")) {
            assert!(
                SCRIPTS.iter().any(|(doc, _)| *doc == name),
                "{name}:{}: a shell script block that no test runs: list it in SCRIPTS",
                n + 1
            );
            continue;
        }
        let mut group = Vec::new();
        for (m, l) in block {
            let l = as_snpsim(strip_comment(&l));
            let l = l.trim();
            if l.starts_with("snpsim") || l.starts_with("for ") && l.contains("snpsim ") {
                group.push(Cmd { text: l.to_string(), from: format!("{name}:{m}") });
            } else if l.contains("snpsim ") {
                assert!(
                    NOT_RUN.iter().any(|(doc, start, _)| *doc == name && l.starts_with(start)),
                    "{name}:{m}: a shell line that mentions snpsim but does not run it first: list it in NOT_RUN: {l}"
                );
            }
        }
        if !group.is_empty() {
            found.groups.push(group);
        }
    }
    // Inline code: the odd pieces between backticks (a span may cross a line break).
    for (i, piece) in prose.split('`').enumerate() {
        let span = piece.split_whitespace().collect::<Vec<_>>().join(" ");
        if i % 2 == 0 || !(span.starts_with("snpsim ") || span.starts_with("cargo run --release")) {
            continue;
        }
        let span = as_snpsim(&span);
        let cmd = Cmd { text: span.clone(), from: format!("{name} (inline)") };
        if is_synopsis(&span) {
            found.synopses.push(cmd);
        } else {
            found.groups.push(vec![cmd]);
        }
    }
    found
}

/// The examples of one `--help` text.
fn help_examples(name: &str, text: &str) -> Vec<Cmd> {
    let mut cmds = Vec::new();
    let mut in_examples = false;
    for line in text.lines() {
        if line == "Examples:" || line == "Example:" {
            in_examples = true;
            continue;
        }
        if in_examples {
            let Some(cmd) =
                line.strip_prefix("  ").filter(|c| c.starts_with("snpsim") || c.starts_with("for "))
            else {
                in_examples = false;
                continue;
            };
            // A description follows two spaces.
            let cmd = cmd.split("  ").next().unwrap_or_default().trim_end();
            cmds.push(Cmd { text: cmd.to_string(), from: name.to_string() });
        }
    }
    cmds
}

fn copy_tree(from: &Path, to: &Path, rel: &str) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        let rel = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(&name), &rel);
        } else if !SLOW_EXAMPLES.iter().any(|(f, _)| *f == rel) {
            let mut text = std::fs::read_to_string(e.path()).unwrap();
            if rel == "sweeps/conversion-rate.toml" {
                for (a, b) in SWEEP_REDUCTION {
                    assert!(text.contains(a), "SWEEP_REDUCTION: {a:?} is no longer in {rel}");
                    text = text.replace(a, b);
                }
            }
            std::fs::write(to.join(&name), text).unwrap();
        }
    }
}

/// A fresh scratch directory with what the documentation assumes.
fn scratch(base: &Path, n: usize) -> PathBuf {
    let d = base.join(format!("g{n}"));
    copy_tree(&Path::new(ROOT).join("examples"), &d.join("examples"), "");
    std::fs::copy(Path::new(ROOT).join("examples/debate/05-npt-demote-thp.toml"), d.join("s.toml")).unwrap();
    std::fs::create_dir_all(d.join("bench")).unwrap();
    for dir in [".local/share/bash-completion/completions", ".config/fish/completions"] {
        std::fs::create_dir_all(d.join("home").join(dir)).unwrap();
    }
    d
}

/// A command and the commands that follow it in some group: every group that begins with the
/// same commands shares one node per command.
#[derive(Debug)]
struct Node {
    cmd: Cmd,
    next: Vec<Node>,
}

/// The groups as a tree of their commands, in order: groups that begin alike share that beginning,
/// so a command runs once for all groups that reach it by the same commands. Each group starts in
/// an identical fresh directory and snpsim is deterministic, so one run shows what all would (the
/// default run is documented in five places, the sweep of the user guide and of the scale-out
/// guide begins with the same two commands, and each takes seconds in the test profile).
fn tree(groups: &[Vec<Cmd>]) -> Vec<Node> {
    let mut roots: Vec<Node> = Vec::new();
    for group in groups {
        let mut level = &mut roots;
        for cmd in group {
            let i = if let Some(i) = level.iter().position(|n| n.cmd.text == cmd.text) {
                let from = &mut level[i].cmd.from;
                *from = format!("{from}, {}", cmd.from);
                i
            } else {
                level.push(Node { cmd: cmd.clone(), next: Vec::new() });
                level.len() - 1
            };
            level = &mut level[i].next;
        }
    }
    roots
}

/// A copy of directory `from` at `to`, byte for byte.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// What one run of the commands needs besides the command: the `PATH` that finds the built
/// binary, and fresh names for the copies of a directory.
struct Runner {
    path: String,
    copies: std::sync::atomic::AtomicUsize,
}

impl Runner {
    /// Run `node`'s command in `d`, then each way on from it: the last in `d` itself, every other
    /// in a copy of `d` made before any of them runs. Appends the failures, in the tree's order.
    fn run(&self, node: &Node, d: &Path, failures: &mut Vec<String>) {
        let cmd = &node.cmd;
        let (run, note) = match REDUCED.iter().find(|(doc, _, _)| *doc == cmd.text) {
            Some((_, reduced, _)) => (*reduced, " (reduced)"),
            None => (cmd.text.as_str(), ""),
        };
        let want = EXIT.iter().find(|(c, _, _)| *c == run).map_or(0, |(_, code, _)| *code);
        let start = Instant::now();
        let o = Command::new("bash")
            .args(["-o", "pipefail", "-c", run])
            .current_dir(d)
            .env("PATH", &self.path)
            .env("HOME", d.join("home"))
            .env("SWEEP", "examples/sweeps/conversion-rate.toml")
            .env("SLURM_ARRAY_TASK_ID", "0")
            .env("JOB_COMPLETION_INDEX", "0")
            .output()
            .unwrap();
        eprintln!(
            "{:>7.1} s  exit {:?}  {run}{note}  [{}]",
            start.elapsed().as_secs_f64(),
            o.status.code(),
            cmd.from
        );
        if o.status.code() != Some(want) {
            let err = text(&o.stderr);
            let tail: Vec<&str> = err.lines().rev().take(8).collect();
            failures.push(format!(
                "{}: `{run}` exited {:?}, not {want}:\n    {}",
                cmd.from,
                o.status.code(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n    ")
            ));
        }
        let Some((last, others)) = node.next.split_last() else { return };
        let copies: Vec<PathBuf> = others
            .iter()
            .map(|_| {
                let n = self.copies.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let copy = d.with_file_name(format!("copy{n}"));
                copy_dir(d, &copy);
                copy
            })
            .collect();
        for (next, copy) in others.iter().zip(&copies) {
            self.run(next, copy, failures);
            let _ = std::fs::remove_dir_all(copy);
        }
        self.run(last, d, failures);
    }
}

/// Run every group, each in its own scratch directory, two first commands at a time (the groups
/// that begin alike share their beginning: [`tree`]); returns the failures, in the order of the
/// groups.
fn run_groups(test: &str, groups: &[Vec<Cmd>]) -> Vec<String> {
    let roots = tree(groups);
    let base = temp_dir(test);
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_snpsim")).parent().unwrap().to_path_buf();
    let runner = Runner {
        path: format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default()),
        copies: std::sync::atomic::AtomicUsize::new(0),
    };
    let failures = two_at_a_time(&roots, |n, root| {
        let d = scratch(&base, n);
        let mut failures = Vec::new();
        runner.run(root, &d, &mut failures);
        let _ = std::fs::remove_dir_all(&d);
        failures
    });
    let _ = std::fs::remove_dir_all(&base);
    failures.into_iter().flatten().collect()
}

/// The commands `snpsim --help` lists (`help` aside).
fn subcommands() -> Vec<String> {
    text(&snpsim(&["--help"]).stdout)
        .lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|s| *s != "help")
        .map(String::from)
        .collect()
}

/// A synopsis names a command that exists (unless its command is itself a placeholder,
/// `snpsim COMMAND`), and that command's help prints (`snpsim COMMAND --help` exits 0).
fn check_synopses(synopses: &[Cmd]) -> Vec<String> {
    let subs = subcommands();
    let mut failures = Vec::new();
    for s in synopses {
        let sub = s.text.split_whitespace().nth(1).unwrap_or_default();
        eprintln!("synopsis  {}  [{}]", s.text, s.from);
        if sub.chars().all(|c| c.is_ascii_uppercase() || c == '.' || c == '…') {
            continue;
        }
        if !subs.iter().any(|c| c == sub) || !snpsim(&[sub, "--help"]).status.success() {
            failures.push(format!("{}: synopsis `{}`: no command `{sub}`", s.from, s.text));
        }
    }
    failures
}

fn report(failures: &[String]) {
    assert!(failures.is_empty(), "{} documented command(s) failed:\n{}", failures.len(), failures.join("\n"));
}

/// The groups and synopses of README.md and docs/*.md.
fn docs_commands() -> Found {
    let mut files = vec![PathBuf::from(ROOT).join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let mut all = Found::default();
    for f in &files {
        let name = f.strip_prefix(ROOT).unwrap_or(f).display().to_string();
        let name = name.trim_start_matches('/').to_string();
        let found = markdown(&name, &std::fs::read_to_string(f).unwrap());
        all.groups.extend(found.groups);
        all.synopses.extend(found.synopses);
    }
    let commands: usize = all.groups.iter().map(Vec::len).sum();
    // The README's and docs' shell blocks and inline commands, at the time of writing: a sudden
    // drop means the extraction broke.
    assert!(commands >= 40, "only {commands} commands found in README.md and docs/");
    all
}

/// One group per `--help` text: its examples, in order.
fn help_groups() -> Vec<Vec<Cmd>> {
    let top = text(&snpsim(&["--help"]).stdout);
    let subs = subcommands();
    assert!(subs.len() >= 10, "{subs:?}");
    let mut groups = vec![help_examples("snpsim --help", &top)];
    for sub in &subs {
        let o = snpsim(&[sub, "--help"]);
        assert!(o.status.success());
        groups.push(help_examples(&format!("snpsim {sub} --help"), &text(&o.stdout)));
    }
    for (g, name) in groups.iter().zip(std::iter::once("snpsim").chain(subs.iter().map(String::as_str))) {
        assert!(!g.is_empty(), "`{name} --help` has no examples");
    }
    groups
}

/// README.md's and docs/*.md's commands and every `--help` text's examples, in one run so that a
/// group the two give alike runs once (`snpsim bench --help` and the user guide give the same
/// three benchmark commands).
#[test]
fn every_documented_command_and_help_example_runs_as_documented() {
    let docs = docs_commands();
    let mut groups = docs.groups;
    groups.extend(help_groups());
    let commands: usize = groups.iter().map(Vec::len).sum();
    let mut failures = run_groups("documented", &groups);
    failures.extend(check_synopses(&docs.synopses));
    eprintln!("{commands} commands run, {} synopses checked", docs.synopses.len());
    report(&failures);
}

/// Every reduction and expected failure is of a command the documentation still gives: each
/// listed command is exactly one that the extraction above finds (a doc's shell line or inline
/// span, or a `--help` example), so an entry whose command was edited or removed is found stale.
#[test]
fn every_listed_command_is_still_documented() {
    let docs = docs_commands();
    let found: Vec<String> = (docs.groups.into_iter().flatten().chain(docs.synopses))
        .chain(help_groups().into_iter().flatten())
        .map(|c| c.text)
        .collect();
    let said = |c: &str| found.iter().any(|f| f == c);
    for (doc, _, why) in REDUCED {
        assert!(said(doc), "REDUCED lists `{doc}` ({why}), which no longer appears");
    }
    for (cmd, _, why) in EXIT {
        let documented = said(cmd) || REDUCED.iter().any(|(d, r, _)| r == cmd && said(d));
        assert!(documented, "EXIT lists `{cmd}` ({why}), which no longer appears");
    }
    // The check works: an entry no document gives is caught.
    assert!(!said("snpsim check --depth 99"));
}
