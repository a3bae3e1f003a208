//! The kernel behind a small trait, so reconcilers are tested against an in-memory fake
//! (`fake.rs`) and run for real through rtnetlink (`netlink.rs`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use async_trait::async_trait;
use netlink_packet_route::route::RouteMessage;

use super::types::{FdbEntry, IpipDevice, Neighbour, Route, VxlanDevice};

/// Why a kernel operation failed, classified by errno (the netlink layer's, shared with
/// the CNI plugin; sysctl writes and the fake kernel classify theirs the same way).
pub use rtnl::Error as KernelError;

/// A network device as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    /// `veth`, `vxlan`, `ipip`, ... when the kernel says.
    pub kind: Option<String>,
    pub mtu: u32,
    pub mac: Option<[u8; 6]>,
    pub up: bool,
    /// IPv4 addresses with their prefix length.
    pub addresses: Vec<(Ipv4Addr, u8)>,
    /// IPv6 addresses with their prefix length (link-local ones included).
    pub addresses_v6: Vec<(Ipv6Addr, u8)>,
    /// For a VXLAN device, what identifies its tunnel.
    pub vxlan: Option<VxlanLink>,
}

/// What identifies a VXLAN device's tunnel (none of it can be changed in place).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanLink {
    pub vni: u32,
    pub port: u16,
    /// The tunnel's source address.
    pub local: Option<IpAddr>,
    /// The underlay device's name.
    pub parent: Option<String>,
}

impl LinkInfo {
    /// True when the device's addresses of one family are exactly `want` as a host
    /// address (/32, /128), or none; IPv6 link-local addresses are the kernel's and do not
    /// count.
    pub fn has_only_address(&self, ipv6: bool, want: Option<IpAddr>) -> bool {
        if ipv6 {
            let have: Vec<IpAddr> = self
                .addresses_v6
                .iter()
                .filter(|(a, _)| !a.is_unicast_link_local())
                .map(|(a, len)| (*len == 128).then_some(IpAddr::V6(*a)))
                .collect::<Option<_>>()
                .unwrap_or_else(|| vec![IpAddr::V6(Ipv6Addr::UNSPECIFIED)]);
            have == want.into_iter().collect::<Vec<_>>()
        } else {
            let have: Vec<IpAddr> = self
                .addresses
                .iter()
                .map(|(a, len)| (*len == 32).then_some(IpAddr::V4(*a)))
                .collect::<Option<_>>()
                .unwrap_or_else(|| vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)]);
            have == want.into_iter().collect::<Vec<_>>()
        }
    }
}

/// What the kernel announced on its route and link multicast groups.
#[derive(Debug, Clone)]
pub enum KernelEvent {
    /// A device, or its state, changed (its routes may have gone without route events).
    Link,
    /// A route was added or replaced (`removed` false) or deleted.
    Route { msg: RouteMessage, removed: bool },
    /// A neighbour or FDB entry of device `ifindex` changed.
    Neighbour { ifindex: u32 },
}

/// A route notification as far as it can be read without asking the kernel again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteNotice {
    /// A route was added or replaced; its value now.
    Added(Route),
    /// A route was deleted.
    Removed(Route),
    /// A route outside the IPv4 main table: nothing calico-rs reads or writes.
    Elsewhere,
    /// A device not known yet, a shape [`Route`] does not model: only a dump tells.
    Unreadable,
}

/// The kernel operations the dataplane needs.
#[async_trait]
pub trait Kernel: Send + Sync + 'static {
    /// Every IPv4 route of the main table that fits [`Route`] (others are skipped).
    async fn dump_routes(&self) -> Result<Vec<Route>, KernelError>;
    /// Adds or replaces a route.
    async fn replace_route(&self, route: &Route) -> Result<(), KernelError>;
    /// Deletes a route (NotFound when already gone).
    async fn delete_route(&self, route: &Route) -> Result<(), KernelError>;
    /// Reads a route notification from what is known already (no kernel round trip).
    /// Without an implementation every notification is unreadable, so each one makes the
    /// next pass dump the table.
    fn read_route_notice(&self, _msg: &RouteMessage, _removed: bool) -> RouteNotice {
        RouteNotice::Unreadable
    }

    /// Every device.
    async fn links(&self) -> Result<Vec<LinkInfo>, KernelError>;
    /// One device, if it exists.
    async fn link(&self, name: &str) -> Result<Option<LinkInfo>, KernelError>;
    /// Creates or reconfigures a VXLAN device, up, with exactly its tunnel address.
    async fn ensure_vxlan(&self, dev: &VxlanDevice) -> Result<(), KernelError>;
    /// Creates or reconfigures tunl0, up, with exactly its tunnel address.
    async fn ensure_ipip(&self, dev: &IpipDevice) -> Result<(), KernelError>;
    /// Deletes a device by name (NotFound when absent).
    async fn delete_link(&self, name: &str) -> Result<(), KernelError>;
    /// Removes every IPv4 address of a device (tunl0 when IPIP is switched off: the
    /// device itself belongs to the ipip module and cannot be deleted).
    async fn flush_addresses(&self, name: &str) -> Result<(), KernelError>;

    /// Permanent neighbour entries on `dev`.
    async fn dump_neighbours(&self, dev: &str) -> Result<Vec<Neighbour>, KernelError>;
    async fn replace_neighbour(&self, n: &Neighbour) -> Result<(), KernelError>;
    async fn delete_neighbour(&self, n: &Neighbour) -> Result<(), KernelError>;

    /// Permanent FDB entries (with a remote) on `dev`.
    async fn dump_fdb(&self, dev: &str) -> Result<Vec<FdbEntry>, KernelError>;
    async fn replace_fdb(&self, e: &FdbEntry) -> Result<(), KernelError>;
    async fn delete_fdb(&self, e: &FdbEntry) -> Result<(), KernelError>;

    /// Writes a sysctl under /proc/sys (`net/ipv4/conf/cali123/proxy_arp`).
    async fn set_sysctl(&self, path: &str, value: &str) -> Result<(), KernelError>;
}
