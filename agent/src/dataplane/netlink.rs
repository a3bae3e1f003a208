//! The [`Kernel`] trait over rtnetlink: one netlink connection for the component that owns
//! it, `.replace()` for idempotent writes. The requests and message readers the CNI plugin
//! makes too are the shared [`rtnl`] crate's; VXLAN, IPIP, neighbours and FDB entries are
//! here.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datastore::model::IpFamily;
use futures::TryStreamExt;
use netlink_packet_route::AddressFamily;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkInfo as NlLinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::route::{RouteMessage, RouteProtocol, RouteScope, RouteType};
use rtnetlink::{LinkIpIp, LinkVxlan};
use rtnl::parse::{
    RouteFields, address_of, destination, family_of, link_infos, link_kind, link_mac, link_mtu,
    link_name, link_up, output_interface, route_fields,
};
use rtnl::{LinkSettings, Rtnl};
use tracing::info;

use super::kernel::{Kernel, KernelError, LinkInfo, RouteNotice, VxlanLink};
use super::types::{FdbEntry, IpipDevice, Neighbour, Route, RouteTarget, VxlanDevice};

/// The kernel of the network namespace this process runs in, through rtnetlink.
#[derive(Clone)]
pub struct NetlinkKernel {
    rtnl: Rtnl,
    /// Device names by index, from the last link dump and lookups since: a route write or
    /// dump would otherwise dump or look up links for every route. Interface indexes are
    /// never reused by the kernel (they only grow), so an entry is never wrong about
    /// another device; a name seen again under a new index replaces its entry, and a
    /// route naming an index not known here makes the dump read the links again.
    names: Arc<Mutex<HashMap<u32, String>>>,
}

impl NetlinkKernel {
    /// Opens a netlink connection in the current network namespace; its I/O runs on a
    /// spawned tokio task for as long as the handle lives.
    pub fn connect() -> Result<NetlinkKernel, KernelError> {
        let (kernel, conn) = Self::open()?;
        tokio::spawn(conn);
        Ok(kernel)
    }

    /// Opens a netlink connection and returns, beside the handle, the connection's I/O
    /// for the caller to run (and supervise: the handle is useless once it ends).
    pub fn open() -> Result<(NetlinkKernel, impl Future<Output = ()> + Send + 'static), KernelError>
    {
        let (rtnl, conn) = Rtnl::open()?;
        Ok((
            NetlinkKernel {
                rtnl,
                names: Arc::default(),
            },
            conn,
        ))
    }

    fn known_names(&self) -> std::sync::MutexGuard<'_, HashMap<u32, String>> {
        // A panic elsewhere while holding the lock leaves a map that is still a valid cache.
        self.names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records `index` as `name`'s, dropping any older index of that name.
    fn learn_name(&self, index: u32, name: &str) {
        let mut names = self.known_names();
        names.retain(|i, n| *i == index || n != name);
        names.insert(index, name.to_string());
    }

    /// The index of device `name`: from the names known, else asked of the kernel.
    async fn index_of(&self, name: &str) -> Result<u32, KernelError> {
        let known = self
            .known_names()
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(i, _)| *i);
        if let Some(index) = known {
            return Ok(index);
        }
        self.lookup_index(name).await
    }

    async fn lookup_index(&self, name: &str) -> Result<u32, KernelError> {
        let link = self
            .rtnl
            .link_by_name(name)
            .await?
            .ok_or_else(|| KernelError::NotFound(format!("device {name}")))?;
        self.learn_name(link.header.index, name);
        Ok(link.header.index)
    }

    /// Every device's name by index, read from the kernel (and kept for later lookups).
    async fn names_by_index(&self) -> Result<HashMap<u32, String>, KernelError> {
        let names: HashMap<u32, String> = self
            .rtnl
            .links()
            .await?
            .iter()
            .filter_map(|l| link_name(l).map(|n| (l.header.index, n)))
            .collect();
        *self.known_names() = names.clone();
        Ok(names)
    }

    async fn route_message(&self, route: &Route) -> Result<RouteMessage, KernelError> {
        let mut builder = destination(route.dst)?.protocol(RouteProtocol::from(route.protocol));
        match &route.target {
            RouteTarget::Blackhole => builder = builder.kind(RouteType::BlackHole),
            RouteTarget::Gateway { via, dev, onlink } => {
                builder = builder
                    .gateway(*via)
                    .map_err(|e| KernelError::Other(format!("route {route}: {e}")))?;
                if let Some(dev) = dev {
                    builder = builder.output_interface(self.index_of(dev).await?);
                }
                if *onlink {
                    builder = builder.onlink();
                }
            }
            RouteTarget::Device { dev } => {
                builder = builder
                    .output_interface(self.index_of(dev).await?)
                    .scope(RouteScope::Link);
            }
        }
        Ok(builder.build())
    }

    /// Sets exactly `want` (a host address, or nothing) as the addresses of `family` on
    /// device `index`. IPv6 link-local addresses are the kernel's and stay.
    async fn set_only_address(
        &self,
        index: u32,
        family: AddressFamily,
        want: Option<IpAddr>,
    ) -> Result<(), KernelError> {
        let mut present = false;
        for msg in self.rtnl.addresses(Some(index)).await? {
            if msg.header.family != family {
                continue;
            }
            let addr = address_of(&msg);
            if let Some(IpAddr::V6(ip)) = addr
                && ip.is_unicast_link_local()
            {
                continue;
            }
            if let (Some(a), Some(w)) = (addr, want)
                && a == w
                && msg.header.prefix_len == IpFamily::of_addr(&w).host_prefix_len()
            {
                present = true;
                continue;
            }
            self.rtnl
                .delete_address(msg)
                .await
                .or_else(KernelError::ignore_not_found)?;
        }
        if let (Some(addr), false) = (want, present) {
            self.rtnl
                .add_address(index, addr, IpFamily::of_addr(&addr).host_prefix_len())
                .await?;
        }
        Ok(())
    }

    /// The addresses of every device (or of device `index`) by device index.
    async fn addresses(&self, index: Option<u32>) -> Result<DeviceAddresses, KernelError> {
        let mut out = DeviceAddresses::default();
        for msg in self.rtnl.addresses(index).await? {
            let (at, len) = (msg.header.index, msg.header.prefix_len);
            match address_of(&msg) {
                Some(IpAddr::V4(addr)) => out.v4.entry(at).or_default().push((addr, len)),
                Some(IpAddr::V6(addr)) => out.v6.entry(at).or_default().push((addr, len)),
                None => {}
            }
        }
        Ok(out)
    }

    /// Permanent neighbour-table entries of `dev` in `families` (`Inet`/`Inet6`: ARP and
    /// NDP entries, IP -> MAC; `Bridge`: FDB entries, MAC -> remote VTEP) as (IP, MAC)
    /// pairs, from one dump of `dump_family` (`Unspec` covers both IP families).
    async fn permanent_entries(
        &self,
        dev: &str,
        dump_family: AddressFamily,
        families: &[AddressFamily],
    ) -> Result<Vec<(IpAddr, [u8; 6])>, KernelError> {
        let index = self.index_of(dev).await?;
        let mut out = Vec::new();
        let mut stream = self
            .rtnl
            .handle()
            .neighbours()
            .get()
            .set_address_family(dump_family)
            .execute();
        while let Some(msg) = stream.try_next().await.map_err(KernelError::from)? {
            if msg.header.ifindex != index
                || msg.header.state != NeighbourState::Permanent
                || !families.contains(&msg.header.family)
            {
                continue;
            }
            if let (Some(ip), Some(mac)) = (neigh_destination(&msg), neigh_mac(&msg)) {
                out.push((ip, mac));
            }
        }
        Ok(out)
    }

    /// Deletes one neighbour-table entry of `dev` (an ARP entry, or an FDB entry with
    /// `NTF_SELF`) identified by `attributes`.
    async fn delete_entry(
        &self,
        dev: &str,
        family: AddressFamily,
        flags: NeighbourFlags,
        attributes: Vec<NeighbourAttribute>,
    ) -> Result<(), KernelError> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = family;
        msg.header.ifindex = self.index_of(dev).await?;
        msg.header.flags = flags;
        msg.attributes = attributes;
        self.rtnl
            .handle()
            .neighbours()
            .del(msg)
            .execute()
            .await
            .map_err(KernelError::from)
    }

    /// Brings a device up with the given MTU (and MAC when given).
    async fn set_link(
        &self,
        index: u32,
        mtu: u32,
        mac: Option<[u8; 6]>,
    ) -> Result<(), KernelError> {
        let settings = LinkSettings {
            up: true,
            mtu: Some(mtu),
            mac,
            alias: None,
        };
        self.rtnl.set_link(index, &settings).await
    }
}

#[async_trait]
impl Kernel for NetlinkKernel {
    async fn dump_routes(&self) -> Result<Vec<Route>, KernelError> {
        let mut fields = self.rtnl.routes(false).await?;
        fields.extend(self.rtnl.routes(true).await?);
        // The device names known suffice unless a route names a device not seen yet.
        let mut names = self.known_names().clone();
        if fields
            .iter()
            .filter_map(|f| f.oif)
            .any(|i| !names.contains_key(&i))
        {
            names = self.names_by_index().await?;
        }
        Ok(fields
            .into_iter()
            .filter_map(|f| route_of(f, &names))
            .collect())
    }

    async fn replace_route(&self, route: &Route) -> Result<(), KernelError> {
        let msg = self.route_message(route).await?;
        let index = output_interface(&msg);
        let result = self.rtnl.replace_route(msg).await;
        if let (Err(KernelError::NotFound(_)), Some(index)) = (&result, index) {
            // The device may be gone (or back under a new index): ask again next time.
            self.known_names().remove(&index);
        }
        result
    }

    async fn delete_route(&self, route: &Route) -> Result<(), KernelError> {
        // Scope "nowhere" matches a route of any scope (as `ip route del` does): the
        // builder's default, universe, does not match a pod's scope-link route, and the
        // kernel's "no such process" for that mismatch reads like "already gone".
        let mut msg = destination(route.dst)?
            .protocol(RouteProtocol::from(route.protocol))
            .scope(RouteScope::NoWhere)
            .build();
        if route.target == RouteTarget::Blackhole {
            msg.header.kind = RouteType::BlackHole;
        }
        self.rtnl.delete_route(msg).await
    }

    fn read_route_notice(&self, msg: &RouteMessage, removed: bool) -> RouteNotice {
        let Some(fields) = route_fields(msg).filter(ours_to_read) else {
            return RouteNotice::Elsewhere;
        };
        let names = self.known_names();
        if fields.oif.is_some_and(|i| !names.contains_key(&i)) {
            return RouteNotice::Unreadable;
        }
        match route_of(fields, &names) {
            Some(route) if removed => RouteNotice::Removed(route),
            Some(route) => RouteNotice::Added(route),
            None => RouteNotice::Unreadable,
        }
    }

    async fn links(&self) -> Result<Vec<LinkInfo>, KernelError> {
        let mut addresses = self.addresses(None).await?;
        let messages = self.rtnl.links().await?;
        let names: HashMap<u32, String> = messages
            .iter()
            .filter_map(|l| link_name(l).map(|n| (l.header.index, n)))
            .collect();
        let out = messages
            .iter()
            .filter_map(|l| link_info(l, &mut addresses, &names))
            .collect();
        *self.known_names() = names;
        Ok(out)
    }

    async fn link(&self, name: &str) -> Result<Option<LinkInfo>, KernelError> {
        let Some(link) = self.rtnl.link_by_name(name).await? else {
            return Ok(None);
        };
        self.learn_name(link.header.index, name);
        let mut addresses = self.addresses(Some(link.header.index)).await?;
        let mut names = self.known_names().clone();
        let parent = vxlan_identity(&link).and_then(|v| v.parent);
        if parent.is_some_and(|p| !names.contains_key(&p)) {
            names = self.names_by_index().await?;
        }
        Ok(link_info(&link, &mut addresses, &names))
    }

    async fn ensure_vxlan(&self, dev: &VxlanDevice) -> Result<(), KernelError> {
        let parent = self.index_of(&dev.parent).await?;
        if let Some(link) = self.rtnl.link_by_name(&dev.name).await? {
            if vxlan_matches(&link, dev, parent) {
                self.set_link(link.header.index, dev.mtu, Some(dev.mac))
                    .await?;
                return self
                    .set_only_address(link.header.index, family_of(dev.local), dev.address)
                    .await;
            }
            // VNI, port, source or parent changed: those cannot be edited in place.
            info!(device = %dev.name, vni = dev.vni, "remaking VXLAN device: its tunnel identity changed");
            self.rtnl
                .delete_link(link.header.index)
                .await
                .or_else(KernelError::ignore_not_found)?;
            self.known_names().remove(&link.header.index);
        }
        let builder = LinkVxlan::new(&dev.name, dev.vni)
            .dev(parent)
            .port(dev.port);
        let builder = match dev.local {
            IpAddr::V4(ip) => builder.local(ip),
            IpAddr::V6(ip) => builder.local6(ip),
        };
        let msg = builder
            .learning(false)
            .mtu(dev.mtu)
            .address(dev.mac.to_vec())
            .up()
            .build();
        self.rtnl
            .handle()
            .link()
            .add(msg)
            .execute()
            .await
            .map_err(KernelError::from)?;
        // A new device, a new index: ask the kernel, not the names known.
        let index = self.lookup_index(&dev.name).await?;
        self.set_only_address(index, family_of(dev.local), dev.address)
            .await
    }

    async fn ensure_ipip(&self, dev: &IpipDevice) -> Result<(), KernelError> {
        const NAME: &str = super::ownership::IPIP_DEVICE;
        let link = match self.rtnl.link_by_name(NAME).await? {
            Some(link) => link,
            None => {
                // Adding any ipip device loads the module, which creates tunl0 itself.
                let added = self
                    .rtnl
                    .handle()
                    .link()
                    .add(LinkIpIp::new(NAME).build())
                    .execute()
                    .await
                    .map_err(KernelError::from);
                match added {
                    Ok(()) | Err(KernelError::Exists(_)) => {}
                    Err(KernelError::Unsupported(_)) | Err(KernelError::NotFound(_)) => {
                        return Err(no_ipip());
                    }
                    Err(e) => return Err(e),
                }
                self.rtnl.link_by_name(NAME).await?.ok_or_else(no_ipip)?
            }
        };
        self.set_link(link.header.index, dev.mtu, None).await?;
        self.set_only_address(
            link.header.index,
            AddressFamily::Inet,
            dev.address.map(IpAddr::V4),
        )
        .await
    }

    async fn delete_link(&self, name: &str) -> Result<(), KernelError> {
        let index = self.index_of(name).await?;
        let deleted = self.rtnl.delete_link(index).await;
        // Gone, or never there under that index: either way the name must be asked again.
        self.known_names().remove(&index);
        deleted
    }

    async fn flush_addresses(&self, name: &str) -> Result<(), KernelError> {
        let index = self.index_of(name).await?;
        self.set_only_address(index, AddressFamily::Inet, None)
            .await
    }

    async fn dump_neighbours(&self, dev: &str) -> Result<Vec<Neighbour>, KernelError> {
        let families = [AddressFamily::Inet, AddressFamily::Inet6];
        let entries = self
            .permanent_entries(dev, AddressFamily::Unspec, &families)
            .await?;
        Ok(entries
            .into_iter()
            .map(|(ip, mac)| Neighbour {
                dev: dev.to_string(),
                ip,
                mac,
            })
            .collect())
    }

    async fn replace_neighbour(&self, n: &Neighbour) -> Result<(), KernelError> {
        let index = self.index_of(&n.dev).await?;
        self.rtnl
            .handle()
            .neighbours()
            .add(index, n.ip)
            .link_layer_address(&n.mac)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(KernelError::from)
    }

    async fn delete_neighbour(&self, n: &Neighbour) -> Result<(), KernelError> {
        let dst = NeighbourAttribute::Destination(neighbour_address(n.ip));
        self.delete_entry(&n.dev, family_of(n.ip), NeighbourFlags::empty(), vec![dst])
            .await
    }

    async fn dump_fdb(&self, dev: &str) -> Result<Vec<FdbEntry>, KernelError> {
        let bridge = [AddressFamily::Bridge];
        let entries = self
            .permanent_entries(dev, AddressFamily::Bridge, &bridge)
            .await?;
        Ok(entries
            .into_iter()
            .map(|(dst, mac)| FdbEntry {
                dev: dev.to_string(),
                mac,
                dst,
            })
            .collect())
    }

    async fn replace_fdb(&self, e: &FdbEntry) -> Result<(), KernelError> {
        let index = self.index_of(&e.dev).await?;
        self.rtnl
            .handle()
            .neighbours()
            .add_bridge(index, &e.mac)
            .destination(e.dst)
            .flags(NeighbourFlags::Own)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(KernelError::from)
    }

    async fn delete_fdb(&self, e: &FdbEntry) -> Result<(), KernelError> {
        let attrs = vec![
            NeighbourAttribute::LinkLayerAddress(e.mac.to_vec()),
            NeighbourAttribute::Destination(neighbour_address(e.dst)),
        ];
        self.delete_entry(&e.dev, AddressFamily::Bridge, NeighbourFlags::Own, attrs)
            .await
    }

    async fn set_sysctl(&self, path: &str, value: &str) -> Result<(), KernelError> {
        let full = format!("/proc/sys/{path}");
        tokio::fs::write(&full, value)
            .await
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => KernelError::NotFound(full.clone()),
                _ => KernelError::Other(format!("writing {full}: {e}")),
            })
    }
}

/// What a kernel without the ipip module answers for tunl0.
fn no_ipip() -> KernelError {
    KernelError::Unsupported("kernel has no ipip support".into())
}

// ===== netlink message parsing =====

/// Devices' addresses by index, as one dump reads them.
#[derive(Default)]
struct DeviceAddresses {
    v4: HashMap<u32, Vec<(Ipv4Addr, u8)>>,
    v6: HashMap<u32, Vec<(Ipv6Addr, u8)>>,
}

/// A device message as a [`LinkInfo`], taking its addresses out of `addresses`; `names`
/// names a VXLAN device's parent.
fn link_info(
    link: &LinkMessage,
    addresses: &mut DeviceAddresses,
    names: &HashMap<u32, String>,
) -> Option<LinkInfo> {
    let index = link.header.index;
    Some(LinkInfo {
        index,
        name: link_name(link)?,
        kind: link_kind(link).map(|k| k.to_string()),
        mtu: link_mtu(link).unwrap_or(0),
        mac: link_mac(link),
        up: link_up(link),
        addresses: addresses.v4.remove(&index).unwrap_or_default(),
        addresses_v6: addresses.v6.remove(&index).unwrap_or_default(),
        vxlan: vxlan_identity(link).map(|v| VxlanLink {
            vni: v.vni,
            port: v.port,
            local: v.local,
            parent: v.parent.and_then(|p| names.get(&p).cloned()),
        }),
    })
}

/// A VXLAN device's tunnel as its message says, the parent by index.
struct VxlanIdentity {
    vni: u32,
    port: u16,
    local: Option<IpAddr>,
    parent: Option<u32>,
}

fn vxlan_identity(link: &LinkMessage) -> Option<VxlanIdentity> {
    if link_kind(link) != Some(&InfoKind::Vxlan) {
        return None;
    }
    let data = link_infos(link).iter().find_map(|i| match i {
        NlLinkInfo::Data(InfoData::Vxlan(d)) => Some(d),
        _ => None,
    })?;
    // The kernel always reports the port; 4789 is its default should one not.
    let mut identity = VxlanIdentity {
        vni: 0,
        port: 4789,
        local: None,
        parent: None,
    };
    for item in data {
        match item {
            InfoVxlan::Id(v) => identity.vni = *v,
            InfoVxlan::Port(p) => identity.port = *p,
            InfoVxlan::Local(l) => identity.local = Some(IpAddr::V4(*l)),
            InfoVxlan::Local6(l) => identity.local = Some(IpAddr::V6(*l)),
            InfoVxlan::Link(l) => identity.parent = Some(*l),
            _ => {}
        }
    }
    Some(identity)
}

/// True when an existing VXLAN device already has the identity `dev` asks for.
fn vxlan_matches(link: &LinkMessage, dev: &VxlanDevice, parent: u32) -> bool {
    vxlan_identity(link).is_some_and(|v| {
        v.vni == dev.vni
            && v.port == dev.port
            && v.local == Some(dev.local)
            && v.parent == Some(parent)
    })
}

fn neigh_destination(msg: &NeighbourMessage) -> Option<IpAddr> {
    msg.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => Some(IpAddr::V4(*ip)),
        NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => Some(IpAddr::V6(*ip)),
        // Bridge-family (FDB) messages carry the VTEP address unparsed: 4 or 16 bytes.
        NeighbourAttribute::Destination(NeighbourAddress::Other(bytes)) => match bytes.len() {
            4 => <[u8; 4]>::try_from(bytes.as_slice())
                .ok()
                .map(|b| IpAddr::V4(Ipv4Addr::from(b))),
            16 => <[u8; 16]>::try_from(bytes.as_slice())
                .ok()
                .map(|b| IpAddr::V6(Ipv6Addr::from(b))),
            _ => None,
        },
        _ => None,
    })
}

fn neighbour_address(ip: IpAddr) -> NeighbourAddress {
    match ip {
        IpAddr::V4(ip) => NeighbourAddress::Inet(ip),
        IpAddr::V6(ip) => NeighbourAddress::Inet6(ip),
    }
}

fn neigh_mac(msg: &NeighbourMessage) -> Option<[u8; 6]> {
    msg.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(b) => <[u8; 6]>::try_from(b.as_slice()).ok(),
        _ => None,
    })
}

/// True for a route calico-rs could own: in the main table (either family), the only
/// table it programs, and not to an IPv6 link-local network (every interface has its
/// `fe80::/64 proto kernel`, one per device under the same destination; a new pod's
/// would otherwise read as a change nobody made).
fn ours_to_read(fields: &RouteFields) -> bool {
    let link_local = matches!(fields.dst.addr(), IpAddr::V6(ip) if ip.is_unicast_link_local());
    fields.in_main_table() && !link_local
}

/// Turns a main-table route into a [`Route`], or `None` for what we never program (other
/// tables, local/broadcast routes, multipath, ...).
fn route_of(fields: RouteFields, names: &HashMap<u32, String>) -> Option<Route> {
    if !ours_to_read(&fields) {
        return None;
    }
    let dev = fields.oif.and_then(|i| names.get(&i).cloned());
    let target = match (fields.kind, fields.gateway, dev) {
        (RouteType::BlackHole, _, _) => RouteTarget::Blackhole,
        (RouteType::Unicast, Some(via), dev) => RouteTarget::Gateway {
            via,
            dev,
            onlink: fields.onlink,
        },
        (RouteType::Unicast, None, Some(dev)) => RouteTarget::Device { dev },
        _ => return None,
    };
    Some(Route {
        dst: fields.dst,
        target,
        protocol: fields.protocol,
    })
}
