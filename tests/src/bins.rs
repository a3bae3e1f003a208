//! The project's binaries, as built by `cargo build --workspace` (the test command builds
//! them before running the labs).

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// The target directory: `CARGO_TARGET_DIR`, else the workspace's `target/`.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// Path of a workspace binary (`calico-node`, `calicoctl`, `calico`, `calico-ipam`),
/// preferring the profile the tests run under.
pub fn bin(name: &str) -> Result<PathBuf> {
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let dir = target_dir();
    for p in [profile, "debug", "release"] {
        let path = dir.join(p).join(name);
        if path.exists() {
            return Ok(path);
        }
    }
    bail!(
        "{name} is not built under {}: run `cargo build --workspace --bins` first",
        dir.display()
    )
}
