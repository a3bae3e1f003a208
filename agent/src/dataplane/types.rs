//! What the dataplane programs, as plain values: routes, devices, neighbours, FDB
//! entries, natOutgoing, and the [`DesiredState`] holding them all. The calculation
//! produces these (importing only this module); the reconcilers compare them with what the
//! kernel holds.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use datastore::model::IpFamily;
use ipnet::IpNet;

/// `proto boot`: what the CNI plugin (and flannel) use, not printed by `ip route`.
pub const PROTO_BOOT: u8 = 3;
/// `proto bird`: every route BIRD programs in Calico, and ours in BGP mode.
pub const PROTO_BIRD: u8 = 12;
/// `proto 80`: Felix's routes (VXLAN backend, no BGP).
pub const PROTO_CALICO: u8 = 80;

/// Where a route sends packets.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RouteTarget {
    /// `blackhole <dst>`: drop (our own, partly unallocated blocks).
    Blackhole,
    /// `<dst> via <via> [dev <dev>] [onlink]`. A `dev` of `None` lets the kernel pick the
    /// device, and then any device matches when comparing with the kernel.
    Gateway {
        via: IpAddr,
        dev: Option<String>,
        onlink: bool,
    },
    /// `<dst> dev <dev> scope link`: directly attached (pod host routes, remote VTEPs).
    Device { dev: String },
}

/// One route in the main table, of either family (`via` is of the family of `dst`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Route {
    pub dst: IpNet,
    pub target: RouteTarget,
    pub protocol: u8,
}

impl Route {
    /// True when the kernel's `actual` route is what this desired route asks for.
    pub fn is_satisfied_by(&self, actual: &Route) -> bool {
        if self.dst != actual.dst || self.protocol != actual.protocol {
            return false;
        }
        match (&self.target, &actual.target) {
            (
                RouteTarget::Gateway {
                    via: v1,
                    dev: d1,
                    onlink: o1,
                },
                RouteTarget::Gateway {
                    via: v2,
                    dev: d2,
                    onlink: o2,
                },
            ) => v1 == v2 && o1 == o2 && (d1.is_none() || d1 == d2),
            (a, b) => a == b,
        }
    }

    /// The device the route is pinned to, if any.
    pub fn dev(&self) -> Option<&str> {
        match &self.target {
            RouteTarget::Blackhole => None,
            RouteTarget::Gateway { dev, .. } => dev.as_deref(),
            RouteTarget::Device { dev } => Some(dev),
        }
    }
}

impl fmt::Display for Route {
    /// Formats the route the way `ip route` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `ip route` prints host routes without their /32 (/128).
        let dst = if self.dst.prefix_len() == self.dst.max_prefix_len() {
            self.dst.addr().to_string()
        } else {
            self.dst.to_string()
        };
        match &self.target {
            RouteTarget::Blackhole => write!(f, "blackhole {dst}")?,
            RouteTarget::Gateway { via, dev, onlink } => {
                write!(f, "{dst} via {via}")?;
                if let Some(dev) = dev {
                    write!(f, " dev {dev}")?;
                }
                if *onlink {
                    write!(f, " onlink")?;
                }
            }
            RouteTarget::Device { dev } => write!(f, "{dst} dev {dev} scope link")?,
        }
        match self.protocol {
            PROTO_BOOT => Ok(()),
            PROTO_BIRD => write!(f, " proto bird"),
            p => write!(f, " proto {p}"),
        }
    }
}

/// A permanent neighbour (ARP, or NDP for IPv6) entry:
/// `<ip> dev <dev> lladdr <mac> PERMANENT`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Neighbour {
    pub dev: String,
    pub ip: IpAddr,
    pub mac: [u8; 6],
}

/// A permanent VXLAN forwarding entry: `<mac> dev <dev> dst <remote> self permanent`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FdbEntry {
    pub dev: String,
    pub mac: [u8; 6],
    /// The remote VTEP's node address, of the device's family.
    pub dst: IpAddr,
}

/// A VXLAN device as Calico (vxlan.calico, vxlan-v6.calico) or flannel (flannel.1) sets
/// it up. Its family is the family of `local`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanDevice {
    pub name: String,
    pub vni: u32,
    pub port: u16,
    /// The underlay device (the node's interface).
    pub parent: String,
    /// The node's own address, the tunnel's source (and the underlay's family).
    pub local: IpAddr,
    pub mac: [u8; 6],
    pub mtu: u32,
    /// The tunnel address, of the family of `local`, programmed as `<addr>/32` (`/128`).
    pub address: Option<IpAddr>,
}

/// The IPIP device (tunl0) as Calico sets it up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpipDevice {
    pub mtu: u32,
    /// The tunnel address, programmed as `<addr>/32`.
    pub address: Option<Ipv4Addr>,
}

/// Formats a MAC address as `ee:ee:ee:ee:ee:ee`.
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        *byte = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test cidr")
    }

    #[test]
    fn routes_print_like_ip_route() {
        let r = Route {
            dst: net("10.100.247.0/26"),
            target: RouteTarget::Gateway {
                via: "10.1.10.10".parse().expect("ip"),
                dev: Some("ens33".into()),
                onlink: false,
            },
            protocol: PROTO_BIRD,
        };
        assert_eq!(
            r.to_string(),
            "10.100.247.0/26 via 10.1.10.10 dev ens33 proto bird"
        );
        let bh = Route {
            dst: net("10.100.84.128/26"),
            target: RouteTarget::Blackhole,
            protocol: PROTO_BIRD,
        };
        assert_eq!(bh.to_string(), "blackhole 10.100.84.128/26 proto bird");
    }

    #[test]
    fn gateway_without_device_matches_any_device() {
        let want = Route {
            dst: net("10.0.0.0/26"),
            target: RouteTarget::Gateway {
                via: "1.1.1.1".parse().expect("ip"),
                dev: None,
                onlink: false,
            },
            protocol: PROTO_BIRD,
        };
        let mut got = want.clone();
        got.target = RouteTarget::Gateway {
            via: "1.1.1.1".parse().expect("ip"),
            dev: Some("eth0".into()),
            onlink: false,
        };
        assert!(want.is_satisfied_by(&got));
        got.protocol = PROTO_BOOT;
        assert!(!want.is_satisfied_by(&got));
    }

    #[test]
    fn mac_round_trips() {
        let mac = parse_mac("66:0a:1b:2c:3d:4e").expect("mac");
        assert_eq!(format_mac(&mac), "66:0a:1b:2c:3d:4e");
        assert_eq!(parse_mac("66:0a:1b:2c:3d"), None);
        assert_eq!(parse_mac("66:0a:1b:2c:3d:4e:5f"), None);
    }
}

/// Everything calico-node wants in the kernel, as computed from the datastore and the RIB.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DesiredState {
    pub routes: BTreeMap<IpNet, Route>,
    /// `vxlan.calico` and/or `flannel.1`.
    pub vxlan_devices: Vec<VxlanDevice>,
    /// `tunl0`, when an IPIP pool is in use.
    pub ipip: Option<IpipDevice>,
    /// Permanent neighbours on the VXLAN devices.
    pub neighbours: BTreeSet<Neighbour>,
    /// Permanent FDB entries on the VXLAN devices.
    pub fdb: BTreeSet<FdbEntry>,
    /// Extra CIDRs whose `proto boot` routes are ours (flannel host-gw).
    pub managed_cidrs: Vec<IpNet>,
    /// natOutgoing sets and rules, when an IPv4 pool asks for them.
    pub nat: Option<NatOutgoing>,
    /// The same for IPv6 pools (ip6tables, `cali60…` sets).
    pub nat6: Option<NatOutgoing>,
}

impl DesiredState {
    /// The natOutgoing wanted in `family`.
    pub fn nat_of(&self, family: IpFamily) -> Option<&NatOutgoing> {
        match family {
            IpFamily::V4 => self.nat.as_ref(),
            IpFamily::V6 => self.nat6.as_ref(),
        }
    }
}

/// The natOutgoing state one node wants in one family (computed by `calc::nat`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatOutgoing {
    /// Pools with `natOutgoing: true`: sources to masquerade.
    pub masq_pools: BTreeSet<IpNet>,
    /// Every pool: destinations never masqueraded.
    pub all_pools: BTreeSet<IpNet>,
    /// FelixConfiguration `natOutgoingAddress`: SNAT to it instead of MASQUERADE.
    pub snat_to: Option<IpAddr>,
}
