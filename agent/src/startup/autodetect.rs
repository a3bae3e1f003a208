//! The node address: given (`IP=10.0.0.1/24`) or auto-detected as calico-node does
//! (`IP_AUTODETECTION_METHOD`: `first-found`, `interface=<regex>`, `can-reach=<ip>`,
//! `cidr=<cidr>,...`). The prefix length is kept: CrossSubnet needs it (Calico #2375).

use std::net::{IpAddr, Ipv4Addr, UdpSocket};

use ipnet::Ipv4Net;
use regex::Regex;
use thiserror::Error;

use crate::dataplane::kernel::LinkInfo;
use crate::local::LocalNode;

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

/// Why no node address could be settled on.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AutodetectError {
    #[error(
        "IP_AUTODETECTION_METHOD: '{0}' is not one of first-found, interface=<regex>, can-reach=<ip>, cidr=<cidr>"
    )]
    UnknownMethod(String),
    #[error("IP_AUTODETECTION_METHOD: bad regular expression '{0}': {1}")]
    BadRegex(String, String),
    #[error("IP_AUTODETECTION_METHOD: bad CIDR '{0}'")]
    BadCidr(String),
    #[error(
        "IP: '{0}' is not an IPv4 address with a prefix length (e.g. 10.0.0.1/24) or 'autodetect'"
    )]
    BadAddress(String),
    #[error("IP: {0} is not assigned to any interface on this host")]
    NotOnHost(Ipv4Addr),
    #[error("no IPv4 address found by IP_AUTODETECTION_METHOD={0} (interfaces seen: {1})")]
    NothingFound(String, String),
    #[error("IP_AUTODETECTION_METHOD=can-reach={0}: {1}")]
    Unreachable(String, String),
}

/// Picks the node address and its interface from the host's interfaces.
pub fn detect(
    ip: &str,
    method: &str,
    links: &[LinkInfo],
    node: &str,
) -> Result<LocalNode, AutodetectError> {
    let found = if ip != "autodetect" && !ip.is_empty() {
        let net: Ipv4Net = ip
            .parse()
            .or_else(|_| {
                ip.parse::<Ipv4Addr>()
                    .map(|a| Ipv4Net::new(a, 32).unwrap_or_default())
            })
            .map_err(|_| AutodetectError::BadAddress(ip.to_string()))?;
        let (link, prefix) =
            find_address(links, net.addr()).ok_or(AutodetectError::NotOnHost(net.addr()))?;
        // A bare address takes the interface's prefix length.
        let prefix = if ip.contains('/') {
            net.prefix_len()
        } else {
            prefix
        };
        (link, Ipv4Net::new(net.addr(), prefix).unwrap_or(net))
    } else {
        by_method(method, links)?
    };
    Ok(LocalNode {
        name: node.to_string(),
        address: found.1,
        interface: found.0.name.clone(),
        host_mtu: found.0.mtu,
    })
}

fn find_address(links: &[LinkInfo], addr: Ipv4Addr) -> Option<(&LinkInfo, u8)> {
    links.iter().find_map(|l| {
        l.addresses
            .iter()
            .find(|(a, _)| *a == addr)
            .map(|(_, p)| (l, *p))
    })
}

fn candidates(links: &[LinkInfo]) -> impl Iterator<Item = (&LinkInfo, Ipv4Net)> {
    let excluded: Vec<Regex> = EXCLUDED.iter().filter_map(|r| Regex::new(r).ok()).collect();
    links
        .iter()
        .filter(move |l| !excluded.iter().any(|r| r.is_match(&l.name)))
        .flat_map(|l| {
            l.addresses.iter().filter_map(move |(a, p)| {
                let usable = !a.is_loopback() && !a.is_link_local() && !a.is_unspecified();
                usable.then(|| (l, Ipv4Net::new(*a, *p).unwrap_or_default()))
            })
        })
}

fn by_method<'a>(
    method: &str,
    links: &'a [LinkInfo],
) -> Result<(&'a LinkInfo, Ipv4Net), AutodetectError> {
    let seen = || {
        links
            .iter()
            .map(|l| l.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let nothing = || AutodetectError::NothingFound(method.to_string(), seen());
    if method.is_empty() || method == "first-found" {
        return candidates(links).next().ok_or_else(nothing);
    }
    if let Some(pattern) = method.strip_prefix("interface=") {
        let re = Regex::new(pattern)
            .map_err(|e| AutodetectError::BadRegex(pattern.to_string(), e.to_string()))?;
        return candidates(links)
            .find(|(l, _)| re.is_match(&l.name))
            .ok_or_else(nothing);
    }
    if let Some(list) = method.strip_prefix("cidr=") {
        let cidrs = list
            .split(',')
            .map(|c| {
                c.trim()
                    .parse::<Ipv4Net>()
                    .map_err(|_| AutodetectError::BadCidr(c.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        return candidates(links)
            .find(|(_, a)| cidrs.iter().any(|c| c.contains(&a.addr())))
            .ok_or_else(nothing);
    }
    if let Some(target) = method.strip_prefix("can-reach=") {
        let source = source_towards(target)
            .map_err(|e| AutodetectError::Unreachable(target.to_string(), e))?;
        let (link, prefix) = find_address(links, source).ok_or_else(nothing)?;
        return Ok((link, Ipv4Net::new(source, prefix).unwrap_or_default()));
    }
    Err(AutodetectError::UnknownMethod(method.to_string()))
}

/// The source address the kernel would use towards `target`: a connected UDP socket
/// (nothing is sent), as calico-node does.
fn source_towards(target: &str) -> Result<Ipv4Addr, String> {
    let ip: IpAddr = target
        .parse()
        .map_err(|_| format!("'{target}' is not an IP address"))?;
    let socket = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    socket.connect((ip, 80)).map_err(|e| e.to_string())?;
    match socket.local_addr().map_err(|e| e.to_string())?.ip() {
        IpAddr::V4(v4) => Ok(v4),
        IpAddr::V6(_) => Err("only IPv4 node addresses are supported".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(name: &str, addrs: &[(&str, u8)]) -> LinkInfo {
        LinkInfo {
            index: 1,
            name: name.into(),
            kind: None,
            mtu: 1500,
            mac: None,
            up: true,
            addresses: addrs
                .iter()
                .map(|(a, p)| (a.parse().expect("ip"), *p))
                .collect(),
        }
    }

    fn host() -> Vec<LinkInfo> {
        vec![
            link("lo", &[("127.0.0.1", 8)]),
            link("cali12345678901", &[]),
            link("docker0", &[("172.17.0.1", 16)]),
            link("eth0", &[("10.1.10.9", 24)]),
            link("eth1", &[("192.168.50.4", 24)]),
        ]
    }

    #[test]
    fn first_found_skips_calico_docker_and_loopback_and_keeps_the_prefix() {
        let n = detect("autodetect", "first-found", &host(), "n1").expect("found");
        assert_eq!(n.address.to_string(), "10.1.10.9/24");
        assert_eq!(n.interface, "eth0");
    }

    #[test]
    fn interface_and_cidr_methods_select_the_right_address() {
        let n = detect("autodetect", "interface=eth1", &host(), "n1").expect("found");
        assert_eq!(n.address.to_string(), "192.168.50.4/24");
        let n = detect("autodetect", "cidr=192.168.0.0/16", &host(), "n1").expect("found");
        assert_eq!(n.interface, "eth1");
    }

    #[test]
    fn a_given_address_must_be_on_the_host() {
        let n = detect("10.1.10.9/24", "first-found", &host(), "n1").expect("found");
        assert_eq!(n.interface, "eth0");
        assert_eq!(
            detect("10.9.9.9/24", "first-found", &host(), "n1"),
            Err(AutodetectError::NotOnHost("10.9.9.9".parse().expect("ip")))
        );
        let bare = detect("10.1.10.9", "first-found", &host(), "n1").expect("found");
        assert_eq!(bare.address.prefix_len(), 24);
    }

    #[test]
    fn unknown_methods_and_bad_values_are_named() {
        let e = detect("autodetect", "magic", &host(), "n1").expect_err("bad");
        assert!(e.to_string().contains("'magic'"));
        let e = detect("autodetect", "cidr=10.0.0.0/99", &host(), "n1").expect_err("bad");
        assert_eq!(e, AutodetectError::BadCidr("10.0.0.0/99".into()));
    }
}
