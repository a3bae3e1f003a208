use std::collections::BTreeMap;

use datastore::model::EncapMode::{Always, CrossSubnet, Never};
use datastore::model::ipam::AffinityState;

use super::super::fixtures::*;
use super::super::tunnels::derived_vtep_mac;
use super::*;

fn routes(input: &RouteInput<'_>) -> Vec<String> {
    desired_state(input)
        .routes
        .values()
        .map(ToString::to_string)
        .collect()
}

/// n1 and n2 on 10.0.0.0/24, n3 on 10.0.1.0/24, one pool.
fn two_subnets(pool: datastore::model::IPPool) -> ClusterState {
    cluster(
        vec![
            node("n1", "10.0.0.1/24"),
            node("n2", "10.0.0.2/24"),
            node("n3", "10.0.1.3/24"),
        ],
        vec![pool],
    )
}

fn learned(entries: &[(&str, &str)]) -> LearnedRoutes {
    entries
        .iter()
        .map(|(p, nh)| (p.parse().expect("prefix"), nh.parse().expect("next hop")))
        .collect()
}

#[test]
fn bgp_mode_blackholes_own_blocks_routes_pods_and_learned_blocks() {
    let mut s = cluster(
        vec![node("n1", "10.1.10.9/24"), node("n2", "10.1.10.10/24")],
        vec![pool("p", "10.100.0.0/16", Never, Never)],
    );
    claim(&mut s, "n1", "10.100.84.128/26", AffinityState::Confirmed);
    claim(&mut s, "n2", "10.100.247.0/26", AffinityState::Confirmed);
    workload(&mut s, "n1", "pod-a", "10.100.84.128", "califee22f61266");
    workload(&mut s, "n2", "pod-b", "10.100.247.0", "cali8de5ff87b7c");
    let me = local("n1", "10.1.10.9/24");
    let learned = learned(&[("10.100.247.0/26", "10.1.10.10")]);
    let input = RouteInput {
        state: &s,
        local: &me,
        backend: Backend::Bgp,
        learned: &learned,
    };
    // Exactly node-1's table in the reference lab transcript.
    assert_eq!(
        routes(&input),
        vec![
            "blackhole 10.100.84.128/26 proto bird",
            "10.100.84.128 dev califee22f61266 scope link",
            "10.100.247.0/26 via 10.1.10.10 dev eth0 proto bird",
        ]
    );
    assert_eq!(desired_state(&input).ipip, None);
    assert!(desired_state(&input).vxlan_devices.is_empty());
}

#[test]
fn a_learned_host_route_never_replaces_a_local_pods_route() {
    let mut s = cluster(
        vec![node("n1", "10.1.10.9/24"), node("n2", "10.1.10.10/24")],
        vec![pool("p", "10.100.0.0/16", Never, Never)],
    );
    claim(&mut s, "n1", "10.100.84.128/26", AffinityState::Confirmed);
    workload(&mut s, "n1", "pod-a", "10.100.84.128", "califee22f61266");
    let me = local("n1", "10.1.10.9/24");
    // n2 (or a router) announces the /32 of n1's pod, and a borrowed /32 of n1's block.
    let learned = learned(&[
        ("10.100.84.128/32", "10.1.10.10"),
        ("10.100.84.130/32", "10.1.10.10"),
    ]);
    let input = RouteInput {
        state: &s,
        local: &me,
        backend: Backend::Bgp,
        learned: &learned,
    };
    assert_eq!(
        routes(&input),
        vec![
            "blackhole 10.100.84.128/26 proto bird",
            "10.100.84.128 dev califee22f61266 scope link",
            "10.100.84.130 via 10.1.10.10 dev eth0 proto bird",
        ]
    );
}

#[test]
fn pending_and_deleting_claims_are_not_blackholed() {
    let mut s = cluster(vec![node("n1", "10.0.0.1/24")], vec![]);
    claim(&mut s, "n1", "10.100.0.0/26", AffinityState::Pending);
    claim(
        &mut s,
        "n1",
        "10.100.0.64/26",
        AffinityState::PendingDeletion,
    );
    let me = local("n1", "10.0.0.1/24");
    let input = RouteInput {
        state: &s,
        local: &me,
        backend: Backend::Bgp,
        learned: &LearnedRoutes::new(),
    };
    assert!(routes(&input).is_empty());
}

#[test]
fn ipip_always_routes_through_tunl0_onlink() {
    let mut s = cluster(
        vec![node("n1", "10.0.0.1/24"), node("n2", "10.0.0.2/24")],
        vec![pool("p", "10.244.0.0/16", Always, Never)],
    );
    s.nodes
        .get_mut("n1")
        .and_then(|n| n.spec.bgp.as_mut())
        .expect("bgp")
        .ipv4_ipip_tunnel_addr = Some("10.244.1.0".into());
    let me = local("n1", "10.0.0.1/24");
    let learned = learned(&[("10.244.2.0/26", "10.0.0.2")]);
    let input = RouteInput {
        state: &s,
        local: &me,
        backend: Backend::Bgp,
        learned: &learned,
    };
    assert_eq!(
        routes(&input),
        vec!["10.244.2.0/26 via 10.0.0.2 dev tunl0 onlink proto bird"]
    );
    let dev = desired_state(&input).ipip.expect("tunl0 wanted");
    assert_eq!(dev.mtu, 1480);
    assert_eq!(dev.address, Some("10.244.1.0".parse().expect("ip")));
}

#[test]
fn ipip_cross_subnet_encapsulates_only_towards_other_subnets() {
    let s = two_subnets(pool("p", "10.244.0.0/16", CrossSubnet, Never));
    let me = local("n1", "10.0.0.1/24");
    let learned = learned(&[("10.244.2.0/26", "10.0.0.2"), ("10.244.3.0/26", "10.0.1.3")]);
    let input = RouteInput {
        state: &s,
        local: &me,
        backend: Backend::Bgp,
        learned: &learned,
    };
    assert_eq!(
        routes(&input),
        vec![
            "10.244.2.0/26 via 10.0.0.2 dev eth0 proto bird",
            "10.244.3.0/26 via 10.0.1.3 dev tunl0 onlink proto bird",
        ]
    );
}

fn vxlan_cluster(mode: datastore::model::EncapMode) -> ClusterState {
    let mut s = two_subnets(pool("p", "10.244.0.0/16", Never, mode));
    for (n, tun, block) in [
        ("n1", "10.244.1.0", "10.244.1.0/26"),
        ("n2", "10.244.2.0", "10.244.2.0/26"),
        ("n3", "10.244.3.0", "10.244.3.0/26"),
    ] {
        s.nodes
            .get_mut(n)
            .expect("node")
            .spec
            .ipv4_vxlan_tunnel_addr = Some(tun.into());
        claim(&mut s, n, block, AffinityState::Confirmed);
    }
    s
}

#[test]
fn vxlan_always_programs_device_routes_neighbours_and_fdb_per_remote_node() {
    let s = vxlan_cluster(Always);
    let me = local("n1", "10.0.0.1/24");
    // Learned BGP routes for VXLAN pools are ignored: the datastore drives VXLAN.
    let learned = learned(&[("10.244.2.0/26", "10.0.0.2")]);
    let input = RouteInput {
        state: &s,
        local: &me,
        backend: Backend::Bgp,
        learned: &learned,
    };
    let d = desired_state(&input);
    assert_eq!(
        d.routes
            .values()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec![
            "blackhole 10.244.1.0/26 proto bird",
            "10.244.2.0/26 via 10.244.2.0 dev vxlan.calico onlink proto 80",
            "10.244.3.0/26 via 10.244.3.0 dev vxlan.calico onlink proto 80",
        ]
    );
    let dev = &d.vxlan_devices[0];
    assert_eq!((dev.vni, dev.port, dev.mtu), (4096, 4789, 1450));
    assert_eq!(dev.address, Some("10.244.1.0".parse().expect("ip")));
    assert_eq!(dev.mac, derived_vtep_mac("n1", IpFamily::V4));
    assert_eq!(d.neighbours.len(), 2);
    let fdb: BTreeMap<_, _> = d.fdb.iter().map(|e| (e.mac, e.dst.to_string())).collect();
    assert_eq!(
        fdb.get(&derived_vtep_mac("n2", IpFamily::V4))
            .map(String::as_str),
        Some("10.0.0.2")
    );
}

#[test]
fn vxlan_cross_subnet_routes_same_subnet_nodes_directly() {
    let s = vxlan_cluster(CrossSubnet);
    let me = local("n1", "10.0.0.1/24");
    let input = RouteInput {
        state: &s,
        local: &me,
        backend: Backend::Vxlan,
        learned: &LearnedRoutes::new(),
    };
    let d = desired_state(&input);
    assert_eq!(
        d.routes
            .values()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec![
            "blackhole 10.244.1.0/26 proto 80",
            "10.244.2.0/26 via 10.0.0.2 dev eth0 onlink proto 80",
            "10.244.3.0/26 via 10.244.3.0 dev vxlan.calico onlink proto 80",
        ]
    );
    // Only the cross-subnet node needs a neighbour and an FDB entry.
    assert_eq!(d.neighbours.len(), 1);
    assert_eq!(d.fdb.len(), 1);
}

#[test]
fn vxlan_borrowed_addresses_are_routed_to_the_node_running_the_workload() {
    let mut s = vxlan_cluster(Always);
    // n2's block holds an address used by a workload on n3.
    allocate(&mut s, "10.244.2.0/26", 5, "n3");
    let me = local("n1", "10.0.0.1/24");
    let input = RouteInput {
        state: &s,
        local: &me,
        backend: Backend::Vxlan,
        learned: &LearnedRoutes::new(),
    };
    let d = desired_state(&input);
    assert!(
        d.routes
            .values()
            .any(|r| r.to_string() == "10.244.2.5 via 10.244.3.0 dev vxlan.calico onlink proto 80"),
        "{:?}",
        d.routes
    );
}

#[test]
fn vxlan_mode_switched_off_leaves_no_device_or_tunnel_state() {
    let s = vxlan_cluster(Never);
    let me = local("n1", "10.0.0.1/24");
    let input = RouteInput {
        state: &s,
        local: &me,
        backend: Backend::Bgp,
        learned: &LearnedRoutes::new(),
    };
    let d = desired_state(&input);
    assert!(d.vxlan_devices.is_empty() && d.neighbours.is_empty() && d.fdb.is_empty());
}

#[test]
fn a_pool_switched_to_vxlan_keeps_same_subnet_learned_routes_until_the_vteps_are_known() {
    // The pool is VXLAN now, but no node has its tunnel address yet.
    let mut s = two_subnets(pool("p", "10.244.0.0/16", Never, Always));
    let me = local("n1", "10.0.0.1/24");
    let learned = learned(&[("10.244.2.0/26", "10.0.0.2"), ("10.244.3.0/26", "10.0.1.3")]);
    let input = RouteInput {
        state: &s,
        local: &me,
        backend: Backend::Bgp,
        learned: &learned,
    };
    assert_eq!(
        routes(&input),
        vec!["10.244.2.0/26 via 10.0.0.2 dev eth0 proto bird"]
    );
    // Once the VTEPs are there, the VXLAN routes take over.
    s = vxlan_cluster(Always);
    let input = RouteInput {
        state: &s,
        local: &me,
        backend: Backend::Bgp,
        learned: &learned,
    };
    assert_eq!(
        routes(&input),
        vec![
            "blackhole 10.244.1.0/26 proto bird",
            "10.244.2.0/26 via 10.244.2.0 dev vxlan.calico onlink proto 80",
            "10.244.3.0/26 via 10.244.3.0 dev vxlan.calico onlink proto 80",
        ]
    );
}

#[test]
fn learned_changes_bring_the_routes_to_what_a_full_recomputation_gives() {
    for ipip in [Never, Always, CrossSubnet] {
        let mut s = two_subnets(pool("p", "10.100.0.0/16", ipip, Never));
        claim(&mut s, "n1", "10.100.1.0/26", AffinityState::Confirmed);
        workload(&mut s, "n1", "pod-a", "10.100.1.5", "cali0000000000a");
        let me = local("n1", "10.0.0.1/24");
        let before = learned(&[
            ("10.100.2.0/26", "10.0.0.2"),
            ("10.100.3.0/26", "10.0.1.3"),
            ("10.100.4.0/26", "10.0.0.2"),
            ("10.100.1.5/32", "10.0.0.2"),
        ]);
        // New, withdrawn, moved to another next hop, our own pod's /32 and block, ours.
        let after = learned(&[
            ("10.100.2.0/26", "10.0.1.3"),
            ("10.100.3.0/26", "10.0.1.3"),
            ("10.100.5.0/26", "10.0.0.2"),
            ("10.100.1.5/32", "10.0.1.3"),
            ("10.100.1.0/26", "10.0.0.2"),
            ("10.100.6.0/26", "10.0.0.1"),
        ]);
        let input = |learned| RouteInput {
            state: &s,
            local: &me,
            backend: Backend::Bgp,
            learned,
        };
        let mut routes = desired_state(&input(&before)).routes;
        let changes = learned_changes(&input(&after), &before, &routes).expect("per prefix");
        for (prefix, route) in changes {
            match route {
                Some(r) => routes.insert(prefix, r),
                None => routes.remove(&prefix),
            };
        }
        assert_eq!(
            routes,
            desired_state(&input(&after)).routes,
            "ipip {ipip:?}"
        );
    }
}

#[test]
fn under_vxlan_learned_changes_are_left_to_a_full_recomputation() {
    let s = two_subnets(pool("p", "10.100.0.0/16", Never, Always));
    let me = local("n1", "10.0.0.1/24");
    let input = RouteInput {
        state: &s,
        local: &me,
        backend: Backend::Bgp,
        learned: &LearnedRoutes::new(),
    };
    assert_eq!(
        learned_changes(&input, &LearnedRoutes::new(), &BTreeMap::new()),
        None
    );
}

#[test]
fn dual_stack_blackholes_routes_pods_and_learned_blocks_in_both_families() {
    let mut s = cluster(
        vec![
            node_dual("n1", "10.1.10.9/24", "fd00:1::9/64"),
            node_dual("n2", "10.1.10.10/24", "fd00:1::10/64"),
        ],
        vec![
            pool("p", "10.100.0.0/16", Never, Never),
            pool_v6("p6", "fd00:100::/48"),
        ],
    );
    claim(&mut s, "n1", "10.100.84.128/26", AffinityState::Confirmed);
    claim(&mut s, "n1", "fd00:100::/122", AffinityState::Confirmed);
    claim(&mut s, "n2", "fd00:100::40/122", AffinityState::Confirmed);
    workload(&mut s, "n1", "pod-a", "fd00:100::5", "califee22f61266");
    let me = local_dual("n1", "10.1.10.9/24", "fd00:1::9/64");
    let learned = learned(&[
        ("fd00:100::40/122", "fd00:1::10"),
        // Off this node's IPv6 subnet: via the next hop, the kernel picks the device.
        ("fd00:100::80/122", "fd00:2::7"),
        // Our own block, announced by someone else: never replaces the blackhole.
        ("fd00:100::/122", "fd00:1::10"),
        // A next hop of the other family is not a route.
        ("fd00:100::c0/122", "10.1.10.10"),
    ]);
    let input = RouteInput {
        state: &s,
        local: &me,
        backend: Backend::Bgp,
        learned: &learned,
    };
    assert_eq!(
        routes(&input),
        vec![
            "blackhole 10.100.84.128/26 proto bird",
            "blackhole fd00:100::/122 proto bird",
            "fd00:100::5 dev califee22f61266 scope link",
            "fd00:100::40/122 via fd00:1::10 dev eth0 proto bird",
            "fd00:100::80/122 via fd00:2::7 proto bird",
        ]
    );
}

/// n1, n2 on fd00:1::/64 and n3 on fd00:2::/64, an IPv4 pool without encapsulation and
/// an IPv6 pool with VXLAN in `mode`, each node with an IPv6 tunnel address and block.
fn vxlan_v6_cluster(mode: datastore::model::EncapMode) -> ClusterState {
    let mut p6 = pool_v6("p6", "fd00:100::/48");
    p6.spec.vxlan_mode = mode;
    let mut s = cluster(
        vec![
            node_dual("n1", "10.0.0.1/24", "fd00:1::1/64"),
            node_dual("n2", "10.0.0.2/24", "fd00:1::2/64"),
            node_dual("n3", "10.0.1.3/24", "fd00:2::3/64"),
        ],
        vec![pool("p", "10.244.0.0/16", Never, Never), p6],
    );
    for (n, tun, block) in [
        ("n1", "fd00:100::", "fd00:100::/122"),
        ("n2", "fd00:100::40", "fd00:100::40/122"),
        ("n3", "fd00:100::80", "fd00:100::80/122"),
    ] {
        s.nodes
            .get_mut(n)
            .expect("node")
            .spec
            .ipv6_vxlan_tunnel_addr = Some(tun.into());
        claim(&mut s, n, block, AffinityState::Confirmed);
    }
    s
}

#[test]
fn ipv6_vxlan_programs_its_own_device_over_the_ipv6_underlay() {
    let s = vxlan_v6_cluster(Always);
    let me = local_dual("n1", "10.0.0.1/24", "fd00:1::1/64");
    let input = RouteInput {
        state: &s,
        local: &me,
        backend: Backend::Bgp,
        learned: &learned(&[("fd00:100::40/122", "fd00:1::2")]),
    };
    let d = desired_state(&input);
    assert_eq!(
        d.routes
            .values()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        vec![
            "blackhole fd00:100::/122 proto bird",
            "fd00:100::40/122 via fd00:100::40 dev vxlan-v6.calico onlink proto 80",
            "fd00:100::80/122 via fd00:100::80 dev vxlan-v6.calico onlink proto 80",
        ]
    );
    // Only the IPv6 device: no IPv4 pool uses VXLAN.
    assert_eq!(d.vxlan_devices.len(), 1);
    let dev = &d.vxlan_devices[0];
    assert_eq!(dev.name, "vxlan-v6.calico");
    assert_eq!((dev.vni, dev.port, dev.mtu), (4096, 4789, 1430));
    assert_eq!(dev.local, "fd00:1::1".parse::<IpAddr>().expect("ip"));
    assert_eq!(dev.address, Some("fd00:100::".parse().expect("ip")));
    assert_eq!(dev.mac, derived_vtep_mac("n1", IpFamily::V6));
    let neighbours: Vec<String> = d.neighbours.iter().map(|n| n.ip.to_string()).collect();
    assert_eq!(neighbours, vec!["fd00:100::40", "fd00:100::80"]);
    let fdb: BTreeMap<_, _> = d.fdb.iter().map(|e| (e.mac, e.dst.to_string())).collect();
    assert_eq!(
        fdb.get(&derived_vtep_mac("n2", IpFamily::V6))
            .map(String::as_str),
        Some("fd00:1::2")
    );
}

#[test]
fn ipv6_vxlan_cross_subnet_routes_same_ipv6_subnet_nodes_directly() {
    let s = vxlan_v6_cluster(CrossSubnet);
    let me = local_dual("n1", "10.0.0.1/24", "fd00:1::1/64");
    let input = RouteInput {
        state: &s,
        local: &me,
        backend: Backend::Vxlan,
        learned: &LearnedRoutes::new(),
    };
    assert_eq!(
        routes(&input),
        vec![
            "blackhole fd00:100::/122 proto 80",
            "fd00:100::40/122 via fd00:1::2 dev eth0 onlink proto 80",
            "fd00:100::80/122 via fd00:100::80 dev vxlan-v6.calico onlink proto 80",
        ]
    );
}

#[test]
fn a_node_without_ipv6_gets_no_ipv6_vxlan_device() {
    let s = vxlan_v6_cluster(Always);
    let me = local("n1", "10.0.0.1/24");
    let input = RouteInput {
        state: &s,
        local: &me,
        backend: Backend::Bgp,
        learned: &LearnedRoutes::new(),
    };
    assert!(desired_state(&input).vxlan_devices.is_empty());
}
