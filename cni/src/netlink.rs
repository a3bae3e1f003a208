//! One rtnetlink connection in one network namespace (the one the calling thread is in
//! when [`Netlink::connect`] runs) and the few requests pod wiring needs. Kernel errors
//! become [`CniError`]s naming what was being done.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::RawFd;

use futures::TryStreamExt;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::error::{CniError, Result};

/// The kernel's view of one route, as much as wiring and CHECK need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    pub dst: IpAddr,
    pub prefix_len: u8,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    pub scope: RouteScope,
    pub kind: RouteType,
}

/// A link's index, MAC, state and alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub mac: Option<[u8; 6]>,
    pub up: bool,
    pub mtu: Option<u32>,
    /// `ip link set ... alias`: the host veth carries the container it was made for.
    pub alias: Option<String>,
}

/// Errno of a netlink error, if it carries one.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(msg) => msg.code.map(|c| -c.get()),
        _ => None,
    }
}

fn is_not_found(e: &rtnetlink::Error) -> bool {
    matches!(
        errno(e),
        Some(libc::ENODEV) | Some(libc::ENOENT) | Some(libc::ESRCH)
    )
}

fn fail(what: impl Into<String>, e: rtnetlink::Error) -> CniError {
    CniError::dataplane(what, e.to_string())
}

/// Formats a MAC as `aa:bb:..`.
pub fn mac_text(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// An rtnetlink handle in one namespace; the connection task runs on the current tokio
/// runtime for as long as the handle lives.
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens a netlink socket in the calling thread's network namespace.
    pub fn connect() -> Result<Netlink> {
        let (conn, handle, _) = rtnetlink::new_connection()
            .map_err(|e| CniError::dataplane("cannot open a netlink socket", e.to_string()))?;
        tokio::spawn(conn);
        Ok(Netlink { handle })
    }

    /// The link called `name`, if there is one.
    pub async fn link(&self, name: &str) -> Result<Option<LinkInfo>> {
        let mut links = self.handle.link().get().match_name(name).execute();
        match links.try_next().await {
            Ok(Some(msg)) => Ok(Some(link_info(&msg))),
            Ok(None) => Ok(None),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(fail(format!("cannot look up link {name}"), e)),
        }
    }

    /// Creates the veth pair `host` (here, MAC `host_mac`, down: its sysctls come first)
    /// / `peer` (created directly in the namespace `peer_netns`), both with `mtu`.
    pub async fn create_veth(
        &self,
        host: &str,
        host_mac: [u8; 6],
        peer: &str,
        mtu: u32,
        peer_netns: RawFd,
    ) -> Result<()> {
        let peer_msg = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer.to_string())
            .mtu(mtu)
            .setns_by_fd(peer_netns)
            .build();
        let msg = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(host.to_string())
            .mtu(mtu)
            .address(host_mac.to_vec())
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
            .build();
        self.handle
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(|e| match errno(&e) {
                Some(libc::EEXIST) => CniError::dataplane(
                    format!("cannot create veth {host}/{peer}: a link with that name exists"),
                    e.to_string(),
                ),
                _ => fail(format!("cannot create veth {host}/{peer}"), e),
            })
    }

    /// Sets link `index` up.
    pub async fn set_up(&self, index: u32) -> Result<()> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(|e| fail(format!("cannot set link {index} up"), e))
    }

    /// Sets the alias of link `index` (`ip link show` prints it as `alias <text>`).
    pub async fn set_alias(&self, index: u32, alias: &str) -> Result<()> {
        let mut msg = LinkUnspec::new_with_index(index).build();
        msg.attributes
            .push(LinkAttribute::IfAlias(alias.to_string()));
        self.handle
            .link()
            .set(msg)
            .execute()
            .await
            .map_err(|e| fail(format!("cannot set the alias of link {index}"), e))
    }

    /// Deletes link `index`; a link already gone is fine.
    pub async fn delete_link(&self, index: u32) -> Result<()> {
        match self.handle.link().del(index).execute().await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(fail(format!("cannot delete link {index}"), e)),
        }
    }

    /// Adds `ip/prefix_len` to link `index` (replacing an identical one).
    pub async fn add_address(&self, index: u32, ip: IpAddr, prefix_len: u8) -> Result<()> {
        self.handle
            .address()
            .add(index, ip, prefix_len)
            .replace()
            .execute()
            .await
            .map_err(|e| fail(format!("cannot add address {ip}/{prefix_len}"), e))
    }

    /// The addresses of link `index`, both families.
    pub async fn addresses(&self, index: u32) -> Result<Vec<(IpAddr, u8)>> {
        let mut out = Vec::new();
        let mut stream = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute();
        loop {
            match stream.try_next().await {
                Ok(Some(msg)) => {
                    if msg.header.index == index
                        && let Some(ip) = address_of(&msg)
                    {
                        out.push((ip, msg.header.prefix_len));
                    }
                }
                Ok(None) => return Ok(out),
                Err(e) => return Err(fail("cannot list addresses", e)),
            }
        }
    }

    /// Writes a route with `.replace()` (idempotent).
    pub async fn replace_route(&self, route: RouteMessage, what: &str) -> Result<()> {
        self.handle
            .route()
            .add(route)
            .replace()
            .execute()
            .await
            .map_err(|e| fail(format!("cannot add route {what}"), e))
    }

    /// `dst/len dev <oif> scope link`, protocol `boot` (Calico's `DeviceRouteProtocol`,
    /// which `ip route` does not print).
    pub fn device_route(dst: IpAddr, prefix_len: u8, oif: u32) -> Result<RouteMessage> {
        Ok(destination(dst, prefix_len)?
            .output_interface(oif)
            .scope(RouteScope::Link)
            .protocol(RouteProtocol::Boot)
            .build())
    }

    /// `dst/len via gw dev <oif>`, protocol `boot`; `gw` of the same family as `dst`.
    pub fn gateway_route(
        dst: IpAddr,
        prefix_len: u8,
        gw: IpAddr,
        oif: u32,
    ) -> Result<RouteMessage> {
        Ok(destination(dst, prefix_len)?
            .gateway(gw)
            .map_err(invalid_route)?
            .output_interface(oif)
            .protocol(RouteProtocol::Boot)
            .build())
    }

    /// The routes of the main table of one family (`ipv6`: IPv6, else IPv4).
    pub async fn routes(&self, ipv6: bool) -> Result<Vec<RouteInfo>> {
        let filter = if ipv6 {
            RouteMessageBuilder::<Ipv6Addr>::new().build()
        } else {
            RouteMessageBuilder::<Ipv4Addr>::new().build()
        };
        let mut stream = self.handle.route().get(filter).execute();
        let mut out = Vec::new();
        loop {
            match stream.try_next().await {
                Ok(Some(msg)) => {
                    if let Some(r) = route_info(&msg) {
                        out.push(r);
                    }
                }
                Ok(None) => return Ok(out),
                Err(e) => return Err(fail("cannot list routes", e)),
            }
        }
    }
}

fn destination(dst: IpAddr, prefix_len: u8) -> Result<RouteMessageBuilder<IpAddr>> {
    RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(dst, prefix_len)
        .map_err(invalid_route)
}

fn invalid_route(e: impl std::fmt::Display) -> CniError {
    CniError::dataplane("cannot build a route", e.to_string())
}

fn link_info(msg: &LinkMessage) -> LinkInfo {
    let mut info = LinkInfo {
        index: msg.header.index,
        mac: None,
        up: msg.header.flags.contains(LinkFlags::Up),
        mtu: None,
        alias: None,
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::Address(bytes) if bytes.len() == 6 => {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(bytes);
                info.mac = Some(mac);
            }
            LinkAttribute::Mtu(m) => info.mtu = Some(*m),
            LinkAttribute::IfAlias(a) if !a.is_empty() => info.alias = Some(a.clone()),
            _ => {}
        }
    }
    info
}

/// An address message's address: IPv4 carries it as `Local`, IPv6 as `Address` only.
fn address_of(msg: &AddressMessage) -> Option<IpAddr> {
    let local = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(ip) => Some(*ip),
        _ => None,
    });
    local.or_else(|| {
        msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(ip) => Some(*ip),
            _ => None,
        })
    })
}

fn route_info(msg: &RouteMessage) -> Option<RouteInfo> {
    let unspecified = match msg.header.address_family {
        AddressFamily::Inet => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => return None,
    };
    if msg.header.table != 254 {
        return None;
    }
    let mut r = RouteInfo {
        dst: unspecified,
        prefix_len: msg.header.destination_prefix_length,
        gateway: None,
        oif: None,
        scope: msg.header.scope,
        kind: msg.header.kind,
    };
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => r.dst = IpAddr::V4(*ip),
            RouteAttribute::Destination(RouteAddress::Inet6(ip)) => r.dst = IpAddr::V6(*ip),
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => r.gateway = Some(IpAddr::V4(*ip)),
            RouteAttribute::Gateway(RouteAddress::Inet6(ip)) => r.gateway = Some(IpAddr::V6(*ip)),
            RouteAttribute::Oif(i) => r.oif = Some(*i),
            _ => {}
        }
    }
    Some(r)
}
