//! Pod wiring as Calico does it (reference calico.md §4): a veth pair created directly in
//! its final namespaces, the host end `cali…` with MAC ee:ee:ee:ee:ee:ee, proxy ARP and no
//! address, a host route `<podIP> dev cali… scope link` per address; inside the pod `eth0`
//! up with a /32 and, for IPv4, `169.254.1.1 dev eth0 scope link` and `default via
//! 169.254.1.1 dev eth0`; with a /128 and, for IPv6, `default via fe80::ecee:eeff:feee:eeee
//! dev eth0`. Also the teardown (DEL) and the verification (CHECK).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

use tracing::{debug, warn};

use crate::error::{CniError, Result};
use datastore::model::IpFamily;
use rtnl::parse::RouteFields;

use crate::netlink::{Netlink, mac_text};
use crate::{netns, sysctl};

/// The host-side MAC of every cali interface.
pub const HOST_MAC: [u8; 6] = [0xee; 6];
/// The next hop pods route IPv4 through; never assigned anywhere, answered by proxy ARP.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The next hop pods route IPv6 through: the host end's link-local address, which its
/// fixed MAC determines (EUI-64 of ee:ee:ee:ee:ee:ee), so no pod waits to learn it.
pub const GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0xecee, 0xeeff, 0xfeee, 0xeeee);

/// What to wire.
#[derive(Debug, Clone)]
pub struct Wiring {
    /// Host end, `cali` + 11 hex.
    pub host_if: String,
    /// The container (`CNI_CONTAINERID`) the veth is made for: the host end carries it as
    /// its alias, so a late DEL for another container of the same pod can tell.
    pub container_id: String,
    /// Container end (`CNI_IFNAME`).
    pub pod_if: String,
    /// Path of the pod's network namespace.
    pub netns: String,
    /// The pod's addresses: at most one per family.
    pub ips: Vec<IpAddr>,
    pub mtu: u32,
}

impl Wiring {
    fn has_ipv4(&self) -> bool {
        self.ips.iter().any(IpAddr::is_ipv4)
    }

    fn has_ipv6(&self) -> bool {
        self.ips.iter().any(IpAddr::is_ipv6)
    }
}

/// `ip route` spells a host route without its prefix length.
fn host_route_text(ip: &IpAddr, dev: &str) -> String {
    format!("{ip} dev {dev} scope link")
}

/// What wiring produced (for the result and the endpoint record).
#[derive(Debug, Clone)]
pub struct Wired {
    pub pod_mac: String,
}

/// Wires the pod. On any failure, whatever was created is removed before returning.
pub async fn setup(w: &Wiring) -> Result<Wired> {
    let host = Netlink::connect()?;
    if let Some(stale) = host.link(&w.host_if).await? {
        warn!(
            iface = w.host_if,
            "removing a stale host veth of the same name"
        );
        host.delete_link(stale.index).await?;
    }
    let ns = netns::open(&w.netns)?;
    host.create_veth(&w.host_if, HOST_MAC, &w.pod_if, w.mtu, ns.as_raw_fd())
        .await?;
    match finish_setup(&host, w, ns).await {
        Ok(wired) => Ok(wired),
        Err(e) => {
            if let Ok(Some(link)) = host.link(&w.host_if).await
                && let Err(del) = host.delete_link(link.index).await
            {
                warn!(iface = w.host_if, error = %del, "rollback: cannot delete the veth");
            }
            Err(e)
        }
    }
}

async fn finish_setup(host: &Netlink, w: &Wiring, ns: std::fs::File) -> Result<Wired> {
    let host_link = host
        .link(&w.host_if)
        .await?
        .ok_or_else(|| CniError::dataplane(format!("veth {} vanished", w.host_if), ""))?;
    sysctl::configure_host_side(&w.host_if, w.has_ipv4(), w.has_ipv6())?;
    host.set_alias(host_link.index, &w.container_id).await?;
    host.set_up(host_link.index).await?;

    let (pod_if, ips) = (w.pod_if.clone(), w.ips.clone());
    let pod_mac = netns::run_in(ns, move || async move {
        let nl = Netlink::connect()?;
        let link = nl.link(&pod_if).await?.ok_or_else(|| {
            CniError::dataplane(format!("{pod_if} did not appear in the pod namespace"), "")
        })?;
        if ips.iter().any(IpAddr::is_ipv6) {
            sysctl::configure_pod_side_ipv6(&pod_if)?;
        }
        nl.set_up(link.index).await?;
        for ip in &ips {
            nl.add_address(link.index, *ip, IpFamily::of_addr(ip).host_prefix_len())
                .await?;
        }
        for (route, what) in pod_routes(&ips, link.index)? {
            nl.replace_route(route, &what).await?;
        }
        Ok(link.mac.map(|m| mac_text(&m)).unwrap_or_default())
    })
    .await?;

    for ip in &w.ips {
        // Calico refuses to steal a pod address routed to another interface (#3940).
        let len = IpFamily::of_addr(ip).host_prefix_len();
        let routes = host.routes(ip.is_ipv6()).await?;
        if let Some(r) = routes.iter().find(|r| {
            r.dst.addr() == *ip
                && r.dst.prefix_len() == len
                && r.oif.is_some_and(|o| o != host_link.index)
        }) {
            return Err(CniError::dataplane(
                format!(
                    "route ({ip}/{len}) already exists for an interface other than '{}'",
                    w.host_if
                ),
                format!("interface index {:?}", r.oif),
            ));
        }
        host.replace_route(
            Netlink::device_route(*ip, len, host_link.index)?,
            &host_route_text(ip, &w.host_if),
        )
        .await?;
    }
    debug!(iface = w.host_if, ips = ?w.ips, "pod wired");
    Ok(Wired { pod_mac })
}

/// The routes inside the pod, per family of its addresses, each with how `ip route`
/// prints it.
fn pod_routes(
    ips: &[IpAddr],
    pod_if: u32,
) -> Result<Vec<(netlink_packet_route::route::RouteMessage, String)>> {
    let mut out = Vec::new();
    if ips.iter().any(IpAddr::is_ipv4) {
        let gw = IpAddr::V4(GATEWAY);
        out.push((
            Netlink::device_route(gw, 32, pod_if)?,
            format!("{GATEWAY} dev eth0 scope link"),
        ));
        out.push((
            Netlink::gateway_route(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0, gw, pod_if)?,
            format!("default via {GATEWAY}"),
        ));
    }
    if ips.iter().any(IpAddr::is_ipv6) {
        // A link-local next hop is on the link by definition: no route to it first.
        out.push((
            Netlink::gateway_route(
                IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                0,
                IpAddr::V6(GATEWAY_V6),
                pod_if,
            )?,
            format!("default via {GATEWAY_V6}"),
        ));
    }
    Ok(out)
}

/// The pod's default route of one family, as [`setup`] leaves it, is among `routes`.
fn has_default_route(routes: &[RouteFields], gateway: IpAddr, pod_if: u32) -> bool {
    routes
        .iter()
        .any(|r| r.dst.prefix_len() == 0 && r.gateway == Some(gateway) && r.oif == Some(pod_if))
}

/// What DEL did with the pod's veth.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Teardown {
    /// This container's veth was removed (its host route went with it).
    Removed,
    /// There was none.
    Absent,
    /// The host veth of that name belongs to another container (the pod's sandbox was
    /// recreated and this DEL is for the old one): left alone.
    OtherContainer(String),
}

/// Removes the pod's veth if it is `container_id`'s: by its host end when that carries
/// the container in its alias; else by the container end, inside the namespace this DEL
/// names, if it is still there. A host end without an alias is never removed by name: it
/// may be another container's whose ADD has not set the alias yet (the kernel takes no
/// alias at creation), and this container's own pair goes with its namespace anyway.
pub async fn teardown(
    host_if: &str,
    netns: Option<&str>,
    pod_if: &str,
    container_id: &str,
) -> Result<Teardown> {
    let host = Netlink::connect()?;
    if let Some(link) = host.link(host_if).await? {
        match link.alias.as_deref() {
            Some(owner) if owner == container_id => {
                host.delete_link(link.index).await?;
                return Ok(Teardown::Removed);
            }
            Some(owner) => return Ok(Teardown::OtherContainer(owner.to_string())),
            None => {}
        }
    }
    let Some(path) = netns else {
        return Ok(Teardown::Absent);
    };
    let Ok(ns) = std::fs::File::open(path) else {
        return Ok(Teardown::Absent);
    };
    let pod_if = pod_if.to_string();
    netns::run_in(ns, move || async move {
        let nl = Netlink::connect()?;
        match nl.link(&pod_if).await? {
            Some(link) => nl.delete_link(link.index).await.map(|()| Teardown::Removed),
            None => Ok(Teardown::Absent),
        }
    })
    .await
}

/// Compares the kernel with what [`setup`] leaves; returns every difference found.
pub async fn check(w: &Wiring) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let host = Netlink::connect()?;
    let Some(link) = host.link(&w.host_if).await? else {
        problems.push(format!("host veth {} does not exist", w.host_if));
        return Ok(problems);
    };
    if link.mac != Some(HOST_MAC) {
        problems.push(format!(
            "host veth {} has MAC {}, expected ee:ee:ee:ee:ee:ee",
            w.host_if,
            link.mac.map(|m| mac_text(&m)).unwrap_or_default()
        ));
    }
    if !link.up {
        problems.push(format!("host veth {} is down", w.host_if));
    }
    if let Some(owner) = link.alias.as_deref().filter(|a| *a != w.container_id) {
        problems.push(format!(
            "host veth {} belongs to container {owner}",
            w.host_if
        ));
    }
    if w.has_ipv4() && sysctl::read_conf("ipv4", &w.host_if, "proxy_arp").as_deref() != Some("1") {
        problems.push(format!("proxy_arp is not 1 on {}", w.host_if));
    }
    if w.has_ipv6() && sysctl::read_conf("ipv6", &w.host_if, "proxy_ndp").as_deref() != Some("1") {
        problems.push(format!("proxy_ndp is not 1 on {}", w.host_if));
    }
    for ip in &w.ips {
        let len = IpFamily::of_addr(ip).host_prefix_len();
        let routes = host.routes(ip.is_ipv6()).await?;
        if !routes
            .iter()
            .any(|r| r.dst.addr() == *ip && r.dst.prefix_len() == len && r.oif == Some(link.index))
        {
            problems.push(format!(
                "host route {} is missing",
                host_route_text(ip, &w.host_if)
            ));
        }
    }
    let ns = netns::open(&w.netns)?;
    let (pod_if, ips) = (w.pod_if.clone(), w.ips.clone());
    let pod_problems = netns::run_in(ns, move || async move {
        let mut problems = Vec::new();
        let nl = Netlink::connect()?;
        let Some(link) = nl.link(&pod_if).await? else {
            problems.push(format!("{pod_if} does not exist in the pod namespace"));
            return Ok(problems);
        };
        if !link.up {
            problems.push(format!("{pod_if} is down"));
        }
        let addresses = nl.addresses(link.index).await?;
        for ip in &ips {
            let len = IpFamily::of_addr(ip).host_prefix_len();
            if !addresses.contains(&(*ip, len)) {
                problems.push(format!("{pod_if} does not have {ip}/{len}"));
            }
        }
        if ips.iter().any(IpAddr::is_ipv4) {
            let routes = nl.routes(false).await?;
            let gw = IpAddr::V4(GATEWAY);
            if !routes.iter().any(|r| {
                r.dst.addr() == gw
                    && r.dst.prefix_len() == 32
                    && r.oif == Some(link.index)
                    && r.gateway.is_none()
            }) {
                problems.push(format!(
                    "route {GATEWAY} dev {pod_if} scope link is missing"
                ));
            }
            if !has_default_route(&routes, gw, link.index) {
                problems.push(format!(
                    "route default via {GATEWAY} dev {pod_if} is missing"
                ));
            }
        }
        if ips.iter().any(IpAddr::is_ipv6)
            && !has_default_route(&nl.routes(true).await?, IpAddr::V6(GATEWAY_V6), link.index)
        {
            problems.push(format!(
                "route default via {GATEWAY_V6} dev {pod_if} is missing"
            ));
        }
        Ok(problems)
    })
    .await?;
    problems.extend(pod_problems);
    Ok(problems)
}
