//! The VM's kernel: a Debian `linux-image-*-amd64` package fetched with apt once, unpacked
//! into a cache with an initramfs built for it (all done by `tests/vm/prepare.sh`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::child::{Finished, Guarded, wait_deadline};

/// Environment variable naming the cache directory (default [`DEFAULT_CACHE`]).
pub const CACHE_ENV: &str = "CALICO_RS_VM_CACHE";

/// Environment variable naming the kernel package to boot, e.g.
/// `linux-image-6.12.100+deb12-amd64` (default: the cached one, else what
/// `linux-image-amd64` depends on).
pub const KERNEL_ENV: &str = "CALICO_RS_VM_KERNEL";

/// Where kernels are cached across runs (and across `cargo clean`).
pub const DEFAULT_CACHE: &str = "/var/cache/calico-rs-vm";

/// Bounds a first preparation (download of ~70 MB, unpack, initramfs); apt's own timeouts
/// make an unreachable mirror fail well before.
const PREPARE_TIMEOUT: Duration = Duration::from_secs(900);

/// A prepared kernel: what `prepare.sh` leaves in `<cache>/<package>/`.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// The package it comes from, e.g. `linux-image-6.1.0-56-amd64`.
    pub package: String,
    /// `uname -r` inside the VM, e.g. `6.1.0-56-amd64`.
    pub release: String,
    /// The directory holding `vmlinuz`, `initrd.img` and `modules/`.
    pub dir: PathBuf,
}

impl Kernel {
    /// The kernel named by `CALICO_RS_VM_KERNEL`, else the default one; fetched and built
    /// when the cache lacks it.
    pub fn from_env() -> Result<Kernel> {
        let package = std::env::var(KERNEL_ENV)
            .ok()
            .filter(|p| !p.trim().is_empty());
        Kernel::prepare(package.as_deref())
    }

    /// Prepares `package` (or the default kernel) in the cache and returns it. Runs
    /// `tests/vm/prepare.sh`, which does nothing when the cache is up to date.
    pub fn prepare(package: Option<&str>) -> Result<Kernel> {
        let cache = std::env::var_os(CACHE_ENV)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CACHE));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("vm/prepare.sh");
        let mut cmd = Command::new(&script);
        cmd.arg(&cache).args(package);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = Guarded::spawn(&mut cmd)?;
        let Finished {
            status,
            stdout,
            stderr,
        } = wait_deadline(&mut child, PREPARE_TIMEOUT)?;
        let Some(status) = status else {
            bail!("preparing the VM kernel took over {PREPARE_TIMEOUT:?} (apt stuck?):\n{stderr}");
        };
        if !status.success() {
            bail!(
                "preparing the VM kernel failed ({status}):\n{}",
                stderr.trim()
            );
        }
        let dir = PathBuf::from(
            stdout
                .lines()
                .last()
                .context("prepare.sh printed no directory")?,
        );
        let release = std::fs::read_to_string(dir.join("release"))
            .with_context(|| format!("reading {}/release", dir.display()))?
            .trim()
            .to_string();
        let package = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Kernel {
            package,
            release,
            dir,
        })
    }

    /// The kernel image.
    pub fn vmlinuz(&self) -> PathBuf {
        self.dir.join("vmlinuz")
    }

    /// The initramfs (busybox, `tests/vm/init`, the 9p and overlay modules).
    pub fn initrd(&self) -> PathBuf {
        self.dir.join("initrd.img")
    }

    /// The root of the module tree (`<this>/lib/modules/<release>`), loaded on demand.
    pub fn modules(&self) -> PathBuf {
        self.dir.join("modules")
    }
}
