//! Node: one Calico host. Registered and kept up to date by calico-node (addresses,
//! tunnel addresses); edited by operators (AS number, route reflector cluster id, labels);
//! read by the BGP peer computation, IPAM (tunnel addresses, pool node selectors) and the
//! dataplane (VXLAN VTEPs, CrossSubnet subnets).

use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::model::IpFamily;
use crate::model::meta::{Object, ObjectMeta};
use crate::model::resource::Spec;
use crate::model::types::AsNumber;

/// A Calico node. `Node = Object<NodeSpec>`; labels (for selectors) live in
/// `metadata.labels`.
pub type Node = Object<NodeSpec>;

/// Node spec: BGP settings and tunnel addresses, with Calico's JSON names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Absent on a policy-only node (no BGP configuration is generated for it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bgp: Option<NodeBgpSpec>,
    #[serde(
        default,
        rename = "ipv4VXLANTunnelAddr",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_vxlan_tunnel_addr: Option<String>,
    #[serde(
        default,
        rename = "vxlanTunnelMACAddr",
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_tunnel_mac_addr: Option<String>,
    #[serde(
        default,
        rename = "ipv6VXLANTunnelAddr",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_vxlan_tunnel_addr: Option<String>,
    #[serde(
        default,
        rename = "vxlanTunnelMACAddrV6",
        skip_serializing_if = "Option::is_none"
    )]
    pub vxlan_tunnel_mac_addr_v6: Option<String>,
    #[serde(default, rename = "orchRefs", skip_serializing_if = "Vec::is_empty")]
    pub orch_refs: Vec<OrchRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<NodeAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wireguard: Option<NodeWireguardSpec>,
}

/// `spec.bgp` of a Node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeBgpSpec {
    /// The node's own AS; the global BGPConfiguration AS when absent.
    #[serde(default, rename = "asNumber", skip_serializing_if = "Option::is_none")]
    pub as_number: Option<AsNumber>,
    /// Address with prefix length, e.g. `10.1.10.9/24` (the prefix gives the subnet used
    /// by CrossSubnet).
    #[serde(
        default,
        rename = "ipv4Address",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_address: Option<String>,
    #[serde(
        default,
        rename = "ipv6Address",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv6_address: Option<String>,
    /// tunl0's address, allocated from an IPIP pool.
    #[serde(
        default,
        rename = "ipv4IPIPTunnelAddr",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_ipip_tunnel_addr: Option<String>,
    /// Set on route reflectors.
    #[serde(
        default,
        rename = "routeReflectorClusterID",
        skip_serializing_if = "Option::is_none"
    )]
    pub route_reflector_cluster_id: Option<String>,
}

/// An orchestrator reference (`orchRefs`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrchRef {
    #[serde(default, rename = "nodeName", skip_serializing_if = "String::is_empty")]
    pub node_name: String,
    #[serde(default)]
    pub orchestrator: String,
}

/// One of the node's addresses (`addresses`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeAddress {
    pub address: String,
    #[serde(default, rename = "type", skip_serializing_if = "String::is_empty")]
    pub type_: String,
}

/// `spec.wireguard`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeWireguardSpec {
    #[serde(
        default,
        rename = "interfaceIPv4Address",
        skip_serializing_if = "Option::is_none"
    )]
    pub interface_ipv4_address: Option<String>,
    #[serde(
        default,
        rename = "interfaceIPv6Address",
        skip_serializing_if = "Option::is_none"
    )]
    pub interface_ipv6_address: Option<String>,
}

impl NodeBgpSpec {
    /// `ipv4Address` parsed as interface address + prefix (`10.1.10.9/24`).
    pub fn ipv4_net(&self) -> Option<Ipv4Net> {
        self.ipv4_address.as_deref()?.parse().ok()
    }

    /// The bare IPv4 address (the router id and BGP source address).
    pub fn ipv4_addr(&self) -> Option<Ipv4Addr> {
        self.ipv4_net().map(|n| n.addr())
    }

    /// `ipv6Address` parsed.
    pub fn ipv6_net(&self) -> Option<IpNet> {
        self.ipv6_address.as_deref()?.parse().ok()
    }

    /// tunl0's address, parsed.
    pub fn ipip_tunnel_addr(&self) -> Option<Ipv4Addr> {
        self.ipv4_ipip_tunnel_addr.as_deref()?.parse().ok()
    }

    /// The route reflector cluster id, parsed.
    pub fn rr_cluster_id(&self) -> Option<Ipv4Addr> {
        self.route_reflector_cluster_id.as_deref()?.parse().ok()
    }
}

impl NodeSpec {
    /// The node's IPv4 address (from `spec.bgp.ipv4Address`), if any.
    pub fn ipv4_addr(&self) -> Option<Ipv4Addr> {
        self.bgp.as_ref()?.ipv4_addr()
    }

    /// The VXLAN tunnel address, parsed.
    pub fn vxlan_tunnel_addr(&self) -> Option<IpAddr> {
        self.ipv4_vxlan_tunnel_addr.as_deref()?.parse().ok()
    }

    /// The node's address of `family` without its prefix (`spec.bgp.ipv4Address` /
    /// `ipv6Address`), if it is set and of that family.
    pub fn address_of(&self, family: IpFamily) -> Option<IpAddr> {
        let bgp = self.bgp.as_ref()?;
        let text = match family {
            IpFamily::V4 => bgp.ipv4_address.as_deref(),
            IpFamily::V6 => bgp.ipv6_address.as_deref(),
        }?;
        let ip: IpAddr = text.split('/').next()?.parse().ok()?;
        (IpFamily::of_addr(&ip) == family).then_some(ip)
    }

    /// The VXLAN tunnel address of `family` (`ipv4VXLANTunnelAddr` /
    /// `ipv6VXLANTunnelAddr`), if it is set and of that family.
    pub fn vxlan_tunnel_addr_of(&self, family: IpFamily) -> Option<IpAddr> {
        let ip: IpAddr = self.vxlan_fields(family).0.as_deref()?.parse().ok()?;
        (IpFamily::of_addr(&ip) == family).then_some(ip)
    }

    /// The recorded VTEP MAC of `family`'s VXLAN device (`vxlanTunnelMACAddr` /
    /// `vxlanTunnelMACAddrV6`).
    pub fn vxlan_mac_of(&self, family: IpFamily) -> Option<&str> {
        self.vxlan_fields(family).1.as_deref()
    }

    /// Records `family`'s VXLAN tunnel address, keeping a MAC already recorded and
    /// otherwise recording `mac`; `None` clears both.
    pub fn set_vxlan_tunnel(&mut self, family: IpFamily, addr: Option<IpAddr>, mac: &str) {
        let (addr_field, mac_field) = self.vxlan_fields_mut(family);
        *addr_field = addr.map(|a| a.to_string());
        *mac_field = match addr {
            Some(_) => mac_field.take().or_else(|| Some(mac.to_string())),
            None => None,
        };
    }

    fn vxlan_fields(&self, family: IpFamily) -> (&Option<String>, &Option<String>) {
        match family {
            IpFamily::V4 => (&self.ipv4_vxlan_tunnel_addr, &self.vxlan_tunnel_mac_addr),
            IpFamily::V6 => (&self.ipv6_vxlan_tunnel_addr, &self.vxlan_tunnel_mac_addr_v6),
        }
    }

    fn vxlan_fields_mut(&mut self, family: IpFamily) -> (&mut Option<String>, &mut Option<String>) {
        match family {
            IpFamily::V4 => (
                &mut self.ipv4_vxlan_tunnel_addr,
                &mut self.vxlan_tunnel_mac_addr,
            ),
            IpFamily::V6 => (
                &mut self.ipv6_vxlan_tunnel_addr,
                &mut self.vxlan_tunnel_mac_addr_v6,
            ),
        }
    }
}

impl Spec for NodeSpec {
    const KIND: &'static str = "Node";
    const PLURAL: &'static str = "nodes";

    fn validate(&self, _meta: &ObjectMeta) -> Result<()> {
        crate::model::validation::node::validate(self)
    }
}
