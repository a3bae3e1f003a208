//! IPIP for real: the labs inside a qemu VM with Debian's own kernel (this machine's kernel
//! has no ipip module). See tests/vm/README.md.
//!
//! The e2e tests run the IPIP tests (`needs_ipip_module::`) of `tests/tests/ipip.rs` and
//! `tests/tests/overlays.rs`, built by the same `cargo test` (or `cargo test -p lab --test
//! ipip --test overlays --no-run`), and the workspace binaries (`cargo build --workspace
//! --bins`).

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use lab::bins::test_binary;
use lab::vm::{Vm, VmOutput, run_in_vm};

/// One VM at a time: two emulated VMs on a small machine slow each other's labs down.
fn one_vm_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// The newest build of test binary `name`, checked to be newer than its source.
fn fresh_test_binary(name: &str) -> String {
    let bin = test_binary(name).expect("test binary");
    let modified = |p: &Path| {
        std::fs::metadata(p)
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH)
    };
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/{name}.rs"));
    assert!(
        modified(&bin) >= modified(&source),
        "{} is older than {}: run `cargo test -p lab --test {name} --no-run`",
        bin.display(),
        source.display()
    );
    bin.to_string_lossy().into_owned()
}

/// Runs test binary `name` (the tests matching `filter`) in the VM and asserts that at
/// least `at_least` tests ran and all passed (a test of `needs_ipip_module` fails rather
/// than skip where ipip is missing).
fn run_tests_in_vm(name: &str, filter: &str, at_least: usize) {
    let bin = fresh_test_binary(name);
    let _one = one_vm_at_a_time();
    let out = Vm::new()
        .expect("kernel")
        .timeout(Duration::from_secs(600))
        .run(&[&bin, "--ignored", "--test-threads=1", "--nocapture", filter])
        .expect("VM run");
    show(&out);
    assert!(out.success(), "{name} failed inside the VM");
    let passed = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("test result: ok. "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<usize>().ok());
    assert!(
        passed.is_some_and(|n| n >= at_least),
        "{name}: expected at least {at_least} tests to pass, saw {passed:?}"
    );
}

/// Shows a VM run's output (visible with `--nocapture` and on failure).
fn show(out: &VmOutput) {
    println!(
        "kernel {}: booted in {:.1?}, {:.1?} in all, exit {}",
        out.release, out.boot, out.total, out.exit_code
    );
    println!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        out.stdout, out.stderr
    );
}

#[test]
#[ignore = "needs root + qemu: cargo test -p lab --test vm_ipip -- --ignored"]
fn ipip_link_appears_with_tunl0_mtu_1480() {
    let script = "set -e
ip netns add ipip-check
ip -n ipip-check link add t0 type ipip local 10.9.0.1 remote 10.9.0.2
ip -n ipip-check -d link show tunl0
ip -n ipip-check link show t0
ip netns del ipip-check";
    let _one = one_vm_at_a_time();
    let out = run_in_vm(&["sh", "-c", script], Duration::from_secs(120)).expect("VM run");
    show(&out);
    assert!(out.success(), "ip link add ... type ipip failed in the VM");
    let tunl0 = out
        .stdout
        .lines()
        .find(|l| l.contains(": tunl0@NONE:"))
        .expect("tunl0 appears once ipip is loaded");
    assert!(tunl0.contains("mtu 1480"), "tunl0: {tunl0}");
    assert!(out.stdout.contains("link/ipip 10.9.0.1 peer 10.9.0.2"));
}

#[test]
#[ignore = "needs root + qemu: cargo test -p lab --test vm_ipip -- --ignored"]
fn command_output_exit_code_and_environment_come_back() {
    let _one = one_vm_at_a_time();
    let vm = Vm::new().expect("kernel").timeout(Duration::from_secs(120));
    let out = vm
        .clone()
        .env("GREETING", "it's here")
        .run(&[
            "sh",
            "-c",
            "echo \"$GREETING\"; echo oops >&2; uname -r; exit 7",
        ])
        .expect("VM run");
    show(&out);
    assert_eq!(out.exit_code, 7);
    assert_eq!(
        out.stdout,
        format!("it's here\n{}\n", vm.kernel().release),
        "stdout"
    );
    assert_eq!(out.stderr, "oops\n");
}

/// Process ids of the qemu processes running a lab VM (their 9p share is tagged `xfer`).
fn lab_vms() -> Vec<String> {
    let out = std::process::Command::new("pgrep")
        .args(["-f", "qemu-system-x86_64 .*mount_tag=xfer"])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
#[ignore = "needs root + qemu: cargo test -p lab --test vm_ipip -- --ignored"]
fn a_vm_still_running_at_the_timeout_is_killed() {
    let _one = one_vm_at_a_time();
    let vm = Vm::new().expect("kernel");
    let before = lab_vms();
    let err = vm
        .timeout(Duration::from_secs(4))
        .run(&["sleep", "600"])
        .expect_err("a 600 s sleep cannot end within 4 s");
    assert!(
        format!("{err:#}").contains("did not finish within 4s"),
        "{err:#}"
    );
    let left: Vec<String> = lab_vms()
        .into_iter()
        .filter(|p| !before.contains(p))
        .collect();
    assert!(left.is_empty(), "qemu left running: {left:?}");
}

#[test]
#[ignore = "needs root + qemu: cargo test -p lab --test vm_ipip -- --ignored"]
fn ipip_e2e_tests_pass_under_debian_kernel() {
    run_tests_in_vm("ipip", "needs_ipip_module::", 1);
}

#[test]
#[ignore = "needs root + qemu: cargo test -p lab --test vm_ipip -- --ignored"]
fn overlays_ipip_test_passes_under_debian_kernel() {
    run_tests_in_vm("overlays", "needs_ipip_module::", 1);
}
