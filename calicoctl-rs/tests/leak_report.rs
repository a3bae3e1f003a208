//! Calico's leak runbook, end to end with the real calicoctl on an embedded store:
//! `datastore migrate lock`, `ipam check -o report.json`, `ipam release --from-report`,
//! `datastore migrate unlock`; with Calico's refusals (not locked, stale report, other
//! cluster) and what calico-rs adds: an address the report calls leaked that is in use
//! again by the time of the release is kept.

#![allow(clippy::unwrap_used)]

mod common;

use std::net::IpAddr;
use std::sync::Arc;

use common::Env;
use datastore::backend::local::LocalStore;
use datastore::model::{WorkloadEndpoint, WorkloadEndpointSpec};
use datastore::{Client, Datastore};
use ipam::{AutoAssignArgs, Ipam};

const POOL: &str = "apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pool1}
spec: {cidr: 10.70.0.0/24, blockSize: 26}
";

fn store(env: &Env) -> Arc<dyn Datastore> {
    Arc::new(LocalStore::open(env.dir.path().join("db")).unwrap())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Allocates one address for `handle` on node1.
fn allocate(env: &Env, handle: &str) -> IpAddr {
    runtime().block_on(async {
        let ipam = Ipam::new(store(env));
        ipam.auto_assign(&AutoAssignArgs::one(handle, "node1"))
            .await
            .unwrap()[0]
            .ip
    })
}

/// Records a WorkloadEndpoint using `ip` (the address is then in use).
fn record_workload(env: &Env, name: &str, ip: IpAddr) {
    runtime().block_on(async {
        let spec = WorkloadEndpointSpec {
            node: "node1".into(),
            ip_networks: vec![format!("{ip}/32")],
            interface_name: "cali0".into(),
            ..WorkloadEndpointSpec::default()
        };
        let mut wep = WorkloadEndpoint::new(name.to_string(), spec);
        wep.metadata.namespace = Some("default".into());
        Client::new(store(env)).create(wep).await.unwrap();
    });
}

fn allocated(env: &Env, ip: IpAddr) -> bool {
    runtime().block_on(async { Ipam::new(store(env)).ip_info(ip).await.unwrap().is_some() })
}

#[test]
fn the_calico_leak_runbook_releases_only_what_is_still_leaked() {
    let env = Env::new();
    env.apply_ok(POOL);
    let leaked = allocate(&env, "net.gone-pod");
    let live = allocate(&env, "net.live-pod");
    record_workload(&env, "node1-k8s-live-eth0", live);
    let revived = allocate(&env, "net.late-pod");
    let report = env.dir.path().join("report.json");
    let report_arg = format!("--from-report={}", report.display());

    // Not locked: Calico refuses without --force.
    let out = env.run(&["ipam", "check", "-o", report.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("Found 2 IPs that are allocated in IPAM but not actually in use."),
        "{}",
        out.stdout
    );
    let out = env.run(&["ipam", "release", &report_arg]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains(
            "data store is not locked. Either lock the data store, or re-run with --force"
        ),
        "{out:?}"
    );

    // Locking changes ClusterInformation: the earlier report is stale now.
    let out = env.run(&["datastore", "migrate", "lock"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "Datastore locked.\n"),
        "{out:?}"
    );
    let out = env.run(&["ipam", "release", &report_arg]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("the provided reports are all stale"),
        "{out:?}"
    );

    // A report made while locked.
    let out = env.run(&["ipam", "check", "-o", report.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(json["datastoreLocked"], true);
    assert_eq!(json["allocations"][leaked.to_string()][0]["inUse"], false);
    assert_eq!(json["allocations"][live.to_string()][0]["inUse"], true);
    assert_eq!(
        json["allocations"][live.to_string()][0]["owners"][0],
        "Workload default/node1-k8s-live-eth0"
    );
    // Between the report and the release, the late pod's endpoint appears.
    record_workload(&env, "node1-k8s-late-eth0", revived);

    let out = env.run(&["ipam", "release", &report_arg]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("Releasing 2 old IPs..."),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Released 1 IPs successfully"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("1 addresses marked as leaked in the report are in use again"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.ends_with("You may now unlock the data store.\n"),
        "{}",
        out.stdout
    );
    assert!(!allocated(&env, leaked), "the leaked address is free");
    assert!(
        allocated(&env, live) && allocated(&env, revived),
        "addresses in use are kept"
    );

    let out = env.run(&["datastore", "migrate", "unlock"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (0, "Datastore unlocked.\n")
    );
    let out = env.run(&["ipam", "check"]);
    assert!(
        out.stdout.contains("Check complete; found 0 problems."),
        "{}",
        out.stdout
    );
}

#[test]
fn a_report_of_another_cluster_is_refused_even_with_force() {
    let env = Env::new();
    env.apply_ok(POOL);
    allocate(&env, "net.gone-pod");
    let report = env.dir.path().join("report.json");
    assert_eq!(env.run(&["datastore", "migrate", "lock"]).code, 0);
    assert_eq!(
        env.run(&["ipam", "check", "-o", report.to_str().unwrap()])
            .code,
        0
    );
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    json["clusterGUID"] = "another-cluster".into();
    std::fs::write(&report, json.to_string()).unwrap();
    let out = env.run(&[
        "ipam",
        "release",
        &format!("--from-report={}", report.display()),
        "--force",
    ]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("mismatched cluster GUID. Refusing to release"),
        "{out:?}"
    );
    let out = env.run(&["ipam", "release", "--from-report=/nonexistent/report.json"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("cannot read the report /nonexistent/report.json"),
        "{out:?}"
    );
}

#[test]
fn an_endpoint_that_does_not_decode_is_named_and_stops_every_release() {
    let env = Env::new();
    env.apply_ok(POOL);
    let leaked = allocate(&env, "net.gone-pod");
    // Garbage where a WorkloadEndpoint lives: the addresses it uses cannot be known, so
    // the leaked-looking address may be its own.
    let key = format!(
        "{}default/node1-k8s-garbled-eth0",
        datastore::keys::resource_prefix("workloadendpoints")
    );
    runtime().block_on(async {
        store(&env)
            .create(&key, b"{not json".to_vec(), None)
            .await
            .unwrap();
    });
    assert_eq!(env.run(&["datastore", "migrate", "lock"]).code, 0);
    let report = env.dir.path().join("report.json");
    let out = env.run(&["ipam", "check", "-o", report.to_str().unwrap()]);
    assert!(
        out.stdout.contains(&format!("{key} does not decode")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("Check complete; found 2 problems."),
        "{}",
        out.stdout
    );
    let out = env.run(&[
        "ipam",
        "release",
        &format!("--from-report={}", report.display()),
    ]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr.contains(&format!(
            "cannot tell which addresses are in use: {key} does not decode"
        )),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("Released 0 IPs successfully"),
        "{out:?}"
    );
    assert!(out.stderr.contains("1 releases failed"), "{out:?}");
    assert!(allocated(&env, leaked), "nothing is released on a guess");
}
