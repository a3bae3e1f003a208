//! Runs a command, or an e2e test binary, inside the lab VM with Debian's kernel and exits
//! with its exit code (see tests/vm/README.md). Needs root and qemu.
//!
//! ```text
//! vm_run [--timeout SECS] [--kernel PACKAGE] -- COMMAND [ARGS...]
//! vm_run [--timeout SECS] [--kernel PACKAGE] --test NAME [TEST ARGS...]
//! ```
//!
//! `--test smoke_bgp` runs the newest build of `tests/tests/smoke_bgp.rs` (build it first
//! with `cargo test -p lab --test smoke_bgp --no-run`) with `--ignored --nocapture
//! --test-threads=1` and the extra test arguments (a name filter, ...).

use std::time::Duration;

use anyhow::{Context, Result, bail};
use lab::bins::test_binary;
use lab::vm::{Kernel, Vm};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut timeout = Duration::from_secs(600);
    let mut kernel = None;
    let mut command: Vec<String> = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--timeout" => {
                let secs = args.next().context("--timeout wants seconds")?;
                timeout = Duration::from_secs(secs.parse().context("--timeout wants seconds")?);
            }
            "--kernel" => kernel = Some(args.next().context("--kernel wants a package")?),
            "--test" => {
                let name = args.next().context("--test wants a test name")?;
                command.push(test_binary(&name)?.to_string_lossy().into_owned());
                command.extend(["--ignored", "--nocapture", "--test-threads=1"].map(String::from));
                command.extend(args.by_ref());
            }
            "--" => command.extend(args.by_ref()),
            other => bail!("unexpected argument {other:?} (usage: see the file's doc)"),
        }
    }
    if command.is_empty() {
        bail!(
            "usage: vm_run [--timeout SECS] [--kernel PACKAGE] (-- COMMAND... | --test NAME [ARGS...])"
        );
    }
    let kernel = match kernel {
        Some(package) => Kernel::prepare(Some(&package))?,
        None => Kernel::from_env()?,
    };
    eprintln!(
        "==> {} in the VM ({}): {}",
        kernel.package,
        kernel.release,
        command.join(" ")
    );
    let argv: Vec<&str> = command.iter().map(String::as_str).collect();
    let out = Vm::with_kernel(kernel).timeout(timeout).run(&argv)?;
    print!("{}", out.stdout);
    eprint!("{}", out.stderr);
    eprintln!(
        "==> exit {} (boot {:.1?}, {:.1?} in all)",
        out.exit_code, out.boot, out.total
    );
    std::process::exit(out.exit_code);
}
