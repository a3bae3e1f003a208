//! calico-node end to end (issue 5): BGP pod networking between nodes in network
//! namespaces, with a real etcd and real BIRD / FRR top-of-rack routers.
//! Needs root: `cargo test -p lab --test calico_node -- --ignored`.

use std::process::Output;
use std::time::Duration;

use ipnet::Ipv4Net;
use lab::cluster::{Cluster, LabSpec};
use lab::routers::{Bird, Frr, bird_tor_config, frr_tor_config};
use lab::wait_until;

const POOL: &str = "10.244.0.0/16";
const WAIT: Duration = Duration::from_secs(30);

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A lab of `n` nodes in a BGP full mesh (the default), one pod per node.
fn mesh(n: usize) -> Cluster {
    let mut c = Cluster::start(LabSpec::nodes(n).env("CALICO_IPV4POOL_CIDR", POOL)).expect("lab");
    for i in 0..n {
        c.add_pod(i, &format!("p{}", i + 1)).expect("pod");
    }
    c
}

/// The /26 block holding pod `p`'s address.
fn block_of(c: &Cluster, p: usize) -> String {
    Ipv4Net::new(c.pods[p].ip, 26)
        .expect("prefix")
        .trunc()
        .to_string()
}

/// Waits until every pod pings every other pod; panics with the agents' logs otherwise.
fn assert_all_ping(c: &Cluster) {
    for a in 0..c.pods.len() {
        for b in 0..c.pods.len() {
            if a == b {
                continue;
            }
            assert!(
                wait_until(WAIT, || c.pods_ping(a, b)),
                "pod {} ({}) cannot ping pod {} ({})\n{}",
                c.pods[a].name,
                c.pods[a].ip,
                c.pods[b].name,
                c.pods[b].ip,
                c.logs(40)
            );
        }
    }
}

fn wait_route(c: &Cluster, node: usize, route: &str) {
    assert!(
        wait_until(WAIT, || c.nodes[node].has_route(route)),
        "{} never got `{route}`; it has {:#?}\n{}",
        c.nodes[node].name,
        c.nodes[node].routes(),
        c.logs(40)
    );
}

fn wait_no_route(c: &Cluster, node: usize, needle: &str) {
    assert!(
        wait_until(WAIT, || !c.nodes[node].has_route(needle)),
        "{} still has `{needle}`: {:#?}",
        c.nodes[node].name,
        c.nodes[node].routes()
    );
}

fn node_status(c: &Cluster, node: usize) -> String {
    text(&c.calicoctl(node, &["node", "status"]).expect("calicoctl"))
}

#[test]
#[ignore = "needs root netns: cargo test -p lab --test calico_node -- --ignored"]
fn three_node_mesh_exchanges_blocks_and_pods_ping() {
    let c = mesh(3);
    assert_all_ping(&c);
    for owner in 0..3 {
        let block = block_of(&c, owner);
        wait_route(&c, owner, &format!("blackhole {block} proto bird"));
        for other in (0..3).filter(|o| *o != owner) {
            wait_route(
                &c,
                other,
                &format!("{block} via {} dev eth0 proto bird", c.nodes[owner].ip()),
            );
        }
    }
    let status = node_status(&c, 0);
    assert!(
        status.starts_with("Calico process is running.\n"),
        "{status}"
    );
    for peer in ["10.0.0.2", "10.0.0.3"] {
        let row = status
            .lines()
            .find(|l| l.starts_with(&format!("| {peer} ")))
            .unwrap_or_else(|| panic!("no row for {peer}:\n{status}"));
        assert!(
            row.contains("| node-to-node mesh | up    |") && row.contains("| Established |"),
            "{row}"
        );
    }
    let wide = text(
        &c.calicoctl(0, &["get", "nodes", "-o", "wide"])
            .expect("calicoctl"),
    );
    assert!(wide.contains("node1   (64512)   10.0.0.1/24"), "{wide}");
}

/// Mesh off, every node peering with a ToR over eBGP (nodes AS 64512, ToR AS 65001); the
/// ToR passes routes on with itself as next hop, so pod traffic crosses it.
fn tor_case(use_frr: bool) {
    let mut c = mesh(3);
    let tor = c.extra_namespace("tor").expect("tor netns");
    c.attach_extra(tor, "eth0", 0, "10.0.0.253/24")
        .expect("attach ToR");
    c.extra(tor)
        .sh("sysctl -qw net.ipv4.ip_forward=1")
        .expect("forwarding");
    let neighbors: Vec<(String, u32)> = c
        .nodes
        .iter()
        .map(|n| (n.ip().to_string(), 64512))
        .collect();
    let dir = c.path().join("tor");
    let bird;
    let frr;
    if use_frr {
        frr = Some(
            Frr::start(
                c.extra(tor),
                &dir,
                &frr_tor_config("10.0.0.253", 65001, &neighbors),
            )
            .expect("frr"),
        );
        bird = None;
    } else {
        bird = Some(
            Bird::start(
                c.extra(tor),
                &dir,
                &bird_tor_config("10.0.0.253", 65001, &neighbors),
            )
            .expect("bird"),
        );
        frr = None;
    }
    c.apply(
        "apiVersion: projectcalico.org/v3
kind: BGPConfiguration
metadata: {name: default}
spec: {nodeToNodeMeshEnabled: false, asNumber: 64512}
---
apiVersion: projectcalico.org/v3
kind: BGPPeer
metadata: {name: tor}
spec: {peerIP: 10.0.0.253, asNumber: 65001, numAllowedLocalASNumbers: 1}
",
    )
    .expect("apply");
    let router_logs = || match (&bird, &frr) {
        (Some(b), _) => b.log_tail(30),
        (_, Some(f)) => f.log_tail(30),
        _ => String::new(),
    };
    // The ToR's kernel routes each block to the node that owns it (FRR adds `nhid N`
    // between the prefix and `via`).
    for owner in 0..3 {
        let (block, via) = (block_of(&c, owner), format!("via {} ", c.nodes[owner].ip()));
        assert!(
            wait_until(WAIT, || c.extra(tor).ip(&["route", "show"]).is_ok_and(
                |r| r.lines().any(|l| l.starts_with(&block) && l.contains(&via))
            )),
            "ToR never routed {block} {via}: {}\n{}\n{}",
            c.extra(tor).ip(&["route", "show"]).unwrap_or_default(),
            router_logs(),
            c.logs(40)
        );
    }
    // Nodes route other nodes' blocks through the ToR, the mesh is gone.
    for owner in 0..3 {
        for other in (0..3).filter(|o| *o != owner) {
            wait_route(
                &c,
                other,
                &format!("{} via 10.0.0.253 dev eth0 proto bird", block_of(&c, owner)),
            );
        }
    }
    assert_all_ping(&c);
    let status = node_status(&c, 1);
    assert!(
        wait_until(WAIT, || {
            let s = node_status(&c, 1);
            s.contains("| 10.0.0.253   | global    | up    |") && !s.contains("node-to-node mesh")
        }),
        "{status}"
    );
}

#[test]
#[ignore = "needs root netns and bird2: cargo test -p lab --test calico_node -- --ignored"]
fn tor_bird_ebgp_carries_pod_traffic_between_nodes() {
    tor_case(false);
}

#[test]
#[ignore = "needs root netns and frr: cargo test -p lab --test calico_node -- --ignored"]
fn tor_frr_ebgp_carries_pod_traffic_between_nodes() {
    tor_case(true);
}
