//! Helpers shared by the `snpsim` integration tests: running the binary, reading its output, and
//! scratch directories.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The claim scenarios of the debate, `examples/debate/`.
pub const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/debate");

/// The file `name` of [`EXAMPLES`].
pub fn example(name: &str) -> String {
    format!("{EXAMPLES}/{name}")
}

/// Run the `snpsim` binary built for this test.
pub fn snpsim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_snpsim")).args(args).output().unwrap()
}

/// Output bytes as text; the CLI always writes UTF-8.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// A fresh, empty directory for one test of one test binary.
pub fn temp_dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "snpsim-{}-{}-{test}",
        env!("CARGO_CRATE_NAME"),
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A path as a command-line argument.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The names of the files in `d`, sorted.
pub fn files_in(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A small scenario the sweep and report tests vary.
pub const TINY_BASE: &str = r#"name = "tiny"
seed = 3
[machine]
host_memory = "64MiB"
[vm]
memory = "16MiB"
policy = "npt-demote"
backing = "thp"
[guest]
psc_granularity = "4k"
[[step]]
op = "accept"
gpa = "0x0"
size = "8MiB"
[[step]]
op = "psc"
gpa = "0x200000"
size = "4KiB"
to = "shared"
[[step]]
op = "access"
gpa = "0x400000"
size = "16KiB"
kind = "write"
"#;

/// `f` over every item, two at a time (each item's work is a child process, single-threaded):
/// the results in the order of `items`. The slow tests of this binary are lists of independent
/// commands; run one after another, one of them held a core idle for minutes.
pub fn two_at_a_time<T: Sync, R: Send>(items: &[T], f: impl Fn(usize, &T) -> R + Sync) -> Vec<R> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(2));
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                let (next, f) = (&next, &f);
                scope.spawn(move || {
                    let mut out = Vec::new();
                    loop {
                        let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(item) = items.get(k) else { break };
                        out.push((k, f(k, item)));
                    }
                    out
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    done.sort_by_key(|(k, _)| *k);
    done.into_iter().map(|(_, r)| r).collect()
}
