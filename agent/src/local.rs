//! `LocalNode`: who this agent is on the network — its node name, its IPv4 address with the
//! prefix length (CrossSubnet depends on it) unless it is an IPv6-only node (`IP=none`),
//! the interface holding that address and the interface's MTU, and its IPv6 address when
//! it has one (`IP6`).

use std::net::{IpAddr, Ipv4Addr};

use datastore::model::IpFamily;
use ipnet::{Ipv4Net, Ipv6Net};

/// This node's identity on the fabric, fixed at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalNode {
    pub name: String,
    /// The node's IPv4 address and its subnet, e.g. `10.1.10.9/24`; none on an IPv6-only
    /// node.
    pub address: Option<Ipv4Net>,
    /// The interface holding `address` (parent of the VXLAN device, next-hop device), on
    /// an IPv6-only node the one holding the IPv6 address.
    pub interface: String,
    /// The MTU of `interface`.
    pub host_mtu: u32,
    /// The node's IPv6 address and the interface holding it (`IP6`); none: no IPv6.
    pub ipv6: Option<LocalV6>,
}

/// The node's IPv6 side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalV6 {
    /// The address and its subnet, e.g. `fd00:1::9/64`.
    pub address: Ipv6Net,
    pub interface: String,
}

impl LocalNode {
    /// The node's IPv4 address, unless it is IPv6-only.
    pub fn ip(&self) -> Option<Ipv4Addr> {
        self.address.map(|a| a.addr())
    }

    /// The node's address of `family`, if it has one.
    pub fn address_of(&self, family: IpFamily) -> Option<IpAddr> {
        match family {
            IpFamily::V4 => self.ip().map(IpAddr::V4),
            IpFamily::V6 => self.ipv6.as_ref().map(|v6| IpAddr::V6(v6.address.addr())),
        }
    }

    /// The families the node has an address of (IPv4 first).
    pub fn families(&self) -> impl Iterator<Item = IpFamily> + '_ {
        IpFamily::ALL
            .into_iter()
            .filter(|f| self.address_of(*f).is_some())
    }

    /// True when `ip` is one of this node's own addresses.
    pub fn is_own_address(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => Some(v4) == self.ip(),
            IpAddr::V6(v6) => self.ipv6.as_ref().is_some_and(|s| s.address.addr() == v6),
        }
    }

    /// True when `other` is on this node's subnet of its family (no encapsulation under
    /// CrossSubnet, the next hop is on the link).
    pub fn same_subnet(&self, other: IpAddr) -> bool {
        match other {
            IpAddr::V4(v4) => self.address.is_some_and(|a| a.trunc().contains(&v4)),
            IpAddr::V6(v6) => self
                .ipv6
                .as_ref()
                .is_some_and(|s| s.address.trunc().contains(&v6)),
        }
    }

    /// The interface that holds this node's address of `other`'s family.
    pub fn interface_for(&self, other: IpAddr) -> &str {
        match (other, &self.ipv6) {
            (IpAddr::V6(_), Some(v6)) => &v6.interface,
            _ => &self.interface,
        }
    }
}
