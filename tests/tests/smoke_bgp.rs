//! The smallest BGP lab: three nodes, one cross-node ping and `calicoctl node status`.
//! Quick to run anywhere, e.g. inside the Debian-kernel VM (`cargo run -p lab --example
//! vm_run -- --test smoke_bgp`).
use lab::cluster::{Cluster, LabSpec};
use std::time::Duration;

#[test]
#[ignore = "needs root netns"]
fn smoke() {
    let mut c = Cluster::start(LabSpec::nodes(3).env("CALICO_IPV4POOL_CIDR", "10.244.0.0/16"))
        .expect("lab");
    let a = c.add_pod(0, "a").expect("pod a");
    let b = c.add_pod(1, "b").expect("pod b");
    let ok = lab::wait_until(Duration::from_secs(20), || c.pods_ping(a, b));
    println!("{}", c.logs(60));
    for n in &c.nodes {
        println!("{}: {:#?}", n.name, n.routes());
    }
    let out = c.calicoctl(0, &["node", "status"]).expect("calicoctl");
    println!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(ok, "ping failed");
}
