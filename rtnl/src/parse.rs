//! Readers of the kernel's link, address and route messages, and the route-message
//! builder of a destination: pure functions over `netlink-packet-route` types.

use std::borrow::Borrow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteScope, RouteType,
};
use rtnetlink::RouteMessageBuilder;

use crate::Error;

// ===== links =====

pub fn link_name(link: &LinkMessage) -> Option<String> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.clone()),
        _ => None,
    })
}

/// The `IFLA_LINKINFO` items: the kind and its data.
pub fn link_infos(link: &LinkMessage) -> &[LinkInfo] {
    link.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::LinkInfo(infos) => Some(infos.as_slice()),
            _ => None,
        })
        .unwrap_or(&[])
}

/// `veth`, `vxlan`, `ipip`, ... when the kernel says.
pub fn link_kind(link: &LinkMessage) -> Option<&InfoKind> {
    link_infos(link).iter().find_map(|i| match i {
        LinkInfo::Kind(k) => Some(k),
        _ => None,
    })
}

pub fn link_mtu(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(m) => Some(*m),
        _ => None,
    })
}

/// The device's Ethernet address (none for tunl0 and other non-Ethernet devices).
pub fn link_mac(link: &LinkMessage) -> Option<[u8; 6]> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(bytes) => <[u8; 6]>::try_from(bytes.as_slice()).ok(),
        _ => None,
    })
}

/// `ip link set ... alias <text>`, when set.
pub fn link_alias(link: &LinkMessage) -> Option<String> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfAlias(a) if !a.is_empty() => Some(a.clone()),
        _ => None,
    })
}

pub fn link_up(link: &LinkMessage) -> bool {
    link.header.flags.contains(LinkFlags::Up)
}

// ===== addresses =====

/// An address message's address, of the message's family: IPv4 carries it as `Local`
/// (and `Address`, the peer's on point-to-point devices), IPv6 as `Address` only.
pub fn address_of(msg: &AddressMessage) -> Option<IpAddr> {
    let of_family = |ip: &IpAddr| match msg.header.family {
        AddressFamily::Inet => ip.is_ipv4(),
        AddressFamily::Inet6 => ip.is_ipv6(),
        _ => false,
    };
    let local = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) if of_family(ip) => Some(*ip),
        _ => None,
    });
    local.or_else(|| {
        msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) if of_family(ip) => Some(*ip),
            _ => None,
        })
    })
}

/// The netlink address family of an address.
pub fn family_of(ip: IpAddr) -> AddressFamily {
    match ip {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

// ===== routes =====

/// What a route message says, as far as calico-rs reads routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteFields {
    pub dst: IpNet,
    pub gateway: Option<IpAddr>,
    /// The output device's index.
    pub oif: Option<u32>,
    pub scope: RouteScope,
    pub kind: RouteType,
    pub protocol: u8,
    pub onlink: bool,
    /// The table, from its attribute (tables above 255) or the header.
    pub table: u32,
}

impl RouteFields {
    /// True in the main table, the only one calico-rs programs.
    pub fn in_main_table(&self) -> bool {
        self.table == u32::from(RouteHeader::RT_TABLE_MAIN)
    }
}

/// The fields of an IPv4 or IPv6 route message; `None` for other families or a
/// destination that is not a prefix.
pub fn route_fields(msg: &RouteMessage) -> Option<RouteFields> {
    route_fields_of(&msg.header, &msg.attributes)
}

/// The fields of a route message's header and attributes (all of them, or only those a
/// [`RouteFields`] is made of).
pub(crate) fn route_fields_of<A: Borrow<RouteAttribute>>(
    header: &RouteHeader,
    attributes: impl IntoIterator<Item = A>,
) -> Option<RouteFields> {
    let unspecified = match header.address_family {
        AddressFamily::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => return None,
    };
    let mut dst = unspecified;
    let mut fields = RouteFields {
        dst: IpNet::new(unspecified, 0).ok()?,
        gateway: None,
        oif: None,
        scope: header.scope,
        kind: header.kind,
        protocol: u8::from(header.protocol),
        onlink: header.flags.contains(RouteFlags::Onlink),
        table: u32::from(header.table),
    };
    for attr in attributes {
        match attr.borrow() {
            RouteAttribute::Destination(a) => dst = route_address(a).unwrap_or(dst),
            RouteAttribute::Gateway(a) => fields.gateway = route_address(a),
            RouteAttribute::Oif(i) => fields.oif = Some(*i),
            RouteAttribute::Table(t) => fields.table = *t,
            _ => {}
        }
    }
    fields.dst = IpNet::new(dst, header.destination_prefix_length).ok()?;
    Some(fields)
}

fn route_address(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(ip) => Some(IpAddr::V4(*ip)),
        RouteAddress::Inet6(ip) => Some(IpAddr::V6(*ip)),
        _ => None,
    }
}

/// The output device of a route message.
pub fn output_interface(msg: &RouteMessage) -> Option<u32> {
    msg.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    })
}

/// The builder of a route message to `dst`, of its family.
pub fn destination(dst: IpNet) -> Result<RouteMessageBuilder<IpAddr>, Error> {
    RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(dst.addr(), dst.prefix_len())
        .map_err(|e| Error::Other(format!("route to {dst}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_message_reads_back_as_its_fields() {
        let msg = destination("10.244.2.0/26".parse().expect("cidr"))
            .expect("builder")
            .gateway("10.244.2.0".parse::<IpAddr>().expect("ip"))
            .expect("gateway")
            .output_interface(7)
            .onlink()
            .build();
        let fields = route_fields(&msg).expect("fields");
        assert_eq!(fields.dst.to_string(), "10.244.2.0/26");
        assert_eq!(fields.gateway, Some("10.244.2.0".parse().expect("ip")));
        assert_eq!((fields.oif, fields.onlink), (Some(7), true));
        assert!(fields.in_main_table());
    }

    #[test]
    fn an_ipv4_address_is_its_local_one_and_an_ipv6_address_its_only_one() {
        let mut v4 = AddressMessage::default();
        v4.header.family = AddressFamily::Inet;
        v4.attributes = vec![
            AddressAttribute::Address("10.0.0.2".parse().expect("ip")),
            AddressAttribute::Local("10.0.0.1".parse().expect("ip")),
        ];
        assert_eq!(address_of(&v4), Some("10.0.0.1".parse().expect("ip")));
        let mut v6 = AddressMessage::default();
        v6.header.family = AddressFamily::Inet6;
        v6.attributes = vec![AddressAttribute::Address("fd00::1".parse().expect("ip"))];
        assert_eq!(address_of(&v6), Some("fd00::1".parse().expect("ip")));
    }
}
