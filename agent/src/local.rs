//! `LocalNode`: who this agent is on the network — its node name, its address with the
//! prefix length (CrossSubnet depends on it), the interface holding that address and the
//! interface's MTU.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// This node's identity on the fabric, fixed at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalNode {
    pub name: String,
    /// The node address and its subnet, e.g. `10.1.10.9/24`.
    pub address: Ipv4Net,
    /// The interface holding `address` (parent of the VXLAN device, next-hop device).
    pub interface: String,
    /// The MTU of `interface`.
    pub host_mtu: u32,
}

impl LocalNode {
    /// The node's IP.
    pub fn ip(&self) -> Ipv4Addr {
        self.address.addr()
    }

    /// True when `other` is on this node's subnet (no encapsulation under CrossSubnet).
    pub fn same_subnet(&self, other: Ipv4Addr) -> bool {
        self.address.trunc().contains(&other)
    }
}
