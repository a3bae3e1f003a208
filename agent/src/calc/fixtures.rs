//! Builders for the calculation tests: a cluster of nodes, pools and blocks in a few lines.

use std::collections::BTreeMap;

use datastore::model::ipam::{AffinityState, AllocationAttribute, AllocationBlock, BlockAffinity};
use datastore::model::{
    AsNumber, BGPConfiguration, BGPConfigurationSpec, BGPPeer, BGPPeerSpec, EncapMode, IPPool,
    IPPoolSpec, Node, NodeBgpSpec, NodeSpec, Object, WorkloadEndpoint, WorkloadEndpointSpec,
};
use ipnet::IpNet;

use crate::local::LocalNode;
use crate::state::ClusterState;

pub fn cidr(s: &str) -> IpNet {
    s.parse().expect("test cidr")
}

pub fn local(name: &str, address: &str) -> LocalNode {
    LocalNode {
        name: name.into(),
        address: Some(address.parse().expect("test address")),
        interface: "eth0".into(),
        host_mtu: 1500,
        ipv6: None,
    }
}

pub fn node(name: &str, address: &str) -> Node {
    Object::new(
        name,
        NodeSpec {
            bgp: Some(NodeBgpSpec {
                ipv4_address: Some(address.into()),
                ..NodeBgpSpec::default()
            }),
            ..NodeSpec::default()
        },
    )
}

pub fn pool(name: &str, range: &str, ipip: EncapMode, vxlan: EncapMode) -> IPPool {
    let mut p = Object::new(
        name,
        IPPoolSpec {
            cidr: range.into(),
            ipip_mode: ipip,
            vxlan_mode: vxlan,
            block_size: 26,
            node_selector: "all()".into(),
            ..IPPoolSpec::default()
        },
    );
    p.metadata.labels = BTreeMap::new();
    p
}

pub fn peer(name: &str, spec: BGPPeerSpec) -> BGPPeer {
    Object::new(name, spec)
}

pub fn bgp_config(mesh: bool, asn: Option<u32>) -> BGPConfiguration {
    Object::new(
        "default",
        BGPConfigurationSpec {
            node_to_node_mesh_enabled: Some(mesh),
            as_number: asn.map(AsNumber),
            ..BGPConfigurationSpec::default()
        },
    )
}

/// A cluster with the given nodes and pools and nothing else.
pub fn cluster(nodes: Vec<Node>, pools: Vec<IPPool>) -> ClusterState {
    let mut s = ClusterState::default();
    for n in nodes {
        s.nodes.insert(n.name().to_string(), n);
    }
    for p in pools {
        s.pools.insert(p.name().to_string(), p);
    }
    s
}

/// Gives `node` a block in the given affinity state.
pub fn claim(s: &mut ClusterState, node: &str, block: &str, state: AffinityState) {
    let b = cidr(block);
    s.blocks
        .insert(b, AllocationBlock::new(b, Some(node), None));
    s.affinities.insert(
        (node.to_string(), b),
        BlockAffinity {
            state,
            deleted: false,
        },
    );
}

/// Marks ordinal `ord` of `block` allocated to a workload on `host`.
pub fn allocate(s: &mut ClusterState, block: &str, ord: usize, host: &str) {
    let b = s.blocks.get_mut(&cidr(block)).expect("block exists");
    b.attributes.push(AllocationAttribute {
        handle_id: Some(format!("k8s-pod-network.{host}-{ord}")),
        secondary: BTreeMap::from([
            ("node".to_string(), host.to_string()),
            ("namespace".to_string(), "default".to_string()),
            ("pod".to_string(), format!("{host}-{ord}")),
        ]),
    });
    b.allocations[ord] = Some(b.attributes.len() - 1);
    b.unallocated.retain(|o| *o != ord);
}

/// A workload endpoint on `node` with `ip` behind `iface`.
pub fn workload(s: &mut ClusterState, node: &str, name: &str, ip: &str, iface: &str) {
    let wep: WorkloadEndpoint = Object::new(
        name,
        WorkloadEndpointSpec {
            node: node.into(),
            ip_networks: vec![format!("{ip}/{}", if ip.contains(':') { 128 } else { 32 })],
            interface_name: iface.into(),
            ..WorkloadEndpointSpec::default()
        },
    );
    s.workloads.insert(format!("default/{name}"), wep);
}

/// A dual-stack node: IPv4 and IPv6 BGP addresses.
pub fn node_dual(name: &str, address: &str, address_v6: &str) -> Node {
    let mut n = node(name, address);
    if let Some(bgp) = n.spec.bgp.as_mut() {
        bgp.ipv6_address = Some(address_v6.into());
    }
    n
}

/// An IPv6-only node (`IP=none`): an IPv6 BGP address only.
pub fn node_v6(name: &str, address_v6: &str) -> Node {
    let mut n = node_dual(name, "", address_v6);
    if let Some(bgp) = n.spec.bgp.as_mut() {
        bgp.ipv4_address = None;
    }
    n
}

/// An IPv6 pool with Calico's default block size, 122.
pub fn pool_v6(name: &str, range: &str) -> IPPool {
    let mut p = pool(name, range, EncapMode::Never, EncapMode::Never);
    p.spec.block_size = 122;
    p
}

/// This node with an IPv6 address on eth0 as well.
pub fn local_dual(name: &str, address: &str, address_v6: &str) -> LocalNode {
    LocalNode {
        ipv6: Some(crate::local::LocalV6 {
            address: address_v6.parse().expect("test address"),
            interface: "eth0".into(),
        }),
        ..local(name, address)
    }
}
