//! One rtnetlink connection in one network namespace (the one the calling thread is in
//! when [`Netlink::connect`] runs) and the few requests pod wiring needs, over the netlink
//! layer shared with calico-node ([`rtnl`]). Kernel errors become [`CniError`]s naming
//! what was being done.

use std::net::IpAddr;
use std::os::fd::RawFd;

use ipnet::IpNet;
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkMessage};
use netlink_packet_route::route::{RouteMessage, RouteProtocol, RouteScope};
use rtnetlink::{LinkMessageBuilder, LinkUnspec, LinkVeth};
use rtnl::parse::{RouteFields, address_of, destination, link_alias, link_mac, link_mtu, link_up};
use rtnl::{LinkSettings, Rtnl};

use crate::error::{CniError, Result};

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

fn fail(what: impl Into<String>, e: rtnl::Error) -> CniError {
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
    rtnl: Rtnl,
}

impl Netlink {
    /// Opens a netlink socket in the calling thread's network namespace.
    pub fn connect() -> Result<Netlink> {
        let rtnl = Rtnl::connect().map_err(|e| fail("cannot open a netlink socket", e))?;
        Ok(Netlink { rtnl })
    }

    /// The link called `name`, if there is one.
    pub async fn link(&self, name: &str) -> Result<Option<LinkInfo>> {
        let link = self.rtnl.link_by_name(name).await;
        link.map(|l| l.as_ref().map(link_info))
            .map_err(|e| fail(format!("cannot look up link {name}"), e))
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
        let added = self.rtnl.handle().link().add(msg).execute().await;
        added.map_err(|e| match rtnl::Error::from(e) {
            e @ rtnl::Error::Exists(_) => fail(
                format!("cannot create veth {host}/{peer}: a link with that name exists"),
                e,
            ),
            e => fail(format!("cannot create veth {host}/{peer}"), e),
        })
    }

    /// Sets link `index` up.
    pub async fn set_up(&self, index: u32) -> Result<()> {
        let up = LinkSettings {
            up: true,
            ..LinkSettings::default()
        };
        self.rtnl
            .set_link(index, &up)
            .await
            .map_err(|e| fail(format!("cannot set link {index} up"), e))
    }

    /// Sets the alias of link `index` (`ip link show` prints it as `alias <text>`).
    pub async fn set_alias(&self, index: u32, alias: &str) -> Result<()> {
        let settings = LinkSettings {
            alias: Some(alias),
            ..LinkSettings::default()
        };
        self.rtnl
            .set_link(index, &settings)
            .await
            .map_err(|e| fail(format!("cannot set the alias of link {index}"), e))
    }

    /// Deletes link `index`; a link already gone is fine.
    pub async fn delete_link(&self, index: u32) -> Result<()> {
        let deleted = self.rtnl.delete_link(index).await;
        deleted
            .or_else(rtnl::Error::ignore_not_found)
            .map_err(|e| fail(format!("cannot delete link {index}"), e))
    }

    /// Adds `ip/prefix_len` to link `index` (replacing an identical one).
    pub async fn add_address(&self, index: u32, ip: IpAddr, prefix_len: u8) -> Result<()> {
        self.rtnl
            .add_address(index, ip, prefix_len)
            .await
            .map_err(|e| fail(format!("cannot add address {ip}/{prefix_len}"), e))
    }

    /// The addresses of link `index`, both families.
    pub async fn addresses(&self, index: u32) -> Result<Vec<(IpAddr, u8)>> {
        let messages = self.rtnl.addresses(Some(index)).await;
        let messages = messages.map_err(|e| fail("cannot list addresses", e))?;
        Ok(messages
            .iter()
            .filter_map(|m| address_of(m).map(|ip| (ip, m.header.prefix_len)))
            .collect())
    }

    /// Writes a route with `.replace()` (idempotent).
    pub async fn replace_route(&self, route: RouteMessage, what: &str) -> Result<()> {
        self.rtnl
            .replace_route(route)
            .await
            .map_err(|e| fail(format!("cannot add route {what}"), e))
    }

    /// `dst/len dev <oif> scope link`, protocol `boot` (Calico's `DeviceRouteProtocol`,
    /// which `ip route` does not print).
    pub fn device_route(dst: IpAddr, prefix_len: u8, oif: u32) -> Result<RouteMessage> {
        Ok(route_to(dst, prefix_len)?
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
        Ok(route_to(dst, prefix_len)?
            .gateway(gw)
            .map_err(invalid_route)?
            .output_interface(oif)
            .protocol(RouteProtocol::Boot)
            .build())
    }

    /// The routes of the main table of one family (`ipv6`: IPv6, else IPv4).
    pub async fn routes(&self, ipv6: bool) -> Result<Vec<RouteFields>> {
        let routes = self.rtnl.routes(ipv6).await;
        routes.map_err(|e| fail("cannot list routes", e))
    }
}

fn route_to(dst: IpAddr, prefix_len: u8) -> Result<rtnetlink::RouteMessageBuilder<IpAddr>> {
    let dst = IpNet::new(dst, prefix_len).map_err(invalid_route)?;
    destination(dst).map_err(invalid_route)
}

fn invalid_route(e: impl std::fmt::Display) -> CniError {
    CniError::dataplane("cannot build a route", e.to_string())
}

fn link_info(msg: &LinkMessage) -> LinkInfo {
    LinkInfo {
        index: msg.header.index,
        mac: link_mac(msg),
        up: link_up(msg),
        mtu: link_mtu(msg),
        alias: link_alias(msg),
    }
}
