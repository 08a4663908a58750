//! Helpers shared by the test modules.

use std::path::{Path, PathBuf};

/// `rel` under the repository's root (`examples/...`, `docs/...`).
pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel)
}
