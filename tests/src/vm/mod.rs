//! Running a command inside a qemu VM with Debian's own kernel, for what this machine's
//! kernel lacks (IPIP: no `ipip` module here). See `tests/vm/README.md`.
//!
//! ```text
//!  host                                   VM (qemu -accel tcg, no network device)
//!  ────                                   ──
//!  /  ──9p read-only "hostroot"──────▶   /host ─┐ overlay (writes kept in RAM)
//!                                        tmpfs ─┴▶ chroot /: proc sys dev, tmpfs /run /tmp
//!  <temp>/xfer ──9p "xfer" (rw)──────▶   /run/calico-rs-vm: env, command, stdout,
//!                                          stderr, started, exit_code
//!  <temp>/console.log ◀── serial ttyS0
//! ```
//!
//! The VM's init (`tests/vm/init`) runs `xfer/command`, writes its exit code and powers off;
//! the host kills qemu at the timeout and on drop. Every lab the command builds lives in the
//! VM's kernel: nothing reaches the host's network namespaces. Modules load on demand from
//! the cached kernel package (`ip link add ... type ipip` loads ipip, tunnel4, ip_tunnel).

mod child;
mod kernel;

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;

pub use kernel::{CACHE_ENV, DEFAULT_CACHE, KERNEL_ENV, Kernel};

use self::child::{Guarded, wait_deadline};

/// Set inside the VM (to the kernel release) for the command and everything it starts.
pub const IN_VM_ENV: &str = "CALICO_RS_VM";

/// Environment variable choosing qemu's accelerator: `tcg` (the default: KVM hangs on the
/// machines this was written on, nested virtualisation) or `kvm` where it works.
pub const ACCEL_ENV: &str = "CALICO_RS_VM_ACCEL";

/// Host variables passed on to the command when set.
const FORWARDED_ENV: &[&str] = &["RUST_BACKTRACE", "RUST_LOG", "CARGO_TARGET_DIR"];

/// What a command run in the VM left behind.
#[derive(Debug, Clone)]
pub struct VmOutput {
    /// The command's standard output.
    pub stdout: String,
    /// The command's standard error.
    pub stderr: String,
    /// The command's exit code (125: the VM could not set up the root to run it in).
    pub exit_code: i32,
    /// The serial console: kernel messages and init's own lines.
    pub console: String,
    /// From starting qemu to the command starting inside.
    pub boot: Duration,
    /// From starting qemu to qemu's exit.
    pub total: Duration,
    /// The kernel release the command ran under.
    pub release: String,
}

impl VmOutput {
    /// True when the command exited 0.
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }
}

/// A VM run: kernel, resources, environment and timeout for one command.
#[derive(Debug, Clone)]
pub struct Vm {
    kernel: Kernel,
    memory_mb: u32,
    cpus: u32,
    timeout: Duration,
    cwd: PathBuf,
    env: Vec<(String, String)>,
}

/// Runs `command` in a VM with the default kernel (see [`Vm::new`]) and returns its
/// output and exit code; the VM is gone when this returns.
pub fn run_in_vm(command: &[&str], timeout: Duration) -> Result<VmOutput> {
    Vm::new()?.timeout(timeout).run(command)
}

impl Vm {
    /// A VM with the kernel from [`Kernel::from_env`] (fetched on first use), 2 CPUs,
    /// 2 GiB, a 5-minute timeout, the current directory and the forwarded variables.
    pub fn new() -> Result<Vm> {
        Ok(Vm::with_kernel(Kernel::from_env()?))
    }

    /// A VM booting `kernel`.
    pub fn with_kernel(kernel: Kernel) -> Vm {
        let env = FORWARDED_ENV
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
            .collect();
        Vm {
            kernel,
            memory_mb: 2048,
            cpus: 2,
            timeout: Duration::from_secs(300),
            cwd: std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
            env,
        }
    }

    /// The kernel this VM boots.
    pub fn kernel(&self) -> &Kernel {
        &self.kernel
    }

    /// Kills the VM after `timeout` (boot included).
    pub fn timeout(mut self, timeout: Duration) -> Vm {
        self.timeout = timeout;
        self
    }

    /// Guest memory (the command's `/tmp`, `/run` and writes all live in it).
    pub fn memory_mb(mut self, mb: u32) -> Vm {
        self.memory_mb = mb;
        self
    }

    /// Number of virtual CPUs.
    pub fn cpus(mut self, cpus: u32) -> Vm {
        self.cpus = cpus;
        self
    }

    /// The directory the command starts in (a host path; writes there stay in the VM).
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Vm {
        self.cwd = dir.into();
        self
    }

    /// Sets an environment variable for the command.
    pub fn env(mut self, key: &str, value: &str) -> Vm {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Boots the VM, runs `command` (program and arguments, paths as on the host) and
    /// powers off. Fails when the VM did not finish in time or died before the command
    /// ended; a command failing inside is a successful run with a non-zero `exit_code`.
    pub fn run(&self, command: &[&str]) -> Result<VmOutput> {
        if let Ok(release) = std::env::var(IN_VM_ENV) {
            bail!("already inside the lab VM ({release}): not starting another one");
        }
        if command.is_empty() {
            bail!("no command to run in the VM");
        }
        let dir = tempfile::Builder::new()
            .prefix("calico-rs-vm-")
            .tempdir()
            .context("creating the VM's temporary directory")?;
        let xfer = dir.path().join("xfer");
        fs::create_dir(&xfer)?;
        fs::write(
            xfer.join("env"),
            format!(
                "VM_MODULES={}\nVM_HOST_PATHS={}\n",
                quote(&self.kernel.modules().to_string_lossy()),
                quote(&self.host_paths())
            ),
        )?;
        fs::write(xfer.join("command"), self.script(command))?;
        let console = dir.path().join("console.log");
        let qemu_log = dir.path().join("qemu.log");

        let start = Instant::now();
        let started_at = SystemTime::now();
        let log = fs::File::create(&qemu_log)?;
        let mut qemu = Guarded::spawn(
            self.qemu_command(&xfer, &console)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log),
        )
        .context("starting qemu-system-x86_64 (run scripts/deps to install qemu-system-x86)")?;
        let finished = wait_deadline(&mut qemu, self.timeout)?;
        let total = start.elapsed();
        self.collect(&dir, started_at, total, finished.status.is_none())
    }

    /// Reads what the run left in `dir`; `timed_out` when qemu had to be killed.
    fn collect(
        &self,
        dir: &TempDir,
        started_at: SystemTime,
        total: Duration,
        timed_out: bool,
    ) -> Result<VmOutput> {
        let xfer = dir.path().join("xfer");
        let read = |p: &Path| fs::read_to_string(p).unwrap_or_default();
        let stdout = read(&xfer.join("stdout"));
        let stderr = read(&xfer.join("stderr"));
        let console = read(&dir.path().join("console.log"));
        let exit_code = read(&xfer.join("exit_code")).trim().parse::<i32>().ok();
        let report = || {
            let mut s = String::new();
            let _ = write!(
                s,
                "--- console (last lines) ---\n{}\n--- qemu ---\n{}\n--- stdout (last lines) ---\n{}\n--- stderr (last lines) ---\n{}",
                tail(&console, 30),
                tail(&read(&dir.path().join("qemu.log")), 10),
                tail(&stdout, 40),
                tail(&stderr, 40)
            );
            s
        };
        if timed_out {
            bail!(
                "the VM did not finish within {:?}; killed\n{}",
                self.timeout,
                report()
            );
        }
        let Some(exit_code) = exit_code else {
            bail!(
                "the VM stopped before the command finished (crash, panic or out of memory?)\n{}",
                report()
            );
        };
        // The VM's writes go through qemu on the host: their mtimes are host times.
        let boot = fs::metadata(xfer.join("started"))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(started_at).ok())
            .unwrap_or_default();
        Ok(VmOutput {
            stdout,
            stderr,
            exit_code,
            console,
            boot,
            total,
            release: self.kernel.release.clone(),
        })
    }

    /// Host directories the command needs even where the VM mounts a fresh tmpfs (`/tmp`,
    /// `/run`): the working directory, the workspace and its target directory, so a
    /// checkout under /tmp (a CI clone) is still there. Colon separated.
    fn host_paths(&self) -> String {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let target = crate::bins::target_dir();
        [self.cwd.clone(), workspace, target]
            .iter()
            .filter_map(|p| p.canonicalize().ok())
            .map(|p| p.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(":")
    }

    /// The shell script init runs in the chroot: environment, directory, then `exec`.
    fn script(&self, command: &[&str]) -> String {
        let mut s = String::from(
            "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root\n",
        );
        let _ = writeln!(s, "export {IN_VM_ENV}={}", quote(&self.kernel.release));
        for (k, v) in &self.env {
            let _ = writeln!(s, "export {k}={}", quote(v));
        }
        let _ = writeln!(s, "cd {} || exit 126", quote(&self.cwd.to_string_lossy()));
        let argv: Vec<String> = command.iter().map(|a| quote(a)).collect();
        let _ = writeln!(s, "exec {}", argv.join(" "));
        s
    }

    /// qemu under TCG (or KVM, see [`ACCEL_ENV`]), no network device, the host root
    /// read-only and `xfer` writable over 9p, the serial console to `console`.
    fn qemu_command(&self, xfer: &Path, console: &Path) -> Command {
        let (accel, cpu) = match std::env::var(ACCEL_ENV).as_deref() {
            Ok("kvm") => ("kvm", "host"),
            _ => ("tcg,thread=multi", "max"),
        };
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-nodefaults", "-no-user-config", "-no-reboot"])
            .args(["-accel", accel, "-cpu", cpu])
            .args(["-smp", &self.cpus.to_string()])
            .args(["-m", &self.memory_mb.to_string()])
            .args(["-display", "none"])
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .arg("-kernel")
            .arg(self.kernel.vmlinuz())
            .arg("-initrd")
            .arg(self.kernel.initrd())
            .args(["-append", "console=ttyS0 quiet panic=-1"])
            .args([
                "-virtfs",
                "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
            ])
            .arg("-virtfs")
            .arg(format!(
                "local,path={},mount_tag=xfer,security_model=none",
                xfer.display()
            ))
            .args(["-device", "virtio-rng-pci"]);
        cmd
    }
}

/// `s` single-quoted for sh.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
