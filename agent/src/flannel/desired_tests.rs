use super::*;

fn net(s: &str) -> Ipv4Net {
    s.parse().expect("test cidr")
}

fn ip(s: &str) -> Ipv4Addr {
    s.parse().expect("test ip")
}

fn config(json: &str) -> NetworkConfig {
    NetworkConfig::parse(json.as_bytes()).expect("test config")
}

fn me() -> Identity {
    Identity {
        node: "node1".into(),
        public_ip: ip("10.0.0.1"),
        iface: "eth0".into(),
        iface_net: net("10.0.0.1/24"),
        iface_mtu: 1500,
        vtep_mac: [0x16, 0xe0, 0xb5, 0x75, 0x8c, 0x4b],
    }
}

fn lease(subnet: &str, attrs: LeaseAttrs) -> (Ipv4Net, SubnetLease) {
    let subnet = net(subnet);
    (
        subnet,
        SubnetLease {
            subnet,
            attrs,
            lease: Some(1),
            mod_revision: 1,
        },
    )
}

const MAC2: [u8; 6] = [0x0e, 0x46, 0x36, 0xac, 0xf6, 0xd6];
const MAC3: [u8; 6] = [0x92, 0x40, 0x07, 0x4d, 0xbf, 0xcc];

fn three_vxlan_leases() -> BTreeMap<Ipv4Net, SubnetLease> {
    BTreeMap::from([
        lease(
            "10.244.1.0/24",
            LeaseAttrs::vxlan(ip("10.0.0.1"), 1, me().vtep_mac),
        ),
        lease("10.244.2.0/24", LeaseAttrs::vxlan(ip("10.0.0.2"), 1, MAC2)),
        lease("10.244.3.0/24", LeaseAttrs::vxlan(ip("10.0.1.3"), 1, MAC3)),
    ])
}

fn routes(d: &FlannelDesired) -> Vec<String> {
    d.state.routes.values().map(ToString::to_string).collect()
}

#[test]
fn vxlan_gives_the_device_and_per_peer_neighbour_fdb_and_onlink_route() {
    let cfg = config(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#);
    let leases = three_vxlan_leases();
    let d = desired_state(&FlannelInput {
        config: &cfg,
        me: &me(),
        own: net("10.244.1.0/24"),
        leases: &leases,
        ip_masq: false,
    });
    assert_eq!(
        d.state.vxlan_devices,
        vec![VxlanDevice {
            name: "flannel.1".into(),
            vni: 1,
            port: 8472,
            parent: "eth0".into(),
            local: ip("10.0.0.1").into(),
            mac: me().vtep_mac,
            mtu: 1450,
            address: Some(ip("10.244.1.0").into()),
        }]
    );
    assert_eq!(
        routes(&d),
        vec![
            "10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink",
            "10.244.3.0/24 via 10.244.3.0 dev flannel.1 onlink",
        ]
    );
    assert_eq!(
        d.state.neighbours.iter().cloned().collect::<Vec<_>>(),
        vec![
            Neighbour {
                dev: "flannel.1".into(),
                ip: ip("10.244.2.0").into(),
                mac: MAC2
            },
            Neighbour {
                dev: "flannel.1".into(),
                ip: ip("10.244.3.0").into(),
                mac: MAC3
            },
        ]
    );
    assert_eq!(
        d.state.fdb.iter().cloned().collect::<Vec<_>>(),
        vec![
            FdbEntry {
                dev: "flannel.1".into(),
                mac: MAC2,
                dst: ip("10.0.0.2").into()
            },
            FdbEntry {
                dev: "flannel.1".into(),
                mac: MAC3,
                dst: ip("10.0.1.3").into()
            },
        ]
    );
    assert!(d.state.routes.values().all(|r| r.protocol == PROTO_BOOT));
    assert_eq!(
        d.state.managed_cidrs,
        vec![ipnet::IpNet::V4(net("10.244.0.0/16"))]
    );
    assert!(d.ignored.is_empty(), "{:?}", d.ignored);
}

#[test]
fn vni_port_and_mtu_come_from_the_config() {
    let cfg = config(
        r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":42,"Port":4789,"MTU":1400}}"#,
    );
    let leases = BTreeMap::from([lease(
        "10.244.2.0/24",
        LeaseAttrs::vxlan(ip("10.0.0.2"), 42, MAC2),
    )]);
    let d = desired_state(&FlannelInput {
        config: &cfg,
        me: &me(),
        own: net("10.244.1.0/24"),
        leases: &leases,
        ip_masq: false,
    });
    let dev = &d.state.vxlan_devices[0];
    assert_eq!(
        (dev.name.as_str(), dev.vni, dev.port, dev.mtu),
        ("flannel.42", 42, 4789, 1400)
    );
    assert_eq!(
        routes(&d),
        vec!["10.244.2.0/24 via 10.244.2.0 dev flannel.42 onlink"]
    );
}

#[test]
fn direct_routing_routes_same_subnet_peers_without_encapsulation() {
    let cfg =
        config(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","DirectRouting":true}}"#);
    let leases = three_vxlan_leases();
    let d = desired_state(&FlannelInput {
        config: &cfg,
        me: &me(),
        own: net("10.244.1.0/24"),
        leases: &leases,
        ip_masq: false,
    });
    assert_eq!(
        routes(&d),
        vec![
            "10.244.2.0/24 via 10.0.0.2 dev eth0",
            "10.244.3.0/24 via 10.244.3.0 dev flannel.1 onlink",
        ]
    );
    // Only the encapsulated peer needs neighbour and FDB entries.
    assert_eq!(d.state.neighbours.len(), 1);
    assert_eq!(d.state.fdb.len(), 1);
}

#[test]
fn host_gw_routes_via_the_peers_public_ip_and_skips_non_adjacent_peers() {
    let cfg = config(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}"#);
    let leases = BTreeMap::from([
        lease("10.244.1.0/24", LeaseAttrs::host_gw(ip("10.0.0.1"))),
        lease("10.244.2.0/24", LeaseAttrs::host_gw(ip("10.0.0.2"))),
        lease("10.244.3.0/24", LeaseAttrs::host_gw(ip("10.0.1.3"))),
    ]);
    let d = desired_state(&FlannelInput {
        config: &cfg,
        me: &me(),
        own: net("10.244.1.0/24"),
        leases: &leases,
        ip_masq: false,
    });
    assert!(d.state.vxlan_devices.is_empty());
    assert!(d.state.neighbours.is_empty() && d.state.fdb.is_empty());
    assert_eq!(routes(&d), vec!["10.244.2.0/24 via 10.0.0.2 dev eth0"]);
    assert!(d.ignored[&net("10.244.3.0/24")].contains("L2"));
    assert_eq!(
        d.state.managed_cidrs,
        vec![ipnet::IpNet::V4(net("10.244.0.0/16"))]
    );
    assert_eq!(backend_mtu(&cfg, 1500), 1500);
}

#[test]
fn leases_that_cannot_be_programmed_are_ignored_with_a_reason() {
    let cfg = config(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}"#);
    let mut bad_mac = LeaseAttrs::vxlan(ip("10.0.0.6"), 1, MAC2);
    bad_mac.backend_data = Some(serde_json::json!({"VNI": 1, "VtepMAC": "zz"}));
    let leases = BTreeMap::from([
        // A stale lease of ours under another subnet.
        lease("10.244.9.0/24", LeaseAttrs::vxlan(ip("10.0.0.1"), 1, MAC2)),
        // A host-gw node while we run vxlan (mid-switch).
        lease("10.244.4.0/24", LeaseAttrs::host_gw(ip("10.0.0.4"))),
        // From an older config, outside today's network.
        lease("10.245.5.0/24", LeaseAttrs::vxlan(ip("10.0.0.5"), 1, MAC3)),
        lease("10.244.6.0/24", bad_mac),
        // Overlapping ours (a different SubnetLen).
        lease("10.244.0.0/23", LeaseAttrs::vxlan(ip("10.0.0.7"), 1, MAC3)),
    ]);
    let d = desired_state(&FlannelInput {
        config: &cfg,
        me: &me(),
        own: net("10.244.1.0/24"),
        leases: &leases,
        ip_masq: false,
    });
    assert!(d.state.routes.is_empty(), "{:?}", routes(&d));
    assert!(d.state.neighbours.is_empty() && d.state.fdb.is_empty());
    let reasons: Vec<(String, String)> = d
        .ignored
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    assert_eq!(reasons.len(), 5, "{reasons:?}");
    assert!(d.ignored[&net("10.244.9.0/24")].contains("own PublicIP"));
    assert!(d.ignored[&net("10.244.4.0/24")].contains("host-gw"));
    assert!(d.ignored[&net("10.245.5.0/24")].contains("outside Network"));
    assert!(d.ignored[&net("10.244.6.0/24")].contains("VtepMAC"));
    assert!(d.ignored[&net("10.244.0.0/23")].contains("overlaps"));
}

#[test]
fn a_node_alone_still_gets_its_device() {
    let cfg = config(r#"{"Network":"10.244.0.0/16"}"#);
    let d = desired_state(&FlannelInput {
        config: &cfg,
        me: &me(),
        own: net("10.244.7.0/24"),
        leases: &BTreeMap::new(),
        ip_masq: false,
    });
    assert_eq!(d.state.vxlan_devices.len(), 1);
    assert_eq!(
        d.state.vxlan_devices[0].address,
        Some(ip("10.244.7.0").into())
    );
    assert!(d.state.routes.is_empty());
}

#[test]
fn own_attrs_follow_the_backend_and_the_mac_is_stable_and_local() {
    let vx = config(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":3}}"#);
    let a = own_attrs(&vx, &me());
    assert_eq!(a.backend_type, "vxlan");
    assert_eq!(a.vtep_mac(), Some(me().vtep_mac));
    let hg = config(r#"{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}"#);
    assert_eq!(own_attrs(&hg, &me()), LeaseAttrs::host_gw(ip("10.0.0.1")));
    let m = vtep_mac_for("node1");
    assert_eq!(m, vtep_mac_for("node1"));
    assert_ne!(m, vtep_mac_for("node2"));
    assert_eq!(m[0] & 0x03, 0x02, "locally administered unicast");
}

#[test]
fn ip_masq_masquerades_the_network_and_merges_with_pool_nat() {
    let cfg = config(r#"{"Network":"10.244.0.0/16"}"#);
    let (me, leases) = (me(), BTreeMap::new());
    let input = |ip_masq| FlannelInput {
        config: &cfg,
        me: &me,
        own: net("10.244.1.0/24"),
        leases: &leases,
        ip_masq,
    };
    assert_eq!(desired_state(&input(false)).state.nat, None);
    let nat = desired_state(&input(true)).state.nat.expect("nat");
    assert_eq!(nat, ip_masq_nat(&cfg));
    assert_eq!(
        nat.masq_pools,
        BTreeSet::from([ipnet::IpNet::V4(net("10.244.0.0/16"))])
    );
    // Merged with a Calico pool's natOutgoing.
    let mut pools = Some(NatOutgoing {
        masq_pools: BTreeSet::from([ipnet::IpNet::V4(net("192.168.0.0/16"))]),
        all_pools: BTreeSet::from([ipnet::IpNet::V4(net("192.168.0.0/16"))]),
        snat_to: None,
    });
    crate::calc::nat::merge(&mut pools, Some(&nat));
    let merged = pools.expect("nat");
    assert_eq!(merged.masq_pools.len(), 2);
    assert_eq!(merged.all_pools.len(), 2);
    let mut none = None;
    crate::calc::nat::merge(&mut none, None);
    assert_eq!(none, None);
    crate::calc::nat::merge(&mut none, Some(&nat));
    assert_eq!(none, Some(nat));
}
