//! Dual stack end to end (issue 13): calico-node with `IP6=autodetect` in a three-node
//! BGP mesh over IPv4 and IPv6, real etcd, pods wired by the CNI plugins with
//! `assign_ipv6`. Every pod gets an IPv4 and an IPv6 address and reaches every other pod
//! over both; each node holds the others' blocks of both families and its own blackholes;
//! `calicoctl node status` shows both tables Established; a BIRD or FRR top-of-rack router
//! peered over eBGP in both families (mesh off) learns every block and carries the pods'
//! traffic, and GoBGP, as a route collector, learns every block;
//! the IPv6 pool switched to VXLAN (vxlan-v6.calico) and back by `calicoctl apply`, live,
//! nothing stale; a deleted pod leaves no route of either family behind; a v4 address in `IP6` stops
//! calico-node with the variable named and nothing written; an IPv6-only cluster (`IP=none`,
//! IPv6-only pods) meshes, routes and pings over IPv6 alone; a route reflector reflects every
//! block in both families; an emptied IPv6 block is released and a leaving node is gone in
//! both families.
//! Needs root: `cargo test -p lab --test dual_stack -- --ignored`.

use std::net::Ipv6Addr;
use std::process::Output;
use std::time::Duration;

use ipnet::{Ipv4Net, Ipv6Net};
use lab::bgp_peers::{RouterKind, RouterSpec};
use lab::cluster::{Cluster, LabSpec};
use lab::reflectors::RR_PEERING;
use lab::tor::{TOR_IP, TOR_IP6, TOR_PEERING, TOR_PEERING_V6, tor_spec};
use lab::wait_until;

const POOL: &str = "10.244.0.0/16";
const POOL_V6: &str = "fd00:244::/48";
const WAIT: Duration = Duration::from_secs(30);

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A dual-stack lab of `n` nodes in the default full mesh, one pod per node.
fn dual_mesh(n: usize) -> Cluster {
    let spec = LabSpec::nodes(n)
        .dual_stack()
        .env("CALICO_IPV4POOL_CIDR", POOL)
        .env("CALICO_IPV6POOL_CIDR", POOL_V6);
    let mut c = Cluster::start(spec).expect("lab");
    for i in 0..n {
        c.add_pod(i, &format!("p{}", i + 1)).expect("pod");
    }
    c
}

fn ip6_of(c: &Cluster, p: usize) -> Ipv6Addr {
    c.pods[p].ip6.expect("a dual-stack pod has an IPv6 address")
}

/// The /122 block holding pod `p`'s IPv6 address.
fn block6_of(c: &Cluster, p: usize) -> String {
    Ipv6Net::new(ip6_of(c, p), 122)
        .expect("prefix")
        .trunc()
        .to_string()
}

fn block_of(c: &Cluster, p: usize) -> String {
    Ipv4Net::new(c.pods[p].ip, 26)
        .expect("prefix")
        .trunc()
        .to_string()
}

fn wait_route6(c: &Cluster, node: usize, route: &str) {
    assert!(
        wait_until(WAIT, || c.nodes[node].has_route_v6(route)),
        "{} never got `{route}`; it has {:#?}\n{}",
        c.nodes[node].name,
        c.nodes[node].routes_v6(),
        c.logs(40)
    );
}

/// Every node's blocks of both families (its pod's), each with the node's address of
/// that family: what a peer of all nodes learns.
fn blocks_via_their_nodes(c: &Cluster) -> Vec<(String, String)> {
    (0..c.nodes.len())
        .flat_map(|n| {
            [
                (block_of(c, n), c.nodes[n].ip().to_string()),
                (
                    block6_of(c, n),
                    c.nodes[n].ip6().unwrap_or_default().to_string(),
                ),
            ]
        })
        .collect()
}

/// Starts calico-node on a one-node lab built from `spec` and checks it refuses to run:
/// it exits non-zero, logs `message`, and registers no Node.
fn refused_start(spec: LabSpec, message: &str) {
    let mut c = Cluster::start(LabSpec {
        start_agents: false,
        ..spec
    })
    .expect("lab");
    let _ = c.start_agent(0);
    assert!(
        wait_until(WAIT, || !c.nodes[0].agent_running()),
        "calico-node kept running (expected: {message})"
    );
    let status = c.nodes[0].agent_exit_status();
    assert!(status.is_some_and(|s| !s.success()), "{status:?}");
    let log = c.nodes[0].agent_log(20);
    assert!(log.contains(message), "{log}");
    let nodes = text(&c.calicoctl(0, &["get", "nodes"]).expect("calicoctl"));
    assert!(!nodes.contains("node1"), "a node was registered:\n{nodes}");
}

#[test]
#[ignore = "needs root netns: cargo test -p lab --test dual_stack -- --ignored"]
fn dual_stack_pods_reach_each_other_over_both_families_in_a_mesh() {
    let c = dual_mesh(3);

    // Every node registered its IPv6 address; get nodes -o wide shows it.
    let nodes = text(
        &c.calicoctl(0, &["get", "nodes", "-o", "wide"])
            .expect("calicoctl"),
    );
    for node in &c.nodes {
        let v6 = node.address_v6.as_deref().expect("dual-stack node");
        assert!(nodes.contains(v6), "no {v6} in:\n{nodes}");
    }
    let pools = text(
        &c.calicoctl(0, &["get", "ippool", "-o", "wide"])
            .expect("calicoctl"),
    );
    assert!(pools.contains("default-ipv6-ippool"), "{pools}");
    assert!(pools.contains(POOL_V6), "{pools}");

    // Each node: its own blocks blackholed in both families, the others' blocks learned
    // over the IPv6 sessions via their IPv6 addresses.
    for (n, node) in c.nodes.iter().enumerate() {
        // The kernel hangs IPv6 blackholes on lo.
        wait_route6(
            &c,
            n,
            &format!("blackhole {} dev lo proto bird", block6_of(&c, n)),
        );
        let pod = &c.pods[n];
        let host_route = format!("{} dev ", ip6_of(&c, n));
        assert!(
            node.has_route_v6(&host_route),
            "no /128 route to {} on {}: {:#?}",
            pod.name,
            node.name,
            node.routes_v6()
        );
        for (m, other) in c.nodes.iter().enumerate() {
            if m == n {
                continue;
            }
            let via = other.ip6().expect("dual-stack node");
            wait_route6(
                &c,
                n,
                &format!("{} via {via} dev eth0 proto bird", block6_of(&c, m)),
            );
            assert!(
                wait_until(WAIT, || node.has_route(&format!(
                    "{} via {} dev eth0 proto bird",
                    block_of(&c, m),
                    other.ip()
                ))),
                "{} has no IPv4 route to {}'s block: {:#?}",
                node.name,
                other.name,
                node.routes()
            );
        }
    }

    // Pods reach each other over both families.
    for a in 0..c.pods.len() {
        for b in 0..c.pods.len() {
            if a == b {
                continue;
            }
            assert!(
                wait_until(WAIT, || c.pods_ping6(a, b)),
                "pod {} cannot ping6 pod {} ({})\n{}",
                c.pods[a].name,
                c.pods[b].name,
                ip6_of(&c, b),
                c.logs(40)
            );
            assert!(
                c.pods_ping(a, b),
                "pod {} cannot ping pod {} over IPv4",
                c.pods[a].name,
                c.pods[b].name
            );
        }
    }

    // node status: both tables, both peers Established in each.
    let status_ok = |out: &str| {
        let v6_table = out.split("IPv6 BGP status").nth(1).unwrap_or_default();
        let v4_table = out.split("IPv6 BGP status").next().unwrap_or_default();
        let v6_up = c.nodes[1..].iter().all(|n| {
            v6_table
                .lines()
                .any(|l| l.contains(n.ip6().unwrap_or("?")) && l.contains("Established"))
        });
        let v4_up = c.nodes[1..].iter().all(|n| {
            v4_table
                .lines()
                .any(|l| l.contains(&format!("| {} ", n.ip())) && l.contains("Established"))
        });
        v4_up && v6_up
    };
    let mut last = String::new();
    assert!(
        wait_until(WAIT, || {
            last = text(&c.calicoctl(0, &["node", "status"]).expect("calicoctl"));
            status_ok(&last)
        }),
        "node status does not show both families established:\n{last}"
    );
}

#[test]
#[ignore = "needs root netns: cargo test -p lab --test dual_stack -- --ignored"]
fn a_deleted_dual_stack_pod_leaves_no_route_of_either_family() {
    let mut c = dual_mesh(2);
    let ip6 = ip6_of(&c, 1);
    let ip4 = c.pods[1].ip;
    // Node 1 routes node 2's IPv6 block: the speaker exported it.
    let block6 = block6_of(&c, 1);
    let via = c.nodes[1].ip6().expect("dual-stack node").to_string();
    wait_route6(&c, 0, &format!("{block6} via {via} dev eth0 proto bird"));
    assert!(wait_until(WAIT, || c.pods_ping6(0, 1)), "{}", c.logs(40));

    c.delete_pod(1).expect("DEL");
    let gone = |needle: String| {
        wait_until(WAIT, || {
            !c.nodes[1]
                .routes_v6()
                .iter()
                .chain(&c.nodes[1].routes())
                .any(|r| r.starts_with(&needle))
        })
    };
    assert!(gone(format!("{ip6} ")), "{:#?}", c.nodes[1].routes_v6());
    assert!(gone(format!("{ip4} ")), "{:#?}", c.nodes[1].routes());
    let ipam = text(
        &c.calicoctl(0, &["ipam", "show", "--ip", &ip6.to_string()])
            .expect("calicoctl"),
    );
    assert!(ipam.contains("is not currently assigned"), "{ipam}");
}

#[test]
#[ignore = "needs root netns: cargo test -p lab --test dual_stack -- --ignored"]
fn a_bird_tor_peered_in_both_families_learns_every_block_and_carries_the_pods() {
    tor_in_both_families(RouterKind::Bird);
}

#[test]
#[ignore = "needs root netns and frr: cargo test -p lab --test dual_stack -- --ignored"]
fn an_frr_tor_peered_in_both_families_learns_every_block_and_carries_the_pods() {
    tor_in_both_families(RouterKind::Frr);
}

#[test]
#[ignore = "needs root netns and gobgpd: cargo test -p lab --test dual_stack -- --ignored"]
fn a_gobgp_peer_in_both_families_learns_every_block_via_its_node() {
    let mut c = dual_mesh(2);
    // GoBGP installs nothing in the kernel: a route collector, not a ToR carrying traffic.
    let spec = RouterSpec {
        install_routes: false,
        ..tor_spec(&c)
    };
    let (_, gobgp) = c.start_tor(RouterKind::GoBgp, spec).expect("GoBGP");
    c.apply(&format!("{TOR_PEERING}---\n{TOR_PEERING_V6}"))
        .expect("apply");
    let wanted = blocks_via_their_nodes(&c);
    let mut learned = Default::default();
    assert!(
        wait_until(WAIT, || {
            learned = gobgp.learned().unwrap_or_default();
            wanted
                .iter()
                .all(|(block, via)| learned.get(block).is_some_and(|r| &r.next_hop == via))
        }),
        "GoBGP lacks {wanted:?}: {learned:#?}\n{}\n{}",
        gobgp.log_tail(30),
        c.logs(40)
    );
    let status = text(&c.calicoctl(0, &["node", "status"]).expect("calicoctl"));
    let v6_table = status.split("IPv6 BGP status").nth(1).unwrap_or_default();
    assert!(
        v6_table
            .lines()
            .any(|l| l.contains(TOR_IP6) && l.contains("global") && l.contains("Established")),
        "{status}"
    );
}

/// A ToR of `kind` with a session per family to each node (mesh off): it learns every
/// block of both families via its node, and the pods' traffic crosses it.
fn tor_in_both_families(kind: RouterKind) {
    let mut c = dual_mesh(2);
    let spec = tor_spec(&c);
    let (tor, router) = c.start_tor(kind, spec).expect("ToR");
    c.apply(&format!("{TOR_PEERING}---\n{TOR_PEERING_V6}"))
        .expect("apply");
    // The ToR's BIRD and kernel hold every block of both families via its node.
    let wanted = blocks_via_their_nodes(&c);
    let mut kernel = String::new();
    assert!(
        wait_until(WAIT, || {
            let v4 = c.extra(tor).ip(&["route", "show"]).unwrap_or_default();
            let v6 = c
                .extra(tor)
                .ip(&["-6", "route", "show"])
                .unwrap_or_default();
            kernel = format!("{v4}{v6}");
            wanted.iter().all(|(block, via)| {
                // FRR's zebra puts `nhid <n>` between the two.
                kernel.lines().any(|l| {
                    l.starts_with(&format!("{block} ")) && l.contains(&format!(" via {via} "))
                })
            })
        }),
        "the ToR's kernel lacks blocks {wanted:?}:\n{kernel}\n{}\n{}",
        router.log_tail(30),
        c.logs(40)
    );
    // Each node now reaches the other's blocks through the ToR in both families, and the
    // pods' traffic crosses it.
    wait_route6(
        &c,
        0,
        &format!("{} via {TOR_IP6} dev eth0 proto bird", block6_of(&c, 1)),
    );
    assert!(
        wait_until(WAIT, || c.nodes[0].has_route(&format!(
            "{} via {TOR_IP} dev eth0 proto bird",
            block_of(&c, 1)
        ))),
        "{:#?}",
        c.nodes[0].routes()
    );
    assert!(wait_until(WAIT, || c.pods_ping6(0, 1)), "{}", c.logs(40));
    assert!(wait_until(WAIT, || c.pods_ping(0, 1)), "{}", c.logs(40));
    let status = text(&c.calicoctl(0, &["node", "status"]).expect("calicoctl"));
    let v6_table = status.split("IPv6 BGP status").nth(1).unwrap_or_default();
    assert!(
        v6_table
            .lines()
            .any(|l| l.contains(TOR_IP6) && l.contains("global") && l.contains("Established")),
        "{status}"
    );
}

#[test]
#[ignore = "needs root netns: cargo test -p lab --test dual_stack -- --ignored"]
fn an_ipv4_address_in_ip6_stops_calico_node_naming_the_variable_and_writes_nothing() {
    refused_start(
        LabSpec::nodes(1).dual_stack().env("IP6", "10.0.0.1/24"),
        "IP6: '10.0.0.1/24' is not an IPv6 address",
    );
}

#[test]
#[ignore = "needs root netns: cargo test -p lab --test dual_stack -- --ignored"]
fn nat_outgoing_on_the_ipv6_pool_lets_pods_reach_an_address_outside_every_pool() {
    let c = dual_mesh(1);
    // The router knows no route back to the pods' IPv6 pool: without NAT its replies
    // are lost.
    let router = "fd00::254";
    let pod = &c.pods[0];
    assert!(
        !pod.ns.ping(router, 2),
        "the pod reached {router} without NAT: the test would prove nothing"
    );
    c.apply(&format!(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: default-ipv6-ippool\nspec:\n  cidr: {POOL_V6}\n  blockSize: 122\n  natOutgoing: true\n  nodeSelector: all()\n"
    ))
    .expect("apply");
    assert!(
        wait_until(WAIT, || pod.ns.ping(router, 1)),
        "the pod cannot reach {router} through IPv6 natOutgoing\n{}\n{}",
        c.nodes[0]
            .ns
            .sh("ip6tables-save -t nat; ipset list -n")
            .unwrap_or_default(),
        c.logs(30)
    );
    let rules = c.nodes[0]
        .ns
        .sh("ip6tables-save -t nat")
        .unwrap_or_default();
    assert!(
        rules.contains("--match-set cali60masq-ipam-pools src -m set ! --match-set cali60all-ipam-pools dst -j MASQUERADE"),
        "{rules}"
    );
    // The IPv4 pool's NAT (on by default) is in iptables, apart.
    let rules4 = c.nodes[0].ns.sh("iptables-save -t nat").unwrap_or_default();
    assert!(rules4.contains("cali40masq-ipam-pools"), "{rules4}");
}

/// The IPv6 pool as a user applies it, with `vxlanMode` set.
fn pool_v6_yaml(vxlan: &str) -> String {
    format!(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: default-ipv6-ippool\nspec:\n  cidr: {POOL_V6}\n  blockSize: 122\n  vxlanMode: {vxlan}\n  nodeSelector: all()\n"
    )
}

/// Packets sent on `dev` of node `n` (0 when the device is absent).
fn tx_packets(c: &Cluster, n: usize, dev: &str) -> u64 {
    c.nodes[n]
        .ns
        .sh(&format!("cat /sys/class/net/{dev}/statistics/tx_packets"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
#[ignore = "needs root netns: cargo test -p lab --test dual_stack -- --ignored"]
fn the_ipv6_pool_switches_to_vxlan_and_back_live_leaving_nothing_behind() {
    let c = dual_mesh(2);
    let v6_of = |n: usize| c.nodes[n].ip6().expect("dual-stack node").to_string();
    wait_route6(
        &c,
        0,
        &format!("{} via {} dev eth0 proto bird", block6_of(&c, 1), v6_of(1)),
    );
    assert!(wait_until(WAIT, || c.pods_ping6(0, 1)), "{}", c.logs(40));

    c.apply(&pool_v6_yaml("Always")).expect("apply Always");
    // Each node: its own vxlan-v6.calico over its IPv6 address, the other's IPv6 block
    // through it (via the other's VTEP, onlink, Felix's proto 80); IPv4 is untouched.
    let mut last = Vec::new();
    for (n, m) in [(0, 1), (1, 0)] {
        let block = block6_of(&c, m);
        assert!(
            wait_until(WAIT, || {
                last = c.nodes[n].routes_v6();
                last.iter().any(|r| {
                    r.starts_with(&format!("{block} via "))
                        && r.contains("dev vxlan-v6.calico proto 80")
                        && r.contains("onlink")
                })
            }),
            "{} has no VXLAN route to {block}: {last:#?}\n{}\n{}",
            c.nodes[n].name,
            text(
                &c.calicoctl(0, &["get", "nodes", "-o", "yaml"])
                    .expect("calicoctl")
            ),
            c.logs(40)
        );
        let link = c.nodes[n]
            .ns
            .ip(&["-d", "link", "show", "vxlan-v6.calico"])
            .expect("vxlan-v6.calico exists");
        assert!(
            link.contains("mtu 1430")
                && link.contains("vxlan id 4096")
                && link.contains(&format!("local {}", v6_of(n))),
            "{link}"
        );
        let neigh = c.nodes[n]
            .ns
            .ip(&["-6", "neigh", "show", "dev", "vxlan-v6.calico"])
            .unwrap_or_default();
        assert!(neigh.contains("PERMANENT"), "no NDP entry: {neigh}");
        let fdb = c.nodes[n]
            .ns
            .sh("bridge fdb show dev vxlan-v6.calico")
            .unwrap_or_default();
        assert!(
            fdb.contains(&format!("dst {} self permanent", v6_of(m))),
            "{fdb}"
        );
        assert!(
            c.nodes[n].has_route(&format!(
                "{} via {} dev eth0 proto bird",
                block_of(&c, m),
                c.nodes[m].ip()
            )),
            "{:#?}",
            c.nodes[n].routes()
        );
        assert!(
            c.nodes[n].ns.ip(&["link", "show", "vxlan.calico"]).is_err(),
            "no IPv4 pool uses VXLAN, yet vxlan.calico exists"
        );
    }
    // The Node records its IPv6 VTEP.
    let node = text(
        &c.calicoctl(0, &["get", "node", &c.nodes[0].name, "-o", "yaml"])
            .expect("calicoctl"),
    );
    assert!(
        node.contains("ipv6VXLANTunnelAddr:") && node.contains("vxlanTunnelMACAddrV6:"),
        "{node}"
    );
    // Pods' IPv6 traffic crosses the tunnel.
    let before = tx_packets(&c, 0, "vxlan-v6.calico");
    assert!(wait_until(WAIT, || c.pods_ping6(0, 1)), "{}", c.logs(40));
    let after = tx_packets(&c, 0, "vxlan-v6.calico");
    assert!(after > before, "vxlan-v6.calico tx {before} -> {after}");
    println!("node1 vxlan-v6.calico tx packets: {before} -> {after}");

    c.apply(&pool_v6_yaml("Never")).expect("apply Never");
    for (n, m) in [(0, 1), (1, 0)] {
        wait_route6(
            &c,
            n,
            &format!("{} via {} dev eth0 proto bird", block6_of(&c, m), v6_of(m)),
        );
        assert!(
            wait_until(WAIT, || c.nodes[n]
                .ns
                .ip(&["link", "show", "vxlan-v6.calico"])
                .is_err()),
            "{}: vxlan-v6.calico left behind",
            c.nodes[n].name
        );
        let stale: Vec<String> = c.nodes[n]
            .routes_v6()
            .into_iter()
            .filter(|r| r.contains("vxlan") || r.contains("proto 80"))
            .collect();
        assert!(stale.is_empty(), "stale routes: {stale:#?}");
    }
    let node = text(
        &c.calicoctl(0, &["get", "node", &c.nodes[0].name, "-o", "yaml"])
            .expect("calicoctl"),
    );
    assert!(
        wait_until(WAIT, || !text(
            &c.calicoctl(0, &["get", "node", &c.nodes[0].name, "-o", "yaml"])
                .expect("calicoctl")
        )
        .contains("ipv6VXLANTunnelAddr")),
        "the IPv6 tunnel address was not released: {node}"
    );
    assert!(wait_until(WAIT, || c.pods_ping6(0, 1)), "{}", c.logs(40));
}

#[test]
#[ignore = "needs root netns: cargo test -p lab --test dual_stack -- --ignored"]
fn an_ipv6_only_cluster_meshes_routes_and_carries_pods_over_ipv6_alone() {
    // IP=none: calico-node networks in IPv6 only (the hosts keep their IPv4 underlay for
    // etcd, as a management network would).
    let spec = LabSpec::nodes(3)
        .dual_stack()
        .env("IP", "none")
        .env("CALICO_IPV4POOL_CIDR", "none")
        .env("CALICO_IPV6POOL_CIDR", POOL_V6);
    let c = Cluster::start(spec).expect("lab");
    // Declared after the lab: dropped (namespaces removed) before it.
    let pods: Vec<(lab::netns::Netns, Ipv6Addr)> = (0..c.nodes.len())
        .map(|i| c.add_pod_v6_only(i, &format!("p{}", i + 1)).expect("pod"))
        .collect();
    let block6 = |p: usize| {
        Ipv6Net::new(pods[p].1, 122)
            .expect("prefix")
            .trunc()
            .to_string()
    };

    // Registered with its IPv6 address only.
    let nodes = text(
        &c.calicoctl(0, &["get", "nodes", "-o", "wide"])
            .expect("calicoctl"),
    );
    for node in &c.nodes {
        let v6 = node.address_v6.as_deref().expect("dual-stack host");
        let line = nodes
            .lines()
            .find(|l| l.starts_with(&format!("{} ", node.name)))
            .unwrap_or_default();
        assert!(line.contains(v6), "no {v6} for {}:\n{nodes}", node.name);
        assert!(
            !line.contains(node.ip()),
            "an IPv4 address registered:\n{nodes}"
        );
    }

    for (n, node) in c.nodes.iter().enumerate() {
        wait_route6(&c, n, &format!("blackhole {} dev lo proto bird", block6(n)));
        for (m, other) in c.nodes.iter().enumerate() {
            if m != n {
                let via = other.ip6().expect("dual-stack host");
                wait_route6(
                    &c,
                    n,
                    &format!("{} via {via} dev eth0 proto bird", block6(m)),
                );
            }
        }
        let v4_bird: Vec<String> = node
            .routes()
            .into_iter()
            .filter(|r| r.contains("proto bird"))
            .collect();
        assert!(
            v4_bird.is_empty(),
            "{} has IPv4 BGP routes: {v4_bird:#?}",
            node.name
        );
    }

    for (a, (from, _)) in pods.iter().enumerate() {
        for (b, (_, to)) in pods.iter().enumerate() {
            if a != b {
                assert!(
                    wait_until(WAIT, || from.ping(&to.to_string(), 2)),
                    "pod p{} cannot ping6 pod p{} ({to})\n{}",
                    a + 1,
                    b + 1,
                    c.logs(40)
                );
            }
        }
    }

    // node status: the IPv6 table has both peers Established, the IPv4 one none.
    let mut last = String::new();
    let status_ok = |out: &str| {
        let (v4_table, v6_table) = out.split_once("IPv6 BGP status").unwrap_or_default();
        v4_table.contains("No IPv4 peers found.")
            && c.nodes[1..].iter().all(|n| {
                v6_table
                    .lines()
                    .any(|l| l.contains(n.ip6().unwrap_or("?")) && l.contains("Established"))
            })
    };
    assert!(
        wait_until(WAIT, || {
            last = text(&c.calicoctl(0, &["node", "status"]).expect("calicoctl"));
            status_ok(&last)
        }),
        "node status of an IPv6-only node:\n{last}"
    );
}

#[test]
#[ignore = "needs root netns: cargo test -p lab --test dual_stack -- --ignored"]
fn ip_none_without_an_ipv6_address_stops_calico_node_with_calicos_message() {
    refused_start(
        LabSpec::nodes(1).env("IP", "none"),
        "no IPv4 or IPv6 addresses configured or detected",
    );
}

#[test]
#[ignore = "needs root netns: cargo test -p lab --test dual_stack -- --ignored"]
fn a_route_reflector_reflects_every_block_in_both_families() {
    let c = dual_mesh(4);
    c.make_route_reflector(0, "244.0.0.1").expect("reflector");
    c.apply(RR_PEERING).expect("apply");
    // Clients see one session per family, to the reflector, and no mesh.
    let rr = &c.nodes[0];
    let rr_v6 = rr.ip6().expect("dual-stack node");
    let client_ok = |out: &str| {
        let (v4_table, v6_table) = out.split_once("IPv6 BGP status").unwrap_or_default();
        let via_rr = |table: &str, ip: &str| {
            table
                .lines()
                .any(|l| l.starts_with(&format!("| {ip} ")) && l.contains("| node specific | up "))
        };
        via_rr(v4_table, rr.ip()) && via_rr(v6_table, rr_v6) && !out.contains("mesh")
    };
    let mut last = String::new();
    assert!(
        wait_until(WAIT, || {
            last = text(&c.calicoctl(2, &["node", "status"]).expect("calicoctl"));
            client_ok(&last)
        }),
        "a client's node status:\n{last}"
    );
    // Reflection keeps the originating node as the next hop, in both families.
    for owner in 0..c.nodes.len() {
        for other in (0..c.nodes.len()).filter(|o| *o != owner) {
            let via = c.nodes[owner].ip6().expect("dual-stack node");
            wait_route6(
                &c,
                other,
                &format!("{} via {via} dev eth0 proto bird", block6_of(&c, owner)),
            );
            let route = format!(
                "{} via {} dev eth0 proto bird",
                block_of(&c, owner),
                c.nodes[owner].ip()
            );
            assert!(
                wait_until(WAIT, || c.nodes[other].has_route(&route)),
                "{} never got `{route}`: {:#?}",
                c.nodes[other].name,
                c.nodes[other].routes()
            );
        }
    }
    for a in 0..c.pods.len() {
        for b in (0..c.pods.len()).filter(|b| *b != a) {
            assert!(
                wait_until(WAIT, || c.pods_ping6(a, b)),
                "pod {} cannot ping6 pod {} through the reflected routes\n{}",
                c.pods[a].name,
                c.pods[b].name,
                c.logs(40)
            );
        }
    }
}

#[test]
#[ignore = "needs root netns: cargo test -p lab --test dual_stack -- --ignored"]
fn an_empty_ipv6_block_is_released_and_a_leaving_node_is_gone_in_both_families() {
    // /126 IPv6 blocks (4 addresses), released 1 s after they empty.
    let spec = LabSpec::nodes(3)
        .dual_stack()
        .env("CALICO_IPV4POOL_CIDR", POOL)
        .env("CALICO_IPV6POOL_CIDR", POOL_V6)
        .env("CALICO_IPV6POOL_BLOCK_SIZE", "126")
        .env("CALICO_IPAM_EMPTY_BLOCK_GRACE", "1");
    let mut c = Cluster::start(spec).expect("lab");
    let pods: Vec<usize> = (0..5)
        .map(|k| c.add_pod(0, &format!("a{k}")).expect("pod"))
        .collect();
    let block126 = |c: &Cluster, p: usize| {
        Ipv6Net::new(ip6_of(c, p), 126)
            .expect("prefix")
            .trunc()
            .to_string()
    };
    let first = block126(&c, pods[0]);
    let later: Vec<usize> = pods
        .iter()
        .copied()
        .filter(|p| block126(&c, *p) != first)
        .collect();
    assert!(!later.is_empty(), "five pods in one /126?");
    let second = block126(&c, later[0]);
    let via1 = c.nodes[0].ip6().expect("dual-stack node").to_string();
    wait_route6(&c, 1, &format!("{second} via {via1} dev eth0 proto bird"));

    // The second block's pods go: the block is released, its routes gone everywhere.
    for p in later.iter().rev() {
        c.delete_pod(*p).expect("DEL");
    }
    for n in 0..3 {
        assert!(
            wait_until(WAIT, || !c.nodes[n].has_route_v6(&format!("{second} "))),
            "{} still routes the released {second}: {:#?}",
            c.nodes[n].name,
            c.nodes[n].routes_v6()
        );
    }
    wait_route6(&c, 1, &format!("{first} via {via1} dev eth0 proto bird"));

    // node3 leaves: stopped and deleted, it is gone from node status and its blocks of
    // both families from the others' kernels.
    let p3 = c.add_pod(2, "c0").expect("pod on node3");
    let (block3, block3_v6) = (
        Ipv4Net::new(c.pods[p3].ip, 26)
            .expect("prefix")
            .trunc()
            .to_string(),
        block126(&c, p3),
    );
    let via3 = c.nodes[2].ip6().expect("dual-stack node").to_string();
    wait_route6(
        &c,
        0,
        &format!("{block3_v6} via {via3} dev eth0 proto bird"),
    );
    c.stop_agent(2);
    let del = c
        .calicoctl(0, &["delete", "node", "node3"])
        .expect("calicoctl");
    assert!(del.status.success(), "{}", text(&del));
    let mut status = String::new();
    assert!(
        wait_until(WAIT, || {
            status = text(&c.calicoctl(0, &["node", "status"]).expect("calicoctl"));
            !status.contains(&via3) && !status.contains(c.nodes[2].ip())
        }),
        "node3 still in node status:\n{status}"
    );
    assert!(
        wait_until(WAIT, || !c.nodes[0].has_route_v6(&format!("{block3_v6} "))
            && !c.nodes[0].has_route(&format!("{block3} "))),
        "node1 still routes node3's blocks: {:#?} {:#?}",
        c.nodes[0].routes(),
        c.nodes[0].routes_v6()
    );
}
