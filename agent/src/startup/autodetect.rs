//! The node addresses: given (`IP=10.0.0.1/24`, `IP6=fd00:1::9/64`) or auto-detected as
//! calico-node does (`IP_AUTODETECTION_METHOD` / `IP6_AUTODETECTION_METHOD`: `first-found`,
//! `interface=<regex>`, `can-reach=<ip>`, `cidr=<cidr>,...`), one rule for both families.
//! The prefix length is kept: CrossSubnet needs it (Calico #2375). `IP6=none` (the
//! default, as Calico's) leaves the node without IPv6.

use std::net::{IpAddr, UdpSocket};

use datastore::model::IpFamily;
use ipnet::IpNet;
use regex::Regex;
use thiserror::Error;

use crate::dataplane::kernel::LinkInfo;
use crate::local::{LocalNode, LocalV6};

/// Interfaces never chosen by auto-detection (Calico's default exclusions).
const EXCLUDED: &[&str] = &[
    "^docker.*",
    "^cbr.*",
    "^dummy.*",
    "^virbr.*",
    "^lxcbr.*",
    "^veth.*",
    "^lo$",
    "^cali.*",
    "^tunl.*",
    "^flannel.*",
    "^kube-ipvs.*",
    "^cni.*",
    "^vxlan.calico.*",
    "^vxlan-v6.calico.*",
    "^wireguard.cali.*",
    "^nodelocaldns.*",
];

/// The variable that gives the address of a family.
fn ip_var(family: &IpFamily) -> &'static str {
    match family {
        IpFamily::V4 => "IP",
        IpFamily::V6 => "IP6",
    }
}

/// The variable that chooses the detection method of a family.
fn method_var(family: &IpFamily) -> &'static str {
    match family {
        IpFamily::V4 => "IP_AUTODETECTION_METHOD",
        IpFamily::V6 => "IP6_AUTODETECTION_METHOD",
    }
}

fn example(family: &IpFamily) -> &'static str {
    match family {
        IpFamily::V4 => "10.0.0.1/24",
        IpFamily::V6 => "fd00:1::9/64",
    }
}

/// Why no node address could be settled on.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AutodetectError {
    #[error(
        "{m}: '{1}' is not one of first-found, interface=<regex>, can-reach=<ip>, cidr=<cidr>",
        m = method_var(.0)
    )]
    UnknownMethod(IpFamily, String),
    #[error("{m}: bad regular expression '{1}': {2}", m = method_var(.0))]
    BadRegex(IpFamily, String, String),
    #[error("{m}: bad {0} CIDR '{1}'", m = method_var(.0))]
    BadCidr(IpFamily, String),
    #[error(
        "{v}: '{1}' is not an {0} address with a prefix length (e.g. {e}) or 'autodetect'",
        v = ip_var(.0),
        e = example(.0)
    )]
    BadAddress(IpFamily, String),
    #[error("{v}: {1} is not assigned to any interface on this host", v = ip_var(.0))]
    NotOnHost(IpFamily, IpAddr),
    #[error("no {0} address found by {m}={1} (interfaces seen: {2})", m = method_var(.0))]
    NothingFound(IpFamily, String, String),
    #[error("{m}=can-reach={1}: {2}", m = method_var(.0))]
    Unreachable(IpFamily, String, String),
}

/// The MTU assumed for a node that has no interface of its own yet (`IP=none`).
const DEFAULT_MTU: u32 = 1500;

/// Picks the node's IPv4 address and its interface from the host's interfaces; `IP=none`
/// gives a node without IPv4 (the caller then keeps the Node's stored one, [`stored_v4`],
/// and takes the IPv6 address's interface, [`settle_interface`]).
pub fn detect(
    ip: &str,
    method: &str,
    links: &[LinkInfo],
    node: &str,
) -> Result<LocalNode, AutodetectError> {
    let mut local = LocalNode {
        name: node.to_string(),
        address: None,
        interface: String::new(),
        host_mtu: DEFAULT_MTU,
        ipv6: None,
    };
    if ip == "none" {
        return Ok(local);
    }
    let (link, net) = pick(IpFamily::V4, ip, method, links)?;
    let IpNet::V4(address) = net else {
        return Err(AutodetectError::BadAddress(IpFamily::V4, ip.to_string()));
    };
    local.address = Some(address);
    local.interface = link.name.clone();
    local.host_mtu = link.mtu;
    Ok(local)
}

/// The node's IPv4 side from the address its Node already has (`IP=none` keeps it, as
/// calico-node does), with the link holding it; none (with a warning) when no link of this
/// host has it.
pub fn stored_v4<'a>(
    stored: &str,
    links: &'a [LinkInfo],
) -> Option<(ipnet::Ipv4Net, &'a LinkInfo)> {
    let address: ipnet::Ipv4Net = stored.parse().ok()?;
    match find_address(links, IpAddr::V4(address.addr())) {
        Some((link, _)) => Some((address, link)),
        None => {
            tracing::warn!(address = %address, "the Node's ipv4Address is on no interface of this host; running without IPv4");
            None
        }
    }
}

/// An IPv6-only node's interface and MTU are those of its IPv6 address.
pub fn settle_interface(local: &mut LocalNode, links: &[LinkInfo]) {
    if local.address.is_some() {
        return;
    }
    let Some(v6) = &local.ipv6 else {
        return;
    };
    local.interface = v6.interface.clone();
    if let Some(link) = links.iter().find(|l| l.name == v6.interface) {
        local.host_mtu = link.mtu;
    }
}

/// The node's IPv6 side from the address its Node already has (`IP6` unset or `none`
/// keeps it, as calico-node does): on the link holding it, else (calico-node only warns)
/// on the IPv4 interface.
pub fn stored_v6(stored: &str, links: &[LinkInfo], v4_interface: &str) -> Option<LocalV6> {
    let address: ipnet::Ipv6Net = stored.parse().ok()?;
    let interface = match find_address(links, IpAddr::V6(address.addr())) {
        Some((link, _)) => link.name.clone(),
        None => {
            tracing::warn!(address = %address, "the Node's ipv6Address is on no interface of this host");
            v4_interface.to_string()
        }
    };
    Some(LocalV6 { address, interface })
}

/// Picks the node's IPv6 address (`IP6`): none for `none` or unset (the caller then keeps
/// the Node's stored one, [`stored_v6`]).
pub fn detect_v6(
    ip6: &str,
    method: &str,
    links: &[LinkInfo],
) -> Result<Option<LocalV6>, AutodetectError> {
    if ip6.is_empty() || ip6 == "none" {
        return Ok(None);
    }
    let (link, net) = pick(IpFamily::V6, ip6, method, links)?;
    let IpNet::V6(address) = net else {
        return Err(AutodetectError::BadAddress(IpFamily::V6, ip6.to_string()));
    };
    Ok(Some(LocalV6 {
        address,
        interface: link.name.clone(),
    }))
}

/// The address of `family` given as `ip` (with or without its prefix length) or, for
/// `autodetect`, found by `method`; with the link holding it.
fn pick<'a>(
    family: IpFamily,
    ip: &str,
    method: &str,
    links: &'a [LinkInfo],
) -> Result<(&'a LinkInfo, IpNet), AutodetectError> {
    if ip == "autodetect" || ip.is_empty() {
        return by_method(family, method, links);
    }
    let bad = || AutodetectError::BadAddress(family, ip.to_string());
    let net: IpNet = ip
        .parse()
        .or_else(|_| ip.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| bad())?;
    if IpFamily::of_net(&net) != family {
        return Err(bad());
    }
    let (link, prefix) =
        find_address(links, net.addr()).ok_or(AutodetectError::NotOnHost(family, net.addr()))?;
    // A bare address takes the interface's prefix length.
    let prefix = if ip.contains('/') {
        net.prefix_len()
    } else {
        prefix
    };
    Ok((link, IpNet::new(net.addr(), prefix).unwrap_or(net)))
}

/// The addresses of `link` in `family`.
fn addresses_of(link: &LinkInfo, family: IpFamily) -> Vec<(IpAddr, u8)> {
    match family {
        IpFamily::V4 => link
            .addresses
            .iter()
            .map(|(a, p)| (IpAddr::V4(*a), *p))
            .collect(),
        IpFamily::V6 => link
            .addresses_v6
            .iter()
            .map(|(a, p)| (IpAddr::V6(*a), *p))
            .collect(),
    }
}

fn find_address(links: &[LinkInfo], addr: IpAddr) -> Option<(&LinkInfo, u8)> {
    links.iter().find_map(|l| {
        addresses_of(l, IpFamily::of_addr(&addr))
            .iter()
            .find(|(a, _)| *a == addr)
            .map(|(_, p)| (l, *p))
    })
}

/// Never a node address: loopback, unspecified, link-local of either family.
fn usable(ip: &IpAddr) -> bool {
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    };
    !ip.is_loopback() && !ip.is_unspecified() && !link_local
}

fn candidates(links: &[LinkInfo], family: IpFamily) -> Vec<(&LinkInfo, IpNet)> {
    let excluded: Vec<Regex> = EXCLUDED.iter().filter_map(|r| Regex::new(r).ok()).collect();
    links
        .iter()
        .filter(|l| !excluded.iter().any(|r| r.is_match(&l.name)))
        .flat_map(|l| {
            addresses_of(l, family)
                .into_iter()
                .filter(|(a, _)| usable(a))
                .filter_map(move |(a, p)| Some((l, IpNet::new(a, p).ok()?)))
        })
        .collect()
}

fn by_method<'a>(
    family: IpFamily,
    method: &str,
    links: &'a [LinkInfo],
) -> Result<(&'a LinkInfo, IpNet), AutodetectError> {
    let seen = || {
        links
            .iter()
            .map(|l| l.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let nothing = || AutodetectError::NothingFound(family, method.to_string(), seen());
    let found = candidates(links, family);
    if method.is_empty() || method == "first-found" {
        return found.into_iter().next().ok_or_else(nothing);
    }
    if let Some(pattern) = method.strip_prefix("interface=") {
        let re = Regex::new(pattern)
            .map_err(|e| AutodetectError::BadRegex(family, pattern.to_string(), e.to_string()))?;
        return found
            .into_iter()
            .find(|(l, _)| re.is_match(&l.name))
            .ok_or_else(nothing);
    }
    if let Some(list) = method.strip_prefix("cidr=") {
        let cidrs = list
            .split(',')
            .map(|c| {
                c.trim()
                    .parse::<IpNet>()
                    .ok()
                    .filter(|n| IpFamily::of_net(n) == family)
                    .ok_or_else(|| AutodetectError::BadCidr(family, c.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        return found
            .into_iter()
            .find(|(_, a)| cidrs.iter().any(|c| c.contains(&a.addr())))
            .ok_or_else(nothing);
    }
    if let Some(target) = method.strip_prefix("can-reach=") {
        let source = source_towards(family, target)
            .map_err(|e| AutodetectError::Unreachable(family, target.to_string(), e))?;
        let (link, prefix) = find_address(links, source).ok_or_else(nothing)?;
        let net = IpNet::new(source, prefix).map_err(|_| nothing())?;
        return Ok((link, net));
    }
    Err(AutodetectError::UnknownMethod(family, method.to_string()))
}

/// The source address the kernel would use towards `target`: a connected UDP socket
/// (nothing is sent), as calico-node does.
fn source_towards(family: IpFamily, target: &str) -> Result<IpAddr, String> {
    let ip: IpAddr = target
        .parse()
        .map_err(|_| format!("'{target}' is not an IP address"))?;
    if IpFamily::of_addr(&ip) != family {
        return Err(format!("'{target}' is not an {family} address"));
    }
    let any = match family {
        IpFamily::V4 => "0.0.0.0:0",
        IpFamily::V6 => "[::]:0",
    };
    let socket = UdpSocket::bind(any).map_err(|e| e.to_string())?;
    socket.connect((ip, 80)).map_err(|e| e.to_string())?;
    Ok(socket.local_addr().map_err(|e| e.to_string())?.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(name: &str, addrs: &[(&str, u8)]) -> LinkInfo {
        let mut link = LinkInfo {
            index: 1,
            name: name.into(),
            kind: None,
            mtu: 1500,
            mac: None,
            up: true,
            addresses: Vec::new(),
            addresses_v6: Vec::new(),
            vxlan: None,
        };
        for (a, p) in addrs {
            match a.parse::<IpAddr>().expect("ip") {
                IpAddr::V4(v4) => link.addresses.push((v4, *p)),
                IpAddr::V6(v6) => link.addresses_v6.push((v6, *p)),
            }
        }
        link
    }

    fn host() -> Vec<LinkInfo> {
        vec![
            link("lo", &[("127.0.0.1", 8)]),
            link("cali12345678901", &[]),
            link("docker0", &[("172.17.0.1", 16)]),
            link(
                "eth0",
                &[("10.1.10.9", 24), ("fe80::1", 64), ("fd00:1::9", 64)],
            ),
            link("eth1", &[("192.168.50.4", 24), ("fd00:2::4", 64)]),
        ]
    }

    #[test]
    fn first_found_skips_calico_docker_and_loopback_and_keeps_the_prefix() {
        let n = detect("autodetect", "first-found", &host(), "n1").expect("found");
        assert_eq!(
            n.address.map(|a| a.to_string()).as_deref(),
            Some("10.1.10.9/24")
        );
        assert_eq!(n.interface, "eth0");
    }

    #[test]
    fn interface_and_cidr_methods_select_the_right_address() {
        let n = detect("autodetect", "interface=eth1", &host(), "n1").expect("found");
        assert_eq!(
            n.address.map(|a| a.to_string()).as_deref(),
            Some("192.168.50.4/24")
        );
        let n = detect("autodetect", "cidr=192.168.0.0/16", &host(), "n1").expect("found");
        assert_eq!(n.interface, "eth1");
    }

    #[test]
    fn a_given_address_must_be_on_the_host() {
        let n = detect("10.1.10.9/24", "first-found", &host(), "n1").expect("found");
        assert_eq!(n.interface, "eth0");
        assert_eq!(
            detect("10.9.9.9/24", "first-found", &host(), "n1"),
            Err(AutodetectError::NotOnHost(
                IpFamily::V4,
                "10.9.9.9".parse().expect("ip")
            ))
        );
        let bare = detect("10.1.10.9", "first-found", &host(), "n1").expect("found");
        assert_eq!(bare.address.map(|a| a.prefix_len()), Some(24));
    }

    #[test]
    fn ip_none_is_an_ipv6_only_node_on_the_interface_of_its_ipv6_address() {
        let mut n = detect("none", "first-found", &host(), "n1").expect("none");
        assert_eq!(n.address, None);
        n.ipv6 = detect_v6("fd00:2::4/64", "first-found", &host()).expect("found");
        settle_interface(&mut n, &host());
        assert_eq!((n.interface.as_str(), n.host_mtu), ("eth1", 1500));
        // A stored IPv4 address is kept when it is on the host, as calico-node keeps it.
        let kept =
            stored_v4("192.168.50.4/24", &host()).map(|(a, l)| (a.to_string(), l.name.clone()));
        assert_eq!(
            kept,
            Some(("192.168.50.4/24".to_string(), "eth1".to_string()))
        );
        assert!(stored_v4("10.9.9.9/24", &host()).is_none());
    }

    #[test]
    fn unknown_methods_and_bad_values_are_named() {
        let e = detect("autodetect", "magic", &host(), "n1").expect_err("bad");
        assert!(e.to_string().contains("'magic'"));
        let e = detect("autodetect", "cidr=10.0.0.0/99", &host(), "n1").expect_err("bad");
        assert_eq!(
            e,
            AutodetectError::BadCidr(IpFamily::V4, "10.0.0.0/99".into())
        );
    }

    #[test]
    fn ipv6_is_off_unless_ip6_asks_and_is_found_by_the_same_methods() {
        assert_eq!(detect_v6("none", "first-found", &host()), Ok(None));
        let kept = stored_v6("fd00:2::4/64", &host(), "eth0").expect("stored");
        assert_eq!(kept.interface, "eth1");
        assert_eq!(detect_v6("", "first-found", &host()), Ok(None));
        let first = detect_v6("autodetect", "first-found", &host())
            .expect("found")
            .expect("some");
        // The link-local address is never a node address.
        assert_eq!(
            (first.address.to_string(), first.interface.as_str()),
            ("fd00:1::9/64".to_string(), "eth0")
        );
        let by_cidr = detect_v6("autodetect", "cidr=fd00:2::/64", &host())
            .expect("found")
            .expect("some");
        assert_eq!(by_cidr.interface, "eth1");
        let given = detect_v6("fd00:2::4", "first-found", &host())
            .expect("found")
            .expect("some");
        assert_eq!(given.address.to_string(), "fd00:2::4/64");
        let e = detect_v6("10.1.10.9/24", "first-found", &host()).expect_err("v4 in IP6");
        assert_eq!(
            e.to_string(),
            "IP6: '10.1.10.9/24' is not an IPv6 address with a prefix length (e.g. fd00:1::9/64) or 'autodetect'"
        );
        let e = detect_v6("autodetect", "cidr=10.0.0.0/8", &host()).expect_err("v4 cidr");
        assert_eq!(
            e.to_string(),
            "IP6_AUTODETECTION_METHOD: bad IPv6 CIDR '10.0.0.0/8'"
        );
    }
}
