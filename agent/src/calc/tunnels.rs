//! Tunnel parameters shared by the route calculation and the tunnel-address manager: which
//! encapsulations the pools ask for, MTUs, VXLAN identity (VNI, port, VTEP MAC).

use sha1::{Digest, Sha1};

use datastore::model::{FelixConfiguration, IpFamily, Node, Tunnel};

use crate::dataplane::types::parse_mac;
use crate::state::ClusterState;

/// Calico's VXLAN VNI.
pub const DEFAULT_VXLAN_VNI: u32 = 4096;
/// Calico's VXLAN UDP port.
pub const DEFAULT_VXLAN_PORT: u16 = 4789;
/// IPIP header overhead.
pub const IPIP_OVERHEAD: u32 = 20;
/// VXLAN (IPv4 underlay) overhead.
pub const VXLAN_OVERHEAD: u32 = 50;
/// VXLAN (IPv6 underlay) overhead (Felix's `vxlanV6MTUOverhead`).
pub const VXLAN_V6_OVERHEAD: u32 = 70;

/// True when some pool encapsulates with IPIP (Always or CrossSubnet).
pub fn ipip_in_use(state: &ClusterState) -> bool {
    state.pools.values().any(|p| p.spec.uses(Tunnel::Ipip))
}

/// True when some pool encapsulates with VXLAN (Always or CrossSubnet).
pub fn vxlan_in_use(state: &ClusterState) -> bool {
    state.pools.values().any(|p| p.spec.uses(Tunnel::Vxlan))
}

/// True when some pool of `family` encapsulates with VXLAN: that family's device
/// (`vxlan.calico`, `vxlan-v6.calico`) is wanted.
pub fn vxlan_in_use_for(state: &ClusterState, family: IpFamily) -> bool {
    state
        .pools
        .values()
        .any(|p| p.spec.uses(Tunnel::Vxlan) && p.spec.family() == Some(family))
}

/// The Felix settings that apply to `node`: `node.<name>` overrides `default`.
pub fn felix_setting<T: Copy>(
    state: &ClusterState,
    node: &str,
    get: impl Fn(&FelixConfiguration) -> Option<T>,
) -> Option<T> {
    state
        .felix_configs
        .get(&format!("node.{node}"))
        .and_then(&get)
        .or_else(|| state.felix_default().and_then(&get))
}

/// MTU for tunl0: FelixConfiguration `ipipMTU`, else host MTU - 20.
pub fn ipip_mtu(state: &ClusterState, node: &str, host_mtu: u32) -> u32 {
    felix_setting(state, node, |f| f.spec.ipip_mtu)
        .filter(|m| *m > 0)
        .unwrap_or(host_mtu.saturating_sub(IPIP_OVERHEAD))
}

/// MTU for vxlan.calico: FelixConfiguration `vxlanMTU`, else host MTU - 50; for
/// vxlan-v6.calico `vxlanMTUV6`, else host MTU - 70.
pub fn vxlan_mtu(state: &ClusterState, node: &str, host_mtu: u32, family: IpFamily) -> u32 {
    let (configured, overhead) = match family {
        IpFamily::V4 => (
            felix_setting(state, node, |f| f.spec.vxlan_mtu),
            VXLAN_OVERHEAD,
        ),
        IpFamily::V6 => (
            felix_setting(state, node, |f| f.spec.vxlan_mtu_v6),
            VXLAN_V6_OVERHEAD,
        ),
    };
    configured
        .filter(|m| *m > 0)
        .unwrap_or(host_mtu.saturating_sub(overhead))
}

/// The MTU pods should use: the smallest of the encapsulations in use (Felix writes this
/// to /var/lib/calico/mtu for the CNI plugin).
pub fn pod_mtu(state: &ClusterState, node: &str, host_mtu: u32) -> u32 {
    let mut mtu = host_mtu;
    if ipip_in_use(state) {
        mtu = mtu.min(ipip_mtu(state, node, host_mtu));
    }
    for family in IpFamily::ALL {
        if vxlan_in_use_for(state, family) {
            mtu = mtu.min(vxlan_mtu(state, node, host_mtu, family));
        }
    }
    mtu
}

/// VXLAN VNI from FelixConfiguration, else 4096.
pub fn vxlan_vni(state: &ClusterState, node: &str) -> u32 {
    felix_setting(state, node, |f| f.spec.vxlan_vni).unwrap_or(DEFAULT_VXLAN_VNI)
}

/// VXLAN port from FelixConfiguration, else 4789.
pub fn vxlan_port(state: &ClusterState, node: &str) -> u16 {
    felix_setting(state, node, |f| f.spec.vxlan_port).unwrap_or(DEFAULT_VXLAN_PORT)
}

/// Calico's deterministic VTEP MAC for a node without `vxlanTunnelMACAddr`
/// (`vxlanTunnelMACAddrV6`): `0x66` followed by the first five bytes of sha1(nodename),
/// of `<nodename>-v6` for the IPv6 device (Felix `vtepMACForHost`).
pub fn derived_vtep_mac(node: &str, family: IpFamily) -> [u8; 6] {
    let digest = match family {
        IpFamily::V4 => Sha1::digest(node.as_bytes()),
        IpFamily::V6 => Sha1::digest(format!("{node}-v6").as_bytes()),
    };
    let mut mac = [0x66u8; 6];
    mac[1..].copy_from_slice(&digest[..5]);
    mac
}

/// A node's VTEP MAC for `family`: the recorded one, else the derived one.
pub fn vtep_mac(node: &Node, family: IpFamily) -> [u8; 6] {
    node.spec
        .vxlan_mac_of(family)
        .and_then(parse_mac)
        .unwrap_or_else(|| derived_vtep_mac(node.name(), family))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_vtep_mac_starts_with_0x66_and_is_stable() {
        let a = derived_vtep_mac("node-1", IpFamily::V4);
        assert_eq!(a[0], 0x66);
        assert_eq!(a, derived_vtep_mac("node-1", IpFamily::V4));
        assert_ne!(a, derived_vtep_mac("node-2", IpFamily::V4));
    }

    #[test]
    fn the_ipv6_vtep_mac_hashes_the_name_with_a_v6_suffix() {
        // Felix hashes `<node>-v6`: the IPv6 MAC of "n" is the IPv4 MAC of "n-v6".
        assert_eq!(
            derived_vtep_mac("node-1", IpFamily::V6),
            derived_vtep_mac("node-1-v6", IpFamily::V4)
        );
        assert_ne!(
            derived_vtep_mac("node-1", IpFamily::V6),
            derived_vtep_mac("node-1", IpFamily::V4)
        );
    }
}
