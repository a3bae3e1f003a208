use std::collections::BTreeMap;

use datastore::model::{AsNumber, BGPPeerSpec, BgpPassword, NextHopMode, SecretKeyRef};

use super::super::fixtures::*;
use super::*;

fn no_secrets(r: &SecretKeyRef) -> Result<String, String> {
    Err(format!("no secret {}/{}", r.name, r.key))
}

fn sessions(state: &ClusterState, node: &str) -> BTreeMap<SocketAddr, DesiredPeer> {
    desired_peers(&PeerInput {
        state,
        node,
        secrets: &no_secrets,
    })
}

/// The sessions by peer address, for cases with one port per address.
fn peers(state: &ClusterState, node: &str) -> BTreeMap<IpAddr, DesiredPeer> {
    let all = sessions(state, node);
    let by_ip: BTreeMap<IpAddr, DesiredPeer> =
        all.iter().map(|(a, p)| (a.ip(), p.clone())).collect();
    assert_eq!(by_ip.len(), all.len(), "two ports to one address: {all:#?}");
    by_ip
}

fn names(peers: &BTreeMap<IpAddr, DesiredPeer>) -> Vec<String> {
    peers.values().map(|p| p.name.clone()).collect()
}

fn three_nodes() -> ClusterState {
    cluster(
        vec![
            node("n1", "10.0.0.1/24"),
            node("n2", "10.0.0.2/24"),
            node("n3", "10.0.0.3/24"),
        ],
        vec![],
    )
}

#[test]
fn mesh_peers_with_every_other_node_and_dials_only_higher_addresses() {
    let s = three_nodes();
    let p = peers(&s, "n2");
    assert_eq!(names(&p), vec!["Mesh_10_0_0_1", "Mesh_10_0_0_3"]);
    let to_n1 = &p[&"10.0.0.1".parse::<IpAddr>().expect("ip")];
    let to_n3 = &p[&"10.0.0.3".parse::<IpAddr>().expect("ip")];
    assert!(!to_n1.passive, "n1 < n2: n1 waits, n2 dials");
    assert!(to_n3.passive, "n3 > n2: n2 waits for n3");
    assert_eq!((to_n1.local_as, to_n1.remote_as), (64512, 64512));
    assert_eq!(to_n1.kind.label(), "node-to-node mesh");
    assert_eq!(to_n1.restart_time, DEFAULT_RESTART_TIME);
    assert_eq!(to_n1.address.port(), 179);
}

#[test]
fn ipv6_only_nodes_mesh_over_their_ipv6_addresses_with_every_node() {
    let s = cluster(
        vec![
            node_v6("n1", "fd00:1::1/64"),
            node_v6("n2", "fd00:1::2/64"),
            node_dual("n3", "10.0.0.3/24", "fd00:1::3/64"),
        ],
        vec![],
    );
    let p = peers(&s, "n2");
    assert_eq!(names(&p), vec!["Mesh_fd00_1__1", "Mesh_fd00_1__3"]);
    let to_n1 = &p[&"fd00:1::1".parse::<IpAddr>().expect("ip")];
    assert_eq!(to_n1.source, Some("fd00:1::2".parse().expect("ip")));
    assert!(!to_n1.passive, "n1 < n2: n2 dials");
    // The dual-stack node meshes with the IPv6-only ones over IPv6 only.
    let p3 = peers(&s, "n3");
    assert_eq!(names(&p3), vec!["Mesh_fd00_1__1", "Mesh_fd00_1__2"]);
}

#[test]
fn mesh_off_with_a_global_tor_peer() {
    let mut s = three_nodes();
    s.bgp_configs
        .insert("default".into(), bgp_config(false, Some(64512)));
    s.bgp_peers.insert(
        "tor".into(),
        peer(
            "tor",
            BGPPeerSpec {
                peer_ip: "10.0.0.254".into(),
                as_number: Some(AsNumber(65001)),
                ..BGPPeerSpec::default()
            },
        ),
    );
    let p = peers(&s, "n1");
    assert_eq!(names(&p), vec!["Global_10_0_0_254"]);
    let tor = p.values().next().expect("tor");
    assert_eq!(
        (tor.local_as, tor.remote_as, tor.passive),
        (64512, 65001, false)
    );
    assert_eq!(tor.kind.label(), "global");
}

#[test]
fn node_specific_peers_apply_only_to_their_node_or_selector() {
    let mut s = three_nodes();
    s.nodes.get_mut("n3").expect("n3").metadata.labels =
        BTreeMap::from([("rack".to_string(), "r2".to_string())]);
    s.bgp_peers.insert(
        "n1-only".into(),
        peer(
            "n1-only",
            BGPPeerSpec {
                node: "n1".into(),
                peer_ip: "192.168.9.1:1179".into(),
                as_number: Some(AsNumber(65010)),
                next_hop_mode: Some(NextHopMode::Keep),
                ..BGPPeerSpec::default()
            },
        ),
    );
    s.bgp_peers.insert(
        "rack2".into(),
        peer(
            "rack2",
            BGPPeerSpec {
                node_selector: "rack == 'r2'".into(),
                peer_ip: "192.168.9.2".into(),
                as_number: Some(AsNumber(65020)),
                ..BGPPeerSpec::default()
            },
        ),
    );
    let p1 = peers(&s, "n1");
    let special = &p1[&"192.168.9.1".parse::<IpAddr>().expect("ip")];
    assert_eq!(special.address.port(), 1179);
    assert_eq!(special.next_hop, NextHopMode::Keep);
    assert_eq!(special.name, "Node_192_168_9_1_port_1179");
    assert_eq!(special.kind.label(), "node specific");
    assert!(!p1.contains_key(&"192.168.9.2".parse::<IpAddr>().expect("ip")));
    let p3 = peers(&s, "n3");
    assert!(p3.contains_key(&"192.168.9.2".parse::<IpAddr>().expect("ip")));
    assert!(!p3.contains_key(&"192.168.9.1".parse::<IpAddr>().expect("ip")));
}

/// Node `rr` (labelled `route-reflector=true`, cluster id 244.0.0.1) and clients c1, c2;
/// mesh off.
fn reflector_and_two_clients() -> ClusterState {
    let mut s = cluster(
        vec![
            node("rr", "10.0.0.10/24"),
            node("c1", "10.0.0.1/24"),
            node("c2", "10.0.0.2/24"),
        ],
        vec![],
    );
    let rr = s.nodes.get_mut("rr").expect("rr");
    rr.metadata.labels = BTreeMap::from([("route-reflector".to_string(), "true".to_string())]);
    rr.spec
        .bgp
        .as_mut()
        .expect("bgp")
        .route_reflector_cluster_id = Some("244.0.0.1".into());
    s.bgp_configs
        .insert("default".into(), bgp_config(false, None));
    s
}

#[test]
fn route_reflector_leaves_the_mesh_and_treats_selected_nodes_as_clients() {
    let mut s = reflector_and_two_clients();
    s.bgp_peers.insert(
        "peer-with-rr".into(),
        peer(
            "peer-with-rr",
            BGPPeerSpec {
                node_selector: "all()".into(),
                peer_selector: "route-reflector == 'true'".into(),
                ..BGPPeerSpec::default()
            },
        ),
    );
    s.bgp_peers.insert(
        "rr-to-clients".into(),
        peer(
            "rr-to-clients",
            BGPPeerSpec {
                node_selector: "route-reflector == 'true'".into(),
                peer_selector: "!has(route-reflector)".into(),
                ..BGPPeerSpec::default()
            },
        ),
    );
    let at_rr = peers(&s, "rr");
    assert_eq!(names(&at_rr), vec!["Node_10_0_0_1", "Node_10_0_0_2"]);
    assert!(at_rr.values().all(|p| p.rr_client));
    let at_c1 = peers(&s, "c1");
    assert_eq!(names(&at_c1), vec!["Node_10_0_0_10"]);
    assert!(!at_c1.values().any(|p| p.rr_client));
}

#[test]
fn mesh_skips_route_reflectors_even_when_on() {
    let mut s = three_nodes();
    s.nodes
        .get_mut("n3")
        .and_then(|n| n.spec.bgp.as_mut())
        .expect("bgp")
        .route_reflector_cluster_id = Some("1.1.1.1".into());
    assert_eq!(names(&peers(&s, "n1")), vec!["Mesh_10_0_0_2"]);
    assert!(peers(&s, "n3").is_empty());
}

#[test]
fn node_as_overrides_the_global_default() {
    let mut s = three_nodes();
    s.bgp_configs
        .insert("default".into(), bgp_config(true, Some(64513)));
    s.nodes
        .get_mut("n2")
        .and_then(|n| n.spec.bgp.as_mut())
        .expect("bgp")
        .as_number = Some(AsNumber(64514));
    let p = peers(&s, "n1");
    let to_n2 = &p[&"10.0.0.2".parse::<IpAddr>().expect("ip")];
    assert_eq!((to_n2.local_as, to_n2.remote_as), (64513, 64514));
}

#[test]
fn one_peer_with_route_reflectors_resource_peers_both_ways() {
    let mut s = reflector_and_two_clients();
    s.bgp_peers.insert(
        "peer-with-route-reflectors".into(),
        peer(
            "peer-with-route-reflectors",
            BGPPeerSpec {
                node_selector: "all()".into(),
                peer_selector: "route-reflector == 'true'".into(),
                ..BGPPeerSpec::default()
            },
        ),
    );
    let at_rr = peers(&s, "rr");
    assert_eq!(names(&at_rr), vec!["Node_10_0_0_1", "Node_10_0_0_2"]);
    assert!(at_rr.values().all(|p| p.rr_client));
    assert_eq!(names(&peers(&s, "c2")), vec!["Node_10_0_0_10"]);
}

fn password_ref(name: &str, key: &str) -> BgpPassword {
    BgpPassword {
        secret_key_ref: Some(SecretKeyRef {
            name: name.into(),
            key: key.into(),
        }),
    }
}

#[test]
fn two_bgp_peers_to_one_address_on_two_ports_are_two_sessions() {
    // Calico's corpus case explicit_peering/global: peerIP 10.0.0.9 and 10.0.0.9:166.
    let mut s = three_nodes();
    for (name, ip) in [("a", "10.0.0.9"), ("b", "10.0.0.9:166")] {
        s.bgp_peers.insert(
            name.into(),
            peer(
                name,
                BGPPeerSpec {
                    peer_ip: ip.into(),
                    as_number: Some(AsNumber(65001)),
                    ..BGPPeerSpec::default()
                },
            ),
        );
    }
    let p = sessions(&s, "n1");
    let to_9: Vec<(u16, &str)> = p
        .iter()
        .filter(|(a, _)| a.ip().to_string() == "10.0.0.9")
        .map(|(a, d)| (a.port(), d.name.as_str()))
        .collect();
    assert_eq!(
        to_9,
        [(166, "Global_10_0_0_9_port_166"), (179, "Global_10_0_0_9")]
    );
}

#[test]
fn a_peer_whose_password_cannot_be_read_is_held_down_not_peered_without_it() {
    let mut s = three_nodes();
    s.bgp_peers.insert(
        "tor".into(),
        peer(
            "tor",
            BGPPeerSpec {
                peer_ip: "10.0.0.254".into(),
                as_number: Some(AsNumber(65001)),
                password: Some(password_ref("tor-auth", "password")),
                ..BGPPeerSpec::default()
            },
        ),
    );
    let p = peers(&s, "n1");
    let tor = &p[&"10.0.0.254".parse::<IpAddr>().expect("ip")];
    assert_eq!(tor.password, None);
    assert_eq!(
        tor.held_down.as_deref(),
        Some("password unavailable: no secret tor-auth/password")
    );
    // The mesh sessions, which have no password configured, are not held.
    assert!(
        p.values()
            .filter(|d| d.kind == PeerKind::Mesh)
            .all(|d| d.held_down.is_none())
    );
}

#[test]
fn a_readable_mesh_password_signs_every_mesh_session() {
    let mut s = three_nodes();
    let mut cfg = bgp_config(true, Some(64512));
    cfg.spec.node_mesh_password = Some(password_ref("mesh", "pw"));
    s.bgp_configs.insert("default".into(), cfg);
    let secrets = |r: &SecretKeyRef| Ok::<_, String>(format!("{}-{}-secret", r.name, r.key));
    let p = desired_peers(&PeerInput {
        state: &s,
        node: "n1",
        secrets: &secrets,
    });
    assert_eq!(p.len(), 2);
    for d in p.values() {
        assert_eq!(d.password.as_deref(), Some("mesh-pw-secret"));
        assert_eq!(d.held_down, None);
    }
}
