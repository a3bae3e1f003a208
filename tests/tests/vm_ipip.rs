//! IPIP for real: the labs inside a qemu VM with Debian's own kernel (this machine's kernel
//! has no ipip module). See tests/vm/README.md.

use std::time::Duration;

use lab::vm::{Vm, run_in_vm};

/// Shows a VM run's output (visible with `--nocapture` and on failure).
fn show(out: &lab::vm::VmOutput) {
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
