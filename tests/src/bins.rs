//! The project's binaries, as built by `cargo build --workspace` (the test command builds
//! them before running the labs).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

/// The target directory: `CARGO_TARGET_DIR`, else the workspace's `target/`.
pub fn target_dir() -> PathBuf {
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

/// The newest build of the integration-test binary `name` (`tests/tests/<name>.rs`), as
/// `cargo test -p lab --test <name> --no-run` leaves it in `deps/` (`<name>-<hash>`), for
/// running it elsewhere (inside the lab VM).
pub fn test_binary(name: &str) -> Result<PathBuf> {
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    for p in ["debug", "release"] {
        let Ok(entries) = std::fs::read_dir(target_dir().join(p).join("deps")) else {
            continue;
        };
        for entry in entries.flatten() {
            let file = entry.file_name().to_string_lossy().into_owned();
            let Ok(meta) = entry.metadata() else { continue };
            if !is_test_build(&file, name)
                || !meta.is_file()
                || meta.permissions().mode() & 0o111 == 0
            {
                continue;
            }
            let Ok(modified) = meta.modified() else {
                continue;
            };
            if newest.as_ref().is_none_or(|(t, _)| modified > *t) {
                newest = Some((modified, entry.path()));
            }
        }
    }
    match newest {
        Some((_, path)) => Ok(path),
        None => bail!(
            "test binary {name} is not built under {}: run `cargo test -p lab --test {name} --no-run` first",
            target_dir().display()
        ),
    }
}

/// True for `<name>-<16 hex digits>`, cargo's name for a test build.
fn is_test_build(file: &str, name: &str) -> bool {
    file.strip_prefix(name)
        .and_then(|rest| rest.strip_prefix('-'))
        .is_some_and(|hash| hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()))
}
