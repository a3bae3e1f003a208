//! The desired kernel state of this node (after Felix's `l3_route_resolver` and the BIRD
//! kernel-programming filter Calico renders): workload host routes, a blackhole per
//! confirmed affine block, remote blocks learned over BGP (through tunl0 for IPIP pools),
//! VXLAN devices, routes, neighbours and FDB entries from the datastore.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use datastore::model::IpFamily;
use datastore::model::ipam::attr;
use datastore::model::{IPPool, Node, Tunnel};
use ipam::block::ip_at;
use ipnet::IpNet;

use super::tunnels::{
    ipip_in_use, ipip_mtu, vtep_mac, vxlan_in_use, vxlan_in_use_for, vxlan_mtu, vxlan_port,
    vxlan_vni,
};
use super::{Backend, LearnedRoutes};
use crate::dataplane::ownership::{IPIP_DEVICE, VXLAN_DEVICE, VXLAN_DEVICE_V6};
use crate::dataplane::types::{
    DesiredState, FdbEntry, IpipDevice, Neighbour, PROTO_BIRD, PROTO_BOOT, PROTO_CALICO, Route,
    RouteTarget, VxlanDevice,
};
use crate::local::LocalNode;
use crate::maps::changed_keys;
use crate::state::ClusterState;

/// Everything the calculation reads.
pub struct RouteInput<'a> {
    pub state: &'a ClusterState,
    pub local: &'a LocalNode,
    pub backend: Backend,
    /// Best paths learned over BGP (empty without BGP).
    pub learned: &'a LearnedRoutes,
}

/// A remote node as the VXLAN calculation of one family needs it.
struct Vtep {
    node_ip: IpAddr,
    tunnel_ip: IpAddr,
    mac: [u8; 6],
}

/// The node's IPv4 address (without prefix) from `spec.bgp.ipv4Address`.
pub fn node_ip(node: &Node) -> Option<Ipv4Addr> {
    match node.spec.address_of(IpFamily::V4)? {
        IpAddr::V4(ip) => Some(ip),
        IpAddr::V6(_) => None,
    }
}

fn vtep_of(node: &Node, family: IpFamily) -> Option<Vtep> {
    Some(Vtep {
        node_ip: node.spec.address_of(family)?,
        tunnel_ip: node.spec.vxlan_tunnel_addr_of(family)?,
        mac: vtep_mac(node, family),
    })
}

fn pool_network(pool: &IPPool) -> Option<IpNet> {
    pool.spec.cidr.parse::<IpNet>().ok()
}

/// The pools with their networks parsed once, for looking up many prefixes.
struct Pools<'a>(Vec<(IpNet, &'a IPPool)>);

impl<'a> Pools<'a> {
    fn of(state: &'a ClusterState) -> Pools<'a> {
        Pools(
            state
                .pools
                .values()
                .filter_map(|p| Some((pool_network(p)?, p)))
                .collect(),
        )
    }

    /// The first pool (by name) containing `net`.
    fn containing(&self, net: &IpNet) -> Option<&'a IPPool> {
        self.0
            .iter()
            .find(|(cidr, _)| cidr.contains(net))
            .map(|(_, p)| *p)
    }
}

/// The counters of the parts of the cluster state [`desired_state`] reads for `me`: equal
/// counters, same result (for the same learned routes). Other nodes' IPAM writes and
/// endpoints matter only to VXLAN, which routes every node's blocks from the datastore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateReads {
    nodes: u64,
    config: u64,
    ipam: u64,
    workloads: u64,
}

impl StateReads {
    pub fn of(state: &ClusterState, me: &str) -> StateReads {
        let g = state.generations;
        StateReads {
            nodes: g.nodes,
            config: g.config,
            ipam: if vxlan_in_use(state) {
                g.ipam
            } else {
                state.ipam_generation_of(me)
            },
            workloads: state.workloads_generation_of(me),
        }
    }
}

/// Computes the whole desired kernel state.
pub fn desired_state(input: &RouteInput<'_>) -> DesiredState {
    let mut out = DesiredState::default();
    let me = input.local.name.as_str();
    let state = input.state;
    let block_proto = if input.backend == Backend::Bgp {
        PROTO_BIRD
    } else {
        PROTO_CALICO
    };

    // Our own blocks, both families: blackholed so unallocated addresses are dropped
    // here, not bounced back upstream (the /32 and /128 workload routes are more specific).
    let own_blocks = own_blocks(state, me);
    if input.backend != Backend::Flannel {
        for block in &own_blocks {
            out.routes.insert(
                *block,
                Route {
                    dst: *block,
                    target: RouteTarget::Blackhole,
                    protocol: block_proto,
                },
            );
        }
    }

    // Local workloads: `<ip>/32 dev caliX scope link`, `<ip>/128 dev caliX`.
    for wep in state.workloads_on(me) {
        if wep.spec.interface_name.is_empty() {
            continue;
        }
        for net in &wep.spec.ip_networks {
            let Ok(ip) = net.parse::<IpNet>() else {
                continue;
            };
            let dst = IpNet::new(ip.addr(), ip.max_prefix_len()).unwrap_or(ip);
            out.routes.insert(
                dst,
                Route {
                    dst,
                    target: RouteTarget::Device {
                        dev: wep.spec.interface_name.clone(),
                    },
                    protocol: PROTO_BOOT,
                },
            );
        }
    }

    if input.backend == Backend::Bgp {
        add_learned_routes(input, &own_blocks, &mut out);
    }
    if matches!(input.backend, Backend::Bgp | Backend::Vxlan) {
        add_vxlan(input, &mut out);
        add_ipip_device(input, &mut out);
    }
    out.nat = super::nat::desired_nat(state, me, IpFamily::V4);
    out.nat6 = super::nat::desired_nat(state, me, IpFamily::V6);
    out
}

/// Routes BGP learned, programmed as Calico's BIRD kernel filter does: IPIP pools through
/// tunl0 (onlink) unless CrossSubnet and the next hop is on our subnet; VXLAN pools only
/// until the datastore's VXLAN route for the prefix exists (same-subnet next hops only);
/// everything else via the next hop.
fn add_learned_routes(input: &RouteInput<'_>, own_blocks: &[IpNet], out: &mut DesiredState) {
    let pools = Pools::of(input.state);
    for (prefix, next_hop) in input.learned {
        if out.routes.get(prefix).is_some_and(is_local) {
            continue;
        }
        if let Some(route) = learned_route(input.local, &pools, own_blocks, *prefix, *next_hop) {
            out.routes.insert(*prefix, route);
        }
    }
}

/// The blocks, of both families, confirmed as `me`'s.
fn own_blocks(state: &ClusterState, me: &str) -> Vec<IpNet> {
    state.confirmed_blocks_of(me).collect()
}

/// A route of this node itself (its block's blackhole, a pod's route): whatever a peer
/// announces for the same prefix (a stale borrow, a misconfigured router) never replaces it.
fn is_local(route: &Route) -> bool {
    matches!(
        route.target,
        RouteTarget::Device { .. } | RouteTarget::Blackhole
    )
}

/// The route for one learned prefix, unless it is not to be programmed.
fn learned_route(
    local: &LocalNode,
    pools: &Pools<'_>,
    own_blocks: &[IpNet],
    prefix: IpNet,
    next_hop: IpAddr,
) -> Option<Route> {
    if own_blocks
        .iter()
        .any(|b| b.contains(&prefix) && prefix.prefix_len() <= b.prefix_len())
    {
        // Never override our own block with someone else's announcement of it.
        return None;
    }
    if local.is_own_address(next_hop) || next_hop.is_ipv4() != prefix.addr().is_ipv4() {
        return None;
    }
    let same_subnet = local.same_subnet(next_hop);
    let target = match pools
        .containing(&prefix)
        .and_then(|p| p.spec.encap_towards(same_subnet))
    {
        // VXLAN pools are routed from the datastore: add_vxlan replaces this route once
        // both VTEPs are known. Until then a same-subnet next hop is used as learned, so
        // switching a pool to VXLAN leaves no instant without a route.
        Some(Tunnel::Vxlan) if !same_subnet => return None,
        Some(Tunnel::Vxlan) => RouteTarget::Gateway {
            via: next_hop,
            dev: Some(local.interface_for(next_hop).to_string()),
            onlink: false,
        },
        Some(Tunnel::Ipip) => RouteTarget::Gateway {
            via: next_hop,
            dev: Some(IPIP_DEVICE.into()),
            onlink: true,
        },
        _ => RouteTarget::Gateway {
            via: next_hop,
            dev: same_subnet.then(|| local.interface_for(next_hop).to_string()),
            onlink: false,
        },
    };
    Some(Route {
        dst: prefix,
        target,
        protocol: PROTO_BIRD,
    })
}

/// The changes to the desired routes `current` (computed by [`desired_state`] from the
/// same state and `before`) when only the learned routes changed, to `input.learned`:
/// per changed prefix its new route or none. Work in proportion to the change, where a
/// full recomputation builds every route again. `None` where a learned route's fate is
/// not decided by the prefix alone: under VXLAN the datastore's routes replace learned
/// ones, and other backends have no learned routes.
pub fn learned_changes(
    input: &RouteInput<'_>,
    before: &LearnedRoutes,
    current: &BTreeMap<IpNet, Route>,
) -> Option<Vec<(IpNet, Option<Route>)>> {
    if input.backend != Backend::Bgp || vxlan_in_use(input.state) {
        return None;
    }
    let own_blocks = own_blocks(input.state, &input.local.name);
    let pools = Pools::of(input.state);
    let mut changes = Vec::new();
    for prefix in changed_keys(before, input.learned) {
        if current.get(&prefix).is_some_and(is_local) {
            continue;
        }
        let route = input.learned.get(&prefix).and_then(|next_hop| {
            learned_route(input.local, &pools, &own_blocks, prefix, *next_hop)
        });
        changes.push((prefix, route));
    }
    Some(changes)
}

/// VXLAN from the datastore (Felix's `vxlan_mgr`), once per family: the device
/// (`vxlan.calico` over the node's IPv4 address, `vxlan-v6.calico` over its IPv6 one),
/// and per remote node with a VTEP of that family its blocks `via <vtep> dev <device>
/// onlink`, a permanent neighbour and an FDB entry; under CrossSubnet, same-subnet nodes
/// are routed directly instead.
fn add_vxlan(input: &RouteInput<'_>, out: &mut DesiredState) {
    for family in IpFamily::ALL {
        add_vxlan_family(input, family, out);
    }
}

/// The device name and this node's underlay (source address, parent interface) of
/// `family`'s VXLAN; none on a node without an address of that family.
fn vxlan_underlay(local: &LocalNode, family: IpFamily) -> Option<(&'static str, IpAddr, &str)> {
    match family {
        IpFamily::V4 => local
            .ip()
            .map(|ip| (VXLAN_DEVICE, IpAddr::V4(ip), local.interface.as_str())),
        IpFamily::V6 => local.ipv6.as_ref().map(|v6| {
            (
                VXLAN_DEVICE_V6,
                IpAddr::V6(v6.address.addr()),
                v6.interface.as_str(),
            )
        }),
    }
}

fn add_vxlan_family(input: &RouteInput<'_>, family: IpFamily, out: &mut DesiredState) {
    let state = input.state;
    let local = input.local;
    let me = local.name.as_str();
    if !vxlan_in_use_for(state, family) {
        return;
    }
    let Some((device, source, parent)) = vxlan_underlay(local, family) else {
        return;
    };
    let Some(my_node) = state.nodes.get(me) else {
        return;
    };
    let Some(my_tunnel_ip) = my_node.spec.vxlan_tunnel_addr_of(family) else {
        // The tunnel address is allocated by the tunnel manager; the device follows.
        return;
    };
    let pools = Pools::of(state);
    out.vxlan_devices.push(VxlanDevice {
        name: device.into(),
        vni: vxlan_vni(state, me),
        port: vxlan_port(state, me),
        parent: parent.to_string(),
        local: source,
        mac: vtep_mac(my_node, family),
        mtu: vxlan_mtu(state, me, local.host_mtu, family),
        address: Some(my_tunnel_ip),
    });

    let mut used_vteps: BTreeSet<String> = BTreeSet::new();
    let route_to = |out: &mut DesiredState,
                    used: &mut BTreeSet<String>,
                    node: &str,
                    vtep: &Vtep,
                    dst: IpNet| {
        if let Some((target, tunnelled)) = vxlan_target(&pools, local, device, vtep, &dst) {
            if tunnelled {
                used.insert(node.to_string());
            }
            out.routes.insert(
                dst,
                Route {
                    dst,
                    target,
                    protocol: PROTO_CALICO,
                },
            );
        }
    };

    let vteps: BTreeMap<&str, Vtep> = state
        .nodes
        .values()
        .filter(|n| n.name() != me)
        .filter_map(|n| vtep_of(n, family).map(|v| (n.name(), v)))
        .collect();
    for (node, vtep) in &vteps {
        let mut blocks: Vec<IpNet> = state
            .confirmed_blocks_of(node)
            .filter(|b| IpFamily::of_net(b) == family)
            .collect();
        blocks.sort();
        for block in &blocks {
            route_to(out, &mut used_vteps, node, vtep, *block);
        }
        // A VTEP address outside the node's own blocks (borrowed): reach it directly.
        if !blocks.iter().any(|b| b.contains(&vtep.tunnel_ip)) {
            used_vteps.insert((*node).to_string());
            let dst = IpNet::new(vtep.tunnel_ip, family.host_prefix_len())
                .unwrap_or(IpNet::from(vtep.tunnel_ip));
            out.routes.insert(
                dst,
                Route {
                    dst,
                    target: RouteTarget::Device { dev: device.into() },
                    protocol: PROTO_CALICO,
                },
            );
        }
    }

    // Borrowed addresses: an allocation in someone's block made for a workload on another
    // node is routed to the node that runs it.
    for block in state.blocks.values() {
        if IpFamily::of_net(&block.cidr) != family {
            continue;
        }
        let owner = block.host();
        for (ordinal, slot) in block.allocations.iter().enumerate() {
            let Some(attr_index) = slot else { continue };
            let Some(host) = block
                .attributes
                .get(*attr_index)
                .and_then(|a| a.secondary.get(attr::NODE))
            else {
                continue;
            };
            if Some(host.as_str()) == owner || host == me {
                continue;
            }
            let Some(vtep) = vteps.get(host.as_str()) else {
                continue;
            };
            let ip = ip_at(&block.cidr, ordinal);
            if ip == vtep.tunnel_ip {
                continue; // already reachable as the VTEP itself
            }
            route_to(out, &mut used_vteps, host, vtep, IpNet::from(ip));
        }
    }

    for node in used_vteps {
        let Some(vtep) = vteps.get(node.as_str()) else {
            continue;
        };
        out.neighbours.insert(Neighbour {
            dev: device.into(),
            ip: vtep.tunnel_ip,
            mac: vtep.mac,
        });
        out.fdb.insert(FdbEntry {
            dev: device.into(),
            mac: vtep.mac,
            dst: vtep.node_ip,
        });
    }
}

/// How a VXLAN-pool destination on a remote node is reached: through the tunnel `device`
/// (true) or, under CrossSubnet towards a same-subnet node, directly on the underlay
/// device (false). `None` when the destination is not in a VXLAN pool.
fn vxlan_target(
    pools: &Pools<'_>,
    local: &LocalNode,
    device: &str,
    vtep: &Vtep,
    dst: &IpNet,
) -> Option<(RouteTarget, bool)> {
    let pool = pools.containing(dst)?;
    if !pool.spec.uses(Tunnel::Vxlan) {
        return None;
    }
    match pool.spec.encap_towards(local.same_subnet(vtep.node_ip)) {
        Some(Tunnel::Vxlan) => Some((
            RouteTarget::Gateway {
                via: vtep.tunnel_ip,
                dev: Some(device.into()),
                onlink: true,
            },
            true,
        )),
        _ => Some((
            RouteTarget::Gateway {
                via: vtep.node_ip,
                dev: Some(local.interface_for(vtep.node_ip).to_string()),
                onlink: true,
            },
            false,
        )),
    }
}

/// tunl0 whenever a pool uses IPIP (its address from `ipv4IPIPTunnelAddr`).
fn add_ipip_device(input: &RouteInput<'_>, out: &mut DesiredState) {
    if input.backend != Backend::Bgp || !ipip_in_use(input.state) {
        return;
    }
    let me = input.local.name.as_str();
    let address = input
        .state
        .nodes
        .get(me)
        .and_then(|n| n.spec.bgp.as_ref())
        .and_then(|b| b.ipv4_ipip_tunnel_addr.as_deref())
        .and_then(|a| a.parse().ok());
    out.ipip = Some(IpipDevice {
        mtu: ipip_mtu(input.state, me, input.local.host_mtu),
        address,
    });
}

#[cfg(test)]
#[path = "routes_tests.rs"]
mod tests;
