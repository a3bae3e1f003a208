//! The kernel state the flannel backend wants, as a pure function of the network config,
//! this node's identity, its own subnet and the leases in the store (flannel's
//! `vxlan_network.go` / `route_network.go` `handleSubnetEvents`, as a whole-state
//! computation the dataplane reconciles).
//!
//! vxlan: `flannel.<VNI>` (UDP port, MTU = interface MTU - 50, address `<subnet>.0/32`), and
//! per remote vxlan lease a permanent neighbour `<subnet>.0 lladdr <VtepMAC>`, an FDB entry
//! `<VtepMAC> dst <PublicIP> self permanent` and `<subnet> via <subnet>.0 dev flannel.1
//! onlink`; with `DirectRouting`, peers on our own L2 subnet get `<subnet> via <PublicIP>
//! dev <iface>` instead. host-gw: `<subnet> via <PublicIP> dev <iface>`. Every route has
//! protocol `boot` (`ip route` shows no `proto`, as flannel's), and the whole network is
//! declared managed so stale `proto boot` routes in it (a previous backend) are removed.
//! With `--ip-masq`, traffic from the network to anywhere outside it is masqueraded.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use sha1::{Digest, Sha1};

use super::config::{BackendType, NetworkConfig};
use super::lease::{LeaseAttrs, SubnetLease};
use super::subnet::overlaps;
use crate::calc::tunnels::VXLAN_OVERHEAD;
use crate::dataplane::ownership::flannel_device;
use crate::dataplane::types::{
    DesiredState, FdbEntry, NatOutgoing, Neighbour, PROTO_BOOT, Route, RouteTarget, VxlanDevice,
};

/// This node as the flannel backend sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The node's name (logs only).
    pub node: String,
    /// `PublicIP`: the address of the flannel interface, the node's identity in leases.
    pub public_ip: Ipv4Addr,
    /// The interface (`FLANNELD_IFACE`, else the node address's).
    pub iface: String,
    /// The interface's subnet: peers inside it are L2 neighbours (host-gw, DirectRouting).
    pub iface_net: Ipv4Net,
    pub iface_mtu: u32,
    /// This node's VTEP MAC (stable: derived from the node name).
    pub vtep_mac: [u8; 6],
}

/// A stable, locally administered unicast MAC for `node`'s flannel VTEP. flannel makes a
/// random one at every start in etcd mode (so every restart rewrites all peers' neighbour
/// entries); deriving it from the node name keeps it across restarts instead.
pub fn vtep_mac_for(node: &str) -> [u8; 6] {
    let digest = Sha1::digest(format!("flannel-vtep:{node}").as_bytes());
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&digest[..6]);
    mac[0] = (mac[0] & 0xfe) | 0x02;
    mac
}

/// The backend MTU (`FLANNEL_MTU`): vxlan = the configured MTU or interface MTU - 50;
/// host-gw = the interface MTU.
pub fn backend_mtu(config: &NetworkConfig, iface_mtu: u32) -> u32 {
    match config.backend.kind {
        BackendType::Vxlan => config
            .backend
            .mtu
            .unwrap_or(iface_mtu.saturating_sub(VXLAN_OVERHEAD)),
        BackendType::HostGw => iface_mtu,
    }
}

/// What this node writes as its lease value.
pub fn own_attrs(config: &NetworkConfig, me: &Identity) -> LeaseAttrs {
    match config.backend.kind {
        BackendType::Vxlan => LeaseAttrs::vxlan(me.public_ip, config.backend.vni, me.vtep_mac),
        BackendType::HostGw => LeaseAttrs::host_gw(me.public_ip),
    }
}

/// `--ip-masq` (flannel's MASQUERADE of traffic leaving the network), through the
/// dataplane's natOutgoing rules: the network is both the source set and a destination
/// that is never masqueraded (pod to pod keeps its source on every node).
pub fn ip_masq_nat(config: &NetworkConfig) -> NatOutgoing {
    NatOutgoing {
        masq_pools: BTreeSet::from([config.network.into()]),
        all_pools: BTreeSet::from([config.network.into()]),
        snat_to: None,
    }
}

/// Everything the computation reads.
#[derive(Debug, Clone, Copy)]
pub struct FlannelInput<'a> {
    pub config: &'a NetworkConfig,
    pub me: &'a Identity,
    /// The subnet this node holds.
    pub own: Ipv4Net,
    /// Every lease in the store, by subnet (ours included; it is skipped).
    pub leases: &'a BTreeMap<Ipv4Net, SubnetLease>,
    /// `FLANNELD_IP_MASQ`.
    pub ip_masq: bool,
}

/// The desired state, and the leases left out with the reason (for logs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlannelDesired {
    pub state: DesiredState,
    pub ignored: BTreeMap<Ipv4Net, String>,
}

/// Computes the flannel part of the node's kernel state.
pub fn desired_state(input: &FlannelInput<'_>) -> FlannelDesired {
    let FlannelInput {
        config, me, own, ..
    } = *input;
    let mut out = FlannelDesired::default();
    out.state.managed_cidrs = vec![config.network.into()];
    out.state.nat = input.ip_masq.then(|| ip_masq_nat(config));
    let kind = config.backend.kind;
    let dev = flannel_device(config.backend.vni);
    if kind == BackendType::Vxlan {
        out.state.vxlan_devices.push(VxlanDevice {
            name: dev.clone(),
            vni: config.backend.vni,
            port: config.backend.port,
            parent: me.iface.clone(),
            local: me.public_ip.into(),
            mac: me.vtep_mac,
            mtu: backend_mtu(config, me.iface_mtu),
            address: Some(own.network().into()),
        });
    }
    for (subnet, lease) in input.leases {
        if *subnet == own {
            continue;
        }
        let attrs = &lease.attrs;
        let skip = if overlaps(subnet, &own) {
            Some("overlaps this node's subnet".to_string())
        } else if attrs.public_ip == me.public_ip {
            Some("a lease of this node's own PublicIP".to_string())
        } else if !config.network.contains(subnet) {
            Some(format!("outside Network {}", config.network))
        } else if attrs.backend_type != kind.as_str() {
            Some(format!(
                "BackendType '{}', this node runs {kind}",
                attrs.backend_type
            ))
        } else {
            None
        };
        if let Some(reason) = skip {
            out.ignored.insert(*subnet, reason);
            continue;
        }
        let adjacent = me.iface_net.contains(&attrs.public_ip);
        let direct = Route {
            dst: (*subnet).into(),
            target: RouteTarget::Gateway {
                via: attrs.public_ip.into(),
                dev: Some(me.iface.clone()),
                onlink: false,
            },
            protocol: PROTO_BOOT,
        };
        match kind {
            BackendType::HostGw if adjacent => {
                out.state.routes.insert((*subnet).into(), direct);
            }
            BackendType::HostGw => {
                out.ignored.insert(
                    *subnet,
                    format!(
                        "PublicIP {} is not on {}: host-gw needs the nodes on one L2 network",
                        attrs.public_ip, me.iface_net
                    ),
                );
            }
            BackendType::Vxlan if config.backend.direct_routing && adjacent => {
                out.state.routes.insert((*subnet).into(), direct);
            }
            BackendType::Vxlan => {
                let Some(mac) = attrs.vtep_mac() else {
                    out.ignored
                        .insert(*subnet, "no valid BackendData.VtepMAC".to_string());
                    continue;
                };
                let vtep = subnet.network();
                out.state.neighbours.insert(Neighbour {
                    dev: dev.clone(),
                    ip: vtep.into(),
                    mac,
                });
                out.state.fdb.insert(FdbEntry {
                    dev: dev.clone(),
                    mac,
                    dst: attrs.public_ip.into(),
                });
                out.state.routes.insert(
                    (*subnet).into(),
                    Route {
                        dst: (*subnet).into(),
                        target: RouteTarget::Gateway {
                            via: vtep.into(),
                            dev: Some(dev.clone()),
                            onlink: true,
                        },
                        protocol: PROTO_BOOT,
                    },
                );
            }
        }
    }
    out
}

#[cfg(test)]
#[path = "desired_tests.rs"]
mod tests;
