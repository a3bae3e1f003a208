//! The bounded chaos runs of the test command (issue 12): pods added and deleted in
//! parallel on five nodes sharing a pool that forces borrowing, while etcd (one member, or
//! the leader of three), CNI plugins and calico-node are SIGKILLed and a node's link to
//! etcd is cut (`lab::chaos`). The full run is `cargo run -p lab --example chaos`.
//! Needs root: `cargo test -p lab --test chaos -- --ignored --nocapture`.

use lab::chaos::{ChaosReport, ChaosSpec, Fault, run};

/// What every run must show, whatever the timing, beyond the invariants `run` itself
/// fails on (no address twice, none a tunnel's, IPAM clean, nothing left over, all pods
/// reachable): that faults did happen, that no calico-node ended by itself and that the
/// canaries never lost a ping.
fn assert_survived(report: &ChaosReport, etcd_fault: Fault) {
    println!("{}", report.table());
    assert_eq!(report.agent_self_exits, 0, "calico-node ended by itself");
    assert!(
        report.faults.get(&etcd_fault).copied().unwrap_or(0) > 0,
        "no {etcd_fault:?} was injected: {report:?}"
    );
    assert!(
        report
            .faults
            .get(&Fault::CalicoNodeKilled)
            .copied()
            .unwrap_or(0)
            + report.faults.get(&Fault::EtcdLinkCut).copied().unwrap_or(0)
            > 0,
        "no node fault was injected: {report:?}"
    );
    assert!(
        report.adds_ok > 0 && report.dels_ok > 0,
        "no churn: {report:?}"
    );
    // The canaries pinged across every fault.
    assert_eq!(report.pings_lost, 0, "the canaries lost pings: {report:?}");
}

#[test]
#[ignore = "needs root netns: cargo test -p lab --test chaos -- --ignored"]
fn churn_survives_etcd_killed_cni_killed_and_calico_node_killed() {
    let report = run(&ChaosSpec::bounded(1)).expect("chaos run keeps every invariant");
    assert_survived(&report, Fault::EtcdKilled);
}

#[test]
#[ignore = "needs root netns: cargo test -p lab --test chaos -- --ignored"]
fn churn_survives_the_etcd_leader_killed_in_a_three_member_cluster() {
    let report = run(&ChaosSpec::bounded(3)).expect("chaos run keeps every invariant");
    assert_survived(&report, Fault::EtcdLeaderKilled);
}
